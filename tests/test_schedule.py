"""Schedule math: windows in UTC from a dose start, across time zones and daylight saving."""

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from diary.dosing.assessments import state_of
from diary.protocol import load_protocol, shipped_protocol_path
from diary.protocol.schedule import schedule_period
from diary.vocabulary import AssessmentState

COMPLETED, COMPLETED_LATE, MISSED, NOT_APPLICABLE, OPEN, UPCOMING = (
    AssessmentState.COMPLETED,
    AssessmentState.COMPLETED_LATE,
    AssessmentState.MISSED,
    AssessmentState.NOT_APPLICABLE,
    AssessmentState.OPEN,
    AssessmentState.UPCOMING,
)

PROTOCOL = load_protocol(shipped_protocol_path("ketamine-fatigue-crossover"))
UTC = UTC
H, M, D = timedelta(hours=1), timedelta(minutes=1), timedelta(days=1)
DOSE = datetime(2026, 6, 10, 13, 30, tzinfo=UTC)  # 09:30 in New York (summer, no DST change)

# TRIAL.md's table: code -> (target, window open, window close) after the infusion start.
TRIAL_TABLE = {
    "BL": (-60 * M, -24 * H, 0 * M),
    "M40": (40 * M, 30 * M, 55 * M),
    "M80": (80 * M, 65 * M, 95 * M),
    "M120": (120 * M, 105 * M, 135 * M),
    "M230": (230 * M, 210 * M, 260 * M),
    "D1": (24 * H, 20 * H, 28 * H),
    "D2": (48 * H, 42 * H, 54 * H),
    "D3": (72 * H, 66 * H, 78 * H),
    "D7": (7 * D, 6 * D, 8 * D),
    "D14": (14 * D, 12 * D, 16 * D),
}


@pytest.mark.parametrize("code", list(TRIAL_TABLE))
def test_each_window_of_the_shipped_protocol(code):
    """Every time point's target and window match the trial's table."""
    windows = {w.timepoint: w for w in schedule_period(PROTOCOL, DOSE, "America/New_York")}
    target, window_open, window_close = TRIAL_TABLE[code]
    window = windows[code]
    assert window.target == DOSE + target
    assert window.window_open == DOSE + window_open
    assert window.window_close == DOSE + window_close


def test_day14_closes_at_the_next_infusion():
    """Day 14 of a period runs up to the next infusion once that is known."""
    next_dose = DOSE + 14 * D + 2 * H
    windows = {w.timepoint: w for w in schedule_period(PROTOCOL, DOSE, "America/New_York", next_dose)}
    assert windows["D14"].window_close == next_dose


def test_home_grace_extends_late_close_only():
    """Day 3 keeps its window but accepts late entries for the protocol's grace."""
    windows = {w.timepoint: w for w in schedule_period(PROTOCOL, DOSE, "America/New_York")}
    assert windows["D3"].late_close == windows["D3"].window_close + 2 * H
    assert windows["M40"].late_close == windows["M40"].window_close


def test_dose_on_the_eve_of_a_dst_change_in_new_york():
    """Hours are elapsed time; days keep the local clock time across the spring change."""
    tz = ZoneInfo("America/New_York")
    dose = datetime(2026, 3, 7, 9, 0, tzinfo=tz)  # Saturday 09:00 EST; clocks spring forward Sunday 02:00
    windows = {w.timepoint: w for w in schedule_period(PROTOCOL, dose.astimezone(UTC), "America/New_York")}
    # Day 1 is 24 elapsed hours: 10:00 EDT on the local clock.
    assert windows["D1"].target == dose.astimezone(UTC) + 24 * H
    assert windows["D1"].target.astimezone(tz).hour == 10
    # Day 7 is seven calendar days: 09:00 local, which is only 167 elapsed hours.
    day7 = windows["D7"].target.astimezone(tz)
    assert (day7.date().isoformat(), day7.hour, day7.minute) == ("2026-03-14", 9, 0)
    assert windows["D7"].target - dose.astimezone(UTC) == 167 * H
    assert windows["D7"].window_open.astimezone(tz).hour == 9


def test_dose_before_the_autumn_change_keeps_day7_clock_time():
    """In November, Day 7 at the local clock is 169 elapsed hours."""
    tz = ZoneInfo("America/New_York")
    dose = datetime(2026, 10, 31, 9, 0, tzinfo=tz)
    windows = {w.timepoint: w for w in schedule_period(PROTOCOL, dose.astimezone(UTC), "America/New_York")}
    assert windows["D7"].target.astimezone(tz).hour == 9
    assert windows["D7"].target - dose.astimezone(UTC) == 169 * H


