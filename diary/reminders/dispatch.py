"""Dispatch passes over the reminder outbox: expire, claim, send, record.

Safe with several schedulers at once: a row is claimed by a conditional UPDATE (only rows still
pending or failed change, and each gets this pass's claim token), so two passes never send the
same row. Rows left 'sending' by a pass that died are claimed again after a lease. Failures are
retried with growing delays until the window closes; then the row is expired.
"""
from __future__ import annotations

import uuid
from types import SimpleNamespace
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from flask import current_app
from flask_babel import force_locale
from flask_babel import gettext as _
from sqlalchemy import bindparam, or_, select, update

from ..assessments import rows_query, state_at
from ..extensions import db
from ..links import reminder_link
from ..i18n import when as local_when
from ..protocol.model import in_language
from ..models import (
    Assessment, Participant, Period, ProtocolVersion, PushSubscription, Reminder, StaffMessage, Submission, now_utc,
)
from ..follow_up import create_tasks
from ..study import current_study, protocol_of
from ..vocabulary import AssessmentState, ParticipantStatus, ReminderChannel, ReminderState
from .channels import DeliveryFailed, EmailChannel, Message, Notice, PushChannel, SubscriptionGone, Undeliverable
from .planning import RETRYABLE, plan

# A pass claims this many rows at a time, and records each one's outcome as soon as it is known;
# the lease outlives a whole batch even at the SMTP timeout (50 x 10 s < 10 min), so a live
# pass never loses its rows, and a pass killed mid-batch re-sends at most the one message
# whose outcome it had not yet written.
CLAIM_BATCH = 50
LEASE = timedelta(minutes=10)
MAX_BACKOFF = timedelta(hours=1)


@dataclass
class PassResult:
    planned: int = 0
    sent: int = 0
    failed: int = 0
    expired: int = 0
    cancelled: int = 0
    staff_sent: int = 0
    follow_up_tasks: int = 0
    errors: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return (f"planned {self.planned}, sent {self.sent}, failed {self.failed} (will retry), "
                f"expired {self.expired}, cancelled {self.cancelled}; study team emails sent "
                f"{self.staff_sent}; follow-up tasks created {self.follow_up_tasks}")


def backoff(attempts: int) -> timedelta:
    """1, 2, 4, 8 ... minutes, at most an hour."""
    return min(MAX_BACKOFF, timedelta(minutes=2 ** max(0, attempts - 1)))


# The two outboxes (reminders to participants, messages to the study team) share these
# mechanics: the same states, due and not-after times, claims, leases and retries.

def expire_overdue(now: datetime, outbox=Reminder,
                   why: str = "the window closed before the reminder could go out") -> int:
    """Rows whose time has passed before they could go out are expired, never sent late."""
    result = db.session.execute(update(outbox).where(
        outbox.state.in_(RETRYABLE), outbox.not_after <= now).values(state=ReminderState.EXPIRED, last_error=why))
    return result.rowcount or 0


def _claimable(now: datetime, outbox=Reminder):
    """Rows a pass may take: pending or failed, or 'sending' by a pass that died (lease over)."""
    return or_(outbox.state.in_(RETRYABLE),
               (outbox.state == ReminderState.SENDING) & (outbox.claimed_at < now - LEASE))


def candidates(now: datetime, limit: int = CLAIM_BATCH, outbox=Reminder) -> list[int]:
    """Due rows that look free. Another pass may take them first: ``take`` decides."""
    return list(db.session.scalars(select(outbox.id).where(
        _claimable(now, outbox), outbox.due_at <= now, outbox.not_after > now,
        or_(outbox.next_attempt_at.is_(None), outbox.next_attempt_at <= now)
    ).order_by(outbox.due_at, outbox.id).limit(limit)))


def take(ids: list[int], now: datetime, token: str, outbox=Reminder) -> list[int]:
    """Claim those of ``ids`` still free, in one conditional UPDATE; returns the ones now ours.

    The condition is re-checked by the database against committed data (PostgreSQL re-reads a
    row another transaction just changed; SQLite runs one writer at a time), so a row taken by
    another pass in the meantime is not taken again.
    """
    if not ids:
        return []
    db.session.execute(update(outbox).where(outbox.id.in_(ids), _claimable(now, outbox)).values(
        state=ReminderState.SENDING, claim_token=token, claimed_at=now))
    db.session.commit()  # the claim is visible to every other pass before anything is sent
    return list(db.session.scalars(select(outbox.id).where(outbox.claim_token == token,
                                                         outbox.state == ReminderState.SENDING)))


