"""Entries: validating answers against the protocol and storing a submission exactly once."""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from flask_babel import gettext as _
from itsdangerous import BadSignature, URLSafeSerializer
from sqlalchemy import String, Text, bindparam, func, insert, select, true
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import make_transient_to_detached
from sqlalchemy.orm.attributes import set_committed_value

from ..database import write_from_here
from ..dosing.assessments import open_until_the_infusion, waits_for_the_infusion
from ..errors import Refused
from ..events import entry_completed
from ..extensions import db
from ..governance import audit
from ..i18n import DEFAULT_LANGUAGE
from ..models import Assessment, AuditEvent, ItemValue, SideEffectReport, Submission
from ..protocol.model import Instrument, Item, Protocol, in_language
from ..protocol.schedule import accepting_entries
from ..safety.alerts import alert_severe_answers, review_due
from ..study.trial import protocol_of
from ..vocabulary import AuditAction, ItemType, Severity, Source, SubmissionMode

# ASCII digits only: str.isdigit() accepts characters such as "²" that int() refuses.
_WHOLE_NUMBER = re.compile(r"^-?[0-9]{1,9}$", re.ASCII)


@dataclass
class Answers:
    """Validated answers: (instrument, item) -> value text, plus per-field problems."""

    values: dict[tuple[str, str], str] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    alerts: list[str] = field(default_factory=list)


class InvalidAnswers(Refused):
    def __init__(self, errors: dict[str, str]):
        super().__init__("Some answers need another look.", status=422)
        self.errors = errors


def field_name(instrument: Instrument, item: Item, term: str | None = None) -> str:
    """The form field for an item (and a checklist term): stable, readable, used by the pages."""
    return f"{instrument.id}.{item.id}" + (f".{term}" if term else "")


def validate_answers(protocol: Protocol, timepoint_code: str, form, language: str = DEFAULT_LANGUAGE) -> Answers:
    """Check a submitted form against the time point's instruments.

    ``form`` is any mapping of field name to text (``request.form`` or a dict). Unknown fields
    are ignored; every known field is checked for presence, type and range.
    """
    answers = Answers()
    timepoint = protocol.timepoint(timepoint_code)
    for instrument in protocol.instruments_for(timepoint):
        for item in instrument.items:
            _validate_item(instrument, item, form, answers, language)
    return answers


def _validate_item(
    instrument: Instrument, item: Item, form, answers: Answers, language: str = DEFAULT_LANGUAGE
) -> None:
    name = field_name(instrument, item)
    if item.type == ItemType.SEVERITY_CHECKLIST:
        for term in item.terms:
            term_name = field_name(instrument, item, term.code)
            raw = (form.get(term_name) or "").strip()
            if raw == "":
                if item.required:
                    answers.errors[term_name] = _(
                        "Please choose none, mild, moderate or severe for %(term)s.",
                        term=in_language(term.label, language).lower(),
                    )
                continue
            if raw not in Severity.__members__.values():
                answers.errors[term_name] = _(
                    "Please choose none, mild, moderate or severe for %(term)s.",
                    term=in_language(term.label, language).lower(),
                )
                continue
            answers.values[(instrument.id, f"{item.id}.{term.code}")] = raw
            if raw in item.alert_values:
                answers.alerts.append(f"{term.label}: {raw}")
        return
    raw = form.get(name)
    raw = "" if raw is None else str(raw)
    if item.type == ItemType.VAS and form.get(f"{name}.touched") not in ("1", "true", "yes"):
        # An untouched slider is "not answered", never a silent midpoint.
        raw = ""
    text = raw.strip()
    if text == "":
        if item.required:
            answers.errors[name] = (
                _("Please move the slider to answer.")
                if item.type == ItemType.VAS
                else _("Please answer this question.")
            )
        return
    if item.type in (ItemType.VAS, ItemType.NRS):
        low, high = item.range
        if not _WHOLE_NUMBER.match(text):
            answers.errors[name] = _("Please give a whole number from %(low)s to %(high)s.", low=low, high=high)
            return
        number = int(text)
        if not low <= number <= high:
            answers.errors[name] = _("Please give a whole number from %(low)s to %(high)s.", low=low, high=high)
            return
        text = str(number)
    elif item.type == ItemType.SINGLE_CHOICE:
        if text not in {choice.code for choice in item.choices}:
            answers.errors[name] = _("Please pick one of the choices.")
            return
    elif item.type == ItemType.FREE_TEXT:
        if len(raw) > item.max_length:
            answers.errors[name] = _(
                "Please keep this to %(most)s characters (you wrote %(count)s).", most=item.max_length, count=len(raw)
            )
            return
        text = raw.strip()
    answers.values[(instrument.id, item.id)] = text
    if text in item.alert_values:
        answers.alerts.append(f"{item.text} {text}")


