"""Staff accounts: creation, sign-in checks with a throttle counted in the database, password
changes, and role or access changes by an admin. Each writes its own audit event."""

from __future__ import annotations

from datetime import datetime, timedelta
from functools import lru_cache
from pathlib import Path

from sqlalchemy import case, func, or_, select, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError

from ..errors import Refused
from ..extensions import db
from ..models import LoginThrottle, StaffUser
from ..vocabulary import AuditAction, Role
from . import audit
from .passwords import MIN_PASSWORD_LENGTH, hash_secret, verify_secret

# Roles that must sign in with a second factor whatever the installation says.
SECOND_FACTOR_ROLES = (Role.ADMIN, Role.UNBLINDED, Role.EMERGENCY, Role.INVESTIGATOR)
ACCOUNT_LIMIT, ADDRESS_LIMIT = 5, 20  # failures within the window before a lock
THROTTLE_WINDOW = timedelta(minutes=15)
THROTTLE_LOCK = timedelta(minutes=15)


class LoginRefused(Refused):
    pass


def normalise_email(email: str) -> str:
    return email.strip().lower()


COMMON_PASSWORDS_FILE = Path(__file__).resolve().parent.parent / "data" / "common-passwords.txt"


@lru_cache(maxsize=1)
def common_passwords() -> frozenset[str]:
    lines = COMMON_PASSWORDS_FILE.read_text(encoding="utf-8").splitlines()
    return frozenset(line.strip().lower() for line in lines if line.strip() and not line.startswith("#"))


def check_password_rules(password: str) -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise Refused(f"The password must have at least {MIN_PASSWORD_LENGTH} characters.", field="password")
    if password.lower() in common_passwords() or len(set(password)) <= 2:
        raise Refused("That password is one of the most common ones; please choose another.", field="password")


def create_user(
    email: str,
    password: str,
    role: str,
    *,
    actor: str,
    now: datetime,
    temporary: bool = False,
    site: str | None = None,
) -> StaffUser:
    """A staff account. ``temporary``: the password was chosen by someone else (an admin), so
    the person must set their own at first sign-in. ``site``: the one site an investigator
    controls (None: every site)."""
    email = normalise_email(email)
    if "@" not in email or len(email) > 254:
        raise Refused(f"'{email}' is not an email address.")
    if role not in Role.__members__.values():
        raise Refused(f"Unknown role '{role}'; use one of {', '.join(Role)}.")
    check_password_rules(password)
    if db.session.scalar(select(func.count()).select_from(StaffUser).where(StaffUser.email == email)):
        raise Refused(f"A user with email {email} already exists.", status=409)
    user = StaffUser(
        email=email,
        password_hash=hash_secret(password),
        role=role,
        active=True,
        created_at=now,
        session_generation=0,
        must_change_password=temporary,
        site=(site or "").strip() or None,
    )
    try:
        with db.session.begin_nested():  # the unique email decides a race the check above lost
            db.session.add(user)
    except IntegrityError:
        raise Refused(f"A user with email {email} already exists.", status=409) from None
    audit.record(
        actor=actor,
        action=AuditAction.CREATE_USER,
        entity="staff_user",
        entity_id=user.id,
        field="role",
        new=role,
        now=now,
    )
    return user


def change_password(user: StaffUser, current: str, new: str, *, now: datetime) -> None:
    """Change one's own password; the session generation moves on, ending other sessions."""
    if not verify_secret(user.password_hash, current):
        raise Refused("The current password is not right.")
    check_password_rules(new)
    if verify_secret(user.password_hash, new):
        raise Refused("The new password must differ from the current one.", field="password")
    user.password_hash = hash_secret(new)
    user.must_change_password = False
    user.session_generation = (user.session_generation or 0) + 1
    audit.record(
        actor=audit.staff_actor(user),
        action=AuditAction.CHANGE_PASSWORD,
        entity="staff_user",
        entity_id=user.id,
        now=now,
    )


