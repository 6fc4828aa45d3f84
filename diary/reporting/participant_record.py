"""A participant's record as a coordinator reviews it: the timeline of assessments with their
states, the fatigue chart, side-effect reports, reminders and audit events."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import selectinload

from ..dosing import assessments
from ..dosing.assessments import AssessmentRow
from ..extensions import db
from ..models import Assessment, AuditEvent, Participant, Period, Reminder, SideEffectReport
from ..protocol.model import in_language
from ..reporting.charts import Point, line_chart
from ..study.blinding import Blinding
from ..study.trial import protocol_of
from ..vocabulary import ItemType

HISTORY_LIMIT = 200


@dataclass
class ParticipantRecord:
    participant: Participant
    timeline: list[AssessmentRow]
    chart: str | None
    reports: list[SideEffectReport]
    reminders: list  # (Reminder, time point, period number)
    events: list[AuditEvent]


def vas_series(
    rows: list[AssessmentRow], vas_item: tuple[str, str], name: str = "VAS", period_word: str = "Infusion"
) -> dict[str, list[Point]]:
    """The endpoints' measure (the fatigue VAS) by period, at hours from each period's anchor."""
    series: dict[str, list[Point]] = {}
    for row in rows:
        value = row.values.get(vas_item)
        if value is None or row.dose_start is None or row.collected_at is None:
            continue
        hours = (row.collected_at - row.dose_start).total_seconds() / 3600
        series.setdefault(f"{period_word} {row.period}", []).append(
            Point(hours, int(value), f"{row.timepoint} {name} {value}")
        )
    return series


def _measure_chart(protocol, timeline: list[AssessmentRow], code: str) -> str | None:
    """The endpoints' measure by period (the fatigue VAS by infusion, in the shipped protocol)."""
    plan = protocol.endpoints
    if plan is None:
        return None
    item = next(i for i in protocol.instruments[plan.instrument].items if i.id == plan.item)
    low, high = item.range
    period_word = "infusion" if protocol.has_infusions else "period"
    series = vas_series(timeline, (plan.instrument, plan.item), plan.name.upper(), period_word.capitalize())
    if not series:
        return None
    label = plan.label[:1].lower() + plan.label[1:]
    ticks = (0, 25, 50, 75, 100) if item.type == ItemType.VAS else tuple(range(low, high + 1, 2))
    return line_chart(
        series,
        title=f"{plan.label} of {code} by {period_word}",
        y_label=f"{label} ({low}-{high})",
        y_range=(low, high),
        y_ticks=ticks,
    )


def staff_answers(protocol, values: dict[tuple[str, str], str], language: str = "en") -> list[tuple[str, str]]:
    """An entry's answers as staff read them: (the instrument's title, the answer by its label),
    in English unless ``language`` (a site's archive); the side-effect checklist is listed with
    the side effects, not here."""
    lines = []
    for (instrument_id, item_id), value in values.items():
        instrument = protocol.instruments.get(instrument_id)
        item = next((i for i in instrument.items if i.id == item_id), None) if instrument else None
        if item is None:
            if not item_id.startswith("symptoms."):
                lines.append((f"{instrument_id}.{item_id}", value))  # an item of an older protocol version
            continue
        if item.type == ItemType.SEVERITY_CHECKLIST:
            continue
        if item.type == ItemType.SINGLE_CHOICE:
            value = next((in_language(c.label, language) for c in item.choices if c.code == value), value)
        title = in_language(instrument.title, language)
        lines.append((title if len(instrument.items) == 1 else f"{title}: {in_language(item.text, language)}", value))
    return lines


def participant_record(participant: Participant, now: datetime, blinding: Blinding) -> ParticipantRecord:
    """Everything the participant page shows to a reader, in a fixed number of queries (the audit
    events the blinding guard lets ``blinding``'s reader see)."""
    timeline = assessments.load(now, participant_ids=[participant.id], with_values=True)
    protocol = protocol_of(participant.study.current_protocol_version)
    chart = _measure_chart(protocol, timeline, participant.code)
    reports = db.session.scalars(
        select(SideEffectReport)
        .join(Period)
        .where(Period.participant_id == participant.id)
        .options(selectinload(SideEffectReport.period))
        .order_by(SideEffectReport.reported_at.desc())
    ).all()
    reminders = db.session.execute(
        select(Reminder, Assessment.timepoint, Period.number)
        .join(Assessment, Reminder.assessment_id == Assessment.id)
        .join(Period, Assessment.period_id == Period.id)
        .where(Period.participant_id == participant.id)
        .order_by(Reminder.due_at.desc(), Reminder.id.desc())
        .limit(HISTORY_LIMIT)
    ).all()
    events = db.session.scalars(
        select(AuditEvent)
        .where(AuditEvent.participant_id == participant.id, AuditEvent.action.not_in(blinding.hidden_audit_actions))
        .order_by(AuditEvent.at.desc(), AuditEvent.id.desc())
        .limit(HISTORY_LIMIT)
    ).all()
    return ParticipantRecord(participant, timeline, chart, reports, reminders, events)
