"""Table builders: each yields the rows of one export table, streaming from the database.

Rows are tuples in the column order of ``schema.TABLES``, holding plain Python values (str,
int, float, bool, datetime or None); the writers turn them into CSV, Parquet or XLSX. Queries
stream with ``yield_per`` so the study is never held in memory at once.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from itertools import groupby

from sqlalchemy import select

from ..adherence import Tally
from ..assessments import rows_query, state_at
from ..models import Assessment, ItemValue, Participant, Period, SideEffectReport, Study, Submission
from ..protocol import Protocol
from ..vocabulary import AssessmentState
from .endpoints import compute_endpoints

BATCH = 5000
# Participants per query: each query sorts only this many participants' rows, so neither the
# database's sort nor Python ever holds the whole study.
CHUNK = 200


@dataclass
class ExportContext:
    connection: object  # a SQLAlchemy Connection (read-only on SQLite: no write lock held)
    study: Study
    protocol: Protocol
    blinded: bool
    now: datetime

    def treatment(self, code: str) -> str:
        """Masked code while blinded; the sealed drug name after unblinding."""
        return code if self.blinded else self.protocol.treatments.get(code) or code

    def stream(self, statement):
        """Rows of ``statement`` (which must select from Participant), participant chunk by chunk.

        Participants come in code order, so the concatenated chunks keep the statement's order.
        """
        ids = self.connection.execute(
            select(Participant.id).where(Participant.study_id == self.study.id).order_by(Participant.code)
        ).scalars().all()
        for start in range(0, len(ids), CHUNK):
            chunk = ids[start:start + CHUNK]
            yield from self.connection.execute(
                statement.where(Participant.id.in_(chunk)).execution_options(yield_per=BATCH))


def _minutes(moment: datetime | None, dose: datetime | None) -> float | None:
    if moment is None or dose is None:
        return None
    return round((moment - dose).total_seconds() / 60, 1)


def assessments(ctx: ExportContext):
    nominal = {tp.code: tp.target.nominal_minutes for tp in ctx.protocol.timepoints}
    rows = ctx.stream(rows_query().where(Participant.study_id == ctx.study.id)
                      .order_by(Participant.code, Period.number, Assessment.target))
    for row in rows:
        status = state_at(row, ctx.now)
        yield (row.code, row.site, row.sequence, row.period, ctx.treatment(row.treatment), row.planned_start,
               row.dose_start, row.timepoint, nominal.get(row.timepoint), row.window_open, row.window_close,
               status, row.submitted_at, row.collected_at, _minutes(row.collected_at, row.dose_start),
               row.source, row.code_broken_at)


def _response_instruments(protocol: Protocol) -> list[str]:
    return [name for name, instrument in protocol.instruments.items() if not instrument.side_effects]


def _responses_query(ctx: ExportContext, instruments: list[str]):
    return (select(Participant.code, Participant.sequence, Period.number, Period.treatment,
                   Period.dose_start, Assessment.timepoint, ItemValue.instrument, ItemValue.item,
                   ItemValue.value, Submission.submitted_at, Submission.collected_at, Submission.source)
            .join(Period, Period.participant_id == Participant.id)
            .join(Assessment, Assessment.period_id == Period.id)
            .join(Submission, Submission.assessment_id == Assessment.id)
            .join(ItemValue, ItemValue.submission_id == Submission.id)
            .where(Participant.study_id == ctx.study.id, ItemValue.instrument.in_(instruments)))


def responses(ctx: ExportContext):
    """The biggest table by far, so its loop is kept lean: rows of one submission are adjacent,
    and the per-submission values (treatment, minutes from dose) are computed once for them."""
    query = _responses_query(ctx, _response_instruments(ctx.protocol)).order_by(
        Participant.code, Period.number, Assessment.target, ItemValue.id)
    treatments = {code: ctx.treatment(code) for code in ctx.protocol.treatments}
    last_collected = minutes = None
    for (code, sequence, number, treatment, dose_start, timepoint, instrument, item, value, submitted_at,
         collected_at, source) in ctx.stream(query):
        if collected_at != last_collected:
            last_collected, minutes = collected_at, _minutes(collected_at, dose_start)
        yield (code, sequence, number, treatments.get(treatment, treatment), timepoint, instrument, item,
               value, submitted_at, collected_at, minutes, source)


# States whose entries stand for nothing in the endpoints: kept, shown, and named as excluded.
EXCLUDED = {AssessmentState.AFTER_DOSE: "given after the infusion started, so not a baseline",
            AssessmentState.OUT_OF_WINDOW: "given outside its window after the infusion time was corrected"}


def fatigue_endpoints(ctx: ExportContext):
    """Every dosed period gets a row, with or without entries; endpoints computed once, here.

    Each VAS counts at the hours between the infusion start and when it was given
    (``collected_at``); entries that are ``after_dose`` or ``out_of_window`` are left out and
    named in ``excluded_reason``.
    """
    instrument, item = ctx.protocol.vas_item()
    codes = [tp.code for tp in ctx.protocol.timepoints]
    auc_timepoints = [tp.code for tp in ctx.protocol.timepoints
                      if tp.target.nominal_minutes > 0 and tp.target.nominal_minutes <= 7 * 24 * 60]
    vas = (rows_query().add_columns(ItemValue.value)
           .outerjoin(ItemValue, (ItemValue.submission_id == Submission.id)
                      & (ItemValue.instrument == instrument) & (ItemValue.item == item))
           .where(Participant.study_id == ctx.study.id, Period.dose_start.is_not(None))
           .order_by(Participant.code, Period.number, Assessment.target))
    for (code, number), group in groupby(ctx.stream(vas), key=lambda r: (r.code, r.period)):
        group = list(group)  # one participant's period: at most a dozen rows
        first = group[0]
        values, excluded, d3 = {}, [], None
        for row in group:
            state = state_at(row, ctx.now)
            if row.timepoint == "D3":
                d3 = (state, row.source)
            if row.value is None or row.timepoint not in codes:
                continue
            if state in EXCLUDED:
                hours = (row.collected_at - row.dose_start).total_seconds() / 3600
                excluded.append(f"{row.timepoint} {state}: {EXCLUDED[state]} ({hours:+.1f} h from the start)")
                continue
            values[row.timepoint] = ((row.collected_at - row.dose_start).total_seconds() / 3600, int(row.value))
        result = compute_endpoints(values, auc_timepoints)
        yield (code, first.sequence, number, ctx.treatment(first.treatment), result.baseline_vas,
               result.vas_d1, result.vas_d3, result.vas_d7, result.pct_change_d1, result.pct_change_d3,
               result.pct_change_d7, result.responder_d3, result.auc_pct_change_0_7d,
               result.hours_from_dose_d1, result.hours_from_dose_d3, result.hours_from_dose_d7,
               d3[0] if d3 else None, d3[1] if d3 else None, result.auc_n_points, "; ".join(excluded) or None,
               first.code_broken_at)


def side_effects(ctx: ExportContext):
    rows = ctx.stream(
        select(Participant.code, Period.number, Period.treatment, Period.dose_start, SideEffectReport.timepoint,
               SideEffectReport.term, SideEffectReport.severity, SideEffectReport.solicited,
               SideEffectReport.verbatim, SideEffectReport.reported_at)
        .join(Period, SideEffectReport.period_id == Period.id)
        .join(Participant, Period.participant_id == Participant.id)
        .where(Participant.study_id == ctx.study.id)
        .order_by(Participant.code, Period.number, SideEffectReport.reported_at, SideEffectReport.id))
    for row in rows:
        yield (row.code, row.number, ctx.treatment(row.treatment), row.timepoint, row.term, row.severity,
               bool(row.solicited), row.verbatim, row.reported_at, _minutes(row.reported_at, row.dose_start))


def adherence(ctx: ExportContext):
    optional = {tp.code: tp.optional for tp in ctx.protocol.timepoints}
    rows = ctx.stream(rows_query().where(Participant.study_id == ctx.study.id)
                      .order_by(Participant.code, Period.number))
    for (code, number), group in groupby(rows, key=lambda r: (r.code, r.period)):
        tally = Tally()
        for row in group:
            tally.add(state_at(row, ctx.now), optional.get(row.timepoint, False))
        yield (code, number, tally.scheduled, tally.completed, tally.completed_late, tally.missed,
               tally.compliance_pct)


def participants_identified(ctx: ExportContext):
    rows = ctx.connection.execute(
        select(Participant.code, Participant.site, Participant.email, Participant.phone, Participant.status,
               Participant.enrolled_at)
        .where(Participant.study_id == ctx.study.id).order_by(Participant.code))
    for row in rows:
        yield tuple(row)


BUILDERS = {"assessments": assessments, "responses": responses, "fatigue_endpoints": fatigue_endpoints,
            "side_effects": side_effects, "adherence": adherence,
            "participants_identified": participants_identified}
