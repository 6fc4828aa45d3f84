"""Dispatch passes over the reminder outbox: expire, claim, send, record.

Safe with several schedulers at once: a row is claimed by a conditional UPDATE (only rows still
pending or failed change, and each gets this pass's claim token), so two passes never send the
same row. A claim holds for a lease that the pass renews as it goes (``Claim``), so a long pass
keeps what it is sending; rows left 'sending' by a pass that died are claimed again once their
lease has run out. Failures are retried with growing delays until the window closes; then the
row is expired. A message no configured channel can carry is not_sent, with the reason.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from types import SimpleNamespace

from flask import current_app
from flask_babel import force_locale
from flask_babel import gettext as _
from sqlalchemy import bindparam, or_, select, update

from ..dosing.assessments import rows_query, state_at
from ..extensions import db
from ..governance.lock import is_locked
from ..i18n import when as local_when
from ..models import (
    Assessment,
    Participant,
    ProtocolVersion,
    PushSubscription,
    Reminder,
    StaffMessage,
    now_utc,
)
from ..participants.links import reminder_link
from ..protocol.model import in_language
from ..safety.digest import due_digests
from ..safety.follow_up import judge
from ..study.trial import current_study, protocol_of
from ..vocabulary import AssessmentState, ParticipantStatus, ReminderChannel, ReminderState
from .channels import (
    DeliveryFailed,
    EmailChannel,
    Message,
    NoChannel,
    Notice,
    PushChannel,
    SubscriptionGone,
    Undeliverable,
)
from .planning import RETRYABLE, plan

# A pass claims this many rows at a time, and records each one's outcome as soon as it is known,
# so a pass killed mid-batch re-sends at most the one message whose outcome it had not written.
CLAIM_BATCH = 50
# How long a claim holds without renewal (DIARY_OUTBOX_LEASE_SECONDS). A live pass renews its
# claims every quarter lease, however slow the mail server; a dead pass's claims are taken
# again once it has run out, so its messages go out within a lease and a pass interval
# (1 + 1 minutes by default).
LEASE = timedelta(seconds=60)
MAX_BACKOFF = timedelta(hours=1)


class Claim:
    """One pass's hold on the rows it takes: its token, and claim times that follow the real
    clock from the pass's ``now`` (a pass of twenty minutes claims its last batch twenty minutes
    after its first), renewed every quarter lease while it sends."""

    def __init__(self, now: datetime, lease: timedelta, recorder, token: str | None = None):
        self.token = token or uuid.uuid4().hex
        self.started_at, self.lease, self.recorder = now, lease, recorder
        self._began = self._renewed = time.monotonic()

    def now(self) -> datetime:
        return self.started_at + timedelta(seconds=time.monotonic() - self._began)

    def renew(self, outbox) -> None:
        """Move this pass's claims on to now, if a quarter lease has passed since the last time."""
        if time.monotonic() - self._renewed < self.lease.total_seconds() / 4:
            return
        self.recorder.execute(
            update(outbox)
            .where(outbox.claim_token == self.token, outbox.state == ReminderState.SENDING)
            .values(claimed_at=self.now())
        )
        self._renewed = time.monotonic()


@dataclass
class PassResult:
    planned: int = 0
    sent: int = 0
    failed: int = 0
    expired: int = 0
    cancelled: int = 0
    not_sent: int = 0
    staff_sent: int = 0
    follow_up_tasks: int = 0
    follow_up_resolved: int = 0
    digests: int = 0
    # The study is locked: the pass planned, sent and opened nothing.
    locked: bool = False
    errors: list[str] = field(default_factory=list)
    # Messages no channel could carry, in full, for the scheduler to print (the demo's console).
    unsent_texts: list[str] = field(default_factory=list)

    def summary(self) -> str:
        if self.locked:
            return "the study is locked: nothing planned, sent or opened"
        return (
            f"planned {self.planned}, sent {self.sent}, failed {self.failed} (will retry), "
            f"expired {self.expired}, cancelled {self.cancelled}, not sent (no channel) {self.not_sent}; "
            f"study team emails sent {self.staff_sent}; follow-up tasks created {self.follow_up_tasks}, "
            f"resolved by data {self.follow_up_resolved}"
        )


