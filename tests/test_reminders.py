"""Reminders: once, on time, in the participant's own time, through a real SMTP server."""

from __future__ import annotations

import base64
import email
import http.server
import os
import re
import socket
import threading
import time
from datetime import UTC, datetime, timedelta

import pytest
from aiosmtpd.controller import Controller
from icalendar import Calendar
from sqlalchemy import func, select

from diary.dosing.infusions import record_dose
from diary.entries.recording import record_submission
from diary.extensions import db
from diary.models import PushSubscription, Reminder, now_utc
from diary.participants.enrolment import enroll, reissue_link
from diary.participants.links import participant_by_token
from diary.reminders.dispatch import run_pass
from diary.reminders.planning import plan, quiet_shift
from diary.study.trial import protocol_of

from .conftest import answers_for, assessment_of, make_app, worker_context
from .participant_helpers import csrf_from, sign_in

UTC = UTC
DOSE = datetime(2026, 3, 2, 14, 0, tzinfo=UTC)  # Day 1 window: 3 March 10:00 to 18:00 UTC
DAY1_OPEN = datetime(2026, 3, 3, 10, 5, tzinfo=UTC)  # just after it opens


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Inbox:
    """aiosmtpd handler that keeps every message it accepts."""

    def __init__(self):
        self.messages = []

    async def handle_DATA(self, server, session, envelope):
        self.messages.append(email.message_from_bytes(envelope.original_content or envelope.content))
        return "250 Message accepted"


class SMTPServer:
    def __init__(self):
        self.port = free_port()
        self.inbox = Inbox()
        self.controller = None

    def start(self):
        self.controller = Controller(self.inbox, hostname="127.0.0.1", port=self.port)
        self.controller.start()

    def stop(self):
        self.controller.stop()


@pytest.fixture
def smtp(app):
    server = SMTPServer()
    server.start()
    app.config.update(SMTP_HOST="127.0.0.1", SMTP_PORT=server.port, MAIL_FROM="diary@site.test")
    yield server
    if server.controller and server.controller._thread:
        server.stop()


def enrol_dosed(study, code, tz="UTC", email_address=None, dose=DOSE):
    participant, token = enroll(
        study,
        site="NIH-CC",
        timezone=tz,
        sequence="AB",
        actor="t",
        now=dose - timedelta(days=2),
        code=code,
        email=email_address or f"{code.lower()}@example.org",
    )
    record_dose(participant, 1, dose, actor="t", now=now_utc())
    return participant


def text_of(message) -> str:
    return (
        message.get_body(("plain",)).get_content()
        if hasattr(message, "get_body")
        else message.get_payload(0).get_payload(decode=True).decode()
    )


def test_due_reminders_each_go_out_once_with_the_right_link(app, smtp, study):
    participants = [enrol_dosed(study, f"P-REM{n:03d}") for n in range(3)]
    db.session.commit()
    first = run_pass(app, now=DAY1_OPEN)
    assert first.sent == 3 and first.failed == 0
    messages = smtp.inbox.messages
    assert sorted(m["To"] for m in messages) == sorted(p.email for p in participants)
    for message in messages:
        assert message["Subject"] == "Your diary: an entry is open"
        assert "ketamine" not in message["Subject"].lower() and "fatigue" not in message["Subject"].lower()
        body = message.get_payload(0).get_payload(decode=True).decode()
        # The local close time (UTC here), on the 12-hour clock of the participant's US English.
        assert "Infusion 1 · Day 1" in body and "6:00 pm" in body
        token = re.search(r"http://diary.test/p/(\S+)", body).group(1)
        assert participant_by_token(token).email == message["To"]
    second = run_pass(app, now=DAY1_OPEN + timedelta(minutes=1))
    assert second.sent == 0 and len(smtp.inbox.messages) == 3


def test_the_emailed_link_opens_the_diary(app, smtp, study, client):
    enrol_dosed(study, "P-LINK01")
    db.session.commit()
    run_pass(app, now=DAY1_OPEN)
    body = smtp.inbox.messages[0].get_payload(0).get_payload(decode=True).decode()
    link = re.search(r"http://diary.test(/p/\S+)", body).group(1)
    assert b"Choose a PIN" in client.get(link).data


