"""Safety and follow-up: severe answers reach a person, silent participants get a call, one code
can be broken in an emergency, and the calendar feed rings only when it should."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from icalendar import Calendar
from sqlalchemy import func, select

from diary.dosing.infusions import record_dose
from diary.entries.recording import record_submission
from diary.extensions import db
from diary.models import AuditEvent, FollowUpTask, Reminder, SideEffectReport, StaffMessage, now_utc
from diary.participants.enrolment import enroll
from diary.reminders.dispatch import run_pass
from diary.safety.follow_up import create_tasks
from diary.study.trial import protocol_of

from .conftest import answers_for, assessment_of
from .participant_helpers import csrf_from, participant_with_day1_open, sign_in
from .staff_helpers import any_csrf, login_as, make_staff
from .test_reminders import smtp, text_of  # noqa: F401  (smtp: the fixture, a real aiosmtpd server)

UTC = UTC
ONCALL = {"NIH-CC": ["oncall@site.test", "pi@site.test"]}


@pytest.fixture
def protocol(study):
    return protocol_of(study.current_protocol_version)


def dosed(study, code, dose, tz="UTC"):
    participant, _ = enroll(
        study,
        site="NIH-CC",
        timezone=tz,
        sequence="AB",
        actor="t",
        now=dose - timedelta(days=2),
        code=code,
        email=f"{code.lower()}@example.org",
    )
    record_dose(participant, 1, dose, actor="t", now=dose + timedelta(minutes=5))
    return participant


# --- Severe answers reach a person -------------------------------------------------------------


@pytest.mark.parametrize("app", [{"SITE_ALERTS": ONCALL}], indirect=True)
def test_a_severe_answer_emails_each_on_call_address_exactly_once(app, smtp, study, protocol):
    """One alert per on-call address (real SMTP), none for a mild answer, never twice, no drug."""
    participant, _ = participant_with_day1_open(study, code="P-SEV001")
    mild, _ = participant_with_day1_open(study, code="P-MILD01")
    now = now_utc()
    record_submission(
        assessment_of(participant, 1, "D1"),
        answers_for(protocol, "D1", **{"side_effects.symptoms.headache": "severe"}),
        now=now,
        actor="t",
    )
    record_submission(
        assessment_of(mild, 1, "D1"),
        answers_for(protocol, "D1", **{"side_effects.symptoms.headache": "mild"}),
        now=now,
        actor="t",
    )
    db.session.commit()
    first = run_pass(app, now=now + timedelta(seconds=5))
    run_pass(app, now=now + timedelta(minutes=20))  # later passes send nothing again
    alerts = [m for m in smtp.inbox.messages if "severe side effect" in m["Subject"]]
    assert sorted(m["To"] for m in alerts) == ["oncall@site.test", "pi@site.test"] and first.staff_sent == 2
    body = text_of(alerts[0])
    assert "P-SEV001" in body and "headache: severe" in body and "Day 1" in body
    assert "/staff/participants/P-SEV001" in body
    assert "ketamine" not in body.lower() and "midazolam" not in body.lower() and "P-MILD01" not in body
    assert db.session.scalar(select(func.count()).select_from(StaffMessage)) == 2


@pytest.mark.parametrize("app", [{"SITE_ALERTS": ONCALL}], indirect=True)
def test_an_alert_that_fails_is_retried_and_delivered_once(app, smtp, study, protocol):
    """The mail server down at first: the alert waits, then goes out once."""
    participant, _ = participant_with_day1_open(study, code="P-SEV002")
    now = now_utc()
    record_submission(
        assessment_of(participant, 1, "D1"),
        answers_for(protocol, "D1", **{"side_effects.symptoms.dizziness": "severe"}),
        now=now,
        actor="t",
    )
    db.session.commit()
    smtp.stop()
    run_pass(app, now=now)
    assert set(db.session.scalars(select(StaffMessage.state))) == {"failed"}
    smtp.start()
    run_pass(app, now=now + timedelta(minutes=5))
    assert sorted(m["To"] for m in smtp.inbox.messages if "severe" in m["Subject"]) == [
        "oncall@site.test",
        "pi@site.test",
    ]


def test_the_warning_is_printed_under_the_severe_answer_without_javascript(client, study, protocol):
    """The entry page sent back with a severe answer shows the phone under that answer's fieldset."""
    participant, token = participant_with_day1_open(study, code="P-SEV003")
    sign_in(client, token)
    d1 = assessment_of(participant, 1, "D1")
    page = client.get(f"/p/entry/{d1.id}").get_data(as_text=True)
    form = {
        **answers_for(protocol, "D1", **{"side_effects.symptoms.headache": "severe"}),
        "csrf_token": csrf_from(page),
        "step": "edit",
    }
    html = client.post(f"/p/entry/{d1.id}", data=form).get_data(as_text=True)
    headache = html.split("<legend>Headache</legend>", 1)[1].split("</fieldset>", 1)[0]
    assert 'data-contact-for="side_effects.symptoms.headache"' in headache and 'href="tel:' in headache
    dizziness = html.split("<legend>Dizziness</legend>", 1)[1].split("</fieldset>", 1)[0]
    assert "hidden" in dizziness.split("data-contact-for", 1)[1].split(">", 1)[0]


