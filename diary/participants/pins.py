"""Participants' PINs: choosing one, checking it with a lockout counted in the database, and the
coordinator's reset. A PIN is stored only as an Argon2id hash."""

from __future__ import annotations

import re
from datetime import datetime, timedelta

from flask_babel import gettext as _
from sqlalchemy import update

from ..errors import Refused
from ..extensions import db
from ..governance import audit
from ..governance.passwords import hash_secret, verify_secret
from ..models import Participant
from ..settings import setting
from ..vocabulary import AuditAction

_PIN = re.compile(r"^[0-9]{4,6}$", re.ASCII)


def check_pin_format(pin: str) -> str:
    if not _PIN.match(pin or ""):
        raise Refused(_("Your PIN must be 4 to 6 digits (numbers only)."))
    if is_trivial(pin):
        raise Refused(_("That PIN is too easy to guess (all one digit, or digits in a row). Please choose another."))
    return pin


def is_trivial(pin: str) -> bool:
    """All one digit (1111), or a straight run up or down (1234, 9876, 012345)."""
    digits = [int(c) for c in pin]
    steps = {b - a for a, b in zip(digits, digits[1:])}
    return len(steps) == 1 and steps <= {-1, 0, 1}


def sign_out(participant: Participant, *, now: datetime) -> None:
    """End every remembered phone of the participant on the server (not just this cookie)."""
    participant.session_generation = (participant.session_generation or 0) + 1
    audit.record(
        actor=audit.participant_actor(participant),
        action=AuditAction.PARTICIPANT_SIGN_OUT,
        entity="participant",
        entity_id=participant.id,
        participant_id=participant.id,
        now=now,
    )


def set_pin(participant: Participant, pin: str, confirm: str, *, now: datetime) -> None:
    check_pin_format(pin)
    if pin != confirm:
        raise Refused(_("The two PINs are not the same. Please type the same PIN twice."))
    participant.pin_hash = hash_secret(pin)
    participant.pin_generation = (participant.pin_generation or 0) + 1
    participant.pin_failed_count = 0
    participant.pin_locked_until = None
    audit.record(
        actor=audit.participant_actor(participant),
        action=AuditAction.SET_PIN,
        entity="participant",
        entity_id=participant.id,
        participant_id=participant.id,
        now=now,
    )


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
    db.session.execute(
        update(Participant)
        .where(Participant.id == participant.id)
        .values(pin_failed_count=Participant.pin_failed_count + 1)
    )
    db.session.refresh(participant)
    if participant.pin_failed_count >= setting("PIN_MAX_ATTEMPTS"):
        participant.pin_failed_count = 0
        participant.pin_locked_until = now + timedelta(minutes=setting("PIN_LOCK_MINUTES"))
        audit.record(
            actor=audit.participant_actor(participant),
            action=AuditAction.PIN_LOCKED,
            entity="participant",
            entity_id=participant.id,
            participant_id=participant.id,
            now=now,
        )
    return False


def reset_pin(participant: Participant, *, actor: str, now: datetime, reason: str | None = None) -> None:
    """The coordinator clears the PIN; remembered phones must set a new one via the link."""
    participant.pin_hash = None
    participant.pin_generation = (participant.pin_generation or 0) + 1
    participant.pin_failed_count = 0
    participant.pin_locked_until = None
    audit.record(
        actor=actor,
        action=AuditAction.RESET_PIN,
        entity="participant",
        entity_id=participant.id,
        participant_id=participant.id,
        now=now,
        reason=(reason or "").strip() or None,
    )
