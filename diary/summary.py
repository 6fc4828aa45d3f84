"""The study summary: mean and SD of the fatigue VAS % change by time point and period.

Split by treatment once unblinded, by sequence before (for roles that may see sequences), or
pooled for blinded coordinators, who must not see allocation even in aggregate.
"""
from __future__ import annotations

import statistics
from collections import defaultdict
from dataclasses import dataclass

from datetime import datetime

from sqlalchemy import select

from .assessments import state_sql
from .exports.endpoints import pct_change
from .extensions import db
from .models import Assessment, ItemValue, Participant, Period, Study, Submission
from .protocol import Protocol
from .vocabulary import AssessmentState, Role

# Entries that count in the summary: those judged inside their windows.
COUNTED = (AssessmentState.COMPLETED, AssessmentState.COMPLETED_LATE)


@dataclass
class SummaryRow:
    group: str
    period: int
    timepoint: str
    nominal_hours: float
    n: int
    mean: float | None
    sd: float | None


def split_label(study: Study, role: str) -> str:
    if study.unblinded_at is not None:
        return "treatment"
    return "pooled" if role == Role.COORDINATOR else "sequence"


def vas_change_summary(study: Study, protocol: Protocol, split: str, now: datetime) -> list[SummaryRow]:
    instrument, item = protocol.vas_item()
    # The fatigue VAS of every entry judged inside its window: the state rule applied by the
    # database (``state_sql``), so only the values that count cross over, and no more columns.
    rows = db.session.execute(
        select(Participant.id.label("participant_id"), Participant.sequence, Period.number.label("period"),
               Period.treatment, Assessment.timepoint, ItemValue.value)
        .select_from(Assessment).join(Period, Assessment.period_id == Period.id)
        .join(Participant, Period.participant_id == Participant.id)
        .join(Submission, Submission.assessment_id == Assessment.id)
        .join(ItemValue, (ItemValue.submission_id == Submission.id) & (ItemValue.instrument == instrument)
              & (ItemValue.item == item))
        .where(Participant.study_id == study.id, state_sql(now).in_([state.value for state in COUNTED]))).all()
    baselines = {(r.participant_id, r.period): int(r.value) for r in rows if r.timepoint == "BL"}
    changes: dict[tuple[str, int, str], list[float]] = defaultdict(list)
    for r in rows:
        if r.timepoint == "BL":
            continue
        change = pct_change(int(r.value), baselines.get((r.participant_id, r.period)))
        if change is None:
            continue
        group = {"treatment": protocol.treatments.get(r.treatment, r.treatment),
                 "sequence": f"sequence {r.sequence}", "pooled": "all participants"}[split]
        changes[(group, r.period, r.timepoint)].append(change)
    hours = {tp.code: tp.target.nominal_minutes / 60 for tp in protocol.timepoints}
    order = {tp.code: index for index, tp in enumerate(protocol.timepoints)}
    result = []
    for (group, number, code), values in sorted(changes.items(), key=lambda kv: (kv[0][0], kv[0][1], order[kv[0][2]])):
        result.append(SummaryRow(group, number, code, hours[code], len(values), round(statistics.fmean(values), 1),
                                 round(statistics.stdev(values), 1) if len(values) > 1 else None))
    return result