# --- Side-effect review with a deadline --------------------------------------------------------


def test_severe_reports_carry_a_review_deadline_and_show_overdue(client, study, protocol):
    """A severe report must be reviewed within the protocol's deadline; past it, the queue says overdue."""
    participant = dosed(study, "P-REV001", now_utc() - timedelta(days=3))
    d1 = assessment_of(participant, 1, "D1")
    record_submission(
        d1,
        answers_for(
            protocol, "D1", **{"side_effects.symptoms.nausea": "severe", "side_effects.symptoms.headache": "mild"}
        ),
        now=d1.window_open + timedelta(minutes=1),
        actor="t",
    )
    db.session.commit()
    reports = {r.term: r for r in db.session.scalars(select(SideEffectReport))}
    assert reports["nausea"].review_due_at == reports["nausea"].reported_at + timedelta(hours=24)
    assert reports["headache"].review_due_at is None
    user = login_as(client, "coordinator")
    html = client.get("/staff/side-effects").get_data(as_text=True)
    assert "overdue" in html.split("nausea", 1)[1].split("</tr>", 1)[0]
    client.post(
        f"/staff/side-effects/{reports['nausea'].id}/acknowledge",
        data={"csrf_token": any_csrf(client), "note": "called: resolved", "state": "ae_recorded"},
    )
    db.session.refresh(reports["nausea"])
    assert (reports["nausea"].review_state, reports["nausea"].acknowledged_by_id) == ("ae_recorded", user.id)
    event = db.session.scalars(select(AuditEvent).where(AuditEvent.action == "acknowledge_side_effect")).one()
    assert "after its review deadline" in event.new_value


def test_staff_can_correct_a_side_effect_answer_with_a_reason(client, study, protocol):
    """A checklist answer is corrected like any other: the report follows, the old value is in the audit."""
    participant = dosed(study, "P-COR001", now_utc() - timedelta(days=3))
    d1 = assessment_of(participant, 1, "D1")
    record_submission(  # taken by phone: the study team's entry, theirs to correct
        d1,
        answers_for(protocol, "D1", **{"side_effects.symptoms.headache": "mild"}),
        now=now_utc(),
        actor="t",
        source="phone_interview",
        reason="called in",
        collected_at=d1.window_open + timedelta(minutes=1),
    )
    db.session.commit()
    login_as(client, "coordinator")
    page = client.get(f"/staff/assessments/{d1.id}/correct").get_data(as_text=True)
    response = client.post(
        f"/staff/assessments/{d1.id}/correct",
        data={
            "csrf_token": csrf_from(page),
            "item": "side_effects.symptoms.headache",
            "value": "severe",
            "reason": "participant clarified on the phone",
        },
    )
    assert response.status_code == 302
    report = db.session.scalars(select(SideEffectReport)).one()
    assert (report.severity, report.alert) == ("severe", True) and report.review_due_at is not None
    event = db.session.scalars(select(AuditEvent).where(AuditEvent.action == "correct_value")).one()
    assert (event.old_value, event.new_value) == ("mild", "severe")
    back = client.post(
        f"/staff/assessments/{d1.id}/correct",
        data={"csrf_token": csrf_from(page), "item": "side_effects.symptoms.headache", "value": "none", "reason": "x"},
    )
    assert back.status_code == 422 and "kept as reported" in back.get_data(as_text=True)


# --- Follow-up tasks ---------------------------------------------------------------------------


def tasks(rule=None):
    query = select(FollowUpTask)
    if rule:
        query = query.where(FollowUpTask.rule == rule)
    return db.session.scalars(query).all()


