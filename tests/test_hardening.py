"""Hardening: security headers, the second factor, throttles behind a proxy, a complete audit,
sessions that end on the server, and no 500 for input that cannot be stored."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

import pyotp
import pytest
from sqlalchemy import func, select

from diary.extensions import db
from diary.models import AuditEvent, RecoveryCode, StaffUser, now_utc

from .participant_helpers import action_key_from, csrf_from, participant_with_day1_open, sign_in
from .staff_helpers import PASSWORD, any_csrf, login_as, make_staff

HUGE = 2**64 + 5


def events(action: str) -> list[AuditEvent]:
    return db.session.scalars(select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.id)).all()


# --- Headers -----------------------------------------------------------------------------------


@pytest.mark.parametrize("url", ["/", "/p/not-a-token", "/staff/login", "/static/diary.css", "/no/such/page"])
def test_security_headers_on_every_kind_of_response(client, study, url):
    """Participant, staff, static and error responses all carry the strict headers."""
    response = client.get(url)
    csp = response.headers["Content-Security-Policy"]
    assert "default-src 'self'" in csp and "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert "'unsafe-inline'" not in csp
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Referrer-Policy"] == "same-origin"
    assert "camera=()" in response.headers["Permissions-Policy"]
    assert "Strict-Transport-Security" not in response.headers  # http base URL: no HSTS


@pytest.mark.parametrize("app", [{"BASE_URL": "https://diary.example.org"}], indirect=True)
def test_hsts_when_the_base_url_is_https(client, study):
    """Served as https, every response tells browsers to stay on https."""
    assert "max-age=31536000" in client.get("/staff/login").headers["Strict-Transport-Security"]


def test_no_template_has_inline_script_or_style():
    """The CSP forbids inline code: the templates carry none (the browser walk checks the rest)."""
    for path in (Path(__file__).parent.parent / "templates").rglob("*.html"):
        text = path.read_text(encoding="utf-8")
        assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", text), path
        assert " style=" not in text and "<style" not in text, path
        assert not re.search(r"\son[a-z]+=", text), path


# --- Second factor -----------------------------------------------------------------------------


def _password_step(client, email):
    page = client.get("/staff/login").get_data(as_text=True)
    return client.post("/staff/login", data={"email": email, "password": PASSWORD, "csrf_token": csrf_from(page)})


def _code_step(client, code):
    page = client.get("/staff/login/code").get_data(as_text=True)
    return client.post("/staff/login/code", data={"code": code, "csrf_token": csrf_from(page)})


def test_an_admin_without_a_second_factor_must_set_one_up_first(client, study):
    """Enrol TOTP: every page leads to the setup until a right code turns it on; recovery codes once."""
    user = make_staff("admin", "new.admin@site.test")
    user.totp_secret, user.totp_enabled_at = None, None
    db.session.commit()
    assert _password_step(client, "new.admin@site.test").status_code == 302
    assert client.get("/staff/admin/users").headers["Location"].endswith("/staff/second-factor")
    setup = client.get("/staff/second-factor").get_data(as_text=True)
    secret = re.search(r"<code>([A-Z2-7]{16,})</code>", setup).group(1)
    wrong = client.post("/staff/second-factor", data={"code": "000000", "csrf_token": csrf_from(setup)})
    assert wrong.status_code == 422 and db.session.get(StaffUser, user.id).totp_enabled_at is None
    done = client.post("/staff/second-factor", data={"code": pyotp.TOTP(secret).now(), "csrf_token": csrf_from(setup)})
    codes = re.findall(r"<code>([0-9a-f]{6}-[0-9a-f]{6})</code>", done.get_data(as_text=True))
    assert done.status_code == 200 and len(codes) == 10 and done.headers["Cache-Control"] == "no-store"
    stored = db.session.scalars(select(RecoveryCode.code_hash)).all()
    assert len(stored) == 10 and not any(code in stored for code in codes)  # only keyed hashes kept
    assert client.get("/staff/admin/users").status_code == 200
    assert [e.action for e in events("second_factor_setup_failed")] and events("second_factor_enabled")


def test_sign_in_with_a_second_factor_wrong_code_and_a_recovery_code_used_once(app, study):
    """Password, then the code; a wrong code refuses; a recovery code works once only."""
    from diary.governance import second_factor

    user = make_staff("unblinded", "keyholder@site.test")
    codes = second_factor.enable(user, user.totp_secret, pyotp.TOTP(user.totp_secret).now(), now=now_utc())
    db.session.commit()
    client = app.test_client()
    step = _password_step(client, "keyholder@site.test")
    assert step.headers["Location"].endswith("/staff/login/code")
    assert client.get("/staff/admin/randomization").status_code == 302  # not signed in yet
    assert _code_step(client, "123456").status_code == 401
    assert _code_step(client, codes[0]).status_code == 302
    assert client.get("/staff/admin/randomization").status_code == 200
    again = app.test_client()
    _password_step(again, "keyholder@site.test")
    assert _code_step(again, codes[0]).status_code == 401  # used up
    assert _code_step(again, pyotp.TOTP(user.totp_secret).now()).status_code == 302
    assert len(events("recovery_code_used")) == 1 and len(events("second_factor_failed")) == 2
    assert [e.new_value for e in events("sign_in")][-2:] == [
        "from 127.0.0.1, second factor: recovery code",
        "from 127.0.0.1, second factor: authenticator code",
    ]


def test_wrong_second_factor_codes_are_throttled(app, study):
    """Five wrong codes lock the second step for a while, like passwords."""
    make_staff("admin", "guarded@site.test")
    client = app.test_client()
    _password_step(client, "guarded@site.test")
    statuses = [_code_step(client, f"{n:06d}").status_code for n in range(6)]
    assert statuses[:5] == [401] * 5 and statuses[5] == 429


# --- Throttles and timing ----------------------------------------------------------------------


def test_twenty_failed_logins_from_one_address_do_not_lock_out_another_account(app, study):
    """Behind the proxy every user shares an address: guessing from it never locks others out."""
    make_staff("coordinator", "innocent@site.test")
    for number in range(20):
        page = app.test_client().get("/staff/login").get_data(as_text=True)
        app.test_client().post(
            "/staff/login",
            data={"email": f"random{number}@x.test", "password": "nope nope nope", "csrf_token": csrf_from(page)},
        )
    assert _password_step(app.test_client(), "innocent@site.test").status_code == 302


@pytest.mark.parametrize("app", [{"TRUSTED_PROXIES": 1}], indirect=True)
def test_behind_a_trusted_proxy_the_client_address_is_the_real_one(client, study):
    """With DIARY_TRUSTED_PROXIES=1, failures count against the address the proxy reports."""
    from diary.models import LoginThrottle

    page = client.get("/staff/login").get_data(as_text=True)
    client.post(
        "/staff/login",
        data={"email": "x@y.test", "password": "wrong wrong wrong", "csrf_token": csrf_from(page)},
        headers={"X-Forwarded-For": "198.51.100.7"},
    )
    keys = db.session.scalars(select(LoginThrottle.key)).all()
    assert "address:198.51.100.7" in keys and "address:127.0.0.1" not in keys


def test_unknown_and_known_accounts_cost_the_same_argon2_work(app, study, monkeypatch):
    """Timing tells nothing: a failed sign-in with an unknown email makes exactly the Argon2
    verification a known one makes, against a hash of the same parameters (memory, time,
    lanes). Counted, not timed, so a loaded machine cannot make it flaky."""
    import argon2

    from diary.governance.passwords import hash_secret
    from diary.governance.staff import _DUMMY_HASH, LoginRefused, login_staff

    user = make_staff("coordinator", "timed@site.test")
    user.password_hash = hash_secret(PASSWORD)  # as create_user hashes it (the helper hashes cheaper)
    db.session.commit()

    checked = []
    real_verify = argon2.PasswordHasher.verify

    def counting_verify(hasher, stored_hash, password):
        checked.append(argon2.extract_parameters(stored_hash))
        return real_verify(hasher, stored_hash, password)

    monkeypatch.setattr(argon2.PasswordHasher, "verify", counting_verify)

    def work(email):
        checked.clear()
        with pytest.raises(LoginRefused):
            login_staff(email, "not the password", address="192.0.2.1", now=now_utc())
        db.session.rollback()
        return list(checked)

    known, unknown = work("timed@site.test"), work("nobody-at-all@site.test")
    assert len(known) == len(unknown) == 1
    assert unknown == known == [argon2.extract_parameters(user.password_hash)]
    assert argon2.extract_parameters(_DUMMY_HASH) == argon2.extract_parameters(user.password_hash)


# --- The audit trail ---------------------------------------------------------------------------


def test_every_kind_of_staff_event_is_audited(app, study, runner, tmp_path):
    """Sign-in, failed sign-in, sign-out, expiry, exports (web and CLI), reasons on staff changes."""
    client = app.test_client()
    page = client.get("/staff/login").get_data(as_text=True)
    make_staff("analyst", "audited@site.test")
    client.post(
        "/staff/login", data={"email": "audited@site.test", "password": "wrong one here", "csrf_token": csrf_from(page)}
    )
    assert _password_step(client, "audited@site.test").status_code == 302
    client.post("/staff/exports", data={"csrf_token": any_csrf(client), "format": "csv"})
    client.post("/staff/logout", data={"csrf_token": any_csrf(client)})
    assert runner.invoke(args=["diary", "export", "--out", str(tmp_path / "cli")]).exit_code == 0
    expired = app.test_client()
    login_as(expired, "coordinator", "idle@site.test")
    with expired.session_transaction() as session:
        session["staff_seen"] -= 31 * 60
    assert expired.get("/staff/").status_code == 302
    assert events("sign_in_failed")[0].reason == "wrong email or password"
    assert {e.actor for e in events("sign_in")} >= {"staff:audited@site.test", "staff:idle@site.test"}
    assert [e.actor for e in events("sign_out")] == ["staff:audited@site.test"]
    assert [(e.actor, e.reason) for e in events("session_expired")] == [("staff:idle@site.test", "idle timeout")]
    exports = events("export")
    assert [e.actor for e in exports] == ["staff:audited@site.test", "cli"]
    assert all(e.new_value.startswith("csv, blinded, dummy allocation, assessments") for e in exports)


def test_staff_changes_need_a_reason_and_withdrawal_lists_its_entries(client, study):
    """Role change, deactivation, reissue and PIN reset carry a reason; withdrawal names what it closed."""
    other = make_staff("analyst", "changed@site.test")
    participant, _ = participant_with_day1_open(study)
    admin = login_as(client, "admin")
    refused = client.post(
        f"/staff/admin/users/{other.id}", data={"csrf_token": any_csrf(client), "role": "coordinator"}
    )
    assert refused.status_code == 303 and db.session.get(StaffUser, other.id).role == "analyst"
    client.post(
        f"/staff/admin/users/{other.id}",
        data={"csrf_token": any_csrf(client), "role": "analyst", "reason": "left the study"},
    )
    assert [(e.field, e.reason) for e in events("change_active")] == [("active", "left the study")]
    assert admin.role == "admin"
    coordinator = client.application.test_client()
    login_as(coordinator, "coordinator")
    url = f"/staff/participants/{participant.code}/withdraw"
    html = coordinator.get(url).get_data(as_text=True)
    coordinator.post(
        url,
        data={
            "csrf_token": csrf_from(html),
            "action_key": action_key_from(html),
            "reason": "moved away",
            "category": "lost_to_follow_up",
        },
    )
    withdrawal = events("withdraw")[0]
    assert "entries closed as not applicable: infusion 1 D1" in withdrawal.new_value
    assert "infusion 2" not in withdrawal.new_value  # infusion 2 not scheduled yet: nothing to close


# --- Sessions and secrets ----------------------------------------------------------------------


def test_participant_sign_out_ends_the_session_on_the_server(app, study):
    """After signing out, a copy of the phone's cookie no longer opens Today."""
    participant, token = participant_with_day1_open(study)
    phone = app.test_client()
    sign_in(phone, token)
    copied = phone.get_cookie("diary_phone", path="/p").value
    today = phone.get("/p/today").get_data(as_text=True)
    phone.post("/p/sign-out", data={"csrf_token": csrf_from(today)})
    thief = app.test_client()
    thief.set_cookie("diary_phone", copied, path="/p")
    assert thief.get("/p/today").status_code == 401
    assert events("participant_sign_out")


