"""The installation's health as staff and monitoring see it: is the scheduler alive, is anything
owed to people stuck in the outbox, can safety messages be delivered at all, and what is this
server (database, migration, version). The staff status page, its JSON twin, every staff page's
banner and ``flask diary status`` all read ``gather`` or ``banners``; no secret is ever shown.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import func, select, text
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from ..extensions import db
from ..models import Reminder, SchedulerHeartbeat, StaffMessage
from ..vocabulary import ReminderState, StaffMessageKind

# A scheduler that has not finished a pass for this long is silent: reminders and alerts wait.
SILENT_AFTER = timedelta(minutes=3)
# Messages that reach a person about their safety: one that cannot go out is a problem at once.
SAFETY_KINDS = (StaffMessageKind.SEVERE_ALERT, StaffMessageKind.CODE_BREAK)
# A safety message that was never delivered stays a problem this long (then the status page's
# outbox table still lists it, but the banner and the exit code let go).
UNDELIVERED_WINDOW = timedelta(days=7)
UNDELIVERED = ReminderState.undelivered()
WAITING = ReminderState.waiting()


def scheduler_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"[:120]


def beat(now: datetime, summary: str, took_ms: int, started_at: datetime) -> None:
    """Record that this scheduler finished a pass (one row per scheduler process, upserted)."""
    insert = sqlite_insert if db.engine.dialect.name == "sqlite" else postgresql_insert
    row = {
        "name": scheduler_name(),
        "started_at": started_at,
        "last_pass_at": now,
        "last_pass_ms": took_ms,
        "last_summary": summary[:500],
    }
    db.session.execute(
        insert(SchedulerHeartbeat)
        .values(**row)
        .on_conflict_do_update(
            index_elements=["name"], set_={key: row[key] for key in ("last_pass_at", "last_pass_ms", "last_summary")}
        )
    )


def smtp_missing_reason(config) -> str | None:
    return None if config.get("SMTP_HOST") else "no SMTP server configured (DIARY_SMTP_HOST)"


@dataclass
class Status:
    now: datetime
    last_pass_at: datetime | None
    schedulers: list[dict]
    outbox: dict[str, dict[str, dict[str, int]]]
    oldest_unsent_safety: dict | None
    undelivered_safety: int
    channels: dict
    database: dict
    app_version: str
    problems: list[str] = field(default_factory=list)

    @property
    def scheduler_alive(self) -> bool:
        return self.last_pass_at is not None and self.now - self.last_pass_at <= SILENT_AFTER

    def as_json(self) -> dict:
        def iso(moment):
            return moment.isoformat() if moment else None

        return {
            "ok": not self.problems,
            "problems": self.problems,
            "checked_utc": iso(self.now),
            "scheduler": {
                "alive": self.scheduler_alive,
                "last_pass_utc": iso(self.last_pass_at),
                "silent_after_seconds": int(SILENT_AFTER.total_seconds()),
                "processes": [
                    {**s, "started_utc": iso(s["started_utc"]), "last_pass_utc": iso(s["last_pass_utc"])}
                    for s in self.schedulers
                ],
            },
            "outbox": self.outbox,
            "oldest_unsent_safety_message": (
                None
                if self.oldest_unsent_safety is None
                else {**self.oldest_unsent_safety, "created_utc": iso(self.oldest_unsent_safety["created_utc"])}
            ),
            "undelivered_safety_messages": self.undelivered_safety,
            "channels": self.channels,
            "database": self.database,
            "app_version": self.app_version,
        }


def _counts(model) -> dict[str, dict[str, int]]:
    counts: dict[str, dict[str, int]] = {}
    for kind, state, count in db.session.execute(
        select(model.kind, model.state, func.count()).group_by(model.kind, model.state)
    ):
        counts.setdefault(kind, {})[state] = count
    return counts


def _migration(config) -> dict:
    from alembic.script import ScriptDirectory

    from ..database import MIGRATIONS

    try:
        stored = db.session.execute(text("SELECT version_num FROM alembic_version")).scalars().all()
    except Exception:  # noqa: BLE001  a database made by create_all (tests) has no version table
        db.session.rollback()
        stored = []
    heads = ScriptDirectory(str(MIGRATIONS)).get_heads()
    # No version table: a database made without migrations (the test suite's), nothing to compare.
    return {
        "migration": ", ".join(stored) or None,
        "migration_head": ", ".join(heads),
        "migrated": sorted(stored) == sorted(heads) if stored else None,
    }


def _channels(config) -> dict:
    alerts = config.get("SITE_ALERTS") or {}
    return {
        "email": {
            "smtp_host": config.get("SMTP_HOST") or None,
            "smtp_port": int(config.get("SMTP_PORT") or 25),
            "starttls": bool(config.get("SMTP_STARTTLS")),
            "login": bool(config.get("SMTP_USERNAME")),
            "from": config.get("MAIL_FROM"),
            "problem": smtp_missing_reason(config),
        },
        "web_push": {
            "configured": bool(config.get("VAPID_PRIVATE_KEY")),
            "public_key_starts": (config.get("VAPID_PUBLIC_KEY") or "")[:12] or None,
            "subject": config.get("VAPID_SUBJECT"),
        },
        "alert_recipients": {site: list(addresses) for site, addresses in sorted(alerts.items())},
    }


def _undelivered_safety(now: datetime):
    return (
        StaffMessage.kind.in_(SAFETY_KINDS),
        StaffMessage.sent_at.is_(None),
        StaffMessage.state.in_(UNDELIVERED),
        StaffMessage.created_at >= now - UNDELIVERED_WINDOW,
    )


def gather(config, now: datetime) -> Status:
    """Everything the status page shows, in a fixed number of queries."""
    schedulers = [
        {
            "name": row.name,
            "started_utc": row.started_at,
            "last_pass_utc": row.last_pass_at,
            "last_pass_ms": row.last_pass_ms,
            "last_summary": row.last_summary,
        }
        for row in db.session.scalars(
            select(SchedulerHeartbeat).order_by(SchedulerHeartbeat.last_pass_at.desc()).limit(10)
        )
    ]
    last = schedulers[0]["last_pass_utc"] if schedulers else None
    oldest = db.session.execute(
        select(
            StaffMessage.kind,
            StaffMessage.recipient,
            StaffMessage.state,
            StaffMessage.created_at,
            StaffMessage.last_error,
        )
        .where(
            StaffMessage.kind.in_(SAFETY_KINDS),
            StaffMessage.sent_at.is_(None),
            StaffMessage.state.in_(WAITING + (ReminderState.NOT_SENT,)),
        )
        .order_by(StaffMessage.created_at, StaffMessage.id)
        .limit(1)
    ).first()
    undelivered = db.session.scalar(select(func.count()).select_from(StaffMessage).where(*_undelivered_safety(now)))
    engine = db.engine
    version = engine.dialect.server_version_info
    status = Status(
        now=now,
        last_pass_at=last,
        schedulers=schedulers,
        outbox={"reminders": _counts(Reminder), "staff_messages": _counts(StaffMessage)},
        oldest_unsent_safety=None
        if oldest is None
        else {
            "kind": oldest.kind,
            "recipient": oldest.recipient,
            "state": oldest.state,
            "created_utc": oldest.created_at,
            "reason": oldest.last_error,
        },
        undelivered_safety=undelivered or 0,
        channels=_channels(config),
        database={
            "engine": engine.dialect.name,
            "server_version": ".".join(str(part) for part in version) if version else None,
            **_migration(config),
        },
        app_version=config.get("DIARY_VERSION", ""),
    )
    status.problems = problems(status, config)
    return status


def problems(status: Status, config) -> list[str]:
    found = []
    if not status.scheduler_alive:
        found.append(
            "The scheduler is silent: "
            + (
                f"its last pass was at {status.last_pass_at:%Y-%m-%d %H:%M} UTC"
                if status.last_pass_at
                else "no pass was ever recorded"
            )
            + ". Reminders and alerts are not going out."
        )
    if status.undelivered_safety:
        found.append(
            f"{status.undelivered_safety} safety message(s) (severe-answer alerts, code-break notices) "
            "could not be emailed in the last 7 days; see the outbox below."
        )
    reason = smtp_missing_reason(config)
    if reason and config.get("SITE_ALERTS"):
        found.append(
            f"Safety alerts cannot be emailed: {reason}. They are printed by the scheduler and kept as not_sent."
        )
    if status.database.get("migrated") is False:
        found.append("The database is not at the code's migration head: run 'flask --app wsgi diary init'.")
    return found


def banners(config, now: datetime) -> list[str]:
    """What every staff page says at its top: the scheduler silent, safety messages that could
    not be (or cannot be) delivered. Two small queries."""
    found = []
    last = db.session.scalar(select(func.max(SchedulerHeartbeat.last_pass_at)))
    if last is None or now - last > SILENT_AFTER:
        found.append(
            "The scheduler is not running"
            + (f" (last pass {last:%H:%M} UTC)" if last else "")
            + ": reminders and safety alerts are not going out."
        )
    undelivered = db.session.scalar(select(func.count()).select_from(StaffMessage).where(*_undelivered_safety(now)))
    reason = smtp_missing_reason(config)
    if undelivered:
        found.append(
            f"{undelivered} safety message(s) were not emailed" + (f": {reason}" if reason else "") + ". See Status."
        )
    elif reason and config.get("SITE_ALERTS"):
        found.append(f"Safety alerts cannot be emailed: {reason}.")
    return found
