"""Operations a coordinator can trust: no message lost in silence, the follow-up loop closed by
the data, leases that hold with slow mail servers and killed schedulers, a status page and
command, contact details where the call is made, the daily digest, and links to the address
served."""

from __future__ import annotations

import os
import signal
import time
import uuid
from collections import Counter
from datetime import datetime, timedelta, timezone

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import func, select

from diary.dosing.infusions import record_dose
from diary.entries.recording import record_submission
from diary.errors import Refused
from diary.extensions import db
from diary.models import AuditEvent, FollowUpTask, Reminder, SchedulerHeartbeat, StaffMessage, now_utc
from diary.participants.enrolment import change_contact, enroll, reveal_contact
from diary.reminders.dispatch import run_pass
from diary.reminders.scheduler import dispatch_pass
from diary.safety.follow_up import create_tasks, resolve_tasks
from diary.study.trial import protocol_of
from diary.vocabulary import Source

from .conftest import answers_for, assessment_of, make_app, worker_context
from .participant_helpers import csrf_from, participant_with_day1_open, sign_in, zone_at
from .staff_helpers import login_as, make_staff
from .test_dispatch_safety import SlowInbox
from .test_reminders import Inbox, free_port, smtp  # noqa: F401  (smtp: a real aiosmtpd server)

ONCALL = {"NIH-CC": ["oncall@site.test", "pi@site.test"]}


def _severe_answer(study, code="P-SEV001"):
    """A participant whose Day 1 is open answers Severe (an alert is owed to the site)."""
    protocol = protocol_of(study.current_protocol_version)
    participant, _ = participant_with_day1_open(study, code=code)
    day1 = assessment_of(participant, 1, "D1")
    record_submission(
        day1, answers_for(protocol, "D1", **{"side_effects.symptoms.headache": "severe"}), now=now_utc(), actor="test"
    )
    db.session.commit()
    return participant


# --- Honest delivery states ---------------------------------------------------------------------


@pytest.mark.parametrize("app", [{"SITE_ALERTS": ONCALL, "SMTP_HOST": ""}], indirect=True)
def test_without_smtp_a_severe_alert_is_not_sent_printed_and_bannered(app, client, study, capsys):
    """No SMTP server: the alert is not_sent with the reason (never sent), the scheduler prints
    it in full, and every staff page says safety messages were not emailed."""
    _severe_answer(study)
    dispatch_pass(app)
    alerts = db.session.scalars(select(StaffMessage).where(StaffMessage.kind == "severe_alert")).all()
    assert sorted(a.recipient for a in alerts) == ["oncall@site.test", "pi@site.test"]
    assert {(a.state, a.last_error, a.sent_at) for a in alerts} == {
        ("not_sent", "no SMTP server configured (DIARY_SMTP_HOST)", None)
    }
    printed = capsys.readouterr().out
    assert printed.count("NOT SENT (no SMTP server configured") >= 2
    assert "severe side effect reported by P-SEV001" in printed and "headache: severe" in printed
    login_as(client, "coordinator")
    page = client.get("/staff/").get_data(as_text=True)
    assert "2 safety message(s) were not emailed: no SMTP server configured" in page


def test_with_smtp_each_on_call_address_gets_the_alert_once(app, smtp, study):  # noqa: F811
    """A real SMTP server: one email per address, sent, and no banner about safety messages."""
    app.config["SITE_ALERTS"] = ONCALL
    _severe_answer(study)
    dispatch_pass(app)
    dispatch_pass(app)
    alerts = [m for m in smtp.inbox.messages if "severe side effect" in m["Subject"]]
    assert sorted(m["To"] for m in alerts) == ["oncall@site.test", "pi@site.test"]
    assert set(db.session.scalars(select(StaffMessage.state))) == {"sent"}
    from diary.operations.status import banners

    assert banners(app.config, now_utc()) == []


