"""Table builders: each yields the rows of one export table, streaming from the database.

Rows are tuples in the column order of ``schema.TABLES``, holding plain Python values (str,
int, float, bool, datetime or None); the writers turn them into CSV, Parquet or XLSX. Queries
stream with ``yield_per`` so the study is never held in memory at once.
"""

from __future__ import annotations

import pickle
import tempfile
from collections import namedtuple
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from itertools import groupby

from sqlalchemy import Text, select
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement

from ..dosing.assessments import read_model, state_sql
from ..governance.signoff import statuses_for_study as signature_statuses
from ..models import (
    Assessment,
    AuditEvent,
    AuditReview,
    ItemValue,
    Participant,
    Period,
    ProtocolVersion,
    SideEffectReport,
    StaffUser,
    Study,
    Submission,
)
from ..protocol import Protocol
from ..reporting.adherence import Tally
from ..study.blinding import ALLOCATION_EVENTS
from ..vocabulary import ActorKind, AssessmentState, AuditAction, ItemType, SignatureStatus, SubmissionMode
from .endpoints import CHANGE, auc_timepoints, baseline_of, compute_endpoints

BATCH = 5000
# Participants per query: each query sorts only this many participants' rows, so neither the
# database's sort nor Python ever holds the whole study.
CHUNK = 200


class answers_object(FunctionElement):
    """Aggregate: a group's answers as the text of one JSON object, ``item`` -> ``value``
    (SQLite's ``json_group_object``, PostgreSQL's ``json_object_agg``), read with a JSON parser."""

    type = Text()
    inherit_cache = True
    name = "answers_object"


@compiles(answers_object, "sqlite")
def _answers_object_sqlite(element, compiler, **kw):
    return f"json_group_object({compiler.process(element.clauses, **kw)})"


@compiles(answers_object, "postgresql")
def _answers_object_postgresql(element, compiler, **kw):
    return f"json_object_agg({compiler.process(element.clauses, **kw)})::text"


class Spool:
    """Rows kept on disk for a table written later in the same export (pickled in batches in a
    temporary file, so memory stays flat), read back once in the order they were added."""

    BATCH = 2000

    def __init__(self):
        self.file = tempfile.TemporaryFile()
        self.batch: list = []

    def add(self, rows) -> None:
        self.batch.extend(rows)
        if len(self.batch) >= self.BATCH:
            pickle.dump(self.batch, self.file, protocol=pickle.HIGHEST_PROTOCOL)
            self.batch = []

    def __iter__(self):
        if self.batch:
            pickle.dump(self.batch, self.file, protocol=pickle.HIGHEST_PROTOCOL)
            self.batch = []
        self.file.seek(0)
        with self.file:
            while True:
                try:
                    yield from pickle.load(self.file)
                except EOFError:
                    return


