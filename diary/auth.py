"""Who is asking: participants (personal link, PIN, remembered phone) and staff (roles).

Counters for wrong PINs live in the database, so a lockout holds across server processes.
"""
from __future__ import annotations

import re
from datetime import datetime, timedelta
from functools import wraps

from flask import abort, current_app, g, redirect, request, session, url_for
from itsdangerous import BadSignature, URLSafeTimedSerializer
from sqlalchemy import select, update

from . import audit
from .enrolment import hash_token
from .errors import Refused
from .extensions import db
from .models import LoginThrottle, Participant, StaffUser, now_utc
from .passwords import hash_secret, verify_secret
from .staff import normalise_email

PARTICIPANT_COOKIE = "diary_phone"
_PIN = re.compile(r"^[0-9]{4,6}$", re.ASCII)


def _link_serializer(purpose: str) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(current_app.config["SECRET_KEY"], salt=f"diary-{purpose}-link")


def signed_link_token(participant: Participant, purpose: str = "reminder") -> str:
    """A link token derived from what is stored: reminders and the calendar feed need the
    participant's link, but only a hash of the personal token is kept. It names the current
    link, so reissuing or revoking the personal link ends it too."""
    return _link_serializer(purpose).dumps({"p": participant.id, "l": (participant.link_token_hash or "")[:16]})


def participant_by_signed_token(token: str, purpose: str = "reminder") -> Participant | None:
    try:
        data = _link_serializer(purpose).loads(token)
        participant = db.session.get(Participant, int(data["p"]))
    except (BadSignature, KeyError, TypeError, ValueError):
        return None
    if participant is None or (participant.link_token_hash or "")[:16] != data.get("l"):
        return None
    return participant


def participant_by_token(token: str) -> Participant | None:
    """The participant a personal link (or a reminder's signed link) belongs to, or None for an
    unknown or revoked link."""
    if not token or len(token) > 300:
        return None
    if "." in token:  # personal tokens are URL-safe base64 without dots; signed ones have dots
        participant = participant_by_signed_token(token)
    else:
        participant = db.session.scalar(
            select(Participant).where(Participant.link_token_hash == hash_token(token)))
    if participant is None or participant.link_revoked_at is not None:
        return None
    return participant


def check_pin_format(pin: str) -> str:
    if not _PIN.match(pin or ""):
        raise Refused("Your PIN must be 4 to 6 digits (numbers only).")
    return pin


def set_pin(participant: Participant, pin: str, confirm: str, *, now: datetime) -> None:
    check_pin_format(pin)
    if pin != confirm:
        raise Refused("The two PINs are not the same. Please type the same PIN twice.")
    participant.pin_hash = hash_secret(pin)
    participant.pin_generation = (participant.pin_generation or 0) + 1
    participant.pin_failed_count = 0
    participant.pin_locked_until = None
    audit.record(actor=audit.participant_actor(participant), action="set_pin", entity="participant",
                 entity_id=participant.id, participant_id=participant.id, now=now)


