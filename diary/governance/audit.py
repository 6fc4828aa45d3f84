"""The audit trail: append-only events of who changed what, when, from what, to what, and why."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import insert

from ..extensions import db
from ..models import AuditEvent
from ..vocabulary import ActorKind, AuditAction


def record(
    *,
    actor: str,
    action: str,
    entity: str,
    entity_id: int | None,
    now: datetime,
    participant_id: int | None = None,
    field: str | None = None,
    old=None,
    new=None,
    reason: str | None = None,
) -> None:
    """Write an audit event in the current transaction (it commits or rolls back with the change).

    One Core INSERT, not an ORM object: every write of the diary makes one, and the unit of
    work's bookkeeping for it cost more than the INSERT itself.
    """
    write(
        row(
            actor=actor,
            action=action,
            entity=entity,
            entity_id=entity_id,
            now=now,
            participant_id=participant_id,
            field=field,
            old=old,
            new=new,
            reason=reason,
        )
    )


def write(event: dict, connection=None) -> None:
    """Write an audit event given as ``row``'s column values (on the session's connection, or
    on ``connection``)."""
    (connection or db.session.connection()).execute(_INSERT, event)


def row(
    *,
    actor: str,
    action: str,
    entity: str,
    entity_id: int | None,
    now: datetime,
    participant_id: int | None = None,
    field: str | None = None,
    old=None,
    new=None,
    reason: str | None = None,
) -> dict:
    """An audit event's column values (``record`` writes one; the submit on PostgreSQL writes its
    own in the same statement as the submission)."""
    action = AuditAction(action)  # a word the vocabulary does not have is a bug, not an event
    return dict(
        at=now,
        actor=actor,
        action=str(action),
        entity=entity,
        entity_id=entity_id,
        participant_id=participant_id,
        field=field,
        old_value=None if old is None else str(old),
        new_value=None if new is None else str(new),
        reason=reason,
    )


# Built once: parameters are passed at each call, so the compiled statement is reused.
_INSERT = insert(AuditEvent.__table__)


def staff_actor(user) -> str:
    return f"{ActorKind.STAFF}:{user.email}"


def participant_actor(participant) -> str:
    return f"{ActorKind.PARTICIPANT}:{participant.code}"


SYSTEM = str(ActorKind.SYSTEM)
# Events that name the allocation: which readers see them is the blinding guard's.