def change_user(
    user: StaffUser, *, role: str, active: bool, by: StaffUser, now: datetime, reason: str | None = None
) -> bool:
    """An admin changes a user's role or access. Returns whether anything changed.

    Admins cannot remove their own admin access (the study would be left with no admin).
    Either change ends the user's sessions, so it applies from their next sign-in.
    """
    if role not in Role.__members__.values():
        raise Refused(f"Unknown role '{role}'.")
    if user.id == by.id and (role != Role.ADMIN or not active):
        raise Refused("You cannot remove your own admin access.", status=409)
    reason = (reason or "").strip() or None
    if (role != user.role or active != user.active) and not reason:
        raise Refused("Changing a role or access needs a reason.", field="reason")
    who, changed = audit.staff_actor(by), False
    if role != user.role:
        audit.record(
            actor=who,
            action=AuditAction.CHANGE_ROLE,
            entity="staff_user",
            entity_id=user.id,
            field="role",
            old=user.role,
            new=role,
            now=now,
            reason=reason,
        )
        user.role, changed = role, True
    if active != user.active:
        audit.record(
            actor=who,
            action=AuditAction.CHANGE_ACTIVE,
            entity="staff_user",
            entity_id=user.id,
            field="active",
            old=user.active,
            new=active,
            now=now,
            reason=reason,
        )
        user.active, changed = active, True
    if changed:
        user.session_generation = (user.session_generation or 0) + 1
    return changed


# --- Sign-in ---------------------------------------------------------------------------------


def _throttle_rows(keys: list[str]) -> list[LoginThrottle]:
    """The throttle rows of ``keys``, created if new by an upsert, so that two first failures at
    once never collide on the unique key."""
    insert = sqlite_insert if db.engine.dialect.name == "sqlite" else postgresql_insert
    db.session.execute(
        insert(LoginThrottle).on_conflict_do_nothing(index_elements=["key"]),
        [{"key": key, "failures": 0} for key in keys],
    )
    rows = {
        row.key: row
        for row in db.session.scalars(
            select(LoginThrottle).where(LoginThrottle.key.in_(keys)).execution_options(populate_existing=True)
        )
    }
    return [rows[key] for key in keys]


def _count_failure(key: str, limit: int | None, now: datetime) -> int:
    """One more failure for ``key``, as one atomic statement: concurrent failures all count.

    A failure after the window has passed starts a new count; reaching the limit locks the key.
    """
    fresh = or_(LoginThrottle.first_failure_at.is_(None), LoginThrottle.first_failure_at < now - THROTTLE_WINDOW)
    failures = db.session.execute(
        update(LoginThrottle)
        .where(LoginThrottle.key == key)
        .values(
            failures=case((fresh, 1), else_=LoginThrottle.failures + 1),
            first_failure_at=case((fresh, now), else_=LoginThrottle.first_failure_at),
        )
        .returning(LoginThrottle.failures)
    ).scalar_one()
    if limit is not None and failures >= limit:
        db.session.execute(
            update(LoginThrottle)
            .where(LoginThrottle.key == key, LoginThrottle.failures >= limit)
            .values(locked_until=now + THROTTLE_LOCK, failures=0, first_failure_at=None)
        )
    return failures


def address_delay(address: str, now: datetime) -> float:
    """Seconds to wait before answering a failed sign-in from ``address``: none up to the limit,
    then a quarter second more per failure, at most three (a tarpit, not a lock)."""
    row = db.session.scalar(select(LoginThrottle).where(LoginThrottle.key == f"address:{address or 'unknown'}"))
    if row is None or row.first_failure_at is None or row.first_failure_at < now - THROTTLE_WINDOW:
        return 0.0
    return min(3.0, max(0, row.failures - ADDRESS_LIMIT) * 0.25)


def _audit_attempt(email: str, address: str, now: datetime, why: str) -> None:
    audit.record(
        actor=f"sign-in:{normalise_email(email)[:250]}",
        action=AuditAction.SIGN_IN_FAILED,
        entity="staff_user",
        entity_id=None,
        now=now,
        new=f"from {address or 'unknown address'}",
        reason=why,
    )


def record_sign_in(user: StaffUser, *, address: str, now: datetime, second_factor: str | None = None) -> None:
    audit.record(
        actor=audit.staff_actor(user),
        action=AuditAction.SIGN_IN,
        entity="staff_user",
        entity_id=user.id,
        now=now,
        new=f"from {address or 'unknown address'}" + (f", second factor: {second_factor}" if second_factor else ""),
    )


