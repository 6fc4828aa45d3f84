"""The audit trail: append-only events of who changed what, when, from what, to what, and why."""
from __future__ import annotations

from datetime import datetime

from .extensions import db
from .models import AuditEvent


def record(*, actor: str, action: str, entity: str, entity_id: int | None, now: datetime,
           participant_id: int | None = None, field: str | None = None, old=None, new=None,
           reason: str | None = None) -> AuditEvent:
    """Add an audit event to the current transaction (it commits or rolls back with the change)."""
    event = AuditEvent(
        at=now, actor=actor, action=action, entity=entity, entity_id=entity_id,
        participant_id=participant_id, field=field,
        old_value=None if old is None else str(old), new_value=None if new is None else str(new),
        reason=reason)
    db.session.add(event)
    return event


def staff_actor(user) -> str:
    return f"staff:{user.email}"


def participant_actor(participant) -> str:
    return f"participant:{participant.code}"


SYSTEM = "system"
# Events that name the allocation: shown only to the unblinded role.
UNBLINDED_ONLY = ("assign_randomization_slot",)