def backoff(attempts: int) -> timedelta:
    """1, 2, 4, 8 ... minutes, at most an hour."""
    return min(MAX_BACKOFF, timedelta(minutes=2 ** max(0, attempts - 1)))


# The two outboxes (reminders to participants, messages to the study team) share these
# mechanics: the same states, due and not-after times, claims, leases and retries.


def expire_overdue(
    now: datetime, outbox=Reminder, why: str = "the window closed before the reminder could go out"
) -> int:
    """Rows whose time has passed before they could go out are expired, never sent late."""
    result = db.session.execute(
        update(outbox)
        .where(outbox.state.in_(RETRYABLE), outbox.not_after <= now)
        .values(state=ReminderState.EXPIRED, last_error=why)
    )
    return result.rowcount or 0


def _claimable(now: datetime, outbox=Reminder, lease: timedelta = LEASE):
    """Rows a pass may take: pending or failed, or 'sending' by a pass that died (lease over)."""
    return or_(outbox.state.in_(RETRYABLE), (outbox.state == ReminderState.SENDING) & (outbox.claimed_at < now - lease))


def candidates(now: datetime, limit: int = CLAIM_BATCH, outbox=Reminder, lease: timedelta = LEASE) -> list[int]:
    """Due rows that look free. Another pass may take them first: ``take`` decides."""
    return list(
        db.session.scalars(
            select(outbox.id)
            .where(
                _claimable(now, outbox, lease),
                outbox.due_at <= now,
                outbox.not_after > now,
                or_(outbox.next_attempt_at.is_(None), outbox.next_attempt_at <= now),
            )
            .order_by(outbox.due_at, outbox.id)
            .limit(limit)
        )
    )


def take(ids: list[int], now: datetime, token: str, outbox=Reminder, lease: timedelta = LEASE) -> list[int]:
    """Claim those of ``ids`` still free, in one conditional UPDATE; returns the ones now ours.

    The condition is re-checked by the database against committed data (PostgreSQL re-reads a
    row another transaction just changed; SQLite runs one writer at a time), so a row taken by
    another pass in the meantime is not taken again.
    """
    if not ids:
        return []
    db.session.execute(
        update(outbox)
        .where(outbox.id.in_(ids), _claimable(now, outbox, lease))
        .values(state=ReminderState.SENDING, claim_token=token, claimed_at=now)
    )
    db.session.commit()  # the claim is visible to every other pass before anything is sent
    return list(
        db.session.scalars(select(outbox.id).where(outbox.claim_token == token, outbox.state == ReminderState.SENDING))
    )


def claim(now: datetime, token: str, limit: int = CLAIM_BATCH, lease: timedelta = LEASE) -> list[int]:
    """Atomically take up to ``limit`` due rows for this pass; returns their ids."""
    return take(candidates(now, limit, lease=lease), now, token, lease=lease)


