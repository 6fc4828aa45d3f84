"""The request side of who is asking: the participant's remembered phone (a signed cookie) and
the staff session, plus the role check every staff view is wrapped in. The rules behind them
(PINs, links, sign-in checks) live in ``pins``, ``links`` and ``staff``."""

from __future__ import annotations

from datetime import datetime, timedelta
from functools import wraps

from flask import abort, current_app, g, redirect, request, session, url_for
from itsdangerous import BadSignature, URLSafeTimedSerializer
from sqlalchemy import bindparam, select
from sqlalchemy.orm import joinedload

from ..extensions import db
from ..governance.staff import record_sign_out, second_factor_required
from ..models import Participant, StaffUser, Study, now_utc

PARTICIPANT_COOKIE = "diary_phone"


def _serializer() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(current_app.config["SECRET_KEY"], salt="diary-participant-phone")


def remember_phone(response, participant: Participant) -> None:
    """A signed, HttpOnly, SameSite cookie that keeps this phone signed in for N days.

    It names the PIN generation and the link, so a PIN reset or a reissued link ends it.
    """
    days = current_app.config["PARTICIPANT_REMEMBER_DAYS"]
    value = _serializer().dumps(
        {
            "p": participant.id,
            "g": participant.pin_generation,
            "s": participant.session_generation or 0,
            "l": (participant.link_token_hash or "")[:16],
        }
    )
    response.set_cookie(
        PARTICIPANT_COOKIE,
        value,
        max_age=max(1, int(days * 86400)),
        httponly=True,
        samesite="Lax",
        path="/p",
        secure=request.is_secure or current_app.config["BASE_URL"].startswith("https://"),
    )


def forget_phone(response) -> None:
    response.delete_cookie(PARTICIPANT_COOKIE, path="/p")


# Built once: every participant request runs one of them. A page names the protocol (its time
# points, "Infusion 2 · Day 3"), so it reads the study and its protocol versions in the same
# statement, two fewer round trips; a submit, which names none, reads the participant alone.
_PARTICIPANT = select(Participant).where(Participant.id == bindparam("id"))
_PARTICIPANT_FOR_PAGE = _PARTICIPANT.options(joinedload(Participant.study).joinedload(Study.protocol_versions))


def remembered_participant(*, for_page: bool = False) -> Participant | None:
    raw = request.cookies.get(PARTICIPANT_COOKIE)
    if not raw:
        return None
    max_age = current_app.config["PARTICIPANT_REMEMBER_DAYS"] * 86400
    try:
        data = _serializer().loads(raw, max_age=max_age)
        participant = (
            db.session.execute(_PARTICIPANT_FOR_PAGE if for_page else _PARTICIPANT, {"id": int(data["p"])})
            .unique()
            .scalar_one_or_none()
        )
    except (BadSignature, KeyError, TypeError, ValueError, OverflowError):
        return None
    if participant is None or not phone_still_holds(participant, data):
        return None
    return participant


def phone_still_holds(participant, claims: dict) -> bool:
    """Whether a phone cookie's ``claims`` still hold for ``participant`` (its phone fields): a
    PIN is set, and neither the PIN, the sign-outs nor the link changed since it was given."""
    return not (
        participant.pin_hash is None
        or participant.pin_generation != claims.get("g")
        or (participant.session_generation or 0) != claims.get("s", 0)
        or participant.link_revoked_at is not None
        or (participant.link_token_hash or "")[:16] != claims.get("l")
    )


# --- Staff -------------------------------------------------------------------------------------
# Sessions hold the staff id, the account's session generation and the last activity. Logging
# out bumps the generation, so a copy of the old cookie no longer works anywhere.


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
    if (
        user is None
        or not user.active
        or user.session_generation != session.get("staff_generation")
        or now.timestamp() - seen > idle.total_seconds()
    ):
        if user is not None and user.session_generation == session.get("staff_generation"):
            # The session ran out (idle, or the account was deactivated): on the record.
            record_sign_out(user, now=now, why="idle timeout" if user.active else "account deactivated")
            db.session.commit()
        session.clear()
        return None
    session["staff_seen"] = now.timestamp()
    return user


def _required_first(user: StaffUser) -> str | None:
    """A page the person must go through before any other: their own password (an account an
    admin created), then the second factor where their role or the installation needs one."""
    if user.must_change_password:
        return "signin.password"
    if user.totp_enabled_at is None and second_factor_required(user, bool(current_app.config.get("REQUIRE_2FA"))):
        return "signin.second_factor_setup"
    return None


def roles_required(*roles: str):
    """Only these staff roles may use the view: others get 403, anonymous visitors the login page."""

    def decorator(view):
        @wraps(view)
        def wrapped(*args, **kwargs):
            user = current_staff(now_utc())
            if user is None:
                return redirect(url_for("signin.login", next=request.full_path if request.method == "GET" else None))
            if user.role not in roles:
                abort(403)
            g.staff = user
            detour = _required_first(user)
            if detour and request.endpoint not in (detour, "signin.logout"):
                return redirect(url_for(detour))
            return view(*args, **kwargs)

        wrapped.allowed_roles = roles
        return wrapped

    return decorator
