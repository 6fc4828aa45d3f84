"""Each rule written twice, once in Python (for a row in hand) and once in SQL (for the database
to count and sort thousands), is one rule: every pair is held equal over random times, on
SQLite and on PostgreSQL.

The times are drawn from a coarse grid (half-hours around one day), so that equal times, the
edges where ``<`` and ``<=`` part, come up often.
"""

from __future__ import annotations

import random
from datetime import timedelta

import pytest
from sqlalchemy import select

from diary.dosing import assessments
from diary.extensions import db
from diary.models import Assessment, Participant, Period, Submission
from diary.participants.enrolment import enroll
from diary.reporting.adherence import Tally, count_states
from diary.vocabulary import AssessmentState, Source, SubmissionMode

from .conftest import NOW

STEP = timedelta(minutes=30)


def _moment(rng: random.Random, spread: int = 8):
    return NOW + rng.randint(-spread, spread) * STEP


def random_rows(study, rng: random.Random, participants: int = 8, per_period: int = 8) -> None:
    """Participants whose periods have a recorded start, only a planned one, or (rarely) neither,
    and whose assessments have random windows, with or without an entry collected at a random
    time, some no longer needed."""
    version = study.current_protocol_version
    for number in range(participants):
        participant, _ = enroll(
            study,
            site="NIH-CC",
            timezone="UTC",
            sequence=rng.choice(["AB", "BA"]),
            actor="test",
            now=NOW - timedelta(days=3),
            code=f"R-{number:04d}",
        )
        db.session.flush()
        for period in db.session.scalars(select(Period).where(Period.participant_id == participant.id)):
            kind = rng.random()
            period.dose_start = _moment(rng) if kind < 0.6 else None
            period.planned_start = _moment(rng) if kind >= 0.4 and kind < 0.95 else None
            for index in range(per_period):
                opens = _moment(rng)
                closes = opens + rng.randint(1, 4) * STEP
                assessment = Assessment(
                    period=period,
                    protocol_version=version,
                    timepoint=f"T{index}",
                    target=_moment(rng),
                    window_open=opens,
                    window_close=closes,
                    late_close=closes + rng.randint(0, 2) * STEP,
                    not_applicable=rng.random() < 0.1,
                )
                db.session.add(assessment)
                if rng.random() < 0.5:
                    # Half near the window (its edges), half anywhere.
                    collected = opens + rng.randint(-1, 6) * STEP if rng.random() < 0.5 else _moment(rng)
                    db.session.add(
                        Submission(
                            assessment=assessment,
                            submitted_at=collected,
                            collected_at=collected,
                            source=Source.PARTICIPANT,
                            submission_mode=SubmissionMode.ONLINE,
                            alert=False,
                        )
                    )
    db.session.commit()


@pytest.mark.parametrize("seed", [11, 23, 47])
def test_the_state_and_its_two_predicates_are_one_rule_in_python_and_sql(study, seed):
    """``state_of``/``state_sql``, ``is_pre_dose``/``is_pre_dose_sql`` and
    ``waits_for_the_infusion``/``waits_for_the_infusion_sql`` agree on every random row at
    every random ``now``."""
    rng = random.Random(seed)
    random_rows(study, rng)
    seen, compared = set(), 0
    for _ in range(6):
        now = _moment(rng, spread=10)
        rows = db.session.execute(
            assessments.rows_query().add_columns(
                assessments.state_sql(now).label("sql_state"),
                assessments.is_pre_dose_sql().label("sql_pre_dose"),
                assessments.waits_for_the_infusion_sql().label("sql_waits"),
            )
        ).all()
        for row in rows:
            times = dict(target=row.target, dose_start=row.dose_start, planned_start=row.planned_start)
            python = (
                assessments.state_at(row, now).value,
                assessments.is_pre_dose(**times),
                assessments.waits_for_the_infusion(**times),
            )
            assert python == (row.sql_state, bool(row.sql_pre_dose), bool(row.sql_waits)), (now, row)
            seen.add(python[0])
            compared += 1
    assert compared == 6 * 8 * 2 * 8
    assert seen == {state.value for state in AssessmentState}  # every branch of the rule was taken


@pytest.mark.parametrize("seed", [5, 8])
def test_adherence_counted_by_the_database_equals_tally_of_the_python_states(study, seed):
    """``count_states`` (one SQL statement) and ``Tally.add`` over ``state_at`` count the same,
    with and without optional time points."""
    rng = random.Random(seed)
    random_rows(study, rng)
    optional = ["T1", "T4"]
    for _ in range(4):
        now = _moment(rng, spread=10)
        expected: dict[int, Tally] = {}
        for row in db.session.execute(assessments.rows_query()):
            expected.setdefault(row.participant_id, Tally()).add(
                assessments.state_at(row, now), row.timepoint in optional
            )
        counted = count_states(now, optional, [Participant.study_id == study.id])
        assert {pid: row.tally for pid, row in counted.participants.items()} == expected


def test_an_entry_with_answers_is_counted_or_flagged_and_every_flag_has_its_reason():
    """The endpoints leave out exactly what the summary and adherence do not count as done, and
    the export names a reason for each such state."""
    from diary.dosing.assessments import state_of
    from diary.exports.tables import EXCLUDED

    rng = random.Random(3)
    seen = set()
    for _ in range(2000):
        opens = _moment(rng)
        closes = opens + rng.randint(1, 3) * STEP
        dose = _moment(rng) if rng.random() < 0.7 else None
        seen.add(
            state_of(
                window_open=opens,
                window_close=closes,
                late_close=closes + rng.randint(0, 2) * STEP,
                collected_at=_moment(rng),
                not_applicable=rng.random() < 0.2,
                now=_moment(rng),
                pre_dose=rng.random() < 0.5,
                dose_start=dose,
                dosed=dose is not None,
            )
        )
    assert seen == set(AssessmentState.counted()) | set(AssessmentState.flagged())
    assert set(EXCLUDED) == set(AssessmentState.flagged())
