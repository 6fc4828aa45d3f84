"""Times as a participant reads them, on their own clock."""
from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo


FIRST_YEAR, LAST_YEAR = 2000, 2100


def plausible(wall: datetime) -> bool:
    """A date a trial of ours can hold: years far outside would overflow time zone arithmetic
    (year 1) or pass for a typing slip (1900)."""
    return FIRST_YEAR <= wall.year <= LAST_YEAR


def from_local_clock(wall: datetime, tz_name: str) -> datetime | None:
    """A naive wall-clock time on ``tz_name``'s clock as an aware datetime, or None when that
    time did not exist (the clocks skipped it when daylight saving began). An ambiguous time
    (clocks going back) is taken as its first occurrence."""
    tz = ZoneInfo(tz_name)
    aware = wall.replace(tzinfo=tz, fold=0)
    try:
        if aware.astimezone(ZoneInfo("UTC")).astimezone(tz).replace(tzinfo=None) != wall:
            return None
    except OverflowError:  # year 1 or 9999: no such instant in UTC
        return None
    return aware


def clock(moment: datetime) -> str:
    """'9:00' or '14:30': no leading zero on the hour, 24-hour clock."""
    return f"{moment.hour}:{moment.minute:02d}"


def local_when(moment: datetime, tz_name: str, now: datetime) -> str:
    """'14:30' today, 'tomorrow 9:00', 'Thursday 9:00' this week, else 'Thursday 3 December, 9:00'."""
    tz = ZoneInfo(tz_name)
    local, today = moment.astimezone(tz), now.astimezone(tz).date()
    days = (local.date() - today).days
    if days == 0:
        return clock(local)
    if days == 1:
        return f"tomorrow {clock(local)}"
    if days == -1:
        return f"yesterday {clock(local)}"
    if 1 < days < 7:
        return f"{local:%A} {clock(local)}"
    return f"{local:%A} {local.day} {local:%B}, {clock(local)}"


def local_datetime(moment: datetime, tz_name: str) -> str:
    """'Wednesday 25 November 2026, 14:30' for history pages."""
    local = moment.astimezone(ZoneInfo(tz_name))
    return f"{local:%A} {local.day} {local:%B %Y}, {clock(local)}"