def _waits_for_the_infusion(assessment: Assessment) -> bool:
    period = assessment.period
    return waits_for_the_infusion(
        target=assessment.target, dose_start=period.dose_start, planned_start=period.planned_start
    )


def _open_until_the_infusion(assessment: Assessment) -> bool:
    period = assessment.period
    return open_until_the_infusion(
        target=assessment.target, dose_start=period.dose_start, planned_start=period.planned_start
    )


def window_refusal(assessment: Assessment, now: datetime, opens: str | None = None) -> str | None:
    """Why a participant cannot make this entry at ``now``, or None when they can (rule 2).

    ``opens`` is the local opening time, when the caller can say it in the participant's words.
    """
    if assessment.not_applicable:
        return _("This entry is no longer needed.")
    if _waits_for_the_infusion(assessment):
        return _("This entry opens after your infusion has started.")
    if now < assessment.window_open:
        return (
            _("This entry is not open yet. It opens %(when)s.", when=opens)
            if opens
            else _("This entry is not open yet. Please come back when it opens.")
        )
    if not accepting_entries(
        window_open=assessment.window_open,
        late_close=assessment.late_close,
        now=now,
        until_the_infusion=_open_until_the_infusion(assessment),
    ):
        return _(
            "Sorry, the time for this entry has passed, so it cannot be saved. "
            "That is all right: just do the next one when it opens."
        )


OUTSIDE_WINDOW = (
    "The answers were given outside this entry's window, so they cannot be entered: an answer "
    "given outside its window is missing data, not a late entry."
)


def collection_refusal(assessment: Assessment, collected_at: datetime | None, now: datetime) -> str | None:
    """Why staff cannot enter answers given at ``collected_at`` on a participant's behalf."""
    if collected_at is None:
        return "Give the date and time the answers were given (the paper's date, or when the call took place)."
    if collected_at > now:
        return "The answers cannot have been given in the future."
    if _waits_for_the_infusion(assessment):
        return "Record the infusion start before entering answers given after it."
    if not accepting_entries(
        window_open=assessment.window_open,
        late_close=assessment.late_close,
        now=collected_at,
        until_the_infusion=_open_until_the_infusion(assessment),
    ):
        return OUTSIDE_WINDOW
    return None


# --- The stamp an entry form carries ---------------------------------------------------------
# No server can make a phone's clock honest. What it can do is bound what a set-back clock gains:
# each entry form it serves carries a stamp it signed (which entry, whose, when served); an entry
# made offline counts only with the stamp of a form served while that entry's window was open,
# and only if it claims to have been made after the form was served.

STAMP_SALT = "diary-entry-stamp"


def entry_stamp(assessment: Assessment, participant_id: int, now: datetime, secret: str) -> str:
    """The signed stamp of a form served ``now`` for ``assessment``."""
    return URLSafeSerializer(secret, salt=STAMP_SALT).dumps(
        {"a": assessment.id, "p": participant_id, "s": now.isoformat()}
    )


