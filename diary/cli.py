"""Command line, under ``flask --app wsgi diary``. The command names are a contract (DESIGN.md)."""

from __future__ import annotations

import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import click
from flask import Flask, current_app
from flask.cli import AppGroup
from flask_migrate import upgrade
from sqlalchemy import select

from .database import MIGRATIONS
from .errors import Refused
from .extensions import db
from .governance import audit
from .localtime import from_local_clock, plausible
from .models import Participant, now_utc
from .operations.backups import backup_sqlite
from .protocol import ProtocolError
from .study.blinding import OPERATOR
from .vocabulary import ActorKind, AmendmentState, AuditAction, ExportFormat, Role, Sex

diary_cli = AppGroup("diary", help="Run and manage the diary.")


def init_app(app: Flask) -> None:
    app.cli.add_command(diary_cli)


def fail(message: str) -> None:
    raise click.ClickException(message)


def parse_local_time(text: str, tz_name: str) -> datetime:
    """'YYYY-MM-DD HH:MM' on the given zone's clock, as UTC. Refuses times the clock skipped."""
    try:
        wall = datetime.strptime(text.strip().replace("T", " "), "%Y-%m-%d %H:%M")
    except ValueError:
        fail(f"'{text}' is not a time like 2026-11-25 09:30")
    if not plausible(wall):
        fail(f"{text} is not a plausible date for this study; please check the year.")
    aware = from_local_clock(wall, tz_name)
    if aware is None:
        fail(f"{text} does not exist in {tz_name} (the clocks skipped it that day)")
    return aware.astimezone(UTC)


@diary_cli.command("init")
def init_command():
    """Create or migrate the database and load the shipped protocol."""
    from .study.trial import ensure_study

    upgrade(directory=str(MIGRATIONS))
    from .reminders.vapid import ensure_vapid_keys

    if ensure_vapid_keys(current_app._get_current_object()):
        click.echo("Generated web push (VAPID) keys into instance/config.py.")
    try:
        study, new_version = ensure_study()
    except ProtocolError as error:
        fail(f"the protocol cannot be loaded:\n{error}")
    except Refused as refusal:
        fail(refusal.message)
    if new_version:
        version = study.current_protocol_version
        audit.record(
            actor=audit.SYSTEM,
            action=AuditAction.LOAD_PROTOCOL,
            entity="protocol_version",
            entity_id=version.id,
            new=f"{version.protocol_id} {version.version}",
            now=now_utc(),
        )
    from .study.randomization import ensure_dummy_allocation

    # Participants enrolled before the dummy was drawn at enrolment get theirs now, so blinded
    # pages can split by it from the start.
    ensure_dummy_allocation(study)
    db.session.commit()
    version = study.current_protocol_version
    click.echo(
        f"Database ready. Study '{study.name}', protocol {version.protocol_id} "
        f"version {version.version}" + (" (newly loaded)." if new_version else ".")
    )


@diary_cli.command("demo")
@click.option("--seed", default=20191018, show_default=True, help="Seed for the simulated answers.")
@click.option("--if-empty", is_flag=True, help="Do nothing (and succeed) if participants exist.")
@click.option(
    "--protocol", "protocol_name", default=None, help="A shipped protocol by name (default: the configured one)."
)
def demo_command(seed, if_empty, protocol_name):
    """Build the demo study: 10 simulated participants around today, and staff accounts."""
    from .demo import build_demo, has_participants

    if if_empty and has_participants():
        click.echo("The study already has participants; the demo was not loaded again.")
        return

    try:
        result = build_demo(now=now_utc(), seed=seed, protocol_name=protocol_name)
    except Refused as error:
        fail(error.message)
    db.session.commit()
    click.echo(
        f"Demo study ready: {result.participants} participants, "
        f"{result.submissions} simulated entries, {result.missed} missed, "
        f"{result.follow_up_tasks} follow-up calls to make."
    )
    click.echo("Staff logins (demo only; change them for real use):")
    for role, (email, password) in result.logins.items():
        click.echo(f"  {role:12} {email}  password: {password}")
    click.echo(f"Participant {result.link_code} has an entry open now. Their link:")
    click.echo(f"  {result.link}")


