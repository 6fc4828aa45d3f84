"""The phone diary over HTTP: access, entries, integrity and bad input.

Every refusal is a clear 4xx and leaves the database as it was.
"""

from datetime import timedelta

import pytest
from sqlalchemy import func, select

from diary.extensions import db
from diary.models import AuditEvent, ItemValue, SideEffectReport, Submission, now_utc
from diary.participants.enrolment import revoke_link, withdraw
from diary.participants.pins import reset_pin
from diary.study.trial import protocol_of

from .conftest import answers_for, assessment_of
from .participant_helpers import csrf_from, day1_form, key_from, open_form, participant_with_day1_open, sign_in


def count(model):
    return db.session.scalar(select(func.count()).select_from(model))


@pytest.fixture
def phone(client, study):
    """A signed-in phone of a participant whose Day 1 entry is open. Returns (client, participant)."""
    participant, token = participant_with_day1_open(study)
    sign_in(client, token)
    return client, participant


@pytest.fixture
def protocol(study):
    return protocol_of(study.current_protocol_version)


def submit(client, assessment, form, step="submit"):
    return client.post(f"/p/entry/{assessment.id}", data={**form, "step": step})


# --- Access ------------------------------------------------------------------------------------


def test_first_visit_chooses_a_pin_and_remembers_the_phone(client, study):
    participant, token = participant_with_day1_open(study)
    first = client.get(f"/p/{token}")
    assert b"Choose a PIN" in first.data
    today = client.post(
        f"/p/{token}", data={"pin": "4821", "confirm": "4821", "csrf_token": csrf_from(first.get_data(as_text=True))}
    )
    assert today.status_code == 302 and today.headers["Location"].endswith("/p/today")
    cookie = [h for h in today.headers.getlist("Set-Cookie") if h.startswith("diary_phone=")][0]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Path=/p" in cookie
    assert "Max-Age=2592000" in cookie  # 30 days
    db.session.refresh(participant)
    assert participant.pin_hash and "4821" not in participant.pin_hash
    # Opening the link again goes straight to Today: no PIN while remembered.
    assert client.get(f"/p/{token}").headers["Location"].endswith("/p/today")


@pytest.mark.parametrize(
    "pin, confirm, message",
    [
        ("4821", "4822", b"not the same"),
        ("12", "12", b"4 to 6 digits"),
        ("12ab", "12ab", b"4 to 6 digits"),
        ("1234567", "1234567", b"4 to 6 digits"),
    ],
)
def test_bad_pin_choices_are_refused(client, study, pin, confirm, message):
    participant, token = participant_with_day1_open(study)
    page = client.get(f"/p/{token}")
    response = client.post(
        f"/p/{token}", data={"pin": pin, "confirm": confirm, "csrf_token": csrf_from(page.get_data(as_text=True))}
    )
    assert response.status_code == 422 and message in response.data
    db.session.refresh(participant)
    assert participant.pin_hash is None


def test_pin_form_without_csrf_is_refused(client, study):
    participant, token = participant_with_day1_open(study)
    response = client.post(f"/p/{token}", data={"pin": "4821", "confirm": "4821"})
    assert response.status_code == 400 and b"Nothing was saved" in response.data
    db.session.refresh(participant)
    assert participant.pin_hash is None


def later_by(monkeypatch, seconds: int) -> None:
    """Move the clock that signed cookies and CSRF tokens are timed by (itsdangerous's) forward,
    instead of sleeping: what was signed is now ``seconds`` older."""
    from itsdangerous.timed import TimestampSigner

    real = TimestampSigner.get_timestamp
    monkeypatch.setattr(TimestampSigner, "get_timestamp", lambda signer: real(signer) + seconds)


def test_expired_remembered_phone_asks_for_the_pin_again(app, study, monkeypatch):
    app.config["PARTICIPANT_REMEMBER_DAYS"] = 1 / 86400  # one second
    client = app.test_client()
    participant, token = participant_with_day1_open(study)
    sign_in(client, token)
    later_by(monkeypatch, seconds=2)
    assert client.get("/p/today").status_code == 401
    page = client.get(f"/p/{token}")
    assert page.status_code == 200 and b"Enter your PIN" in page.data


