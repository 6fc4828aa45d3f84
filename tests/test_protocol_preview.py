"""The author's loop: the calendar one participant would live through under a protocol, from a
file (CLI, no database) or the study's own (staff page); daylight-saving changes marked."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from diary.protocol import load_protocol, shipped_protocol_path
from diary.reminders.preview import preview, preview_text
from diary.vocabulary import ReminderKind, Role

from .staff_helpers import login_as

SHIPPED = shipped_protocol_path("ketamine-fatigue-crossover")
PROTOCOL = load_protocol(SHIPPED)


def _row(calendar, period, code):
    return next(row for row in calendar.rows if row.period == period and row.timepoint == code)


def test_spring_forward_in_new_york_keeps_day_offsets_on_the_clock_and_is_marked():
    """Infusion Monday 2 March 2026, 09:00 New York; clocks go forward on Sunday 8 March."""
    calendar = preview(PROTOCOL, "America/New_York", datetime(2026, 3, 2, 9, 0))
    tz = ZoneInfo("America/New_York")
    d3, d7 = _row(calendar, 1, "D3"), _row(calendar, 1, "D7")
    assert d7.opens.replace(tzinfo=None) == datetime(2026, 3, 8, 9, 0)  # 6 days: 09:00 on the clock
    assert d7.opens.tzname() == "EDT" and d3.opens.tzname() == "EST"
    # 72 h is elapsed time: D3's target is 09:00 EST on Thursday, 3 days later on the clock too.
    assert d3.target.astimezone(tz).replace(tzinfo=None) == datetime(2026, 3, 5, 9, 0)
    assert calendar.clock_changes == [
        "clocks go forward 1 h on 2026-03-08: 02:00 EST becomes 03:00 EDT, between period 1 D3 and period 1 D7"
    ]
    # Period 2 is 14 days later, at the same clock time (after the change).
    assert calendar.anchors[1].replace(tzinfo=None) == datetime(2026, 3, 16, 9, 0)
    # D1 opens at 05:00 (20 h after 09:00): its opening reminder waits for the quiet hours' end.
    d1 = _row(calendar, 1, "D1")
    opening = next(r for r in d1.reminders if r.kind == ReminderKind.WINDOW_OPEN)
    assert opening.moved and opening.at.replace(tzinfo=None) == datetime(2026, 3, 3, 7, 0)
    assert not any(r.moved for r in d7.reminders)
    # Clinic time points get no reminder (the protocol's reminder settings).
    assert _row(calendar, 1, "M80").reminders == ()


def test_fall_back_in_madrid_inside_a_window_is_marked_on_that_window():
    """Madrid's clocks go back at 03:00 on Sunday 25 October 2026. An infusion on Friday at 20:00
    has the change between its time points; one on Saturday at 04:00 has it inside D1's window
    (20 h to 28 h after: from 00:00 CEST to 07:00 CET, eight real hours)."""
    calendar = preview(PROTOCOL, "Europe/Madrid", datetime(2026, 10, 23, 20, 0))
    assert any("clocks go back 1 h on 2026-10-25: 03:00 CEST becomes 02:00 CET" in c for c in calendar.clock_changes)
    late = preview(PROTOCOL, "Europe/Madrid", datetime(2026, 10, 24, 4, 0))
    d1 = _row(late, 1, "D1")
    assert d1.opens.tzname() == "CEST" and d1.closes.tzname() == "CET"
    assert d1.clock_changes and "03:00 CEST becomes 02:00 CET" in d1.clock_changes[0]
    # 20 h and 28 h are elapsed: the window is 8 real hours, 07:00 CET closes it (not 08:00).
    assert d1.closes.astimezone(ZoneInfo("UTC")) - d1.opens.astimezone(ZoneInfo("UTC")) == timedelta(hours=8)
    assert d1.closes.replace(tzinfo=None) == datetime(2026, 10, 25, 7, 0)
    assert "inside the window of period 1 D1" in late.clock_changes[0]
    text = preview_text(late)
    assert "DST inside: " not in text and "DST: clocks go back 1 h" in text


def test_the_cli_prints_the_calendar_without_a_database(tmp_path):
    from .conftest import make_app

    database = tmp_path / "never.sqlite"
    runner = make_app(f"sqlite:///{database}").test_cli_runner()
    args = ["diary", "protocol", "preview", str(SHIPPED), "--timezone", "Europe/Madrid", "--start", "2026-03-20 09:00"]
    result = runner.invoke(args=args)
    assert result.exit_code == 0, result.output
    assert "Period 1: anchor Fri 2026-03-20 09:00 CET" in result.output
    assert "Period 2: anchor Fri 2026-04-03 09:00 CEST" in result.output
    assert "clocks go forward 1 h on 2026-03-29: 02:00 CET becomes 03:00 CEST" in result.output
    assert "reminder window_open" in result.output and "(moved out of quiet hours)" in result.output
    bad_zone = runner.invoke(args=args[:4] + ["--timezone", "Mars/Olympus", "--start", "2026-03-20 09:00"])
    assert bad_zone.exit_code == 2 and "not a time zone" in bad_zone.output
    bad_start = runner.invoke(args=args[:6] + ["--start", "20/03/2026"])
    assert bad_start.exit_code == 2 and "YYYY-MM-DD HH:MM" in bad_start.output
    broken = tmp_path / "broken.yaml"
    broken.write_text(SHIPPED.read_text().replace("periods: 2", "periods: 0"))
    refused = runner.invoke(args=["diary", "protocol", "preview", str(broken), *args[4:]])
    assert refused.exit_code == 1 and "periods: must be at least 1" in refused.output
    assert not database.exists()


def test_the_staff_page_draws_the_study_protocols_calendar(client, study):
    login_as(client, Role.COORDINATOR)
    page = client.get("/staff/protocol")
    assert page.status_code == 200 and "ketamine-fatigue-crossover" in page.get_data(as_text=True)
    shown = client.get("/staff/protocol", query_string={"timezone": "America/New_York", "start": "2026-03-02 09:00"})
    html = shown.get_data(as_text=True)
    assert shown.status_code == 200
    assert "Period 2: Mon 2026-03-16 09:00 EDT" in html
    assert "02:00 EST becomes 03:00 EDT" in html and "(after quiet hours)" in html
    # The sealed names are never on this page.
    assert "ketamine 0.5" not in html and "midazolam 0.045" not in html
    wrong = client.get("/staff/protocol", query_string={"timezone": "Nowhere/Land", "start": "2026-03-02 09:00"})
    assert wrong.status_code == 422 and "Not a time zone" in wrong.get_data(as_text=True)
    bad_date = client.get("/staff/protocol", query_string={"timezone": "UTC", "start": "yesterday"})
    assert bad_date.status_code == 422 and "Period 1" not in bad_date.get_data(as_text=True)