def _pass_in_process(url, smtp_port, barrier, queue):
    app = make_app(url, SMTP_HOST="127.0.0.1", SMTP_PORT=smtp_port)
    with app.app_context():
        barrier.wait(timeout=60)
        try:
            queue.put(run_pass(app, now=DAY1_OPEN).sent)
        except Exception as error:  # reported, so the test fails at once instead of waiting
            queue.put(repr(error))
        db.engine.dispose()


def test_two_schedulers_at_the_same_moment_send_each_message_once(app, smtp, study):
    for n in range(20):
        enrol_dosed(study, f"P-TWO{n:03d}")
    db.session.commit()
    url = app.config["SQLALCHEMY_DATABASE_URI"]
    context = worker_context()
    barrier, queue = context.Barrier(2), context.Queue()
    workers = [context.Process(target=_pass_in_process, args=(url, smtp.port, barrier, queue)) for _ in range(2)]
    for worker in workers:
        worker.start()
    sent = [queue.get(timeout=120) for _ in workers]
    for worker in workers:
        worker.join(timeout=30)
    assert all(isinstance(count, int) for count in sent), sent
    assert sum(sent) == 20
    recipients = [m["To"] for m in smtp.inbox.messages]
    assert len(recipients) == 20 and len(set(recipients)) == 20
    assert db.session.scalar(select(func.count()).select_from(Reminder).where(Reminder.state == "sent")) == 20


def test_rows_taken_by_another_pass_are_not_taken_again(app, study):
    """The interleaving a race produces, made deterministic: pass A sees due rows, pass B takes
    them, then A tries to take the same ids and gets none."""
    from diary.reminders.dispatch import candidates, claim, take

    enrol_dosed(study, "P-RACE01")
    db.session.commit()
    plan(DAY1_OPEN)
    db.session.commit()
    seen_by_a = candidates(DAY1_OPEN)
    db.session.commit()
    assert seen_by_a
    with app.app_context():  # another pass, with a session of its own
        taken_by_b = claim(DAY1_OPEN, "pass-b")
        db.session.remove()
    assert sorted(taken_by_b) == sorted(seen_by_a)
    assert take(seen_by_a, DAY1_OPEN, "pass-a") == []


def test_smtp_outage_is_retried_and_delivered_once(app, smtp, study):
    participant = enrol_dosed(study, "P-OUT001")
    db.session.commit()
    smtp.stop()
    down = run_pass(app, now=DAY1_OPEN)
    assert down.sent == 0 and down.failed == 1
    row = db.session.scalars(
        select(Reminder).where(
            Reminder.kind == "window_open", Reminder.assessment_id == assessment_of(participant, 1, "D1").id
        )
    ).one()
    assert row.state == "failed" and row.attempts == 1 and "SMTP" in row.last_error
    assert run_pass(app, now=DAY1_OPEN + timedelta(seconds=30)).sent == 0  # backing off
    smtp.start()
    back = run_pass(app, now=DAY1_OPEN + timedelta(minutes=2))
    assert back.sent == 1 and len(smtp.inbox.messages) == 1
    assert run_pass(app, now=DAY1_OPEN + timedelta(minutes=5)).sent == 0
    db.session.refresh(row)
    assert row.state == "sent" and row.attempts == 2


def test_window_closing_during_the_outage_expires_the_reminder(app, smtp, study):
    participant = enrol_dosed(study, "P-EXP001")
    db.session.commit()
    smtp.stop()
    run_pass(app, now=DAY1_OPEN)
    smtp.start()
    after_close = run_pass(app, now=datetime(2026, 3, 3, 18, 1, tzinfo=UTC))
    assert after_close.sent == 0 and smtp.inbox.messages == []
    states = dict(
        db.session.execute(
            select(Reminder.kind, Reminder.state).where(
                Reminder.assessment_id == assessment_of(participant, 1, "D1").id
            )
        ).all()
    )
    assert states == {"window_open": "expired", "closing_soon": "expired"}