@diary_cli.command("create-user")
@click.argument("email")
@click.option("--role", type=click.Choice([role.value for role in Role]), required=True)
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
@click.option("--site", help="The one site an investigator controls (default: every site).")
def create_user_command(email, role, password_stdin, site):
    """Create a staff account."""
    from .governance.staff import create_user

    if password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    try:
        user = create_user(email, password, role, actor=ActorKind.CLI, now=now_utc(), site=site)
    except Refused as error:
        fail(error.message)
    db.session.commit()
    click.echo(f"Created {user.role} {user.email}.")


@diary_cli.command("enroll")
@click.option("--code", help="Participant code (default: a new random code).")
@click.option("--site", required=True)
@click.option("--timezone", "tz_name", help="IANA time zone (default: DIARY_DEFAULT_TIMEZONE).")
@click.option("--sequence", help="Sequence (default: next free slot of the randomization list).")
@click.option("--email", help="Email for reminders.")
@click.option("--phone", help="Phone for reminders (optional).")
@click.option("--reminder-from", help="Reminders from this time on the participant's clock (e.g. 08:00).")
@click.option("--reminder-until", help="Reminders until this time on the participant's clock (e.g. 21:00).")
@click.option(
    "--language",
    type=click.Choice(["en", "es"]),
    default="en",
    show_default=True,
    help="Language of the diary, reminders and printed sheet.",
)
@click.option(
    "--sex",
    type=click.Choice([str(code) for code in Sex]),
    default="U",
    show_default=True,
    help="CDISC SEX (U: not collected).",
)
@click.option("--birth-year", type=int, help="Year of birth (the export gives the age at enrolment).")
def enroll_command(
    code, site, tz_name, sequence, email, phone, reminder_from, reminder_until, language, sex, birth_year
):
    """Enrol a participant and print their personal link."""
    from .participants.enrolment import enroll, participant_link
    from .study.trial import require_study

    try:
        participant, token = enroll(
            require_study(),
            code=code,
            site=site,
            timezone=tz_name or current_app.config["DEFAULT_TIMEZONE"],
            sequence=sequence,
            email=email,
            phone=phone,
            reminder_from=reminder_from,
            reminder_until=reminder_until,
            language=language,
            sex=sex,
            birth_year=birth_year,
            actor=ActorKind.CLI,
            now=now_utc(),
        )
    except Refused as error:
        fail(error.message)
    db.session.commit()
    click.echo(f"Enrolled {participant.code} at {participant.site} ({participant.timezone}).")
    click.echo(f"Personal link (shown once; hand it to the participant): {participant_link(token)}")


def _participant_by_code(code: str) -> Participant:
    from .study.trial import require_study

    participant = db.session.scalar(
        select(Participant).where(Participant.study_id == require_study().id, Participant.code == code)
    )
    if participant is None:
        fail(f"No participant with code {code}.")
    return participant


@diary_cli.command("plan")
@click.argument("code")
@click.argument("period", type=int)
@click.argument("start")
@click.option("--reason", help="Required when changing an existing plan.")
def plan_command(code, period, start, reason):
    """Plan infusion PERIOD for START ('YYYY-MM-DD HH:MM', participant's local time): BL opens 24 h ahead."""
    from .dosing.infusions import plan_dose

    participant = _participant_by_code(code)
    planned = parse_local_time(start, participant.timezone)
    try:
        planned_period = plan_dose(participant, period, planned, actor=ActorKind.CLI, now=now_utc(), reason=reason)
    except Refused as error:
        fail(error.message)
    db.session.commit()
    click.echo(
        f"Infusion {period} of {code} planned for {planned.isoformat()} "
        f"({len(planned_period.assessments)} assessments scheduled; BL opens 24 h before)."
    )


