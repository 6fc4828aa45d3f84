"""Amending the protocol of a running study.

An admin proposes a new version with a reason; its differences from the running version are
classified (``protocol.diff``). An additive amendment is applied at once; a critical one waits
for a second person (another admin, or an investigator) to approve it; one that would change
the study's design is refused. Applying it:

- entries already submitted keep the version they were answered under, and their windows;
- every assessment still without an entry moves to the new version's window around its
  period's anchor (as an infusion correction moves it), or, if the amendment removed its time
  point, is no longer needed; each participant's changes are one audit event;
- time points the amendment adds are scheduled for every period already anchored;
- reminders follow: a moved window's pending reminders are re-timed by the next planning pass,
  an unchanged one's are left as they are (neither lost nor sent twice);
- participants enrolled afterwards are scheduled under it (it is the current version).
"""

from __future__ import annotations

from datetime import datetime
from itertools import groupby
from zoneinfo import ZoneInfo

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import selectinload

from ..errors import Refused
from ..extensions import db
from ..governance import audit
from ..governance.lock import refuse_if_locked
from ..models import Assessment, Participant, Period, ProtocolAmendment, ProtocolVersion, StaffUser, Study
from ..protocol import ProtocolError, parse_protocol, protocol_sha256
from ..protocol.diff import ADDITIVE, CRITICAL, REFUSED, classification, compare
from ..protocol.schedule import schedule_timepoint
from ..study.trial import protocol_of
from ..vocabulary import AmendmentState, AuditAction, ParticipantStatus, Role

# Who may approve a critical amendment (never the person who proposed it).
APPROVERS = (Role.ADMIN, Role.INVESTIGATOR)


def check_amendment(study: Study, text: str):
    """The amended protocol parsed and compared with the running version: (protocol, changes,
    class). Refuses a file with problems, one identical to the running version, and one whose
    changes no amendment may make (each named)."""
    try:
        new = parse_protocol(text, source="amendment")
    except ProtocolError as error:
        listed = "; ".join(f"{path}: {message}" for path, message in error.problems)
        raise Refused(f"The amended protocol has problems: {listed}", status=422) from None
    base = study.current_protocol_version
    if protocol_sha256(text) == base.sha256:
        raise Refused("This is the running protocol, unchanged.", status=409)
    changes = compare(protocol_of(base), new)
    kind = classification(changes)
    if kind == REFUSED:
        refused = "; ".join(f"{c.path}: {c.text}" for c in changes if c.kind == REFUSED)
        raise Refused(f"This amendment cannot be made: {refused}", status=409)
    if not changes:
        raise Refused(
            "The file differs from the running protocol only in layout or comments: nothing to amend.", status=409
        )
    if any(v.version == new.version for v in study.protocol_versions):
        raise Refused(f"Version {new.version} already exists; give the amendment a new version.", status=409)
    return new, changes, kind


def propose_amendment(
    study: Study, text: str, *, reason: str, actor: str, proposed_by: StaffUser | None, now: datetime
) -> ProtocolAmendment:
    """Store a proposed amendment; an additive one is applied at once (its proposer is enough)."""
    refuse_if_locked(study)
    if not (reason and reason.strip()):
        raise Refused("An amendment needs a reason (what the ethics committee approved, or why).", status=422)
    if proposed_by is not None and proposed_by.role != Role.ADMIN:
        raise Refused("Only an admin proposes an amendment.", status=403)
    new, changes, kind = check_amendment(study, text)
    waiting = db.session.scalar(
        select(ProtocolAmendment.id).where(
            ProtocolAmendment.study_id == study.id, ProtocolAmendment.state == AmendmentState.PROPOSED
        )
    )
    if waiting is not None:
        raise Refused(f"Amendment {waiting} waits for approval; approve or withdraw it first.", status=409)
    amendment = ProtocolAmendment(
        study_id=study.id,
        base_version_id=study.current_protocol_version.id,
        version=new.version,
        source_text=text,
        sha256=protocol_sha256(text),
        reason=reason.strip(),
        classification=kind,
        changes="\n".join(str(change) for change in changes),
        state=AmendmentState.PROPOSED,
        proposed_by=actor,
        proposed_by_id=proposed_by.id if proposed_by else None,
        proposed_at=now,
    )
    try:
        with db.session.begin_nested():  # a second proposal racing this one meets the one-waiting index
            db.session.add(amendment)
    except IntegrityError:
        raise Refused("Another amendment was proposed at the same moment; it waits for approval.", status=409) from None
    audit.record(
        actor=actor,
        action=AuditAction.PROPOSE_AMENDMENT,
        entity="protocol_amendment",
        entity_id=amendment.id,
        now=now,
        new=f"version {new.version} ({kind}): {len(changes)} changes",
        reason=amendment.reason,
    )
    if kind == ADDITIVE:
        _take(amendment, approver=None, now=now)
        apply_amendment(amendment, actor=actor, now=now)
    return amendment


