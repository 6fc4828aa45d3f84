"""Hostile clocks, floods and bad bytes: a TOTP code signs in once, the account lock admits no more
than its limit of parallel tries, password hashing has a cap, the tarpit never holds the write
lock, links can be revoked, and no route answers 500 to ids, bytes or JSON it cannot hold."""

from __future__ import annotations

import sqlite3
from datetime import timedelta

import pyotp
import pytest
from sqlalchemy import func, select

from diary.errors import Refused
from diary.extensions import db
from diary.models import AuditEvent, StaffUser, Submission, now_utc

from .conftest import answers_for, assessment_of
from .participant_helpers import csrf_from, participant_with_day1_open, sign_in
from .staff_helpers import PASSWORD, TOTP_SECRET, login_as, make_staff
from .test_races import race

# --- A second factor done right --------------------------------------------------------------------


def _password_then_code(client, email, code):
    page = client.get("/staff/login").get_data(as_text=True)
    client.post("/staff/login", data={"email": email, "password": PASSWORD, "csrf_token": csrf_from(page)})
    form = client.get("/staff/login/code").get_data(as_text=True)
    return client.post("/staff/login/code", data={"code": code, "csrf_token": csrf_from(form)})


def test_a_totp_code_signs_in_once(app, study):
    """The code that just signed one session in does not sign in a second (a stolen code replayed)."""
    make_staff("admin", "replay@site.test")
    code = pyotp.TOTP(TOTP_SECRET).now()
    assert _password_then_code(app.test_client(), "replay@site.test", code).status_code == 302
    replayed = _password_then_code(app.test_client(), "replay@site.test", code)
    assert replayed.status_code == 401 and "already used" in replayed.get_data(as_text=True)


def test_use_step_takes_each_step_once_and_never_an_older_one(study):
    from diary.governance.second_factor import use_step

    user = make_staff("admin", "steps@site.test")
    assert use_step(user, 1000) and not use_step(user, 1000) and not use_step(user, 999) and use_step(user, 1001)


def test_matching_step_accepts_one_step_either_side_only(study):
    from diary.governance.second_factor import STEP_SECONDS, matching_step

    now = now_utc()
    step = int(now.timestamp()) // STEP_SECONDS
    totp = pyotp.TOTP(TOTP_SECRET)
    assert matching_step(TOTP_SECRET, totp.at((step - 1) * STEP_SECONDS), now) == step - 1
    assert matching_step(TOTP_SECRET, totp.at((step + 1) * STEP_SECONDS), now) == step + 1
    assert matching_step(TOTP_SECRET, totp.at((step - 3) * STEP_SECONDS), now) is None
    assert matching_step(TOTP_SECRET, "", now) is None and matching_step("", "123456", now) is None


def test_recovery_codes_accept_spaces_and_dashes(app, study):
    from diary.governance import second_factor

    user = make_staff("unblinded", "spaces@site.test")
    codes = second_factor.enable(user, TOTP_SECRET, pyotp.TOTP(TOTP_SECRET).now(), now=now_utc())
    db.session.commit()
    typed = " " + codes[0].replace("-", " - ").upper() + " "
    assert second_factor.check(user, typed, now=now_utc()) == "recovery code"
    with pytest.raises(Refused):
        second_factor.check(user, codes[0], now=now_utc())  # used up


def wrong_password(email: str):
    from diary.governance.staff import LoginRefused, login_staff

    try:
        login_staff(email, "a wrong password indeed", address="198.51.100.4", now=now_utc())
    except LoginRefused as refusal:
        db.session.commit()
        return refusal.status
    return 200


def wrong_code(email: str):
    from diary.governance import second_factor

    user = db.session.scalar(select(StaffUser).where(StaffUser.email == email))
    try:
        second_factor.check(user, "000000", now=now_utc())
    except Refused as refusal:
        db.session.commit()
        return refusal.status
    return 200


def test_twenty_parallel_wrong_passwords_check_at_most_five(app, study):
    """Real processes, all released at once: five are checked (401), every other one is refused
    unchecked by the lock (429), on SQLite and PostgreSQL."""
    make_staff("coordinator", "flood@site.test")
    statuses = race(app, wrong_password, *[("flood@site.test",)] * 20)
    assert statuses.count(401) <= 5 and statuses.count(429) >= 15 and set(statuses) <= {401, 429}, statuses
    checked = db.session.scalar(
        select(func.count())
        .select_from(AuditEvent)
        .where(AuditEvent.action == "sign_in_failed", AuditEvent.reason == "wrong email or password")
    )
    assert checked <= 5