@diary_cli.command("dose")
@click.argument("code")
@click.argument("period", type=int)
@click.argument("start")
@click.option("--reason", help="Required when correcting a recorded time.")
def dose_command(code, period, start, reason):
    """Record infusion PERIOD's START ('YYYY-MM-DD HH:MM', participant's local time)."""
    from .dosing.infusions import record_dose

    participant = _participant_by_code(code)
    dose_start = parse_local_time(start, participant.timezone)
    try:
        recorded = record_dose(participant, period, dose_start, actor=ActorKind.CLI, now=now_utc(), reason=reason)
    except Refused as error:
        fail(error.message)
    db.session.commit()
    click.echo(
        f"Infusion {period} of {code} recorded at {dose_start.isoformat()} "
        f"({len(recorded.assessments)} assessments scheduled)."
    )


@diary_cli.command("lock")
@click.option("--reason", required=True, help="Why the data are locked (e.g. database lock before unblinding).")
def lock_command(reason):
    """Lock the study's data: every change answers 423 and the scheduler sends nothing."""
    from .governance.lock import lock_study
    from .study.trial import require_study

    study = require_study()
    try:
        lock_study(study, reason=reason, actor=ActorKind.CLI, by_id=None, now=now_utc())
    except Refused as error:
        fail(error.message)
    db.session.commit()
    click.echo(f"Locked at {study.locked_at:%Y-%m-%d %H:%M:%S} UTC: {reason}")


@diary_cli.command("unlock")
@click.option("--reason", required=True, help="Why the data must change again.")
def unlock_command(reason):
    """Unlock the study's data (audited with the reason)."""
    from .governance.lock import unlock_study
    from .study.trial import require_study

    try:
        unlock_study(require_study(), reason=reason, actor=ActorKind.CLI, now=now_utc())
    except Refused as error:
        fail(error.message)
    db.session.commit()
    click.echo("Unlocked.")


@diary_cli.command("audit-review")
def audit_review_command():
    """Run the audit-trail checks and print what each finds (exit 0; review them on the web)."""
    from .reporting.audit_review import CHECKS, run_checks
    from .study.trial import require_study

    found = run_checks(require_study(), now_utc())
    for check in CHECKS:
        cases = found[check.name]
        click.echo(f"{check.name}: {len(cases)} {'case' if len(cases) == 1 else 'cases'} ({check.looks_for})")
        for case in cases[:20]:
            when = f"{case.at:%Y-%m-%d %H:%M} UTC " if case.at else ""
            click.echo(f"  {case.participant or '-'} {when}{case.what}")
        if len(cases) > 20:
            click.echo(f"  and {len(cases) - 20} more")


@diary_cli.command("scheduler")
@click.option("--interval", default=60, show_default=True, help="Seconds between dispatch passes.")
def scheduler_command(interval):
    """Run the reminder scheduler (its own process; never inside the web server)."""
    from .reminders.scheduler import run_scheduler

    run_scheduler(current_app._get_current_object(), interval=interval)