def wrong_pin(client, token, pin="0000"):
    page = client.get(f"/p/{token}")
    return client.post(f"/p/{token}", data={"pin": pin, "csrf_token": csrf_from(page.get_data(as_text=True))})


def test_five_wrong_pins_lock_the_diary_for_15_minutes(app, study):
    participant, token = participant_with_day1_open(study)
    sign_in(app.test_client(), token, pin="4821")
    later = app.test_client()
    later_csrf = csrf_from(later.get(f"/p/{token}").get_data(as_text=True))
    # Each attempt from a fresh client: the counter lives in the database, not in a session.
    statuses = [wrong_pin(app.test_client(), token).status_code for _ in range(5)]
    assert statuses == [401, 401, 401, 401, 429]
    db.session.refresh(participant)
    assert participant.pin_locked_until - now_utc() > timedelta(minutes=14)
    # Even the right PIN is refused while locked, and nothing signs the phone in.
    locked = later.post(f"/p/{token}", data={"pin": "4821", "csrf_token": later_csrf})
    assert locked.status_code == 429 and b"locked" in locked.data
    assert not any(h.startswith("diary_phone=") for h in locked.headers.getlist("Set-Cookie"))
    assert db.session.scalar(select(AuditEvent.action).where(AuditEvent.action == "pin_locked"))


def test_lockout_expires(app, study):
    participant, token = participant_with_day1_open(study)
    sign_in(app.test_client(), token, pin="4821")
    for _ in range(5):
        wrong_pin(app.test_client(), token)
    participant.pin_locked_until = now_utc() - timedelta(seconds=1)  # the 15 minutes have passed
    db.session.commit()
    response = wrong_pin(app.test_client(), token, pin="4821")
    assert response.status_code == 302 and response.headers["Location"].endswith("/p/today")


def test_unknown_link_gets_a_clear_page(client):
    response = client.get("/p/not-a-real-token-at-all")
    assert response.status_code == 404 and b"This link does not work" in response.data


def test_revoked_link_and_its_phones_stop_working(phone, study):
    client, participant = phone
    token_page = client.get("/p/today")
    assert token_page.status_code == 200
    revoke_link(participant, actor="test", now=now_utc(), reason="phone lost")
    db.session.commit()
    assert client.get("/p/today").status_code == 401


def test_reset_pin_signs_remembered_phones_out(phone):
    client, participant = phone
    reset_pin(participant, actor="staff:test", now=now_utc())
    db.session.commit()
    assert client.get("/p/today").status_code == 401


def test_withdrawn_participant_sees_a_closing_page(phone):
    client, participant = phone
    withdraw(participant, actor="test", now=now_utc(), reason="moved away")
    db.session.commit()
    response = client.get("/p/today")
    assert response.status_code == 403 and b"Your diary is closed" in response.data


# --- Today -------------------------------------------------------------------------------------


def test_today_shows_open_entry_with_local_close_time(phone):
    client, participant = phone
    day1 = assessment_of(participant, 1, "D1")
    from diary.i18n import when

    expected = when(day1.window_close, "America/New_York", now_utc(), "en")
    assert expected.endswith(("am", "pm"))  # a US participant's 12-hour clock
    html = client.get("/p/today").get_data(as_text=True)
    assert "Infusion 1 · Day 1" in html and f"Open until {expected}" in html
    assert "opens" in html  # what comes next
    assert "ketamine" not in html.lower() and "midazolam" not in html.lower()


# --- Entries -----------------------------------------------------------------------------------


def test_review_then_submit_stores_one_submission(phone, protocol):
    client, participant = phone
    day1 = assessment_of(participant, 1, "D1")
    form = {**day1_form(protocol), **open_form(client, day1), "device_time": "2026-11-25T06:00:00.000Z"}
    review = submit(client, day1, form, step="review")
    assert review.status_code == 200 and b"Check your answers" in review.data
    assert count(Submission) == 0  # reviewing stores nothing
    before = now_utc()
    saved = submit(client, day1, form)
    assert saved.status_code == 302
    submission = db.session.scalars(select(Submission)).one()
    assert before - timedelta(seconds=1) <= submission.submitted_at <= now_utc()
    assert submission.device_time == "2026-11-25T06:00:00.000Z"
    values = {(v.instrument, v.item): v.value for v in submission.values}
    assert values[("fatigue_vas", "fatigue")] == "63"
    page = client.get(saved.headers["Location"]).get_data(as_text=True)
    assert "Saved. Thank you!" in page and "Next:" in page


