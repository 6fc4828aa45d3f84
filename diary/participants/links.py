"""Participants' links: the personal link (only its hash is stored) and signed links derived from
it, used by reminders and the calendar feed as well as by the pages."""

from __future__ import annotations

import hashlib

from itsdangerous import BadSignature, URLSafeTimedSerializer
from sqlalchemy import select

from ..extensions import db
from ..models import Participant
from ..settings import setting


def hash_token(token: str) -> str:
    # The token carries 256 random bits, so a fast hash is enough; only the hash is stored.
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def base_url() -> str:
    return setting("BASE_URL").rstrip("/")


def participant_link(token: str) -> str:
    return f"{base_url()}/p/{token}"


def _link_serializer(purpose: str) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(setting("SECRET_KEY"), salt=f"diary-{purpose}-link")


def signed_link_token(participant: Participant, purpose: str = "reminder", reminder_id: int | None = None) -> str:
    """A link token derived from what is stored: reminders and the calendar feed need the
    participant's link, but only a hash of the personal token is kept. It names the current
    link, so reissuing or revoking the personal link ends it too; a reminder's link also names
    the reminder, so following it is logged as opened."""
    data = {"p": participant.id, "l": (participant.link_token_hash or "")[:16]}
    if reminder_id is not None:
        data["r"] = reminder_id
    return _link_serializer(purpose).dumps(data)


def reminder_link(participant: Participant, reminder_id: int | None = None) -> str:
    """The link a reminder carries: it opens the participant's diary (PIN still asked)."""
    return participant_link(signed_link_token(participant, reminder_id=reminder_id))


def reminder_of(token: str) -> int | None:
    """The reminder a signed link was sent in, if any (its signature already checked)."""
    if "." not in (token or ""):
        return None
    try:
        value = _link_serializer("reminder").loads(token).get("r")
    except (BadSignature, AttributeError):
        return None
    return value if isinstance(value, int) else None


def participant_by_signed_token(token: str, purpose: str = "reminder") -> Participant | None:
    try:
        data = _link_serializer(purpose).loads(token)
        participant = db.session.get(Participant, int(data["p"]))
    except (BadSignature, KeyError, TypeError, ValueError, OverflowError):
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
        participant = db.session.scalar(select(Participant).where(Participant.link_token_hash == hash_token(token)))
    if participant is None or participant.link_revoked_at is not None:
        return None
    return participant