def stamp_refusal(
    assessment: Assessment, participant_id: int, stamp: str | None, made_at: datetime, secret: str
) -> str | None:
    """Why an offline entry's form stamp does not let it count, or None: a stamp the server
    signed, for this entry and participant, from a form served while the window was open, and
    an entry made (by the phone's corrected clock) after that."""
    try:
        data = URLSafeSerializer(secret, salt=STAMP_SALT).loads(stamp or "")
        served_at = datetime.fromisoformat(data["s"])
        mine = data["a"] == assessment.id and data["p"] == participant_id
    except (BadSignature, KeyError, TypeError, ValueError):
        mine, served_at = False, None
    if not mine:
        return _("This entry was not made on a form the diary gave for it, so it cannot be counted.")
    if not (
        assessment.window_open <= served_at
        and (served_at <= assessment.late_close or _open_until_the_infusion(assessment))
    ):
        return _("This entry's form was opened when the entry was not open, so it cannot be counted.")
    if made_at < served_at:
        return _("The answers cannot have been given before the form was opened.")
    return None


def offline_refusal(
    assessment: Assessment,
    *,
    made_at: datetime,
    device_now: datetime,
    now: datetime,
    grace: timedelta,
    clock_tolerance: timedelta,
) -> str | None:
    """Why an entry made on the phone without a connection cannot count, or None when it can.

    It counts when the phone's clock, measured against the server's as it is sent, is within
    ``clock_tolerance``; it reached the server within the protocol's offline ``grace`` of being
    made; and it was made inside its window (plus the late grace). The phone's times are
    corrected by the measured offset first, so a slightly wrong clock does not move an entry.
    """
    offset = now - device_now
    if abs(offset) > clock_tolerance:
        return _(
            "This phone's clock is %(minutes)d minutes away from the real time, so the time of this entry "
            "cannot be trusted and it was not saved. Please set the phone's clock to automatic.",
            minutes=round(abs(offset).total_seconds() / 60),
        )
    made_at = made_at + offset
    if made_at > now:
        return _("The answers cannot have been given in the future.")
    if now - made_at > grace:
        return _(
            "This entry was kept on the phone for more than %(hours)d hours before it could be sent, so it "
            "cannot be counted. Your study team can see that it was made.",
            hours=round(grace.total_seconds() / 3600),
        )
    return window_refusal(assessment, made_at)


# The browsers a participant's phone may run, as their User-Agent names them (order matters:
# Edge and Samsung Internet also say "Chrome", Chrome on iPhone says "Safari").
_BROWSERS = (
    ("Samsung Internet", r"SamsungBrowser/(\d+)"),
    ("Edge", r"Edg(?:A|iOS)?/(\d+)"),
    ("Firefox", r"(?:Firefox|FxiOS)/(\d+)"),
    ("Chrome", r"(?:CriOS|Chrome)/(\d+)"),
    ("Safari", r"Version/(\d+)[.\d]* (?:Mobile/\S+ )?Safari/"),
)
# Plausible ranges of what a browser reports; anything else is not stored (never refused: the
# answers matter, the device facts are evidence about them).
_DEVICE_RANGES = {
    "viewport_width": (100, 10000),
    "viewport_height": (100, 10000),
    "device_pixel_ratio": (0.25, 10.0),
    "zoom": (0.1, 10.0),
    "text_scale": (0.25, 5.0),
}


DEVICE_COLUMNS = (*_DEVICE_RANGES, "browser")


def device_facts(reported, user_agent: str | None) -> dict:
    """The device an entry was answered on: the page's size, pixel ratio, zoom and text scale as
    the page reported them (``reported``: a mapping, or its JSON), and the browser family and
    major version from the User-Agent. Values out of range or of the wrong type are left out."""
    if isinstance(reported, str):
        try:
            reported = json.loads(reported) if len(reported) < 500 else {}
        except ValueError:
            reported = {}
    reported = reported if isinstance(reported, dict) else {}
    facts = {}
    for name, (low, high) in _DEVICE_RANGES.items():
        value = reported.get(name)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            continue
        if low <= value <= high:
            facts[name] = int(round(value)) if name.startswith("viewport") else round(float(value), 3)
    agent = (user_agent or "")[:500]
    for family, pattern in _BROWSERS:
        found = re.search(pattern, agent)
        if found:
            facts["browser"] = f"{family} {int(found.group(1))}"
            break
    return facts


