"""The coordinator's workspace: roles, sign-in, enrolment, dosing, adherence, corrections, audit."""

import io
import re
from datetime import timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import event, func, select

from diary.entries.recording import record_submission
from diary.extensions import db
from diary.models import (
    Assessment,
    AuditEvent,
    ItemValue,
    LoginThrottle,
    Participant,
    RandomizationSlot,
    SideEffectReport,
    Submission,
    now_utc,
)
from diary.participants.enrolment import enroll
from diary.study.trial import protocol_of

from .conftest import answers_for, assessment_of
from .participant_helpers import action_key_from, csrf_from, participant_with_day1_open
from .staff_helpers import PASSWORD, any_csrf, login_as, make_staff

ROLES = ["admin", "coordinator", "analyst", "unblinded", "investigator"]
READERS = {"coordinator", "analyst", "admin", "investigator"}


@pytest.fixture
def someone(study):
    """A dosed participant (code P-DAY1) with Day 1 open."""
    participant, _ = participant_with_day1_open(study)
    return participant


# (method, path, roles allowed). {code}, {assessment}, {done} and {report} are filled in per test.
ROUTES = [
    ("GET", "/staff/", READERS),
    ("GET", "/staff/participants/{code}", READERS),
    ("GET", "/staff/audit", READERS),
    ("GET", "/staff/enrol", {"coordinator"}),
    ("POST", "/staff/enrol", {"coordinator"}),
    ("GET", "/staff/participants/{code}/dose/2", {"coordinator"}),
    ("POST", "/staff/participants/{code}/dose/2", {"coordinator"}),
    ("GET", "/staff/participants/{code}/plan/2", {"coordinator"}),
    ("POST", "/staff/participants/{code}/plan/2", {"coordinator"}),
    ("GET", "/staff/participants/{code}/reissue-link", {"coordinator"}),
    ("POST", "/staff/participants/{code}/reissue-link", {"coordinator"}),
    ("GET", "/staff/participants/{code}/reset-pin", {"coordinator"}),
    ("POST", "/staff/participants/{code}/reset-pin", {"coordinator"}),
    ("GET", "/staff/participants/{code}/link", {"coordinator"}),
    ("GET", "/staff/participants/{code}/withdraw", {"coordinator"}),
    ("POST", "/staff/participants/{code}/withdraw", {"coordinator"}),
    ("GET", "/staff/assessments/{assessment}/enter", {"coordinator"}),
    ("POST", "/staff/assessments/{assessment}/enter", {"coordinator"}),
    ("GET", "/staff/assessments/{done}/correct", {"coordinator"}),
    # {done} is the participant's own entry: no one edits it in place (a change request instead).
    ("POST", "/staff/assessments/{done}/correct", set()),
    ("GET", "/staff/assessments/{done}/request-change", {"coordinator", "investigator"}),
    ("POST", "/staff/assessments/{done}/request-change", {"coordinator", "investigator"}),
    ("GET", "/staff/change-requests", {"coordinator", "investigator"}),
    ("POST", "/staff/change-requests/1/decide", {"investigator"}),
    ("GET", "/staff/sign-off", {"investigator"}),
    ("POST", "/staff/periods/1/sign", {"investigator"}),
    ("POST", "/staff/sign-off/all", {"investigator"}),
    ("GET", "/staff/audit-review", {"admin", "coordinator", "investigator"}),
    ("POST", "/staff/audit-review", {"admin", "coordinator", "investigator"}),
    ("GET", "/staff/participants/{code}/discontinue", {"coordinator"}),
    ("POST", "/staff/participants/{code}/discontinue", {"coordinator"}),
    ("GET", "/staff/admin/lock", {"admin"}),
    ("POST", "/staff/admin/lock", {"admin"}),
    ("GET", "/staff/side-effects", {"coordinator"}),
    ("POST", "/staff/side-effects/{report}/acknowledge", {"coordinator"}),
    ("GET", "/staff/password", set(ROLES)),
    ("GET", "/staff/admin/users", {"admin"}),
    ("POST", "/staff/admin/users", {"admin"}),
    ("POST", "/staff/admin/users/1", {"admin"}),
    ("GET", "/staff/summary", {"coordinator", "analyst", "admin", "unblinded", "investigator"}),
    ("GET", "/staff/exports", {"analyst", "admin", "unblinded"}),
    ("POST", "/staff/exports", {"analyst", "admin", "unblinded"}),
    ("GET", "/staff/archive", {"coordinator", "investigator"}),
    ("POST", "/staff/archive", {"coordinator", "investigator"}),
    ("GET", "/staff/coding", {"coordinator", "investigator"}),
    ("GET", "/staff/protocol", {"admin", "coordinator", "investigator"}),
    ("POST", "/staff/protocol/amend", {"admin"}),
    ("POST", "/staff/protocol/amendments/1/approve", {"admin", "investigator"}),
    ("POST", "/staff/protocol/amendments/1/withdraw", {"admin"}),
    ("POST", "/staff/coding/{report}", {"coordinator", "investigator"}),
    ("GET", "/staff/unblind", {"unblinded"}),
    ("POST", "/staff/unblind", {"unblinded"}),
    ("GET", "/staff/admin/randomization", {"unblinded"}),
    ("POST", "/staff/admin/randomization", {"unblinded"}),
]