def run_pass(app=None, now: datetime | None = None) -> PassResult:
    """One pass: plan owed reminders, expire stale ones, then claim and send due ones in batches."""
    now = now or now_utc()
    config = (app or current_app).config
    result = PassResult()
    if is_locked(current_study()):
        db.session.commit()
        result.locked = True
        return result
    # Each step commits on its own: on SQLite a write transaction holds the database's one write
    # lock, and a step's reads must not keep it (another scheduler's lease renewals, and every
    # participant's submit, wait for it).
    result.planned = plan(now, short_transactions=True, since_last_pass=True)
    db.session.commit()
    result.expired = expire_overdue(now)
    db.session.commit()
    study = current_study()
    if study is not None:
        result.follow_up_tasks, result.follow_up_resolved = judge(study, now)
        result.digests = due_digests(study, now, config)
    db.session.commit()
    email, push = EmailChannel(config), PushChannel(config)
    lease = timedelta(seconds=float(config.get("OUTBOX_LEASE_SECONDS") or LEASE.total_seconds()))
    # Outcomes are written on a connection of their own in autocommit mode: each one is durable
    # the moment it is written, without a transaction's round trips around every message.
    recorder = db.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
    hold = Claim(now, lease, recorder)
    try:
        while True:
            ids = claim(hold.now(), hold.token, lease=lease)
            if not ids:
                break
            _send_batch(ids, now, email, push, result, recorder, hold)
            db.session.commit()
        _send_staff_messages(now, hold, email, result, recorder)
    finally:
        email.close()
        recorder.close()
        # The last look for due rows may have found none and left its transaction open: on SQLite
        # that would keep the write lock (BEGIN IMMEDIATE) after the pass, and a live pass's
        # renewals behind it.
        db.session.commit()
    return result


def _send_staff_messages(now, hold: Claim, email, result, recorder) -> None:
    """Alerts and notices to the study team: claimed, sent and recorded like reminders."""
    expire_overdue(now, StaffMessage, why="too old to send")
    db.session.commit()
    token, lease = hold.token, hold.lease
    while True:
        if not take(
            candidates(hold.now(), outbox=StaffMessage, lease=lease),
            hold.now(),
            token,
            outbox=StaffMessage,
            lease=lease,
        ):
            return
        messages = db.session.execute(
            select(
                StaffMessage.id,
                StaffMessage.kind,
                StaffMessage.recipient,
                StaffMessage.subject,
                StaffMessage.body,
                StaffMessage.attempts,
                StaffMessage.not_after,
            ).where(StaffMessage.claim_token == token, StaffMessage.state == ReminderState.SENDING)
        ).all()
        db.session.commit()
        for message in messages:
            hold.renew(StaffMessage)
            values = {"claim_token": None}
            try:
                email.send(
                    Notice(kind=message.kind, to_email=message.recipient, subject=message.subject, text=message.body)
                )
            except NoChannel as missing:
                values.update(state=ReminderState.NOT_SENT, last_error=str(missing))
                result.not_sent += 1
                result.unsent_texts.append(
                    f"NOT SENT ({missing}): {message.kind} to {message.recipient}\n"
                    f"Subject: {message.subject}\n{message.body}"
                )
            except Exception as failure:  # noqa: BLE001  one message's failure never stops the pass
                retry_at = now + backoff(message.attempts + 1)
                state = ReminderState.FAILED if retry_at < message.not_after else ReminderState.EXPIRED
                values.update(
                    state=state, attempts=message.attempts + 1, next_attempt_at=retry_at, last_error=str(failure)[:1000]
                )
                result.errors.append(str(failure)[:200])
            else:
                values.update(state=ReminderState.SENT, sent_at=now, attempts=message.attempts + 1, last_error=None)
                result.staff_sent += 1
            recorder.execute(update(StaffMessage).where(StaffMessage.id == message.id).values(**values))
        if len(messages) < CLAIM_BATCH:
            return


