"""The study summary: mean and SD of the endpoints' measure (the fatigue VAS in the shipped
protocol) changed from baseline, by time point and period, as the protocol's primary change
(% change, or change) declares it.

The split is the blinding guard's (``blinding.Blinding.split``): by treatment once unblinded, by
true sequence for the unblinded role before, by the dummy allocation for blinded analysts and
admins, pooled for everyone else; cells below the guard's ``min_cell`` are withheld.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Float, case, cast, func, select

from ..dosing.assessments import state_sql
from ..extensions import db
from ..models import Assessment, ItemValue, Participant, Period, Study, Submission
from ..protocol import Protocol
from ..study import blinding_index
from ..vocabulary import AssessmentState, ItemType, Split

COUNTED = AssessmentState.counted()


@dataclass
class SummaryRow:
    group: str
    period: int
    timepoint: str
    nominal_hours: float
    n: int
    mean: float | None
    sd: float | None
    # False for a cell of fewer participants than the reader may see a mean of (n, mean and SD
    # withheld): a blinded reader never sees a small cell.
    shown: bool = True


def vas_sums(
    study: Study, protocol: Protocol, now: datetime
) -> list[tuple[str, str | None, str, int, str, int, float, float]]:
    """n, sum and sum of squares of the measure's change (or % change) from the period's baseline,
    per (sequence, dummy sequence, treatment, period, time point): every split's means and SDs
    add up from these.

    Counted by the database: each counted entry (judged inside its window, ``state_sql``) is
    set beside its period's counted baseline (the mean of the baseline time points entered).
    """
    plan = protocol.endpoints
    if plan is None:
        return []
    instrument, item = plan.instrument, plan.item
    counted = [state.value for state in COUNTED]
    value = cast(ItemValue.value, Float)
    # Each entry beside its period's baseline, by a window over the period (no self-join: on
    # PostgreSQL a join of two CTE scans at 5,000 participants ran past the statement timeout).
    baseline = func.avg(case((Assessment.timepoint.in_(plan.baseline), value))).over(
        partition_by=(Participant.id, Period.number)
    )
    vas = (
        select(
            Participant.sequence,
            Participant.dummy_sequence,
            Period.number.label("period"),
            Period.treatment,
            Assessment.timepoint,
            value.label("value"),
            baseline.label("base"),
        )
        .select_from(Assessment)
        .join(Period, Assessment.period_id == Period.id)
        .join(Participant, Period.participant_id == Participant.id)
        .join(Submission, Submission.assessment_id == Assessment.id)
        .join(
            ItemValue,
            (ItemValue.submission_id == Submission.id)
            & (ItemValue.instrument == instrument)
            & (ItemValue.item == item),
        )
        .where(Participant.study_id == study.id, state_sql(now).in_(counted))
    ).subquery("vas")
    if plan.primary_change == "pct_change":
        pct = (vas.c.value - vas.c.base) * 100.0 / vas.c.base
        defined = (vas.c.base.is_not(None), vas.c.base != 0)
    else:
        pct = vas.c.value - vas.c.base
        defined = (vas.c.base.is_not(None),)
    return [
        tuple(row)
        for row in db.session.execute(
            select(
                vas.c.sequence,
                vas.c.dummy_sequence,
                vas.c.treatment,
                vas.c.period,
                vas.c.timepoint,
                func.count(),
                func.sum(pct),
                func.sum(pct * pct),
            )
            .where(vas.c.timepoint.not_in(plan.baseline), *defined)
            .group_by(vas.c.sequence, vas.c.dummy_sequence, vas.c.treatment, vas.c.period, vas.c.timepoint)
        ).all()
    ]


def vas_change_summary(
    study: Study, protocol: Protocol, split: str, now: datetime, sums: list | None = None, min_cell: int = 1
) -> list[SummaryRow]:
    """Mean and SD of the VAS % change from the period's baseline, by group, period and time point,
    from ``sums`` (the figures snapshot's) or counted now. ``split`` and ``min_cell`` are the
    reader's, from the blinding guard."""
    if sums is None:
        sums = vas_sums(study, protocol, now)
    added: dict[tuple, list[float]] = {}
    for sequence, dummy, treatment, number, code, n, total, squares in sums:
        grp = {
            Split.TREATMENT: treatment,
            Split.SEQUENCE: sequence,
            Split.DUMMY_SEQUENCE: dummy or "unassigned",
            Split.POOLED: "all",
        }[split]
        one = added.setdefault((grp, number, code), [0, 0.0, 0.0])
        one[0] += n
        one[1] += total
        one[2] += squares
    rows = [(grp, number, code, n, total, squares) for (grp, number, code), (n, total, squares) in added.items()]
    hours = {tp.code: tp.target.nominal_minutes / 60 for tp in protocol.timepoints}
    order = {tp.code: index for index, tp in enumerate(protocol.timepoints)}

    def label(value):
        return {
            Split.TREATMENT: lambda v: protocol.treatments.get(v, v),
            Split.SEQUENCE: lambda v: f"sequence {v}",
            Split.DUMMY_SEQUENCE: lambda v: f"dummy sequence {v}",
            Split.POOLED: lambda v: "all participants",
        }[split](value)

    result = []
    for grp, number, code, n, total, squares in sorted(rows, key=lambda r: (label(r[0]), r[1], order[r[2]])):
        if n < min_cell:
            result.append(SummaryRow(label(grp), number, code, hours[code], n, None, None, shown=False))
            continue
        mean = total / n
        sd = math.sqrt(max(0.0, (squares - total * total / n) / (n - 1))) if n > 1 else None
        result.append(
            SummaryRow(label(grp), number, code, hours[code], n, round(mean, 1), None if sd is None else round(sd, 1))
        )
    return result


# --- The participants' guesses ----------------------------------------------------------------


@dataclass
class GuessSummary:
    """The blinding guess of one period against the treatment given (unblinded readers only)."""

    period: int
    treatments: tuple[str, str]  # masked codes, in the order of the columns
    # Rows: guessed the first treatment, guessed the second, did not know; columns: given.
    counts: list[list[int]]
    james: blinding_index.Index | None
    bang: tuple[blinding_index.Index | None, blinding_index.Index | None]


def guess_item(protocol: Protocol) -> tuple[str, str, dict[str, str]] | None:
    """(instrument, item, choice -> masked treatment code) of the protocol's blinding guess: a
    single-choice item of an instrument that ``may_reveal_treatment``, whose choices name the
    treatments (a choice's code is the first word of a treatment's sealed name; any other
    choice is a "don't know")."""
    first_words = {name.split()[0].lower(): code for code, name in protocol.treatments.items() if name.split()}
    for instrument in protocol.instruments.values():
        if not instrument.may_reveal_treatment or instrument.side_effects:
            continue
        for item in instrument.items:
            named = {
                choice.code: first_words[choice.code.lower()]
                for choice in item.choices
                if choice.code.lower() in first_words
            }
            if item.type == ItemType.SINGLE_CHOICE and len(set(named.values())) == 2:
                return instrument.id, item.id, named
    return None


def blinding_guess_summary(study: Study, protocol: Protocol) -> list[GuessSummary]:
    """Per period, the guesses against the treatment given, with James's and Bang's indices.
    Shows the true allocation: only for readers the blinding guard gives it to."""
    found = guess_item(protocol)
    if found is None or len(protocol.treatments) != 2:
        return []
    instrument, item, named = found
    treatments = tuple(sorted(protocol.treatments))
    rows = db.session.execute(
        select(Period.number, Period.treatment, ItemValue.value, func.count())
        .select_from(ItemValue)
        .join(Submission, ItemValue.submission_id == Submission.id)
        .join(Assessment, Submission.assessment_id == Assessment.id)
        .join(Period, Assessment.period_id == Period.id)
        .join(Participant, Period.participant_id == Participant.id)
        .where(Participant.study_id == study.id, ItemValue.instrument == instrument, ItemValue.item == item)
        .group_by(Period.number, Period.treatment, ItemValue.value)
    ).all()
    by_period: dict[int, list[list[int]]] = {}
    for number, given, value, count in rows:
        if given not in treatments:
            continue
        counts = by_period.setdefault(number, [[0, 0], [0, 0], [0, 0]])
        guessed = named.get(value)
        counts[treatments.index(guessed) if guessed else 2][treatments.index(given)] += count
    return [
        GuessSummary(
            number,
            treatments,
            counts,
            blinding_index.james(counts),
            (blinding_index.bang(counts, 0), blinding_index.bang(counts, 1)),
        )
        for number, counts in sorted(by_period.items())
    ]