def _fill(path, someone, study):
    protocol = protocol_of(study.current_protocol_version)
    done = assessment_of(someone, 1, "M40")
    if done.submission is None:
        form = answers_for(protocol, "M40", **{"side_effects.symptoms.headache": "severe"})
        record_submission(done, form, now=done.window_open + timedelta(minutes=1), actor="test")
        db.session.commit()
    report = db.session.scalar(select(SideEffectReport.id))
    return path.format(code=someone.code, assessment=assessment_of(someone, 1, "M80").id, done=done.id, report=report)


# Who may reach a route is decided before any query, the same on both engines: SQLite only.
@pytest.mark.parametrize("backend", ["sqlite"], indirect=False)
@pytest.mark.parametrize("role", ROLES + [None])
@pytest.mark.parametrize("method, path, allowed", ROUTES, ids=[f"{m} {p}" for m, p, _ in ROUTES])
def test_access_matrix(client, study, someone, role, method, path, allowed, backend):
    """Each role reaches exactly its routes; others get 403; anonymous visitors the login page."""
    url = _fill(path, someone, study)
    if role is not None:
        login_as(client, role)
    data = {"csrf_token": any_csrf(client)} if method == "POST" else None
    response = client.open(url, method=method, data=data)
    if role is None:
        assert response.status_code == 302 and "/staff/login" in response.headers["Location"]
    elif role in allowed:
        assert response.status_code not in (401, 403), response.status_code
    else:
        assert response.status_code == 403


# --- Sign-in -----------------------------------------------------------------------------------


def attempt(client, email, password):
    return client.post("/staff/login", data={"email": email, "password": password, "csrf_token": any_csrf(client)})


def test_login_throttled_per_account(app, study):
    make_staff("coordinator", "nurse@site.test")
    statuses = [attempt(app.test_client(), "nurse@site.test", "wrong password!").status_code for _ in range(5)]
    assert statuses == [401] * 5
    blocked = attempt(app.test_client(), "nurse@site.test", PASSWORD)
    assert blocked.status_code == 429 and b"Too many failed sign-ins" in blocked.data
    row = db.session.scalar(select(LoginThrottle).where(LoginThrottle.key == "account:nurse@site.test"))
    assert row.locked_until > now_utc() + timedelta(minutes=14)


def test_login_throttled_per_address(app, study):
    """Guessing across many accounts from one address is slowed (a tarpit), never a lock: behind a
    proxy that address is everyone's, and another account's right password still signs in."""
    from diary.governance.staff import address_delay

    make_staff("analyst", "analyst@site.test")
    for number in range(22):
        attempt(app.test_client(), f"nobody{number}@site.test", "wrong password!")
    assert address_delay("127.0.0.1", now_utc()) > 0  # further failures from here are answered slowly
    assert attempt(app.test_client(), "analyst@site.test", PASSWORD).status_code == 302