class RefusingInbox(Inbox):
    """A mail server that refuses one mailbox with its own words."""

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address.startswith("gone"):
            return "550 5.1.1 <gone@site.test>: mailbox unavailable"
        envelope.rcpt_tos.append(address)
        return "250 OK"


@pytest.mark.parametrize("app", [{"SITE_ALERTS": {"NIH-CC": ["gone@site.test"]}}], indirect=True)
def test_a_refused_delivery_keeps_the_smtp_reply(app, study):
    inbox, port = RefusingInbox(), free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        app.config.update(SMTP_HOST="127.0.0.1", SMTP_PORT=port)
        _severe_answer(study)
        run_pass(app)
    finally:
        controller.stop()
    alert = db.session.scalars(select(StaffMessage)).one()
    assert alert.state == "failed" and "550" in alert.last_error and "mailbox unavailable" in alert.last_error


# --- Leases that hold --------------------------------------------------------------------------


def _one_pass(url, port, lease):
    app = make_app(url, SMTP_HOST="127.0.0.1", SMTP_PORT=port, MAIL_FROM="diary@site.test", OUTBOX_LEASE_SECONDS=lease)
    with app.app_context():
        run_pass(app)


def _passes_until(url, port, lease, seconds):
    """A second scheduler: a pass a second (a third of the lease, as 60 s passes are to 60 s
    leases in production, with room for the first pass's renewals on SQLite's one write lock)."""
    app = make_app(url, SMTP_HOST="127.0.0.1", SMTP_PORT=port, MAIL_FROM="diary@site.test", OUTBOX_LEASE_SECONDS=lease)
    deadline = time.monotonic() + seconds
    with app.app_context():
        while time.monotonic() < deadline:
            run_pass(app)
            time.sleep(1.0)


def _owed(study, count, prefix):
    """``count`` participants whose Day 1 reminder is due now (in their afternoon, whatever the
    hour of the run: quiet hours would hold it)."""
    zone = zone_at(now_utc(), 14)
    for n in range(count):
        participant_with_day1_open(study, code=f"{prefix}{n:03d}", timezone=zone)
    db.session.commit()


def test_a_second_scheduler_takes_nothing_a_live_slow_pass_is_sending(app, study):
    """The pass outlives its lease many times over (slow SMTP); a second scheduler started after
    the lease finds every claim renewed: 0 duplicates, everyone reached once."""
    inbox, port = SlowInbox(delay=0.4), free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    # A pass of about 12 s against a lease of 3 s (long enough for the other scheduler's own
    # writes, which on SQLite hold the renewal off, as a 60 s lease is in production).
    owed, lease = 30, 3.0
    try:
        _owed(study, owed, "P-LSE")
        url = app.config["SQLALCHEMY_DATABASE_URI"]
        context = worker_context()
        first = context.Process(target=_one_pass, args=(url, port, lease))
        first.start()
        deadline = time.monotonic() + 60
        while len(inbox.messages) < 3 and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(lease * 1.5)  # the first pass's original claim time is now past its lease
        second = context.Process(target=_passes_until, args=(url, port, lease, 8))
        second.start()
        first.join(timeout=120)
        second.join(timeout=120)
        assert first.exitcode == 0 and second.exitcode == 0
    finally:
        controller.stop()
    per_recipient = Counter(m["To"] for m in inbox.messages)
    assert len(per_recipient) == owed and max(per_recipient.values()) == 1, per_recipient.most_common(3)
    assert db.session.scalar(select(func.count()).select_from(Reminder).where(Reminder.state == "sent")) == owed


def _scheduler(url, port, lease, interval):
    from diary.reminders.scheduler import build_scheduler

    app = make_app(url, SMTP_HOST="127.0.0.1", SMTP_PORT=port, MAIL_FROM="diary@site.test", OUTBOX_LEASE_SECONDS=lease)
    build_scheduler(app, interval=interval).start()