@dataclass
class ExportContext:
    connection: object  # a SQLAlchemy Connection (read-only on SQLite: no write lock held)
    study: Study
    protocol: Protocol
    blinded: bool
    now: datetime
    # The dummy allocation replaces the true one (a blinded role's export before unblinding).
    dummy: bool = False
    # Free text (verbatim reports, free-text answers, audit reasons) left out for sharing.
    no_free_text: bool = False
    # Answers that can point to the drug by their content (side effects, the blinding guess:
    # ``Protocol.revealing_instruments``) left out, for a blinded statistician who asks.
    without_side_effects: bool = False
    dummies: dict = field(default_factory=dict)
    # Filled while the endpoints table is written, so the participants table need not recompute it.
    endpoint_flags: list | None = None
    # A bundle writes the time course right after the endpoints, from the same read: with this
    # set, the endpoints table keeps the time course's rows (``Spool``) as it reads each period,
    # and the time-course table writes them instead of reading the study again.
    spool_timecourse: bool = False
    timecourse_spool: Spool | None = None
    # One site's participants only (a site's archive), or one participant's (their own download).
    site: str | None = None
    participant_code: str | None = None
    # Sequence, treatment code and drug name left blank: a site's archive before unblinding, whose
    # readers (investigators, coordinators) see no allocation.
    allocation_withheld: bool = False

    def __post_init__(self):
        self._last_key, self._last = None, None
        self.order = {tp.code: number for number, tp in enumerate(self.protocol.timepoints, start=1)}
        self.free_text_items = {
            (instrument.id, item.id)
            for instrument in self.protocol.instruments.values()
            for item in instrument.items
            if item.type == ItemType.FREE_TEXT
        }
        self.withheld = set(self.protocol.revealing_instruments()) if self.without_side_effects else set()
        if self.dummy:
            self.dummies = dict(
                self.connection.execute(
                    select(Participant.code, Participant.dummy_sequence).where(Participant.study_id == self.study.id)
                ).all()
            )

    @property
    def in_scope(self):
        """The condition on ``Participant`` every table's query carries: the study, and the
        site or the participant when the export is scoped to one."""
        condition = Participant.study_id == self.study.id
        if self.site is not None:
            condition = condition & (Participant.site == self.site)
        if self.participant_code is not None:
            condition = condition & (Participant.code == self.participant_code)
        return condition

    def sequence(self, code: str, sequence: str) -> str | None:
        """The participant's sequence under the allocation this export carries."""
        if self.allocation_withheld:
            return None
        return self.dummies.get(code) or sequence if self.dummy else sequence

    def allocation(self, code: str, sequence: str, period: int, treatment: str) -> tuple[str, str, str | None]:
        """(sequence, treatment_code, drug name) of a participant's period under the allocation
        this export carries; the drug name only after unblinding. Rows of one period come
        together, so the last answer is kept."""
        if self.allocation_withheld:
            return None, None, None
        key = (code, period)
        if key != self._last_key:
            shown, masked = sequence, treatment
            if self.dummy and self.dummies.get(code) in self.protocol.sequences:
                shown = self.dummies[code]
                masked = self.protocol.sequences[shown][period - 1]
            self._last_key, self._last = key, (shown, masked, self.treatment(treatment))
        return self._last

    def treatment(self, code: str) -> str | None:
        """The drug name, only after unblinding (a blinded export carries treatment_code alone)."""
        return None if self.blinded else self.protocol.treatments.get(code) or code

    def stream(self, statement, named: bool = False):
        """Rows of ``statement`` (which must select from Participant), participant chunk by chunk.

        Participants come in code order, so the concatenated chunks keep the statement's order.
        ``named``: rows as plain named tuples, for a table that reads its columns by name (a
        SQLAlchemy Row's attribute costs about 0.75 µs, a named tuple's 0.01 µs: the assessments
        table, reading 30 a row, spent most of its time there). Tables that unpack each row by
        position leave it off.
        """
        ids = (
            self.connection.execute(select(Participant.id).where(self.in_scope).order_by(Participant.code))
            .scalars()
            .all()
        )
        record = None
        for start in range(0, len(ids), CHUNK):
            chunk = ids[start : start + CHUNK]
            result = self.connection.execute(
                statement.where(Participant.id.in_(chunk)).execution_options(yield_per=BATCH)
            )
            if not named:
                yield from result
                continue
            record = record or namedtuple("Record", result.keys(), rename=True)._make
            yield from map(record, result)


def seconds_between(later: datetime, earlier: datetime) -> int:
    """Whole seconds from ``earlier`` to ``later``, each time cut to the second first: the
    precision the export writes times at. Every derived column is computed from the times as
    exported, so an analyst recomputing it from the CSV gets the same number (and
    ``verify-archive`` does, with no database). The cut times are not built (twice a row of three
    tables): the microseconds they drop are taken off the difference, which leaves whole seconds."""
    delta = later - earlier
    return (
        delta.days * 86400 + delta.seconds + (delta.microseconds - later.microsecond + earlier.microsecond) // 1_000_000
    )


def _minutes(moment: datetime | None, dose: datetime | None) -> float | None:
    if moment is None or dose is None:
        return None
    return round(seconds_between(moment, dose) / 60, 1)


# An optional time point (such as D2) left unanswered is not done, not missed: the export says so
# in ``status`` (the diary's own state stays missed; adherence already leaves it out).
NOT_DONE = "not_done"


def exported_status(state: AssessmentState, optional: bool) -> str:
    return NOT_DONE if optional and state == AssessmentState.MISSED else state


