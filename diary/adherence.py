"""Adherence: the state of every assessment, counted per participant, time point and period.

The dashboard and the export both count with ``tally`` so that their figures agree.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import func, select

from . import assessments
from .extensions import db
from .models import Participant, Period, SideEffectReport, Study
from .study import protocol_of
from .vocabulary import AssessmentState

COMPLETED, COMPLETED_LATE, MISSED, NOT_APPLICABLE, OPEN = (
    AssessmentState.COMPLETED, AssessmentState.COMPLETED_LATE, AssessmentState.MISSED,
    AssessmentState.NOT_APPLICABLE, AssessmentState.OPEN)
FLAGGED = (AssessmentState.AFTER_DOSE, AssessmentState.OUT_OF_WINDOW)


@dataclass
class Tally:
    """Counts of due assessments. An optional time point counts only when it was answered."""

    scheduled: int = 0
    completed: int = 0
    completed_late: int = 0
    missed: int = 0

    def add(self, state: str, optional: bool) -> None:
        # An entry a corrected infusion time left outside its window is no valid entry: the
        # window passed without one, so it counts as missed.
        if state in FLAGGED:
            state = MISSED
        if state == NOT_APPLICABLE or (optional and state == MISSED):
            return
        if state in (COMPLETED, COMPLETED_LATE, MISSED) or not optional:
            self.scheduled += 1
        if state == COMPLETED:
            self.completed += 1
        elif state == COMPLETED_LATE:
            self.completed_late += 1
        elif state == MISSED:
            self.missed += 1

    @property
    def compliance_pct(self) -> float | None:
        """Done (on time or late) out of those whose window has passed; None when none has."""
        due = self.completed + self.completed_late + self.missed
        return None if due == 0 else round(100 * (self.completed + self.completed_late) / due, 1)


@dataclass
class Cell:
    assessment_id: int
    state: str
    target: datetime
    window_open: datetime
    window_close: datetime
    submitted_at: datetime | None
    source: str | None


@dataclass
class ParticipantRow:
    participant: Participant
    cells: dict[tuple[int, str], Cell] = field(default_factory=dict)
    tally: Tally = field(default_factory=Tally)
    unacknowledged: int = 0
    missed: int = 0
    overdue: int = 0
    # Entries a corrected infusion time left outside their windows (after_dose, out_of_window).
    flagged: int = 0

    @property
    def needs_attention(self) -> bool:
        return bool(self.missed or self.overdue or self.unacknowledged or self.flagged)


@dataclass
class Grid:
    columns: list[tuple[int, str, str]]  # (period, time point code, label)
    rows: list[ParticipantRow]
    by_timepoint: dict[tuple[int, str], Tally]
    sites: list[str]


def load_grid(study: Study, now: datetime, site: str | None = None,
              attention_only: bool = False) -> Grid:
    """The dashboard's data in a fixed number of queries, whatever the number of participants."""
    protocol = protocol_of(study.current_protocol_version)
    participant_filter = [Participant.study_id == study.id]
    if site:
        participant_filter.append(Participant.site == site)
    participants = db.session.scalars(
        select(Participant).where(*participant_filter).order_by(Participant.code)).all()
    sites = sorted(db.session.scalars(
        select(func.distinct(Participant.site)).where(Participant.study_id == study.id)))
    cells = assessments.load(now, where=participant_filter)
    unacknowledged = dict(db.session.execute(
        select(Period.participant_id, func.count(SideEffectReport.id))
        .join(Period, SideEffectReport.period_id == Period.id)
        .join(Participant, Period.participant_id == Participant.id)
        .where(*participant_filter, SideEffectReport.acknowledged_at.is_(None))
        .group_by(Period.participant_id)).all())

    rows = {p.id: ParticipantRow(p, unacknowledged=unacknowledged.get(p.id, 0)) for p in participants}
    by_timepoint: dict[tuple[int, str], Tally] = defaultdict(Tally)
    for cell in cells:
        state = cell.state
        row = rows[cell.participant_id]
        row.cells[(cell.period, cell.timepoint)] = Cell(
            cell.id, state, cell.target, cell.window_open, cell.window_close, cell.submitted_at, cell.source)
        row.tally.add(state, cell.optional)
        by_timepoint[(cell.period, cell.timepoint)].add(state, cell.optional)
        if state == MISSED and not cell.optional:
            row.missed += 1
        if state == OPEN and now >= cell.target:
            row.overdue += 1
        if state in FLAGGED:
            row.flagged += 1
    ordered = list(rows.values())
    if attention_only:
        ordered = [row for row in ordered if row.needs_attention]
    columns = [(number, tp.code, tp.label) for number in range(1, protocol.periods + 1)
               for tp in protocol.timepoints]
    return Grid(columns=columns, rows=ordered, by_timepoint=dict(by_timepoint), sites=sites)