def locked_minutes(participant: Participant, now: datetime) -> int:
    """Minutes left on a PIN lockout, 0 when not locked."""
    until = participant.pin_locked_until
    if until is None or until <= now:
        return 0
    return max(1, int((until - now).total_seconds() // 60) + (1 if (until - now).seconds % 60 else 0))


def check_pin(participant: Participant, pin: str, *, now: datetime) -> bool:
    """Verify a PIN; count failures in the database and lock after too many."""
    if locked_minutes(participant, now):
        return False
    if verify_secret(participant.pin_hash, pin or ""):
        participant.pin_failed_count = 0
        participant.pin_locked_until = None
        return True
    # An atomic increment: two wrong PINs at once from two processes both count.
    db.session.execute(update(Participant).where(Participant.id == participant.id)
                       .values(pin_failed_count=Participant.pin_failed_count + 1))
    db.session.refresh(participant)
    if participant.pin_failed_count >= current_app.config["PIN_MAX_ATTEMPTS"]:
        participant.pin_failed_count = 0
        participant.pin_locked_until = now + timedelta(minutes=current_app.config["PIN_LOCK_MINUTES"])
        audit.record(actor=audit.participant_actor(participant), action="pin_locked",
                     entity="participant", entity_id=participant.id,
                     participant_id=participant.id, now=now)
    return False


def reset_pin(participant: Participant, *, actor: str, now: datetime) -> None:
    """The coordinator clears the PIN; remembered phones must set a new one via the link."""
    participant.pin_hash = None
    participant.pin_generation = (participant.pin_generation or 0) + 1
    participant.pin_failed_count = 0
    participant.pin_locked_until = None
    audit.record(actor=actor, action="reset_pin", entity="participant", entity_id=participant.id,
                 participant_id=participant.id, now=now)


def _serializer() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(current_app.config["SECRET_KEY"], salt="diary-participant-phone")


def remember_phone(response, participant: Participant) -> None:
    """A signed, HttpOnly, SameSite cookie that keeps this phone signed in for N days.

    It names the PIN generation and the link, so a PIN reset or a reissued link ends it.
    """
    days = current_app.config["PARTICIPANT_REMEMBER_DAYS"]
    value = _serializer().dumps({"p": participant.id, "g": participant.pin_generation,
                                 "l": (participant.link_token_hash or "")[:16]})
    response.set_cookie(PARTICIPANT_COOKIE, value, max_age=max(1, int(days * 86400)), httponly=True,
                        samesite="Lax", path="/p",
                        secure=request.is_secure or current_app.config["BASE_URL"].startswith("https://"))


def forget_phone(response) -> None:
    response.delete_cookie(PARTICIPANT_COOKIE, path="/p")


def remembered_participant() -> Participant | None:
    raw = request.cookies.get(PARTICIPANT_COOKIE)
    if not raw:
        return None
    max_age = current_app.config["PARTICIPANT_REMEMBER_DAYS"] * 86400
    try:
        data = _serializer().loads(raw, max_age=max_age)
        participant = db.session.get(Participant, int(data["p"]))
    except (BadSignature, KeyError, TypeError, ValueError):
        return None
    if (participant is None or participant.pin_hash is None
            or participant.pin_generation != data.get("g")
            or participant.link_revoked_at is not None
            or (participant.link_token_hash or "")[:16] != data.get("l")):
        return None
    return participant


# --- Staff -------------------------------------------------------------------------------------
# Sessions hold the staff id, the account's session generation and the last activity. Logging
# out bumps the generation, so a copy of the old cookie no longer works anywhere.


ACCOUNT_LIMIT, ADDRESS_LIMIT = 5, 20  # failures within the window before a lock
THROTTLE_WINDOW = timedelta(minutes=15)
THROTTLE_LOCK = timedelta(minutes=15)


class LoginRefused(Refused):
    pass


def _throttle_rows(keys: list[str]) -> list[LoginThrottle]:
    rows = {row.key: row for row in db.session.scalars(select(LoginThrottle).where(LoginThrottle.key.in_(keys)))}
    result = []
    for key in keys:
        if key not in rows:
            rows[key] = LoginThrottle(key=key, failures=0)
            db.session.add(rows[key])
        result.append(rows[key])
    return result


def _throttle_keys(email: str, address: str) -> list[str]:
    return [f"account:{normalise_email(email)[:250]}", f"address:{address or 'unknown'}"]


def login_staff(email: str, password: str, *, address: str, now: datetime) -> StaffUser:
    """Check a staff login against the throttle, then the password. Raises LoginRefused.

    Failures count per account and per address; past the limits, logins are refused for a
    while even with the right password, so guessing is slow from one address or at one account.
    """
    account, by_address = _throttle_rows(_throttle_keys(email, address))
    for row in (account, by_address):
        if row.locked_until is not None and row.locked_until > now:
            minutes = int((row.locked_until - now).total_seconds() // 60) + 1
            raise LoginRefused(f"Too many failed sign-ins. Please wait {minutes} minutes and try again.",
                               status=429)
    user = db.session.scalar(select(StaffUser).where(StaffUser.email == normalise_email(email)))
    if user is not None and user.active and verify_secret(user.password_hash, password):
        account.failures, account.first_failure_at, account.locked_until = 0, None, None
        return user
    for row, limit in ((account, ACCOUNT_LIMIT), (by_address, ADDRESS_LIMIT)):
        if row.first_failure_at is None or now - row.first_failure_at > THROTTLE_WINDOW:
            row.failures, row.first_failure_at = 0, now
        row.failures += 1
        if row.failures >= limit:
            row.locked_until = now + THROTTLE_LOCK
            row.failures, row.first_failure_at = 0, None
    raise LoginRefused("The email or password is not right.", status=401)


def start_staff_session(user: StaffUser, now: datetime) -> None:
    session.clear()
    session["staff_id"] = user.id
    session["staff_generation"] = user.session_generation
    session["staff_seen"] = now.timestamp()


def end_staff_session(user: StaffUser | None) -> None:
    if user is not None:
        user.session_generation = (user.session_generation or 0) + 1
    session.clear()


def current_staff(now: datetime) -> StaffUser | None:
    """The signed-in staff member, or None if absent, logged out elsewhere, or idle too long."""
    staff_id = session.get("staff_id")
    if staff_id is None:
        return None
    user = db.session.get(StaffUser, staff_id)
    idle = timedelta(minutes=current_app.config["STAFF_IDLE_MINUTES"])
    seen = session.get("staff_seen", 0)
    if (user is None or not user.active or user.session_generation != session.get("staff_generation")
            or now.timestamp() - seen > idle.total_seconds()):
        session.clear()
        return None
    session["staff_seen"] = now.timestamp()
    return user


def roles_required(*roles: str):
    """Only these staff roles may use the view: others get 403, anonymous visitors the login page."""

    def decorator(view):
        @wraps(view)
        def wrapped(*args, **kwargs):
            user = current_staff(now_utc())
            if user is None:
                return redirect(url_for("staff.login", next=request.full_path if request.method == "GET" else None))
            if user.role not in roles:
                abort(403)
            g.staff = user
            return view(*args, **kwargs)

        wrapped.allowed_roles = roles
        return wrapped

    return decorator
