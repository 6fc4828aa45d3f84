"""Each command of the CLI contract, through Flask's test runner."""

import re
import sqlite3
from pathlib import Path

import pytest
from sqlalchemy import func, select

from diary.extensions import db
from diary.governance.passwords import verify_secret
from diary.models import Assessment, AuditEvent, Participant, RandomizationSlot, StaffUser, Submission


def test_init_is_repeatable(runner, ctx):
    """init on an existing database migrates nothing new and keeps one protocol version."""
    from flask_migrate import stamp

    from diary.database import MIGRATIONS

    stamp(directory=str(MIGRATIONS))  # the fixture built the schema with create_all
    result = runner.invoke(args=["diary", "init"])
    assert result.exit_code == 0, result.output
    assert "protocol ketamine-fatigue-crossover version 1.3" in result.output


def test_init_creates_the_schema_through_migrations(tmp_path):
    from .conftest import make_app

    app = make_app(f"sqlite:///{tmp_path / 'fresh.sqlite'}")
    result = app.test_cli_runner().invoke(args=["diary", "init"])
    assert result.exit_code == 0, result.output
    assert "(newly loaded)" in result.output
    with sqlite3.connect(tmp_path / "fresh.sqlite") as connection:
        tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"alembic_version", "participant", "assessment", "submission", "audit_event"} <= tables


def test_demo_builds_the_trial_shaped_study(runner, ctx):
    """10 participants (4 AB, 6 BA), open windows now, some missed, headaches and dizziness."""
    result = runner.invoke(args=["diary", "demo"])
    assert result.exit_code == 0, result.output
    participants = db.session.scalars(select(Participant)).all()
    assert len(participants) == 10
    assert sorted(p.sequence for p in participants).count("AB") == 4
    assert "coordinator@demo.diary" in result.output
    link = re.search(r"http://diary.test/p/(\S+)", result.output)
    assert link, result.output
    from diary.participants.enrolment import hash_token

    linked = db.session.scalar(select(Participant).where(Participant.link_token_hash == hash_token(link.group(1))))
    assert linked is not None
    from diary.models import now_utc

    now = now_utc()
    open_now = [
        a for p in linked.periods for a in p.assessments if a.window_open <= now < a.late_close and a.submission is None
    ]
    assert open_now, "the printed participant must have an entry open right now"
    missed = re.search(r"(\d+) missed", result.output)
    assert int(missed.group(1)) > 0
    terms = {
        row
        for row in db.session.execute(
            select(func.distinct(__import__("diary.models", fromlist=["SideEffectReport"]).SideEffectReport.term))
        ).scalars()
    }
    assert terms == {"headache", "dizziness"}


def test_demo_twice_is_refused_but_if_empty_succeeds(runner, ctx):
    assert runner.invoke(args=["diary", "demo"]).exit_code == 0
    again = runner.invoke(args=["diary", "demo"])
    assert again.exit_code != 0 and "already holds participants" in again.output
    quiet = runner.invoke(args=["diary", "demo", "--if-empty"])
    assert quiet.exit_code == 0 and "not loaded again" in quiet.output


def test_create_user_from_stdin(runner, ctx):
    result = runner.invoke(
        args=["diary", "create-user", "Nurse@Site.org", "--role", "coordinator", "--password-stdin"],
        input="a long enough password\n",
    )
    assert result.exit_code == 0, result.output
    user = db.session.scalar(select(StaffUser).where(StaffUser.email == "nurse@site.org"))
    assert user.role == "coordinator"
    assert verify_secret(user.password_hash, "a long enough password")
    assert "long enough" not in user.password_hash


def test_create_user_refuses_a_short_password(runner, ctx):
    result = runner.invoke(
        args=["diary", "create-user", "a@b.org", "--role", "analyst", "--password-stdin"], input="short\n"
    )
    assert result.exit_code != 0 and "at least 12 characters" in result.output
    assert db.session.scalar(select(func.count()).select_from(StaffUser)) == 0


def test_create_user_prompts_for_the_password(runner, ctx):
    result = runner.invoke(
        args=["diary", "create-user", "c@b.org", "--role", "admin"], input="twelve chars ok\ntwelve chars ok\n"
    )
    assert result.exit_code == 0, result.output


def test_enroll_takes_the_next_slot_and_prints_a_link(runner, study):
    for position, sequence in enumerate(["BA", "AB"], start=1):
        db.session.add(RandomizationSlot(study_id=study.id, site="NIH-CC", position=position, sequence=sequence))
    db.session.commit()
    result = runner.invoke(args=["diary", "enroll", "--site", "NIH-CC", "--timezone", "Europe/Paris"])
    assert result.exit_code == 0, result.output
    participant = db.session.scalars(select(Participant)).one()
    assert participant.sequence == "BA" and participant.timezone == "Europe/Paris"
    token = re.search(r"/p/(\S+)", result.output).group(1)
    assert participant.link_token_hash != token and len(token) >= 40
    assert [p.treatment for p in participant.periods] == ["B", "A"]


def test_enroll_refuses_a_bad_time_zone(runner, ctx):
    result = runner.invoke(args=["diary", "enroll", "--site", "NIH-CC", "--timezone", "Mars/Base", "--sequence", "AB"])
    assert result.exit_code != 0 and "not a time zone name" in result.output
    assert db.session.scalar(select(func.count()).select_from(Participant)) == 0


def test_enroll_without_a_free_slot_is_refused(runner, ctx):
    result = runner.invoke(args=["diary", "enroll", "--site", "NIH-CC"])
    assert result.exit_code != 0 and "no free slot" in result.output