@diary_cli.command("export")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False), help="Folder to write to.")
@click.option(
    "--format", "fmt", type=click.Choice([str(fmt) for fmt in ExportFormat]), default="csv", show_default=True
)
@click.option("--zip", "as_zip", is_flag=True, help="Also pack the bundle into OUT/diary-export.zip.")
@click.option(
    "--identified", is_flag=True, help="Add participants_identified (emails, phones). Personal data: audited."
)
@click.option("--reason", help="Why an identified export is needed (required with --identified).")
@click.option(
    "--no-free-text",
    "no_free_text",
    is_flag=True,
    help="Blank free-text columns (they may carry names or contact details), for sharing outside the site.",
)
@click.option(
    "--true-allocation",
    is_flag=True,
    help="Before unblinding, export the true allocation instead of the dummy one (audited).",
)
@click.option("--standards", is_flag=True, help="Add SDTM-shaped domains (CSV and CDISC Dataset-JSON) and FHIR NDJSON.")
@click.option(
    "--without-side-effects",
    "without_side_effects",
    is_flag=True,
    help="Leave out what can point to the drug by its content (side effects, the blinding guess), "
    "for a blinded statistician who asks.",
)
def export_command(
    out_dir, fmt, as_zip, identified, reason, no_free_text, true_allocation, standards, without_side_effects
):
    """Write the analysis bundle (one file per table, a dictionary and a manifest)."""
    from .exports import export_study, zip_bundle
    from .study.trial import require_study

    out = Path(out_dir)
    if identified and not (reason and reason.strip()):
        # Said in the command's own words; export_study refuses it too, whoever calls.
        fail("An identified export needs --reason: it carries emails and phone numbers.")
    started = time.monotonic()

    def export(progress=None):
        # The server's operator: allowed an identified export with a reason (rule 7).
        return export_study(
            out,
            study=require_study(),
            now=now_utc(),
            fmt=fmt,
            identified=identified,
            reason=reason,
            actor=ActorKind.CLI,
            role=OPERATOR,
            progress=progress,
            free_text=not no_free_text,
            true_allocation=true_allocation,
            standards=standards,
            without_side_effects=without_side_effects,
        )

    try:
        if sys.stdout.isatty():
            with click.progressbar(length=0, label="Exporting", show_pos=True) as bar:

                def progress(table, rows):
                    bar.label = f"Exporting {table}"
                    bar.length = (bar.length or 0) + rows
                    bar.update(rows)

                manifest = export(progress)
        else:
            manifest = export()
    except Refused as error:
        fail(error.message)
    db.session.commit()
    for name, entry in manifest["files"].items():
        click.echo(f"  {name:36} " + (f"{entry['rows']:>9} rows" if entry["rows"] is not None else "program"))
    if as_zip:
        archive = zip_bundle(out, out / "diary-export.zip")
        click.echo(f"  {archive.name}")
    state = "blinded (treatments as A/B)" if manifest["blinded"] else "unblinded (drug names)"
    if manifest["allocation_is_dummy"]:
        state += "; DUMMY allocation (for writing programs; --true-allocation for the real one)"
    if no_free_text:
        state += "; free text removed"
    if without_side_effects:
        state += "; side effects and blinding guesses withheld"
    if identified:
        state += "; IDENTIFIED: participants_identified holds personal data"
    click.echo(f"Exported to {out} in {time.monotonic() - started:.1f} s, {state}.")


@diary_cli.command("archive")
@click.option("--site", required=True, help="The site whose archive to build (e.g. NIH-CC).")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False), help="A new or empty folder.")
@click.option(
    "--as-of", "as_of", help="UTC time 'YYYY-MM-DD HH:MM' the data are judged at (default: the lock, else now)."
)
@click.option("--language", help="The PDFs' language (default: DIARY_SITE_LANGUAGES for the site, else English).")
def archive_command(site, out_dir, as_of, language):
    """Build a site's archive: a PDF diary per participant, the site's tables, staff access,
    protocol versions and a manifest of SHA-256 hashes (audited)."""
    from .archive.build import archive_moment, build_site_archive, site_language
    from .archive.custody import record_built
    from .documents import render_pdf
    from .i18n import LANGUAGES
    from .study.trial import require_study

    study = require_study()
    moment = None
    if as_of:
        moment = parse_local_time(as_of, "UTC")
    language = language or site_language(site, current_app.config.get("SITE_LANGUAGES") or {})
    if language not in LANGUAGES:
        fail(f"'{language}' is not a language of the diary ({', '.join(LANGUAGES)}).")
    started = time.monotonic()
    try:
        manifest = build_site_archive(
            Path(out_dir),
            study=study,
            site=site,
            as_of=archive_moment(study, moment, now_utc()),
            language=language,
            render_pdf=render_pdf,
            app_version=current_app.config["DIARY_VERSION"],
        )
    except Refused as error:
        fail(error.message)
    record_built(actor=ActorKind.CLI, site=site, manifest=manifest, now=now_utc())
    db.session.commit()
    click.echo(
        f"Archive of site {site} written to {out_dir} in {time.monotonic() - started:.1f} s: "
        f"{manifest['participants']} participants, {len(manifest['files'])} files, as of {manifest['as_of_utc']}, "
        f"allocation {manifest['allocation']}."
    )
    click.echo(f"  archive sha256 {manifest['archive_sha256']} (sha256sum of SHA256SUMS)")