def test_double_submit_stores_nothing_new(phone, protocol):
    client, participant = phone
    day1 = assessment_of(participant, 1, "D1")
    form = {**day1_form(protocol), **open_form(client, day1)}
    first, second = submit(client, day1, form), submit(client, day1, form)
    assert first.status_code == second.status_code == 302
    assert second.headers["Location"].endswith("/saved")
    assert count(Submission) == 1 and count(ItemValue) == 13  # 1 VAS, 1 NRS, 10 side effects, 1 guess


def test_submitted_entry_cannot_be_changed(phone, protocol):
    client, participant = phone
    day1 = assessment_of(participant, 1, "D1")
    submit(client, day1, {**day1_form(protocol), **open_form(client, day1)})
    assert client.get(f"/p/entry/{day1.id}").headers["Location"].endswith("/saved")
    html = client.get("/p/today").get_data(as_text=True)
    other = {
        **day1_form(protocol, **{"fatigue_vas.fatigue": "5"}),
        "csrf_token": csrf_from(html),
        "idempotency_key": "another0key0123456",
    }
    response = submit(client, day1, other)
    assert response.status_code == 409 and b"already been saved" in response.data
    assert db.session.scalar(select(ItemValue.value).where(ItemValue.item == "fatigue")) == "63"


BAD_INPUT = [
    ({"fatigue_vas.fatigue": "101"}, "fatigue_vas.fatigue", b"from 0 to 100"),
    ({"fatigue_vas.fatigue": "-1"}, "fatigue_vas.fatigue", b"from 0 to 100"),
    ({"fatigue_vas.fatigue": "abc"}, "fatigue_vas.fatigue", b"whole number"),
    ({"fatigue_vas.fatigue": "4.5"}, "fatigue_vas.fatigue", b"whole number"),
    ({"fatigue_vas.fatigue": "\u00b2"}, "fatigue_vas.fatigue", b"whole number"),
    ({"fatigue_vas.fatigue.touched": ""}, "fatigue_vas.fatigue", b"move the slider"),
    ({"energy_nrs.energy": ""}, "energy_nrs.energy", b"answer this question"),
    ({"energy_nrs.energy": "11"}, "energy_nrs.energy", b"from 0 to 10"),
    ({"side_effects.symptoms.headache": "terrible"}, "x", b"choose none, mild, moderate or severe for headache"),
    ({"side_effects.symptoms.headache": ""}, "x", b"for headache"),
    ({"blinding_guess.guess": "placebo"}, "x", b"pick one of the choices"),
    ({"side_effects.other": "x" * 501}, "x", b"keep this to 500 characters"),
]


@pytest.mark.parametrize("change, _field, message", BAD_INPUT)
def test_bad_input_is_refused_and_stores_nothing(phone, protocol, change, _field, message):
    client, participant = phone
    day1 = assessment_of(participant, 1, "D1")
    form = {**day1_form(protocol), **open_form(client, day1), **change}
    audit_before = count(AuditEvent)
    for step in ("review", "submit"):
        response = submit(client, day1, form, step=step)
        assert response.status_code == 422, (step, response.status_code)
        assert message in response.data
    assert count(Submission) == count(ItemValue) == count(SideEffectReport) == 0
    assert count(AuditEvent) == audit_before


def test_untouched_slider_is_not_a_silent_50(phone, protocol):
    """The slider's resting position is never stored as an answer."""
    client, participant = phone
    day1 = assessment_of(participant, 1, "D1")
    form = {**day1_form(protocol), **open_form(client, day1)}
    form.pop("fatigue_vas.fatigue.touched")
    form["fatigue_vas.fatigue"] = "50"
    response = submit(client, day1, form)
    assert response.status_code == 422 and count(Submission) == 0


