"""Data change requests (DCRs) for values participants entered (ICH E6(R3) 3.16.1(i)-(j)).

A value a participant entered is never edited in place by staff. A coordinator opens a request:
what kind of error (``ChangeRequestType``), the source of the correct value and its time (a
phone call with the participant, a paper note), the proposed value and why. An investigator of
the participant's site, not the one who asked, approves or rejects it after re-entering their
password and an authenticator code; only an approval changes the value, and the row keeps the
value as first entered beside it. Every state is audited.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select, update

from ..errors import Refused
from ..extensions import db
from ..governance import audit
from ..governance.lock import refuse_if_locked
from ..governance.second_factor import reauthenticate
from ..models import Assessment, ChangeRequest, Participant, Period, StaffUser, Submission
from ..vocabulary import AuditAction, ChangeRequestState, ChangeRequestType, Role, Source
from .corrections import apply_change, checked_change

REQUESTERS = (Role.COORDINATOR, Role.INVESTIGATOR)
DECIDERS = (Role.INVESTIGATOR,)


def _field(submission: Submission, request_or_change) -> str:
    period = submission.assessment.period
    return f"period {period.number} {submission.assessment.timepoint} {request_or_change}"


def open_request(
    submission: Submission,
    key: str,
    proposed: str,
    *,
    kind: str,
    source: str,
    source_at: datetime | None,
    reason: str,
    by: StaffUser,
    now: datetime,
) -> ChangeRequest:
    """Ask for a participant's value to change. Nothing changes until an investigator approves."""
    participant = submission.assessment.period.participant
    refuse_if_locked(participant.study)
    if by.role not in REQUESTERS:
        raise Refused("Only the study team at the site can ask for a change.", status=403)
    if submission.source != Source.PARTICIPANT:
        raise Refused("The study team entered this value: correct it directly, with a reason.", status=409)
    if kind not in set(ChangeRequestType):
        raise Refused("Choose what kind of error it is.", field="kind")
    source, reason = (source or "").strip(), (reason or "").strip()
    if not source:
        raise Refused(
            "Name the source of the correct value (for example, a phone call with the participant).", field="source"
        )
    if source_at is None:
        raise Refused("Give the date and time of the source.", field="source_at")
    if source_at > now:
        raise Refused("The source cannot be in the future.", field="source_at")
    if not reason:
        raise Refused("Say why the value should change.", field="reason")
    change = checked_change(submission, key, proposed)
    waiting = db.session.scalar(
        select(ChangeRequest.id).where(
            ChangeRequest.submission_id == submission.id,
            ChangeRequest.instrument == change.instrument.id,
            ChangeRequest.item == change.stored_item,
            ChangeRequest.state == ChangeRequestState.OPEN,
        )
    )
    if waiting:
        raise Refused(f"Change request {waiting} for this value is still waiting for an investigator.", status=409)
    request = ChangeRequest(
        submission=submission,
        instrument=change.instrument.id,
        item=change.stored_item,
        kind=kind,
        source=source,
        source_at=source_at,
        current_value=change.old_value,
        proposed_value=change.new_value,
        reason=reason,
        requested_by_id=by.id,
        requested_at=now,
        state=ChangeRequestState.OPEN,
    )
    db.session.add(request)
    db.session.flush()
    audit.record(
        actor=audit.staff_actor(by),
        action=AuditAction.REQUEST_CHANGE,
        entity="change_request",
        entity_id=request.id,
        participant_id=participant.id,
        field=_field(submission, change.field),
        old=change.old_value,
        new=f"{change.new_value} (proposed; {kind}; source: {source}, {source_at.isoformat()})",
        reason=reason,
        now=now,
    )
    return request


def may_decide(user: StaffUser, request: ChangeRequest) -> bool:
    """An investigator of the participant's site (every site when they have none), not the requester."""
    participant = request.submission.assessment.period.participant
    return (
        user.role in DECIDERS
        and (user.site is None or user.site == participant.site)
        and user.id != request.requested_by_id
    )


def decide(
    request: ChangeRequest,
    *,
    approve: bool,
    note: str,
    by: StaffUser,
    password: str,
    code: str,
    now: datetime,
) -> ChangeRequest:
    """Approve (and apply) or reject a request, after re-authentication. Decided once: of two
    investigators at the same moment, one decides and the other is told."""
    submission = request.submission
    participant = submission.assessment.period.participant
    refuse_if_locked(participant.study)
    if by.id == request.requested_by_id:
        raise Refused("A change request is decided by an investigator other than the one who asked.", status=403)
    if not may_decide(by, request):
        raise Refused("Only an investigator of this participant's site can decide a change request.", status=403)
    if request.state != ChangeRequestState.OPEN:
        raise Refused(f"This change request was already {request.state}.", status=409)
    note = (note or "").strip()
    if not approve and not note:
        raise Refused("Say why the change is rejected.", field="note")
    reauthenticate(by, password, code, now=now)
    state = ChangeRequestState.APPROVED if approve else ChangeRequestState.REJECTED
    done = db.session.execute(
        update(ChangeRequest)
        .where(ChangeRequest.id == request.id, ChangeRequest.state == ChangeRequestState.OPEN)
        .values(state=state, decided_by_id=by.id, decided_at=now, decision_note=note or None)
        .execution_options(synchronize_session=False)
    )
    db.session.refresh(request)
    if done.rowcount != 1:
        raise Refused(f"This change request was already {request.state}.", status=409)
    key = f"{request.instrument}.{request.item}"
    if approve:
        change = checked_change(submission, key, request.proposed_value)
        if change.old_value != request.current_value:
            raise Refused(
                "The value changed after this request was made; the request cannot be applied. Reject it and ask again.",
                status=409,
            )
        apply_change(submission, change, now=now, change_request_id=request.id)
    audit.record(
        actor=audit.staff_actor(by),
        action=AuditAction.APPROVE_CHANGE if approve else AuditAction.REJECT_CHANGE,
        entity="change_request",
        entity_id=request.id,
        participant_id=participant.id,
        field=_field(submission, key),
        old=request.current_value,
        new=request.proposed_value if approve else f"{request.current_value} (kept)",
        reason=note or None,
        now=now,
    )
    return request


def open_requests(study_id: int, site: str | None = None) -> list[ChangeRequest]:
    """Requests waiting for an investigator, oldest first (one site's, when ``site``)."""
    query = (
        select(ChangeRequest)
        .join(Submission, ChangeRequest.submission_id == Submission.id)
        .join(Assessment, Submission.assessment_id == Assessment.id)
        .join(Period, Assessment.period_id == Period.id)
        .join(Participant, Period.participant_id == Participant.id)
        .where(Participant.study_id == study_id, ChangeRequest.state == ChangeRequestState.OPEN)
        .order_by(ChangeRequest.requested_at)
    )
    if site:
        query = query.where(Participant.site == site)
    return list(db.session.scalars(query))
