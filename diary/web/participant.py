"""The phone diary: personal link and PIN, Today, the entry form, review, confirmation, history.

Pages are server-rendered and work without JavaScript. Every rule (windows, one submission,
valid answers) lives in ``entries``; these views read the form, call it and render.
"""

from __future__ import annotations

import csv
import io
import json
import secrets
from datetime import datetime, timedelta
from functools import wraps
from itertools import groupby
from pathlib import Path

from flask import (
    Blueprint,
    abort,
    current_app,
    g,
    make_response,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_babel import get_locale, ngettext
from flask_babel import gettext as _
from flask_wtf.csrf import validate_csrf
from sqlalchemy import bindparam, select
from sqlalchemy.orm import contains_eager, joinedload
from werkzeug.datastructures import MultiDict
from wtforms.validators import ValidationError

from ..documents import render_pdf
from ..dosing import assessments
from ..dosing.assessments import AssessmentRow
from ..entries.recording import (
    InvalidAnswers,
    device_facts,
    entry_stamp,
    field_name,
    offline_refusal,
    record_submission,
    stamp_refusal,
    validate_answers,
    window_refusal,
)
from ..errors import Refused
from ..exports.own_data import OWN_COLUMNS, own_answers
from ..extensions import csrf, db
from ..governance import audit
from ..i18n import LANGUAGE_NAMES, LANGUAGES, full_datetime
from ..i18n import when as local_when
from ..localtime import plausible
from ..models import Assessment, Participant, Period, now_utc
from ..participants import links, pins
from ..participants.preferences import set_channels, set_language, set_told_treatment_order, subscribe_push
from ..protocol.model import in_language
from ..reminders.calendar import calendar_feed
from ..reminders.planning import record_opened
from ..study.blinding import treatment_order_for
from ..study.trial import protocol_of, site_contact
from ..vocabulary import (
    AssessmentState,
    AuditAction,
    ExportFormat,
    ItemType,
    ParticipantStatus,
    Severity,
    severity_label,
)
from . import auth, unstorable_text
from .assets import asset
from .errors import render_error

COMPLETED, COMPLETED_LATE, MISSED, OPEN, UPCOMING = (
    AssessmentState.COMPLETED,
    AssessmentState.COMPLETED_LATE,
    AssessmentState.MISSED,
    AssessmentState.OPEN,
    AssessmentState.UPCOMING,
)

bp = Blueprint("participant", __name__, url_prefix="/p")


def participant_required(view):
    """The phone must be remembered (link + PIN); a withdrawn participant sees a closing page."""

    @wraps(view)
    def wrapped(*args, **kwargs):
        participant = auth.remembered_participant(for_page=request.method == "GET")
        if participant is None:
            return render_template("participant/signed_out.html"), 401
        if participant.status not in ParticipantStatus.in_diary():
            return render_template("participant/ended.html"), 403
        g.participant = participant
        return view(*args, **kwargs)

    return wrapped


@bp.context_processor
def _entry_words():
    """How an entry is named to its participant: "Infusion 2 · Day 3" in a study with infusions,
    "Day 3" in one anchored to randomization (no infusion to number)."""
    participant = g.get("participant")
    with_infusions = participant is None or protocol_of(participant.study.current_protocol_version).has_infusions

    def entry_title(number, label) -> str:
        label = in_language(label, participant.language if participant else None)
        if with_infusions:
            return _("Infusion %(number)s · %(label)s", number=number, label=label)
        return label

    return {"with_infusions": with_infusions, "entry_title": entry_title}


# --- Link and PIN ------------------------------------------------------------------------------


@bp.route("/<token>", methods=["GET", "POST"])
def link(token):
    """The personal link: choose a PIN the first time, enter it when the phone is not remembered."""
    participant = links.participant_by_token(token)
    if participant is None:
        return render_template("participant/bad_link.html"), 404
    reminder_id = links.reminder_of(token)
    if reminder_id is not None and record_opened(reminder_id, participant.id, now_utc()):
        db.session.commit()
    g.language = participant.language  # the PIN pages in the participant's own language
    if participant.status not in ParticipantStatus.in_diary():
        return render_template("participant/ended.html"), 403
    remembered = auth.remembered_participant()
    if request.method == "GET" and remembered is not None and remembered.id == participant.id:
        return redirect(url_for(".today"))
    now = now_utc()
    choosing = participant.pin_hash is None
    if request.method == "GET":
        return _pin_page(participant, token, choosing, now)
    pin = request.form.get("pin", "")
    try:
        if choosing:
            pins.set_pin(participant, pin, request.form.get("confirm", ""), now=now)
        elif not pins.check_pin(participant, pin, now=now):
            db.session.commit()  # the failure counter must persist even though we refuse
            minutes = pins.locked_minutes(participant, now)
            if minutes:
                return _pin_page(participant, token, False, now, status=429)
            left = current_app.config["PIN_MAX_ATTEMPTS"] - participant.pin_failed_count
            return _pin_page(
                participant,
                token,
                False,
                now,
                status=401,
                error=ngettext(
                    "That PIN is not right. %(num)d try left before the diary locks for a while.",
                    "That PIN is not right. %(num)d tries left before the diary locks for a while.",
                    left,
                ),
            )
    except Refused as refusal:
        db.session.rollback()
        return _pin_page(participant, token, choosing, now, status=422, error=refusal.message)
    db.session.commit()
    response = redirect(url_for(".today"))
    auth.remember_phone(response, participant)
    return response


def _pin_page(participant, token, choosing, now, status=200, error=None):
    minutes = pins.locked_minutes(participant, now)
    return render_template(
        "participant/pin.html",
        token=token,
        choosing=choosing,
        error=error,
        study_name=participant.study.name,
        site_phone=site_contact(participant.site),
        locked_minutes=minutes,
    ), 429 if minutes else status


@bp.post("/sign-out")
@participant_required
def sign_out():
    pins.sign_out(g.participant, now=now_utc())
    db.session.commit()
    response = redirect(url_for("main.index"))
    auth.forget_phone(response)
    return response


# --- Today and history -------------------------------------------------------------------------


def _rows(participant: Participant, now: datetime, *, with_values: bool = False) -> list[AssessmentRow]:
    """Every scheduled assessment of the participant, in time order."""
    return assessments.judge(now, _OWN_ROWS, {"participant": participant.id}, with_values=with_values)


# Built once: Today and History run it on every view.
_OWN_ROWS = assessments.rows_query().where(Participant.id == bindparam("participant")).order_by(Assessment.window_open)


@bp.get("/today")
@participant_required
def today():
    participant, now = g.participant, now_utc()
    study = participant.study
    order = treatment_order_for(study, participant, protocol_of(study.current_protocol_version))
    rows = _rows(participant, now)
    open_rows = [row for row in rows if row.state == OPEN]
    upcoming = [row for row in rows if row.state == UPCOMING][:1]
    recent_missed = [row for row in rows if row.state == MISSED and (now - row.late_close).days < 3]
    return render_template(
        "participant/today.html",
        open_rows=open_rows,
        upcoming=upcoming,
        missed=recent_missed,
        when=lambda t: local_when(t, participant.timezone, now, participant.language),
        now=now,
        treatment_order=order,
        site_phone=site_contact(participant.site) if order else None,
    )


@bp.get("/history")
@participant_required
def history():
    participant, now = g.participant, now_utc()
    rows = [row for row in _rows(participant, now, with_values=True) if row.submission_id is not None]
    rows.reverse()
    protocol = protocol_of(participant.study.current_protocol_version)
    return render_template(
        "participant/history.html",
        rows=rows,
        when=lambda t: full_datetime(t, participant.timezone, participant.language),
        describe=lambda row: _describe(protocol, row.timepoint, row.values),
    )


def _own_copy(kind: str):
    """The participant's own answers as a file (CSV or PDF), in their language; audited."""
    participant, now = g.participant, now_utc()
    rows = own_answers(participant.study, participant, now, severity_text=severity_label)
    audit.record(
        actor=audit.participant_actor(participant),
        action=AuditAction.OWN_DATA_DOWNLOADED,
        entity="participant",
        entity_id=participant.id,
        participant_id=participant.id,
        new=f"{kind}, {len(rows)} answers",
        now=now,
    )
    db.session.commit()
    name = f"my-diary-{participant.code}.{kind}"
    if kind == ExportFormat.CSV:
        text = io.StringIO()
        writer = csv.DictWriter(text, fieldnames=OWN_COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        # With a byte-order mark, so a spreadsheet opens the accents of Spanish answers right.
        body, mimetype = "\ufeff" + text.getvalue(), "text/csv; charset=utf-8"
    else:
        body = render_pdf(
            "archive/own_answers.html",
            participant.language,
            participant=participant,
            entries=[
                (key, list(group))
                for key, group in groupby(rows, key=lambda r: (r["infusion"], r["time_point"], r["answered"]))
            ],
            as_of=now,
        )
        mimetype = "application/pdf"
    response = make_response(body)
    response.headers["Content-Type"] = mimetype
    response.headers["Content-Disposition"] = f'attachment; filename="{name}"'
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.get("/history/my-answers.csv")
@participant_required
def own_csv():
    return _own_copy(ExportFormat.CSV)


@bp.get("/history/my-answers.pdf")
@participant_required
def own_pdf():
    return _own_copy("pdf")


def _describe(protocol, timepoint_code, values) -> list[tuple[str, str, int | None]]:
    """The answers as sentences in the participant's language (review, saved and history pages)."""
    language = g.participant.language

    def tr(text):
        return in_language(text, language)

    lines = []
    for instrument in protocol.instruments_for(protocol.timepoint(timepoint_code)):
        for item in instrument.items:
            if item.type == ItemType.SEVERITY_CHECKLIST:
                reported = [
                    f"{tr(term.label)}: {severity_label(values[(instrument.id, f'{item.id}.{term.code}')])}"
                    for term in item.terms
                    if values.get((instrument.id, f"{item.id}.{term.code}"), Severity.NONE) != Severity.NONE
                ]
                lines.append((tr(item.text), "; ".join(reported) or _("None of these"), None))
                continue
            value = values.get((instrument.id, item.id))
            if value is None:
                if item.required:
                    lines.append((tr(item.text), _("Not answered"), None))
                continue
            if item.type == ItemType.VAS:
                lines.append(
                    (
                        tr(item.text),
                        _(
                            "Marked on the line between “%(low)s” and “%(high)s”",
                            low=tr(item.min_label),
                            high=tr(item.max_label),
                        ),
                        int(value),
                    )
                )
            elif item.type == ItemType.NRS:
                lines.append((tr(item.text), _("%(value)s out of 10", value=value), None))
            elif item.type == ItemType.SINGLE_CHOICE:
                label = next((tr(c.label) for c in item.choices if c.code == value), value)
                lines.append((tr(item.text), label, None))
            else:
                lines.append((tr(item.text), value, None))
    return lines


# --- The entry form ----------------------------------------------------------------------------


def _own_assessment(assessment_id: int) -> Assessment:
    """The participant's own assessment; anyone else's is simply 'not found' (nothing revealed)."""
    # What the entry rules read, in this one query: the period, the protocol version and any
    # submission (no lazy loads one by one). The participant is already in the session.
    assessment = db.session.scalar(_OWN_ASSESSMENT, {"assessment": assessment_id, "participant": g.participant.id})
    if assessment is None:
        abort(404)
    return assessment


# Built once (each request passes its ids): every entry page and submit runs it.
_OWN_ASSESSMENT = (
    select(Assessment)
    .join(Period)
    .where(Assessment.id == bindparam("assessment"), Period.participant_id == bindparam("participant"))
    .options(
        contains_eager(Assessment.period), joinedload(Assessment.protocol_version), joinedload(Assessment.submission)
    )
)


def _entry_context(assessment: Assessment):
    protocol = protocol_of(assessment.protocol_version)
    timepoint = protocol.timepoint(assessment.timepoint)
    return protocol, timepoint, protocol.instruments_for(timepoint)


@bp.get("/entry/<int:assessment_id>")
@participant_required
def entry(assessment_id):
    assessment = _own_assessment(assessment_id)
    if assessment.submission is not None:
        return redirect(url_for(".saved", assessment_id=assessment.id))
    refusal = _closed_message(assessment, now_utc())
    if refusal:
        return render_error(409, refusal)
    return _render_form(assessment, {}, {}, key=secrets.token_hex(16))


def _closed_message(assessment: Assessment, now: datetime) -> str | None:
    if window_refusal(assessment, now) is None:
        return None  # the usual case: no need to say the opening time in the participant's words
    return window_refusal(
        assessment, now, opens=local_when(assessment.window_open, g.participant.timezone, now, g.participant.language)
    )


def _render_form(assessment, form, errors, *, key, status=200, notice=None):
    protocol, timepoint, instruments = _entry_context(assessment)
    now = now_utc()
    return render_template(
        "participant/entry.html",
        assessment=assessment,
        timepoint=timepoint,
        instruments=instruments,
        form=form,
        errors=errors,
        key=key,
        notice=notice,
        min_viewport=protocol.min_viewport_px,
        stamp=entry_stamp(assessment, g.participant.id, now, current_app.config["SECRET_KEY"]),
        field_name=field_name,
        period=assessment.period.number,
        contact=site_contact(g.participant.site),
        closes=local_when(assessment.window_close, g.participant.timezone, now, g.participant.language),
        late=now >= assessment.window_close,
    ), status


@bp.post("/entry/<int:assessment_id>")
@csrf.exempt  # checked below, so that an expired token gives the answers back instead of a bare error
@participant_required
def submit(assessment_id):
    assessment = _own_assessment(assessment_id)
    form = request.form
    key = form.get("idempotency_key", "")
    if not (8 <= len(key) <= 64 and key.isalnum() and key.isascii()):
        key = secrets.token_hex(16)
    try:
        validate_csrf(form.get("csrf_token"))
    except ValidationError:
        # Nothing is stored; the typed answers come back with a fresh token.
        return _render_form(
            assessment,
            form,
            {},
            key=key,
            status=400,
            notice=_(
                "This page was open for a long time, so for your safety it needs one more tap. "
                "Your answers are still here: please check them and press the button again."
            ),
        )
    if assessment.submission is not None:
        # A retried or double-tapped submit of the same form lands on the confirmation.
        if assessment.submission.idempotency_key == key:
            return redirect(url_for(".saved", assessment_id=assessment.id))
        return render_error(409, _("This entry has already been saved. It cannot be changed here."))
    now = now_utc()
    refusal = _closed_message(assessment, now)
    if refusal:
        return render_error(409, refusal)
    protocol, timepoint, _instruments = _entry_context(assessment)
    if form.get("step") == "edit":
        return _render_form(assessment, form, {}, key=key)
    if form.get("step") != "submit":
        answers = validate_answers(protocol, assessment.timepoint, form, get_locale().language)
        if answers.errors:
            return _render_form(assessment, form, answers.errors, key=key, status=422)
        return render_template(
            "participant/review.html",
            assessment=assessment,
            timepoint=timepoint,
            form=form,
            key=key,
            lines=_describe(protocol, assessment.timepoint, answers.values),
            alerts=answers.alerts,
            contact=site_contact(g.participant.site),
            period=assessment.period.number,
        )
    try:
        submission, _created = record_submission(
            assessment,
            form,
            now=now,
            actor=audit.participant_actor(g.participant),
            idempotency_key=key,
            device_time=form.get("device_time"),
            device=device_facts(form.get("device"), request.user_agent.string),
            language=get_locale().language,
        )
    except InvalidAnswers as invalid:
        db.session.rollback()
        return _render_form(assessment, form, invalid.errors, key=key, status=422)
    except Refused as refusal:
        db.session.rollback()
        return render_error(refusal.status, refusal.message)
    saved_url = url_for(".saved", assessment_id=assessment_id)  # before the commit expires the object
    db.session.commit()
    return redirect(saved_url)


def _device_moment(text) -> datetime | None:
    """An ISO 8601 time from the phone (JavaScript's toISOString), or None."""
    if not isinstance(text, str) or len(text) > 40:
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo is not None and plausible(moment) else None


@bp.post("/entry/<int:assessment_id>/sync")
@participant_required
def sync(assessment_id):
    """An entry made on the phone without a connection, sent when the connection came back
    (JSON from diary.js; the CSRF token in the X-CSRFToken header). Answers with JSON: stored,
    already stored (a second send of the same entry) or refused with the participant's message;
    a refusal is also recorded in the audit trail for the coordinator, never dropped silently."""
    assessment = _own_assessment(assessment_id)
    data = request.get_json(silent=True)
    if not isinstance(data, dict) or not isinstance(data.get("fields"), dict):
        return {"status": "refused", "message": _("Something was wrong with that request")}, 400
    key = data.get("key") or ""
    if not (isinstance(key, str) and 8 <= len(key) <= 64 and key.isalnum() and key.isascii()):
        return {"status": "refused", "message": _("Something was wrong with that request")}, 400
    made_at, device_now = _device_moment(data.get("made_at")), _device_moment(data.get("device_now"))
    if made_at is None or device_now is None:
        return {"status": "refused", "message": _("Something was wrong with that request")}, 400
    fields = MultiDict(
        [
            (str(name), str(value))
            for name, values in data["fields"].items()
            for value in (values if isinstance(values, list) else [values])
        ]
    )
    if assessment.submission is not None and assessment.submission.idempotency_key == key:
        return {"status": "already", "saved_url": url_for(".saved", assessment_id=assessment.id)}, 200
    now = now_utc()
    protocol = protocol_of(assessment.protocol_version)
    refusal, status = None, 409  # 409: the entry's time or form does not let it count
    if any(unstorable_text(name) or unstorable_text(value) for name, value in fields.items(multi=True)):
        # No text a person typed holds a NUL or a lone carriage return (``unstorable_text``):
        # refused and recorded below, so the phone drops it instead of sending it for ever.
        refusal, status = _("Please check your answers and try again."), 422
    elif assessment.submission is None:
        timepoint = protocol.timepoint(assessment.timepoint)
        refusal = offline_refusal(
            assessment,
            made_at=made_at,
            device_now=device_now,
            now=now,
            grace=(timepoint.offline_grace or protocol.offline_grace).nominal,
            clock_tolerance=timedelta(minutes=current_app.config["OFFLINE_CLOCK_TOLERANCE_MINUTES"]),
        ) or stamp_refusal(
            assessment,
            g.participant.id,
            fields.get("stamp"),
            made_at + (now - device_now),
            current_app.config["SECRET_KEY"],
        )
    try:
        if refusal:
            raise Refused(refusal, status=status)
        record_submission(
            assessment,
            fields,
            now=now,
            actor=audit.participant_actor(g.participant),
            idempotency_key=key,
            device_time=data.get("made_at"),
            made_offline_at=made_at + (now - device_now),
            device=device_facts(fields.get("device") if isinstance(fields, dict) else None, request.user_agent.string),
            language=get_locale().language,
        )
    except InvalidAnswers:
        db.session.rollback()
        refusal = _("Please check your answers and try again.")  # the sync has no form to mark
        status = 422
    except Refused as refused:
        db.session.rollback()
        refusal, status = refused.message, refused.status
    if refusal:
        audit.record(
            actor=audit.participant_actor(g.participant),
            action=AuditAction.OFFLINE_ENTRY_REFUSED,
            entity="assessment",
            entity_id=assessment.id,
            participant_id=g.participant.id,
            now=now,
            field=f"period {assessment.period.number} {assessment.timepoint}",
            new=f"made {made_at.isoformat()} on the phone's clock, sent {now.isoformat()}",
            reason=refusal,
        )
        db.session.commit()
        return {"status": "refused", "message": refusal}, status
    saved_url = url_for(".saved", assessment_id=assessment.id)
    db.session.commit()
    return {"status": "stored", "saved_url": saved_url}, 201


@bp.get("/entry/<int:assessment_id>/saved")
@participant_required
def saved(assessment_id):
    assessment = _own_assessment(assessment_id)
    submission = assessment.submission
    if submission is None:
        return redirect(url_for(".entry", assessment_id=assessment.id))
    participant, now = g.participant, now_utc()
    protocol = protocol_of(assessment.protocol_version)
    following = [row for row in _rows(participant, now) if row.state in (OPEN, UPCOMING)]
    stored = {(v.instrument, v.item): v.value for v in submission.values}
    return render_template(
        "participant/saved.html",
        assessment=assessment,
        submission=submission,
        label=protocol.timepoint(assessment.timepoint).participant_label,
        period=assessment.period.number,
        lines=_describe(protocol, assessment.timepoint, stored),
        following=following[:1],
        saved_at=local_when(submission.submitted_at, participant.timezone, now, participant.language),
        when=lambda t: local_when(t, participant.timezone, now, participant.language),
        contact=site_contact(participant.site) if submission.alert else None,
    )


# --- Reminders: channels, web push, calendar ---------------------------------------------------


@bp.route("/settings", methods=["GET", "POST"])
@participant_required
def settings():
    participant = g.participant
    if request.method == "POST":
        set_channels(
            participant,
            {
                "email_reminders": request.form.get("email") == "on",
                "push_reminders": request.form.get("push") == "on",
                "calendar_feed": request.form.get("calendar") == "on",
            },
            now=now_utc(),
        )
        if request.form.get("language") in LANGUAGES:
            set_language(participant, request.form["language"], now=now_utc())
        set_told_treatment_order(participant, request.form.get("told_treatment_order") == "on", now=now_utc())
        db.session.commit()
        return redirect(url_for(".settings", saved=1))
    feed = url_for(".calendar", token=links.signed_link_token(participant, "calendar"), _external=False)
    return render_template(
        "participant/settings.html",
        participant=participant,
        calendar_url=current_app.config["BASE_URL"].rstrip("/") + feed,
        vapid_key=current_app.config.get("VAPID_PUBLIC_KEY") or "",
        saved=request.args.get("saved"),
        languages=[(code, LANGUAGE_NAMES[code]) for code in LANGUAGES],
    )


@bp.post("/push/subscribe")
@participant_required
def push_subscribe():
    """Store a browser's push subscription (JSON from the 'Turn on reminders' button)."""
    try:
        subscribe_push(g.participant, request.get_json(silent=True), now=now_utc())
    except Refused as refusal:
        db.session.rollback()
        return {"error": refusal.message}, refusal.status
    db.session.commit()
    return {"status": "subscribed"}, 201


@bp.get("/calendar/<token>.ics")
def calendar(token):
    """The calendar feed, opened by a calendar app without cookies: the signed token is the key."""
    participant = links.participant_by_signed_token(token, "calendar")
    if (
        participant is None
        or participant.link_revoked_at is not None
        or not participant.calendar_feed
        or participant.status not in ParticipantStatus.in_diary()
    ):
        abort(404)
    body = calendar_feed(participant, link=links.reminder_link(participant), now=now_utc())
    response = make_response(body)
    response.headers["Content-Type"] = "text/calendar; charset=utf-8"
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.get("/sw.js")
def service_worker():
    """Served under /p/ so that its scope covers the diary pages. The app shell it caches is
    written into it (fingerprinted names), so a new release installs a new worker."""
    source = (Path(current_app.static_folder) / "sw.js").read_text(encoding="utf-8")
    shell = [
        url_for("participant.offline"),
        asset("diary.css"),
        asset("diary.js"),
        asset("icon-192.png"),
        asset("icon-512.png"),
        asset("icon-maskable-512.png"),
        url_for("participant.web_manifest"),
    ]
    body = source.replace("/*SHELL*/[]", json.dumps(shell))
    response = make_response(body)
    response.headers["Content-Type"] = "text/javascript; charset=utf-8"
    response.headers["Cache-Control"] = "no-cache"
    return _revalidated(response)


def _revalidated(response):
    """``no-cache`` makes the phone ask on every start; a strong ETag over the body lets the
    server answer an unchanged worker or manifest with a 304 and no body."""
    response.add_etag()
    return response.make_conditional(request)


@bp.get("/manifest.webmanifest")
def web_manifest():
    """What makes the diary installable (and, on iPhones, able to get web push): its name,
    start page, scope and icons, all served by the diary itself."""
    manifest = {
        "name": _("Symptom diary"),
        "short_name": _("Diary"),
        "id": url_for("participant.today"),
        "start_url": url_for("participant.today"),
        "scope": url_for("participant.today").rsplit("/", 1)[0] + "/",
        "display": "standalone",
        "background_color": "#ffffff",
        "theme_color": "#1f5f8b",
        "lang": get_locale().language,
        "icons": [
            {"src": asset("icon-192.png"), "sizes": "192x192", "type": "image/png", "purpose": "any"},
            {"src": asset("icon-512.png"), "sizes": "512x512", "type": "image/png", "purpose": "any"},
            {"src": asset("icon-maskable-512.png"), "sizes": "512x512", "type": "image/png", "purpose": "maskable"},
        ],
    }
    response = make_response(json.dumps(manifest, ensure_ascii=False))
    response.headers["Content-Type"] = "application/manifest+json; charset=utf-8"
    response.headers["Cache-Control"] = "no-cache"
    response.headers["Vary"] = "Cookie, Accept-Language"  # its language is the reader's
    return _revalidated(response)


@bp.get("/offline")
def offline():
    """The page the service worker shows when a page is asked for with no connection and no
    copy of it on the phone."""
    return render_template("participant/offline.html")
