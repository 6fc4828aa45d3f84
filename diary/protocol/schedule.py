"""Schedule computation: pure functions from a dose start, a time zone and a protocol.

Nothing here touches the database or the clock; ``now`` is always passed in.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from .model import Offset, Protocol, TimePoint


@dataclass(frozen=True)
class ScheduledWindow:
    timepoint: str
    target: datetime
    window_open: datetime
    window_close: datetime
    late_close: datetime


def apply_offset(dose_start: datetime, offset: Offset, tz: ZoneInfo) -> datetime:
    """The UTC instant ``offset`` after ``dose_start``.

    Minutes and hours count elapsed time. Days move the local calendar date and keep the local
    clock time, so a 09:00 infusion has its Day 7 at 09:00 even across a daylight-saving change;
    a clock offset ("6d@18:00") sets the local clock time on that date instead.
    A local time that does not exist (spring forward) resolves to the instant just after the gap.
    """
    if dose_start.tzinfo is None:
        raise ValueError("dose_start must be timezone-aware")
    if offset.unit != "d":
        return (dose_start + offset.nominal).astimezone(UTC)
    local = dose_start.astimezone(tz)
    wall = local.replace(tzinfo=None) + timedelta(days=offset.amount)
    if offset.clock is not None:  # "6d@18:00": that calendar day, at that clock time
        hours, minutes = offset.clock.split(":")
        wall = wall.replace(hour=int(hours), minute=int(minutes), second=0, microsecond=0)
    return wall.replace(tzinfo=tz, fold=0).astimezone(UTC)


def schedule_timepoint(
    timepoint: TimePoint, dose_start: datetime, tz: ZoneInfo, next_dose: datetime | None = None
) -> ScheduledWindow:
    window = timepoint.window
    window_open = apply_offset(dose_start, window.open, tz)
    if window.close is not None:
        window_close = apply_offset(dose_start, window.close, tz)
    elif next_dose is not None:
        window_close = next_dose.astimezone(UTC)
    else:
        window_close = apply_offset(dose_start, window.fallback_close, tz)
    # A next dose given earlier than the window's opening would leave no window at all; keep a
    # minute so the row stays valid, and the dosing rules refuse such doses in the first place.
    window_close = max(window_close, window_open + timedelta(minutes=1))
    late_close = window_close + timepoint.late_grace.nominal
    return ScheduledWindow(
        timepoint=timepoint.code,
        target=apply_offset(dose_start, timepoint.target, tz),
        window_open=window_open,
        window_close=window_close,
        late_close=late_close,
    )


def schedule_period(
    protocol: Protocol, dose_start: datetime, tz_name: str, next_dose: datetime | None = None
) -> list[ScheduledWindow]:
    """Every time point of one period, with its UTC window, in protocol order."""
    tz = ZoneInfo(tz_name)
    return [schedule_timepoint(tp, dose_start, tz, next_dose) for tp in protocol.timepoints]


def accepting_entries(
    *, window_open: datetime, late_close: datetime, now: datetime, until_the_infusion: bool = False
) -> bool:
    """Whether a participant's entry is accepted at ``now`` (the server decides, rule 2).

    ``until_the_infusion``: a time point before an infusion that is planned but not recorded yet
    (BL). Its window closes at the actual start, which nobody knows yet, so it stays open past
    the planned one: a late infusion must not cost the baseline (and the endpoint its
    denominator). Recording the start re-windows it.
    """
    return window_open <= now and (until_the_infusion or now < late_close)
