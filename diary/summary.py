"""The study summary: mean and SD of the fatigue VAS % change by time point and period.

Split by treatment once unblinded, by sequence before (for roles that may see sequences), or
pooled for blinded coordinators, who must not see allocation even in aggregate.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from datetime import datetime

from sqlalchemy import Float, case, cast, func, select

from .assessments import state_sql
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


def vas_sums(study: Study, protocol: Protocol, now: datetime) -> list[tuple[str, str, int, str, int, float, float]]:
    """n, sum and sum of squares of the VAS % change from the period's baseline, per
    (sequence, treatment, period, time point): every split's means and SDs add up from these.

    Counted by the database: each counted entry (judged inside its window, ``state_sql``) is
    set beside its period's counted BL.
    """
    instrument, item = protocol.vas_item()
    counted = [state.value for state in COUNTED]
    value = cast(ItemValue.value, Float)
    # Each entry beside its period's baseline, by a window over the period (no self-join: on
    # PostgreSQL a join of two CTE scans at 5,000 participants ran past the statement timeout).
    baseline = func.max(case((Assessment.timepoint == "BL", value))).over(
        partition_by=(Participant.id, Period.number))
    vas = (select(Participant.sequence, Period.number.label("period"), Period.treatment, Assessment.timepoint,
                  value.label("value"), baseline.label("base"))
           .select_from(Assessment).join(Period, Assessment.period_id == Period.id)
           .join(Participant, Period.participant_id == Participant.id)
           .join(Submission, Submission.assessment_id == Assessment.id)
           .join(ItemValue, (ItemValue.submission_id == Submission.id) & (ItemValue.instrument == instrument)
                 & (ItemValue.item == item))
           .where(Participant.study_id == study.id, state_sql(now).in_(counted))).subquery("vas")
    pct = (vas.c.value - vas.c.base) * 100.0 / vas.c.base
    return [tuple(row) for row in db.session.execute(
        select(vas.c.sequence, vas.c.treatment, vas.c.period, vas.c.timepoint, func.count(), func.sum(pct),
               func.sum(pct * pct))
        .where(vas.c.timepoint != "BL", vas.c.base.is_not(None), vas.c.base != 0)
        .group_by(vas.c.sequence, vas.c.treatment, vas.c.period, vas.c.timepoint)).all()]


def vas_change_summary(study: Study, protocol: Protocol, split: str, now: datetime,
                       sums: list | None = None) -> list[SummaryRow]:
    """Mean and SD of the VAS % change from the period's baseline, by group, period and time point,
    from ``sums`` (the figures snapshot's) or counted now."""
    if sums is None:
        sums = vas_sums(study, protocol, now)
    added: dict[tuple, list[float]] = {}
    for sequence, treatment, number, code, n, total, squares in sums:
        grp = {"treatment": treatment, "sequence": sequence, "pooled": "all"}[split]
        one = added.setdefault((grp, number, code), [0, 0.0, 0.0])
        one[0] += n
        one[1] += total
        one[2] += squares
    rows = [(grp, number, code, n, total, squares) for (grp, number, code), (n, total, squares) in added.items()]
    hours = {tp.code: tp.target.nominal_minutes / 60 for tp in protocol.timepoints}
    order = {tp.code: index for index, tp in enumerate(protocol.timepoints)}

    def label(value):
        return {"treatment": lambda v: protocol.treatments.get(v, v), "sequence": lambda v: f"sequence {v}",
                "pooled": lambda v: "all participants"}[split](value)

    result = []
    for grp, number, code, n, total, squares in sorted(rows, key=lambda r: (label(r[0]), r[1], order[r[2]])):
        mean = total / n
        sd = math.sqrt(max(0.0, (squares - total * total / n) / (n - 1))) if n > 1 else None
        result.append(SummaryRow(label(grp), number, code, hours[code], n, round(mean, 1),
                                 None if sd is None else round(sd, 1)))
    return result