def test_twenty_parallel_wrong_codes_check_at_most_five(app, study):
    make_staff("admin", "codes@site.test")
    statuses = race(app, wrong_code, *[("codes@site.test",)] * 20)
    assert statuses.count(401) <= 5 and statuses.count(429) >= 15, statuses


# --- Floods --------------------------------------------------------------------------------------


def test_password_hashing_is_refused_at_once_when_every_slot_is_taken():
    """The cap: with its slots held, a check does not queue; it is refused (503) in half a second."""
    import time

    from diary.governance import passwords

    passwords.set_hashing_concurrency(1)
    try:
        assert passwords.HASHING_SLOTS.acquire(timeout=1)
        started = time.monotonic()
        with pytest.raises(passwords.HashingBusy) as busy:
            passwords.verify_secret(passwords.hash_secret("a long enough secret"), "a long enough secret")
        assert busy.value.status == 503 and time.monotonic() - started < 2
        passwords.HASHING_SLOTS.release()
        assert passwords.verify_secret(passwords.hash_secret("a long enough secret"), "a long enough secret")
    finally:
        passwords.set_hashing_concurrency(2)


@pytest.mark.parametrize("backend", ["sqlite"], indirect=False)
def test_the_tarpit_sleeps_holding_no_write_lock(app, client, study, monkeypatch, backend):
    """While a refused sign-in is answered slowly, another connection can write at once."""
    from diary.governance import staff
    from diary.web import signin

    monkeypatch.setattr(staff, "address_delay", lambda address, now: 0.5)
    monkeypatch.setattr(signin, "address_delay", lambda address, now: 0.5)
    path = app.config["SQLALCHEMY_DATABASE_URI"].removeprefix("sqlite:///")
    wrote = []

    def sleep_and_write(seconds):
        other = sqlite3.connect(path, timeout=0.2, isolation_level=None)
        try:
            other.execute("BEGIN IMMEDIATE")  # fails with "database is locked" if the request holds it
            other.execute("ROLLBACK")
            wrote.append(True)
        finally:
            other.close()

    monkeypatch.setattr(signin.time, "sleep", sleep_and_write)
    page = client.get("/staff/login").get_data(as_text=True)
    response = client.post(
        "/staff/login",
        data={"email": "nobody@site.test", "password": "wrong wrong wrong", "csrf_token": csrf_from(page)},
    )
    assert response.status_code == 401 and wrote == [True]


# --- Revoking a link ---------------------------------------------------------------------------


def test_revoking_a_link_signs_the_phone_out_at_once(app, client, study):
    participant, token = participant_with_day1_open(study, code="P-REVOKE")
    phone = app.test_client()
    sign_in(phone, token)
    assert phone.get("/p/today").status_code == 200
    login_as(client, "coordinator")
    form = client.get(f"/staff/participants/{participant.code}/revoke-link").get_data(as_text=True)
    from .participant_helpers import action_key_from

    empty = client.post(
        f"/staff/participants/{participant.code}/revoke-link",
        data={"csrf_token": csrf_from(form), "action_key": action_key_from(form), "reason": ""},
    )
    assert empty.status_code == 422
    done = client.post(
        f"/staff/participants/{participant.code}/revoke-link",
        data={"csrf_token": csrf_from(form), "action_key": action_key_from(form), "reason": "phone lost on the bus"},
    )
    assert done.status_code == 302
    assert phone.get("/p/today").status_code in (302, 401, 403)
    event = db.session.scalars(select(AuditEvent).where(AuditEvent.action == "revoke_link")).one()
    assert event.reason == "phone lost on the bus"


def test_revoke_link_needs_a_reason_and_happens_once(study):
    from diary.participants.enrolment import revoke_link

    participant, _ = participant_with_day1_open(study, code="P-REVOK2")
    with pytest.raises(Refused):
        revoke_link(participant, actor="t", now=now_utc(), reason=" ")
    revoke_link(participant, actor="t", now=now_utc(), reason="shared by mistake")
    with pytest.raises(Refused) as again:
        revoke_link(participant, actor="t", now=now_utc(), reason="again")
    assert again.value.status == 409


