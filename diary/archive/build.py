"""Build a site's archive from one snapshot of the database.

The archive is a folder (the web zips it). Everything in it is a function of the data and of the
moment it is "as of", never of the clock at build time, so building it twice from unchanged data
gives the same bytes and the same hashes: ``verify-archive`` and a reader with ``sha256sum`` can
tell a copy from a changed one.
"""

from __future__ import annotations

import csv
import hashlib
import json
import re
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from ..dosing import assessments
from ..errors import Refused
from ..exports.bundle import last_data_event, sha256_of, snapshot, write_bundle
from ..exports.writers import iso_utc
from ..governance.signoff import statuses
from ..models import (
    Assessment,
    AuditEvent,
    ChangeRequest,
    Participant,
    Period,
    ProtocolVersion,
    Reminder,
    SideEffectReport,
    Signature,
    StaffUser,
    Submission,
)
from ..reporting.participant_record import staff_answers
from ..study.blinding import ALLOCATION_EVENTS, blinding_for
from ..study.trial import protocol_of
from ..vocabulary import Allocation, Role

# Renders one template to PDF bytes in a language: (template, language, context) -> bytes.
RenderPdf = Callable[..., bytes]

SUMS = "SHA256SUMS"
MANIFEST = "manifest.json"
README = "README.txt"


@dataclass
class Change:
    """One answer changed after it was given: as entered, as now, when, and by which request."""

    question: str
    as_entered: str
    now: str
    changed_at: datetime
    change_request_id: int | None


def archive_moment(study, as_of: datetime | None, now: datetime) -> datetime:
    """The moment an archive is "as of": the one asked for, else the study's lock (the end-of-study
    archive), else now to the second. States (missed, open...) are judged at it."""
    moment = as_of or study.locked_at or now
    return moment.replace(microsecond=0)


def site_language(site: str, languages: dict, fallback: str = "en") -> str:
    return languages.get(site) or fallback


