"""Adherence: the state of every assessment, counted per participant, time point and period.

The dashboard and the export both count with ``tally`` so that their figures agree.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import Boolean, Integer, String, and_, case, cast, func, literal, null, or_, select, union_all

from ..dosing import assessments
from ..dosing.assessments import state_sql
from ..extensions import db
from ..models import Assessment, Participant, Period, SideEffectReport, Study, Submission
from ..study.trial import protocol_of
from ..vocabulary import AssessmentState

COMPLETED, COMPLETED_LATE, MISSED, NOT_APPLICABLE, OPEN = (
    AssessmentState.COMPLETED,
    AssessmentState.COMPLETED_LATE,
    AssessmentState.MISSED,
    AssessmentState.NOT_APPLICABLE,
    AssessmentState.OPEN,
)
FLAGGED = AssessmentState.flagged()


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
    # Required entries missed within ATTENTION_WINDOW (a grid row needs attention for these).
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
    as_of: datetime | None = None  # when the study's figures were counted
    live: bool = True  # counted at this request, not taken from the scheduler's snapshot

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
SORTS = {
    "code": "participant code",
    "compliance": "compliance, lowest first",
    "-compliance": "compliance, highest first",
}


# A missed entry calls for action (a call, a note) while it is recent; older ones are history,
# and the follow-up tasks carry whatever still needs doing about them.
ATTENTION_WINDOW = timedelta(hours=48)


def _judged_select(now: datetime, optional_codes: list[str], participant_filter: list):
    """Every assessment of the filtered participants with its state, worked out by the database."""
    return (
        select(
            Period.participant_id.label("participant_id"),
            Participant.site.label("site"),
            Period.number.label("period"),
            Assessment.timepoint.label("timepoint"),
            state_sql(now).label("state"),
            Assessment.timepoint.in_(optional_codes).label("optional"),
            (Assessment.target <= now).label("past_target"),
            (Assessment.late_close > now - ATTENTION_WINDOW).label("recent"),
        )
        .select_from(Assessment)
        .join(Period, Assessment.period_id == Period.id)
        .join(Participant, Period.participant_id == Participant.id)
        .outerjoin(Submission, Submission.assessment_id == Assessment.id)
        .where(*participant_filter)
    )


# Each state as one bit, so "has an assessment in state X" is one integer per participant.
STATE_BITS = {state.value: 1 << n for n, state in enumerate(AssessmentState)}


@dataclass
class Counted:
    """What one counting pass over the assessments gives: each participant's figures (what the
    grid sorts and filters on) and counts per (site, period, time point, state, optional)."""

    participants: dict[int, ParticipantRow]
    states: dict[int, int]  # participant id -> STATE_BITS of the states present
    by_site: list[tuple[str, int, str, str, bool, int]]

    def by_timepoint(self) -> tuple[dict[tuple[int, str], Tally], dict[str, int]]:
        return fold_timepoints(self.by_site)

    def add_unacknowledged(self, counts: dict[int, int]) -> None:
        """Side-effect reports to review, per participant (``unacknowledged_counts``)."""
        for pid, count in counts.items():
            self.participants.setdefault(pid, ParticipantRow(participant=None)).unacknowledged = count


def clamp_page(page: int, total: int, page_size: int) -> tuple[int, int]:
    """(page, pages): the asked page kept within 1 and the last page, so an old link never
    shows an empty list."""
    pages = max(1, -(-total // page_size))
    return min(max(1, page), pages), pages


def fold_timepoints(rows) -> tuple[dict[tuple[int, str], Tally], dict[str, int]]:
    """(site, period, time point, state, optional, count) rows as Tallies per (period, time point)
    and counts per state, over whatever sites the rows hold."""
    by_timepoint: dict[tuple[int, str], Tally] = defaultdict(Tally)
    counts: dict[str, int] = defaultdict(int)
    for _site, number, code, state_value, is_optional, count in rows:
        by_timepoint[(number, code)].add(state_value, bool(is_optional), count)
        counts[state_value] += count
    return dict(by_timepoint), dict(counts)


def count_states(now: datetime, optional_codes: list[str], participant_filter: list) -> Counted:
    """The states of every assessment of the filtered participants, worked out by the database
    once (a materialized CTE) and counted two ways in one statement: per participant (as
    ``Tally.add`` counts: a flagged entry counts as missed, an optional time point only when
    answered) and per site, period, time point and state."""
    judged = _judged_select(now, optional_codes, participant_filter).cte("judged").prefix_with("MATERIALIZED")
    st, optional = judged.c.state, judged.c.optional
    counted = case((st.in_([s.value for s in FLAGGED]), MISSED.value), else_=st)

    def total(condition):
        return func.sum(case((condition, 1), else_=0))

    present = [func.max(case((st == value, 1), else_=0)) for value in STATE_BITS]
    per_participant = select(
        literal("p").label("kind"),
        judged.c.participant_id,
        cast(null(), String),
        cast(null(), Integer),
        cast(null(), String),
        cast(null(), String),
        cast(null(), Boolean),
        total(st == COMPLETED.value),
        total(st == COMPLETED_LATE.value),
        total(and_(counted == MISSED.value, ~optional)),
        total(
            and_(
                counted != NOT_APPLICABLE.value,
                ~and_(optional, counted == MISSED.value),
                or_(counted.in_([COMPLETED.value, COMPLETED_LATE.value, MISSED.value]), ~optional),
            )
        ),
        total(and_(st == MISSED.value, ~optional, judged.c.recent)),
        total(and_(st == OPEN.value, judged.c.past_target)),
        total(st.in_([s.value for s in FLAGGED])),
        *present,
    ).group_by(judged.c.participant_id)
    zero = literal(0)
    per_timepoint = select(
        literal("t"),
        cast(null(), Integer),
        judged.c.site,
        judged.c.period,
        judged.c.timepoint,
        st,
        optional,
        func.count(),
        *([zero] * (6 + len(present))),
    ).group_by(judged.c.site, judged.c.period, judged.c.timepoint, st, optional)
    participants: dict[int, ParticipantRow] = {}
    states: dict[int, int] = {}
    by_site = []
    for (
        kind,
        pid,
        site,
        number,
        code,
        state_value,
        is_optional,
        first,
        completed_late,
        missed,
        scheduled,
        missed_required,
        overdue,
        flagged,
        *present_flags,
    ) in db.session.execute(union_all(per_participant, per_timepoint)):
        if kind == "t":
            by_site.append((site, number, code, state_value, bool(is_optional), first))
            continue
        row = participants[pid] = ParticipantRow(participant=None)
        row.tally = Tally(scheduled=scheduled, completed=first, completed_late=completed_late, missed=missed)
        row.missed, row.overdue, row.flagged = missed_required, overdue, flagged
        states[pid] = sum(bit for bit, flag in zip(STATE_BITS.values(), present_flags) if flag)
    return Counted(participants=participants, states=states, by_site=by_site)


def unacknowledged_counts(participant_filter: list) -> dict[int, int]:
    """Side-effect reports not yet reviewed, per participant."""
    return dict(
        db.session.execute(
            select(Period.participant_id, func.count(SideEffectReport.id))
            .join(Period, SideEffectReport.period_id == Period.id)
            .join(Participant, Period.participant_id == Participant.id)
            .where(*participant_filter, SideEffectReport.acknowledged_at.is_(None))
            .group_by(Period.participant_id)
        ).all()
    )


def timepoint_tallies(study: Study, now: datetime, snapshot=None) -> dict[tuple[int, str], Tally]:
    """Compliance per (period, time point) over the whole study: from the figures ``snapshot``
    (``figures.fresh``) when the caller has one, otherwise counted now."""
    from . import figures

    if snapshot is not None:
        return fold_timepoints(figures.timepoint_rows(study.id))[0]
    protocol = protocol_of(study.current_protocol_version)
    optional_codes = [tp.code for tp in protocol.timepoints if tp.optional]
    return count_states(now, optional_codes, [Participant.study_id == study.id]).by_timepoint()[0]


def load_grid(
    study: Study,
    now: datetime,
    site: str | None = None,
    attention_only: bool = False,
    *,
    search: str = "",
    state: str | None = None,
    sort: str = "code",
    page: int = 1,
    page_size: int = PAGE_SIZE,
    live: bool = False,
) -> Grid:
    """The dashboard: figures for the whole study, cells for one page only.

    The study's figures, and the sorting and filters that need every participant's figures,
    come from the snapshot the scheduler counts each minute (``figures``) when it is fresh;
    otherwise (no scheduler running, a search by code, or ``live``) they are counted now. The
    page's own rows are always judged now, from their cells. A fixed number of queries at any
    size either way.
    """
    from . import figures

    protocol = protocol_of(study.current_protocol_version)
    optional_codes = [tp.code for tp in protocol.timepoints if tp.optional]
    participant_filter = [Participant.study_id == study.id]
    if site:
        participant_filter.append(Participant.site == site)
    if search:
        escaped = search.strip().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        participant_filter.append(Participant.code.ilike(f"%{escaped}%", escape="\\"))
    sites = sorted(db.session.scalars(select(func.distinct(Participant.site)).where(Participant.study_id == study.id)))
    snapshot = None if (search or live) else figures.fresh(study.id, now)
    unacknowledged = None  # counted for every participant when the figures are counted now
    if snapshot is not None:
        total, shown, page = figures.page_of_participants(
            participant_filter,
            attention_only=attention_only,
            state_bit=STATE_BITS.get(state),
            sort=sort,
            page=page,
            page_size=page_size,
        )
        by_timepoint, counts = fold_timepoints(figures.timepoint_rows(study.id, site=site))
    else:
        people = db.session.execute(
            select(Participant.id, Participant.code).where(*participant_filter).order_by(Participant.code)
        ).all()
        counted = count_states(now, optional_codes, participant_filter)
        by_timepoint, counts = counted.by_timepoint()
        unacknowledged = unacknowledged_counts(participant_filter)
        counted.add_unacknowledged(unacknowledged)
        figures_of = {pid: counted.participants.get(pid) or ParticipantRow(participant=None) for pid, _ in people}
        ordered = [pid for pid, _ in people]
        if attention_only:
            ordered = [pid for pid in ordered if figures_of[pid].needs_attention]
        if state:
            ordered = [pid for pid in ordered if counted.states.get(pid, 0) & STATE_BITS[state]]
        if sort in ("compliance", "-compliance"):

            def key(pid):
                value = figures_of[pid].tally.compliance_pct
                return (value is None, value if sort == "compliance" else -(value or 0))

            ordered.sort(key=key)
        total = len(ordered)
        page, pages = clamp_page(page, total, page_size)
        shown = ordered[(page - 1) * page_size : page * page_size]

    pages = clamp_page(page, total, page_size)[1]
    participants = {p.id: p for p in db.session.scalars(select(Participant).where(Participant.id.in_(shown)))}
    rows = [ParticipantRow(participant=participants[pid]) for pid in shown]
    by_id = {row.participant.id: row for row in rows}
    # The page's rows are judged now, from their own cells, whatever the snapshot's time.
    for cell in assessments.load(now, participant_ids=shown) if shown else []:
        row = by_id[cell.participant_id]
        row.cells[(cell.period, cell.timepoint)] = Cell(
            cell.id, cell.state, cell.target, cell.window_open, cell.window_close, cell.submitted_at, cell.source
        )
        row.tally.add(cell.state, cell.optional)
        row.missed += cell.state == MISSED and not cell.optional and cell.late_close > now - ATTENTION_WINDOW
        row.overdue += cell.state == OPEN and cell.target <= now
        row.flagged += cell.state in FLAGGED
    if unacknowledged is None:
        unacknowledged = unacknowledged_counts([Participant.id.in_(shown)]) if shown else {}
    for row in rows:
        row.unacknowledged = unacknowledged.get(row.participant.id, 0)
    columns = [(number, tp.code, tp.label) for number in range(1, protocol.periods + 1) for tp in protocol.timepoints]
    return Grid(
        columns=columns,
        rows=rows,
        by_timepoint=by_timepoint,
        sites=sites,
        total=total,
        page=page,
        pages=pages,
        counts=counts,
        as_of=snapshot.as_of if snapshot else now,
        live=snapshot is None,
    )
