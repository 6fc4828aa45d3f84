"""The coordinator's workspace: adherence, participants, dosing, side effects, corrections and
the audit trail (signing in is ``signin.py``). Views stay thin; the rules live in their own modules.

Coordinators are blinded: no page here shows a sequence or a treatment.
"""

from __future__ import annotations

import secrets
from zoneinfo import ZoneInfo

import segno
from flask import (
    Blueprint,
    abort,
    current_app,
    flash,
    g,
    make_response,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_babel import force_locale
from sqlalchemy import case, func, select

from ..dosing.infusions import plan_dose, record_dose, refuse_without_infusions
from ..entries.change_requests import decide, may_decide, open_request, open_requests
from ..entries.corrections import PARTICIPANT_VALUE, correct_value, correctable_items, stored_item_id
from ..entries.recording import InvalidAnswers, field_name, record_submission
from ..errors import Refused
from ..extensions import db
from ..governance import audit
from ..governance.actions import AlreadyDone, take_key
from ..governance.signoff import MEANING, sign_all, unsigned_periods
from ..governance.signoff import sign_period as sign_off_period
from ..governance.signoff import statuses as signature_statuses
from ..localtime import from_local_clock, local_datetime, plausible
from ..models import (
    Assessment,
    AuditEvent,
    ChangeRequest,
    FollowUpTask,
    Participant,
    Period,
    Reminder,
    SideEffectReport,
    StaffUser,
    now_utc,
)
from ..participants.enrolment import (
    change_contact,
    discontinue,
    enroll,
    participant_link,
    reissue_link,
    reveal_contact,
    revoke_link,
    withdraw,
)
from ..participants.pins import reset_pin
from ..reporting.adherence import SORTS, clamp_page, load_grid
from ..reporting.audit_review import CHECKS, REVIEWERS, record_review, reviews, run_checks
from ..reporting.participant_record import participant_record, staff_answers
from ..safety.alerts import break_code, broken_code, participant_by_code
from ..safety.follow_up import close_task, count_tasks, tasks
from ..safety.side_effects import acknowledge as acknowledge_report
from ..study.blinding import CODE_BREAKERS, blinding_for
from ..study.trial import protocol_of, require_study, site_contact
from ..vocabulary import (
    CHANGE_REQUEST_LABELS,
    FOLLOW_UP_LABELS,
    AssessmentState,
    AuditAction,
    FollowUpOutcome,
    Role,
    Severity,
    Source,
)
from .auth import roles_required
from .errors import render_error
from .forms import (
    AcknowledgeForm,
    AuditReviewForm,
    BaseForm,
    ChangeRequestForm,
    CodeBreakForm,
    ContactForm,
    CorrectionForm,
    DecisionForm,
    DiscontinueForm,
    DoseForm,
    EnrolForm,
    FollowUpForm,
    ProxyEntryForm,
    ReasonForm,
    SignPeriodForm,
    WithdrawForm,
)
from .times import staff_time

bp = Blueprint("staff", __name__, url_prefix="/staff")

READERS = (Role.COORDINATOR, Role.ANALYST, Role.ADMIN, Role.INVESTIGATOR)
COORDINATOR = (Role.COORDINATOR,)
EVERY_ROLE = tuple(Role)


def actor() -> str:
    return audit.staff_actor(g.staff)


# --- Adherence at a glance ---------------------------------------------------------------------


@bp.get("/")
@roles_required(*READERS)
def dashboard():
    study = require_study()
    site = request.args.get("site") or None
    attention = request.args.get("attention") == "1"
    search = (request.args.get("q") or "").strip()[:40]
    state = request.args.get("state") if request.args.get("state") in AssessmentState.__members__.values() else None
    sort = request.args.get("sort") if request.args.get("sort") in SORTS else "code"
    now = now_utc()
    grid = load_grid(
        study, now, site=site, attention_only=attention, search=search, state=state, sort=sort, page=_page_number()
    )
    query = {
        key: value
        for key, value in (
            ("site", site),
            ("attention", "1" if attention else None),
            ("q", search or None),
            ("state", state),
            ("sort", sort if sort != "code" else None),
        )
        if value
    }
    return render_template(
        "coordinator/dashboard.html",
        grid=grid,
        site=site,
        attention=attention,
        search=search,
        state=state,
        sort=sort,
        sorts=SORTS,
        query=query,
        now_is_past=lambda moment: now >= moment,
        tasks=tasks(study.id, limit=20),
        open_count=count_tasks(study.id),
        follow_up_form=FollowUpForm(),
        when=staff_time,
    )


LIST_PAGE = 50  # rows a page of the side-effect and follow-up lists


def _pages(total: int, size: int) -> tuple[int, int]:
    """(page, pages) for the page asked for in the address."""
    return clamp_page(_page_number(), total, size)


@bp.get("/follow-up")
@roles_required(*READERS)
def follow_up():
    """Every follow-up task, open ones (the most overdue first) or closed ones, a page at a time."""
    study = require_study()
    closed = request.args.get("closed") == "1"
    page, pages = _pages(total := count_tasks(study.id, closed=closed), LIST_PAGE)
    rows = tasks(study.id, closed=closed, limit=LIST_PAGE, offset=(page - 1) * LIST_PAGE)
    closers = dict(
        db.session.execute(
            select(StaffUser.id, StaffUser.email).where(
                StaffUser.id.in_({row[0].closed_by_id for row in rows if row[0].closed_by_id})
            )
        ).all()
    )
    now = now_utc()
    return render_template(
        "coordinator/follow_up.html",
        tasks=rows,
        total=total,
        page=page,
        pages=pages,
        closed=closed,
        query={"closed": "1"} if closed else {},
        closers=closers,
        outcome_labels={o.value: label for o, label in FOLLOW_UP_LABELS.items()},
        follow_up_form=FollowUpForm(),
        now_is_past=lambda moment: now >= moment,
        when=staff_time,
    )


@bp.post("/follow-up/<int:task_id>/close")
@roles_required(*COORDINATOR)
def close_follow_up(task_id):
    """Record how a follow-up call went; the task closes."""
    task = db.session.get(FollowUpTask, task_id)
    if task is None or task.participant.study_id != require_study().id:
        abort(404)
    form = FollowUpForm()
    if not form.validate_on_submit():
        flash("Say how the call went, with a note.", "error")
        return redirect(url_for(".dashboard")), 303
    try:
        close_task(task, form.outcome.data, form.note.data, by=g.staff, now=now_utc())
    except Refused as refusal:
        db.session.rollback()
        flash(refusal.message, "error")
        return redirect(url_for(".dashboard")), 303
    db.session.commit()
    flash(f"Follow-up of {task.participant.code} closed: {FOLLOW_UP_LABELS[FollowUpOutcome(task.outcome)].lower()}.")
    return redirect(url_for(".dashboard"))


@bp.route("/code-break", methods=["GET", "POST"])
@roles_required(*CODE_BREAKERS)
def code_break():
    """Break one participant's code in an emergency: audited, the site told, the rest blinded.
    The break is a POST answered by a redirect, so reloading the result breaks nothing again."""
    form = CodeBreakForm()
    if form.validate_on_submit():
        participant = participant_by_code(require_study().id, form.code.data)
        if participant is None:
            form.code.errors.append("No participant has that code.")
        else:
            try:
                break_code(participant, form.reason.data, by=g.staff, now=now_utc())
            except Refused as refusal:
                db.session.rollback()
                getattr(form, refusal.field or "reason").errors.append(refusal.message)
            else:
                db.session.commit()
                return redirect(url_for(".code_broken", code=participant.code), 303)
    return render_template(
        "coordinator/code_break.html", form=form, participant=None, revealed=None
    ), 422 if request.method == "POST" else 200


@bp.get("/code-break/<code>")
@roles_required(*CODE_BREAKERS)
def code_broken(code):
    """The treatments of a participant whose code this person broke (no new audit event)."""
    participant = _participant(code)
    try:
        revealed = broken_code(participant, g.staff)
    except Refused:
        return redirect(url_for(".code_break"))
    response = make_response(
        render_template("coordinator/code_break.html", form=None, participant=participant, revealed=revealed)
    )
    response.headers["Cache-Control"] = "no-store"
    return response


# --- Participants ------------------------------------------------------------------------------


def _participant(code: str) -> Participant:
    study = require_study()
    participant = db.session.scalar(
        select(Participant).where(Participant.study_id == study.id, Participant.code == code)
    )
    if participant is None:
        abort(404)
    return participant


@bp.get("/participants/<code>")
@roles_required(*READERS)
def participant(code):
    participant = _participant(code)
    now = now_utc()
    record = participant_record(participant, now, blinding_for(participant.study, g.staff.role))
    protocol = protocol_of(participant.study.current_protocol_version)
    signatures = signature_statuses([period.id for period in participant.periods])
    return render_template(
        "coordinator/participant.html",
        signatures=signatures,
        participant=participant,
        timeline=record.timeline,
        chart=record.chart,
        reports=record.reports,
        events=record.events,
        reminders=record.reminders,
        when=lambda t: staff_time(t, participant.timezone),
        answers=lambda values: staff_answers(protocol, values),
        reason_form=ReasonForm(),
        periods=participant.periods,
        with_infusions=protocol.has_infusions,
        now=now,
    )


@bp.post("/participants/<code>/contact/show")
@roles_required(Role.COORDINATOR)
def show_contact(code):
    """The phone and email, to make a call: shown on request, audited, never cached."""
    participant = _participant(code)
    if not BaseForm().validate_on_submit():
        abort(400)
    now = now_utc()
    reveal_contact(participant, by=g.staff, now=now)
    db.session.commit()
    reminders = db.session.scalars(
        select(Reminder)
        .join(Assessment)
        .join(Period)
        .where(Period.participant_id == participant.id)
        .order_by(Reminder.due_at.desc())
        .limit(20)
    ).all()
    response = make_response(
        render_template(
            "coordinator/contact.html",
            participant=participant,
            shown=True,
            now=now,
            reminders=reminders,
            form=None,
            when=lambda t: staff_time(t, participant.timezone),
        )
    )
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.route("/participants/<code>/contact", methods=["GET", "POST"])
@roles_required(Role.COORDINATOR)
def contact(code):
    """Correct a participant's email or phone, with a reason (audited, masked)."""
    participant = _participant(code)
    form = ContactForm(obj=participant if request.method == "GET" else None)
    if form.validate_on_submit():
        try:
            changed = change_contact(
                participant,
                email=form.email.data,
                phone=form.phone.data,
                reason=form.reason.data,
                by=g.staff,
                now=now_utc(),
            )
        except Refused as refusal:
            db.session.rollback()
            getattr(form, refusal.field or "reason").errors.append(refusal.message)
        else:
            db.session.commit()
            flash("Contact details saved." if changed else "Nothing changed.")
            return redirect(url_for(".participant", code=participant.code))
    return render_template(
        "coordinator/contact.html", participant=participant, shown=False, form=form
    ), 422 if request.method == "POST" else 200


@bp.route("/enrol", methods=["GET", "POST"])
@roles_required(*COORDINATOR)
def enrol():
    study = require_study()
    form = EnrolForm()
    sites = list(current_app.config.get("SITE_CONTACTS") or {}) or ["main"]
    form.site.choices = [(site, site) for site in sites]
    if request.method == "GET":
        form.timezone.data = current_app.config["DEFAULT_TIMEZONE"]
    if form.validate_on_submit():
        now = now_utc()
        try:
            take_key(form.posted_key, "enroll", actor=actor(), now=now)
            participant, token = enroll(
                study,
                site=form.site.data,
                timezone=form.timezone.data,
                email=form.email.data,
                phone=form.phone.data,
                reminder_from=form.reminder_from.data,
                reminder_until=form.reminder_until.data,
                language=form.language.data,
                told_treatment_order=form.tell_after_unblinding.data,
                sex=form.sex.data,
                birth_year=form.birth_year.data or None,
                actor=actor(),
                now=now,
            )
        except AlreadyDone as done:
            db.session.rollback()
            flash(done.message, "error")
            return redirect(url_for(".dashboard"))
        except Refused as refusal:
            db.session.rollback()
            # Shown beside the field it is about: contact details, or the site and its slots.
            getattr(form, refusal.field or "site", form.site).errors.append(refusal.message)
            return render_template("coordinator/enrol.html", form=form), refusal.status
        db.session.commit()
        return _show_link_once(participant, token, "Participant enrolled")
    return render_template("coordinator/enrol.html", form=form), 422 if request.method == "POST" else 200


# The personal link exists only in the response that created it (only its hash is stored). It
# travels to the page that shows it in the signed session, once: a reload of that page shows no
# link and repeats nothing.
ONE_TIME_LINK = "one_time_link"


def _show_link_once(participant: Participant, token: str, heading: str):
    session[ONE_TIME_LINK] = {"code": participant.code, "token": token, "heading": heading}
    return redirect(url_for(".link_sheet", code=participant.code), code=303)


@bp.get("/participants/<code>/link")
@roles_required(*COORDINATOR)
def link_sheet(code):
    """The link, its QR code and the printable sheet, shown once after enrolment or reissue."""
    participant = _participant(code)
    shown = session.get(ONE_TIME_LINK)
    if not shown or shown.get("code") != participant.code:
        flash(
            "The link is shown only once, right after it is made. To give the participant a new one, reissue the link.",
            "error",
        )
        return redirect(url_for(".participant", code=code))
    session.pop(ONE_TIME_LINK)
    link = participant_link(shown["token"])
    qr = segno.make(link, error="m").svg_inline(scale=5, dark="#1b1f24")
    # The sheet is the participant's: printed in their language (the staff notes stay English).
    with force_locale(participant.language):
        sheet = render_template(
            "coordinator/link_sheet.html",
            participant=participant,
            link=link,
            qr=qr,
            site_phone=site_contact(participant.site),
        )
    response = make_response(
        render_template("coordinator/link.html", participant=participant, sheet=sheet, heading=shown["heading"])
    )
    response.headers["Cache-Control"] = "no-store"  # the back button must not bring it back
    return response


def _confirmed_action(code: str, *, action: str, template: str, perform, done, form_class=None):
    """A confirmation page with a reason for an irreversible action, done once (its form key).

    ``perform(participant, form, now)`` does it."""
    participant = _participant(code)
    form = (form_class or ReasonForm)()
    if form.validate_on_submit():
        now = now_utc()
        try:
            take_key(form.posted_key, action, actor=actor(), now=now, participant_id=participant.id)
            result = perform(participant, form, now)
        except AlreadyDone as already:
            db.session.rollback()
            flash(already.message, "error")
            return redirect(url_for(".participant", code=code))
        except Refused as refusal:
            db.session.rollback()
            form.reason.errors.append(refusal.message)
            return render_template(template, form=form, participant=participant), refusal.status
        db.session.commit()
        return done(participant, result)
    return render_template(template, form=form, participant=participant), 422 if request.method == "POST" else 200


@bp.route("/participants/<code>/reissue-link", methods=["GET", "POST"])
@roles_required(*COORDINATOR)
def reissue(code):
    return _confirmed_action(
        code,
        action=AuditAction.REISSUE_LINK,
        template="coordinator/reissue.html",
        perform=lambda participant, form, now: reissue_link(
            participant, actor=actor(), now=now, reason=form.reason.data
        ),
        done=lambda participant, token: _show_link_once(
            participant, token, "New link issued; the old one no longer works"
        ),
    )


@bp.route("/participants/<code>/reset-pin", methods=["GET", "POST"])
@roles_required(*COORDINATOR)
def reset(code):
    def done(participant, _):
        flash(f"The PIN of {participant.code} is reset. They choose a new one when they next open their link.")
        return redirect(url_for(".participant", code=participant.code))

    return _confirmed_action(
        code,
        action=AuditAction.RESET_PIN,
        template="coordinator/reset_pin.html",
        perform=lambda participant, form, now: reset_pin(participant, actor=actor(), now=now, reason=form.reason.data),
        done=done,
    )


@bp.route("/participants/<code>/revoke-link", methods=["GET", "POST"])
@roles_required(*COORDINATOR)
def revoke(code):
    def done(participant, _):
        flash(
            f"The link of {participant.code} is revoked: their phone is signed out. Reissue a link to give a new one."
        )
        return redirect(url_for(".participant", code=participant.code))

    return _confirmed_action(
        code,
        action=AuditAction.REVOKE_LINK,
        template="coordinator/revoke_link.html",
        perform=lambda participant, form, now: revoke_link(
            participant, actor=actor(), now=now, reason=form.reason.data
        ),
        done=done,
    )


@bp.route("/participants/<code>/withdraw", methods=["GET", "POST"])
@roles_required(*COORDINATOR)
def withdraw_participant(code):
    def done(participant, marked):
        flash(f"{participant.code} is withdrawn; {marked} remaining entries are marked not applicable.")
        return redirect(url_for(".participant", code=participant.code))

    return _confirmed_action(
        code,
        action=AuditAction.WITHDRAW,
        template="coordinator/withdraw.html",
        form_class=WithdrawForm,
        perform=lambda participant, form, now: withdraw(
            participant,
            actor=actor(),
            now=now,
            reason=form.reason.data,
            category=form.category.data,
            decided_by=form.decided_by.data,
        ),
        done=done,
    )


@bp.route("/participants/<code>/discontinue", methods=["GET", "POST"])
@roles_required(*COORDINATOR)
def discontinue_participant(code):
    """The infusions stop (treatment discontinued); the diary, its reminders and follow-up continue."""

    def done(participant, _result):
        flash(f"{participant.code} has no more infusions; their diary continues with its remaining entries.")
        return redirect(url_for(".participant", code=participant.code))

    return _confirmed_action(
        code,
        action=AuditAction.DISCONTINUE,
        template="coordinator/discontinue.html",
        form_class=DiscontinueForm,
        perform=lambda participant, form, now: discontinue(
            participant,
            actor=actor(),
            now=now,
            reason=form.reason.data,
            category=form.category.data,
            decided_by=form.decided_by.data,
        ),
        done=done,
    )


# --- Dosing ------------------------------------------------------------------------------------


def _period_of(participant: Participant, number: int) -> Period:
    period = next((p for p in participant.periods if p.number == number), None)
    if period is None:
        abort(404)
    return period


def _dosing_page(code: str, number: int, planning: bool):
    """Plan an infusion ahead, or record (correct) its actual start: one form, two rules."""
    participant = _participant(code)
    period = _period_of(participant, number)
    try:
        refuse_without_infusions(protocol_of(participant.study.current_protocol_version))
    except Refused as refusal:
        return render_error(refusal.status, refusal.message)
    form = DoseForm()
    shown = period.planned_start if planning else period.dose_start
    if request.method == "GET" and shown is not None:
        form.start.data = shown.astimezone(ZoneInfo(participant.timezone)).replace(tzinfo=None)
    if form.validate_on_submit():
        start = from_local_clock(form.start.data, participant.timezone)
        if not plausible(form.start.data):
            form.start.errors.append("That date is not plausible for this study; please check the year.")
        elif start is None:
            form.start.errors.append(
                f"That time does not exist in {participant.timezone} (the clocks skipped it that day)."
            )
        else:
            rule = plan_dose if planning else record_dose
            now = now_utc()
            try:
                take_key(
                    form.posted_key,
                    "plan_dose" if planning else "record_dose",
                    actor=actor(),
                    now=now,
                    participant_id=participant.id,
                )
                rule(participant, number, start, actor=actor(), now=now, reason=form.reason.data)
            except AlreadyDone as already:
                db.session.rollback()
                flash(already.message, "error")
                return redirect(url_for(".participant", code=code))
            except Refused as refusal:
                db.session.rollback()
                form.start.errors.append(refusal.message)
            else:
                db.session.commit()
                verb = "planned for" if planning else "recorded at"
                flash(
                    f"Infusion {number} of {participant.code} {verb} "
                    f"{local_datetime(start, participant.timezone)} ({participant.timezone})."
                )
                return redirect(url_for(".participant", code=code))
    status = 422 if request.method == "POST" else 200
    planned_local = (
        period.planned_start.astimezone(ZoneInfo(participant.timezone)).strftime("%Y-%m-%d %H:%M")
        if period.planned_start
        else None
    )
    return render_template(
        "coordinator/dose.html",
        form=form,
        participant=participant,
        period=period,
        planning=planning,
        planned_local=planned_local,
    ), status


@bp.route("/participants/<code>/dose/<int:number>", methods=["GET", "POST"])
@roles_required(*COORDINATOR)
def dose(code, number):
    return _dosing_page(code, number, planning=False)


@bp.route("/participants/<code>/plan/<int:number>", methods=["GET", "POST"])
@roles_required(*COORDINATOR)
def plan(code, number):
    return _dosing_page(code, number, planning=True)


# --- Entries on the participant's behalf, and corrections --------------------------------------


def _assessment(assessment_id: int) -> Assessment:
    assessment = db.session.get(Assessment, assessment_id)
    if assessment is None or assessment.period.participant.study_id != require_study().id:
        abort(404)
    return assessment


@bp.route("/assessments/<int:assessment_id>/enter", methods=["GET", "POST"])
@roles_required(*COORDINATOR)
def enter(assessment_id):
    """Enter a missed assessment from a phone interview or paper form, with a reason."""
    assessment = _assessment(assessment_id)
    participant = assessment.period.participant
    if assessment.submission is not None:
        flash("This assessment already has an entry; correct a value instead.")
        return redirect(url_for(".participant", code=participant.code))
    protocol = protocol_of(assessment.protocol_version)
    timepoint = protocol.timepoint(assessment.timepoint)
    meta = ProxyEntryForm()
    errors: dict[str, str] = {}
    if request.method == "POST":
        if meta.validate_on_submit():
            collected = from_local_clock(meta.collected.data, participant.timezone)
            try:
                if not plausible(meta.collected.data):
                    raise Refused("That date is not plausible for this study; please check the year.")
                if collected is None:
                    raise Refused(
                        f"That time does not exist in {participant.timezone} (the clocks skipped it that day)."
                    )
                record_submission(
                    assessment,
                    request.form,
                    now=now_utc(),
                    actor=actor(),
                    source=meta.source.data,
                    reason=meta.reason.data,
                    entered_by_id=g.staff.id,
                    collected_at=collected,
                    idempotency_key=request.form.get("idempotency_key") or None,
                )
            except InvalidAnswers as invalid:
                db.session.rollback()
                errors = invalid.errors
            except Refused as refusal:
                db.session.rollback()
                meta.collected.errors.append(refusal.message)
            else:
                db.session.commit()
                flash(
                    f"{timepoint.label} of infusion {assessment.period.number} entered "
                    f"({meta.source.data.replace('_', ' ')})."
                )
                return redirect(url_for(".participant", code=participant.code))
    status = 422 if request.method == "POST" else 200
    return render_template(
        "coordinator/enter.html",
        assessment=assessment,
        participant=participant,
        timepoint=timepoint,
        instruments=protocol.instruments_for(timepoint),
        meta=meta,
        errors=errors,
        form=request.form,
        field_name=field_name,
        when=lambda t: staff_time(t, participant.timezone),
        key=request.form.get("idempotency_key") or secrets.token_hex(16),
    ), status


@bp.route("/assessments/<int:assessment_id>/correct", methods=["GET", "POST"])
@roles_required(*COORDINATOR)
def correct(assessment_id):
    """A value the study team entered, corrected with a reason. A participant's own entry
    changes only through a change request an investigator approves."""
    assessment = _assessment(assessment_id)
    submission = assessment.submission
    participant = assessment.period.participant
    if submission is None:
        abort(404)
    if submission.source == Source.PARTICIPANT:
        if request.method == "GET":
            return redirect(url_for(".request_change", assessment_id=assessment_id))
        raise Refused(PARTICIPANT_VALUE, status=403)
    items = correctable_items(submission)
    form = CorrectionForm()
    form.item.choices = [(key, label) for key, label, _, _ in items]
    if form.validate_on_submit():
        try:
            correct_value(
                submission, form.item.data, form.value.data or "", reason=form.reason.data, actor=actor(), now=now_utc()
            )
        except Refused as refusal:
            db.session.rollback()
            form.value.errors.append(refusal.message)
        else:
            db.session.commit()
            flash("The value is corrected; the old value is kept in the audit trail.")
            return redirect(url_for(".participant", code=participant.code))
    current = {(v.instrument, v.item): v.value for v in submission.values}
    values = [
        (label, current.get((instrument.id, stored_item_id(item)), "—")) for key, label, instrument, item in items
    ]
    status = 422 if request.method == "POST" else 200
    return render_template(
        "coordinator/correct.html", form=form, assessment=assessment, participant=participant, values=values
    ), status


# --- The investigator's control: change requests and sign-off -----------------------------------

REQUESTERS = (Role.COORDINATOR, Role.INVESTIGATOR)
INVESTIGATOR = (Role.INVESTIGATOR,)
SIGNATURE_TEXT = {
    "not_signed": "not signed",
    "signed": "signed",
    "waived": "waived",
    "invalid": "changed since signed: to re-sign",
}


@bp.route("/assessments/<int:assessment_id>/request-change", methods=["GET", "POST"])
@roles_required(*REQUESTERS)
def request_change(assessment_id):
    """Ask for a participant's value to change: the source, its time and the proposed value."""
    assessment = _assessment(assessment_id)
    submission = assessment.submission
    participant = assessment.period.participant
    if submission is None:
        abort(404)
    items = correctable_items(submission)
    form = ChangeRequestForm()
    form.item.choices = [(key, label) for key, label, _, _ in items]
    status = 422 if request.method == "POST" else 200
    if form.validate_on_submit():
        source_at = from_local_clock(form.source_at.data, participant.timezone)
        try:
            if not plausible(form.source_at.data) or source_at is None:
                raise Refused("That date and time is not plausible on the participant's clock; please check it.")
            change_request = open_request(
                submission,
                form.item.data,
                form.value.data or "",
                kind=form.kind.data,
                source=form.source.data,
                source_at=source_at,
                reason=form.reason.data,
                by=g.staff,
                now=now_utc(),
            )
        except Refused as refusal:
            db.session.rollback()
            form.value.errors.append(refusal.message)
            status = refusal.status if refusal.status != 400 else 422
        else:
            db.session.commit()
            flash(
                f"Change request {change_request.id} is waiting for an investigator; the value is unchanged until then."
            )
            return redirect(url_for(".participant", code=participant.code))
    current = {(v.instrument, v.item): v.value for v in submission.values}
    values = [
        (label, current.get((instrument.id, stored_item_id(item)), "—")) for key, label, instrument, item in items
    ]
    return render_template(
        "coordinator/request_change.html", form=form, assessment=assessment, participant=participant, values=values
    ), status


@bp.get("/change-requests")
@roles_required(*REQUESTERS)
def change_requests():
    study = require_study()
    waiting = open_requests(study.id, site=g.staff.site if g.staff.role == Role.INVESTIGATOR else None)
    return render_template(
        "coordinator/change_requests.html",
        requests=waiting,
        form=DecisionForm(),
        may_decide=lambda change_request: may_decide(g.staff, change_request),
        labels=CHANGE_REQUEST_LABELS,
    )


def _reauthenticated(perform, back: str):
    """Run a signing action. A wrong password or code is kept (it counts toward the throttle and
    is audited) and said on the page it came from; a refusal of the action itself is its page."""
    try:
        perform()
    except Refused as refusal:
        if refusal.status in (401, 429):
            db.session.commit()
        else:
            db.session.rollback()
        if refusal.status in (401, 422, 429, 400):
            flash(refusal.message, "error")
            return redirect(back, 303)
        return render_error(refusal.status, refusal.message)
    db.session.commit()
    return None


@bp.post("/change-requests/<int:request_id>/decide")
@roles_required(*INVESTIGATOR)
def decide_change(request_id):
    change_request = db.session.get(ChangeRequest, request_id)
    if change_request is None or change_request.submission.assessment.period.participant.study_id != require_study().id:
        abort(404)
    form = DecisionForm()
    if not form.validate_on_submit():
        flash("Give your password and a code from your authenticator app.", "error")
        return redirect(url_for(".change_requests"), 303)
    refused = _reauthenticated(
        lambda: decide(
            change_request,
            approve=form.decision.data == "approve",
            note=form.note.data,
            by=g.staff,
            password=form.password.data,
            code=form.code.data,
            now=now_utc(),
        ),
        url_for(".change_requests"),
    )
    if refused:
        return refused
    flash(f"Change request {change_request.id} is {change_request.state}.")
    return redirect(url_for(".change_requests"))


@bp.get("/sign-off")
@roles_required(*INVESTIGATOR)
def sign_off():
    """The periods of this investigator's site to sign, and those to re-sign after a change."""
    study = require_study()
    waiting = [
        (period, status)
        for period, status in unsigned_periods(study.id)
        if g.staff.site is None or period.participant.site == g.staff.site
    ]
    return render_template("coordinator/sign_off.html", waiting=waiting, form=SignPeriodForm(), meaning=MEANING)


@bp.post("/periods/<int:period_id>/sign")
@roles_required(*INVESTIGATOR)
def sign_period(period_id):
    period = db.session.get(Period, period_id)
    if period is None or period.participant.study_id != require_study().id:
        abort(404)
    form = SignPeriodForm()
    back = request.form.get("back") or url_for(".sign_off")
    if not back.startswith("/staff/"):
        back = url_for(".sign_off")
    if not form.validate_on_submit():
        flash("Give your password and a code from your authenticator app.", "error")
        return redirect(back, 303)
    refused = _reauthenticated(
        lambda: sign_off_period(
            period,
            by=g.staff,
            password=form.password.data,
            code=form.code.data,
            now=now_utc(),
            kind=form.kind.data,
            reason=form.reason.data,
        ),
        back,
    )
    if refused:
        return refused
    flash(f"{period.participant.code}, infusion {period.number}: {form.kind.data}.")
    return redirect(back)


@bp.post("/sign-off/all")
@roles_required(*INVESTIGATOR)
def sign_all_periods():
    """Sign every listed period that has data (or waive them all, with one reason): one
    re-authentication, one signature and audit event per period."""
    study = require_study()
    form = SignPeriodForm()
    if not form.validate_on_submit():
        flash("Give your password and a code from your authenticator app.", "error")
        return redirect(url_for(".sign_off"), 303)
    periods = [
        period
        for period, _status in unsigned_periods(study.id)
        if g.staff.site is None or period.participant.site == g.staff.site
    ]
    done = []
    refused = _reauthenticated(
        lambda: done.append(
            sign_all(
                periods,
                by=g.staff,
                password=form.password.data,
                code=form.code.data,
                now=now_utc(),
                kind=form.kind.data,
                reason=form.reason.data,
            )
        ),
        url_for(".sign_off"),
    )
    if refused:
        return refused
    flash(f"{done[0]} participant-periods {form.kind.data}.")
    return redirect(url_for(".sign_off"))


# --- Risk-based review of the audit trail ------------------------------------------------------


@bp.route("/audit-review", methods=["GET", "POST"])
@roles_required(*REVIEWERS)
def audit_review():
    """The named checks over the audit trail, each with its cases, and the review log."""
    study = require_study()
    now = now_utc()
    form = AuditReviewForm()
    status = 200
    if form.validate_on_submit():
        try:
            record_review(study, form.check.data, form.note.data, by=g.staff, now=now)
        except Refused as refusal:
            db.session.rollback()
            flash(refusal.message, "error")
            status = refusal.status
        else:
            db.session.commit()
            flash(f"Review of {form.check.data} recorded.")
            return redirect(url_for(".audit_review"))
    elif request.method == "POST":
        flash("A review needs a note.", "error")
        status = 422
    return render_template(
        "coordinator/audit_review.html", checks=CHECKS, found=run_checks(study, now), reviews=reviews(study)
    ), status


# --- Side effects ------------------------------------------------------------------------------


@bp.get("/side-effects")
@roles_required(*COORDINATOR)
def side_effects():
    """New reports first, severe and alerting ones at the top of those; a page at a time."""
    show_all = request.args.get("all") == "1"
    filters = [Participant.study_id == require_study().id]
    if not show_all:
        filters.append(SideEffectReport.acknowledged_at.is_(None))
    total = db.session.scalar(
        select(func.count())
        .select_from(SideEffectReport)
        .join(Period, SideEffectReport.period_id == Period.id)
        .join(Participant, Period.participant_id == Participant.id)
        .where(*filters)
    )
    page, pages = _pages(total, LIST_PAGE)
    severity_rank = case(
        (SideEffectReport.alert.is_(True), 0),
        (SideEffectReport.severity == Severity.SEVERE, 0),
        (SideEffectReport.severity == Severity.MODERATE, 1),
        else_=2,
    )
    rows = db.session.execute(
        select(SideEffectReport, Participant.code, Period.number)
        .join(Period, SideEffectReport.period_id == Period.id)
        .join(Participant, Period.participant_id == Participant.id)
        .where(*filters)
        .order_by(
            SideEffectReport.acknowledged_at.is_not(None),
            severity_rank,
            SideEffectReport.reported_at.desc(),
            SideEffectReport.id.desc(),
        )
        .limit(LIST_PAGE)
        .offset((page - 1) * LIST_PAGE)
    ).all()
    acknowledgers = dict(
        db.session.execute(
            select(StaffUser.id, StaffUser.email).where(
                StaffUser.id.in_({report.acknowledged_by_id for report, _, _ in rows if report.acknowledged_by_id})
            )
        ).all()
    )
    return render_template(
        "coordinator/side_effects.html",
        rows=rows,
        form=AcknowledgeForm(),
        now=now_utc(),
        show_all=show_all,
        acknowledgers=acknowledgers,
        total=total,
        page=page,
        pages=pages,
        query={"all": "1"} if show_all else {},
    )


@bp.post("/side-effects/<int:report_id>/acknowledge")
@roles_required(*COORDINATOR)
def acknowledge(report_id):
    report = db.session.get(SideEffectReport, report_id)
    if report is None or report.period.participant.study_id != require_study().id:
        abort(404)
    form = AcknowledgeForm()
    if not form.validate_on_submit():
        flash("An acknowledgement needs a note.", "error")
        return redirect(url_for(".side_effects")), 303
    try:
        acknowledge_report(report, form.note.data, by=g.staff, now=now_utc(), state=form.state.data)
    except Refused as refusal:
        db.session.rollback()
        flash(refusal.message, "error")
        return redirect(url_for(".side_effects")), 303
    db.session.commit()
    flash("Acknowledged.")
    return redirect(url_for(".side_effects"))


# --- Audit trail -------------------------------------------------------------------------------


def _page_number() -> int:
    """?page=N, clamped to what a page number can be (never an overflow)."""
    try:
        return min(MAX_PAGE, max(1, int(request.args.get("page", 1))))
    except ValueError:
        return 1


AUDIT_PAGE = 100
MAX_PAGE = 1_000_000  # page numbers beyond any trial's audit trail are clamped, never overflow


@bp.get("/audit")
@roles_required(*READERS)
def audit_trail():
    hidden = blinding_for(require_study(), g.staff.role).hidden_audit_actions
    filters = [AuditEvent.action.not_in(hidden)]
    code = request.args.get("participant", "").strip()
    action = request.args.get("action", "").strip()
    who = request.args.get("actor", "").strip()
    if code:
        filters.append(AuditEvent.participant_id.in_(select(Participant.id).where(Participant.code == code)))
    if action:
        filters.append(AuditEvent.action == action)
    if who:
        filters.append(AuditEvent.actor.contains(who))
    page = _page_number()
    events = db.session.execute(
        select(AuditEvent, Participant.code)
        .outerjoin(Participant, AuditEvent.participant_id == Participant.id)
        .where(*filters)
        .order_by(AuditEvent.at.desc(), AuditEvent.id.desc())
        .limit(AUDIT_PAGE + 1)
        .offset((page - 1) * AUDIT_PAGE)
    ).all()
    actions = db.session.scalars(
        select(func.distinct(AuditEvent.action)).where(AuditEvent.action.not_in(hidden)).order_by(AuditEvent.action)
    ).all()
    return render_template(
        "coordinator/audit.html",
        events=events[:AUDIT_PAGE],
        more=len(events) > AUDIT_PAGE,
        page=page,
        actions=actions,
        code=code,
        action=action,
        who=who,
    )