def test_after_kill_9_every_message_goes_out_within_a_lease_and_a_pass(app, study):
    """A real scheduler process killed mid-batch; a new one started: every message delivered,
    the last no later than a lease and two pass intervals after the restart, at most one duplicate."""
    inbox, port = SlowInbox(delay=0.1), free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    owed, lease, interval = 25, 2.0, 1
    url = app.config["SQLALCHEMY_DATABASE_URI"]
    context = worker_context()
    try:
        _owed(study, owed, "P-K9")
        first = context.Process(target=_scheduler, args=(url, port, lease, interval))
        first.start()
        deadline = time.monotonic() + 60
        while len(inbox.messages) < 5 and time.monotonic() < deadline:
            time.sleep(0.02)
        os.kill(first.pid, signal.SIGKILL)
        first.join(timeout=10)
        before = len(inbox.messages)
        assert 5 <= before < owed
        restarted = time.monotonic()
        second = context.Process(target=_scheduler, args=(url, port, lease, interval))
        second.start()
        try:
            deadline = time.monotonic() + 60
            while len({m["To"] for m in inbox.messages}) < owed and time.monotonic() < deadline:
                time.sleep(0.05)
            took = time.monotonic() - restarted
        finally:
            second.kill()
            second.join(timeout=10)
    finally:
        controller.stop()
    per_recipient = Counter(m["To"] for m in inbox.messages)
    assert len(per_recipient) == owed
    assert sum(count - 1 for count in per_recipient.values()) <= 1
    # Start-up of a fresh process (imports, app) plus the lease, two intervals and the sending.
    assert took < lease + 2 * interval + 0.1 * owed + 15, took
    print(f"kill -9: {before} delivered before, all {owed} within {took:.1f} s of the restart")


# --- Status ----------------------------------------------------------------------------------


def test_the_status_page_and_command_report_a_stopped_scheduler(app, client, runner, smtp, study):  # noqa: F811
    """No heartbeat for 10 minutes: the page, the JSON and the command say so (exit 1); after a
    pass everything is well (exit 0)."""
    db.session.add(
        SchedulerHeartbeat(
            name="old-host:1",
            started_at=now_utc() - timedelta(hours=2),
            last_pass_at=now_utc() - timedelta(minutes=10),
            last_pass_ms=12,
            last_summary="planned 0",
        )
    )
    db.session.commit()
    login_as(client, "coordinator")
    page = client.get("/staff/status").get_data(as_text=True)
    assert "Silent" in page and "The scheduler is not running" in page
    report = client.get("/staff/status.json").get_json()
    assert report["ok"] is False and report["scheduler"]["alive"] is False
    assert report["channels"]["email"]["smtp_host"] == "127.0.0.1" and "SMTP_PASSWORD" not in str(report)
    assert report["database"]["engine"] in ("sqlite", "postgresql")
    silent = runner.invoke(args=["diary", "status"])
    assert silent.exit_code == 1 and "Scheduler: SILENT" in silent.output
    dispatch_pass(app)
    alive = runner.invoke(args=["diary", "status"])
    assert alive.exit_code == 0, alive.output
    assert "Scheduler: alive" in alive.output and alive.output.strip().endswith("OK")
    assert "The scheduler is not running" not in client.get("/staff/status").get_data(as_text=True)


@pytest.mark.parametrize("app", [{"SITE_ALERTS": ONCALL, "SMTP_HOST": ""}], indirect=True)
def test_the_status_command_fails_while_a_safety_message_is_undeliverable(app, runner, study):
    _severe_answer(study)
    dispatch_pass(app)
    result = runner.invoke(args=["diary", "status"])
    assert result.exit_code == 1 and "2 safety message(s)" in result.output
    assert "Oldest unsent safety message: severe_alert" in result.output


@pytest.mark.parametrize(
    "role, allowed", [("coordinator", True), ("admin", True), ("analyst", False), ("unblinded", False)]
)
def test_the_status_page_is_for_admins_and_coordinators(client, study, role, allowed):
    login_as(client, role)
    assert (client.get("/staff/status").status_code == 200) == allowed
    assert (client.get("/staff/status.json").status_code == 200) == allowed