def assessments(ctx: ExportContext):
    nominal = {tp.code: tp.target.nominal_minutes for tp in ctx.protocol.timepoints}
    optional = {tp.code: tp.optional for tp in ctx.protocol.timepoints}
    # Only the columns the table writes: each time read is parsed (nine a row from the whole
    # read model, seven written).
    rows = ctx.stream(
        judged(
            ctx,
            Participant.code,
            Participant.site,
            Participant.sequence,
            Participant.code_broken_at,
            Period.number.label("period"),
            Period.treatment,
            Period.planned_start,
            Period.dose_start,
            Assessment.timepoint,
            Assessment.window_open,
            Assessment.window_close,
            Assessment.protocol_version_id,
            Submission.submitted_at,
            Submission.collected_at,
            Submission.source,
            Submission.submission_mode,
            Submission.viewport_width,
            Submission.viewport_height,
            Submission.device_pixel_ratio,
            Submission.zoom,
            Submission.text_scale,
            Submission.browser,
        ).order_by(Participant.code, Period.number, Assessment.target),
        named=True,
    )
    order, dummy = ctx.order, ctx.dummy
    # Each entry names the protocol version it was scheduled (and, once made, answered) under.
    versions = dict(
        ctx.connection.execute(
            select(ProtocolVersion.id, ProtocolVersion.version).where(ProtocolVersion.study_id == ctx.study.id)
        ).all()
    )
    for row in rows:
        sequence, treatment_code, name = ctx.allocation(row.code, row.sequence, row.period, row.treatment)
        yield (
            row.code,
            row.site,
            sequence,
            row.period,
            treatment_code,
            name,
            row.planned_start,
            row.dose_start,
            row.timepoint,
            order.get(row.timepoint),
            nominal.get(row.timepoint),
            row.window_open,
            row.window_close,
            exported_status(row.state, optional.get(row.timepoint, False)),
            row.submitted_at,
            row.collected_at,
            _minutes(row.collected_at, row.dose_start),
            row.source,
            row.submission_mode,
            _minutes(row.submitted_at, row.collected_at)
            if row.submission_mode == SubmissionMode.OFFLINE_SYNC
            else None,
            row.viewport_width,
            row.viewport_height,
            row.device_pixel_ratio,
            row.zoom,
            row.text_scale,
            row.browser,
            row.code_broken_at,
            versions.get(row.protocol_version_id),
            dummy,
        )


def _response_instruments(ctx: ExportContext) -> list[str]:
    return [
        name
        for name, instrument in ctx.protocol.instruments.items()
        if not instrument.side_effects and name not in ctx.withheld
    ]


def responses_query(ctx: ExportContext, instruments: list[str]):
    return (
        select(
            Participant.code,
            Participant.sequence,
            Period.number,
            Period.treatment,
            Period.dose_start,
            Assessment.timepoint,
            ItemValue.instrument,
            ItemValue.item,
            ItemValue.value,
            ItemValue.original_value,
            ItemValue.change_request_id,
            ItemValue.changed_at,
            Submission.submitted_at,
            Submission.collected_at,
            Submission.source,
            Submission.submission_mode,
        )
        .join(Period, Period.participant_id == Participant.id)
        .join(Assessment, Assessment.period_id == Period.id)
        .join(Submission, Submission.assessment_id == Assessment.id)
        .join(ItemValue, ItemValue.submission_id == Submission.id)
        .where(ctx.in_scope, ItemValue.instrument.in_(instruments))
    )


def responses(ctx: ExportContext, instruments: list[str] | None = None):
    """The biggest table by far, so its loop is kept lean: rows of one submission are adjacent,
    and the per-submission values (treatment, minutes from dose) are computed once for them.

    ``instruments``: others than the table's (a participant's own copy adds the side effects)."""
    query = responses_query(ctx, instruments or _response_instruments(ctx)).order_by(
        Participant.code, Period.number, Assessment.target, ItemValue.id
    )
    blank = ctx.free_text_items if ctx.no_free_text else set()
    order, dummy = ctx.order, ctx.dummy
    # Rows of one submission share their minutes from dose; the key holds the dose too, as two
    # entries given at one moment can belong to two periods (D14 of one, BL of the next).
    last_key = minutes = None
    for (
        code,
        sequence,
        number,
        treatment,
        dose_start,
        timepoint,
        instrument,
        item,
        value,
        original_value,
        change_request_id,
        changed_at,
        submitted_at,
        collected_at,
        source,
        mode,
    ) in ctx.stream(query):
        if (collected_at, dose_start) != last_key:
            last_key, minutes = (collected_at, dose_start), _minutes(collected_at, dose_start)
        shown_sequence, treatment_code, name = ctx.allocation(code, sequence, number, treatment)
        as_entered = original_value if changed_at is not None else value
        days_to_change = None if changed_at is None else round((changed_at - collected_at).total_seconds() / 86400, 2)
        if blank and (instrument, item) in blank:
            value = as_entered = None
        yield (
            code,
            shown_sequence,
            number,
            treatment_code,
            name,
            timepoint,
            order.get(timepoint),
            instrument,
            item,
            value,
            as_entered,
            change_request_id,
            days_to_change,
            submitted_at,
            collected_at,
            minutes,
            source,
            mode,
            dummy,
        )