def test_completing_an_entry_cancels_its_pending_reminders(app, smtp, study):
    participant = enrol_dosed(study, "P-DONE01")
    db.session.commit()
    plan(DAY1_OPEN - timedelta(hours=1))
    db.session.commit()
    day1 = assessment_of(participant, 1, "D1")
    assert (
        db.session.scalar(
            select(func.count())
            .select_from(Reminder)
            .where(Reminder.assessment_id == day1.id, Reminder.state == "pending")
        )
        == 2
    )
    protocol = protocol_of(study.current_protocol_version)
    record_submission(
        day1, answers_for(protocol, "D1"), now=DAY1_OPEN - timedelta(minutes=1) + timedelta(hours=1), actor="t"
    )
    db.session.commit()
    assert {r.state for r in db.session.scalars(select(Reminder).where(Reminder.assessment_id == day1.id))} == {
        "cancelled"
    }
    assert run_pass(app, now=DAY1_OPEN + timedelta(hours=6)).sent == 0
    assert smtp.inbox.messages == []


def test_quiet_hours_across_the_spring_daylight_saving_change():
    """00:30 EST on 8 March 2026 is quiet; clocks jump at 02:00, so 07:00 local is 11:00 UTC."""
    inside = datetime(2026, 3, 8, 5, 30, tzinfo=UTC)
    assert quiet_shift(inside, "America/New_York", "22:00", "07:00") == datetime(2026, 3, 8, 11, 0, tzinfo=UTC)


def test_quiet_hours_across_the_autumn_daylight_saving_change():
    """01:30 EDT on 1 November 2026 is quiet; after the clocks fall back, 07:00 EST is 12:00 UTC."""
    inside = datetime(2026, 11, 1, 5, 30, tzinfo=UTC)
    assert quiet_shift(inside, "America/New_York", "22:00", "07:00") == datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


def test_outside_quiet_hours_nothing_moves():
    moment = datetime(2026, 3, 8, 15, 0, tzinfo=UTC)
    assert quiet_shift(moment, "America/New_York", "22:00", "07:00") == moment


def test_reminder_in_quiet_hours_waits_for_their_end(app, study):
    """A Day 1 window opening at 03:00 New York time is reminded at 07:00 local."""
    dose = datetime(2026, 3, 10, 11, 0, tzinfo=UTC)  # 07:00 EDT; Day 1 opens at 03:00 EDT
    participant = enrol_dosed(study, "P-QUIET1", tz="America/New_York", dose=dose)
    db.session.commit()
    plan(dose + timedelta(hours=19))
    row = db.session.scalars(
        select(Reminder).where(
            Reminder.assessment_id == assessment_of(participant, 1, "D1").id, Reminder.kind == "window_open"
        )
    ).one()
    assert row.due_at == datetime(2026, 3, 11, 11, 0, tzinfo=UTC)  # 07:00 EDT


def test_clinic_time_points_get_no_reminders(app, study):
    participant = enrol_dosed(study, "P-CLIN01")
    db.session.commit()
    plan(DOSE)
    codes = {
        assessment.timepoint
        for assessment in participant.periods[0].assessments
        if db.session.scalar(select(func.count()).select_from(Reminder).where(Reminder.assessment_id == assessment.id))
    }
    assert codes and not codes & {"BL", "M40", "M80", "M120"}


def test_turning_email_off_cancels_and_stops_email_reminders(app, smtp, study, client):
    from diary.participants.enrolment import enroll as enrol

    now = now_utc()
    participant, token = enrol(
        study,
        site="NIH-CC",
        timezone=midday_zone(now),
        sequence="AB",
        actor="t",
        now=now - timedelta(days=3),
        code="P-OFF001",
        email="off@example.org",
    )
    record_dose(participant, 1, (now - timedelta(hours=19)).replace(microsecond=0), actor="t", now=now)
    db.session.commit()
    plan(now)
    db.session.commit()
    assert db.session.scalar(select(func.count()).select_from(Reminder).where(Reminder.state == "pending")) > 0
    sign_in(client, token)
    page = client.get("/p/settings").get_data(as_text=True)
    assert (
        client.post("/p/settings", data={"csrf_token": csrf_from(page), "push": "on", "calendar": "on"}).status_code
        == 302
    )
    assert db.session.scalar(select(func.count()).select_from(Reminder).where(Reminder.state == "pending")) == 0
    assert run_pass(app, now=now + timedelta(hours=2)).sent == 0 and smtp.inbox.messages == []