# --- Tasks that close themselves ---------------------------------------------------------------


def _missed_d3(study, code):
    """A participant whose Day 3 closed (late grace included) an hour ago, with its task open."""
    now = now_utc()
    participant, token = enroll(
        study,
        site="NIH-CC",
        timezone="America/New_York",
        sequence="AB",
        actor="t",
        now=now - timedelta(days=6),
        code=code,
    )
    record_dose(participant, 1, (now - timedelta(hours=81)).replace(second=0, microsecond=0), actor="t", now=now)
    db.session.commit()
    create_tasks(study, now)
    db.session.commit()
    task = db.session.scalars(
        select(FollowUpTask).where(
            FollowUpTask.participant_id == participant.id, FollowUpTask.rule == "missed_timepoint"
        )
    ).one()
    return participant, token, task


def _resolved(study, task):
    resolve_tasks(study, now_utc())
    db.session.commit()
    db.session.refresh(task)
    return task


def test_a_task_closes_when_the_missing_entry_arrives_by_offline_sync(client, study):
    participant, token, task = _missed_d3(study, "P-RES01")
    protocol = protocol_of(study.current_protocol_version)
    sign_in(client, token)
    d3 = assessment_of(participant, 1, "D3")
    made = participant.periods[0].dose_start + timedelta(hours=77)
    from diary.entries.recording import entry_stamp

    # The form was opened on the phone while Day 3 was open, then the answers waited offline.
    stamp = entry_stamp(
        d3,
        participant.id,
        participant.periods[0].dose_start + timedelta(hours=76, minutes=50),
        client.application.config["SECRET_KEY"],
    )
    body = {
        "fields": {**answers_for(protocol, "D3", vas=40), "stamp": stamp},
        "key": uuid.uuid4().hex,
        "made_at": made.isoformat().replace("+00:00", "Z"),
        "device_now": now_utc().isoformat().replace("+00:00", "Z"),
    }
    sent = client.post(
        f"/p/entry/{d3.id}/sync",
        json=body,
        headers={"X-CSRFToken": csrf_from(client.get("/p/today").get_data(as_text=True))},
    )
    assert sent.status_code == 201, sent.get_data(as_text=True)
    assert task.closed_at is None
    task = _resolved(study, task)
    assert task.outcome == "resolved_by_data" and "missing entry arrived" in task.note
    assert task.closed_at <= now_utc()


def test_a_task_closes_when_staff_enter_the_missing_entry(study):
    participant, _, task = _missed_d3(study, "P-RES02")
    protocol = protocol_of(study.current_protocol_version)
    d3 = assessment_of(participant, 1, "D3")
    coordinator = make_staff("coordinator")
    record_submission(
        d3,
        answers_for(protocol, "D3", vas=40),
        now=now_utc(),
        actor="staff:c",
        source=Source.PHONE_INTERVIEW,
        entered_by_id=coordinator.id,
        reason="phoned; answered then",
        collected_at=participant.periods[0].dose_start + timedelta(hours=76),
    )
    db.session.commit()
    assert _resolved(study, task).outcome == "resolved_by_data"
    resolved = db.session.scalars(
        select(AuditEvent).where(AuditEvent.action == "resolve_follow_up", AuditEvent.entity_id == task.id)
    ).one()
    assert resolved.actor == "system" and "missing entry arrived" in resolved.new_value


def test_a_task_closes_when_the_entry_arrives_as_the_participant_page_stores_it(study):
    """The online path (record_submission as the participant's page calls it), answered inside
    the window and reaching the server before the pass that raised the task had seen it."""
    participant, _, task = _missed_d3(study, "P-RES03")
    protocol = protocol_of(study.current_protocol_version)
    d3 = assessment_of(participant, 1, "D3")
    record_submission(
        d3,
        answers_for(protocol, "D3", vas=40),
        now=d3.window_close - timedelta(minutes=5),
        actor=f"participant:{participant.code}",
    )
    db.session.commit()
    assert _resolved(study, task).outcome == "resolved_by_data"