def test_restore_check_says_what_it_does_with_a_postgresql_dump(runner, tmp_path):
    plain = tmp_path / "plain.sql"
    plain.write_text("--\n-- PostgreSQL database dump\n--\n")
    result = runner.invoke(args=["diary", "restore-check", str(plain)])
    assert result.exit_code != 0 and "plain-SQL PostgreSQL dump" in result.output


# --- No 500s -----------------------------------------------------------------------------------


@pytest.mark.parametrize("words", ["a\x00b", "itchy\rthen dizzy"], ids=["nul", "lone-cr"])
def test_an_offline_entry_with_a_nul_byte_or_a_lone_cr_is_refused_and_recorded(app, client, study, words):
    """Stored on neither engine, answered 422 in JSON (so the phone stops resending), audited."""
    import uuid

    protocol = protocol_of_study(study)
    participant, token = participant_with_day1_open(study, code="P-NUL001")
    sign_in(client, token)
    day1 = assessment_of(participant, 1, "D1")
    body = {
        "fields": answers_for(protocol, "D1", **{"side_effects.other": words}),
        "key": uuid.uuid4().hex,
        "made_at": now_utc().isoformat().replace("+00:00", "Z"),
        "device_now": now_utc().isoformat().replace("+00:00", "Z"),
    }
    response = client.post(
        f"/p/entry/{day1.id}/sync",
        json=body,
        headers={"X-CSRFToken": csrf_from(client.get("/p/today").get_data(as_text=True))},
    )
    assert response.status_code == 422 and response.get_json()["status"] == "refused"
    assert db.session.scalar(select(func.count()).select_from(Submission)) == 0
    assert db.session.scalars(select(AuditEvent).where(AuditEvent.action == "offline_entry_refused")).one()


def protocol_of_study(study):
    from diary.study.trial import protocol_of

    return protocol_of(study.current_protocol_version)


def test_json_nested_3000_deep_is_refused_with_400(app, client, study):
    participant, token = participant_with_day1_open(study, code="P-DEEP01")
    sign_in(client, token)
    day1 = assessment_of(participant, 1, "D1")
    deep = "[" * 3000 + "]" * 3000
    response = client.post(
        f"/p/entry/{day1.id}/sync",
        data=deep,
        content_type="application/json",
        headers={"X-CSRFToken": csrf_from(client.get("/p/today").get_data(as_text=True))},
    )
    assert response.status_code == 400


def test_the_json_depth_count_skips_strings():
    from diary.web import json_depth

    assert json_depth(b'{"a": [1, {"b": "[[[[["}]}') == 3 and json_depth(b'"\\"[["') == 0


def test_a_randomization_site_with_a_nul_or_too_long_is_refused():
    from diary.study.randomization import parse_randomization_csv

    for site in ("NIH\x00CC", "X" * 81):
        with pytest.raises(Refused, match="printable characters"):
            parse_randomization_csv(f"site,position,sequence\n{site},1,AB\n", {"AB": ("A", "B")})


def test_an_error_page_works_when_the_database_is_gone(app, client, study, monkeypatch):
    """A request that fails on the database gets the diary's own page, with its headers."""
    from sqlalchemy.exc import OperationalError

    from diary.web import coordinator

    login_as(client, "coordinator")

    def broken(*args, **kwargs):
        raise OperationalError("SELECT 1", {}, Exception("server closed the connection unexpectedly"))

    monkeypatch.setattr(coordinator, "load_grid", broken)
    app.config["PROPAGATE_EXCEPTIONS"] = False
    response = client.get("/staff/")
    assert response.status_code == 500 and "Sorry, something went wrong on our side" in response.get_data(as_text=True)
    assert response.headers["Content-Security-Policy"] and response.headers["X-Frame-Options"] == "DENY"


# The fuzz: every route, every method it takes, as a stranger, a signed-in participant and a
# coordinator, with ids past what a column holds, NUL bytes, wrong types and hostile JSON.
HOSTILE_IDS = ["2147483648", "9223372036854775807", "99999999999999999999", "-1", "0", "1e3", "%00"]
HOSTILE_VALUES = ["\x00", "a\rb", "x" * 5000, "-1", "", "<script>", "1e309", "NaN", "\u202e", "9" * 40]