def test_login_failures_are_counted_in_the_database(app, study):
    make_staff("coordinator", "nurse@site.test")
    attempt(app.test_client(), "nurse@site.test", "wrong password!")
    attempt(app.test_client(), "nurse@site.test", "wrong password!")
    assert db.session.scalar(select(LoginThrottle.failures).where(LoginThrottle.key == "account:nurse@site.test")) == 2


def test_logout_ends_the_session_for_real(app, study):
    """A copy of the session cookie taken before logout no longer works after it."""
    client = app.test_client()
    login_as(client, "coordinator")
    stolen = client.get_cookie("session").value
    assert client.get("/staff/").status_code == 200
    client.post("/staff/logout", data={"csrf_token": csrf_from(client.get("/staff/").get_data(as_text=True))})
    replay = app.test_client()
    replay.set_cookie("session", stolen)
    assert replay.get("/staff/").status_code == 302


def test_idle_session_ends(client, study):
    login_as(client, "coordinator")
    with client.session_transaction() as session:
        session["staff_seen"] -= 31 * 60
    assert client.get("/staff/").status_code == 302


def test_session_cookie_flags(app, study):
    client = app.test_client()
    page = client.get("/staff/login")
    make_staff("coordinator")
    response = client.post(
        "/staff/login",
        data={
            "email": "coordinator@site.test",
            "password": PASSWORD,
            "csrf_token": csrf_from(page.get_data(as_text=True)),
        },
    )
    cookie = [h for h in response.headers.getlist("Set-Cookie") if h.startswith("session=")][0]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie


@pytest.mark.parametrize("app", [{"BASE_URL": "https://diary.example.org"}], indirect=True)
def test_session_cookie_secure_over_https(app):
    assert app.config["SESSION_COOKIE_SECURE"] is True


def test_login_never_redirects_off_site(client, study):
    make_staff("coordinator")
    page = client.get("/staff/login?next=//evil.example/steal")
    response = client.post(
        "/staff/login",
        data={
            "email": "coordinator@site.test",
            "password": PASSWORD,
            "next": "//evil.example/steal",
            "csrf_token": csrf_from(page.get_data(as_text=True)),
        },
    )
    assert response.headers["Location"] == "/staff/"


# --- Enrolment and the randomization list ------------------------------------------------------


def upload(client, text):
    return client.post(
        "/staff/admin/randomization",
        data={"csrf_token": any_csrf(client), "file": (io.BytesIO(text.encode()), "list.csv")},
        content_type="multipart/form-data",
    )


def test_bad_randomization_list_is_refused_whole(client, study):
    login_as(client, "unblinded")
    response = upload(client, "site,position,sequence\nNIH-CC,1,AB\nNIH-CC,x,BA\nNIH-CC,3,CC\n")
    assert response.status_code == 422
    assert b"line 3: position" in response.data and b"line 4: sequence" in response.data
    assert db.session.scalar(select(func.count()).select_from(RandomizationSlot)) == 0


SEQUENCE_VALUE = re.compile(r"\b(AB|BA)\b")


def visible_sequences(html: str) -> list[str]:
    """Sequence values in a page, ignoring CSRF tokens, participant codes and link tokens."""
    html = re.sub(r'value="[^"]*"', "", html)
    html = re.sub(r"P-[0-9A-Z]{6}|/p/[\w-]+", "", html)
    return SEQUENCE_VALUE.findall(html)


