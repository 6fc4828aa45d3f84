"""One participant's calendar under a protocol, before anyone is enrolled: the author's preview.

Pure: a protocol, a time zone and the first anchor (infusion start, or day 1) in; every time
point's window in local time across the periods, the reminders it would get (moved out of quiet
hours as the scheduler moves them), and the daylight-saving changes that fall inside, out. The
same schedule and reminder rules the running study uses (``schedule_period``, ``owed_reminders``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

from ..protocol import Protocol
from ..protocol.schedule import schedule_period
from ..vocabulary import ReminderKind
from .planning import owed_reminders


@dataclass(frozen=True)
class PreviewReminder:
    kind: str
    at: datetime  # local
    moved: bool  # pushed out of the quiet hours


@dataclass(frozen=True)
class PreviewRow:
    period: int
    timepoint: str
    label: str
    optional: bool
    setting: str
    target: datetime  # local, as every time below
    opens: datetime
    closes: datetime
    late_close: datetime
    reminders: tuple[PreviewReminder, ...]
    # The window holds a daylight-saving change: "clocks go forward 1 h on 2026-03-08 02:00".
    clock_changes: tuple[str, ...] = ()


@dataclass(frozen=True)
class Preview:
    protocol_id: str
    version: str
    timezone: str
    anchors: tuple[datetime, ...]  # each period's planned anchor, local
    quiet: tuple[str, str]
    rows: list[PreviewRow] = field(default_factory=list)
    # Every daylight-saving change from the first window's opening to the last one's late
    # close, with where it falls: "clocks go forward 1 h on ... (between period 1 D3 and D7)".
    clock_changes: list[str] = field(default_factory=list)


def clock_changes_between(start: datetime, end: datetime, tz: ZoneInfo) -> list[str]:
    """The daylight-saving changes of ``tz`` between two instants, in words, hour by hour."""
    return [text for _, text in _changes(start, end, tz)]


def _changes(start: datetime, end: datetime, tz: ZoneInfo) -> list[tuple[datetime, str]]:
    # Arithmetic in UTC: aware datetimes of one ZoneInfo add and subtract on the wall clock.
    changes = []
    moment = start.astimezone(UTC)
    end = end.astimezone(UTC)
    offset = moment.astimezone(tz).utcoffset()
    while moment < end:
        following = moment + timedelta(hours=1)
        if following.astimezone(tz).utcoffset() != offset:
            # The exact instant, to the second: the first one with the new offset.
            low, high = moment, following
            while high - low > timedelta(seconds=1):
                middle = low + (high - low) / 2
                low, high = (low, middle) if middle.astimezone(tz).utcoffset() != offset else (middle, high)
            high = high.replace(second=0, microsecond=0)  # zones change clocks on whole minutes
            after = high.astimezone(tz)
            delta = after.utcoffset() - offset
            hours = abs(delta.total_seconds()) / 3600
            way = "forward" if delta > timedelta(0) else "back"
            changes.append(
                (
                    after,
                    f"clocks go {way} {hours:g} h on {after:%Y-%m-%d}: "
                    f"{high.astimezone(timezone(offset)):%H:%M} {low.astimezone(tz):%Z} becomes {after:%H:%M %Z}",
                )
            )
            offset = after.utcoffset()
        moment = following
    return changes


def preview(protocol: Protocol, tz_name: str, start: datetime, every_days: int | None = None) -> Preview:
    """The calendar of a participant whose first anchor is ``start`` (local wall time, naive or
    aware) and whose later periods follow every ``every_days`` days (default: the protocol's
    minimum gap plus one day, the planned spacing)."""
    tz = ZoneInfo(tz_name)
    first = start.replace(tzinfo=tz) if start.tzinfo is None else start.astimezone(tz)
    gap = every_days if every_days is not None else protocol.min_days_between_doses + 1
    anchors = []
    for number in range(protocol.periods):
        wall = first.replace(tzinfo=None) + timedelta(days=gap * number)
        anchors.append(wall.replace(tzinfo=tz, fold=0))
    quiet = (protocol.reminders.quiet_start, protocol.reminders.quiet_end)
    result = Preview(protocol.id, protocol.version, tz_name, tuple(anchors), quiet)
    for number, anchor in enumerate(anchors, 1):
        following = anchors[number] if number < len(anchors) else None
        windows = schedule_period(protocol, anchor.astimezone(UTC), tz_name, following)
        for window in windows:
            timepoint = protocol.timepoint(window.timepoint)
            owed = owed_reminders(
                protocol,
                window.timepoint,
                window_open=window.window_open,
                window_close=window.window_close,
                tz_name=tz_name,
                quiet=quiet,
            )
            reminders = []
            for reminder in owed:
                unmoved = window.window_open if reminder.kind == ReminderKind.WINDOW_OPEN else None
                if unmoved is None and protocol.reminders.closing_soon_before is not None:
                    unmoved = window.window_close - protocol.reminders.closing_soon_before.nominal
                reminders.append(
                    PreviewReminder(reminder.kind, reminder.due_at.astimezone(tz), reminder.due_at != unmoved)
                )
            result.rows.append(
                PreviewRow(
                    period=number,
                    timepoint=timepoint.code,
                    label=str(timepoint.label),
                    optional=timepoint.optional,
                    setting=timepoint.setting,
                    target=window.target.astimezone(tz),
                    opens=window.window_open.astimezone(tz),
                    closes=window.window_close.astimezone(tz),
                    late_close=window.late_close.astimezone(tz),
                    reminders=tuple(reminders),
                    clock_changes=tuple(clock_changes_between(window.window_open, window.late_close, tz)),
                )
            )
    if result.rows:
        # Compared in UTC: aware datetimes of one ZoneInfo compare on the wall clock.
        first_open = min(row.opens.astimezone(UTC) for row in result.rows)
        last_close = max(row.late_close.astimezone(UTC) for row in result.rows)
        for moment, text in _changes(first_open, last_close, tz):
            at = moment.astimezone(UTC)
            inside = [
                f"period {r.period} {r.timepoint}"
                for r in result.rows
                if r.opens.astimezone(UTC) <= at < r.late_close.astimezone(UTC)
            ]
            before = [r for r in result.rows if r.target.astimezone(UTC) < at]
            after = [r for r in result.rows if r.target.astimezone(UTC) >= at]
            where = (
                f"inside the window of {', '.join(inside)}"
                if inside
                else "between "
                + (f"period {before[-1].period} {before[-1].timepoint}" if before else "the start")
                + " and "
                + (f"period {after[0].period} {after[0].timepoint}" if after else "the end")
            )
            result.clock_changes.append(f"{text}, {where}")
    return result


def _local(moment: datetime) -> str:
    return f"{moment:%a %Y-%m-%d %H:%M %Z}"


def preview_text(result: Preview) -> str:
    """The preview as the CLI prints it: one block per period, one line per time point."""
    lines = [
        f"Protocol {result.protocol_id} version {result.version}, time zone {result.timezone}; "
        f"quiet hours {result.quiet[0]}-{result.quiet[1]} (reminders wait until they end).",
    ]
    for number, anchor in enumerate(result.anchors, 1):
        lines.append("")
        lines.append(f"Period {number}: anchor {_local(anchor)}")
        for row in (r for r in result.rows if r.period == number):
            flags = " (optional)" if row.optional else ""
            late = "" if row.late_close == row.closes else f", late entries until {_local(row.late_close)}"
            lines.append(
                f"  {row.timepoint:<6} {row.label}{flags} [{row.setting}]: opens {_local(row.opens)}, "
                f"closes {_local(row.closes)}{late}"
            )
            for reminder in row.reminders:
                moved = " (moved out of quiet hours)" if reminder.moved else ""
                lines.append(f"         reminder {reminder.kind} {_local(reminder.at)}{moved}")
            for change in row.clock_changes:
                lines.append(f"         DST: {change} inside this window")
    lines.append("")
    if result.clock_changes:
        lines.append("Daylight-saving changes (day offsets keep the local clock; hour offsets are elapsed time):")
        lines += [f"  DST: {change}" for change in result.clock_changes]
    else:
        lines.append("Daylight-saving changes: none in this calendar.")
    return "\n".join(lines)