# The columns a submit writes, in the one order both write forms (SQLite statements and the
# PostgreSQL single statement) use: a column added here is written on both engines.
# Every column of a submission but its id, read from the table: both write paths (SQLite's
# statements and PostgreSQL's single statement) store exactly these, and ``record_submission``
# refuses to build a row that leaves one out, so a new column cannot be dropped on one database.
SUBMISSION_COLUMNS = tuple(column.name for column in Submission.__table__.c if column.name != "id")


def record_submission(
    assessment: Assessment,
    form,
    *,
    now: datetime,
    actor: str,
    source: str = Source.PARTICIPANT,
    idempotency_key: str | None = None,
    device_time: str | None = None,
    entered_by_id: int | None = None,
    reason: str | None = None,
    collected_at: datetime | None = None,
    made_offline_at: datetime | None = None,
    device: dict | None = None,
    language: str = DEFAULT_LANGUAGE,
) -> tuple[Submission, bool]:
    """Store a submission for ``assessment`` once. Returns (submission, created).

    A retried request with the same idempotency key returns the stored submission and stores
    nothing. Participants are held to the window at ``now``, and their answers are collected at
    ``now``; staff entering on the participant's behalf need a source, a reason and the time the
    answers were given (``collected_at``), which must lie inside the window plus its grace.
    Nothing is stored unless all is valid.
    """
    stored = assessment.submission
    if stored is not None:
        if idempotency_key and stored.idempotency_key == idempotency_key:
            return stored, False  # a retry of the request that stored it
        raise Refused(_("This entry has already been saved. It cannot be changed here."), status=409)
    # A key already used for another entry is found by its unique constraint below (no query
    # ahead of every submit for a case that a hand-made request alone can make).
    if assessment.not_applicable:
        raise Refused(_("This entry is no longer needed."), status=409)
    if source == Source.PARTICIPANT:
        # An entry made without a connection is judged when it was made (``offline_refusal``
        # has checked the phone's clock and the offline grace); any other at its arrival.
        collected_at = made_offline_at or now
        refusal = window_refusal(assessment, collected_at)
        if refusal:
            raise Refused(refusal, status=409)
        mode = SubmissionMode.OFFLINE_SYNC if made_offline_at else SubmissionMode.ONLINE
    else:
        if source not in Source.proxies():
            raise Refused(f"Unknown source '{source}'.")
        if not (reason and reason.strip()):
            raise Refused("Entering data on a participant's behalf needs a reason.")
        refusal = collection_refusal(assessment, collected_at, now)
        if refusal:
            raise Refused(refusal, status=409 if refusal == OUTSIDE_WINDOW else 422)
        mode = SubmissionMode.STAFF

    protocol = protocol_of(assessment.protocol_version)
    answers = validate_answers(protocol, assessment.timepoint, form, language)
    if answers.errors:
        raise InvalidAnswers(answers.errors)

    write_from_here(db.session.connection())  # the checks are done: the write lock from here on
    if db.session.new or db.session.dirty:
        db.session.flush()  # the Core statements below see only what is in the database (ids too)
    period = assessment.period
    device = device or {}
    row = dict(
        assessment_id=assessment.id,
        submitted_at=now,
        collected_at=collected_at,
        device_time=(device_time or None) and device_time[:64],
        source=source,
        reason=reason.strip() if reason else None,
        entered_by_id=entered_by_id,
        idempotency_key=idempotency_key or None,
        alert=bool(answers.alerts),
        submission_mode=mode,
        **{name: device.get(name) for name in DEVICE_COLUMNS},
    )
    if set(row) != set(SUBMISSION_COLUMNS):  # a column added to the table and not filled in here
        raise RuntimeError(f"A submission row must fill every column: {sorted(set(SUBMISSION_COLUMNS) ^ set(row))}")
    event = audit.row(
        actor=actor,
        action=AuditAction.SUBMIT if source == Source.PARTICIPANT else AuditAction.PROXY_ENTRY,
        entity="submission",
        entity_id=None,
        participant_id=period.participant_id,
        field=f"period {period.number} {assessment.timepoint}",
        now=now,
        new=answers_summary(answers.values)
        + (f"; collected {collected_at.isoformat()}" if collected_at != now else "")
        + ("; made offline, sent when the connection came back" if made_offline_at else ""),
        reason=row["reason"],
    )
    try:
        submission_id = _store(row, answers.values, event)
        # Handed to the session as if loaded: the ORM's unit of work was most of a submit's time
        # (the rest of the submit reads the object).
        submission = Submission(id=submission_id, **row)
        make_transient_to_detached(submission)
        db.session.add(submission)
        set_committed_value(assessment, "submission", submission)
        set_committed_value(submission, "assessment", assessment)
        # Added to the session; they reach the database with the commit (nothing here needs their ids).
        reports = _side_effect_reports(protocol, assessment, submission, answers, collected_at)
    except IntegrityError:
        # Another request stored this assessment first (a double tap that raced us).
        db.session.rollback()
        if idempotency_key:
            earlier = db.session.scalar(select(Submission).where(Submission.idempotency_key == idempotency_key))
            if earlier is not None:
                if earlier.assessment_id != assessment.id:
                    raise Refused(_("This form was already used for another entry."), status=409) from None
                return earlier, False
        if db.session.scalar(select(Submission.id).where(Submission.assessment_id == assessment.id)):
            raise Refused(_("This entry has already been saved. It cannot be changed here."), status=409) from None
        raise
    alert_severe_answers(
        submission,
        reports,
        period.participant,
        now=now,
        period=period.number,
        timepoint_label=protocol.timepoint(assessment.timepoint).label,
    )
    return submission, True