def test_a_task_closes_when_the_participant_withdraws_and_a_pass_never_reopens_it(study):
    from diary.participants.enrolment import withdraw

    participant, _, task = _missed_d3(study, "P-RES04")
    withdraw(participant, reason="moved away", actor="staff:c", now=now_utc())
    db.session.commit()
    task = _resolved(study, task)
    assert task.outcome == "resolved_by_data" and "withdrew" in task.note
    create_tasks(study, now_utc() + timedelta(hours=1))
    resolve_tasks(study, now_utc() + timedelta(hours=1))
    db.session.commit()
    assert (
        db.session.scalar(
            select(func.count())
            .select_from(FollowUpTask)
            .where(FollowUpTask.participant_id == participant.id, FollowUpTask.closed_at.is_(None))
        )
        == 0
    )


def test_an_open_task_whose_cause_stands_stays_open(study):
    """Nothing arrived: the pass leaves the task for the coordinator."""
    _, _, task = _missed_d3(study, "P-RES05")
    assert resolve_tasks(study, now_utc()) == 0 and _resolved(study, task).closed_at is None


def test_a_coordinator_cannot_close_a_call_as_resolved_by_data(study):
    from diary.safety.follow_up import close_task

    _, _, task = _missed_d3(study, "P-RES06")
    with pytest.raises(Refused):
        close_task(task, "resolved_by_data", "note", by=make_staff("coordinator"), now=now_utc())


# --- Contact details where the call is made ------------------------------------------------------


def test_contact_details_are_masked_then_shown_to_a_coordinator_with_an_audit_event(client, study):
    participant, _ = participant_with_day1_open(study, code="P-CON01")
    participant.phone = "+1 301 555 0199"
    db.session.commit()
    login_as(client, "coordinator")
    page = client.get(f"/staff/participants/{participant.code}").get_data(as_text=True)
    assert "p***@example.org" in page and "••• 199" in page and "555 0199" not in page
    shown = client.post(f"/staff/participants/{participant.code}/contact/show", data={"csrf_token": csrf_from(page)})
    html = shown.get_data(as_text=True)
    assert shown.status_code == 200 and "+1 301 555 0199" in html and "p-con01@example.org" in html
    assert shown.headers["Cache-Control"] == "no-store"
    event = db.session.scalars(select(AuditEvent).where(AuditEvent.action == "view_contact")).one()
    assert event.actor == "staff:coordinator@site.test" and event.participant_id == participant.id


def test_contact_details_are_refused_to_analysts(client, study):
    participant, _ = participant_with_day1_open(study, code="P-CON02")
    login_as(client, "analyst")
    page = client.get(f"/staff/participants/{participant.code}").get_data(as_text=True)
    assert "example.org" not in page
    token = csrf_from(client.get("/staff/password").get_data(as_text=True))
    assert (
        client.post(f"/staff/participants/{participant.code}/contact/show", data={"csrf_token": token}).status_code
        == 403
    )
    assert client.get(f"/staff/participants/{participant.code}/contact").status_code == 403
    with pytest.raises(Refused) as refused:
        reveal_contact(participant, by=make_staff("analyst"), now=now_utc())
    assert refused.value.status == 403


