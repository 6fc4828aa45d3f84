"""Which reminders are owed, and when: pure rules plus the step that writes outbox rows.

A reminder goes out when a window opens and again a set time before it closes, for the time
points whose setting the protocol names (home ones by default). A reminder that would fall in
the participant's quiet hours (their own clock) waits for the quiet hours to end, and is not
sent at all if the window has closed by then.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import bindparam, func, not_, select, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from ..database import reading_only
from ..dosing import changes
from ..dosing.assessments import waits_for_the_infusion_sql
from ..events import entry_completed, reminder_channel_off
from ..extensions import db
from ..models import Assessment, Participant, Period, ProtocolVersion, PushSubscription, Reminder, Submission
from ..protocol import Protocol
from ..study.trial import protocol_of
from ..vocabulary import ParticipantStatus, ReminderChannel, ReminderKind, ReminderState

# Rows that have not gone out and may still: planning may move them, completion cancels them.
RETRYABLE = (ReminderState.PENDING, ReminderState.FAILED)


def _clock(text: str) -> time:
    hours, minutes = text.split(":")
    return time(int(hours), int(minutes))


def quiet_shift(moment: datetime, tz_name: str, quiet_start: str, quiet_end: str) -> datetime:
    """``moment`` moved to the end of the quiet hours if it falls inside them (local clock).

    Quiet hours may wrap midnight (22:00-07:00). The end is found on the local calendar, so a
    daylight-saving change during the night still gives 07:00 on the participant's clock.
    """
    tz = ZoneInfo(tz_name)
    local = moment.astimezone(tz)
    start, end = _clock(quiet_start), _clock(quiet_end)
    now_clock = local.time().replace(tzinfo=None)
    wraps = start > end
    inside = (now_clock >= start or now_clock < end) if wraps else (start <= now_clock < end)
    if not inside:
        return moment
    end_date = local.date()
    if wraps and now_clock >= start:
        end_date += timedelta(days=1)
    wall = datetime.combine(end_date, end)
    return wall.replace(tzinfo=tz, fold=0).astimezone(moment.tzinfo)


@dataclass(frozen=True)
class Owed:
    kind: str
    due_at: datetime
    not_after: datetime


def owed_reminders(
    protocol: Protocol,
    timepoint_code: str,
    *,
    window_open: datetime,
    window_close: datetime,
    tz_name: str,
    quiet: tuple[str, str],
) -> list[Owed]:
    """The reminders one assessment is owed (before quiet hours would push them past the close)."""
    rules = protocol.reminders
    timepoint = protocol.timepoint(timepoint_code)
    if timepoint.setting not in rules.settings:
        return []
    owed = []
    if rules.on_open:
        owed.append(Owed(ReminderKind.WINDOW_OPEN, quiet_shift(window_open, tz_name, *quiet), window_close))
    if rules.closing_soon_before is not None:
        closing = window_close - rules.closing_soon_before.nominal
        if closing > window_open:  # short windows get only the opening reminder
            owed.append(Owed(ReminderKind.CLOSING_SOON, quiet_shift(closing, tz_name, *quiet), window_close))
    return [o for o in owed if o.due_at < o.not_after]


def quiet_hours(reminder_from: str | None, reminder_until: str | None, protocol: Protocol) -> tuple[str, str]:
    """The participant's preferred reminder hours, if set, else the protocol's quiet hours."""
    if reminder_from and reminder_until:
        return reminder_until, reminder_from  # quiet = outside their hours
    return protocol.reminders.quiet_start, protocol.reminders.quiet_end


# Rows written per transaction when the scheduler plans in short transactions: on SQLite each
# write transaction holds the one write lock, and a participant's submit waits behind it.
WRITE_BATCH = 500


def plan(
    now: datetime,
    horizon: timedelta = timedelta(days=3),
    *,
    short_transactions: bool = False,
    since_last_pass: bool = False,
) -> int:
    """Make sure every reminder owed for windows closing after ``now`` (and opening within the
    horizon) has its outbox row, and that pending rows follow re-anchored windows.

    Idempotent: rows are keyed by (assessment, kind, channel), and inserting a row another
    scheduler has just inserted does nothing. Returns how many rows this call added.

    ``short_transactions``: the reading and judging run in read transactions (on SQLite,
    without the write lock), and the writes commit in batches of ``WRITE_BATCH``, so no submit
    waits for the whole pass. ``since_last_pass`` (the scheduler's pass): only participants
    something happened to since the last pass, or with a window coming into the horizon, are
    looked at (``dosing/changes.py``), a chunk at a time.
    """
    if since_last_pass:
        version_id = db.session.scalar(select(func.max(ProtocolVersion.id)))
        scope = changes.since_last_pass(WATERMARK, None, now, version_id, horizon=horizon)
    else:
        scope = changes.Since(full=True)
    added = 0
    for chunk in changes.chunks(None, scope) if since_last_pass else [None]:
        if short_transactions:
            db.session.commit()  # whatever came before is done: the read starts its own transaction
            with reading_only():
                new_rows, moves = _owed(now, horizon, chunk)
                db.session.commit()  # the read transaction ends before any write begins
        else:
            new_rows, moves = _owed(now, horizon, chunk)
        _write_owed(new_rows, moves, commit_each=short_transactions)
        added += len(new_rows)
    if since_last_pass:
        changes.passed(WATERMARK, now, scope, version_id)
    return added


# The name of planning's watermark (``PassWatermark``).
WATERMARK = "planning"


def _owed(now: datetime, horizon: timedelta, participant_ids: list[int] | None = None):
    """What planning should write: (new outbox rows, moves of pending rows to new times), for
    every participant or those of ``participant_ids``."""
    query = (
        select(
            Assessment.id,
            Assessment.timepoint,
            Assessment.window_open,
            Assessment.window_close,
            Assessment.protocol_version_id,
            Participant.id.label("participant_id"),
            Participant.email,
            Participant.email_reminders,
            Participant.push_reminders,
            Participant.timezone,
            Participant.reminder_from,
            Participant.reminder_until,
        )
        .join(Period, Assessment.period_id == Period.id)
        .join(Participant, Period.participant_id == Participant.id)
        .outerjoin(Submission, Submission.assessment_id == Assessment.id)
        .where(
            Assessment.window_close > now,
            Assessment.window_open <= now + horizon,
            Assessment.not_applicable.is_(False),
            Submission.id.is_(None),
            Participant.status.in_(ParticipantStatus.in_diary()),
            # With only a planned start, only the pre-dose entries (BL) can be made yet.
            not_(waits_for_the_infusion_sql()),
        )
    )
    if participant_ids is not None:
        query = query.where(Participant.id.in_(participant_ids))
    rows = db.session.execute(query).all()
    if not rows:
        return [], []
    ids = [row.id for row in rows]
    existing = {}
    for start in range(0, len(ids), 5000):  # keep each IN list a reasonable size
        for reminder in db.session.execute(
            select(
                Reminder.id,
                Reminder.assessment_id,
                Reminder.kind,
                Reminder.channel,
                Reminder.state,
                Reminder.due_at,
                Reminder.not_after,
            ).where(Reminder.assessment_id.in_(ids[start : start + 5000]))
        ):
            existing[(reminder.assessment_id, reminder.kind, reminder.channel)] = reminder
    with_push = set(
        db.session.scalars(select(PushSubscription.participant_id).where(PushSubscription.ended_at.is_(None)))
    )
    versions = {
        v.id: protocol_of(v)
        for v in db.session.scalars(
            select(ProtocolVersion).where(ProtocolVersion.id.in_({row.protocol_version_id for row in rows}))
        )
    }
    new_rows, moves = [], []
    for row in rows:
        protocol = versions[row.protocol_version_id]
        channels = []
        if row.email and row.email_reminders:
            channels.append(ReminderChannel.EMAIL)
        if row.push_reminders and row.participant_id in with_push:
            channels.append(ReminderChannel.PUSH)
        if not channels:
            continue
        owed = owed_reminders(
            protocol,
            row.timepoint,
            window_open=row.window_open,
            window_close=row.window_close,
            tz_name=row.timezone,
            quiet=quiet_hours(row.reminder_from, row.reminder_until, protocol),
        )
        for item in owed:
            for channel in channels:
                known = existing.get((row.id, item.kind, channel))
                if known is None:
                    new_rows.append(
                        {
                            "assessment_id": row.id,
                            "kind": item.kind,
                            "channel": channel,
                            "state": ReminderState.PENDING,
                            "due_at": item.due_at,
                            "not_after": item.not_after,
                            "attempts": 0,
                            "created_at": now,
                        }
                    )
                elif known.state == ReminderState.PENDING and (known.due_at, known.not_after) != (
                    item.due_at,
                    item.not_after,
                ):
                    # The dose time was corrected: the reminder follows the re-anchored window.
                    moves.append({"moved_id": known.id, "moved_due": item.due_at, "moved_not_after": item.not_after})
    return new_rows, moves


def _write_owed(new_rows: list[dict], moves: list[dict], *, commit_each: bool) -> None:
    # Another scheduler may be planning the same rows right now: the unique key decides, and
    # whoever comes second simply adds nothing. A move applies only to a row still pending.
    insert = sqlite_insert if db.engine.dialect.name == "sqlite" else postgresql_insert
    for start in range(0, len(moves), WRITE_BATCH):
        db.session.execute(MOVE_PENDING, moves[start : start + WRITE_BATCH])
        if commit_each:
            db.session.commit()
    for start in range(0, len(new_rows), WRITE_BATCH):
        db.session.execute(
            insert(Reminder).on_conflict_do_nothing(index_elements=["assessment_id", "kind", "channel"]),
            new_rows[start : start + WRITE_BATCH],
        )
        if commit_each:
            db.session.commit()
    db.session.flush()


MOVE_PENDING = (
    update(Reminder.__table__)
    .where(
        Reminder.__table__.c.id == bindparam("moved_id"),
        Reminder.__table__.c.state == ReminderState.PENDING,
    )
    .values(due_at=bindparam("moved_due"), not_after=bindparam("moved_not_after"))
)


def record_opened(reminder_id: int, participant_id: int, now: datetime) -> bool:
    """The participant followed a reminder's link: the log can tell "ignored" from "opened".
    Only the first opening counts; a link of someone else's reminder records nothing."""
    own = select(Assessment.id).join(Period).where(Period.participant_id == participant_id)
    done = db.session.execute(
        update(Reminder)
        .where(Reminder.id == reminder_id, Reminder.opened_at.is_(None), Reminder.assessment_id.in_(own))
        .values(opened_at=now)
    )
    return done.rowcount == 1


@entry_completed.connect
def cancel_for(assessment_id: int, *, reason: str) -> None:
    """Completing an entry cancels its reminders that have not gone out."""
    # Core on the session's connection: nothing in the session holds these rows (and the ORM's
    # statement path costs a submit time).
    db.session.connection().execute(CANCEL_FOR, {"cancel_assessment": assessment_id, "cancel_reason": reason})


# Built once (parameters are passed at each call).
CANCEL_FOR = (
    update(Reminder.__table__)
    .where(
        Reminder.__table__.c.assessment_id == bindparam("cancel_assessment"), Reminder.__table__.c.state.in_(RETRYABLE)
    )
    .values(state=ReminderState.CANCELLED, last_error=bindparam("cancel_reason"))
)


@reminder_channel_off.connect
def cancel_channel(participant_id: int, *, channel: str) -> None:
    """A channel turned off: its pending reminders are cancelled, not sent."""
    assessment_ids = select(Assessment.id).join(Period).where(Period.participant_id == participant_id)
    db.session.execute(
        update(Reminder)
        .where(Reminder.assessment_id.in_(assessment_ids), Reminder.channel == channel, Reminder.state.in_(RETRYABLE))
        .values(state=ReminderState.CANCELLED, last_error=f"{channel} turned off")
    )