# Why an entry that is not counted (``AssessmentState.counted``) is left out of the endpoints,
# for each state an entry with answers can have besides (``AssessmentState.flagged``).
EXCLUDED = {
    AssessmentState.AFTER_DOSE: "given after the infusion started, so not a baseline",
    AssessmentState.OUT_OF_WINDOW: "given outside its window after the infusion time was corrected",
}


def judged(ctx: ExportContext, *columns):
    """``columns`` of the read model's joins (assessment, period, participant, any submission) in
    the export's scope, with each assessment's state judged by the database: ``state_sql``, the
    SQL form of ``state_at`` that tests/test_rules_once.py holds equal to it. One CASE in the
    query instead of a Python call per assessment per table (400,000 for 5,000 participants)."""
    return read_model(*columns, state_sql(ctx.now).label("state")).where(ctx.in_scope)


def _measure_periods(ctx: ExportContext):
    """Each dosed period's assessments with the endpoints' measure, one group per participant and
    period: the one read both endpoint tables are built from (only the columns they write)."""
    plan = ctx.protocol.endpoints
    measured = (
        judged(
            ctx,
            Participant.code,
            Participant.sequence,
            Participant.code_broken_at,
            Period.id.label("period_id"),
            Period.number.label("period"),
            Period.treatment,
            Period.dose_start,
            Assessment.timepoint,
            Submission.collected_at,
            Submission.source,
            ItemValue.value,
            ItemValue.changed_at,
        )
        .outerjoin(
            ItemValue,
            (ItemValue.submission_id == Submission.id)
            & (ItemValue.instrument == plan.instrument)
            & (ItemValue.item == plan.item),
        )
        .where(Period.dose_start.is_not(None))
        .order_by(Participant.code, Period.number, Assessment.target)
    )
    for _, group in groupby(ctx.stream(measured, named=True), key=lambda r: (r.code, r.period)):
        yield list(group)  # one participant's period: a few dozen rows at most


def _hours_from_dose(row) -> float:
    return seconds_between(row.collected_at, row.dose_start) / 3600


def endpoints_table(ctx: ExportContext):
    """Every dosed period gets a row, with or without entries; the protocol's endpoints
    (``EndpointPlan``) computed once, here.

    Each value counts at the hours between the infusion start and when it was given
    (``collected_at``); entries that are ``after_dose`` or ``out_of_window`` are left out and
    named in ``excluded_reason``.
    """
    plan = ctx.protocol.endpoints
    codes = set(ctx.order)
    curve = auc_timepoints(ctx.protocol)
    baseline_column = f"baseline_{plan.name}"
    flags = ctx.endpoint_flags = []  # (code, baseline, primary) for the participants table
    late = timedelta(days=ctx.protocol.late_change_days)
    signatures = signature_statuses(ctx.study.id)
    spool = Spool() if ctx.spool_timecourse else None
    timecourse = _timecourse_rows(ctx)
    for group in _measure_periods(ctx):
        if spool is not None:
            spool.add(timecourse(group))
        first = group[0]
        values, excluded, primary, changed_late = {}, [], None, False
        for row in group:
            state = row.state
            if row.timepoint == plan.primary_at:
                primary = (state, row.source)
            if row.value is None or row.timepoint not in codes:
                continue
            if state not in AssessmentState.counted():
                excluded.append(
                    f"{row.timepoint} {state}: {EXCLUDED[state]} ({_hours_from_dose(row):+.1f} h from the start)"
                )
                continue
            values[row.timepoint] = (_hours_from_dose(row), int(row.value))
            changed_late = changed_late or (row.changed_at is not None and row.changed_at - row.collected_at > late)
        result = compute_endpoints(plan, values, curve)
        if result[baseline_column] == 0 and "pct_change" in plan.changes:
            excluded.append("baseline is 0: percent changes from it are undefined")
        flags.append((first.code, result[baseline_column], result[plan.primary]))
        sequence, treatment_code, name = ctx.allocation(first.code, first.sequence, first.period, first.treatment)
        n_points = result.pop("auc_n_points", _ABSENT)
        yield (
            first.code,
            sequence,
            first.period,
            treatment_code,
            name,
            *result.values(),
            primary[0] if primary else None,
            primary[1] if primary else None,
            *(() if n_points is _ABSENT else (n_points,)),
            "; ".join(excluded) or None,
            changed_late,
            signatures.get(first.period_id, SignatureStatus.NOT_SIGNED),
            first.code_broken_at,
            ctx.dummy,
        )
    if spool is not None:
        # Only a whole pass hands its time course on: a table given up half way leaves none.
        ctx.timecourse_spool = spool