# Signing out would leave the rest of the fuzz knocking as a stranger.
SESSION_ENDERS = {"static", "participant.sign_out", "signin.logout"}


def _urls(app, code):
    for rule in app.url_map.iter_rules():
        if rule.endpoint in SESSION_ENDERS:
            continue
        urls = [rule.rule]
        for name in rule.arguments:
            urls = [
                u.replace(f"<int:{name}>", value).replace(f"<{name}>", value).replace(f"<path:{name}>", value)
                for u in urls
                for value in (HOSTILE_IDS if "int:" in rule.rule else [code, "..%2f..", "x" * 300])
            ]
        for url in urls:
            yield url, sorted(rule.methods - {"HEAD", "OPTIONS"})


def test_no_route_answers_500_to_hostile_input(app, study):
    from .participant_helpers import participant_with_day1_open as open_participant

    participant, token = open_participant(study, code="P-FUZZ01")
    make_staff("coordinator", "fuzz@site.test")
    stranger, phone, coordinator = app.test_client(), app.test_client(), app.test_client()
    sign_in(phone, token)
    login_as(coordinator, "coordinator", "fuzz@site.test")
    app.config["PROPAGATE_EXCEPTIONS"] = False
    failures, requests = [], 0
    for client in (stranger, phone, coordinator):
        token_page = client.get("/staff/login").get_data(as_text=True)
        csrf = csrf_from(token_page)
        for url, methods in _urls(app, participant.code):
            for method in methods:
                bodies = (
                    [None]
                    if method == "GET"
                    else [
                        {
                            "data": {
                                name: value
                                for name, value in zip(
                                    ("csrf_token", "reason", "code", "pin", "email", "note", "start", "password"),
                                    [csrf] + HOSTILE_VALUES,
                                )
                            }
                        },
                        {
                            "json": {"fields": {"a": ["\x00", {"b": [1, 2]}]}, "key": 12, "made_at": "x"},
                            "headers": {"X-CSRFToken": csrf},
                        },
                        {"data": "[" * 500, "content_type": "application/json", "headers": {"X-CSRFToken": csrf}},
                    ]
                )
                for body in bodies:
                    response = client.open(url, method=method, **(body or {}))
                    requests += 1
                    if response.status_code >= 500 and response.status_code != 503:
                        failures.append(f"{method} {url} {body and list(body)} -> {response.status_code}")
    print(f"fuzz: {requests} requests, {len(failures)} answered 5xx")
    # Still signed in at the end: the participant's and the coordinator's routes were reached as such.
    assert phone.get("/p/today").status_code == 200 and coordinator.get("/staff/").status_code == 200
    assert requests > 300 and failures == [], failures[:10]


def test_ids_past_a_32_bit_column_are_not_found(app, client, study):
    participant, token = participant_with_day1_open(study, code="P-BIGID")
    sign_in(client, token)
    assert client.get("/p/entry/2147483648").status_code == 404
    assert client.get("/p/entry/2147483647").status_code == 404


# --- Offline entries bounded by what the server saw ---------------------------------------------


def _backdated(
    client, study, code, *, dose_hours_ago, made_after_dose, stamp_for=None, served_after_dose=None, tamper=False
):
    """Send an offline Day 3 entry claimed as made ``made_after_dose`` hours after the infusion."""
    import uuid

    from diary.dosing.infusions import record_dose
    from diary.entries.recording import entry_stamp
    from diary.participants.enrolment import enroll

    now = now_utc()
    participant, token = enroll(
        study, site="NIH-CC", timezone="UTC", sequence="AB", actor="t", now=now - timedelta(days=10), code=code
    )
    dose = (now - timedelta(hours=dose_hours_ago)).replace(second=0, microsecond=0)
    record_dose(participant, 1, dose, actor="t", now=now)
    db.session.commit()
    d3 = assessment_of(participant, 1, "D3")
    target, owner = stamp_for or (d3, participant.id)
    served = dose + timedelta(hours=served_after_dose if served_after_dose is not None else made_after_dose - 0.2)
    stamp = entry_stamp(target, owner, served, client.application.config["SECRET_KEY"])
    if tamper:
        stamp = stamp[:-3] + ("AAA" if not stamp.endswith("AAA") else "BBB")
    sign_in(client, token)
    made = dose + timedelta(hours=made_after_dose)
    body = {
        "fields": {**answers_for(protocol_of_study(study), "D3"), "stamp": stamp},
        "key": uuid.uuid4().hex,
        "made_at": made.isoformat().replace("+00:00", "Z"),
        "device_now": now.isoformat().replace("+00:00", "Z"),
    }
    response = client.post(
        f"/p/entry/{d3.id}/sync",
        json=body,
        headers={"X-CSRFToken": csrf_from(client.get("/p/today").get_data(as_text=True))},
    )
    refused = db.session.scalars(
        select(AuditEvent).where(
            AuditEvent.action == "offline_entry_refused", AuditEvent.participant_id == participant.id
        )
    ).all()
    return response, refused, participant, d3


