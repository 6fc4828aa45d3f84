"""Edges of the trial's rules that a review found untested, each pinned both ways so that a
planted off-by-one fails here."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from diary.exports.endpoints import compute_endpoints
from diary.extensions import db
from diary.models import Reminder, SideEffectReport
from diary.protocol import load_protocol, shipped_protocol_path
from diary.protocol.schedule import accepting_entries, schedule_period
from diary.reminders.dispatch import LEASE, claim, run_pass
from diary.reminders.planning import plan

from .conftest import answers_for, assessment_of
from .test_reminders import DAY1_OPEN, enrol_dosed, smtp  # noqa: F401  (smtp: the fixture)

UTC = UTC
PROTOCOL = load_protocol(shipped_protocol_path("ketamine-fatigue-crossover"))
OPENS = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
LATE_CLOSE = OPENS + timedelta(hours=10)


@pytest.mark.parametrize(
    "now, accepted",
    [
        (OPENS - timedelta(microseconds=1), False),
        (OPENS, True),  # the open edge is inclusive
        (LATE_CLOSE - timedelta(microseconds=1), True),
        (LATE_CLOSE, False),  # the late close is exclusive
    ],
)
def test_accepting_entries_edges(now, accepted):
    """An entry is accepted from the window's open (inclusive) to the late close (exclusive)."""
    assert accepting_entries(window_open=OPENS, late_close=LATE_CLOSE, now=now) is accepted


def test_a_day_based_window_close_keeps_the_local_clock_across_daylight_saving():
    """D7 closes at day 8 on the participant's clock: 09:00 local before and after the change."""
    tz = ZoneInfo("America/New_York")
    dose = datetime(2026, 3, 5, 9, 0, tzinfo=tz)  # clocks spring forward on Sunday 8 March
    windows = {w.timepoint: w for w in schedule_period(PROTOCOL, dose.astimezone(UTC), "America/New_York")}
    close = windows["D7"].window_close.astimezone(tz)
    assert (close.date().isoformat(), close.hour, close.minute) == ("2026-03-13", 9, 0)
    # 8 calendar days that hold a 23-hour day: one hour less than 8 x 24 elapsed hours.
    assert windows["D7"].window_close - dose.astimezone(UTC) == timedelta(hours=8 * 24 - 1)
    assert windows["D7"].late_close == windows["D7"].window_close + timedelta(hours=2)


def _endpoints(bl, d1, d3, d7):
    values = {"BL": (-1.0, bl), "D1": (24.0, d1), "D3": (72.0, d3), "D7": (168.0, d7)}
    given = {k: v for k, v in values.items() if v[1] is not None}
    return SimpleNamespace(**compute_endpoints(PROTOCOL.endpoints, given, ["D1", "D3", "D7"]))


def test_d3_at_exactly_minus_20_percent_is_a_responder():
    """The responder rule is pct_change_d3 <= -20: exactly -20 % counts, -19.99 % does not."""
    assert _endpoints(50, 45, 40, 45).responder_d3 is True  # (40 - 50) / 50 = -20 %
    assert _endpoints(5000, 4500, 4001, 4500).responder_d3 is False  # -19.98 %


def test_vas_values_at_d1_d3_d7_are_the_entered_scores():
    """vas_d1, vas_d3 and vas_d7 carry the scores entered at those time points, untouched."""
    result = _endpoints(60, 41, 47, 53)
    assert (result.baseline_vas, result.vas_d1, result.vas_d3, result.vas_d7) == (60, 41, 47, 53)
    assert result.pct_change_d1 == round((41 - 60) / 60 * 100, 2)


def test_checklist_reports_carry_solicited_and_their_time_point(app, study):
    """A checklist answer becomes a solicited report of that time point; free text an unsolicited one."""
    from diary.entries.recording import record_submission

    participant = enrol_dosed(study, "P-SE0001")
    db.session.commit()
    d1 = assessment_of(participant, 1, "D1")
    form = answers_for(
        PROTOCOL, "D1", **{"side_effects.symptoms.headache": "moderate", "side_effects.other": "ringing in the ears"}
    )
    record_submission(d1, form, now=DAY1_OPEN, actor="t")
    db.session.commit()
    reports = {r.term: r for r in db.session.scalars(select(SideEffectReport))}
    assert set(reports) == {"headache", "other"}
    assert (reports["headache"].solicited, reports["headache"].timepoint, reports["headache"].severity) == (
        True,
        "D1",
        "moderate",
    )
    assert (reports["other"].solicited, reports["other"].timepoint, reports["other"].verbatim) == (
        False,
        "D1",
        "ringing in the ears",
    )


def test_a_dispatch_pass_never_sends_a_sent_row_again(app, smtp, study):
    """Once sent, a reminder stays sent: later passes at the same and later times send nothing."""
    enrol_dosed(study, "P-SENT01")
    db.session.commit()
    assert run_pass(app, now=DAY1_OPEN).sent == 1
    assert run_pass(app, now=DAY1_OPEN).sent == 0
    assert run_pass(app, now=DAY1_OPEN + LEASE + timedelta(minutes=1)).sent == 0
    assert len(smtp.inbox.messages) == 1


def test_a_sending_row_is_reclaimed_only_after_its_lease(app, study):
    """A row left 'sending' by a pass that died is not taken before the lease ends, and is after."""
    enrol_dosed(study, "P-LEASE1")
    db.session.commit()
    plan(DAY1_OPEN)
    db.session.commit()
    taken = claim(DAY1_OPEN, "dead-pass")
    assert taken and db.session.get(Reminder, taken[0]).state == "sending"
    assert claim(DAY1_OPEN + LEASE - timedelta(seconds=1), "second-pass") == []
    assert claim(DAY1_OPEN + LEASE + timedelta(seconds=1), "third-pass") == taken
