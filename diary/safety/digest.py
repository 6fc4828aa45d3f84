"""The daily digest: once a day, at the site's morning on its own clock, each site's alert
recipients get one email listing the open follow-up calls, the side-effect reviews past their
deadline, and the messages that could not be delivered since the last digest. Enqueued through
the outbox with a key naming the site and the local date, so it exists once whatever the number
of passes or schedulers; a scheduler that was down in the morning sends it when it comes back.
"""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import func, select

from ..extensions import db
from ..models import Assessment, FollowUpTask, Participant, Period, Reminder, SideEffectReport, StaffMessage
from ..participants.links import base_url
from ..vocabulary import ReminderState, ReviewState, StaffMessageKind
from .alerts import enqueue, site_recipients


def due_digests(study, now: datetime, config) -> int:
    """Enqueue today's digest of every site whose morning has come; returns how many emails."""
    if config.get("DIGEST_HOUR") is None:
        return 0  # digests turned off
    hour = int(config["DIGEST_HOUR"])
    zones = config.get("SITE_TIMEZONES") or {}
    sites = set(db.session.scalars(select(Participant.site).where(Participant.study_id == study.id).distinct()))
    added = 0
    for site in sorted(sites):
        zone = ZoneInfo(zones.get(site) or config.get("DEFAULT_TIMEZONE") or "UTC")
        local = now.astimezone(zone)
        if local.time() < time(hour, 0):
            continue
        recipients = site_recipients(site)
        if not recipients:
            continue
        morning = datetime.combine(local.date(), time(hour, 0), zone)
        body = digest_text(study, site, now, since=morning - timedelta(days=1))
        added += enqueue(
            StaffMessageKind.FOLLOW_UP_DIGEST,
            key=f"digest:{site}:{local.date().isoformat()}",
            recipients=recipients,
            subject=f"diary: daily digest for {site}, {local:%Y-%m-%d}",
            body=body,
            participant_id=None,
            now=now,
            lifetime=morning + timedelta(days=1) - now,
        )
    return added


def digest_text(study, site: str, now: datetime, since: datetime) -> str:
    """What the digest says for one site (never the allocation)."""
    in_site = (Participant.study_id == study.id, Participant.site == site)
    tasks = db.session.execute(
        select(Participant.code, FollowUpTask.reason, FollowUpTask.due_at)
        .join(Participant, FollowUpTask.participant_id == Participant.id)
        .where(*in_site, FollowUpTask.closed_at.is_(None))
        .order_by(FollowUpTask.due_at)
        .limit(50)
    ).all()
    reviews = db.session.execute(
        select(Participant.code, SideEffectReport.term, SideEffectReport.severity, SideEffectReport.review_due_at)
        .join(Period, SideEffectReport.period_id == Period.id)
        .join(Participant, Period.participant_id == Participant.id)
        .where(*in_site, SideEffectReport.review_state == ReviewState.NEW, SideEffectReport.review_due_at < now)
        .order_by(SideEffectReport.review_due_at)
        .limit(50)
    ).all()
    reminders = db.session.scalar(
        select(func.count())
        .select_from(Reminder)
        .join(Assessment)
        .join(Period)
        .join(Participant, Period.participant_id == Participant.id)
        .where(*in_site, Reminder.state.in_(ReminderState.undelivered()), Reminder.created_at >= since)
    )
    staff = db.session.execute(
        select(StaffMessage.kind, StaffMessage.recipient, StaffMessage.state, StaffMessage.last_error)
        .where(StaffMessage.state.in_(ReminderState.undelivered()), StaffMessage.created_at >= since)
        .order_by(StaffMessage.created_at)
        .limit(20)
    ).all()
    lines = [f"Daily digest for site {site}, {now.astimezone(UTC):%Y-%m-%d %H:%M} UTC.", ""]
    lines.append(f"Open follow-up calls: {len(tasks)}")
    lines += [
        f"- {code}: {reason} (due {due:%Y-%m-%d %H:%M} UTC{', OVERDUE' if due < now else ''})"
        for code, reason, due in tasks
    ]
    lines += ["", f"Side-effect reviews past their deadline: {len(reviews)}"]
    lines += [
        f"- {code}: {term.replace('_', ' ')} ({severity or 'free text'}), due {due:%Y-%m-%d %H:%M} UTC"
        for code, term, severity, due in reviews
    ]
    lines += [
        "",
        f"Reminders not delivered since {since.astimezone(UTC):%Y-%m-%d %H:%M} UTC: {reminders or 0}",
        f"Study team messages not delivered: {len(staff)}",
    ]
    lines += [
        f"- {kind.replace('_', ' ')} to {recipient}: {state}" + (f" ({error})" if error else "")
        for kind, recipient, state, error in staff
    ]
    lines += ["", f"Open the diary: {base_url()}/staff/"]
    return "\n".join(lines) + "\n"