def test_answers_stay_on_the_page_after_an_error(phone, protocol):
    client, participant = phone
    day1 = assessment_of(participant, 1, "D1")
    form = {
        **day1_form(protocol),
        **open_form(client, day1),
        "energy_nrs.energy": "",
        "side_effects.other": "a tingling in my hands",
    }
    html = submit(client, day1, form, step="review").get_data(as_text=True)
    assert "a tingling in my hands" in html
    assert 'value="63"' in html and 'name="side_effects.symptoms.headache" value="none" checked' in html


def test_another_participants_entry_is_not_found(phone, study, protocol):
    client, participant = phone
    other, _ = participant_with_day1_open(study, code="P-OTHER")
    theirs = assessment_of(other, 1, "D1")
    form = {**day1_form(protocol), **open_form(client, assessment_of(participant, 1, "D1"))}
    for response in (client.get(f"/p/entry/{theirs.id}"), submit(client, theirs, form)):
        assert response.status_code == 404
        assert b"P-OTHER" not in response.data and b"Day 1" not in response.data
    assert count(Submission) == 0


@pytest.mark.parametrize("token", [None, "forged-token"])
def test_missing_or_forged_csrf_is_refused_and_keeps_answers(phone, protocol, token):
    client, participant = phone
    day1 = assessment_of(participant, 1, "D1")
    form = {**day1_form(protocol, **{"side_effects.other": "felt floaty"}), **open_form(client, day1)}
    if token is None:
        form.pop("csrf_token")
    else:
        form["csrf_token"] = token
    response = submit(client, day1, form)
    assert response.status_code == 400
    assert b"Your answers are still here" in response.data and b"felt floaty" in response.data
    assert count(Submission) == 0


def test_expired_form_comes_back_filled_in_and_then_saves(app, study, protocol, monkeypatch):
    """A form left open past the CSRF lifetime is not lost: resubmitting it saves once."""
    app.config["WTF_CSRF_TIME_LIMIT"] = 1
    client = app.test_client()
    participant, token = participant_with_day1_open(study)
    sign_in(client, token)
    day1 = assessment_of(participant, 1, "D1")
    form = {**day1_form(protocol, **{"side_effects.other": "slept badly"}), **open_form(client, day1)}
    later_by(monkeypatch, seconds=2)
    expired = submit(client, day1, form)
    assert expired.status_code == 400 and b"slept badly" in expired.data
    assert count(Submission) == 0
    app.config["WTF_CSRF_TIME_LIMIT"] = 3600
    html = expired.get_data(as_text=True)
    again = submit(client, day1, {**form, "csrf_token": csrf_from(html), "idempotency_key": key_from(html)})
    assert again.status_code == 302 and count(Submission) == 1


def test_closed_window_is_refused_with_its_message(client, study, protocol):
    participant, token = participant_with_day1_open(study, hours_ago=31)  # Day 1 grace ended at 30 h
    sign_in(client, token)
    day1 = assessment_of(participant, 1, "D1")
    page = client.get(f"/p/entry/{day1.id}")
    assert page.status_code == 409 and b"the time for this entry has passed" in page.data
    html = client.get("/p/today").get_data(as_text=True)
    form = {**day1_form(protocol), "csrf_token": csrf_from(html), "idempotency_key": "k" * 20}
    response = submit(client, day1, form)
    assert response.status_code == 409 and b"the time for this entry has passed" in response.data
    assert count(Submission) == 0


def test_entry_before_its_window_is_refused(phone, protocol):
    client, participant = phone
    day3 = assessment_of(participant, 1, "D3")
    page = client.get(f"/p/entry/{day3.id}")
    assert page.status_code == 409 and b"not open yet. It opens" in page.data
    html = client.get("/p/today").get_data(as_text=True)
    response = submit(client, day3, {**day1_form(protocol), "csrf_token": csrf_from(html), "idempotency_key": "k" * 20})
    assert response.status_code == 409 and count(Submission) == 0