@pytest.mark.parametrize("pin", ["1111", "000000", "1234", "4321", "012345", "98765"])
def test_trivial_pins_are_refused(client, study, pin):
    """All one digit, or digits in a row: refused with a message, nothing stored."""
    participant, token = participant_with_day1_open(study)
    page = client.get(f"/p/{token}").get_data(as_text=True)
    response = client.post(f"/p/{token}", data={"pin": pin, "confirm": pin, "csrf_token": csrf_from(page)})
    assert response.status_code == 422 and "too easy to guess" in response.get_data(as_text=True)
    db.session.refresh(participant)
    assert participant.pin_hash is None


def test_an_account_an_admin_created_must_set_its_own_password_first(app, client, study):
    """The admin's chosen password works once: every page leads to the password change."""
    login_as(client, "admin")
    page = client.get("/staff/admin/users").get_data(as_text=True)
    created = client.post(
        "/staff/admin/users",
        data={
            "csrf_token": csrf_from(page),
            "email": "fresh@example.org",
            "role": "coordinator",
            "password": "temporary pass 2026",
        },
    )
    assert created.status_code == 302, created.get_data(as_text=True)[-1500:]
    assert db.session.scalar(select(StaffUser.must_change_password).where(StaffUser.email == "fresh@example.org"))
    fresh = app.test_client()
    login = fresh.get("/staff/login").get_data(as_text=True)
    fresh.post(
        "/staff/login",
        data={"email": "fresh@example.org", "password": "temporary pass 2026", "csrf_token": csrf_from(login)},
    )
    assert fresh.get("/staff/").headers["Location"].endswith("/staff/password")
    form = fresh.get("/staff/password").get_data(as_text=True)
    common = fresh.post(
        "/staff/password",
        data={
            "csrf_token": csrf_from(form),
            "current": "temporary pass 2026",
            "new": "password1234",
            "confirm": "password1234",
        },
    )
    assert common.status_code == 422 and "most common" in common.get_data(as_text=True)
    fresh.post(
        "/staff/password",
        data={
            "csrf_token": csrf_from(form),
            "current": "temporary pass 2026",
            "new": "my own long phrase 7",
            "confirm": "my own long phrase 7",
        },
    )
    assert fresh.get("/staff/").status_code == 200


