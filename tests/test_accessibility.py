"""WCAG 2.2 AA, measured: axe-core (bundled by axe-playwright-python, so no outside host) on every
participant page at 320, 390 and 768 px wide and in landscape, and on every staff page at a
laptop's width, in Debian's Chromium. The run prints one summary line per page and size; every
line must say 0 violations. Tap targets of at least 24 x 24 px (WCAG 2.5.8) are checked too.
"""

from __future__ import annotations

import pytest
from sqlalchemy import select

from diary.extensions import db
from diary.models import Assessment, Participant, Period, SideEffectReport, Submission

from .staff_helpers import PASSWORD, make_staff, totp_now
from .test_participant_browser import browser, pytestmark, server  # noqa: F401  (fixtures)

# WCAG 2.0, 2.1 and 2.2 at levels A and AA (axe's tags), plus axe's best practices.
TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa", "best-practice"]
PARTICIPANT_SIZES = {
    "320": {"width": 320, "height": 640},
    "390": {"width": 390, "height": 844},
    "768": {"width": 768, "height": 1024},
    "landscape": {"width": 844, "height": 390},
}
LAPTOP = {"width": 1366, "height": 768}


def axe_violations(page, name: str) -> list[str]:
    """axe's violations on the page as 'rule (impact): n nodes, first target', printed as a summary."""
    from axe_playwright_python.sync_playwright import Axe

    results = Axe().run(page, options={"runOnly": {"type": "tag", "values": TAGS}})
    found = [
        f"{v['id']} ({v['impact']}): {len(v['nodes'])} x {v['nodes'][0]['target']}"
        for v in results.response["violations"]
    ]
    print(f"axe {name}: {len(found)} violations" + (" - " + "; ".join(found) if found else ""))
    return found


def small_targets(page) -> list[str]:
    """Links, buttons and form controls smaller than 24 x 24 CSS px (2.5.8), outside running text."""
    return page.evaluate("""() => [...document.querySelectorAll('main a, main button, main input:not([type=hidden]), main select, main textarea, main [role=slider], header a, header button')]
        .filter(e => e.offsetParent !== null && !(e.tagName === 'A' && e.closest('p, li, td, dd')))
        .filter(e => {
            // A control inside its label is hit anywhere on the label: the label is the target.
            const boxes = [e, ...(e.labels || [])].map(x => x.getBoundingClientRect());
            return !boxes.some(r => r.width >= 24 && r.height >= 24); })
        .map(e => e.tagName + ' ' + (e.textContent.trim() || e.name || '').slice(0, 30))""")


@pytest.fixture(scope="module")
def demo(server):  # noqa: F811
    """The demo study in the module's server: pages with something on them."""
    from diary.demo import build_demo
    from diary.models import now_utc
    from diary.participants.enrolment import reissue_link

    with server.app_context():
        build_demo(now=now_utc())
        db.session.commit()
        open_now = db.session.execute(
            select(Participant, Assessment.id)
            .join(Period, Period.participant_id == Participant.id)
            .join(Assessment, Assessment.period_id == Period.id)
            .where(
                Assessment.timepoint == "D1", Assessment.window_open <= now_utc(), Assessment.window_close > now_utc()
            )
        ).first()
        participant, entry_id = open_now
        token = reissue_link(participant, actor="test", now=now_utc())
        done = db.session.scalar(
            select(Submission.assessment_id)
            .join(Assessment)
            .join(Period)
            .where(Period.participant_id != participant.id)
        )
        code = db.session.scalar(select(Participant.code).where(Participant.id != participant.id))
        report = db.session.scalar(select(SideEffectReport.id))
        for role in ("coordinator", "admin", "analyst", "unblinded", "investigator"):
            make_staff(role)
        db.session.commit()
        db.session.remove()
    return {"token": token, "entry": entry_id, "done": done, "code": code, "report": report}


def _participant_pages(page, base, demo):  # noqa: F811
    """Visit each participant page in turn, yielding its name once it is on screen."""
    page.goto(f"{base}/p/{demo['token']}")
    choosing = page.locator("#confirm").count() == 1  # the first size chooses it, the others enter it
    yield "choose-pin" if choosing else "enter-pin"
    page.fill("#pin", "4821")
    if choosing:
        page.fill("#confirm", "4821")
    page.locator("button[type=submit]").click()
    page.wait_for_url("**/p/today")
    yield "today"
    page.goto(f"{base}/p/entry/{demo['entry']}")
    yield "entry"
    page.locator("button[type=submit]").click()  # nothing answered: the form with its errors
    page.wait_for_selector(".field-error")
    yield "entry-with-errors"
    page.goto(f"{base}/p/history")
    yield "my-entries"
    page.goto(f"{base}/p/settings")
    yield "reminders"
    page.goto(f"{base}/p/offline")
    yield "offline"
    page.goto(f"{base}/p/not-a-link-at-all")
    yield "bad-link"