# --- Web push against a local server playing the push service ----------------------------------


class PushService(http.server.BaseHTTPRequestHandler):
    received: list = []

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        PushService.received.append((self.path, self.headers.get("Authorization", ""), len(body)))
        status = {"/push/ok": 201, "/push/gone404": 404, "/push/gone410": 410}.get(self.path, 500)
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


def browser_keys() -> tuple[str, str]:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    public = key.public_key().public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    encode = lambda raw: base64.urlsafe_b64encode(raw).rstrip(b"=").decode()  # noqa: E731
    return encode(public), encode(os.urandom(16))


def test_web_push_handles_201_404_and_410(app, study):
    from diary.reminders.vapid import generate_vapid_keys

    private, public = generate_vapid_keys()
    app.config.update(VAPID_PRIVATE_KEY=private, VAPID_PUBLIC_KEY=public, SMTP_HOST="")
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), PushService)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    PushService.received = []
    base = f"http://127.0.0.1:{server.server_port}"
    try:
        for code, path in (("P-PUSH01", "ok"), ("P-PUSH02", "gone404"), ("P-PUSH03", "gone410")):
            participant = enrol_dosed(study, code)
            participant.email = None  # push only
            p256dh, auth = browser_keys()
            db.session.add(
                PushSubscription(
                    participant_id=participant.id,
                    endpoint=f"{base}/push/{path}",
                    p256dh=p256dh,
                    auth=auth,
                    created_at=now_utc(),
                )
            )
        db.session.commit()
        result = run_pass(app, now=DAY1_OPEN)
        first_received = list(PushService.received)
        ended = {s.endpoint.rsplit("/", 1)[1]: s.ended_at for s in db.session.scalars(select(PushSubscription))}
        # The push service still answers: the next pass's push to the live subscription is sent
        # (stopped, it left the connection unanswered and the pass waited out the 10 s timeout).
        later = run_pass(app, now=DAY1_OPEN + timedelta(hours=6, minutes=1))
    finally:
        server.shutdown()
        server.server_close()
    assert result.sent == 1 and result.cancelled == 2
    assert sorted(path for path, _, _ in first_received) == ["/push/gone404", "/push/gone410", "/push/ok"]
    assert all(auth.startswith("vapid t=") and size > 0 for _, auth, size in first_received)
    assert ended["ok"] is None and ended["gone404"] is not None and ended["gone410"] is not None
    # With the subscriptions gone, later reminders for those participants are not planned at all.
    assert later.planned == 0


def test_push_subscription_endpoint_validates_its_input(client, study):
    from .participant_helpers import participant_with_day1_open

    participant, token = participant_with_day1_open(study)
    html = sign_in(client, token).get_data(as_text=True)
    headers = {"X-CSRFToken": csrf_from(html)}
    assert client.post("/p/push/subscribe", data="not json", headers=headers).status_code == 400
    bad = client.post("/p/push/subscribe", json={"endpoint": "ftp://x", "keys": {}}, headers=headers)
    assert bad.status_code == 422
    p256dh, auth = browser_keys()
    good = client.post(
        "/p/push/subscribe",
        json={"endpoint": "https://push.example/abc", "keys": {"p256dh": p256dh, "auth": auth}},
        headers=headers,
    )
    assert good.status_code == 201
    assert (
        client.post(
            "/p/push/subscribe", json={"endpoint": "https://push.example/abc", "keys": {"p256dh": p256dh, "auth": auth}}
        ).status_code
        == 400
    )
    assert db.session.scalar(select(func.count()).select_from(PushSubscription)) == 1


# --- Calendar feed -----------------------------------------------------------------------------