def claim(now: datetime, token: str, limit: int = CLAIM_BATCH) -> list[int]:
    """Atomically take up to ``limit`` due rows for this pass; returns their ids."""
    return take(candidates(now, limit), now, token)


def run_pass(app=None, now: datetime | None = None) -> PassResult:
    """One pass: plan owed reminders, expire stale ones, then claim and send due ones in batches."""
    now = now or now_utc()
    config = (app or current_app).config
    result = PassResult()
    result.planned = plan(now)
    result.expired = expire_overdue(now)
    study = current_study()
    if study is not None:
        result.follow_up_tasks = create_tasks(study, now)
    db.session.commit()
    email, push = EmailChannel(config), PushChannel(config)
    token = uuid.uuid4().hex
    # Outcomes are written on a connection of their own in autocommit mode: each one is durable
    # the moment it is written, without a transaction's round trips around every message.
    recorder = db.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
    try:
        while True:
            ids = claim(now, token)
            if not ids:
                break
            _send_batch(ids, now, email, push, result, recorder)
            db.session.commit()
        _send_staff_messages(now, token, email, result, recorder)
    finally:
        email.close()
        recorder.close()
    return result


def _send_staff_messages(now, token, email, result, recorder) -> None:
    """Alerts and notices to the study team: claimed, sent and recorded like reminders."""
    expire_overdue(now, StaffMessage, why="too old to send")
    db.session.commit()
    while True:
        if not take(candidates(now, outbox=StaffMessage), now, token, outbox=StaffMessage):
            return
        messages = db.session.execute(select(
            StaffMessage.id, StaffMessage.kind, StaffMessage.recipient, StaffMessage.subject, StaffMessage.body,
            StaffMessage.attempts, StaffMessage.not_after).where(
            StaffMessage.claim_token == token, StaffMessage.state == ReminderState.SENDING)).all()
        db.session.commit()
        for message in messages:
            values = {"claim_token": None}
            try:
                email.send(Notice(kind=message.kind, to_email=message.recipient, subject=message.subject,
                                  text=message.body))
            except Exception as failure:  # noqa: BLE001  one message's failure never stops the pass
                retry_at = now + backoff(message.attempts + 1)
                state = ReminderState.FAILED if retry_at < message.not_after else ReminderState.EXPIRED
                values.update(state=state, attempts=message.attempts + 1, next_attempt_at=retry_at,
                              last_error=str(failure)[:1000])
                result.errors.append(str(failure)[:200])
            else:
                values.update(state=ReminderState.SENT, sent_at=now, attempts=message.attempts + 1,
                              last_error=None)
                result.staff_sent += 1
            recorder.execute(update(StaffMessage).where(StaffMessage.id == message.id).values(**values))
        if len(messages) < CLAIM_BATCH:
            return