@pytest.mark.parametrize("size", PARTICIPANT_SIZES)
def test_participant_pages_have_no_axe_violations(server, browser, demo, size):  # noqa: F811
    context = browser.new_context(
        viewport=PARTICIPANT_SIZES[size], is_mobile=True, has_touch=True, device_scale_factor=2
    )
    page = context.new_page()
    found = {}
    try:
        for name in _participant_pages(page, server.config["BASE_URL"], demo):
            found[name] = axe_violations(page, f"participant {name} at {size}") + [
                f"small target: {t}" for t in small_targets(page)
            ]
    finally:
        context.close()
    assert found and all(v == [] for v in found.values()), {k: v for k, v in found.items() if v}


def _sign_in(page, base, role):
    user = f"{role}@site.test"
    page.goto(f"{base}/staff/login")
    page.fill("#email", user)
    page.fill("#password", PASSWORD)
    page.locator("button[type=submit]").click()
    if page.url.endswith("/staff/login/code"):
        page.fill("#code", totp_now())
        page.locator("button[type=submit]").click()
    page.wait_for_load_state()


STAFF_PAGES = {
    "coordinator": [
        "/staff/login",
        "SIGN-IN",
        "/staff/",
        "/staff/?sort=compliance&attention=1",
        "/staff/participants/{code}",
        "/staff/participants/{code}/dose/2",
        "/staff/participants/{code}/plan/2",
        "/staff/participants/{code}/contact",
        "/staff/participants/{code}/link",
        "/staff/participants/{code}/withdraw",
        "/staff/participants/{code}/discontinue",
        "/staff/participants/{code}/reset-pin",
        "/staff/participants/{code}/reissue-link",
        "/staff/assessments/{done}/correct",
        "/staff/assessments/{done}/request-change",
        "/staff/change-requests",
        "/staff/audit-review",
        "/staff/enrol",
        "/staff/side-effects",
        "/staff/follow-up",
        "/staff/follow-up?closed=1",
        "/staff/audit",
        "/staff/summary",
        "/staff/status",
        "/staff/password",
        "/staff/second-factor",
    ],
    "analyst": ["SIGN-IN", "/staff/summary", "/staff/exports"],
    "admin": ["SIGN-IN", "/staff/admin/users", "/staff/status", "/staff/admin/lock"],
    "investigator": ["SIGN-IN", "/staff/sign-off", "/staff/change-requests", "/staff/audit-review"],
    "unblinded": ["SIGN-IN", "/staff/admin/randomization", "/staff/unblind", "/staff/code-break", "/staff/summary"],
}


@pytest.mark.parametrize("role", STAFF_PAGES)
def test_staff_pages_have_no_axe_violations(server, browser, demo, role):  # noqa: F811
    context = browser.new_context(viewport=LAPTOP)
    page = context.new_page()
    base = server.config["BASE_URL"]
    found = {}
    try:
        for path in STAFF_PAGES[role]:
            if path == "SIGN-IN":
                _sign_in(page, base, role)
                continue
            page.goto(base + path.format(**demo))
            found[path] = axe_violations(page, f"{role} {path}") + [f"small target: {t}" for t in small_targets(page)]
    finally:
        context.close()
    assert found and all(v == [] for v in found.values()), {k: v for k, v in found.items() if v}


def test_participant_pages_reflow_at_200_percent_zoom(server, browser, demo):  # noqa: F811
    """A 390 px phone at 200% zoom shows 195 CSS pixels: no participant page scrolls sideways (1.4.10)."""
    context = browser.new_context(
        viewport={"width": 195, "height": 422}, device_scale_factor=4, is_mobile=True, has_touch=True
    )
    page = context.new_page()
    wide = {}
    try:
        for name in _participant_pages(page, server.config["BASE_URL"], demo):
            width = page.evaluate("document.documentElement.scrollWidth")
            print(f"reflow {name} at 200%: {width} px wide in a 195 px view")
            if width > 195:
                wide[name] = width
    finally:
        context.close()
    assert wide == {}