def test_a_missed_primary_time_point_creates_one_task_when_its_window_closes(study, protocol):
    """D3 missed: nothing before its late close, one task after it, none more on later passes."""
    dose = datetime(2026, 5, 4, 9, 0, tzinfo=UTC)
    participant = dosed(study, "P-FUP001", dose)
    for code in ("D1", "D2"):
        a = assessment_of(participant, 1, code)
        record_submission(a, answers_for(protocol, code), now=a.window_open + timedelta(minutes=5), actor="t")
    db.session.commit()
    d3 = assessment_of(participant, 1, "D3")
    assert create_tasks(study, d3.late_close - timedelta(seconds=1)) == 0 or not tasks("missed_timepoint")
    assert create_tasks(study, d3.late_close + timedelta(minutes=1)) >= 1
    created = tasks("missed_timepoint")
    assert len(created) == 1 and "Missed D3" in created[0].reason
    assert created[0].due_at == d3.late_close + timedelta(hours=24)
    for later in (timedelta(hours=2), timedelta(days=2)):
        create_tasks(study, d3.late_close + later)
    assert len(tasks("missed_timepoint")) == 1


def test_two_home_entries_missed_in_a_row_create_one_task(study, protocol):
    """D1 and D3 missed (D2 is optional and does not break or make the run): one task, once."""
    dose = datetime(2026, 5, 4, 9, 0, tzinfo=UTC)
    participant = dosed(study, "P-FUP002", dose)
    m230 = assessment_of(participant, 1, "M230")
    record_submission(m230, answers_for(protocol, "M230"), now=m230.window_open + timedelta(minutes=5), actor="t")
    db.session.commit()
    d1, d3 = assessment_of(participant, 1, "D1"), assessment_of(participant, 1, "D3")
    create_tasks(study, d1.late_close + timedelta(minutes=1))
    assert not tasks("missed_in_a_row")
    create_tasks(study, d3.late_close + timedelta(minutes=1))
    create_tasks(study, d3.late_close + timedelta(hours=5))
    created = tasks("missed_in_a_row")
    assert len(created) == 1 and "infusion 1 D1, infusion 1 D3" in created[0].reason
    assert created[0].due_at == d3.late_close + timedelta(hours=24)


def test_a_participant_silent_for_48_hours_while_entries_were_due_gets_one_task(study, protocol):
    """Last entry at M230; D1 missed; 48 h after the last entry one task appears, then no other."""
    dose = datetime(2026, 5, 4, 9, 0, tzinfo=UTC)
    participant = dosed(study, "P-FUP003", dose)
    m230 = assessment_of(participant, 1, "M230")
    last = m230.window_open + timedelta(minutes=5)
    record_submission(m230, answers_for(protocol, "M230"), now=last, actor="t")
    db.session.commit()
    create_tasks(study, last + timedelta(hours=47, minutes=59))
    assert not tasks("silent")
    create_tasks(study, last + timedelta(hours=48, minutes=1))
    create_tasks(study, last + timedelta(hours=60))
    created = tasks("silent")
    assert len(created) == 1 and "No diary entry for more than 48 hours" in created[0].reason
    assert created[0].due_at == last + timedelta(hours=48 + 24)


def test_a_severe_report_not_reviewed_within_an_hour_creates_one_task(study, protocol):
    """Severe and unreviewed 1 h after it was reported: a task; reviewing it earlier prevents one."""
    participant = dosed(study, "P-FUP004", datetime(2026, 5, 4, 9, 0, tzinfo=UTC))
    d1 = assessment_of(participant, 1, "D1")
    at = d1.window_open + timedelta(minutes=5)
    record_submission(
        d1, answers_for(protocol, "D1", **{"side_effects.symptoms.vomiting": "severe"}), now=at, actor="t"
    )
    db.session.commit()
    create_tasks(study, at + timedelta(minutes=59))
    assert not tasks("severe_unreviewed")
    create_tasks(study, at + timedelta(minutes=61))
    create_tasks(study, at + timedelta(hours=3))
    assert len(tasks("severe_unreviewed")) == 1 and "vomiting" in tasks("severe_unreviewed")[0].reason


def test_the_home_page_lists_open_tasks_and_closing_one_is_audited(client, study, protocol):
    """A coordinator sees open tasks first, records the outcome with a note, and the task closes."""
    participant = dosed(study, "P-FUP005", now_utc() - timedelta(days=5))
    db.session.commit()
    create_tasks(study, now_utc())
    task = tasks("missed_timepoint")[0]
    login_as(client, "coordinator")
    home = client.get("/staff/").get_data(as_text=True)
    assert "Follow up" in home and "P-FUP005" in home.split("<h1>Adherence</h1>")[0]
    refused = client.post(
        f"/staff/follow-up/{task.id}/close", data={"csrf_token": any_csrf(client), "outcome": "reached"}
    )
    assert refused.status_code == 303 and db.session.get(FollowUpTask, task.id).closed_at is None
    client.post(
        f"/staff/follow-up/{task.id}/close",
        data={"csrf_token": any_csrf(client), "outcome": "left_message", "note": "voicemail, will call tomorrow"},
    )
    db.session.refresh(task)
    assert (task.outcome, task.note) == ("left_message", "voicemail, will call tomorrow") and task.closed_at
    event = db.session.scalars(select(AuditEvent).where(AuditEvent.action == "close_follow_up")).one()
    assert event.participant_id == participant.id and "left_message" in event.new_value


