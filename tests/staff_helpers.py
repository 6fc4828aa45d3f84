"""Staff accounts for tests: hashed with cheap Argon2 parameters so setup stays fast."""

from __future__ import annotations

from argon2 import PasswordHasher
from sqlalchemy import select

from diary.extensions import db
from diary.models import StaffUser, now_utc

from .participant_helpers import csrf_from

PASSWORD = "correct horse battery"
_cheap = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
# Roles that must use a second factor get this authenticator secret in tests.
TOTP_SECRET = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"
SECOND_FACTOR_ROLES = ("admin", "unblinded", "emergency", "investigator")


def totp_now() -> str:
    import pyotp

    return pyotp.TOTP(TOTP_SECRET).now()


def make_staff(role: str, email: str | None = None) -> StaffUser:
    email = email or f"{role}@site.test"
    user = db.session.scalar(select(StaffUser).where(StaffUser.email == email))
    if user is None:
        second = role in SECOND_FACTOR_ROLES
        user = StaffUser(
            email=email,
            password_hash=_cheap.hash(PASSWORD),
            role=role,
            active=True,
            created_at=now_utc(),
            session_generation=0,
            totp_secret=TOTP_SECRET if second else None,
            totp_enabled_at=now_utc() if second else None,
        )
        db.session.add(user)
        db.session.commit()
    return user


def login_as(client, role: str, email: str | None = None):
    user = make_staff(role, email)
    page = client.get("/staff/login")
    response = client.post(
        "/staff/login",
        data={"email": user.email, "password": PASSWORD, "csrf_token": csrf_from(page.get_data(as_text=True))},
    )
    assert response.status_code == 302, response.get_data(as_text=True)[:500]
    if response.headers["Location"].endswith("/staff/login/code"):
        page = client.get("/staff/login/code")
        response = client.post(
            "/staff/login/code", data={"code": totp_now(), "csrf_token": csrf_from(page.get_data(as_text=True))}
        )
        assert response.status_code == 302, response.get_data(as_text=True)[:500]
    return user


def any_csrf(client) -> str:
    """A valid CSRF token for the client's session, from the login page."""
    return csrf_from(client.get("/staff/login").get_data(as_text=True))
