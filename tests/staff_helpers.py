"""Staff accounts for tests: hashed with cheap Argon2 parameters so setup stays fast."""
from __future__ import annotations

from argon2 import PasswordHasher
from sqlalchemy import select

from diary.extensions import db
from diary.models import StaffUser, now_utc

from .participant_helpers import csrf_from

PASSWORD = "correct horse battery"
_cheap = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)


def make_staff(role: str, email: str | None = None) -> StaffUser:
    email = email or f"{role}@site.test"
    user = db.session.scalar(select(StaffUser).where(StaffUser.email == email))
    if user is None:
        user = StaffUser(email=email, password_hash=_cheap.hash(PASSWORD), role=role, active=True,
                         created_at=now_utc(), session_generation=0)
        db.session.add(user)
        db.session.commit()
    return user


def login_as(client, role: str, email: str | None = None):
    user = make_staff(role, email)
    page = client.get("/staff/login")
    response = client.post("/staff/login", data={"email": user.email, "password": PASSWORD,
                                                 "csrf_token": csrf_from(page.get_data(as_text=True))})
    assert response.status_code == 302, response.get_data(as_text=True)[:500]
    return user


def any_csrf(client) -> str:
    """A valid CSRF token for the client's session, from the login page."""
    return csrf_from(client.get("/staff/login").get_data(as_text=True))
