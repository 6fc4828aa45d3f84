"""Safety loops that reach a person: alerts for severe answers, the review of side-effect reports
with a deadline, and the emergency code break for one participant.

Messages to the study team go through the outbox (``StaffMessage``) and the dispatch pass, like
reminders: each exists once (its unique key), is retried, and its outcome is logged.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from ..errors import Refused
from ..extensions import db
from ..governance import audit
from ..models import Participant, SideEffectReport, StaffMessage, StaffUser
from ..participants.links import base_url
from ..settings import setting
from ..study.blinding import may_break_code
from ..study.trial import protocol_of
from ..vocabulary import AuditAction, ReminderState, ReviewState, Role, Severity, StaffMessageKind

# An alert that could not go out for a day is pointless by email: the follow-up task stands.
ALERT_LIFETIME = timedelta(days=1)


def site_recipients(site: str) -> list[str]:
    """The site's on-call addresses (DIARY_SITE_ALERTS: {"SITE": ["oncall@site.org", ...]})."""
    alerts = setting("SITE_ALERTS", None) or {}
    recipients = alerts.get(site) or alerts.get("*") or []
    return [str(address).strip() for address in recipients if str(address).strip()]


def enqueue(
    kind: StaffMessageKind,
    *,
    key: str,
    recipients: list[str],
    subject: str,
    body: str,
    participant_id: int | None,
    now: datetime,
    lifetime: timedelta = ALERT_LIFETIME,
) -> int:
    """Add a message for each recipient to the outbox, once per key (a retry adds nothing)."""
    rows = [
        {
            "kind": kind,
            "dedupe_key": f"{key}:{recipient}"[:200],
            "recipient": recipient,
            "subject": subject,
            "body": body,
            "participant_id": participant_id,
            "state": ReminderState.PENDING,
            "due_at": now,
            "not_after": now + lifetime,
            "attempts": 0,
            "created_at": now,
        }
        for recipient in recipients
    ]
    if not rows:
        return 0
    insert = sqlite_insert if db.engine.dialect.name == "sqlite" else postgresql_insert
    db.session.execute(insert(StaffMessage).on_conflict_do_nothing(index_elements=["dedupe_key"]), rows)
    return len(rows)


def alert_severe_answers(
    submission,
    reports: list[SideEffectReport],
    participant: Participant,
    *,
    timepoint_label: str,
    period: int,
    now: datetime,
) -> None:
    """A severe (alerting) answer: the site's on-call people get an email, exactly once.

    It names the participant code, the time point, the terms and severities, and a staff link;
    never the drug.
    """
    alerting = [report for report in reports if report.alert]
    if not alerting:
        return
    lines = [
        f"- {report.term.replace('_', ' ')}: {report.severity or 'free text'}"
        + (f' ("{report.verbatim}")' if report.verbatim else "")
        for report in alerting
    ]
    link = f"{base_url()}/staff/participants/{participant.code}"
    body = (
        f"Participant {participant.code} (site {participant.site}) reported in their diary, "
        f"infusion {period}, {timepoint_label}:\n"
        + "\n".join(lines)
        + f"\n\nThey were shown the site's phone number. Please review and follow up:\n{link}\n"
    )
    enqueue(
        StaffMessageKind.SEVERE_ALERT,
        key=f"severe:{submission.id}",
        recipients=site_recipients(participant.site),
        subject=f"diary: severe side effect reported by {participant.code}",
        body=body,
        participant_id=participant.id,
        now=now,
    )


def review_due(report: SideEffectReport, protocol, reported_at: datetime) -> datetime | None:
    """Severe reports must be reviewed within the protocol's deadline; others have none."""
    if report.severity == Severity.SEVERE or report.alert:
        return reported_at + protocol.severe_review_within.nominal
    return None