def test_a_day3_entry_claimed_22_hours_late_is_refused_and_recorded(app, client, study):
    """The window closed 22 h ago (grace included); the phone claims the answers were given inside
    its late grace, 23 h ago (within the 24 h offline grace): its form was not served open."""
    response, refused, _, _ = _backdated(
        client, study, "P-BACK01", dose_hours_ago=80 + 22, made_after_dose=79, served_after_dose=80 + 21
    )
    assert response.status_code == 409 and refused and "was opened when the entry was not open" in refused[0].reason


def test_an_entry_on_a_form_served_after_its_window_closed_is_refused(app, client, study):
    response, refused, _, _ = _backdated(
        client, study, "P-BACK02", dose_hours_ago=82, made_after_dose=77, served_after_dose=81
    )
    assert response.status_code == 409 and len(refused) == 1


def test_an_entry_made_before_its_form_was_served_is_refused(app, client, study):
    response, refused, _, _ = _backdated(
        client, study, "P-BACK03", dose_hours_ago=79, made_after_dose=70, served_after_dose=72
    )
    assert response.status_code == 409 and "before the form was opened" in refused[0].reason


def test_a_stamp_from_another_entry_or_participant_or_tampered_is_refused(app, client, study):
    from diary.dosing.infusions import record_dose
    from diary.participants.enrolment import enroll

    other, _ = enroll(
        study,
        site="NIH-CC",
        timezone="UTC",
        sequence="AB",
        actor="t",
        now=now_utc() - timedelta(days=9),
        code="P-OTHER9",
    )
    record_dose(other, 1, now_utc() - timedelta(hours=75), actor="t", now=now_utc())
    db.session.commit()
    theirs = assessment_of(other, 1, "D3")
    response, refused, participant, d3 = _backdated(
        client, study, "P-BACK04", dose_hours_ago=75, made_after_dose=70, stamp_for=(theirs, other.id)
    )
    assert response.status_code == 409 and "not made on a form the diary gave" in refused[0].reason
    response, refused, _, _ = _backdated(
        app.test_client(), study, "P-BACK05", dose_hours_ago=75, made_after_dose=70, tamper=True
    )
    assert response.status_code == 409 and refused
    response, refused, _, _ = _backdated(app.test_client(), study, "P-BACK06", dose_hours_ago=75, made_after_dose=70)
    assert response.status_code == 201 and refused == []  # the honest case counts


def test_stamp_refusal_called_directly(study):
    """The rule itself: its three refusals and its acceptance."""
    from diary.entries.recording import entry_stamp, stamp_refusal

    participant, _ = participant_with_day1_open(study, code="P-STAMP1")
    day1 = assessment_of(participant, 1, "D1")
    secret = "test-secret"
    inside = day1.window_open + timedelta(minutes=10)
    good = entry_stamp(day1, participant.id, inside, secret)
    assert stamp_refusal(day1, participant.id, good, inside + timedelta(minutes=5), secret) is None
    assert "before the form" in stamp_refusal(day1, participant.id, good, inside - timedelta(minutes=5), secret)
    assert "not made on a form" in stamp_refusal(day1, participant.id + 1, good, inside, secret)
    assert "not made on a form" in stamp_refusal(day1, participant.id, good, inside, "another-secret")
    assert "not made on a form" in stamp_refusal(day1, participant.id, None, inside, secret)
    early = entry_stamp(day1, participant.id, day1.window_open - timedelta(minutes=1), secret)
    assert "not open" in stamp_refusal(day1, participant.id, early, day1.window_open, secret)