def _store(row: dict, values: dict[tuple[str, str], str], event: dict) -> int:
    """Write a submission (``write_submission``) and tell the reminders
    (``events.entry_completed``) so they cancel what they still owed, in the same transaction.
    Returns the submission's id."""
    submission_id = write_submission(db.session.connection(), row, values, event)
    entry_completed.send(row["assessment_id"], reason=ENTRY_COMPLETED)
    return submission_id


def write_submission(connection, row: dict, values: dict[tuple[str, str], str], event: dict) -> int:
    """The statements that store a submission on ``connection``: the row, its answers and its
    audit event (naming the new id). Returns the submission's id. The web benchmark's floor runs
    these same statements outside the diary's request machinery.

    Core, not the ORM (the ORM's per-statement cost was larger than the statements'). On
    PostgreSQL the three writes are one statement (``_STORE_AT_ONCE``): each statement there is a
    round trip through psycopg, and a submit made nine of them.
    """
    if connection.dialect.name == "postgresql":
        instruments, items, answers = (
            (list(column) for column in zip(*((i, item, v) for (i, item), v in values.items())))
            if values
            else ([], [], [])
        )
        return connection.execute(
            _STORE_AT_ONCE,
            {
                **{f"submission_{name}": value for name, value in row.items()},
                "instruments": instruments,
                "items": items,
                "answers": answers,
                **{f"audit_{name}": value for name, value in event.items()},
            },
        ).scalar_one()
    submission_id = connection.execute(_INSERT_SUBMISSION, row).scalar_one()
    # Every answered item in one statement (a dozen single-row INSERTs were most of a submit).
    connection.execute(
        _INSERT_ITEM_VALUES,
        [
            {"submission_id": submission_id, "instrument": instrument_id, "item": item_id, "value": value}
            for (instrument_id, item_id), value in values.items()
        ],
    )
    audit.write({**event, "entity_id": submission_id}, connection)
    return submission_id


