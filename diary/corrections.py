"""Corrections by coordinators: a value changed with a reason, the old value kept in the audit."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import select

from . import audit
from .entries import Answers, _validate_item, field_name
from .errors import Refused
from .extensions import db
from .models import ItemValue, Submission
from .study import protocol_of


def correctable_items(submission: Submission) -> list[tuple[str, str, object, object]]:
    """(key, label, instrument, item) for the items a coordinator may correct.

    Side-effect checklists are reviewed and acknowledged in the side-effect queue instead: a
    participant's report of a symptom is kept as reported.
    """
    assessment = submission.assessment
    protocol = protocol_of(assessment.protocol_version)
    result = []
    for instrument in protocol.instruments_for(protocol.timepoint(assessment.timepoint)):
        for item in instrument.items:
            if item.type == "severity_checklist" or item.unsolicited_report:
                continue
            result.append((field_name(instrument, item), f"{instrument.title}: {item.text}", instrument, item))
    return result


def correct_value(submission: Submission, key: str, raw_value: str, *, reason: str, actor: str,
                  now: datetime) -> ItemValue:
    """Change one answered item. The new value is validated like a participant's answer."""
    if not (reason and reason.strip()):
        raise Refused("A correction needs a reason.")
    items = {k: (instrument, item) for k, _, instrument, item in correctable_items(submission)}
    if key not in items:
        raise Refused("That item cannot be corrected here.")
    instrument, item = items[key]
    form = {key: raw_value}
    if item.type == "vas":
        form[f"{key}.touched"] = "1"
    answers = Answers()
    _validate_item(instrument, item, form, answers)
    if answers.errors:
        raise Refused(answers.errors[key])
    new_value = answers.values.get((instrument.id, item.id))
    if new_value is None:
        raise Refused("Give the new value.")
    # Read afresh under a row lock: two corrections at once must each see the other's value,
    # so the audit trail's old values chain without a gap.
    stored = db.session.scalars(select(ItemValue).where(
        ItemValue.submission_id == submission.id, ItemValue.instrument == instrument.id, ItemValue.item == item.id)
        .with_for_update().execution_options(populate_existing=True)).first()
    old_value = stored.value if stored else None
    if old_value == new_value:
        raise Refused("The new value is the same as the stored one.")
    if stored is None:
        stored = ItemValue(submission=submission, instrument=instrument.id, item=item.id, value=new_value)
        db.session.add(stored)
    else:
        stored.value = new_value
    period = submission.assessment.period
    audit.record(actor=actor, action="correct_value", entity="item_value", entity_id=submission.id,
                 participant_id=period.participant_id, now=now, reason=reason.strip(),
                 field=f"period {period.number} {submission.assessment.timepoint} {instrument.id}.{item.id}",
                 old=old_value, new=new_value)
    return stored