@diary_cli.command("verify-archive")
@click.argument("folder", type=click.Path(file_okay=False, exists=True))
def verify_archive_command(folder):
    """Check a site's archive with no database: every file's hash, and every endpoint recomputed
    from its raw tables (exit 1 on any problem)."""
    from .archive.verify import summary, verify_archive

    report = verify_archive(Path(folder))
    click.echo(summary(report))
    if not report.ok:
        sys.exit(1)


protocol_cli = AppGroup("protocol", help="Work on a protocol file: check it before it is loaded.")
diary_cli.add_command(protocol_cli)


@protocol_cli.command("check")
@click.argument("path", type=click.Path(dir_okay=False))
def protocol_check_command(path):
    """Validate a protocol file without a database: every problem at once, each with its path
    inside the file (exit 1), or a summary of what the file declares (exit 0)."""
    from .protocol.loader import load_protocol

    try:
        protocol = load_protocol(path)
    except ProtocolError as error:
        for where, message in error.problems:
            click.echo(f"{error.source}: {where}: {message}")
        click.echo(f"{len(error.problems)} {'problem' if len(error.problems) == 1 else 'problems'}.")
        sys.exit(1)
    click.echo(
        f"{path}: protocol {protocol.id} version {protocol.version}: {protocol.periods} periods, "
        f"{len(protocol.sequences)} sequences, {len(protocol.timepoints)} time points, "
        f"{len(protocol.instruments)} instruments, languages {', '.join(protocol.languages)}. No problems."
    )


@protocol_cli.command("preview")
@click.argument("path", type=click.Path(dir_okay=False))
@click.option("--timezone", "tz_name", required=True, help="The participant's IANA time zone, e.g. Europe/Madrid.")
@click.option("--start", required=True, help='The first anchor (infusion or day 1), local: "YYYY-MM-DD HH:MM".')
@click.option("--every", "every_days", type=int, default=None, help="Days between periods (default: minimum gap + 1).")
def protocol_preview_command(path, tz_name, start, every_days):
    """Print one participant's calendar under a protocol file, without a database: each time
    point's window in local time across the periods, its reminders (moved out of quiet hours),
    and the daylight-saving changes that fall inside a window."""
    from zoneinfo import available_timezones

    from .protocol.loader import load_protocol
    from .reminders.preview import preview, preview_text

    try:
        protocol = load_protocol(path)
    except ProtocolError as error:
        for where, message in error.problems:
            click.echo(f"{error.source}: {where}: {message}")
        click.echo("Fix these first (flask diary protocol check).")
        sys.exit(1)
    if tz_name not in available_timezones():
        raise click.BadParameter(f"'{tz_name}' is not a time zone (e.g. America/New_York)", param_hint="--timezone")
    try:
        first = datetime.strptime(start, "%Y-%m-%d %H:%M")
    except ValueError:
        raise click.BadParameter('give it as "YYYY-MM-DD HH:MM"', param_hint="--start") from None
    click.echo(preview_text(preview(protocol, tz_name, first, every_days)))


def _staff_by_email(email: str):
    from sqlalchemy import select

    from .models import StaffUser

    user = db.session.scalar(select(StaffUser).where(StaffUser.email == email.strip().lower()))
    if user is None or not user.active:
        fail(f"No active staff account {email}.")
    return user