def _send_batch(ids, now, email, push, result, recorder, hold: Claim) -> None:
    """Send the claimed rows, committing each row's outcome as soon as it is known.

    Any error of one message (a refused address, a push service error, a bug) is recorded on
    that row and the pass goes on with the next.
    """
    # The assessment read model, with the reminder's own columns and the participant beside it.
    rows = db.session.execute(
        rows_query()
        .add_columns(
            Reminder.id.label("reminder_id"),
            Reminder.kind,
            Reminder.channel,
            Reminder.attempts,
            Reminder.not_after,
            Participant.email,
            Participant.email_reminders,
            Participant.status.label("participant_status"),
            Participant.language,
            Participant.link_token_hash,
        )
        .join(Reminder, Reminder.assessment_id == Assessment.id)
        .where(Reminder.id.in_(ids))
    ).all()
    subscriptions: dict[int, list[PushSubscription]] = {}
    if any(row.channel == ReminderChannel.PUSH for row in rows):
        for subscription in db.session.scalars(
            select(PushSubscription).where(
                PushSubscription.participant_id.in_({row.participant_id for row in rows}),
                PushSubscription.ended_at.is_(None),
            )
        ):
            subscriptions.setdefault(subscription.participant_id, []).append(subscription)
    protocols = {
        v.id: protocol_of(v)
        for v in db.session.scalars(
            select(ProtocolVersion).where(ProtocolVersion.id.in_({row.protocol_version_id for row in rows}))
        )
    }
    db.session.commit()  # end the read: on SQLite the outcomes' writes must not wait for it
    for row in rows:
        hold.renew(Reminder)
        # Plain values, not ORM objects: each outcome's commit would expire them.
        participant = SimpleNamespace(id=row.participant_id, link_token_hash=row.link_token_hash)
        if (
            state_at(row, now) not in (AssessmentState.OPEN, AssessmentState.UPCOMING)
            or row.participant_status not in ParticipantStatus.in_diary()
        ):
            _record(
                recorder,
                row.reminder_id,
                result,
                ReminderState.CANCELLED,
                last_error="entry completed or no longer needed",
            )
            continue
        protocol = protocols[row.protocol_version_id]
        with force_locale(row.language):
            label = in_language(protocol.timepoint(row.timepoint).participant_label, row.language)
            if protocol.has_infusions:  # else day 1 is the randomization date: no infusion to number
                label = _("Infusion %(number)s · %(label)s", number=row.period, label=label)
            closes = local_when(row.window_close, row.timezone, now, row.language)
        message = Message(
            kind=row.kind,
            to_email=row.email,
            label=label,
            closes=closes,
            link=reminder_link(participant, row.reminder_id),
            language=row.language,
        )
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
        except NoChannel as missing:
            _record(recorder, row.reminder_id, result, ReminderState.NOT_SENT, last_error=str(missing))
            result.unsent_texts.append(
                f"NOT SENT ({missing}): {row.kind} reminder to {row.email or row.channel}\n"
                f"Subject: {message.subject}\n{message.text}"
            )
            continue
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
            _record(
                recorder,
                row.reminder_id,
                result,
                state,
                attempted=True,
                next_attempt_at=retry_at,
                last_error=text[:1000],
            )
            result.errors.append(text[:200])
            continue
        _record(recorder, row.reminder_id, result, ReminderState.SENT, attempted=True, sent_at=now)


# One statement for every outcome, built once: recording is on the path of every message.
RECORD_OUTCOME = (
    update(Reminder)
    .where(Reminder.id == bindparam("reminder_id"))
    .values(
        state=bindparam("state"),
        sent_at=bindparam("sent_at"),
        next_attempt_at=bindparam("next_attempt_at"),
        last_error=bindparam("last_error"),
        attempts=Reminder.attempts + bindparam("attempted"),
        claim_token=None,
    )
)


def _record(
    recorder,
    reminder_id: int,
    result: PassResult,
    state: ReminderState,
    *,
    attempted: bool = False,
    sent_at: datetime | None = None,
    next_attempt_at: datetime | None = None,
    last_error: str | None = None,
) -> None:
    """Write one row's outcome, durable at once (a crash after this never re-sends it)."""
    recorder.execute(
        RECORD_OUTCOME,
        {
            "reminder_id": reminder_id,
            "state": state,
            "sent_at": sent_at,
            "next_attempt_at": next_attempt_at,
            "last_error": last_error,
            "attempted": int(attempted),
        },
    )
    if state == ReminderState.SENT:
        result.sent += 1
    elif state == ReminderState.CANCELLED:
        result.cancelled += 1
    elif state == ReminderState.FAILED:
        result.failed += 1
    elif state == ReminderState.EXPIRED:
        result.expired += 1
    elif state == ReminderState.NOT_SENT:
        result.not_sent += 1


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
