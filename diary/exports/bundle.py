"""The export bundle: one file per table, a data dictionary and a manifest, as a folder or ZIP.

Both the CLI and the analysts' download call ``write_bundle``; export logic lives only here.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

from flask import current_app
from sqlalchemy import func, select

from ..errors import Refused
from ..extensions import db
from ..governance import audit
from ..governance.lock import refuse_until_ready_for_the_truth
from ..models import AuditEvent
from ..study.blinding import OPERATOR, Allocation, blinding_for
from ..study.randomization import ensure_dummy_allocation
from ..study.trial import protocol_of
from ..vocabulary import AuditAction, ExportFormat, Role
from .fhir import write_fhir
from .schema import dictionary_rows, tables_for
from .sdtm import write_domains
from .tables import ExportContext, builder
from .writers import FORMATS, WRITERS, iso_utc

# Audit events that record who took a copy of the data, not a change to it.
CUSTODY_ACTIONS = tuple(
    str(action)
    for action in (
        AuditAction.EXPORT,
        AuditAction.IDENTIFIED_EXPORT,
        AuditAction.ARCHIVE_BUILT,
        AuditAction.ARCHIVE_DOWNLOADED,
        AuditAction.ARCHIVE_RECEIVED,
    )
)

# Starter programs copied into every bundle (analysis/primary.py and analysis/primary.R).
ANALYSIS_PROGRAMS = Path(__file__).parent / "analysis"
TABLE_ORDER = [
    "assessments",
    "responses",
    # the protocol's two endpoint tables come here (``table_order``)
    "side_effects",
    "adherence",
    "participants",
    "audit_trail",
    "audit_reviews",
    "data_dictionary",
]


def analysis_programs(protocol) -> list[Path]:
    """The starter programs for the protocol's design: a crossover's (split by period), or a
    parallel study's (split by arm); none without declared endpoints."""
    plan = protocol.endpoints
    if plan is None:
        return []
    folder = ANALYSIS_PROGRAMS if plan.split == "period" else ANALYSIS_PROGRAMS / "parallel"
    return sorted(folder.glob("primary.*"))


def starter_program(protocol, program: Path) -> str:
    """A starter program for this protocol: written for the shipped one's names (the table
    fatigue_endpoints, the primary endpoint pct_change_d3, the baseline baseline_vas), which are
    replaced by the protocol's."""
    plan = protocol.endpoints
    return (
        program.read_text(encoding="utf-8")
        .replace("fatigue_endpoints", plan.endpoints_table)
        .replace("pct_change_d3", plan.primary)
        .replace("baseline_vas", f"baseline_{plan.name}")
    )