# --- Emergency code break ----------------------------------------------------------------------


@pytest.mark.parametrize("app", [{"SITE_ALERTS": ONCALL}], indirect=True)
def test_a_code_break_reveals_one_participant_only_and_the_export_stays_blinded(app, client, study, tmp_path):
    """The emergency role sees one participant's drugs; the site is told (not what); the export flags it."""
    from diary.exports import write_bundle
    from diary.study.trial import require_study

    from .test_exports import read_csv

    broken = dosed(study, "P-BRK001", now_utc() - timedelta(days=3))
    other = dosed(study, "P-BRK002", now_utc() - timedelta(days=3))
    db.session.commit()
    make_staff("emergency", "er@site.test")
    login_as(client, "emergency", "er@site.test")
    page = client.get("/staff/code-break").get_data(as_text=True)
    short = client.post(
        "/staff/code-break",
        data={"csrf_token": csrf_from(page), "code": "P-BRK001", "reason": "why", "confirm": "BREAK"},
    )
    assert short.status_code == 422 and broken.code_broken_at is None
    shown = client.post(
        "/staff/code-break",
        data={
            "csrf_token": csrf_from(page),
            "code": "P-BRK001",
            "confirm": "BREAK",
            "reason": "anaphylaxis in the emergency department; treating team needs the drug",
        },
    )
    assert shown.status_code == 303 and shown.headers["Location"].endswith("/staff/code-break/P-BRK001")
    html = client.get(shown.headers["Location"]).get_data(as_text=True)
    assert "ketamine 0.5 mg/kg" in html and "midazolam" in html
    assert "P-BRK002" not in html
    db.session.expire_all()
    assert broken.code_broken_at is not None and other.code_broken_at is None
    event = db.session.scalars(select(AuditEvent).where(AuditEvent.action == "break_code")).one()
    assert "anaphylaxis" in event.reason and event.participant_id == broken.id
    notices = db.session.scalars(select(StaffMessage).where(StaffMessage.kind == "code_break")).all()
    assert sorted(n.recipient for n in notices) == ["oncall@site.test", "pi@site.test"]
    assert all("ketamine" not in n.body.lower() and "midazolam" not in n.body.lower() for n in notices)
    write_bundle(tmp_path, study=require_study(), now=now_utc(), true_allocation=True)
    rows = read_csv(tmp_path, "assessments")
    # Sequence AB, infusion 1: still masked for everyone, drug names withheld.
    assert {(r["treatment_code"], r["treatment"]) for r in rows} == {("A", "")}
    flags = {r["participant_id"]: r["code_broken_utc"] for r in read_csv(tmp_path, "fatigue_endpoints")}
    assert flags["P-BRK001"] and flags["P-BRK002"] == ""


@pytest.mark.parametrize("role", ["coordinator", "analyst", "admin"])
def test_only_the_unblinded_and_emergency_roles_may_break_a_code(client, study, role):
    login_as(client, role)
    assert client.get("/staff/code-break").status_code == 403


@pytest.mark.parametrize("app", [{"SITE_ALERTS": ONCALL}], indirect=True)
def test_reloading_the_code_break_result_writes_no_second_event_or_email(app, client, study):
    """One break, one audit event, one notice per address, however often the result is reloaded;
    another emergency account cannot read the result without breaking (and being audited) itself."""
    dosed(study, "P-BRK010", now_utc() - timedelta(days=3))
    db.session.commit()
    login_as(client, "emergency", "er1@site.test")
    page = client.get("/staff/code-break").get_data(as_text=True)
    broke = client.post(
        "/staff/code-break",
        data={
            "csrf_token": csrf_from(page),
            "code": "P-BRK010",
            "confirm": "BREAK",
            "reason": "seizure at home; the emergency physician asks which drug was given",
        },
    )
    assert broke.status_code == 303
    for _ in range(3):
        reloaded = client.get(broke.headers["Location"])
        assert reloaded.status_code == 200 and "ketamine 0.5 mg/kg" in reloaded.get_data(as_text=True)
        assert reloaded.headers["Cache-Control"] == "no-store"
    assert db.session.scalar(select(func.count()).select_from(AuditEvent).where(AuditEvent.action == "break_code")) == 1
    notices = db.session.scalars(select(StaffMessage).where(StaffMessage.kind == "code_break")).all()
    assert sorted(n.recipient for n in notices) == ["oncall@site.test", "pi@site.test"]
    other = app.test_client()
    login_as(other, "emergency", "er2@site.test")
    peek = other.get("/staff/code-break/P-BRK010")
    assert peek.status_code == 302 and peek.headers["Location"].endswith("/staff/code-break")


