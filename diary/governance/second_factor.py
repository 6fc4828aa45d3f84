"""The staff's second factor: TOTP (RFC 6238, via pyotp) and one-time recovery codes.

The TOTP secret is kept to check codes; recovery codes only as keyed hashes. Wrong codes are
throttled like passwords (per account, in the database), and every step is audited.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import datetime

import pyotp
from sqlalchemy import select, update

from ..errors import Refused
from ..extensions import db
from ..models import RecoveryCode, StaffUser
from ..settings import setting
from ..vocabulary import AuditAction
from . import audit
from .staff import ACCOUNT_LIMIT, _throttle_rows, clear_attempts, reserve_attempt

RECOVERY_CODES = 10
ISSUER = "diary"


def new_secret() -> str:
    return pyotp.random_base32()


def provisioning_uri(user: StaffUser, secret: str) -> str:
    """What the authenticator app scans (as a QR code) to add the account."""
    study_name = setting("STUDY_NAME", None)
    issuer = f"{ISSUER} ({study_name[:40]})" if study_name else ISSUER
    return pyotp.TOTP(secret).provisioning_uri(name=user.email, issuer_name=issuer)


def _valid_totp(secret: str, code: str, now: datetime) -> bool:
    # One step either side allows for a phone clock a little off, as RFC 6238 suggests.
    return bool(secret) and pyotp.TOTP(secret).verify(code, for_time=now, valid_window=1)


def _recovery_hash(code: str) -> str:
    """Keyed hash of a recovery code as typed: spaces and dashes anywhere, either case."""
    key = setting("SECRET_KEY").encode("utf-8")
    plain = "".join(code.split()).replace("-", "").lower()
    return hmac.new(key, plain.encode("utf-8"), hashlib.sha256).hexdigest()


STEP_SECONDS = 30


def matching_step(secret: str, code: str, now: datetime) -> int | None:
    """The 30-second step (RFC 6238) whose code ``code`` is, one step either side of ``now`` for a
    phone clock a little off; None if none."""
    if not secret or not code:
        return None
    totp = pyotp.TOTP(secret)
    current = int(now.timestamp()) // STEP_SECONDS
    for step in (current, current - 1, current + 1):
        if hmac.compare_digest(totp.at(step * STEP_SECONDS), code):
            return step
    return None


def use_step(user: StaffUser, step: int) -> bool:
    """Take the step for this account, once: a conditional update, so a code that has signed in
    (here, or in a request at the same moment) never signs in again."""
    taken = db.session.execute(
        update(StaffUser)
        .where(StaffUser.id == user.id, (StaffUser.totp_last_step.is_(None)) | (StaffUser.totp_last_step < step))
        .values(totp_last_step=step)
        .execution_options(synchronize_session=False)
    )
    return taken.rowcount == 1


def enable(user: StaffUser, secret: str, code: str, *, now: datetime) -> list[str]:
    """Turn the second factor on once the person shows a code from their app; returns the
    recovery codes, which are shown once and stored only hashed."""
    if not _valid_totp(secret, (code or "").strip(), now):
        audit.record(
            actor=audit.staff_actor(user),
            action=AuditAction.SECOND_FACTOR_SETUP_FAILED,
            entity="staff_user",
            entity_id=user.id,
            now=now,
        )
        raise Refused("That code does not match. Check the time on your phone and type the current code.", field="code")
    user.totp_secret, user.totp_enabled_at = secret, now
    db.session.execute(
        update(RecoveryCode)
        .where(RecoveryCode.staff_user_id == user.id, RecoveryCode.used_at.is_(None))
        .values(used_at=now)
    )
    codes = ["-".join(secrets.token_hex(3) for _ in range(2)) for _ in range(RECOVERY_CODES)]
    for recovery in codes:
        db.session.add(RecoveryCode(staff_user_id=user.id, code_hash=_recovery_hash(recovery), created_at=now))
    audit.record(
        actor=audit.staff_actor(user),
        action=AuditAction.SECOND_FACTOR_ENABLED,
        entity="staff_user",
        entity_id=user.id,
        now=now,
        new=f"TOTP, {RECOVERY_CODES} recovery codes",
    )
    return codes


def check(user: StaffUser, code: str, *, now: datetime) -> str:
    """Check a sign-in's second step: a TOTP code or an unused recovery code (used up here).
    Returns which it was; raises Refused (throttled like passwords)."""
    key = f"second-factor:{user.id}"
    _throttle_rows([key])
    if reserve_attempt(key, ACCOUNT_LIMIT, now) is not None:
        raise Refused("Too many wrong codes. Please wait 15 minutes and try again.", status=429)
    code = (code or "").strip()
    step = matching_step(user.totp_secret, "".join(code.split()), now)
    if step is not None:
        if not use_step(user, step):
            _audit_failure(user, now, "a code already used")
            raise Refused("That code was already used. Wait for the next one in your app.", status=401, field="code")
        kind = "authenticator code"
    else:
        used = db.session.execute(
            update(RecoveryCode)
            .where(
                RecoveryCode.staff_user_id == user.id,
                RecoveryCode.code_hash == _recovery_hash(code),
                RecoveryCode.used_at.is_(None),
            )
            .values(used_at=now)
        )
        if used.rowcount != 1:
            _audit_failure(user, now)
            raise Refused("That code is not right.", status=401, field="code")
        kind = "recovery code"
        audit.record(
            actor=audit.staff_actor(user),
            action=AuditAction.RECOVERY_CODE_USED,
            entity="staff_user",
            entity_id=user.id,
            now=now,
            new=f"{remaining_recovery_codes(user)} left",
        )
    clear_attempts(key)
    return kind


def remaining_recovery_codes(user: StaffUser) -> int:
    return len(
        db.session.scalars(
            select(RecoveryCode.id).where(RecoveryCode.staff_user_id == user.id, RecoveryCode.used_at.is_(None))
        ).all()
    )


def _audit_failure(user: StaffUser, now: datetime, reason: str | None = None) -> None:
    """A wrong or replayed code (or a signature's wrong password), in the audit trail."""
    audit.record(
        actor=audit.staff_actor(user),
        action=AuditAction.SECOND_FACTOR_FAILED,
        entity="staff_user",
        entity_id=user.id,
        now=now,
        reason=reason,
    )


def reauthenticate(user: StaffUser, password: str, code: str, *, now: datetime) -> None:
    """The two components of an electronic signature (21 CFR 11.200(a)): the signer's password
    and a current code from their authenticator app (a recovery code does not sign). Failures
    are throttled and audited like a sign-in's; the caller commits them before answering."""
    from .passwords import verify_secret

    if user.totp_enabled_at is None or not user.totp_secret:
        raise Refused("Set up your authenticator app first: a signature needs its code.", status=403)
    key = f"second-factor:{user.id}"
    _throttle_rows([key])
    if reserve_attempt(key, ACCOUNT_LIMIT, now) is not None:
        raise Refused("Too many wrong attempts. Please wait 15 minutes and try again.", status=429)
    if not verify_secret(user.password_hash, password or ""):
        _audit_failure(user, now, "a signature's password was not right")
        raise Refused("The password is not right.", status=401, field="password")
    step = matching_step(user.totp_secret, "".join((code or "").split()), now)
    if step is None or not use_step(user, step):
        _audit_failure(user, now, "a signature's code was not right or already used")
        raise Refused("That code is not right, or was already used: type the current one.", status=401, field="code")
    clear_attempts(key)
