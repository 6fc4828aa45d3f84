"""The study lock: before unblinding, edit access ends (ICH E6(R3) 3.16.1(r)).

While a study is locked every data-changing request answers 423 (``diary.web`` asks
``is_locked``), the command line's data-changing commands refuse, and the scheduler sends
nothing and opens no follow-up task. Locking and unlocking each need a reason and leave an audit
event; unlocking clears the lock (a later lock is a new event).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select, update

from ..errors import Refused
from ..extensions import db
from ..models import Study
from ..vocabulary import AuditAction
from . import audit

LOCKED = "The study is locked: its data cannot change. Unlock it (with a reason) to make a change."


def is_locked(study: Study | None) -> bool:
    return study is not None and study.locked_at is not None


def current_lock():
    """The installation's study lock as (locked_at, lock_reason), or None when it is not locked.
    One light query (no study object loaded), made before every data-changing request."""
    lock = db.session.execute(_LOCK).first()
    return lock if lock is not None and lock.locked_at is not None else None


# Built once: every POST runs it (one study per installation, as ``current_study`` reads it).
_LOCK = select(Study.locked_at, Study.lock_reason).order_by(Study.id).limit(1)


def refuse_if_locked(study: Study | None) -> None:
    """For rules and commands that change data (the web layer answers 423 before they run)."""
    if is_locked(study):
        raise Refused(LOCKED, status=423)


def lock_study(study: Study, *, reason: str, actor: str, by_id: int | None, now: datetime) -> None:
    """Lock the study's data. One conditional statement: of two locking at once, one is told."""
    reason = (reason or "").strip()
    if not reason:
        raise Refused("Locking the study needs a reason.")
    done = db.session.execute(
        update(Study)
        .where(Study.id == study.id, Study.locked_at.is_(None))
        .values(locked_at=now, locked_by_id=by_id, lock_reason=reason)
        .execution_options(synchronize_session=False)
    )
    db.session.refresh(study)
    if done.rowcount != 1:
        raise Refused(f"The study is already locked (since {study.locked_at:%Y-%m-%d %H:%M} UTC).", status=409)
    audit.record(
        actor=actor,
        action=AuditAction.LOCK_STUDY,
        entity="study",
        entity_id=study.id,
        field="locked_at",
        old=None,
        new=now.isoformat(),
        reason=reason,
        now=now,
    )


def unlock_study(study: Study, *, reason: str, actor: str, now: datetime) -> None:
    reason = (reason or "").strip()
    if not reason:
        raise Refused("Unlocking the study needs a reason.")
    locked_at = study.locked_at
    done = db.session.execute(
        update(Study)
        .where(Study.id == study.id, Study.locked_at.is_not(None))
        .values(locked_at=None, locked_by_id=None, lock_reason=None)
        .execution_options(synchronize_session=False)
    )
    db.session.refresh(study)
    if done.rowcount != 1:
        raise Refused("The study is not locked.", status=409)
    audit.record(
        actor=actor,
        action=AuditAction.UNLOCK_STUDY,
        entity="study",
        entity_id=study.id,
        field="locked_at",
        old=locked_at.isoformat() if locked_at else None,
        new=None,
        reason=reason,
        now=now,
    )


def refuse_until_ready_for_the_truth(study: Study) -> None:
    """The true allocation (an operator's export with it, or unblinding) only once the data are
    locked and every participant-period is signed or waived, each signature still valid."""
    from .signoff import unsigned_periods

    if not is_locked(study):
        raise Refused("Lock the study first: the true allocation is shown only on locked data.", status=409)
    waiting = unsigned_periods(study.id)
    if waiting:
        listed = ", ".join(
            f"{period.participant.code} infusion {period.number} ({status})" for period, status in waiting[:5]
        )
        more = f" and {len(waiting) - 5} more" if len(waiting) > 5 else ""
        raise Refused(
            f"{len(waiting)} participant-periods are not signed or waived: {listed}{more}. "
            "The investigator signs (or waives) each before the true allocation is shown.",
            status=409,
        )
