"""Adherence: the state of every assessment, counted per participant, time point and period.

The dashboard and the export both count with ``tally`` so that their figures agree.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import Boolean, Integer, String, and_, case, cast, func, literal, null, or_, select, union_all

from . import assessments
from .assessments import state_sql
from .extensions import db
from .models import Assessment, Participant, Period, SideEffectReport, Study, Submission
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

    def add(self, state: str, optional: bool, count: int = 1) -> None:
        # An entry a corrected infusion time left outside its window is no valid entry: the
        # window passed without one, so it counts as missed.
        if state in FLAGGED:
            state = MISSED
        if state == NOT_APPLICABLE or (optional and state == MISSED):
            return
        if state in (COMPLETED, COMPLETED_LATE, MISSED) or not optional:
            self.scheduled += count
        if state == COMPLETED:
            self.completed += count
        elif state == COMPLETED_LATE:
            self.completed_late += count
        elif state == MISSED:
            self.missed += count

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
    rows: list[ParticipantRow]  # this page's
    by_timepoint: dict[tuple[int, str], Tally]
    sites: list[str]
    total: int = 0  # participants matching the filters, on every page
    page: int = 1
    pages: int = 1
    counts: dict[str, int] = field(default_factory=dict)  # assessments by state, whole study

    @property
    def overall(self) -> Tally:
        tally = Tally()
        for one in self.by_timepoint.values():
            tally.scheduled += one.scheduled
            tally.completed += one.completed
            tally.completed_late += one.completed_late
            tally.missed += one.missed
        return tally


PAGE_SIZE = 50
SORTS = {"code": "participant code", "compliance": "compliance, lowest first",
         "-compliance": "compliance, highest first"}


def _judged(now: datetime, optional_codes: list[str], participant_filter: list):
    return _judged_select(now, optional_codes, participant_filter).subquery()


def _judged_select(now: datetime, optional_codes: list[str], participant_filter: list):
    """Every assessment of the filtered participants with its state, worked out by the database."""
    return (select(Period.participant_id.label("participant_id"), Period.number.label("period"),
                   Assessment.timepoint.label("timepoint"), state_sql(now).label("state"),
                   Assessment.timepoint.in_(optional_codes).label("optional"),
                   (Assessment.target <= now).label("past_target"))
            .select_from(Assessment).join(Period, Assessment.period_id == Period.id)
            .join(Participant, Period.participant_id == Participant.id)
            .outerjoin(Submission, Submission.assessment_id == Assessment.id)
            .where(*participant_filter))


def _count_by_timepoint(judged) -> tuple[dict[tuple[int, str], Tally], dict[str, int]]:
    by_timepoint: dict[tuple[int, str], Tally] = defaultdict(Tally)
    counts: dict[str, int] = defaultdict(int)
    for number, code, state_value, is_optional, count in db.session.execute(
            select(judged.c.period, judged.c.timepoint, judged.c.state, judged.c.optional, func.count())
            .group_by(judged.c.period, judged.c.timepoint, judged.c.state, judged.c.optional)):
        by_timepoint[(number, code)].add(state_value, bool(is_optional), count)
        counts[state_value] += count
    return dict(by_timepoint), dict(counts)


def timepoint_tallies(study: Study, now: datetime) -> dict[tuple[int, str], Tally]:
    """Compliance per (period, time point) over the whole study, counted in one SQL aggregate."""
    protocol = protocol_of(study.current_protocol_version)
    optional_codes = [tp.code for tp in protocol.timepoints if tp.optional]
    return _count_by_timepoint(_judged(now, optional_codes, [Participant.study_id == study.id]))[0]


def load_grid(study: Study, now: datetime, site: str | None = None, attention_only: bool = False, *,
              search: str = "", state: str | None = None, sort: str = "code", page: int = 1,
              page_size: int = PAGE_SIZE) -> Grid:
    """The dashboard: figures for the whole study counted in SQL, cells for one page only.

    A fixed number of queries at any size: the states of every assessment are worked out by
    the database (``assessments.state_sql``) and counted per participant and per time point;
    only the page's participants' cells are loaded and judged in Python.
    """
    protocol = protocol_of(study.current_protocol_version)
    optional_codes = [tp.code for tp in protocol.timepoints if tp.optional]
    participant_filter = [Participant.study_id == study.id]
    if site:
        participant_filter.append(Participant.site == site)
    if search:
        escaped = search.strip().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        participant_filter.append(Participant.code.ilike(f"%{escaped}%", escape="\\"))
    sites = sorted(db.session.scalars(
        select(func.distinct(Participant.site)).where(Participant.study_id == study.id)))
    people = db.session.execute(select(Participant.id, Participant.code).where(*participant_filter)
                                .order_by(Participant.code)).all()

    # The states are worked out once (a materialized CTE), then counted two ways in the same
    # statement: per participant (as Tally.add would count: a flagged entry counts as missed,
    # an optional time point only when answered) and per time point.
    judged = _judged_select(now, optional_codes, participant_filter).cte("judged").prefix_with("MATERIALIZED")
    tallies: dict[int, ParticipantRow] = {pid: ParticipantRow(participant=None) for pid, _ in people}
    st, optional = judged.c.state, judged.c.optional
    counted = case((st.in_([s.value for s in FLAGGED]), MISSED.value), else_=st)

    def total(condition):
        return func.sum(case((condition, 1), else_=0))

    per_participant = select(
        literal("p").label("kind"), judged.c.participant_id, cast(null(), Integer), cast(null(), String),
        cast(null(), String), cast(null(), Boolean),
        total(st == COMPLETED.value), total(st == COMPLETED_LATE.value),
        total(and_(counted == MISSED.value, ~optional)),
        total(and_(counted != NOT_APPLICABLE.value, ~and_(optional, counted == MISSED.value),
                   or_(counted.in_([COMPLETED.value, COMPLETED_LATE.value, MISSED.value]), ~optional))),
        total(and_(st == MISSED.value, ~optional)), total(and_(st == OPEN.value, judged.c.past_target)),
        total(st.in_([s.value for s in FLAGGED])), total(st == state) if state else literal(0),
    ).group_by(judged.c.participant_id)
    zero = literal(0)
    per_timepoint = select(
        literal("t"), cast(null(), Integer), judged.c.period, judged.c.timepoint, st, optional, func.count(),
        zero, zero, zero, zero, zero, zero, zero,
    ).group_by(judged.c.period, judged.c.timepoint, st, optional)
    by_timepoint: dict[tuple[int, str], Tally] = defaultdict(Tally)
    counts: dict[str, int] = defaultdict(int)
    has_state: set[int] = set()
    for (kind, pid, number, code, state_value, is_optional, first, completed_late, missed, scheduled,
         missed_required, overdue, flagged, in_state) in db.session.execute(union_all(per_participant, per_timepoint)):
        if kind == "t":
            by_timepoint[(number, code)].add(state_value, bool(is_optional), first)
            counts[state_value] += first
            continue
        row = tallies[pid]
        row.tally = Tally(scheduled=scheduled, completed=first, completed_late=completed_late, missed=missed)
        row.missed, row.overdue, row.flagged = missed_required, overdue, flagged
        if in_state:
            has_state.add(pid)
    by_timepoint, counts = dict(by_timepoint), dict(counts)
    for pid, count in db.session.execute(
            select(Period.participant_id, func.count(SideEffectReport.id))
            .join(Period, SideEffectReport.period_id == Period.id)
            .join(Participant, Period.participant_id == Participant.id)
            .where(*participant_filter, SideEffectReport.acknowledged_at.is_(None))
            .group_by(Period.participant_id)):
        tallies[pid].unacknowledged = count

    ordered = [pid for pid, _ in people]
    if attention_only:
        ordered = [pid for pid in ordered if tallies[pid].needs_attention]
    if state:
        ordered = [pid for pid in ordered if pid in has_state]
    if sort in ("compliance", "-compliance"):
        def key(pid):
            value = tallies[pid].tally.compliance_pct
            return (value is None, value if sort == "compliance" else -(value or 0))
        ordered.sort(key=key)
    total = len(ordered)
    pages = max(1, -(-total // page_size))
    page = min(max(1, page), pages)
    shown = ordered[(page - 1) * page_size: page * page_size]

    participants = {p.id: p for p in db.session.scalars(select(Participant).where(Participant.id.in_(shown)))}
    rows = []
    for pid in shown:
        row = tallies[pid]
        row.participant = participants[pid]
        rows.append(row)
    by_id = {row.participant.id: row for row in rows}
    for cell in assessments.load(now, participant_ids=shown) if shown else []:
        by_id[cell.participant_id].cells[(cell.period, cell.timepoint)] = Cell(
            cell.id, cell.state, cell.target, cell.window_open, cell.window_close, cell.submitted_at, cell.source)
    columns = [(number, tp.code, tp.label) for number in range(1, protocol.periods + 1)
               for tp in protocol.timepoints]
    return Grid(columns=columns, rows=rows, by_timepoint=by_timepoint, sites=sites, total=total,
                page=page, pages=pages, counts=counts)