def _send_batch(ids, now, email, push, result, recorder) -> None:
    """Send the claimed rows, committing each row's outcome as soon as it is known.

    Any error of one message (a refused address, a push service error, a bug) is recorded on
    that row and the pass goes on with the next.
    """
    # The assessment read model, with the reminder's own columns and the participant beside it.
    rows = db.session.execute(
        rows_query().add_columns(Reminder.id.label("reminder_id"), Reminder.kind, Reminder.channel,
                                 Reminder.attempts, Reminder.not_after, Participant.email,
                                 Participant.email_reminders, Participant.status.label("participant_status"),
                                 Participant.language,
                                 Participant.link_token_hash)
        .join(Reminder, Reminder.assessment_id == Assessment.id)
        .where(Reminder.id.in_(ids))).all()
    subscriptions: dict[int, list[PushSubscription]] = {}
    if any(row.channel == ReminderChannel.PUSH for row in rows):
        for subscription in db.session.scalars(select(PushSubscription).where(
                PushSubscription.participant_id.in_({row.participant_id for row in rows}),
                PushSubscription.ended_at.is_(None))):
            subscriptions.setdefault(subscription.participant_id, []).append(subscription)
    protocols = {v.id: protocol_of(v) for v in db.session.scalars(select(ProtocolVersion).where(
        ProtocolVersion.id.in_({row.protocol_version_id for row in rows})))}
    db.session.commit()  # end the read: on SQLite the outcomes' writes must not wait for it
    for row in rows:
        # Plain values, not ORM objects: each outcome's commit would expire them.
        participant = SimpleNamespace(id=row.participant_id, link_token_hash=row.link_token_hash)
        if (state_at(row, now) not in (AssessmentState.OPEN, AssessmentState.UPCOMING)
                or row.participant_status != ParticipantStatus.ACTIVE):
            _record(recorder, row.reminder_id, result, ReminderState.CANCELLED,
                    last_error="entry completed or no longer needed")
            continue
        protocol = protocols[row.protocol_version_id]
        with force_locale(row.language):
            label = _("Infusion %(number)s · %(label)s", number=row.period,
                      label=in_language(protocol.timepoint(row.timepoint).participant_label, row.language))
            closes = local_when(row.window_close, row.timezone, now, row.language)
        message = Message(kind=row.kind, to_email=row.email, label=label, closes=closes,
                          link=reminder_link(participant, row.reminder_id), language=row.language)
        try:
            if row.channel == ReminderChannel.EMAIL:
                if not row.email_reminders:
                    raise SubscriptionGone("email reminders turned off")
                email.send(message)
            else:
                try:
                    _push(push, subscriptions.get(participant.id, []), message, now)
                finally:
                    # Subscriptions the push service said are gone; and on SQLite, the read of the
                    # subscriptions must end before the outcome's write.
                    db.session.commit()
        except (SubscriptionGone, Undeliverable) as gone:
            _record(recorder, row.reminder_id, result, ReminderState.CANCELLED, last_error=str(gone)[:1000])
            if isinstance(gone, Undeliverable):
                result.errors.append(str(gone)[:200])
            continue
        except Exception as failure:  # noqa: BLE001  one message's failure never stops the pass
            attempts = row.attempts + 1
            retry_at = now + backoff(attempts)
            state = ReminderState.FAILED if retry_at < row.not_after else ReminderState.EXPIRED
            text = str(failure) if isinstance(failure, DeliveryFailed) else f"{type(failure).__name__}: {failure}"
            _record(recorder, row.reminder_id, result, state, attempted=True, next_attempt_at=retry_at,
                    last_error=text[:1000])
            result.errors.append(text[:200])
            continue
        _record(recorder, row.reminder_id, result, ReminderState.SENT, attempted=True, sent_at=now)


# One statement for every outcome, built once: recording is on the path of every message.
RECORD_OUTCOME = (update(Reminder).where(Reminder.id == bindparam("reminder_id"))
                  .values(state=bindparam("state"), sent_at=bindparam("sent_at"),
                          next_attempt_at=bindparam("next_attempt_at"), last_error=bindparam("last_error"),
                          attempts=Reminder.attempts + bindparam("attempted"), claim_token=None))


def _record(recorder, reminder_id: int, result: PassResult, state: ReminderState, *, attempted: bool = False,
            sent_at: datetime | None = None, next_attempt_at: datetime | None = None,
            last_error: str | None = None) -> None:
    """Write one row's outcome, durable at once (a crash after this never re-sends it)."""
    recorder.execute(RECORD_OUTCOME, {"reminder_id": reminder_id, "state": state, "sent_at": sent_at,
                                      "next_attempt_at": next_attempt_at, "last_error": last_error,
                                      "attempted": int(attempted)})
    if state == ReminderState.SENT:
        result.sent += 1
    elif state == ReminderState.CANCELLED:
        result.cancelled += 1
    elif state == ReminderState.FAILED:
        result.failed += 1
    elif state == ReminderState.EXPIRED:
        result.expired += 1


def _push(channel: PushChannel, subscriptions, message, now) -> None:
    """Send to each of the participant's browsers; the row succeeds if any browser got it."""
    if not subscriptions:
        raise SubscriptionGone("no active push subscription")
    delivered, failures = 0, []
    for subscription in subscriptions:
        try:
            channel.send(subscription, message)
            delivered += 1
        except SubscriptionGone as gone:
            subscription.ended_at, subscription.ended_reason = now, str(gone)
        except DeliveryFailed as failure:
            failures.append(str(failure))
    if delivered:
        return
    if failures:
        raise DeliveryFailed("; ".join(failures))
    raise SubscriptionGone("every push subscription has ended")