def test_dose_records_the_local_start(runner, enrolled):
    result = runner.invoke(args=["diary", "dose", "P-TEST01", "1", "2026-02-20 09:30"])
    assert result.exit_code == 0, result.output
    assert "2026-02-20T14:30:00+00:00" in result.output  # 09:30 in New York is 14:30 UTC
    assert db.session.scalar(select(func.count()).select_from(Assessment)) == 10


def test_dose_refuses_a_time_the_clock_skipped(runner, enrolled):
    result = runner.invoke(args=["diary", "dose", "P-TEST01", "1", "2026-03-08 02:30"])
    assert result.exit_code != 0 and "does not exist in America/New_York" in result.output


def test_dose_refuses_the_future(runner, enrolled):
    result = runner.invoke(args=["diary", "dose", "P-TEST01", "1", "2099-01-01 09:00"])
    assert result.exit_code != 0 and "cannot be in the future" in result.output


def test_dose_correction_needs_a_reason(runner, enrolled):
    assert runner.invoke(args=["diary", "dose", "P-TEST01", "1", "2026-02-20 09:30"]).exit_code == 0
    refused = runner.invoke(args=["diary", "dose", "P-TEST01", "1", "2026-02-20 09:45"])
    assert refused.exit_code != 0 and "needs a reason" in refused.output
    fixed = runner.invoke(args=["diary", "dose", "P-TEST01", "1", "2026-02-20 09:45", "--reason", "pump log"])
    assert fixed.exit_code == 0
    assert db.session.scalar(select(AuditEvent.reason).where(AuditEvent.action == "correct_dose")) == "pump log"


def test_period_two_needs_period_one_and_the_gap(runner, enrolled):
    early = runner.invoke(args=["diary", "dose", "P-TEST01", "2", "2026-02-20 09:30"])
    assert early.exit_code != 0 and "Record infusion 1 before infusion 2" in early.output
    runner.invoke(args=["diary", "dose", "P-TEST01", "1", "2026-02-20 09:30"])
    close = runner.invoke(args=["diary", "dose", "P-TEST01", "2", "2026-02-28 09:30"])
    assert close.exit_code != 0 and "at least 13 days after infusion 1" in close.output


def test_backup_copies_the_database(runner, enrolled, tmp_path, backend):
    if backend != "sqlite":
        pytest.skip("backup copies the embedded SQLite file; PostgreSQL uses pg_dump")
    target = tmp_path / "copy.sqlite"
    result = runner.invoke(args=["diary", "backup", str(target)])
    assert result.exit_code == 0, result.output
    with sqlite3.connect(target) as copy:
        assert copy.execute("SELECT code FROM participant").fetchall() == [("P-TEST01",)]


def test_scheduler_job_is_configured(app):
    """One dispatch job with a fixed id, coalescing, and a misfire grace."""
    from diary.reminders.scheduler import build_scheduler

    scheduler = build_scheduler(app, interval=60)
    job = scheduler.get_job("dispatch")
    assert job is not None and job.coalesce and job.misfire_grace_time >= 30 and job.max_instances == 1
    assert job.next_run_time is not None  # the first pass runs at start-up, not a minute later


def test_no_submissions_are_created_by_dose(runner, enrolled):
    runner.invoke(args=["diary", "dose", "P-TEST01", "1", "2026-02-20 09:30"])
    assert db.session.scalar(select(func.count()).select_from(Submission)) == 0


def test_a_study_protocol_file_replaces_the_shipped_one(tmp_path):
    """DIARY_PROTOCOL_FILE points init at a study's own file, validated like any other."""
    from diary.protocol import shipped_protocol_path

    from .conftest import make_app

    own = tmp_path / "our-study.yaml"
    own.write_text(
        shipped_protocol_path("ketamine-fatigue-crossover")
        .read_text()
        .replace("id: ketamine-fatigue-crossover", "id: our-study")
    )
    app = make_app(f"sqlite:///{tmp_path / 'own.sqlite'}", PROTOCOL_FILE=str(own))
    result = app.test_cli_runner().invoke(args=["diary", "init"])
    assert result.exit_code == 0 and "protocol our-study" in result.output
    own.write_text("id: broken\n")
    broken = app.test_cli_runner().invoke(args=["diary", "init"])
    assert broken.exit_code != 0 and f"{own}: periods: is required" in broken.output


def test_protocol_check_names_every_problem_with_its_path_and_needs_no_database(tmp_path):
    """`flask diary protocol check FILE`: every problem at once, each with its path in the file
    (exit 1); the shipped protocol passes (exit 0); no database is opened or created."""
    from .conftest import make_app

    database = tmp_path / "never.sqlite"
    runner = make_app(f"sqlite:///{database}").test_cli_runner()
    shipped = Path(__file__).resolve().parent.parent / "diary" / "protocols" / "ketamine-fatigue-crossover.yaml"
    good = runner.invoke(args=["diary", "protocol", "check", str(shipped)])
    assert good.exit_code == 0 and "No problems" in good.output and "version 1.3" in good.output
    text = shipped.read_text(encoding="utf-8")
    broken = text.replace("periods: 2", "periods: 0", 1).replace(
        "min_days_between_doses: 13", "min_days_between_doses: -2", 1
    )
    path = tmp_path / "broken.yaml"
    path.write_text(broken, encoding="utf-8")
    result = runner.invoke(args=["diary", "protocol", "check", str(path)])
    assert result.exit_code == 1, result.output
    assert f"{path}: periods: must be at least 1" in result.output
    assert f"{path}: min_days_between_doses: must be a whole number of days, 0 or more" in result.output
    assert result.output.strip().endswith("problems.") and result.output.count(f"{path}: ") >= 2
    assert not database.exists()