def test_the_result_of_a_code_break_is_refused_to_anyone_who_did_not_break_it(study):
    """``broken_code`` itself: refused before any break, and to a second emergency account."""
    from diary.errors import Refused
    from diary.safety.alerts import break_code, broken_code

    participant = dosed(study, "P-BRK011", now_utc() - timedelta(days=3))
    breaker, bystander = make_staff("emergency", "er3@site.test"), make_staff("emergency", "er4@site.test")
    with pytest.raises(Refused) as before:
        broken_code(participant, breaker)
    assert before.value.status == 403
    break_code(participant, "anaphylaxis; the treating team needs the drug", by=breaker, now=now_utc())
    assert [code for _, code, _ in broken_code(participant, breaker)] == ["A", "B"]
    assert len(broken_code(participant, make_staff("unblinded"))) == 2
    with pytest.raises(Refused):
        broken_code(participant, bystander)
    with pytest.raises(Refused):
        broken_code(participant, make_staff("coordinator"))


# --- A calendar feed people can trust ----------------------------------------------------------


def test_calendar_alarms_avoid_quiet_hours_and_never_ring_before_a_window_opens(study, protocol):
    """Across the spring daylight-saving change: home entries only, every alarm inside its window
    and outside 22:00-07:00 on the participant's clock; entries done drop out."""
    from diary.participants.links import reminder_link
    from diary.reminders.calendar import calendar_feed

    tz = ZoneInfo("America/New_York")
    dose = datetime(2027, 3, 12, 6, 30, tzinfo=tz).astimezone(UTC)  # D1 opens 02:30; clocks change on the 14th
    participant = dosed(study, "P-CAL100", dose, tz="America/New_York")
    db.session.commit()
    now = dose + timedelta(minutes=10)
    feed = Calendar.from_ical(calendar_feed(participant, link=reminder_link(participant), now=now))
    events = [c for c in feed.walk() if c.name == "VEVENT"]
    summaries = sorted(str(e["summary"]) for e in events)
    assert summaries and not any(code in " ".join(summaries) for code in ("80 minutes", "2 hours", "End of infusion"))
    alarms = 0
    for event in events:
        start, end = event.decoded("dtstart"), event.decoded("dtend")
        for alarm in (c for c in event.walk() if c.name == "VALARM"):
            ring = alarm.decoded("trigger")
            assert isinstance(ring, datetime), "alarms ring at an absolute time"
            local = ring.astimezone(tz).time()
            assert start <= ring < end, (event["summary"], ring)
            assert time(7, 0) <= local < time(22, 0), (event["summary"], ring.astimezone(tz))
            alarms += 1
    assert alarms >= 5
    d1 = assessment_of(participant, 1, "D1")
    record_submission(d1, answers_for(protocol, "D1"), now=d1.window_open + timedelta(hours=6), actor="t")
    db.session.commit()
    later = Calendar.from_ical(calendar_feed(participant, link="x", now=d1.window_open + timedelta(hours=7)))
    remaining = [str(e["summary"]) for e in later.walk() if e.name == "VEVENT"]
    assert "Diary: Infusion 1 · Day 1" not in remaining and "Diary: Infusion 1 · Day 14" in remaining


def test_following_a_reminder_link_is_logged_as_opened(app, smtp, study, client):
    """The log tells 'never reached' from 'ignored': a followed reminder link marks it opened."""
    # The pass runs at the last 15:00 UTC, so the reminder is never held back by the quiet hours
    # (the suite may run at night).
    at = now_utc().replace(hour=15, minute=0, second=0, microsecond=0)
    at -= timedelta(days=1) if at > now_utc() else timedelta(0)
    dosed(study, "P-OPEN01", at - timedelta(hours=21))
    db.session.commit()
    run_pass(app, now=at)
    reminder = db.session.scalars(select(Reminder).where(Reminder.state == "sent")).one()
    message = text_of(smtp.inbox.messages[0])
    link = next(word for word in message.split() if "/p/" in word)
    client.get(link.replace("http://diary.test", ""))
    db.session.refresh(reminder)
    assert reminder.opened_at is not None