def test_late_entry_inside_grace_is_saved_as_late(client, study, protocol):
    participant, token = participant_with_day1_open(study, hours_ago=29)  # closed at 28 h, grace to 30 h
    sign_in(client, token)
    day1 = assessment_of(participant, 1, "D1")
    assert b"can still be saved" in client.get("/p/today").data
    assert submit(client, day1, {**day1_form(protocol), **open_form(client, day1)}).status_code == 302
    submission = db.session.scalars(select(Submission)).one()
    assert submission.submitted_at >= day1.window_close  # completed_late by derivation


def test_severe_side_effect_shows_the_contact_and_alerts(phone, protocol):
    client, participant = phone
    day1 = assessment_of(participant, 1, "D1")
    form = {
        **day1_form(
            protocol, **{"side_effects.symptoms.headache": "severe", "side_effects.symptoms.dizziness": "mild"}
        ),
        **open_form(client, day1),
    }
    review = submit(client, day1, form, step="review")
    assert b"Please call your study team now" in review.data and b"+1 301 555 0100" in review.data
    saved = client.get(submit(client, day1, form).headers["Location"])
    assert b"Please call your study team now" in saved.data
    reports = {r.term: r for r in db.session.scalars(select(SideEffectReport))}
    assert set(reports) == {"headache", "dizziness"}
    assert reports["headache"].alert and not reports["dizziness"].alert
    assert db.session.scalars(select(Submission)).one().alert


def test_free_text_becomes_an_unsolicited_report(phone, protocol):
    client, participant = phone
    day1 = assessment_of(participant, 1, "D1")
    form = {**day1_form(protocol, **{"side_effects.other": "  ringing in my ears "}), **open_form(client, day1)}
    submit(client, day1, form)
    report = db.session.scalars(select(SideEffectReport)).one()
    assert (report.solicited, report.verbatim, report.term) == (False, "ringing in my ears", "other")


def test_history_lists_entries_read_only(phone, protocol):
    client, participant = phone
    day1 = assessment_of(participant, 1, "D1")
    submit(client, day1, {**day1_form(protocol), **open_form(client, day1)})
    html = client.get("/p/history").get_data(as_text=True)
    assert "Infusion 1 · Day 1" in html and "5 out of 10" in html
    assert "/p/entry/" not in html.split("<main", 1)[1]  # nothing to post an edit to
    assert 'type="range"' not in html and 'type="radio"' not in html


def test_oversized_body_is_refused_with_413(phone, app):
    client, participant = phone
    day1 = assessment_of(participant, 1, "D1")
    response = client.post(
        f"/p/entry/{day1.id}", data={"side_effects.other": "x" * (app.config["MAX_CONTENT_LENGTH"] + 1)}
    )
    assert response.status_code == 413 and b"larger than the diary accepts" in response.data
    assert count(Submission) == 0


def test_entry_page_weighs_under_60_kb(phone, app):
    """The biggest entry page (Day 1: every instrument) with its CSS and JS, uncompressed."""
    client, participant = phone
    html = client.get(f"/p/entry/{assessment_of(participant, 1, 'D1').id}").data
    css = client.get("/static/diary.css").data
    js = client.get("/static/diary.js").data
    total = len(html) + len(css) + len(js)
    assert 'src="http' not in html.decode() and 'href="http' not in html.decode()
    assert total < 60 * 1024, total


def test_history_uses_the_same_queries_for_few_or_many_entries(phone, app, protocol):
    """No query per entry: the page loads its entries and their answers in a fixed number."""
    from sqlalchemy import event

    client, participant = phone
    with app.app_context():
        engine = db.engine

    def queries():
        statements = []
        listener = lambda *args: statements.append(1)  # noqa: E731
        event.listen(engine, "before_cursor_execute", listener)
        try:
            assert client.get("/p/history").status_code == 200
        finally:
            event.remove(engine, "before_cursor_execute", listener)
        return len(statements)

    def answer(code):
        from diary.entries.recording import record_submission

        assessment = assessment_of(participant, 1, code)
        record_submission(
            assessment, answers_for(protocol, code), now=assessment.window_open + timedelta(minutes=1), actor="t"
        )
        db.session.commit()

    answer("BL")
    one = queries()
    for code in ("M40", "M80", "M120", "M230"):
        answer(code)
    assert queries() == one