@protocol_cli.command("amend")
@click.argument("path", type=click.Path(dir_okay=False, exists=True))
@click.option("--reason", required=True, help="Why (the ethics committee's approval, or the reason).")
@click.option("--by", "email", required=True, help="The admin proposing it (their staff e-mail).")
def protocol_amend_command(path, reason, email):
    """Propose an amendment of the running protocol: prints every change, classified. An additive
    one applies at once; a critical one waits for a second person (protocol approve)."""
    from .dosing.amendments import propose_amendment
    from .study.trial import require_study

    proposer = _staff_by_email(email)
    study = require_study()
    try:
        amendment = propose_amendment(
            study,
            Path(path).read_text(encoding="utf-8"),
            reason=reason,
            actor=audit.staff_actor(proposer),
            proposed_by=proposer,
            now=now_utc(),
        )
    except Refused as refusal:
        db.session.rollback()
        fail(refusal.message)
    db.session.commit()
    for line in amendment.changes.splitlines():
        click.echo(f"  {line}")
    if amendment.state == AmendmentState.APPLIED:
        click.echo(
            f"Amendment {amendment.id} ({amendment.classification}) applied: version {amendment.version} is current."
        )
    else:
        click.echo(
            f"Amendment {amendment.id} is critical: it waits for a second person's approval "
            f"(flask diary protocol approve {amendment.id} --by EMAIL, or the Protocol page)."
        )


@protocol_cli.command("approve")
@click.argument("amendment_id", type=int)
@click.option("--by", "email", required=True, help="The approver (an admin or investigator, not the proposer).")
def protocol_approve_command(amendment_id, email):
    """Approve (and so apply) a critical amendment: a second person's decision."""
    from .dosing.amendments import approve_amendment
    from .models import ProtocolAmendment

    approver = _staff_by_email(email)
    amendment = db.session.get(ProtocolAmendment, amendment_id)
    if amendment is None:
        fail(f"No amendment {amendment_id}.")
    try:
        version = approve_amendment(amendment, approver=approver, actor=audit.staff_actor(approver), now=now_utc())
    except Refused as refusal:
        db.session.rollback()
        fail(refusal.message)
    db.session.commit()
    click.echo(f"Amendment {amendment_id} approved by {approver.email}: version {version.version} is current.")


@diary_cli.command("send-reminders")
def send_reminders_command():
    """Make one dispatch pass over the reminder outbox and say what it did."""
    from .reminders.dispatch import run_pass

    result = run_pass(current_app._get_current_object())
    for text in result.unsent_texts:
        click.echo(f"{'=' * 72}\n{text.rstrip()}\n{'=' * 72}")
    click.echo(f"Reminders: {result.summary()}.")
    for error in sorted(set(result.errors))[:10]:
        click.echo(f"  failure: {error}")


@diary_cli.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON (for monitoring).")
def status_command(as_json):
    """Say whether the scheduler is alive and safety messages can go out; exit 1 when not."""
    import json

    from .operations.status import gather

    report = gather(current_app.config, now_utc())
    if as_json:
        click.echo(json.dumps(report.as_json(), indent=2, default=str))
    else:
        click.echo(
            f"Scheduler: {'alive' if report.scheduler_alive else 'SILENT'}"
            + (
                f", last pass {report.last_pass_at:%Y-%m-%d %H:%M:%S} UTC"
                if report.last_pass_at
                else ", no pass recorded"
            )
        )
        email = report.channels["email"]
        click.echo(
            f"Email: {email['smtp_host'] + ':' + str(email['smtp_port']) if email['smtp_host'] else 'not configured'}"
            f"; web push: {'configured' if report.channels['web_push']['configured'] else 'not configured'}"
        )
        for table, kinds in report.outbox.items():
            for kind, states in sorted(kinds.items()):
                click.echo(
                    f"Outbox {table} {kind}: " + ", ".join(f"{state} {n}" for state, n in sorted(states.items()))
                )
        if report.oldest_unsent_safety:
            oldest = report.oldest_unsent_safety
            click.echo(
                f"Oldest unsent safety message: {oldest['kind']} to {oldest['recipient']}, "
                f"{oldest['state']} since {oldest['created_utc']:%Y-%m-%d %H:%M} UTC"
                + (f" ({oldest['reason']})" if oldest["reason"] else "")
            )
        database = report.database
        click.echo(
            f"Database: {database['engine']} {database['server_version'] or ''}, migration "
            f"{database['migration'] or 'none'} (head {database['migration_head']}); diary {report.app_version}"
        )
        for problem in report.problems:
            click.echo(f"PROBLEM: {problem}")
        click.echo("OK" if not report.problems else f"{len(report.problems)} problem(s)")
    sys.exit(0 if not report.problems else 1)


