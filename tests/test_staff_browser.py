"""The coordinator's adherence grid in a real browser (Chromium) at a laptop's 1366×768: the
participant column and the time-point header stay in view, and both infusions can be reached."""

from __future__ import annotations

from datetime import timedelta

from diary.dosing.infusions import record_dose
from diary.extensions import db
from diary.models import now_utc
from diary.participants.enrolment import enroll

from .staff_helpers import PASSWORD, make_staff
from .test_participant_browser import ARTIFACTS, browser, pytestmark, server  # noqa: F401  (fixtures)

LAPTOP = {"width": 1366, "height": 768}


def test_the_grid_keeps_codes_and_time_points_in_view_at_1366_px(server, browser):  # noqa: F811
    from diary.study.trial import require_study

    with server.app_context():
        now = now_utc()
        for number in range(45):
            participant, _ = enroll(
                require_study(),
                site="NIH-CC",
                timezone="UTC",
                sequence="AB",
                actor="t",
                now=now - timedelta(days=20),
                code=f"P-WIDE{number:02d}",
            )
            record_dose(participant, 1, now - timedelta(days=18), actor="t", now=now)
            record_dose(participant, 2, now - timedelta(days=4), actor="t", now=now)
        make_staff("coordinator", "grid@site.test")
        db.session.commit()
        db.session.remove()
    context = browser.new_context(viewport=LAPTOP)
    page = context.new_page()
    page.set_default_timeout(10_000)
    page.goto(f"{server.config['BASE_URL']}/staff/login")
    page.fill("input[name=email]", "grid@site.test")
    page.fill("input[name=password]", PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url("**/staff/")
    grid = page.locator(".grid-scroll")
    frame = grid.bounding_box()
    code = page.locator("tbody th[scope=row]").first
    header = page.locator("table.grid thead tr").nth(1).locator("th").first
    before_code, before_header = code.bounding_box(), header.bounding_box()
    ARTIFACTS.mkdir(exist_ok=True)
    grid.scroll_into_view_if_needed()
    page.screenshot(path=str(ARTIFACTS / "staff-grid-1366-start.png"))
    frame, before_code, before_header = grid.bounding_box(), code.bounding_box(), header.bounding_box()

    # Scrolled fully right: the second infusion's last time point is inside the grid's frame,
    # and the participant codes have not moved.
    grid.evaluate("element => { element.scrollLeft = element.scrollWidth; }")
    last = page.locator("table.grid thead tr").nth(1).locator("th").last
    box = last.bounding_box()
    assert frame["x"] <= box["x"] and box["x"] + box["width"] <= frame["x"] + frame["width"] + 1
    assert page.locator("table.grid thead th", has_text="Infusion 2").is_visible()
    # Without the sticky column it would have moved left by the whole scroll (hundreds of px).
    scrolled = grid.evaluate("element => element.scrollLeft")
    assert scrolled > 300
    assert abs(code.bounding_box()["x"] - before_code["x"]) <= 3 and code.bounding_box()["x"] >= frame["x"] - 1

    # Scrolled to the bottom: the time-point header row is still at the top of the frame, and
    # the last participant is in view.
    grid.evaluate("element => { element.scrollTop = element.scrollHeight; }")
    page.screenshot(path=str(ARTIFACTS / "staff-grid-1366.png"))
    after_header = header.bounding_box()
    assert grid.evaluate("element => element.scrollTop") > 300
    assert abs(after_header["y"] - before_header["y"]) <= 3 and after_header["y"] >= frame["y"] - 1
    # Right under the infusion row, not over it.
    infusion_row = page.locator("table.grid thead th", has_text="Infusion 1").bounding_box()
    assert after_header["y"] >= infusion_row["y"] + infusion_row["height"] - 1
    # The corner cell stays put over both scrolls.
    corner = page.locator("table.grid thead th").first.bounding_box()
    assert corner["x"] >= frame["x"] - 1 and corner["y"] >= frame["y"] - 1
    last_row = page.locator("tbody th[scope=row]").last.bounding_box()
    assert last_row["y"] + last_row["height"] <= frame["y"] + frame["height"] + 1
    context.close()


def test_now_fills_the_infusion_time_on_the_participants_clock(server, browser):  # noqa: F811
    """The coordinator taps Now as the infusion starts: the field holds the participant's local time."""
    from datetime import datetime
    from zoneinfo import ZoneInfo

    from diary.study.trial import require_study

    with server.app_context():
        participant, _ = enroll(
            require_study(),
            site="NIH-CC",
            timezone="Asia/Tokyo",
            sequence="AB",
            actor="t",
            now=now_utc() - timedelta(days=2),
            code="P-NOWBTN",
        )
        make_staff("coordinator", "now@site.test")
        db.session.commit()
        db.session.remove()
    context = browser.new_context(viewport=LAPTOP)
    page = context.new_page()
    try:
        base = server.config["BASE_URL"]
        page.goto(f"{base}/staff/login")
        page.fill("#email", "now@site.test")
        page.fill("#password", PASSWORD)
        page.locator("button[type=submit]").click()
        page.goto(f"{base}/staff/participants/P-NOWBTN/dose/1")
        page.get_by_role("button", name="Now").click()
        typed = datetime.strptime(page.input_value("#start"), "%Y-%m-%d %H:%M").replace(tzinfo=ZoneInfo("Asia/Tokyo"))
        assert abs((typed - datetime.now(ZoneInfo("UTC"))).total_seconds()) < 120
    finally:
        context.close()