def test_calendar_feed_has_one_event_per_home_entry_still_to_make(client, study):
    """The feed lists the home entries still to come or open (not clinic ones, not past ones)."""
    from diary.participants.links import signed_link_token

    # Where it is early afternoon now: at night on the participant's clock, quiet hours would
    # push Day 1's reminders past its close, and the event would rightly carry no alarm.
    now = now_utc()
    offset = (13 - now.hour + 12) % 24 - 12
    zone = "UTC" if offset == 0 else f"Etc/GMT{'-' if offset > 0 else '+'}{abs(offset)}"
    participant = enrol_dosed(study, "P-CAL001", tz=zone, dose=(now - timedelta(hours=22)).replace(microsecond=0))
    db.session.commit()
    response = client.get(f"/p/calendar/{signed_link_token(participant, 'calendar')}.ics")
    assert response.status_code == 200 and response.headers["Content-Type"].startswith("text/calendar")
    calendar = Calendar.from_ical(response.data)
    events = [c for c in calendar.walk() if c.name == "VEVENT"]
    assert sorted(str(e["summary"]).split("· ")[1] for e in events) == sorted(
        ["Day 1", "Day 2", "Day 3", "Day 7", "Day 14"]
    )  # the participant's labels, no staff words
    day1 = next(e for e in events if "Day 1" in str(e["summary"]))
    assert day1.decoded("dtstart") == assessment_of(participant, 1, "D1").window_open
    assert [c for c in day1.walk() if c.name == "VALARM"]
    reissue_link(participant, actor="t", now=now_utc())
    db.session.commit()
    assert client.get(f"/p/calendar/{signed_link_token(participant, 'calendar')}.ics").status_code == 200
    assert client.get("/p/calendar/forged.token.ics").status_code == 404


def test_calendar_feed_turned_off_is_gone(client, study):
    from diary.participants.links import signed_link_token

    participant = enrol_dosed(study, "P-CAL002")
    participant.calendar_feed = False
    db.session.commit()
    assert client.get(f"/p/calendar/{signed_link_token(participant, 'calendar')}.ics").status_code == 404


# --- What the coordinator sees, and the CLI ----------------------------------------------------


def test_coordinator_sees_the_reminder_log(app, smtp, study, client):
    from .staff_helpers import login_as

    participant = enrol_dosed(study, "P-LOG001")
    db.session.commit()
    smtp.stop()
    run_pass(app, now=DAY1_OPEN)
    smtp.start()
    run_pass(app, now=DAY1_OPEN + timedelta(minutes=2))
    login_as(client, "coordinator")
    html = client.get(f"/staff/participants/{participant.code}").get_data(as_text=True)
    section = html.split("<h2>Reminders</h2>", 1)[1].split("<h2>", 1)[0]
    assert "window open" in section and "sent" in section and "email" in section
    assert "closing soon" in section and "planned" in section  # owed, not yet due


def midday_zone(moment: datetime) -> str:
    """A fixed-offset zone where ``moment`` falls around 13:00, far from any quiet hours."""
    offset = (13 - moment.hour + 12) % 24 - 12
    return "UTC" if offset == 0 else f"Etc/GMT{'-' if offset > 0 else '+'}{abs(offset)}"


def test_send_reminders_prints_what_it_did(app, smtp, study, runner):
    now = now_utc()
    participant, _ = enroll(
        study,
        site="NIH-CC",
        timezone=midday_zone(now),
        sequence="AB",
        actor="t",
        now=now - timedelta(days=3),
        code="P-CLI001",
        email="cli@example.org",
    )
    record_dose(participant, 1, now - timedelta(hours=21), actor="t", now=now)
    db.session.commit()
    result = runner.invoke(args=["diary", "send-reminders"])
    assert result.exit_code == 0, result.output
    assert "sent 1" in result.output and len(smtp.inbox.messages) == 1


def test_web_processes_never_start_a_scheduler(tmp_path):
    """Building the app (what gunicorn does) starts no thread: the scheduler is its own process."""
    before = {thread.ident for thread in threading.enumerate()}
    app = make_app(f"sqlite:///{tmp_path / 'x.sqlite'}")
    with app.app_context():
        db.create_all()
    assert {thread.ident for thread in threading.enumerate()} == before


def test_init_generates_vapid_keys_once(tmp_path, monkeypatch):
    from diary import create_app
    from diary.reminders.vapid import ensure_vapid_keys

    monkeypatch.setenv("DIARY_INSTANCE_PATH", str(tmp_path))
    monkeypatch.delenv("DIARY_VAPID_PRIVATE_KEY", raising=False)
    app = create_app()
    assert ensure_vapid_keys(app) is True
    text = (tmp_path / "config.py").read_text()
    assert "VAPID_PRIVATE_KEY = " in text and "VAPID_PUBLIC_KEY = " in text
    again = create_app()
    assert again.config["VAPID_PUBLIC_KEY"] == app.config["VAPID_PUBLIC_KEY"]
    assert ensure_vapid_keys(again) is False