def build_site_archive(
    out_dir: Path,
    *,
    study,
    site: str,
    as_of: datetime,
    language: str,
    render_pdf: RenderPdf,
    app_version: str,
) -> dict:
    """Write ``site``'s archive of ``study`` into ``out_dir`` (new or empty) and return its manifest.

    The allocation is in it only once the study is unblinded (a site's readers see none before).
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()):
        raise Refused(f"{out_dir} is not empty: an archive is written into a new folder.")
    unblinded = study.unblinded_at is not None
    blinding = blinding_for(study, Role.INVESTIGATOR)
    withheld = blinding.allocation is not Allocation.TRUE
    protocol = protocol_of(study.current_protocol_version)
    with snapshot() as connection:
        session = Session(bind=connection)
        people = session.scalars(
            select(Participant)
            .where(Participant.study_id == study.id, Participant.site == site)
            .order_by(Participant.code)
        ).all()
        if not people:
            raise Refused(f"No participant is enrolled at site {site}.", status=404)
        out_dir.mkdir(parents=True, exist_ok=True)
        write_bundle(
            out_dir / "data",
            study=study,
            now=as_of,
            standards=True,
            blinding=blinding,
            site=site,
            allocation_withheld=withheld,
            connection=connection,
        )
        (out_dir / "participants").mkdir()
        for participant in people:
            record = paper_diary(session, participant, as_of, protocol, language, show_allocation=not withheld)
            pdf = render_pdf(
                "archive/participant.html",
                language,
                study=study,
                site=site,
                as_of=as_of,
                unblinded=unblinded,
                **record,
            )
            (out_dir / "participants" / f"{participant.code}.pdf").write_bytes(pdf)
        _write_staff(out_dir / "staff", session, site)
        protocol_files = _write_protocols(out_dir / "protocol", session, study, sealed=withheld)
        snapshot_id = last_data_event(connection)
        session.close()
    (out_dir / README).write_text(readme_text(study, site, as_of, withheld), encoding="utf-8")
    current = study.current_protocol_version
    return write_manifest(
        out_dir,
        {
            "archive": "site archive",
            "study": study.name,
            "protocol_id": current.protocol_id,
            "protocol_version": current.version,
            "protocol_file": protocol_files[current.id],
            "site": site,
            "as_of_utc": iso_utc(as_of),
            "snapshot": f"audit-event-{snapshot_id}",
            "language": language,
            "participants": len(people),
            "allocation": "withheld until the study is unblinded"
            if withheld
            else f"true allocation (unblinded {iso_utc(study.unblinded_at)})",
            "app_version": app_version,
        },
    )


def write_manifest(out_dir: Path, header: dict) -> dict:
    """SHA256SUMS (every file but the manifest, as ``sha256sum`` writes it) and manifest.json,
    whose ``archive_sha256`` is the hash of SHA256SUMS: one number stands for the whole."""
    files = {}
    for path in sorted(p for p in out_dir.rglob("*") if p.is_file()):
        name = path.relative_to(out_dir).as_posix()
        if name in (MANIFEST, SUMS):
            continue
        files[name] = {"sha256": sha256_of(path), "bytes": path.stat().st_size}
    sums = "".join(f"{entry['sha256']}  {name}\n" for name, entry in files.items())
    (out_dir / SUMS).write_text(sums, encoding="utf-8")
    manifest = {**header, "files": files, "archive_sha256": hashlib.sha256(sums.encode()).hexdigest()}
    (out_dir / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return manifest


def paper_diary(session, participant: Participant, as_of: datetime, protocol, language: str, *, show_allocation: bool):
    """Everything one participant's PDF shows, read through ``session`` (the archive's snapshot)."""
    timeline = assessments.load(as_of, participant_ids=[participant.id], with_values=True, session=session)
    periods = session.scalars(
        select(Period).where(Period.participant_id == participant.id).order_by(Period.number)
    ).all()
    submissions = {
        s.id: s
        for s in session.scalars(
            select(Submission)
            .join(Assessment, Submission.assessment_id == Assessment.id)
            .join(Period, Assessment.period_id == Period.id)
            .where(Period.participant_id == participant.id)
            .options(selectinload(Submission.values))
        )
    }
    labels = dict(staff_answers_labels(protocol, language))
    changes: dict[int, list[Change]] = {}
    for submission in submissions.values():
        for value in submission.values:
            if value.changed_at is not None:
                changes.setdefault(submission.id, []).append(
                    Change(
                        labels.get((value.instrument, value.item), f"{value.instrument}.{value.item}"),
                        value.original_value or "",
                        value.value,
                        value.changed_at,
                        value.change_request_id,
                    )
                )
    period_ids = [p.id for p in periods]
    requests = session.scalars(
        select(ChangeRequest)
        .join(Submission, ChangeRequest.submission_id == Submission.id)
        .where(Submission.id.in_(list(submissions) or [0]))
        .options(selectinload(ChangeRequest.requested_by), selectinload(ChangeRequest.decided_by))
        .order_by(ChangeRequest.id)
    ).all()
    signatures = session.scalars(
        select(Signature)
        .where(Signature.period_id.in_(period_ids or [0]))
        .options(selectinload(Signature.signed_by))
        .order_by(Signature.id)
    ).all()
    reports = session.scalars(
        select(SideEffectReport)
        .where(SideEffectReport.period_id.in_(period_ids or [0]))
        .options(selectinload(SideEffectReport.period))
        .order_by(SideEffectReport.reported_at, SideEffectReport.id)
    ).all()
    reviewers = {
        staff.id: staff.email
        for staff in session.scalars(
            select(StaffUser).where(
                StaffUser.id.in_([r.acknowledged_by_id for r in reports if r.acknowledged_by_id] or [0])
            )
        )
    }
    reminders = session.execute(
        select(Reminder, Assessment.timepoint, Period.number)
        .join(Assessment, Reminder.assessment_id == Assessment.id)
        .join(Period, Assessment.period_id == Period.id)
        .where(Period.participant_id == participant.id)
        .order_by(Reminder.due_at, Reminder.id)
    ).all()
    hidden = () if show_allocation else ALLOCATION_EVENTS
    events = session.scalars(
        select(AuditEvent)
        .where(AuditEvent.participant_id == participant.id, AuditEvent.action.not_in(hidden))
        .order_by(AuditEvent.at, AuditEvent.id)
    ).all()
    return {
        "participant": participant,
        "periods": periods,
        "timeline": timeline,
        "submissions": submissions,
        "answers": lambda values: staff_answers(protocol, values, language),
        "changes": changes,
        "requests": requests,
        "signatures": signatures,
        "sign_off": statuses(period_ids) if period_ids else {},
        "reports": reports,
        "reviewers": reviewers,
        "reminders": reminders,
        "events": events,
        "treatments": {p.number: protocol.treatments.get(p.treatment) or p.treatment for p in periods}
        if show_allocation
        else None,
    }


def staff_answers_labels(protocol, language: str):
    """((instrument, item), the question as staff read it) for every item of the protocol."""
    for instrument in protocol.instruments.values():
        for item in instrument.items:
            label = staff_answers(protocol, {(instrument.id, item.id): ""}, language)
            if label:
                yield (instrument.id, item.id), label[0][0]


def _write_staff(folder: Path, session, site: str) -> None:
    """Who could reach the site's data, and every change to their access (who had which role
    when): the accounts of this site and of every site, and their audit events."""
    folder.mkdir()
    staff = session.scalars(
        select(StaffUser).where((StaffUser.site.is_(None)) | (StaffUser.site == site)).order_by(StaffUser.id)
    ).all()
    with open(folder / "accounts.csv", "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["staff", "role", "site", "active", "created_utc", "second_factor_since_utc"])
        for person in staff:
            writer.writerow(
                [
                    person.email,
                    person.role,
                    person.site or "every site",
                    "TRUE" if person.active else "FALSE",
                    iso_utc(person.created_at),
                    iso_utc(person.totp_enabled_at) if person.totp_enabled_at else "",
                ]
            )
    emails = {person.id: person.email for person in staff}
    events = session.scalars(
        select(AuditEvent)
        .where(AuditEvent.entity == "staff_user", AuditEvent.entity_id.in_(list(emails) or [0]))
        .order_by(AuditEvent.at, AuditEvent.id)
    )
    with open(folder / "access_history.csv", "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["at_utc", "staff", "action", "field", "old", "new", "by", "reason"])
        for event in events:
            writer.writerow(
                [
                    iso_utc(event.at),
                    emails[event.entity_id],
                    event.action,
                    event.field or "",
                    event.old_value or "",
                    event.new_value or "",
                    event.actor,
                    event.reason or "",
                ]
            )


SEALED = "SEALED UNTIL UNBLINDING"


def _write_protocols(folder: Path, session, study, *, sealed: bool) -> dict[int, str]:
    """Every protocol version's text, as loaded; returns {version id: file name}. While the study
    is blinded the treatments' sealed names are replaced by SEALED (versions.csv says so; its
    sha256 is the loaded text's, names included)."""
    folder.mkdir()
    names = {}
    versions = session.scalars(
        select(ProtocolVersion).where(ProtocolVersion.study_id == study.id).order_by(ProtocolVersion.id)
    ).all()
    with open(folder / "versions.csv", "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["protocol_id", "version", "file", "sha256_as_loaded", "loaded_utc", "sealed_names"])
        for version in versions:
            name = f"protocol/{version.protocol_id}-{version.version}.yaml"
            text = version.source_text
            if sealed:
                for sealed_name in protocol_of(version).treatments.values():
                    text = text.replace(sealed_name, SEALED)
                # The doses differ between the drugs, so they are sealed too (the key is dropped, so
                # the file still loads for verify-archive).
                text = re.sub(r",?[ \t]*\bdose:[ \t]*[0-9.eE+-]+", "", text)
            (folder.parent / name).write_text(text, encoding="utf-8")
            names[version.id] = name
            writer.writerow(
                [
                    version.protocol_id,
                    version.version,
                    name,
                    version.sha256,
                    iso_utc(version.loaded_at),
                    f"replaced by {SEALED}" if sealed else "as loaded",
                ]
            )
    return names


def recompute_text(protocol) -> str:
    """How to recompute the protocol's declared endpoints by hand, for the archive's README."""
    plan = protocol.endpoints
    if plan is None:
        return "RECOMPUTING THE ENDPOINTS BY HAND\n  The protocol declares no endpoints.\n"
    baseline = (
        f"the {plan.baseline[0]} entry"
        if len(plan.baseline) == 1
        else f"the mean of the {', '.join(plan.baseline)} entries given"
    )
    lines = [
        "RECOMPUTING THE ENDPOINTS BY HAND",
        "  From data/assessments.csv keep entries whose status is completed or completed_late; from",
        f"  data/responses.csv take the {plan.label} (instrument {plan.instrument}, item {plan.item}) of each entry.",
        f"  Hours from dose = (collected_utc - dose_start_utc) in hours. Baseline = {baseline}.",
        f"  Changes at {', '.join(plan.at)}: change = value - baseline; percent change = (value -",
        "  baseline) / baseline x 100 (none when the baseline is 0 or missing). The protocol declares:",
        f"  {', '.join(plan.changes)}.",
    ]
    for responder in plan.responders:
        bounds = " and ".join(
            text
            for text in (
                f"<= {responder.at_most:g}" if responder.at_most is not None else "",
                f">= {responder.at_least:g}" if responder.at_least is not None else "",
            )
            if text
        )
        lines.append(f"  {responder.name}: {responder.of} {bounds}.")
    if plan.auc is not None:
        hours = f"{plan.auc.hours:g}"
        needs = f", computed only when {plan.auc.requires} is present" if plan.auc.requires else ""
        lines += [
            f"  The AUC of {plan.auc.change} from hour 0 (value 0) to hour {hours} is the trapezoid rule over the",
            f"  post-dose entries, interpolated to hour {hours} (or the last value carried to it){needs}",
            f"  and at least {plan.auc.min_points} point(s).",
        ]
    lines.append(f"  Primary: {plan.primary}. Compare with data/{plan.endpoints_table}.csv.")
    return "\n".join(lines) + "\n"


def readme_text(study, site: str, as_of: datetime, withheld: bool) -> str:
    return README_TEMPLATE.format(
        recompute=recompute_text(protocol_of(study.current_protocol_version)),
        study=study.name,
        site=site,
        as_of=iso_utc(as_of),
        allocation=(
            "The treatment allocation is NOT in this archive: it was built while the study was blinded.\n"
            "Columns sequence, treatment_code and treatment are blank."
            if withheld
            else "The study was unblinded: sequence, treatment_code and treatment are filled in."
        ),
    )


README_TEMPLATE = """Site archive: {study}
Site: {site}
Data as of: {as_of} (UTC)

This folder is the site's certified copy of its participants' diary data. It is meant to be
read without the application that made it: every file is plain text (CSV, JSON, YAML) or PDF/A.

WHAT IS HERE
  participants/CODE.pdf   One participant's diary as a paper record: each entry with its
                          answers, when it was given (collection), when the diary received it,
                          the phone's own clock, who entered it (source), its state, every later
                          change and data change request, the investigator's signatures, side
                          effects and their review, the reminders sent, and the audit trail.
  data/*.csv              The analysis tables for this site's participants (data_dictionary.csv
                          describes every column; data/manifest.json says how they were made).
  data/sdtm/*.json        The same data as CDISC SDTM domains in Dataset-JSON v1.1 (and CSV).
  data/fhir/*.ndjson      The same answers as FHIR R4 resources.
  data/analysis/          The starter programs for the primary analysis (Python and R).
  staff/accounts.csv      Staff accounts that could reach this site's data, with their roles.
  staff/access_history.csv  Every change to those accounts (roles, activation, sign-ins,
                          second factor), with when and by whom.
  protocol/               Every protocol version the study ran under, as loaded (while the
                          study is blinded, the treatments' sealed names are replaced).
  SHA256SUMS              The SHA-256 of every file above.
  manifest.json           The same hashes, what the archive holds, and archive_sha256: the
                          SHA-256 of SHA256SUMS, one number for the whole archive.

{allocation}

CHECKING IT IS UNCHANGED
  sha256sum -c SHA256SUMS          every line must say OK
  sha256sum SHA256SUMS             must equal archive_sha256 in manifest.json
  (with the application: flask diary verify-archive THIS-FOLDER, which also recomputes the
  endpoints below from the raw tables)

{recompute}
Times are UTC (ending in Z) in the tables; in the PDFs they are the participant's local time.
"""


# Zip entries carry this time, not the files' (1980-01-01, the format's first day): the same
# archive zips to the same bytes.
ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)


def zip_archive(folder: Path, target: Path) -> str:
    """Pack the archive's files into ``target`` in name order; return the zip's SHA-256."""
    with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_DEFLATED) as packed:
        for path in sorted(p for p in Path(folder).rglob("*") if p.is_file()):
            info = zipfile.ZipInfo(f"{Path(folder).name}/{path.relative_to(folder).as_posix()}", ZIP_EPOCH)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            packed.writestr(info, path.read_bytes())
    return sha256_of(target)