def test_a_contact_change_needs_a_reason_and_is_audited_masked(client, study):
    participant, _ = participant_with_day1_open(study, code="P-CON03")
    coordinator = make_staff("coordinator")
    with pytest.raises(Refused) as refused:
        change_contact(participant, email="new@example.org", phone=None, reason=" ", by=coordinator, now=now_utc())
    assert refused.value.field == "reason" and participant.email == "p-con03@example.org"
    with pytest.raises(Refused):
        change_contact(participant, email="not an address", phone=None, reason="typo", by=coordinator, now=now_utc())
    login_as(client, "coordinator")
    form = client.get(f"/staff/participants/{participant.code}/contact").get_data(as_text=True)
    saved = client.post(
        f"/staff/participants/{participant.code}/contact",
        data={
            "csrf_token": csrf_from(form),
            "email": "new.address@example.org",
            "phone": "+1 301 555 0142",
            "reason": "the participant called with a new address",
        },
    )
    assert saved.status_code == 302
    db.session.refresh(participant)
    assert participant.email == "new.address@example.org" and participant.phone == "+1 301 555 0142"
    events = {e.field: e for e in db.session.scalars(select(AuditEvent).where(AuditEvent.action == "change_contact"))}
    assert events["email"].old_value == "p***@example.org" and events["email"].new_value == "n***@example.org"
    assert events["phone"].new_value == "••• 142" and "new address" in events["phone"].reason


def test_the_follow_up_list_shows_masked_contacts_to_coordinators(client, study):
    participant, _, _ = _missed_d3(study, "P-CON04")
    participant.phone = "+1 301 555 0177"
    db.session.commit()
    login_as(client, "coordinator")
    page = client.get("/staff/follow-up").get_data(as_text=True)
    assert "••• 177" in page and "555 0177" not in page


# --- The daily digest ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "app", [{"SITE_ALERTS": ONCALL, "DIGEST_HOUR": 8, "SITE_TIMEZONES": {"NIH-CC": "Asia/Tokyo"}}], indirect=True
)
def test_the_daily_digest_goes_once_at_the_sites_morning(app, study):
    from diary.safety.digest import due_digests

    _missed_d3(study, "P-DIG01")
    tokyo = timezone(timedelta(hours=9))
    before = datetime(2027, 5, 10, 7, 59, tzinfo=tokyo)
    assert due_digests(study, before, app.config) == 0
    morning = datetime(2027, 5, 10, 8, 0, tzinfo=tokyo)
    assert due_digests(study, morning, app.config) == 2
    assert due_digests(study, morning + timedelta(hours=5), app.config) == 2  # offered again...
    db.session.commit()
    digests = db.session.scalars(select(StaffMessage).where(StaffMessage.kind == "follow_up_digest")).all()
    assert len(digests) == 2  # ...but stored once per address and day
    open_tasks = db.session.scalar(
        select(func.count()).select_from(FollowUpTask).where(FollowUpTask.closed_at.is_(None))
    )
    assert open_tasks and f"Open follow-up calls: {open_tasks}" in digests[0].body and "P-DIG01" in digests[0].body
    assert "2027-05-09 23:00 UTC" in digests[0].body  # 08:00 in Tokyo
    due_digests(study, morning + timedelta(days=1), app.config)
    db.session.commit()
    assert (
        db.session.scalar(select(func.count()).select_from(StaffMessage).where(StaffMessage.kind == "follow_up_digest"))
        == 4
    )


# --- Links naming the address served -----------------------------------------------------------


def test_the_command_line_uses_the_address_make_run_serves(tmp_path, monkeypatch):
    """``make run PORT=5201`` writes its base URL in the instance folder; a command run from
    another shell prints links there; DIARY_BASE_URL still wins."""
    from diary import create_app

    monkeypatch.setenv("DIARY_INSTANCE_PATH", str(tmp_path))
    monkeypatch.delenv("DIARY_BASE_URL", raising=False)
    (tmp_path / "served_url.txt").write_text("http://127.0.0.1:5201\n")
    assert create_app().config["BASE_URL"] == "http://127.0.0.1:5201"
    monkeypatch.setenv("DIARY_BASE_URL", "https://diary.example.org")
    assert create_app().config["BASE_URL"] == "https://diary.example.org"


def test_make_run_writes_the_address_it_serves():
    from pathlib import Path

    makefile = (Path(__file__).parent.parent / "Makefile").read_text()
    run = makefile.split("\nrun:", 1)[1].split("\n\n", 1)[0]
    assert 'echo "$(DIARY_BASE_URL)" > instance/served_url.txt' in run
    assert run.index("served_url.txt") < run.index("diary demo")
