"""Wall-clock times: a participant's clock read into UTC, and times as staff pages show them.
Participants read times in their own locale's form (``i18n.when``)."""

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


def local_datetime(moment: datetime, tz_name: str) -> str:
    """'Wed 2026-11-25 14:30' for staff pages: the form the staff date-time inputs take, so what
    is read and what is typed agree (participants read their own locale's form, i18n.py)."""
    local = moment.astimezone(ZoneInfo(tz_name))
    return f"{local:%a %Y-%m-%d %H:%M}"
