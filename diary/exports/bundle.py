"""The export bundle: one file per table, a data dictionary and a manifest, as a folder or ZIP.

Both the CLI and the analysts' download call ``write_bundle``; export logic lives only here.
"""
from __future__ import annotations

import hashlib
import json
import zipfile
from datetime import datetime
from pathlib import Path

from flask import current_app

from .. import audit
from ..errors import Refused
from ..extensions import db
from ..study import protocol_of
from ..vocabulary import Role
from .schema import TABLES, dictionary_rows
from .tables import BUILDERS, ExportContext
from .writers import FORMATS, WRITERS, iso_utc

TABLE_ORDER = ["assessments", "responses", "fatigue_endpoints", "side_effects", "adherence", "data_dictionary"]


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def write_bundle(out_dir: Path, *, study, now: datetime, fmt: str = "csv",
                 progress=None, identified: bool = False) -> dict:
    """Write every table of ``study`` into ``out_dir`` and return the manifest.

    Without ``identified`` (the default) no file carries a direct identifier. With it, a
    ``participants_identified`` table maps codes to contact details; callers must check that
    the person asking is allowed to, and audit it.

    ``progress(table, rows_written)`` is called as batches are written (for a progress bar).
    The database is read in one read-only transaction, so the tables agree with each other.
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown format '{fmt}'; use one of {', '.join(FORMATS)}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    protocol = protocol_of(study.current_protocol_version)
    blinded = study.unblinded_at is None
    files, stats = {}, {}
    with db.engine.connect() as connection:
        # One snapshot for every table: SQLite's read transaction gives it without the write lock;
        # PostgreSQL needs REPEATABLE READ for it.
        options = {"diary_readonly": True}
        if connection.dialect.name == "postgresql":
            options["isolation_level"] = "REPEATABLE READ"
        connection = connection.execution_options(**options)
        with connection.begin():
            ctx = ExportContext(connection=connection, study=study, protocol=protocol, blinded=blinded, now=now)
            tables = TABLE_ORDER[:-1] + (["participants_identified"] if identified else []) + ["data_dictionary"]
            for table in tables:
                rows = (iter(dictionary_rows(protocol, identified)) if table == "data_dictionary"
                        else BUILDERS[table](ctx))
                path = out_dir / f"{table}.{fmt}"
                count = WRITERS[fmt](path, TABLES[table], rows,
                                     (lambda n, table=table: progress(table, n)) if progress else None,
                                     **({"stats": stats} if fmt == "xlsx" else {}))
                files[path.name] = {"table": table, "rows": count, "sha256": sha256_of(path)}
    version = study.current_protocol_version
    manifest = {
        "study": study.name,
        "protocol_id": version.protocol_id,
        "protocol_version": version.version,
        "exported_utc": iso_utc(now),
        "blinded": blinded,
        "unblinded_utc": None if blinded else iso_utc(study.unblinded_at),
        "format": fmt,
        "identified": identified,
        "identifiers": ("participants_identified holds emails and phone numbers: handle as personal data"
                        if identified else "none: participants appear only by their pseudonymous code"),
        "app_version": current_app.config["DIARY_VERSION"],
        "files": files,
    }
    if fmt == "xlsx":
        # Characters a spreadsheet cannot hold, replaced by U+FFFD (CSV and Parquet keep them).
        manifest["xlsx_characters_replaced"] = stats.get("xlsx_characters_replaced", 0)
    (out_dir / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return manifest


def zip_bundle(bundle_dir: Path, target):
    """Pack the bundle's files into ``target`` (a path or a binary file object)."""
    with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(Path(bundle_dir).iterdir()):
            if path.is_file() and path.suffix != ".zip":
                archive.write(path, arcname=path.name)
    return target


# Who may ask for an identified export (rule 7): the admin on the web, or the server's operator
# on the command line (who can read the database anyway).
IDENTIFIED_EXPORTERS = (Role.ADMIN, "operator")


def export_study(out_dir: Path, *, study, now: datetime, actor: str, role: str, fmt: str = "csv",
                 identified: bool = False, reason: str | None = None, progress=None) -> dict:
    """The one gate for every export, web or CLI: check who may have what, write, audit.

    ``role`` is the staff role asking, or ``"operator"`` for the server's command line.
    """
    reason = (reason or "").strip() or None
    if identified and role not in IDENTIFIED_EXPORTERS:
        raise Refused("Only an admin can ask for an identified export.", status=403)
    if identified and not reason:
        raise Refused("An identified export needs a reason: it carries emails and phone numbers.")
    manifest = write_bundle(out_dir, study=study, now=now, fmt=fmt, progress=progress, identified=identified)
    audit.record(actor=actor, action="identified_export" if identified else "export", entity="study",
                 entity_id=study.id, now=now, reason=reason,
                 new=f"{fmt}, {'blinded' if manifest['blinded'] else 'unblinded'}, "
                     + ", ".join(f"{entry['table']} {entry['rows']}" for entry in manifest["files"].values()))
    return manifest