# --- No 500 for input that cannot be stored ----------------------------------------------------


@pytest.mark.parametrize(
    "role, method, url",
    [
        ("participant", "GET", f"/p/entry/{HUGE}"),
        ("coordinator", "GET", f"/staff/assessments/{HUGE}/enter"),
        ("coordinator", "POST", f"/staff/side-effects/{HUGE}/acknowledge"),
        ("admin", "POST", f"/staff/admin/users/{HUGE}"),
    ],
)
def test_ids_beyond_what_the_database_holds_are_not_found(app, study, role, method, url):
    """An id above 2**63 in a URL is a 404, never an overflow."""
    client = app.test_client()
    if role == "participant":
        _, token = participant_with_day1_open(study)
        sign_in(client, token)
        response = client.get(url)
    else:
        login_as(client, role)
        response = client.open(url, method=method, data={"csrf_token": any_csrf(client)})
    assert response.status_code == 404


def test_a_huge_audit_page_number_is_clamped(client, study):
    login_as(client, "coordinator")
    assert client.get("/staff/audit?page=99999999999999999999").status_code == 200


@pytest.mark.parametrize(
    "start, message", [("0001-01-01T09:00", "not plausible"), ("1900-05-01T09:00", "not plausible")]
)
def test_implausible_dose_dates_are_refused_with_a_message(client, study, start, message):
    """A dose in year 0001 (was a 500) or 1900 (was accepted) is refused, nothing stored."""
    participant, _ = participant_with_day1_open(study)
    login_as(client, "coordinator")
    url = f"/staff/participants/{participant.code}/dose/1"
    page = client.get(url).get_data(as_text=True)
    response = client.post(
        url, data={"csrf_token": csrf_from(page), "action_key": action_key_from(page), "start": start, "reason": "typo"}
    )
    assert response.status_code == 422 and message in response.get_data(as_text=True)
    assert not events("correct_dose")