def test_enrolment_takes_the_next_slot_and_never_shows_the_sequence(app, study):
    unblinded = app.test_client()
    login_as(unblinded, "unblinded")
    assert upload(unblinded, "site,position,sequence\nNIH-CC,2,AB\nNIH-CC,1,BA\n").status_code == 302
    assert b">BA<" in unblinded.get("/staff/admin/randomization").data  # the unblinded role sees them

    coordinator = app.test_client()
    login_as(coordinator, "coordinator")
    form = coordinator.get("/staff/enrol").get_data(as_text=True)
    response = coordinator.post(
        "/staff/enrol",
        data={
            "csrf_token": csrf_from(form),
            "action_key": action_key_from(form),
            "site": "NIH-CC",
            "timezone": "Europe/Paris",
            "email": "someone@example.org",
            "reminder_from": "09:00",
            "reminder_until": "20:00",
        },
        follow_redirects=True,
    )
    assert response.status_code == 200
    link_page = response.get_data(as_text=True)
    assert "<svg" in link_page and "/p/" in link_page  # the QR code and the link
    participant = db.session.scalars(select(Participant)).one()
    assert participant.sequence == "BA"  # position 1 first
    assert (participant.reminder_from, participant.reminder_until) == ("09:00", "20:00")
    pages = [form, link_page] + [
        coordinator.get(url).get_data(as_text=True)
        for url in ("/staff/", f"/staff/participants/{participant.code}", "/staff/audit")
    ]
    for role in ("analyst", "admin"):
        other = app.test_client()
        login_as(other, role)
        pages += [
            other.get(url).get_data(as_text=True)
            for url in ("/staff/", f"/staff/participants/{participant.code}", "/staff/audit")
        ]
    for html in pages:
        assert visible_sequences(html) == []
        assert "treatment" not in html.lower()


def test_enrolment_with_no_free_slot_is_refused(client, study):
    login_as(client, "coordinator")
    form = client.get("/staff/enrol").get_data(as_text=True)
    response = client.post(
        "/staff/enrol",
        data={
            "csrf_token": csrf_from(form),
            "site": "NIH-CC",
            "action_key": action_key_from(form),
            "timezone": "Europe/Paris",
        },
    )
    assert response.status_code == 422 and b"no free slot" in response.data
    assert db.session.scalar(select(func.count()).select_from(Participant)) == 0


def test_enrolment_refuses_a_bad_time_zone(client, study):
    login_as(client, "coordinator")
    form = client.get("/staff/enrol").get_data(as_text=True)
    response = client.post(
        "/staff/enrol",
        data={
            "csrf_token": csrf_from(form),
            "site": "NIH-CC",
            "action_key": action_key_from(form),
            "timezone": "Mars/Olympus",
        },
    )
    assert response.status_code == 422 and b"time zone name" in response.data


def test_reissued_link_replaces_the_old_one(client, study, someone):
    from diary.participants.links import participant_by_token

    login_as(client, "coordinator")
    form = client.get(f"/staff/participants/{someone.code}/reissue-link").get_data(as_text=True)
    page = client.post(
        f"/staff/participants/{someone.code}/reissue-link",
        follow_redirects=True,
        data={"csrf_token": csrf_from(form), "action_key": action_key_from(form), "reason": "phone lost"},
    )
    token = re.search(r"/p/([\w-]{40,})", page.get_data(as_text=True)).group(1)
    assert participant_by_token(token).id == someone.id
    assert client.get("/p/not-the-old-token").status_code == 404


# --- Dosing ------------------------------------------------------------------------------------


def dose_via_web(client, code, number, local, reason=""):
    page = client.get(f"/staff/participants/{code}/dose/{number}").get_data(as_text=True)
    return client.post(
        f"/staff/participants/{code}/dose/{number}",
        data={"csrf_token": csrf_from(page), "action_key": action_key_from(page), "start": local, "reason": reason},
    )


def local(moment, zone="America/New_York"):
    return moment.astimezone(ZoneInfo(zone)).strftime("%Y-%m-%dT%H:%M")


def test_dose_in_the_future_is_refused(client, study, someone):
    login_as(client, "coordinator")
    response = dose_via_web(client, someone.code, 2, local(now_utc() + timedelta(days=20)))
    assert response.status_code == 422 and b"cannot be in the future" in response.data


def test_dose_too_close_to_the_previous_is_refused(client, study, someone):
    login_as(client, "coordinator")
    response = dose_via_web(client, someone.code, 2, local(now_utc() - timedelta(hours=1)))
    assert response.status_code == 422 and b"at least 13 days after infusion 1" in response.data
    assert someone.periods[1].dose_start is None


