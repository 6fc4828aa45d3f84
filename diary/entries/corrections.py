"""Corrections by coordinators: a value changed with a reason, the old value kept in the audit."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select

from ..errors import Refused
from ..extensions import db
from ..governance import audit
from ..governance.lock import refuse_if_locked
from ..models import ItemValue, SideEffectReport, Submission
from ..safety.alerts import review_due
from ..study.trial import protocol_of
from ..vocabulary import AuditAction, ItemType, Severity, Source
from .recording import Answers, _validate_item, field_name


def correctable_items(submission: Submission) -> list[tuple[str, str, object, object]]:
    """(key, label, instrument, item) for the items a coordinator may correct: every answer,
    each side-effect term of a checklist (item is then (checklist, term)), and free text."""
    assessment = submission.assessment
    protocol = protocol_of(assessment.protocol_version)
    result = []
    for instrument in protocol.instruments_for(protocol.timepoint(assessment.timepoint)):
        for item in instrument.items:
            if item.type == ItemType.SEVERITY_CHECKLIST:
                for term in item.terms:
                    result.append(
                        (
                            field_name(instrument, item, term.code),
                            f"{instrument.title}: {term.label}",
                            instrument,
                            (item, term),
                        )
                    )
                continue
            result.append((field_name(instrument, item), f"{instrument.title}: {item.text}", instrument, item))
    return result


def stored_item_id(item) -> str:
    """The ItemValue.item a correctable item is stored under."""
    if isinstance(item, tuple):
        checklist, term = item
        return f"{checklist.id}.{term.code}"
    return item.id


def _correct_side_effect(submission: Submission, item, term, new_value: str) -> None:
    """Keep the side-effect report in step with a corrected checklist answer or free text.

    A report is never taken back: a reported symptom may change severity (or wording), but
    correcting it to nothing is refused; the review note says if it was not a side effect.
    """
    term_code = term.code if term else "other"
    report = db.session.scalar(
        select(SideEffectReport).where(
            SideEffectReport.submission_id == submission.id, SideEffectReport.term == term_code
        )
    )
    cleared = new_value in ("", Severity.NONE)
    if report is not None and cleared:
        raise Refused(
            "A reported side effect is kept as reported. Correct its severity or wording, or say in "
            "its review that it was not a side effect."
        )
    if cleared:
        return
    assessment = submission.assessment
    protocol = protocol_of(assessment.protocol_version)
    if report is None:
        report = SideEffectReport(
            period=assessment.period,
            submission=submission,
            timepoint=assessment.timepoint,
            term=term_code,
            solicited=term is not None,
            reported_at=submission.collected_at,
        )
        db.session.add(report)
    if term is not None:
        report.severity = new_value
    else:
        report.verbatim, report.severity = new_value, None
    report.alert = new_value in item.alert_values
    report.review_due_at = review_due(report, protocol, report.reported_at)


@dataclass
class Change:
    """A checked new value for one item of a submission, and the stored row it replaces."""

    instrument: object
    item: object
    term: object | None
    stored_item: str
    new_value: str
    stored: ItemValue | None
    # The stored value when the change was checked (the row itself changes when it is applied).
    old_value: str | None

    @property
    def field(self) -> str:
        return f"{self.instrument.id}.{self.stored_item}"


def checked_change(submission: Submission, key: str, raw_value: str) -> Change:
    """Validate a new value for item ``key`` like a participant's answer, and read the stored one
    afresh under a row lock (two changes at once must each see the other's value, so the audit
    trail's old values chain without a gap). Refuses an unknown item, a bad value, the same value."""
    items = {k: (instrument, item) for k, _, instrument, item in correctable_items(submission)}
    if key not in items:
        raise Refused("That item cannot be corrected here.")
    instrument, item = items[key]
    stored_item = stored_item_id(item)
    item, term = item if isinstance(item, tuple) else (item, None)
    if term is not None:
        new_value = (raw_value or "").strip()
        if new_value not in Severity.__members__.values():
            raise Refused(f"Give one of {', '.join(Severity)}.")
    else:
        form = {key: raw_value}
        if item.type == ItemType.VAS:
            form[f"{key}.touched"] = "1"
        answers = Answers()
        _validate_item(instrument, item, form, answers)
        if answers.errors:
            raise Refused(answers.errors[key])
        new_value = answers.values.get((instrument.id, item.id))
        if new_value is None:
            raise Refused("Give the new value.")
    stored = db.session.scalars(
        select(ItemValue)
        .where(
            ItemValue.submission_id == submission.id,
            ItemValue.instrument == instrument.id,
            ItemValue.item == stored_item,
        )
        .with_for_update()
        .execution_options(populate_existing=True)
    ).first()
    change = Change(instrument, item, term, stored_item, new_value, stored, stored.value if stored else None)
    if change.old_value == new_value:
        raise Refused("The new value is the same as the stored one.")
    return change


def apply_change(
    submission: Submission, change: Change, *, now: datetime, change_request_id: int | None = None
) -> ItemValue:
    """Store a checked change: the side-effect report follows it, and the value as first stored
    is kept on the row (``original_value``) with when it changed and by which request."""
    if change.term is not None or change.item.unsolicited_report:
        _correct_side_effect(submission, change.item, change.term, change.new_value)
    stored = change.stored
    if stored is None:
        stored = ItemValue(
            submission=submission, instrument=change.instrument.id, item=change.stored_item, value=change.new_value
        )
        db.session.add(stored)
    else:
        if stored.changed_at is None:
            stored.original_value = stored.value
        stored.value = change.new_value
    stored.changed_at = now
    stored.change_request_id = change_request_id
    return stored


PARTICIPANT_VALUE = (
    "A value the participant entered is never edited in place: open a change request, with its source, "
    "for an investigator to approve."
)


def correct_value(
    submission: Submission, key: str, raw_value: str, *, reason: str, actor: str, now: datetime
) -> ItemValue:
    """Change one answered item of an entry the study team made (on paper, by phone, at the
    clinic), with a reason. A participant's own entry changes only through a change request
    (``change_requests``). The new value is validated like a participant's answer."""
    refuse_if_locked(submission.assessment.period.participant.study)
    if submission.source == Source.PARTICIPANT:
        raise Refused(PARTICIPANT_VALUE, status=403)
    if not (reason and reason.strip()):
        raise Refused("A correction needs a reason.")
    change = checked_change(submission, key, raw_value)
    stored = apply_change(submission, change, now=now)
    period = submission.assessment.period
    instrument, stored_item, old_value, new_value = (
        change.instrument,
        change.stored_item,
        change.old_value,
        change.new_value,
    )
    audit.record(
        actor=actor,
        action=AuditAction.CORRECT_VALUE,
        entity="item_value",
        entity_id=submission.id,
        participant_id=period.participant_id,
        now=now,
        reason=reason.strip(),
        field=f"period {period.number} {submission.assessment.timepoint} {instrument.id}.{stored_item}",
        old=old_value,
        new=new_value,
    )
    return stored