def table_order(protocol) -> list[str]:
    """The bundle's tables in order, with the protocol's endpoint tables after responses."""
    plan = protocol.endpoints
    order = list(TABLE_ORDER)
    if plan is not None:
        order[2:2] = [plan.endpoints_table, plan.timecourse_table]
    if any(instrument.score for instrument in protocol.instruments.values()):
        order[2:2] = ["scores"]
    return order


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def write_bundle(
    out_dir: Path,
    *,
    study,
    now: datetime,
    fmt: str = "csv",
    progress=None,
    identified: bool = False,
    true_allocation: bool = False,
    free_text: bool = True,
    standards: bool = False,
    without_side_effects: bool = False,
    blinding=None,
    site: str | None = None,
    allocation_withheld: bool = False,
    connection=None,
) -> dict:
    """Write every table of ``study`` into ``out_dir`` and return the manifest.

    Without ``identified`` (the default) no file carries a direct identifier. With it, a
    ``participants_identified`` table maps codes to contact details; callers must check that
    the person asking is allowed to, and audit it.

    What of the allocation it carries is the blinding guard's (``blinding``, by default the
    operator's): while the study is blinded, the dummy allocation unless ``true_allocation``;
    the dummy is stored first, which commits the session. Without ``free_text`` the columns that
    may carry identifiers are blanked. ``without_side_effects`` leaves out the answers that can
    reveal the treatment by their content (side effects, the blinding guess).
    With ``standards`` the exchange formats are added: SDTM-shaped domains (CSV and CDISC
    Dataset-JSON) under sdtm/ and FHIR NDJSON under fhir/ (they about triple the export's time,
    so they are asked for).

    A site's archive passes ``site`` (only its participants), ``allocation_withheld`` (sequence
    and treatment columns blank, for readers who see no allocation) and the ``connection`` of
    its own snapshot, so the archive's other files read the same state of the database.

    ``progress(table, rows_written)`` is called as batches are written (for a progress bar).
    The database is read in one read-only transaction, so the tables agree with each other.
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown format '{fmt}'; use one of {', '.join(FORMATS)}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    protocol = protocol_of(study.current_protocol_version)
    blinding = blinding or blinding_for(study, OPERATOR, true_allocation=true_allocation)
    if blinding.allocation is Allocation.NONE and not allocation_withheld:
        raise Refused("This role receives no export of the study's data.", status=403)
    blinded = not blinding.drug_names
    dummy = blinding.is_dummy
    if dummy:
        # Stored before the snapshot is read, so this export and every later one agree.
        ensure_dummy_allocation(study)
        db.session.commit()
    files, stats = {}, {}
    with snapshot(connection) as connection:
        last_event = last_data_event(connection)
        ctx = ExportContext(
            connection=connection,
            study=study,
            protocol=protocol,
            blinded=blinded,
            now=now,
            dummy=dummy,
            no_free_text=not free_text,
            without_side_effects=without_side_effects,
            site=site,
            allocation_withheld=allocation_withheld,
            # The time course comes right after the endpoints (``table_order``): one read for both.
            spool_timecourse=True,
        )
        order = table_order(protocol)
        tables = order[:-1] + (["participants_identified"] if identified else []) + ["data_dictionary"]
        schema = tables_for(protocol)
        for table in tables:
            rows = (
                iter(dictionary_rows(protocol, identified))
                if table == "data_dictionary"
                else builder(protocol, table)(ctx)
            )
            path = out_dir / f"{table}.{fmt}"
            count = WRITERS[fmt](
                path,
                schema[table],
                rows,
                (lambda n, table=table: progress(table, n)) if progress else None,
                **({"stats": stats} if fmt == ExportFormat.XLSX else {}),
            )
            files[path.name] = {"table": table, "rows": count, "sha256": sha256_of(path)}
        if standards:
            _write_standards(out_dir, ctx, now, files, progress)
    (out_dir / "analysis").mkdir(exist_ok=True)
    for program in analysis_programs(protocol):
        target = out_dir / "analysis" / program.name
        target.write_text(starter_program(protocol, program), encoding="utf-8")
        files[f"analysis/{program.name}"] = {"table": "program", "rows": None, "sha256": sha256_of(target)}
    version = study.current_protocol_version
    manifest = {
        "study": study.name,
        "protocol_id": version.protocol_id,
        "protocol_version": version.version,
        "exported_utc": iso_utc(now),
        "blinded": blinded,
        "unblinded_utc": None if blinded else iso_utc(study.unblinded_at),
        # The data's lock (None when exported from unlocked data), and which state of the trail it
        # reflects: the last audit event's id when the export began.
        "locked_utc": iso_utc(study.locked_at) if study.locked_at else None,
        "snapshot": f"audit-event-{last_event}",
        **({"site": site} if site is not None else {}),
        "allocation_is_dummy": dummy,
        "allocation": (
            "DUMMY: sequence and treatment_code are a stored random permutation of the randomization "
            "list, for writing and testing programs; results mean nothing about the treatments"
            if dummy
            else "withheld: sequence and treatment columns are blank until the study is unblinded"
            if allocation_withheld
            else "true allocation" + (" (blinded: treatment names withheld)" if blinded else "")
        ),
        "standards": "sdtm/ (SDTM-shaped CSV and Dataset-JSON v1.1) and fhir/ (FHIR R4 NDJSON)"
        if standards
        else "not asked for",
        "free_text": "included: columns marked may_contain_identifiers can hold names or contact details"
        if free_text
        else "removed: columns marked may_contain_identifiers are blank",
        "side_effects": (
            "withheld (--without-side-effects): side_effects and sdtm/ae are empty; the answers to "
            + ", ".join(protocol.revealing_instruments())
            + " are left out of responses, fhir/ and the "
            "audit trail's values"
            if without_side_effects
            else "included: side_effects, sdtm/ae and the answers to "
            + ", ".join(protocol.revealing_instruments())
            + " can point to the treatment by their content (see data_dictionary)"
        ),
        "format": fmt,
        "identified": identified,
        "identifiers": (
            "participants_identified holds emails and phone numbers: handle as personal data"
            if identified
            else "none: participants appear only by their pseudonymous code"
        ),
        "app_version": current_app.config["DIARY_VERSION"],
        "files": files,
    }
    if fmt == ExportFormat.XLSX:
        # Characters a spreadsheet cannot hold, replaced by U+FFFD (CSV and Parquet keep them).
        manifest["xlsx_characters_replaced"] = stats.get("xlsx_characters_replaced", 0)
    (out_dir / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return manifest


@contextmanager
def snapshot(connection=None):
    """A read-only connection in one transaction, so every table read through it agrees: SQLite's
    read transaction gives that without the write lock; PostgreSQL needs REPEATABLE READ. Given
    an open ``connection`` (an archive's own snapshot), it is used as it is."""
    if connection is not None:
        yield connection
        return
    with db.engine.connect() as connection:
        options = {"diary_readonly": True}
        if connection.dialect.name == "postgresql":
            options["isolation_level"] = "REPEATABLE READ"
        connection = connection.execution_options(**options)
        with connection.begin():
            yield connection


def last_data_event(connection) -> int:
    """The last audit event that can change what an export holds (the snapshot it reflects).
    Custody events (exports, archives built, downloaded, received) leave the data as it was, so
    an archive built twice from unchanged data names the same snapshot."""
    return connection.scalar(select(func.max(AuditEvent.id)).where(AuditEvent.action.not_in(CUSTODY_ACTIONS))) or 0


def _write_standards(out_dir: Path, ctx: ExportContext, now: datetime, files: dict, progress) -> None:
    """Exchange formats: SDTM-shaped domains (CSV and Dataset-JSON) and FHIR NDJSON."""
    sdtm = write_domains(out_dir, ctx, now=now, app_version=current_app.config["DIARY_VERSION"], progress=progress)
    for domain, count in sdtm.items():
        for suffix in ("csv", "json"):
            name = f"sdtm/{domain.lower()}.{suffix}"
            files[name] = {"table": f"sdtm_{domain.lower()}", "rows": count, "sha256": sha256_of(out_dir / name)}
    for name in ("sdtm/define.xml", "sdtm/define.html"):
        files[name] = {"table": "define", "rows": None, "sha256": sha256_of(out_dir / name)}
    for resource, count in write_fhir(out_dir, ctx, progress=progress).items():
        name = f"fhir/{resource}.ndjson"
        files[name] = {"table": f"fhir_{resource}", "rows": count, "sha256": sha256_of(out_dir / name)}


def zip_bundle(bundle_dir: Path, target):
    """Pack the bundle's files, folders included, into ``target`` (a path or a binary file object)."""
    bundle_dir = Path(bundle_dir)
    with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(bundle_dir.rglob("*")):
            if path.is_file() and path.suffix != ".zip":
                archive.write(path, arcname=path.relative_to(bundle_dir).as_posix())
    return target


# Who may ask for an identified export (rule 7): the admin on the web, or the server's operator
# on the command line (who can read the database anyway).
IDENTIFIED_EXPORTERS = (Role.ADMIN, OPERATOR)


def export_study(
    out_dir: Path,
    *,
    study,
    now: datetime,
    actor: str,
    role: str,
    fmt: str = "csv",
    identified: bool = False,
    reason: str | None = None,
    progress=None,
    free_text: bool = True,
    true_allocation: bool | None = None,
    standards: bool = False,
    without_side_effects: bool = False,
) -> dict:
    """The one gate for every export, web or CLI: check who may have what, write, audit.

    ``role`` is the staff role asking, or ``"operator"`` for the server's command line. What of
    the allocation it carries is the blinding guard's: the unblinded role always gets the true
    allocation; the operator only when ``true_allocation``; other blinded roles the dummy.
    """
    reason = (reason or "").strip() or None
    if identified and role not in IDENTIFIED_EXPORTERS:
        raise Refused("Only an admin can ask for an identified export.", status=403)
    if identified and not reason:
        raise Refused("An identified export needs a reason: it carries emails and phone numbers.")
    blinding = blinding_for(study, role, true_allocation=bool(true_allocation))
    if role == OPERATOR and true_allocation and study.unblinded_at is None:
        # The operator's --true-allocation export: only on locked, signed data. (The unblinded
        # role's own exports carry the truth throughout, for the DSMB's reviews.)
        refuse_until_ready_for_the_truth(study)
    manifest = write_bundle(
        out_dir,
        study=study,
        now=now,
        fmt=fmt,
        progress=progress,
        identified=identified,
        free_text=free_text,
        standards=standards,
        without_side_effects=without_side_effects,
        blinding=blinding,
    )
    allocation = "dummy allocation" if manifest["allocation_is_dummy"] else "true allocation"
    audit.record(
        actor=actor,
        action=AuditAction.IDENTIFIED_EXPORT if identified else AuditAction.EXPORT,
        entity="study",
        entity_id=study.id,
        now=now,
        reason=reason,
        new=f"{fmt}, {'blinded' if manifest['blinded'] else 'unblinded'}, {allocation}, "
        + ("free text removed, " if not free_text else "")
        + ("side effects withheld, " if without_side_effects else "")
        + ", ".join(
            f"{entry['table']} {entry['rows']}" for name, entry in manifest["files"].items() if "/" not in name
        ),
    )
    return manifest