_ABSENT = object()


def timecourse_table(ctx: ExportContext):
    """Participant x period x time point in long form, ready to plot or model the whole curve:
    the same measure, baseline and exclusions as the endpoints table (in a bundle, the rows its
    pass kept: ``ExportContext.spool_timecourse``)."""
    spool, ctx.timecourse_spool = ctx.timecourse_spool, None
    if spool is not None:
        yield from spool
        return
    rows = _timecourse_rows(ctx)
    for group in _measure_periods(ctx):
        yield from rows(group)


def _timecourse_rows(ctx: ExportContext):
    """The time course's rows of one participant's period (a group of ``_measure_periods``)."""
    plan = ctx.protocol.endpoints
    with_measure = {tp.code for tp in ctx.protocol.timepoints if plan.instrument in tp.instruments}
    optional = {tp.code: tp.optional for tp in ctx.protocol.timepoints}

    def rows(group) -> list[tuple]:
        found = []
        states = [(row, row.state) for row in group]
        baseline = baseline_of(
            plan,
            {
                row.timepoint: (0.0, int(row.value))
                for row, state in states
                if row.timepoint in plan.baseline and row.value is not None and state not in EXCLUDED
            },
        )
        for row, state in states:
            if row.timepoint not in with_measure:
                continue
            value = None if row.value is None else int(row.value)
            counts = value is not None and state not in EXCLUDED
            hours = None if row.collected_at is None else round(_hours_from_dose(row), 2)
            changes = [CHANGE[kind](value, baseline) if counts else None for kind in plan.changes]
            sequence, treatment_code, name = ctx.allocation(row.code, row.sequence, row.period, row.treatment)
            found.append(
                (
                    row.code,
                    sequence,
                    row.period,
                    treatment_code,
                    name,
                    row.timepoint,
                    ctx.order.get(row.timepoint),
                    baseline if len(plan.baseline) == 1 or baseline is None else round(baseline, 2),
                    value,
                    *(None if measured is None else round(measured, 2) for measured in changes),
                    hours,
                    exported_status(state, optional.get(row.timepoint, False)),
                    row.source,
                    ctx.dummy,
                )
            )
        return found

    return rows


def scores(ctx: ExportContext):
    """Each declared scale total (``Instrument.score``) of each entry that asked the scale: the
    sum of its items with the reversed ones turned round, from the values as they stand now.
    Empty when an item is unanswered. Written only for a protocol that declares a score."""
    scored = {name: i for name, i in ctx.protocol.instruments.items() if i.score is not None}
    if not scored:
        return
    query = responses_query(ctx, list(scored)).order_by(
        Participant.code, Period.number, Assessment.target, ItemValue.instrument, ItemValue.id
    )
    for (code, sequence, number, treatment, _dose, timepoint, instrument), group in groupby(
        ctx.stream(query), key=lambda r: tuple(r[:7])
    ):
        rows = list(group)
        answers = {row.item: row.value for row in rows}
        scale = scored[instrument]
        low, high = scale.score_range()
        shown_sequence, treatment_code, name = ctx.allocation(code, sequence, number, treatment)
        yield (
            code,
            shown_sequence,
            number,
            treatment_code,
            name,
            timepoint,
            ctx.order.get(timepoint),
            instrument,
            scale.score.name,
            scale.score_of(answers),
            sum(1 for item in scale.score.items if answers.get(item) not in (None, "")),
            len(scale.score.items),
            low,
            high,
            rows[0].collected_at,
            ctx.dummy,
        )


