"""Coding side effects for the SDTM AE domain (AEDECOD): the dictionary and the solicited terms'
codes are the protocol's (``Protocol.coding``, ``Choice.coded``); what participants write in their
own words is coded here by the study team, with a reason, audited. No licensed dictionary ships
with the diary: the team codes against the site's own copy of the one the protocol names."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.orm import selectinload

from ..errors import Refused
from ..extensions import db
from ..governance import audit
from ..governance.lock import refuse_if_locked
from ..models import Participant, Period, SideEffectReport, StaffUser
from ..vocabulary import AuditAction, Role

CODERS = (Role.COORDINATOR, Role.INVESTIGATOR)
MAX_TERM = 200


def to_code(study_id: int, site: str | None = None) -> list[SideEffectReport]:
    """The study's verbatim reports, those not coded yet first, then by time."""
    query = (
        select(SideEffectReport)
        .join(Period, SideEffectReport.period_id == Period.id)
        .join(Participant, Period.participant_id == Participant.id)
        .where(
            Participant.study_id == study_id,
            SideEffectReport.solicited.is_(False),
            SideEffectReport.verbatim.is_not(None),
        )
    )
    if site is not None:
        query = query.where(Participant.site == site)
    # The page names each report's participant: loaded with the reports, not one query each.
    query = query.options(selectinload(SideEffectReport.period).selectinload(Period.participant))
    reports = db.session.scalars(query.order_by(SideEffectReport.reported_at, SideEffectReport.id)).all()
    return sorted(reports, key=lambda report: report.coded_term is not None)


UNSEEN = object()


def code_side_effect(
    report: SideEffectReport, term: str, *, reason: str, by: StaffUser, now: datetime, seen=UNSEEN
) -> None:
    """Give a verbatim report its dictionary term (or change it), with a reason. ``seen`` is the
    term the coder's page showed (None: not coded yet; by default the report's term now). Of two
    people coding the same report at once, one codes it and the other is told (409): the UPDATE
    only takes effect on the term the coder saw."""
    participant = report.period.participant
    refuse_if_locked(participant.study)
    if by.role not in CODERS:
        raise Refused("Only the site's coordinator or investigator codes side effects.", status=403)
    if report.solicited:
        raise Refused("A side effect from the checklist is coded in the protocol.", status=409)
    term, reason = (term or "").strip(), (reason or "").strip()
    if not term:
        raise Refused("Give the dictionary's term.", field="term")
    if len(term) > MAX_TERM:
        raise Refused(f"A term is at most {MAX_TERM} characters.", field="term")
    if not reason:
        raise Refused("Say why this term (for example, the dictionary's lowest level term it matched).", field="reason")
    if seen is UNSEEN:
        seen = report.coded_term
    if term == seen:
        raise Refused("The report is already coded to this term.", status=409)
    done = db.session.execute(
        update(SideEffectReport)
        .where(
            SideEffectReport.id == report.id,
            SideEffectReport.coded_term.is_(None) if seen is None else SideEffectReport.coded_term == seen,
        )
        .values(coded_term=term, coded_by_id=by.id, coded_at=now, coding_reason=reason)
        .execution_options(synchronize_session=False)
    ).rowcount
    if done != 1:
        raise Refused("Someone coded this report meanwhile: look at it again.", status=409)
    audit.record(
        actor=audit.staff_actor(by),
        action=AuditAction.CODE_SIDE_EFFECT,
        entity="side_effect_report",
        entity_id=report.id,
        participant_id=participant.id,
        field="coded_term",
        old=seen,
        new=term,
        reason=reason,
        now=now,
    )
    db.session.expire(report)
