"""Backups of the embedded SQLite database, and the check that a backup can be restored.

PostgreSQL is backed up with its own tools (``pg_dump``; see the README).
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import func, select

from ..extensions import db
from ..models import AuditEvent


@dataclass
class RestoreCheck:
    integrity: str
    tables: dict[str, tuple[int, int]] = field(default_factory=dict)  # table -> (backup, live)
    last_event_backup: tuple | None = None
    last_event_live_match: bool = False

    @property
    def ok(self) -> bool:
        """Sound, and the live database holds everything the backup does (it can only be ahead)."""
        return (
            self.integrity == "ok"
            and self.last_event_live_match
            and all(live >= backup for backup, live in self.tables.values())
        )


def backup_sqlite(source_path: str, target: Path) -> None:
    """SQLite's online backup API: a consistent copy even while the app writes."""
    with sqlite3.connect(source_path) as source, sqlite3.connect(target) as copy:
        source.backup(copy)


def restore_check(path: Path) -> RestoreCheck:
    """Open a backup read-only, check its integrity, and compare it with the live database:
    row counts of every table and the audit trail's last event."""
    if not path.is_file():
        return RestoreCheck(integrity=f"{path} does not exist")
    try:
        backup = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            integrity = backup.execute("PRAGMA integrity_check").fetchone()[0]
            result = RestoreCheck(integrity=integrity)
            for table in db.metadata.sorted_tables:
                in_backup = backup.execute(f'SELECT count(*) FROM "{table.name}"').fetchone()[0]
                live = db.session.scalar(select(func.count()).select_from(table))
                result.tables[table.name] = (in_backup, live)
            row = backup.execute("SELECT id, at, actor, action FROM audit_event ORDER BY id DESC LIMIT 1").fetchone()
        finally:
            backup.close()
    except sqlite3.DatabaseError as error:
        return RestoreCheck(integrity=f"not a readable SQLite database: {error}")
    result.last_event_backup = row
    if row is None:
        result.last_event_live_match = True  # an empty trail in the backup: nothing to find
    else:
        live = db.session.get(AuditEvent, row[0])
        result.last_event_live_match = live is not None and (live.actor, live.action) == (row[2], row[3])
    return result
