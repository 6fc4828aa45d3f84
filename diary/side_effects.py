"""Side-effect reports after they are stored: a coordinator's acknowledgement."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import update

from . import audit
from .errors import Refused
from .extensions import db
from .models import SideEffectReport, StaffUser


def acknowledge(report: SideEffectReport, note: str, *, by: StaffUser, now: datetime) -> None:
    """Record that a coordinator has seen a report, with a note. Happens once.

    The write is one conditional UPDATE, so of two coordinators acknowledging at the same moment
    exactly one succeeds; the other is told who was first.
    """
    note = (note or "").strip()
    if not note:
        raise Refused("An acknowledgement needs a note.")
    done = db.session.execute(
        update(SideEffectReport)
        .where(SideEffectReport.id == report.id, SideEffectReport.acknowledged_at.is_(None))
        .values(acknowledged_at=now, acknowledged_by_id=by.id, acknowledgement_note=note)
        .execution_options(synchronize_session=False))
    db.session.refresh(report)  # what the database now holds, ours or the first one's
    if done.rowcount != 1:
        who = db.session.get(StaffUser, report.acknowledged_by_id) if report.acknowledged_by_id else None
        raise Refused(f"This report was already acknowledged by {who.email if who else 'someone'} "
                      f"at {report.acknowledged_at:%Y-%m-%d %H:%M} UTC.", status=409)
    audit.record(actor=audit.staff_actor(by), action="acknowledge_side_effect", entity="side_effect_report",
                 entity_id=report.id, participant_id=report.period.participant_id, now=now,
                 field=f"{report.term} ({report.severity or 'free text'})", new=note)