def test_the_cli_refuses_an_email_with_a_header_injection(runner, study):
    """`enroll --email $'a@b.org\\r\\nBcc: x@y.org'` is refused, as the web form refuses it."""
    result = runner.invoke(
        args=["diary", "enroll", "--site", "NIH-CC", "--sequence", "AB", "--email", "a@b.org\r\nBcc: x@y.org"]
    )
    assert result.exit_code != 0 and "cannot be used for reminders" in result.output
    from diary.models import Participant

    assert db.session.scalar(select(func.count()).select_from(Participant)) == 0


# --- Backups you can restore -------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_a_backup_restores_into_a_fresh_instance_with_the_same_export(app, runner, study, tmp_path):
    """backup, restore-check, then a fresh instance on the copy exports byte-identical tables."""
    from diary.demo import build_demo
    from diary.exports import write_bundle
    from diary.study.trial import require_study

    from .conftest import make_app

    now = now_utc()
    build_demo(now=now - timedelta(minutes=5))
    db.session.commit()
    copy = tmp_path / "backup.sqlite"
    assert runner.invoke(args=["diary", "backup", str(copy)]).exit_code == 0
    checked = runner.invoke(args=["diary", "restore-check", str(copy)])
    assert checked.exit_code == 0 and "integrity: ok" in checked.output and "found unchanged" in checked.output
    # The true allocation: a dummy one would be drawn afresh in each copy.
    live = write_bundle(tmp_path / "live", study=require_study(), now=now, true_allocation=True)
    restored_app = make_app(f"sqlite:///{copy}")
    with restored_app.app_context():
        restored = write_bundle(tmp_path / "restored", study=require_study(), now=now, true_allocation=True)
        db.engine.dispose()
    assert {name: entry["sha256"] for name, entry in restored["files"].items()} == {
        name: entry["sha256"] for name, entry in live["files"].items()
    }


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_restore_check_refuses_a_damaged_or_stale_backup(app, runner, study, tmp_path):
    """A file that is not a database, or a backup whose last audit event the live one lacks, fails."""
    damaged = tmp_path / "damaged.sqlite"
    damaged.write_bytes(b"SQLite format 3\x00" + b"\x00" * 100 + b"garbage" * 500)
    assert runner.invoke(args=["diary", "restore-check", str(damaged)]).exit_code != 0
    foreign = tmp_path / "foreign.sqlite"
    other = __import__("tests.conftest", fromlist=["make_app"]).make_app(f"sqlite:///{foreign}")
    with other.app_context():
        from diary.governance.audit import record
        from diary.study.trial import ensure_study

        db.create_all()
        ensure_study()
        for _number in range(3):
            record(actor="elsewhere", action="unblind", entity="study", entity_id=None, now=now_utc())
        db.session.commit()
        db.engine.dispose()
    stale = runner.invoke(args=["diary", "restore-check", str(foreign)])
    assert stale.exit_code != 0 and "NOT in the live database" in stale.output