def test_participant_in_kolkata():
    """A half-hour zone without daylight saving: days and hours agree, at 09:15 local."""
    tz = ZoneInfo("Asia/Kolkata")
    dose = datetime(2026, 3, 7, 9, 15, tzinfo=tz)
    windows = {w.timepoint: w for w in schedule_period(PROTOCOL, dose.astimezone(UTC), "Asia/Kolkata")}
    assert windows["D7"].target == dose.astimezone(UTC) + 7 * D
    assert windows["D7"].target.astimezone(tz).strftime("%H:%M") == "09:15"
    assert windows["D1"].window_open.isoformat() == "2026-03-07T23:45:00+00:00"  # 05:15 IST next day


def test_naive_dose_is_refused():
    with pytest.raises(ValueError):
        schedule_period(PROTOCOL, datetime(2026, 1, 1, 9, 0), "UTC")


OPEN_AT, CLOSE_AT, LATE_AT = DOSE, DOSE + H, DOSE + 2 * H


def state(now, submitted=None, not_applicable=False):
    return state_of(
        window_open=OPEN_AT,
        window_close=CLOSE_AT,
        late_close=LATE_AT,
        collected_at=submitted,
        not_applicable=not_applicable,
        now=now,
    )


@pytest.mark.parametrize(
    "now, expected",
    [
        (OPEN_AT - timedelta(seconds=1), UPCOMING),
        (OPEN_AT, OPEN),  # the window opens inclusively
        (CLOSE_AT - timedelta(seconds=1), OPEN),
        (CLOSE_AT, OPEN),  # closed, but inside the late grace
        (LATE_AT - timedelta(seconds=1), OPEN),
        (LATE_AT, MISSED),  # the grace ends exclusively
    ],
)
def test_state_at_the_window_edges(now, expected):
    assert state(now) == expected


@pytest.mark.parametrize(
    "submitted, expected",
    [
        (CLOSE_AT - timedelta(seconds=1), COMPLETED),
        (CLOSE_AT, COMPLETED_LATE),
        (LATE_AT - timedelta(seconds=1), COMPLETED_LATE),
    ],
)
def test_completed_or_late_by_submission_time(submitted, expected):
    assert state(LATE_AT + D, submitted=submitted) == expected


def test_withdrawn_assessment_is_not_applicable():
    assert state(OPEN_AT, not_applicable=True) == NOT_APPLICABLE


@pytest.mark.parametrize(
    "collected, expected",
    [
        (OPEN_AT - timedelta(seconds=1), "out_of_window"),
        (OPEN_AT, COMPLETED),
        (LATE_AT, "out_of_window"),  # given after the grace: not a late entry
    ],
)
def test_an_entry_given_outside_its_window_is_out_of_window(collected, expected):
    """An entry is judged by when its answers were given against the current window."""
    assert state(LATE_AT + D, submitted=collected) == expected


def test_a_baseline_given_after_the_infusion_started_is_after_dose():
    """A pre-dose entry collected at or after the (corrected) infusion start is after_dose."""
    start = DOSE + H
    judged = state_of(
        window_open=DOSE - D,
        window_close=start,
        late_close=start,
        collected_at=start,
        not_applicable=False,
        now=start + D,
        pre_dose=True,
        dose_start=start,
    )
    assert judged == "after_dose"
    before = state_of(
        window_open=DOSE - D,
        window_close=start,
        late_close=start,
        collected_at=start - timedelta(seconds=1),
        not_applicable=False,
        now=start + D,
        pre_dose=True,
        dose_start=start,
    )
    assert before == COMPLETED


def test_post_dose_time_points_wait_until_the_infusion_is_recorded():
    """With only a planned start, M40 stays upcoming even inside its planned window; BL opens."""
    assert (
        state_of(
            window_open=OPEN_AT,
            window_close=CLOSE_AT,
            late_close=LATE_AT,
            collected_at=None,
            not_applicable=False,
            now=OPEN_AT,
            dosed=False,
        )
        == UPCOMING
    )
    assert (
        state_of(
            window_open=OPEN_AT,
            window_close=CLOSE_AT,
            late_close=LATE_AT,
            collected_at=None,
            not_applicable=False,
            now=OPEN_AT,
            dosed=False,
            pre_dose=True,
        )
        == OPEN
    )


def test_a_pre_dose_time_point_stays_open_past_its_close_until_the_infusion_is_recorded():
    """BL of a planned infusion not yet recorded: open after its planned close (not missed, not
    late); once recorded, its window rules again."""
    waiting = dict(
        window_open=OPEN_AT,
        window_close=CLOSE_AT,
        late_close=CLOSE_AT,
        collected_at=None,
        not_applicable=False,
        pre_dose=True,
    )
    assert state_of(**waiting, now=CLOSE_AT + D, dosed=False) == OPEN
    assert state_of(**waiting, now=OPEN_AT - timedelta(seconds=1), dosed=False) == UPCOMING
    assert state_of(**waiting, now=CLOSE_AT + D, dosed=True, dose_start=CLOSE_AT) == MISSED
    assert state_of(**{**waiting, "not_applicable": True}, now=CLOSE_AT + D, dosed=False) == NOT_APPLICABLE