def approve_amendment(
    amendment: ProtocolAmendment, *, approver: StaffUser, actor: str, now: datetime
) -> ProtocolVersion:
    """A second person's approval of a critical amendment, which applies it."""
    refuse_if_locked(db.session.get(Study, amendment.study_id))
    if approver.role not in APPROVERS:
        raise Refused("Only an admin or an investigator approves an amendment.", status=403)
    if amendment.proposed_by_id is not None and approver.id == amendment.proposed_by_id:
        raise Refused("A critical amendment needs a second person: its proposer cannot approve it.", status=403)
    if amendment.state != AmendmentState.PROPOSED:
        raise Refused(f"Amendment {amendment.id} is {amendment.state}; there is nothing to approve.", status=409)
    _take(amendment, approver=approver, now=now)
    audit.record(
        actor=actor,
        action=AuditAction.APPROVE_AMENDMENT,
        entity="protocol_amendment",
        entity_id=amendment.id,
        now=now,
        new=f"version {amendment.version} approved",
    )
    return apply_amendment(amendment, actor=actor, now=now)


def withdraw_amendment(amendment: ProtocolAmendment, *, by: StaffUser, actor: str, reason: str, now: datetime) -> None:
    """The proposer (or another admin) withdraws a waiting amendment, with a reason."""
    if by.role != Role.ADMIN:
        raise Refused("Only an admin withdraws an amendment.", status=403)
    if not (reason and reason.strip()):
        raise Refused("Withdrawing an amendment needs a reason.", status=422)
    _leave_proposed(amendment, f"Amendment {amendment.id} is no longer waiting.", state=AmendmentState.WITHDRAWN)
    audit.record(
        actor=actor,
        action=AuditAction.WITHDRAW_AMENDMENT,
        entity="protocol_amendment",
        entity_id=amendment.id,
        now=now,
        reason=reason.strip(),
    )


def _take(amendment: ProtocolAmendment, *, approver: StaffUser | None, now: datetime) -> None:
    _leave_proposed(
        amendment,
        f"Amendment {amendment.id} was approved or withdrawn meanwhile.",
        state=AmendmentState.APPLIED,
        approved_by_id=approver.id if approver else None,
        approved_at=now,
    )


def _leave_proposed(amendment: ProtocolAmendment, refusal: str, **values) -> None:
    """One conditional statement moves a waiting amendment on: of two people acting on it at
    once (approving, withdrawing), one does it and the other is told."""
    done = db.session.execute(
        update(ProtocolAmendment)
        .where(ProtocolAmendment.id == amendment.id, ProtocolAmendment.state == AmendmentState.PROPOSED)
        .values(**values)
        .execution_options(synchronize_session=False)
    ).rowcount
    if done != 1:
        raise Refused(refusal, status=409)
    db.session.refresh(amendment)