@diary_cli.command("backup")
@click.argument("path", type=click.Path(dir_okay=False, writable=True))
def backup_command(path):
    """Copy the SQLite database to PATH, consistently, while the app runs."""
    engine = db.engine
    if engine.dialect.name != "sqlite":
        fail("backup copies the embedded SQLite database; for PostgreSQL use pg_dump.")
    source_path = engine.url.database
    target = Path(path)
    if target.exists():
        fail(f"{target} already exists; choose a new file name.")
    started = time.monotonic()
    backup_sqlite(source_path, target)
    click.echo(f"Backed up {source_path} to {target} in {time.monotonic() - started:.2f} s.")


def _check_postgresql_dump(path: Path, *, custom: bool) -> None:
    """A pg_dump file: what pg_restore --list sees in it (tables and their data). The full check is
    a restore into a scratch database (README, Backups)."""
    import shutil
    import subprocess

    if not custom:
        fail(
            "this is a plain-SQL PostgreSQL dump: restore-check reads SQLite backups and pg_dump's custom "
            "format (pg_dump -Fc). Check a plain dump by restoring it into a scratch database (README)."
        )
    if shutil.which("pg_restore") is None:
        fail("this is a PostgreSQL dump, and pg_restore is not installed here to list it.")
    listing = subprocess.run(["pg_restore", "--list", str(path)], capture_output=True, text=True)
    if listing.returncode != 0:
        fail(f"pg_restore cannot read it: {listing.stderr.strip()[:500]}")
    tables = sorted({line.split()[-2] for line in listing.stdout.splitlines() if " TABLE DATA " in line})
    expected = sorted(table.name for table in db.metadata.sorted_tables)
    missing = [name for name in expected if name not in tables]
    click.echo(f"PostgreSQL dump: {len(tables)} tables with data listed by pg_restore")
    if missing:
        fail("tables missing from the dump: " + ", ".join(missing))
    click.echo(
        "The dump lists every table of the diary. Row counts need a restore into a scratch "
        "database: see the README (Backups)."
    )


@diary_cli.command("restore-check")
@click.argument("path", type=click.Path(dir_okay=False))
def restore_check_command(path):
    """Check that the backup at PATH can be restored: integrity, row counts, last audit event.
    SQLite backups are checked whole; a PostgreSQL dump is listed with pg_restore."""
    from .operations.backups import restore_check

    with open(path, "rb") as handle:
        head = handle.read(64)
    if head.startswith(b"PGDMP") or b"PostgreSQL database dump" in head:
        _check_postgresql_dump(Path(path), custom=head.startswith(b"PGDMP"))
        return
    result = restore_check(Path(path))
    click.echo(f"integrity: {result.integrity}")
    for table, (in_backup, live) in result.tables.items():
        note = "" if in_backup == live else f"  (live has {live - in_backup:+d})"
        click.echo(f"  {table:22} backup {in_backup:>8}  live {live:>8}{note}")
    if result.last_event_backup:
        event_id, at, actor, action = result.last_event_backup
        click.echo(
            f"last audit event in the backup: #{event_id} {at} {actor} {action}: "
            + ("found unchanged in the live database" if result.last_event_live_match else "NOT in the live database")
        )
    if not result.ok:
        fail("the backup does not check out (see above).")
    click.echo("The backup checks out: it can be restored.")
