"""Staff accounts: creation and role changes (login itself lives in the coordinator pages)."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select

from . import audit
from .errors import Refused
from .extensions import db
from .models import STAFF_ROLES, StaffUser
from .passwords import MIN_PASSWORD_LENGTH, hash_secret


def normalise_email(email: str) -> str:
    return email.strip().lower()


def create_user(email: str, password: str, role: str, *, actor: str, now: datetime) -> StaffUser:
    email = normalise_email(email)
    if "@" not in email or len(email) > 254:
        raise Refused(f"'{email}' is not an email address.")
    if role not in STAFF_ROLES:
        raise Refused(f"Unknown role '{role}'; use one of {', '.join(STAFF_ROLES)}.")
    if len(password) < MIN_PASSWORD_LENGTH:
        raise Refused(f"The password must have at least {MIN_PASSWORD_LENGTH} characters.")
    if db.session.scalar(select(func.count()).select_from(StaffUser).where(StaffUser.email == email)):
        raise Refused(f"A user with email {email} already exists.", status=409)
    user = StaffUser(email=email, password_hash=hash_secret(password), role=role, active=True,
                     created_at=now, session_generation=0)
    db.session.add(user)
    db.session.flush()
    audit.record(actor=actor, action="create_user", entity="staff_user", entity_id=user.id,
                 field="role", new=role, now=now)
    return user
