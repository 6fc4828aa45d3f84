"""Who is asking: participants (personal link, PIN, remembered phone) and staff (roles).

Counters for wrong PINs live in the database, so a lockout holds across server processes.
"""
from __future__ import annotations

import re
from datetime import datetime, timedelta

from flask import current_app, request
from itsdangerous import BadSignature, URLSafeTimedSerializer
from sqlalchemy import select, update

from . import audit
from .enrolment import hash_token
from .errors import Refused
from .extensions import db
from .models import Participant
from .passwords import hash_secret, verify_secret

PARTICIPANT_COOKIE = "diary_phone"
_PIN = re.compile(r"^[0-9]{4,6}$", re.ASCII)


def participant_by_token(token: str) -> Participant | None:
    """The participant a personal link belongs to, or None for an unknown or revoked link."""
    if not token or len(token) > 200:
        return None
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
                        samesite="Lax", secure=request.is_secure, path="/p")


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