def record_sign_out(user: StaffUser, *, now: datetime, why: str = "signed out") -> None:
    action = AuditAction.SIGN_OUT if why == "signed out" else AuditAction.SESSION_EXPIRED
    audit.record(
        actor=audit.staff_actor(user), action=action, entity="staff_user", entity_id=user.id, now=now, reason=why
    )


def second_factor_required(user: StaffUser, require_for_all: bool) -> bool:
    """Admin, unblinded and emergency roles (who can unblind, break a code or export identities)
    always need a second factor; every role does when the installation says so (DIARY_REQUIRE_2FA)."""
    return require_for_all or user.role in SECOND_FACTOR_ROLES


def _throttle_keys(email: str, address: str) -> list[str]:
    return [f"account:{normalise_email(email)[:250]}", f"address:{address or 'unknown'}"]


# Checked when the email names no account, so that an unknown email costs the same Argon2 work
# as a known one: answer times do not tell which accounts exist.
_DUMMY_HASH = hash_secret("no account has this password " + "x" * 16)


def reserve_attempt(key: str, limit: int, now: datetime) -> datetime | None:
    """Count an attempt for ``key`` before checking it, in one conditional statement, so that of
    many attempts at once no more than ``limit`` are ever checked (a read of the counter first
    admitted 11 of 20 on PostgreSQL). Returns None when the attempt may be checked, or the time
    the key is locked until (this attempt having reached the limit, or an earlier lock).

    A right answer then clears the count (``clear_attempts``); a wrong one is already counted.
    """
    fresh = or_(LoginThrottle.first_failure_at.is_(None), LoginThrottle.first_failure_at < now - THROTTLE_WINDOW)
    counted = db.session.execute(
        update(LoginThrottle)
        .where(LoginThrottle.key == key, or_(LoginThrottle.locked_until.is_(None), LoginThrottle.locked_until <= now))
        .values(
            failures=case((fresh, 1), else_=LoginThrottle.failures + 1),
            first_failure_at=case((fresh, now), else_=LoginThrottle.first_failure_at),
            locked_until=None,
        )
        .returning(LoginThrottle.failures)
    ).scalar_one_or_none()
    if counted is None:
        return db.session.scalar(select(LoginThrottle.locked_until).where(LoginThrottle.key == key))
    if counted > limit:
        until = now + THROTTLE_LOCK
        db.session.execute(
            update(LoginThrottle)
            .where(LoginThrottle.key == key)
            .values(locked_until=until, failures=0, first_failure_at=None)
        )
        return until
    return None


def clear_attempts(key: str) -> None:
    db.session.execute(
        update(LoginThrottle)
        .where(LoginThrottle.key == key)
        .values(failures=0, first_failure_at=None, locked_until=None)
    )


def login_staff(email: str, password: str, *, address: str, now: datetime) -> StaffUser:
    """Check a staff login against the throttle, then the password. Raises LoginRefused.

    Failures count per account and per client address. An account with too many failures is
    locked for a while, even for the right password, so guessing at one account is slow: the
    attempt is counted before the password is checked (``reserve_attempt``), and that count is
    committed at once, so the slow Argon2 check runs in no transaction (on SQLite, none holding
    the write lock). An address with too many failures is never locked out (behind a proxy it
    may be everyone's): its further failures are answered slowly instead (``address_delay``),
    and a right password still signs in. Every attempt, right or wrong, is audited.
    """
    account_key, address_key = _throttle_keys(email, address)
    _throttle_rows([account_key, address_key])
    locked_until = reserve_attempt(account_key, ACCOUNT_LIMIT, now)
    if locked_until is not None:
        minutes = int((locked_until - now).total_seconds() // 60) + 1
        _audit_attempt(email, address, now, "account locked")
        raise LoginRefused(f"Too many failed sign-ins. Please wait {minutes} minutes and try again.", status=429)
    user = db.session.scalar(select(StaffUser).where(StaffUser.email == normalise_email(email)))
    stored_hash = user.password_hash if user is not None else _DUMMY_HASH
    db.session.commit()  # the attempt is counted for every other request before the slow check
    valid = verify_secret(stored_hash, password)
    if user is not None and user.active and valid:
        clear_attempts(account_key)
        return user
    _count_failure(address_key, None, now)
    _audit_attempt(
        email, address, now, "wrong email or password" if user is None or user.active else "account deactivated"
    )
    raise LoginRefused("The email or password is not right.", status=401)