ENTRY_COMPLETED = "entry completed"


def _store_at_once():
    """One PostgreSQL statement: INSERT the submission (a data-modifying CTE) and, naming its new
    id, INSERT its answers (unnested from three arrays, so the statement's text is the same
    whatever the number of answers), and INSERT its
    audit event (``audit.row``'s columns)."""
    submissions, answers_table, events = Submission.__table__, ItemValue.__table__, AuditEvent.__table__
    columns = SUBMISSION_COLUMNS
    # Parameter names are prefixed: a name matching one of the reminder table's columns would be
    # taken by SQLAlchemy as one more value for the UPDATE to set.
    new = (
        insert(submissions)
        .values({name: bindparam(f"submission_{name}") for name in columns})
        .returning(submissions.c.id)
        .cte("new_submission")
    )
    answers = (
        func.unnest(
            bindparam("instruments", type_=ARRAY(String)),
            bindparam("items", type_=ARRAY(String)),
            bindparam("answers", type_=ARRAY(Text)),
        )
        .table_valued("instrument", "item", "value")
        .render_derived(name="answer")
    )
    stored_answers = (
        insert(answers_table)
        .from_select(
            ["submission_id", "instrument", "item", "value"],
            select(new.c.id, answers.c.instrument, answers.c.item, answers.c.value)
            .select_from(new)
            .join(answers, true()),
        )
        .cte("new_answers")
    )
    event_columns = [column for column in events.c if column.name != "id"]
    audited = (
        insert(events)
        .from_select(
            [column.name for column in event_columns],
            select(
                *[
                    new.c.id if column.name == "entity_id" else bindparam(f"audit_{column.name}", type_=column.type)
                    for column in event_columns
                ]
            ).select_from(new),
        )
        .cte("audited")
    )
    return select(new.c.id).add_cte(stored_answers, audited)


# The hot path's statements, built once (parameters are passed at each call).
_INSERT_SUBMISSION = insert(Submission.__table__).returning(Submission.__table__.c.id)
_INSERT_ITEM_VALUES = insert(ItemValue.__table__)
_STORE_AT_ONCE = _store_at_once()


def _side_effect_reports(protocol, assessment, submission, answers, reported_at) -> list[SideEffectReport]:
    """Reports carry the time the participant gave the answers (the entry's collection time);
    severe ones a review deadline."""
    reports = []
    timepoint = protocol.timepoint(assessment.timepoint)
    for instrument in protocol.instruments_for(timepoint):
        for item in instrument.items:
            if item.type == ItemType.SEVERITY_CHECKLIST:
                for term in item.terms:
                    severity = answers.values.get((instrument.id, f"{item.id}.{term.code}"))
                    if severity and severity != Severity.NONE:
                        reports.append(
                            SideEffectReport(
                                period=assessment.period,
                                submission=submission,
                                timepoint=assessment.timepoint,
                                term=term.code,
                                severity=severity,
                                solicited=True,
                                reported_at=reported_at,
                                alert=severity in item.alert_values,
                            )
                        )
            elif item.unsolicited_report:
                verbatim = answers.values.get((instrument.id, item.id))
                if verbatim:
                    reports.append(
                        SideEffectReport(
                            period=assessment.period,
                            submission=submission,
                            timepoint=assessment.timepoint,
                            term="other",
                            severity=None,
                            solicited=False,
                            verbatim=verbatim,
                            reported_at=reported_at,
                            alert=verbatim in item.alert_values,
                        )
                    )
    for report in reports:
        report.review_due_at = review_due(report, protocol, reported_at)
        db.session.add(report)
    return reports


def answers_summary(values: dict[tuple[str, str], str]) -> str:
    return "; ".join(f"{instrument}.{item}={value}" for (instrument, item), value in values.items())