def test_preferred_reminder_hours_replace_the_default_quiet_hours(app, study):
    """Someone who wants reminders only from 10:00 gets the 07:00 one at 10:00 instead."""
    dose = datetime(2026, 3, 10, 11, 0, tzinfo=UTC)  # Day 1 opens 07:00 UTC
    participant = enrol_dosed(study, "P-PREF01", dose=dose - timedelta(hours=4))  # opens 03:00 UTC
    participant.reminder_from, participant.reminder_until = "10:00", "20:00"
    db.session.commit()
    plan(dose)
    row = db.session.scalars(
        select(Reminder).where(
            Reminder.assessment_id == assessment_of(participant, 1, "D1").id, Reminder.kind == "window_open"
        )
    ).one()
    assert row.due_at == datetime(2026, 3, 11, 10, 0, tzinfo=UTC)


def _scheduler_that_dies(url, smtp_port, queue):
    """A scheduler that claims its first batch of reminders and dies before sending them (a
    killed process, a lost machine): its claims stay leased."""
    from diary.reminders import dispatch

    app = make_app(url, SMTP_HOST="127.0.0.1", SMTP_PORT=smtp_port, MAIL_FROM="d@site.test", OUTBOX_LEASE_SECONDS=2)

    def die(ids, *args, **kwargs):
        queue.put(len(ids))
        queue.close()
        queue.join_thread()  # the message leaves before the process does
        os._exit(1)

    dispatch._send_batch = die
    try:
        with app.app_context():
            dispatch.run_pass(app, now=DAY1_OPEN)
        queue.put("the pass claimed nothing")
    except Exception as error:  # noqa: BLE001  the test reads it
        queue.put(repr(error))


def _scheduler_that_lives(url, smtp_port, queue):
    """The other scheduler: a pass at once (the claims are still leased), then one each half
    second until it has sent something, as its interval would."""
    from diary.reminders import dispatch

    app = make_app(url, SMTP_HOST="127.0.0.1", SMTP_PORT=smtp_port, MAIL_FROM="d@site.test", OUTBOX_LEASE_SECONDS=2)
    passes, started = [], time.monotonic()
    try:
        with app.app_context():
            while time.monotonic() - started < 30:
                result = dispatch.run_pass(app, now=DAY1_OPEN + timedelta(seconds=time.monotonic() - started))
                passes.append(result.sent)
                if result.sent:
                    break
                time.sleep(0.5)
    except Exception as error:  # noqa: BLE001  the test reads it
        passes.append(repr(error))
    queue.put((passes, time.monotonic() - started))


def test_a_second_scheduler_takes_over_what_a_dead_one_claimed(app, smtp, study):
    """Two scheduler processes: one claims the due reminders and dies; the other sends them once
    the claim's lease ends (2 s here; 60 s by default, so within two minutes with a one-minute
    pass), each exactly once."""
    for n in range(3):
        enrol_dosed(study, f"P-FAIL{n:02d}")
    db.session.commit()
    plan(DAY1_OPEN)
    db.session.commit()
    owed = db.session.scalar(select(func.count(Reminder.id)).where(Reminder.due_at <= DAY1_OPEN))
    url = app.config["SQLALCHEMY_DATABASE_URI"]
    db.session.remove()
    context = worker_context()
    queue = context.Queue()
    dying = context.Process(target=_scheduler_that_dies, args=(url, smtp.port, queue))
    dying.start()
    claimed = queue.get(timeout=120)
    dying.join(timeout=30)
    assert dying.exitcode == 1 and claimed == owed
    living = context.Process(target=_scheduler_that_lives, args=(url, smtp.port, queue))
    living.start()
    passes, took = queue.get(timeout=120)
    living.join(timeout=30)
    assert passes[0] == 0  # the dead one's claims are respected while their lease lasts
    assert passes[-1] == owed and took < 10
    assert sorted(m["To"] for m in smtp.inbox.messages) == sorted(f"p-fail{n:02d}@example.org" for n in range(3))