def test_dose_out_of_order_is_refused(client, study):
    participant, _ = enroll(
        study, site="NIH-CC", timezone="UTC", sequence="AB", actor="t", now=now_utc(), code="P-FRESH1"
    )
    db.session.commit()
    login_as(client, "coordinator")
    response = dose_via_web(client, "P-FRESH1", 2, local(now_utc() - timedelta(days=1), "UTC"))
    assert response.status_code == 422 and b"Record infusion 1 before infusion 2" in response.data


def test_dose_correction_needs_a_reason_and_reanchors(client, study, someone):
    login_as(client, "coordinator")
    day3 = assessment_of(someone, 1, "D3")
    before = day3.window_open
    earlier = someone.periods[0].dose_start - timedelta(minutes=30)
    refused = dose_via_web(client, someone.code, 1, local(earlier))
    assert refused.status_code == 422 and b"needs a reason" in refused.data
    assert dose_via_web(client, someone.code, 1, local(earlier), reason="pump clock").status_code == 302
    db.session.refresh(day3)
    assert day3.window_open == before - timedelta(minutes=30)
    event_ = db.session.scalars(select(AuditEvent).where(AuditEvent.action == "correct_dose")).one()
    assert event_.reason == "pump clock" and event_.old_value and event_.new_value


def test_dose_at_a_skipped_local_time_is_refused(client, study):
    enroll(study, site="NIH-CC", timezone="America/New_York", sequence="AB", actor="t", now=now_utc(), code="P-SPRING")
    db.session.commit()
    login_as(client, "coordinator")
    response = dose_via_web(client, "P-SPRING", 1, "2026-03-08T02:30")
    assert response.status_code == 422 and b"clocks skipped it" in response.data


# --- Withdrawal --------------------------------------------------------------------------------


def test_withdrawal_marks_remaining_not_applicable_and_deletes_nothing(client, study, someone):
    login_as(client, "coordinator")
    total = db.session.scalar(select(func.count()).select_from(Assessment))
    page = client.get(f"/staff/participants/{someone.code}/withdraw").get_data(as_text=True)
    assert (
        client.post(
            f"/staff/participants/{someone.code}/withdraw",
            data={"csrf_token": csrf_from(page), "action_key": action_key_from(page), "reason": ""},
        ).status_code
        == 422
    )
    no_category = client.post(
        f"/staff/participants/{someone.code}/withdraw",
        data={"csrf_token": csrf_from(page), "action_key": action_key_from(page), "reason": "moved abroad"},
    )
    assert no_category.status_code == 422 and "Choose why the participant leaves" in no_category.get_data(as_text=True)
    response = client.post(
        f"/staff/participants/{someone.code}/withdraw",
        data={
            "csrf_token": csrf_from(page),
            "action_key": action_key_from(page),
            "reason": "moved abroad",
            "category": "lost_to_follow_up",
        },
    )
    assert response.status_code == 302
    db.session.refresh(someone)
    assert someone.status == "withdrawn" and someone.withdrawal_reason == "lost_to_follow_up"
    assert db.session.scalar(select(func.count()).select_from(Assessment)) == total
    remaining = [a for a in someone.periods[0].assessments if a.late_close > now_utc()]
    assert remaining and all(a.not_applicable for a in remaining)
    assert db.session.scalar(select(AuditEvent.reason).where(AuditEvent.action == "withdraw")) == "moved abroad"


# --- Corrections and entries on the participant's behalf ---------------------------------------