def review(
    report: SideEffectReport, note: str, *, state: str = ReviewState.REVIEWED, by: StaffUser, now: datetime
) -> None:
    """The study team reviews a report, with a note: reviewed, or recorded as an adverse event.

    Happens once: one conditional UPDATE, so of two coordinators at the same moment exactly one
    succeeds; the other is told who was first.
    """
    note = (note or "").strip()
    if not note:
        raise Refused("A review needs a note.")
    if state not in (ReviewState.REVIEWED, ReviewState.AE_RECORDED):
        raise Refused("Choose reviewed or AE recorded.")
    done = db.session.execute(
        update(SideEffectReport)
        .where(SideEffectReport.id == report.id, SideEffectReport.acknowledged_at.is_(None))
        .values(acknowledged_at=now, acknowledged_by_id=by.id, acknowledgement_note=note, review_state=state)
        .execution_options(synchronize_session=False)
    )
    db.session.refresh(report)  # what the database now holds, ours or the first one's
    if done.rowcount != 1:
        who = db.session.get(StaffUser, report.acknowledged_by_id) if report.acknowledged_by_id else None
        raise Refused(
            f"This report was already acknowledged by {who.email if who else 'someone'} "
            f"at {report.acknowledged_at:%Y-%m-%d %H:%M} UTC.",
            status=409,
        )
    overdue = report.review_due_at is not None and now > report.review_due_at
    audit.record(
        actor=audit.staff_actor(by),
        action=AuditAction.ACKNOWLEDGE_SIDE_EFFECT,
        entity="side_effect_report",
        entity_id=report.id,
        participant_id=report.period.participant_id,
        now=now,
        field=f"{report.term} ({report.severity or 'free text'})",
        new=f"{state}: {note}" + (" (after its review deadline)" if overdue else ""),
    )


def break_code(participant: Participant, reason: str, *, by: StaffUser, now: datetime) -> list[tuple[int, str, str]]:
    """Reveal one participant's treatments in an emergency (ICH E6), leaving the study blinded.

    Returns (period, masked code, drug) for each period. Audited with the reason; the site's
    alert recipients are told a code was broken (never what it was); the participant is flagged
    in the export with the time.
    """
    if not may_break_code(by.role):
        raise Refused("Only the unblinded or emergency role can break a participant's code.", status=403)
    reason = (reason or "").strip()
    if len(reason) < 10:
        raise Refused("Say why the code must be broken (at least a sentence).", field="reason")
    first = (
        db.session.execute(
            update(Participant)
            .where(Participant.id == participant.id, Participant.code_broken_at.is_(None))
            .values(code_broken_at=now, code_broken_by_id=by.id)
            .execution_options(synchronize_session=False)
        ).rowcount
        == 1
    )
    db.session.refresh(participant)
    audit.record(
        actor=audit.staff_actor(by),
        action=AuditAction.BREAK_CODE,
        entity="participant",
        entity_id=participant.id,
        participant_id=participant.id,
        now=now,
        reason=reason,
        new="first break" if first else "viewed again after an earlier break",
    )
    if first:
        enqueue(
            StaffMessageKind.CODE_BREAK,
            key=f"code-break:{participant.id}",
            recipients=site_recipients(participant.site),
            subject=f"diary: the treatment code of {participant.code} was broken",
            body=(
                f"The treatment code of participant {participant.code} (site {participant.site}) was "
                f"broken for an emergency by {by.email} at {now:%Y-%m-%d %H:%M} UTC.\nReason: {reason}\n\n"
                "This message does not say which treatment it was. The rest of the study stays blinded.\n"
            ),
            participant_id=participant.id,
            now=now,
        )
    return broken_code(participant, by)


def broken_code(participant: Participant, reader: StaffUser) -> list[tuple[int, str, str]]:
    """(period, masked code, drug) of a participant whose code is broken, for the person who broke
    it or the unblinded role; reading it again writes nothing (the break was audited once)."""
    if (
        participant.code_broken_at is None
        or not may_break_code(reader.role)
        or (reader.role != Role.UNBLINDED and participant.code_broken_by_id != reader.id)
    ):
        raise Refused("This participant's code has not been broken by you.", status=403)
    protocol = protocol_of(participant.study.current_protocol_version)
    return [
        (period.number, period.treatment, protocol.treatments.get(period.treatment, period.treatment))
        for period in participant.periods
    ]


def participant_by_code(study_id: int, code: str) -> Participant | None:
    return db.session.scalar(
        select(Participant).where(Participant.study_id == study_id, Participant.code == code.strip())
    )