def apply_amendment(amendment: ProtocolAmendment, *, actor: str, now: datetime) -> ProtocolVersion:
    """Store the new version (the study's current one from now) and move what is still to come."""
    study = db.session.get(Study, amendment.study_id)
    # Read afresh (another amendment may have been applied since this one was read): an
    # amendment's changes were computed against its base, and only apply on top of it.
    current = db.session.scalar(select(func.max(ProtocolVersion.id)).where(ProtocolVersion.study_id == study.id))
    if current != amendment.base_version_id:
        raise Refused("The protocol changed since this amendment was proposed; propose it again.", status=409)
    version = ProtocolVersion(
        study=study,
        protocol_id=study.current_protocol_version.protocol_id,
        version=amendment.version,
        source_text=amendment.source_text,
        sha256=amendment.sha256,
        loaded_at=now,
    )
    db.session.add(version)
    db.session.flush()
    db.session.refresh(study, ["protocol_versions"])  # current_protocol_version is the new one
    amendment.applied_version_id = version.id
    amendment.applied_at = now
    moved, participants = rewindow(study, version, amendment, actor=actor, now=now)
    audit.record(
        actor=actor,
        action=AuditAction.APPLY_AMENDMENT,
        entity="protocol_version",
        entity_id=version.id,
        now=now,
        new=f"version {version.version} now current: {moved} entries still to come re-windowed or added "
        f"for {participants} participants",
        reason=amendment.reason,
    )
    return version


def _window_text(assessment: Assessment) -> str:
    return f"{assessment.window_open:%Y-%m-%d %H:%M}-{assessment.window_close:%Y-%m-%d %H:%M} UTC"


def rewindow(study: Study, version: ProtocolVersion, amendment: ProtocolAmendment, *, actor: str, now: datetime):
    """Every assessment still without an entry, in a period with an anchor, under the new
    version: moved to its window, or no longer needed if its time point is gone; new time points
    added. Returns (assessments moved, added or retired; participants touched)."""
    protocol = protocol_of(version)
    timepoints = {tp.code: tp for tp in protocol.timepoints}
    periods = db.session.scalars(
        select(Period)
        .join(Participant, Period.participant_id == Participant.id)
        .where(Participant.study_id == study.id)
        .order_by(Period.participant_id, Period.number)
        .options(selectinload(Period.assessments).selectinload(Assessment.submission), selectinload(Period.participant))
    ).all()
    touched = participants = 0
    for participant_id, group in groupby(periods, key=lambda p: p.participant_id):
        group = list(group)
        participant = group[0].participant
        tz = ZoneInfo(participant.timezone)
        lines = []
        for period in group:
            if period.anchor is None:
                continue
            following = next((p for p in group if p.number == period.number + 1), None)
            next_dose = following.dose_start if following is not None else None
            present = {a.timepoint: a for a in period.assessments}
            for code, assessment in present.items():
                if assessment.submission is not None:
                    continue  # answered under its version, judged in its window
                timepoint = timepoints.get(code)
                if timepoint is None:
                    if not assessment.not_applicable:
                        assessment.not_applicable = True
                        lines.append(f"period {period.number} {code} no longer needed (removed)")
                    assessment.protocol_version_id = version.id
                    continue
                window = schedule_timepoint(timepoint, period.anchor, tz, next_dose)
                before = _window_text(assessment)
                assessment.target = window.target
                assessment.window_open = window.window_open
                assessment.window_close = window.window_close
                assessment.late_close = window.late_close
                assessment.protocol_version_id = version.id
                if _window_text(assessment) != before:
                    lines.append(f"period {period.number} {code} window {before} -> {_window_text(assessment)}")
            for code, timepoint in timepoints.items():
                if code in present:
                    continue
                window = schedule_timepoint(timepoint, period.anchor, tz, next_dose)
                db.session.add(
                    Assessment(
                        period=period,
                        timepoint=code,
                        protocol_version_id=version.id,
                        not_applicable=participant.status != ParticipantStatus.ACTIVE,
                        target=window.target,
                        window_open=window.window_open,
                        window_close=window.window_close,
                        late_close=window.late_close,
                    )
                )
                lines.append(f"period {period.number} {code} added")
        if lines:
            participants += 1
            touched += len(lines)
            audit.record(
                actor=actor,
                action=AuditAction.REWINDOW_BY_AMENDMENT,
                entity="participant",
                entity_id=participant_id,
                participant_id=participant_id,
                now=now,
                new=f"amendment {amendment.id} (version {version.version}): " + "; ".join(lines),
            )
    db.session.flush()
    return touched, participants


__all__ = [
    "ADDITIVE",
    "APPROVERS",
    "CRITICAL",
    "approve_amendment",
    "check_amendment",
    "propose_amendment",
    "withdraw_amendment",
]