def test_correction_needs_a_reason_and_keeps_the_old_value(client, study, someone):
    protocol = protocol_of(study.current_protocol_version)
    day1 = assessment_of(someone, 1, "D1")
    # Entered by the study team from the paper log: theirs to correct with a reason.
    record_submission(
        day1,
        answers_for(protocol, "D1", vas=63),
        now=now_utc(),
        actor="p",
        source="paper",
        reason="paper log",
        collected_at=day1.window_open + timedelta(minutes=1),
    )
    db.session.commit()
    login_as(client, "coordinator")
    page = client.get(f"/staff/assessments/{day1.id}/correct").get_data(as_text=True)
    data = {"csrf_token": csrf_from(page), "item": "fatigue_vas.fatigue", "value": "36", "reason": ""}
    assert client.post(f"/staff/assessments/{day1.id}/correct", data=data).status_code == 422
    assert (
        client.post(f"/staff/assessments/{day1.id}/correct", data={**data, "value": "101", "reason": "x"}).status_code
        == 422
    )
    response = client.post(
        f"/staff/assessments/{day1.id}/correct", data={**data, "reason": "digits swapped on the paper log"}
    )
    assert response.status_code == 302
    assert db.session.scalar(select(ItemValue.value).where(ItemValue.item == "fatigue")) == "36"
    event_ = db.session.scalars(select(AuditEvent).where(AuditEvent.action == "correct_value")).one()
    assert (event_.old_value, event_.new_value) == ("63", "36")
    assert event_.reason == "digits swapped on the paper log" and event_.actor == "staff:coordinator@site.test"
    trail = client.get(f"/staff/audit?participant={someone.code}&action=correct_value").get_data(as_text=True)
    rows = trail.split("<tbody>", 1)[1]
    assert "digits swapped on the paper log" in rows and "record_dose" not in rows


def test_missed_entry_by_phone_interview_with_source_and_reason(client, study, someone):
    missed = assessment_of(someone, 1, "M80")  # its window closed hours ago
    protocol = protocol_of(study.current_protocol_version)
    login_as(client, "coordinator")
    page = client.get(f"/staff/assessments/{missed.id}/enter").get_data(as_text=True)
    # The call took place inside M80's window, on the participant's clock.
    collected = (missed.window_open + timedelta(minutes=5)).astimezone(ZoneInfo(someone.timezone))
    form = {
        **answers_for(protocol, "M80", vas=44),
        "csrf_token": csrf_from(page),
        "source": "phone_interview",
        "collected": collected.strftime("%Y-%m-%dT%H:%M"),
    }
    refused = client.post(f"/staff/assessments/{missed.id}/enter", data={**form, "reason": ""})
    assert refused.status_code == 422 and db.session.scalar(select(func.count()).select_from(Submission)) == 0
    response = client.post(
        f"/staff/assessments/{missed.id}/enter", data={**form, "reason": "participant had no signal; called at 16:10"}
    )
    assert response.status_code == 302
    submission = db.session.scalars(select(Submission)).one()
    assert submission.source == "phone_interview" and submission.entered_by_id is not None
    assert submission.reason == "participant had no signal; called at 16:10"
    event_ = db.session.scalars(select(AuditEvent).where(AuditEvent.action == "proxy_entry")).one()
    assert "fatigue_vas.fatigue=44" in event_.new_value and event_.reason == submission.reason


# --- Adherence, detail, side effects -----------------------------------------------------------


def _count_queries(app, client, url):
    statements = []

    def count(conn, cursor, statement, *args):
        statements.append(statement)

    with app.app_context():
        engine = db.engine
    event.listen(engine, "before_cursor_execute", count)
    try:
        assert client.get(url).status_code == 200
    finally:
        event.remove(engine, "before_cursor_execute", count)
    return len(statements)


def test_dashboard_query_count_does_not_grow_with_participants(app, client, study):
    login_as(client, "coordinator")
    protocol = protocol_of(study.current_protocol_version)

    def add(count, start):
        for number in range(start, start + count):
            participant, _ = participant_with_day1_open(study, code=f"P-Q{number:04d}")
            m40 = assessment_of(participant, 1, "M40")
            record_submission(
                m40,
                answers_for(protocol, "M40", **{"side_effects.symptoms.headache": "mild"}),
                now=m40.window_open + timedelta(minutes=1),
                actor="t",
            )
        db.session.commit()

    add(5, 0)
    five = _count_queries(app, client, "/staff/")
    add(45, 5)
    fifty = _count_queries(app, client, "/staff/")
    assert five == fifty, (five, fifty)
    print(f"dashboard queries: {five} for 5 participants, {fifty} for 50")
    assert db.session.scalar(select(func.count()).select_from(Participant)) == 50


