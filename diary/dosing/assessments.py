"""The one read model of assessments: assessment ⋈ period ⋈ participant ⟕ submission.

Every page, export table and scheduler pass that needs assessments and their states loads them
here, in a fixed number of queries, and judges them with ``state_at``: the state of an
assessment is decided in one place.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from types import SimpleNamespace

from sqlalchemy import and_, case, literal, not_, or_, select
from sqlalchemy.orm.util import identity_key

from ..extensions import db
from ..models import Assessment, ItemValue, Participant, Period, ProtocolVersion, Submission, UTCDateTime
from ..protocol import Protocol
from ..study.trial import protocol_of
from ..vocabulary import AssessmentState


def rows_query():
    """The read model as a SELECT (callers add their own WHERE and ORDER BY).

    Its rows have the attributes ``state_at`` reads, so a row from this query, whoever ran it
    (the ORM session, or an export's read-only connection), is judged the same way.
    """
    return read_model(
        Assessment.id,
        Assessment.timepoint,
        Assessment.target,
        Assessment.window_open,
        Assessment.window_close,
        Assessment.late_close,
        Assessment.not_applicable,
        Assessment.protocol_version_id,
        Period.id.label("period_id"),
        Period.number.label("period"),
        Period.treatment,
        Period.dose_start,
        Period.planned_start,
        Participant.id.label("participant_id"),
        Participant.code,
        Participant.site,
        Participant.sequence,
        Participant.timezone,
        Participant.code_broken_at,
        Submission.id.label("submission_id"),
        Submission.submitted_at,
        Submission.collected_at,
        Submission.source,
        Submission.submission_mode,
        Submission.reason,
        Submission.alert,
    )


def read_model(*columns):
    """``columns`` of the read model's joins: each assessment with its period, its participant
    and its submission if any (a table that writes a few columns reads only those)."""
    return (
        select(*columns)
        .select_from(Assessment)
        .join(Period, Assessment.period_id == Period.id)
        .join(Participant, Period.participant_id == Participant.id)
        .outerjoin(Submission, Submission.assessment_id == Assessment.id)
    )


@dataclass
class AssessmentRow:
    """One assessment as pages and rules read it: its window, its submission and its state."""

    id: int
    participant_id: int
    code: str
    timezone: str
    period: int
    treatment: str
    dose_start: datetime | None
    planned_start: datetime | None
    timepoint: str
    label: str
    optional: bool
    target: datetime
    window_open: datetime
    window_close: datetime
    late_close: datetime
    not_applicable: bool
    submission_id: int | None
    submitted_at: datetime | None
    collected_at: datetime | None
    source: str | None
    reason: str | None
    alert: bool
    state: AssessmentState
    late: bool
    protocol_version_id: int = 0
    # What the participant reads (a protocol Text: "Day 3", "Día 3"), not the staff's label.
    participant_label: str = ""
    # (instrument, item) -> value, filled when asked for (``with_values``).
    values: dict[tuple[str, str], str] = field(default_factory=dict)


def load(
    now: datetime,
    *,
    study_id: int | None = None,
    participant_ids: Iterable[int] | None = None,
    where=(),
    order_by=None,
    with_values: bool = False,
    session=None,
) -> list[AssessmentRow]:
    """Assessment rows for a study or a set of participants, judged at ``now``.

    ``session``: another session than the app's (a site archive reads its own snapshot).

    A fixed number of queries whatever the number of rows: the rows, the protocol versions
    they were scheduled under, and (``with_values``) the answered items.
    """
    query = rows_query()
    if study_id is not None:
        query = query.where(Participant.study_id == study_id)
    if participant_ids is not None:
        query = query.where(Participant.id.in_(list(participant_ids)))
    query = query.where(*where)
    if order_by is None:
        order_by = (Participant.code, Period.number, Assessment.target)
    return judge(now, query.order_by(*order_by), with_values=with_values, session=session)


def judge(now: datetime, query, params=None, *, with_values: bool = False, session=None) -> list[AssessmentRow]:
    """The rows of a ``rows_query()`` statement, judged at ``now``. A page that runs on every
    request passes a statement built once with its ``params`` (SQLAlchemy then finds it compiled
    without working out its cache key again)."""
    session = session or db.session
    raw = session.execute(query, params).all()
    protocols = protocols_by_version({row.protocol_version_id for row in raw}, session)
    values: dict[int, dict[tuple[str, str], str]] = {}
    submission_ids = [row.submission_id for row in raw if row.submission_id is not None]
    if with_values and submission_ids:
        for value in session.execute(
            select(ItemValue.submission_id, ItemValue.instrument, ItemValue.item, ItemValue.value)
            .where(ItemValue.submission_id.in_(submission_ids))
            .order_by(ItemValue.id)
        ):
            values.setdefault(value.submission_id, {})[(value.instrument, value.item)] = value.value
    rows = []
    for row in raw:
        timepoint = protocols[row.protocol_version_id].timepoint(row.timepoint)
        state = state_at(row, now)
        rows.append(
            AssessmentRow(
                id=row.id,
                participant_id=row.participant_id,
                code=row.code,
                timezone=row.timezone,
                period=row.period,
                treatment=row.treatment,
                dose_start=row.dose_start,
                planned_start=row.planned_start,
                timepoint=row.timepoint,
                label=timepoint.label,
                optional=timepoint.optional,
                target=row.target,
                window_open=row.window_open,
                window_close=row.window_close,
                late_close=row.late_close,
                not_applicable=row.not_applicable,
                submission_id=row.submission_id,
                submitted_at=row.submitted_at,
                collected_at=row.collected_at,
                source=row.source,
                reason=row.reason,
                alert=bool(row.alert),
                state=state,
                late=is_late(row, state, now),
                protocol_version_id=row.protocol_version_id,
                participant_label=timepoint.participant_label or timepoint.label,
                values=values.get(row.submission_id, {}),
            )
        )
    return rows


def protocols_by_version(version_ids, session=None) -> dict[int, Protocol]:
    """Parsed protocols by version id, in one query (parsing is cached per process)."""
    if not version_ids:
        return {}
    session = session or db.session
    # A page that already holds the study's versions (Today holds the current one) asks nothing.
    held = [session.identity_map.get(identity_key(ProtocolVersion, version_id)) for version_id in version_ids]
    if all(version is not None for version in held):
        return {version.id: protocol_of(version) for version in held}
    return {
        version.id: protocol_of(version)
        for version in session.scalars(select(ProtocolVersion).where(ProtocolVersion.id.in_(list(version_ids))))
    }


# --- The rules of an assessment's state, each written once in Python and once in SQL ----------
# The Python form judges a row in hand; the SQL form lets the database count and sort thousands
# (the grid, the figures, the reminders' planning). Each pair sits together here and
# tests/test_rules_once.py holds them equal over random times, on SQLite and on PostgreSQL.


def is_pre_dose(*, target: datetime, dose_start: datetime | None, planned_start: datetime | None) -> bool:
    """A time point before the infusion (BL): its target lies before the schedule's anchor, the
    recorded infusion start or, until one is recorded, the planned one."""
    anchor = dose_start or planned_start
    return anchor is not None and target < anchor


def is_pre_dose_sql():
    """``is_pre_dose`` over ``Assessment`` joined to its ``Period`` (never NULL)."""
    return or_(
        and_(Period.dose_start.is_not(None), Assessment.target < Period.dose_start),
        and_(Period.dose_start.is_(None), Period.planned_start.is_not(None), Assessment.target < Period.planned_start),
    )


def waits_for_the_infusion(*, target: datetime, dose_start: datetime | None, planned_start: datetime | None) -> bool:
    """A time point after the infusion, in a period whose infusion is not recorded yet: it waits as
    upcoming, takes no entry and gets no reminder, whatever its planned window says."""
    return dose_start is None and not is_pre_dose(target=target, dose_start=dose_start, planned_start=planned_start)


def waits_for_the_infusion_sql():
    """``waits_for_the_infusion`` over ``Assessment`` joined to its ``Period`` (never NULL)."""
    return and_(Period.dose_start.is_(None), not_(is_pre_dose_sql()))


def open_until_the_infusion(*, target: datetime, dose_start: datetime | None, planned_start: datetime | None) -> bool:
    """A time point before an infusion that is planned but not recorded (BL): its window closes
    at the actual start, so it stays open past its planned close until the start is recorded."""
    return dose_start is None and is_pre_dose(target=target, dose_start=dose_start, planned_start=planned_start)


def open_until_the_infusion_sql():
    """``open_until_the_infusion`` over ``Assessment`` joined to its ``Period`` (never NULL)."""
    return and_(Period.dose_start.is_(None), is_pre_dose_sql())


def state_of(
    *,
    window_open: datetime,
    window_close: datetime,
    late_close: datetime,
    collected_at: datetime | None,
    not_applicable: bool,
    now: datetime,
    pre_dose: bool = False,
    dose_start: datetime | None = None,
    dosed: bool = True,
) -> str:
    """The state of an assessment at ``now``.

    The window opens at ``window_open`` (inclusive) and closes at ``window_close`` (exclusive);
    between the close and ``late_close`` an entry is still accepted but counts as late. An entry
    is judged by when its answers were given (``collected_at``) against the current windows, so a
    corrected infusion time re-judges it: a pre-dose entry (BL) given after the infusion started
    is ``after_dose``, any other entry now outside its window ``out_of_window``. Until the
    infusion is recorded (``dosed``), post-dose time points wait as upcoming and pre-dose ones
    stay open past their planned close (the window closes at the actual start).
    """
    if collected_at is not None:
        if pre_dose and dose_start is not None and collected_at >= dose_start:
            return AssessmentState.AFTER_DOSE
        if collected_at < window_open or collected_at >= late_close:
            return AssessmentState.OUT_OF_WINDOW
        return AssessmentState.COMPLETED if collected_at < window_close else AssessmentState.COMPLETED_LATE
    if not_applicable:
        return AssessmentState.NOT_APPLICABLE
    if now < window_open or (not dosed and not pre_dose):
        return AssessmentState.UPCOMING
    if now < late_close or (pre_dose and not dosed):
        return AssessmentState.OPEN
    return AssessmentState.MISSED


def state_at(row, now: datetime) -> AssessmentState:
    """The state of an assessment row at ``now`` (``state_of`` says the rule)."""
    # Called once per assessment by exports and passes (400,000 times for an export of 5,000
    # participants): no intermediate dict, and no enum lookup when the rule already gave one.
    dose_start = row.dose_start
    state = state_of(
        window_open=row.window_open,
        window_close=row.window_close,
        late_close=row.late_close,
        collected_at=row.collected_at,
        not_applicable=row.not_applicable,
        now=now,
        pre_dose=is_pre_dose(target=row.target, dose_start=dose_start, planned_start=row.planned_start),
        dose_start=dose_start,
        dosed=dose_start is not None,
    )
    return state if type(state) is AssessmentState else AssessmentState(state)


def state_sql(now: datetime):
    """``state_of`` as a SQL expression over the read model's joins, branch for branch."""
    at = literal(now, UTCDateTime())
    collected = Submission.collected_at
    S = AssessmentState
    return case(
        (
            collected.is_not(None),
            case(
                (
                    and_(is_pre_dose_sql(), Period.dose_start.is_not(None), collected >= Period.dose_start),
                    S.AFTER_DOSE.value,
                ),
                (or_(collected < Assessment.window_open, collected >= Assessment.late_close), S.OUT_OF_WINDOW.value),
                (collected < Assessment.window_close, S.COMPLETED.value),
                else_=S.COMPLETED_LATE.value,
            ),
        ),
        (Assessment.not_applicable.is_(True), S.NOT_APPLICABLE.value),
        (or_(at < Assessment.window_open, waits_for_the_infusion_sql()), S.UPCOMING.value),
        (or_(at < Assessment.late_close, open_until_the_infusion_sql()), S.OPEN.value),
        else_=S.MISSED.value,
    )


def state_of_assessment(assessment: Assessment, now: datetime) -> AssessmentState:
    """``state_at`` for an ORM assessment (rules that already hold one, such as dosing)."""
    period, submission = assessment.period, assessment.submission
    return state_at(
        SimpleNamespace(
            window_open=assessment.window_open,
            window_close=assessment.window_close,
            late_close=assessment.late_close,
            not_applicable=assessment.not_applicable,
            target=assessment.target,
            collected_at=submission.collected_at if submission else None,
            dose_start=period.dose_start,
            planned_start=period.planned_start,
        ),
        now,
    )


def is_late(row, state: AssessmentState, now: datetime) -> bool:
    """Open, but past the window's close: inside the protocol's late grace. A baseline waiting
    for its infusion is not late: its window closes at the start nobody has recorded yet."""
    waiting = open_until_the_infusion(target=row.target, dose_start=row.dose_start, planned_start=row.planned_start)
    return state == AssessmentState.OPEN and now >= row.window_close and not waiting