def side_effects(ctx: ExportContext):
    if ctx.without_side_effects:
        return
    rows = ctx.stream(
        select(
            Participant.code,
            Participant.sequence,
            Period.number,
            Period.treatment,
            Period.dose_start,
            SideEffectReport.timepoint,
            SideEffectReport.term,
            SideEffectReport.severity,
            SideEffectReport.solicited,
            SideEffectReport.verbatim,
            SideEffectReport.coded_term,
            SideEffectReport.reported_at,
        )
        .join(Period, SideEffectReport.period_id == Period.id)
        .join(Participant, Period.participant_id == Participant.id)
        .where(ctx.in_scope)
        .order_by(Participant.code, Period.number, SideEffectReport.reported_at, SideEffectReport.id),
        named=True,
    )
    coded = {
        term.code: term.coded or None
        for instrument in ctx.protocol.instruments.values()
        for item in instrument.items
        for term in item.terms
    }
    for row in rows:
        _, treatment_code, name = ctx.allocation(row.code, row.sequence, row.number, row.treatment)
        yield (
            row.code,
            row.number,
            treatment_code,
            name,
            row.timepoint,
            ctx.order.get(row.timepoint),
            row.term,
            row.severity,
            bool(row.solicited),
            None if ctx.no_free_text else row.verbatim,
            coded.get(row.term) if row.solicited else row.coded_term,
            row.reported_at,
            _minutes(row.reported_at, row.dose_start),
            ctx.dummy,
        )


def adherence(ctx: ExportContext):
    optional = {tp.code: tp.optional for tp in ctx.protocol.timepoints}
    rows = ctx.stream(
        judged(ctx, Participant.code, Period.number, Assessment.timepoint).order_by(Participant.code, Period.number),
        named=True,
    )
    for (code, number), group in groupby(rows, key=lambda r: (r.code, r.number)):
        tally = Tally()
        for row in group:
            tally.add(row.state, optional.get(row.timepoint, False))
        yield (code, number, tally.scheduled, tally.completed, tally.completed_late, tally.missed, tally.compliance_pct)


def participants(ctx: ExportContext):
    """One row per participant: the analysis populations come from here (a participant with
    the primary endpoint in every period is in the complete-case crossover analysis)."""
    periods = ctx.protocol.periods
    dosed, baselines, primaries = {}, {}, {}
    if ctx.protocol.endpoints is None:
        ctx.endpoint_flags = []
    if ctx.endpoint_flags is None:  # the endpoints table, written first in a bundle, fills them
        for _ in endpoints_table(ctx):
            pass
    for code, baseline, primary in ctx.endpoint_flags:
        dosed[code] = dosed.get(code, 0) + 1
        baselines[code] = baselines.get(code, 0) + (baseline is not None)
        primaries[code] = primaries.get(code, 0) + (primary is not None)
    rows = ctx.connection.execute(
        select(
            Participant.code,
            Participant.site,
            Participant.timezone,
            Participant.sequence,
            Participant.enrolled_at,
            Participant.status,
            Participant.withdrawn_at,
            Participant.withdrawal_reason,
            Participant.withdrawal_decided_by,
            Participant.discontinued_at,
            Participant.discontinuation_reason,
            Participant.discontinuation_decided_by,
            Participant.code_broken_at,
        )
        .where(ctx.in_scope)
        .order_by(Participant.code)
    )
    for row in rows:
        yield (
            row.code,
            row.site,
            row.timezone,
            ctx.sequence(row.code, row.sequence),
            row.enrolled_at,
            row.status,
            row.withdrawn_at,
            row.withdrawal_reason,
            row.withdrawal_decided_by,
            row.discontinued_at,
            row.discontinuation_reason,
            row.discontinuation_decided_by,
            dosed.get(row.code, 0),
            baselines.get(row.code, 0) == periods,
            primaries.get(row.code, 0) == periods,
            row.code_broken_at,
            ctx.dummy,
        )


def _actor_role(actor: str, staff_roles: dict[str, str]) -> str:
    """A role instead of a name: the audit trail's actor strings carry emails and codes."""
    kind, _, who = actor.partition(":")
    if kind == ActorKind.STAFF:
        return staff_roles.get(who, "staff")
    if kind == ActorKind.PARTICIPANT:
        return "participant"
    if actor == ActorKind.CLI:
        return "operator"
    return "system"