def test_chart_has_one_point_per_submitted_vas(client, study, someone):
    protocol = protocol_of(study.current_protocol_version)
    for code in ("BL", "M40", "M120"):
        assessment = assessment_of(someone, 1, code)
        record_submission(
            assessment,
            answers_for(protocol, code, vas=50),
            now=assessment.window_open + timedelta(minutes=1),
            actor="t",
        )
    db.session.commit()
    login_as(client, "analyst")
    html = client.get(f"/staff/participants/{someone.code}").get_data(as_text=True)
    assert html.count('class="point"') == 3
    assert "<script" not in html.split("<main", 1)[1]


def test_side_effect_queue_puts_severe_first_and_records_acknowledgement(client, study, someone):
    protocol = protocol_of(study.current_protocol_version)
    for code, severity in (("M40", "mild"), ("M80", "severe")):
        assessment = assessment_of(someone, 1, code)
        record_submission(
            assessment,
            answers_for(protocol, code, **{"side_effects.symptoms.dizziness": severity}),
            now=assessment.window_open + timedelta(minutes=1),
            actor="t",
        )
    db.session.commit()
    user = login_as(client, "coordinator")
    html = client.get("/staff/side-effects").get_data(as_text=True)
    assert html.index("severe · alert") < html.index(">mild<")
    severe = db.session.scalar(select(SideEffectReport).where(SideEffectReport.severity == "severe"))
    refused = client.post(
        f"/staff/side-effects/{severe.id}/acknowledge", data={"csrf_token": any_csrf(client), "note": ""}
    )
    assert refused.status_code == 303
    client.post(
        f"/staff/side-effects/{severe.id}/acknowledge",
        data={"csrf_token": any_csrf(client), "note": "called; resolved with rest"},
    )
    db.session.refresh(severe)
    assert severe.acknowledged_by_id == user.id and severe.acknowledged_at is not None
    assert severe.acknowledgement_note == "called; resolved with rest"
    assert "called; resolved" not in client.get("/staff/side-effects").get_data(as_text=True)


def test_attention_filter_shows_only_those_needing_follow_up(client, study, someone):
    enroll(
        study, site="NIH-CC", timezone="UTC", sequence="AB", actor="t", now=now_utc(), code="P-CALM01"
    )  # not dosed yet: nothing missed, nothing overdue
    db.session.commit()
    login_as(client, "coordinator")
    html = client.get("/staff/?attention=1").get_data(as_text=True)
    assert someone.code in html and "P-CALM01" not in html
    assert "P-CALM01" in client.get("/staff/").get_data(as_text=True)


def test_role_change_is_audited(client, study):
    other = make_staff("analyst", "ana@site.test")
    login_as(client, "admin")
    response = client.post(
        f"/staff/admin/users/{other.id}",
        data={"csrf_token": any_csrf(client), "role": "coordinator", "active": "y", "reason": "moved to the site team"},
    )
    assert response.status_code == 302
    event_ = db.session.scalars(select(AuditEvent).where(AuditEvent.action == "change_role")).one()
    assert event_.reason == "moved to the site team"
    assert (event_.old_value, event_.new_value, event_.actor) == ("analyst", "coordinator", "staff:admin@site.test")


def test_changing_the_password_ends_other_sessions(app, study):
    laptop, phone = app.test_client(), app.test_client()
    login_as(laptop, "coordinator")
    login_as(phone, "coordinator")
    page = laptop.get("/staff/password").get_data(as_text=True)
    wrong = laptop.post(
        "/staff/password",
        data={
            "csrf_token": csrf_from(page),
            "current": "not it at all",
            "new": "a brand new passphrase",
            "confirm": "a brand new passphrase",
        },
    )
    assert wrong.status_code == 422
    changed = laptop.post(
        "/staff/password",
        data={
            "csrf_token": csrf_from(page),
            "current": PASSWORD,
            "new": "a brand new passphrase",
            "confirm": "a brand new passphrase",
        },
    )
    assert changed.status_code == 302
    assert laptop.get("/staff/").status_code == 200  # this session goes on
    assert phone.get("/staff/").status_code == 302  # the other one has ended
    assert attempt(app.test_client(), "coordinator@site.test", "a brand new passphrase").status_code == 302
    assert db.session.scalar(select(AuditEvent.action).where(AuditEvent.action == "change_password"))