def test_today_reads_the_participant_with_the_study_and_its_rows_in_two_statements(phone, app):
    """A page reads the participant with the study and its protocol versions in one statement
    (no lazy load of the study, then of its versions, on every page) and the rows in another."""
    from sqlalchemy import event

    client, _participant = phone
    with app.app_context():
        engine = db.engine
    statements = []
    listener = lambda conn, cursor, statement, *args: statements.append(statement)  # noqa: E731
    event.listen(engine, "before_cursor_execute", listener)
    try:
        assert client.get("/p/today").status_code == 200
    finally:
        event.remove(engine, "before_cursor_execute", listener)
    selects = [s for s in statements if s.lstrip().upper().startswith("SELECT")]
    assert len(selects) == 2, selects
    assert "protocol_version" in selects[0] and "FROM participant" in selects[0]


def test_a_form_key_already_used_for_another_entry_stores_nothing(app, client, study, protocol):
    """A hand-made request reusing another entry's idempotency key is refused by the key's unique
    constraint (no lookup ahead of every submit): 409, and the second entry stays empty."""
    first, token = participant_with_day1_open(study, code="P-KEY001")
    second, second_token = participant_with_day1_open(study, code="P-KEY002")
    sign_in(client, token)
    html = client.get("/p/today").get_data(as_text=True)
    form = {**day1_form(protocol), "csrf_token": csrf_from(html), "idempotency_key": "reused0key0" * 2}
    assert submit(client, assessment_of(first, 1, "D1"), form).status_code == 302
    other = app.test_client()
    sign_in(other, second_token)
    html = other.get("/p/today").get_data(as_text=True)
    response = submit(other, assessment_of(second, 1, "D1"), {**form, "csrf_token": csrf_from(html)})
    assert response.status_code == 409 and b"already used for another entry" in response.data
    assert count(Submission) == 1
    assert db.session.scalar(select(Submission.assessment_id)) == assessment_of(first, 1, "D1").id


def test_a_submit_writes_its_answers_its_audit_event_and_cancels_only_its_reminders(client, study, protocol):
    """The submission, every answer, one audit event naming the submission, and the cancelling of
    this entry's unsent reminders only (on PostgreSQL all in one statement, on SQLite in four)."""
    from diary.models import Reminder

    participant, token = participant_with_day1_open(study, code="P-ONE001")
    other, _ = participant_with_day1_open(study, code="P-ONE002")
    day1, others_day1 = assessment_of(participant, 1, "D1"), assessment_of(other, 1, "D1")
    now = now_utc()
    for assessment, kind in ((day1, "window_open"), (day1, "closing_soon"), (others_day1, "window_open")):
        db.session.add(
            Reminder(
                assessment_id=assessment.id,
                kind=kind,
                channel="email",
                state="pending",
                due_at=now,
                not_after=now,
                attempts=0,
                created_at=now,
            )
        )
    db.session.commit()
    sign_in(client, token)
    answers = day1_form(protocol)
    assert submit(client, day1, {**answers, **open_form(client, day1)}).status_code == 302
    submission = db.session.scalar(select(Submission).where(Submission.assessment_id == day1.id))
    stored = {
        (v.instrument, v.item): v.value
        for v in db.session.scalars(select(ItemValue).where(ItemValue.submission_id == submission.id))
    }
    assert stored[("fatigue_vas", "fatigue")] == answers["fatigue_vas.fatigue"]
    assert len(stored) == 13  # VAS, NRS, ten symptoms, the blinding guess
    events = db.session.scalars(select(AuditEvent).where(AuditEvent.entity == "submission")).all()
    assert [(e.action, e.entity_id, e.participant_id, e.field) for e in events] == [
        ("submit", submission.id, participant.id, "period 1 D1")
    ]
    assert f"fatigue_vas.fatigue={answers['fatigue_vas.fatigue']}" in events[0].new_value
    states = dict(
        db.session.execute(select(Reminder.assessment_id, Reminder.state).where(Reminder.kind == "window_open")).all()
    )
    assert states == {day1.id: "cancelled", others_day1.id: "pending"}
    assert (
        db.session.scalar(
            select(Reminder.last_error).where(Reminder.assessment_id == day1.id, Reminder.kind == "closing_soon")
        )
        == "entry completed"
    )