# Events about the study's data that an analyst may read. Staff accounts, sign-ins and PINs are
# left out (they name people and say nothing about the data).
DATA_ENTITIES = (
    "change_request",
    "signature",
    "participant",
    "period",
    "assessment",
    "submission",
    "item_value",
    "side_effect_report",
    "follow_up_task",
    "study",
    "protocol_version",
)
STAFF_ACTIONS = tuple(
    str(action)
    for action in (
        AuditAction.RESET_PIN,
        AuditAction.SET_PIN,
        AuditAction.PIN_LOCKED,
        AuditAction.PARTICIPANT_SIGN_OUT,
        AuditAction.PUSH_SUBSCRIBE,
        AuditAction.CHANGE_REMINDER_CHANNEL,
        AuditAction.REISSUE_LINK,
        AuditAction.REVOKE_LINK,
        AuditAction.VIEW_CONTACT,
        AuditAction.CHANGE_CONTACT,
    )
)


def audit_trail(ctx: ExportContext):
    """Who (by role) changed what, when, from what, to what, and why. Events that name the
    allocation (``blinding.ALLOCATION_EVENTS``) are left out entirely, whoever exports."""
    staff_roles = dict(ctx.connection.execute(select(StaffUser.email, StaffUser.role)).all())
    codes = dict(ctx.connection.execute(select(Participant.id, Participant.code).where(ctx.in_scope)).all())
    rows = ctx.connection.execute(
        select(
            AuditEvent.id,
            AuditEvent.at,
            AuditEvent.actor,
            AuditEvent.action,
            AuditEvent.entity,
            AuditEvent.participant_id,
            AuditEvent.field,
            AuditEvent.old_value,
            AuditEvent.new_value,
            AuditEvent.reason,
        )
        .where(
            AuditEvent.entity.in_(DATA_ENTITIES),
            AuditEvent.action.not_in(ALLOCATION_EVENTS + STAFF_ACTIONS),
            (AuditEvent.participant_id.is_(None))
            | (AuditEvent.participant_id.in_(select(Participant.id).where(ctx.in_scope))),
        )
        .order_by(AuditEvent.id)
        .execution_options(yield_per=BATCH)
    )
    withheld = tuple(f"{name}." for name in ctx.withheld)
    # Unpacked by position: 110,000 events for 5,000 participants.
    for event_id, at, actor, action, entity, participant_id, field_name, old, new, reason in rows:
        if ctx.without_side_effects:
            # Side-effect reviews, and an entry's answers as the audit trail records them, go
            # with the tables they describe.
            if entity == "side_effect_report":
                continue
            if any(name in (value or "") for value in (field_name, old, new) for name in withheld):
                old = new = None
        if ctx.no_free_text:
            old = new = reason = None
        yield (
            event_id,
            at,
            _actor_role(actor, staff_roles),
            action,
            entity,
            codes.get(participant_id),
            field_name,
            old,
            new,
            reason,
        )


def participants_identified(ctx: ExportContext):
    rows = ctx.connection.execute(
        select(
            Participant.code,
            Participant.site,
            Participant.email,
            Participant.phone,
            Participant.status,
            Participant.enrolled_at,
        )
        .where(ctx.in_scope)
        .order_by(Participant.code)
    )
    for row in rows:
        yield tuple(row)


def audit_reviews(ctx: ExportContext):
    """The review log of the audit-trail checks (``reporting/audit_review.py``)."""
    rows = ctx.connection.execute(
        select(
            AuditReview.id,
            AuditReview.check,
            AuditReview.cases,
            StaffUser.role,
            AuditReview.reviewed_at,
            AuditReview.note,
        )
        .join(StaffUser, AuditReview.reviewed_by_id == StaffUser.id)
        .where(AuditReview.study_id == ctx.study.id)
        .order_by(AuditReview.id)
    )
    for review_id, check, cases, role, at, note in rows:
        yield review_id, check, cases, role, at, None if ctx.no_free_text else note


BUILDERS = {
    "assessments": assessments,
    "responses": responses,
    "scores": scores,
    "side_effects": side_effects,
    "adherence": adherence,
    "participants": participants,
    "audit_trail": audit_trail,
    "audit_reviews": audit_reviews,
    "participants_identified": participants_identified,
}


def builder(protocol, table: str):
    """The function that yields ``table``'s rows: the protocol names its endpoint tables."""
    plan = protocol.endpoints
    if plan is not None and table == plan.endpoints_table:
        return endpoints_table
    if plan is not None and table == plan.timecourse_table:
        return timecourse_table
    return BUILDERS[table]