def test_the_export_flags_the_offline_delay(app, client, study, tmp_path):
    import csv

    from diary.exports import write_bundle

    response, _, participant, _ = _backdated(client, study, "P-BACK07", dose_hours_ago=77, made_after_dose=72)
    assert response.status_code == 201
    write_bundle(tmp_path, study=study, now=now_utc())
    rows = [
        r
        for r in csv.DictReader((tmp_path / "assessments.csv").open())
        if r["participant_id"] == "P-BACK07" and r["timepoint"] == "D3"
    ]
    assert 290 <= float(rows[0]["offline_delay_min"]) <= 310  # five hours kept on the phone


def test_reserve_attempt_admits_the_limit_then_refuses_until_cleared(study):
    """The rule itself: attempts up to the limit may be checked, the next locks the key, a locked
    key refuses, and a right answer (``clear_attempts``) starts the count again."""
    from diary.governance.staff import THROTTLE_LOCK, _throttle_rows, clear_attempts, reserve_attempt

    now = now_utc()
    _throttle_rows(["account:direct@site.test"])
    assert [reserve_attempt("account:direct@site.test", 3, now) for _ in range(3)] == [None] * 3
    assert reserve_attempt("account:direct@site.test", 3, now) == now + THROTTLE_LOCK
    assert reserve_attempt("account:direct@site.test", 3, now + timedelta(minutes=1)) == now + THROTTLE_LOCK
    assert reserve_attempt("account:direct@site.test", 3, now + THROTTLE_LOCK + timedelta(seconds=1)) is None
    clear_attempts("account:direct@site.test")
    assert reserve_attempt("account:direct@site.test", 1, now + THROTTLE_LOCK + timedelta(seconds=2)) is None


def one_code(email: str, code: str):
    from diary.governance import second_factor

    user = db.session.scalar(select(StaffUser).where(StaffUser.email == email))
    try:
        kind = second_factor.check(user, code, now=now_utc())
        db.session.commit()
        return kind
    except Refused as refusal:
        db.session.commit()
        return refusal.status


def test_one_code_sent_by_two_processes_at_once_signs_in_once(app, study):
    """The same TOTP code in two sign-ins released together: one is accepted, one refused."""
    make_staff("admin", "twice@site.test")
    code = pyotp.TOTP(TOTP_SECRET).now()
    outcomes = race(app, one_code, ("twice@site.test", code), ("twice@site.test", code))
    assert sorted(map(str, outcomes)) == ["401", "authenticator code"], outcomes


# --- A lone carriage return: no browser sends one, and an export's CSV row would split --------


def test_unstorable_text_refuses_nul_and_a_lone_carriage_return_only():
    from diary.web import unstorable_text

    for refused in ("a\x00b", "\x00", "line one\rline two", "ends with\r", "\r", "\r\r\n", "a\r\nb\rc"):
        assert unstorable_text(refused), repr(refused)
    for kept in ("", "plain", "line one\r\nline two", "line one\nline two", "\r\n\r\n", "tab\there", "ñ 😀"):
        assert not unstorable_text(kept), repr(kept)


def test_a_typed_line_break_is_stored_and_exported_whole_and_a_lone_cr_is_refused(app, client, study, tmp_path):
    """A form sends a typed line break as CR LF: stored, and the side-effects CSV reads back one
    row with the words whole. A lone CR (a hand-made request) is refused with 400, nothing stored."""
    import csv

    from diary.exports import write_bundle

    from .participant_helpers import day1_form, key_from

    protocol = protocol_of_study(study)
    participant, token = participant_with_day1_open(study, code="P-CR0001")
    sign_in(client, token)
    day1 = assessment_of(participant, 1, "D1")

    def send(words):
        html = client.get(f"/p/entry/{day1.id}").get_data(as_text=True)
        form = {**day1_form(protocol, **{"side_effects.other": words}), "step": "submit"}
        form.update(csrf_token=csrf_from(html), idempotency_key=key_from(html))
        return client.post(f"/p/entry/{day1.id}", data=form)

    assert send("itchy\rthen dizzy").status_code == 400
    assert db.session.scalar(select(func.count()).select_from(Submission)) == 0
    assert send("itchy\r\nthen dizzy").status_code == 302
    write_bundle(tmp_path, study=study, now=now_utc(), free_text=True)
    with open(tmp_path / "side_effects.csv", encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["verbatim"] for row in rows if row["verbatim"]] == ["itchy\r\nthen dizzy"]
