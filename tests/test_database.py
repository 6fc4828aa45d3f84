"""The database: constraints that always hold, UTC times, no deletes, and migrations."""

from datetime import datetime, timedelta

import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import IntegrityError

from diary.dosing.infusions import record_dose
from diary.entries.recording import record_submission
from diary.errors import Refused
from diary.extensions import db
from diary.models import AuditEvent, HardDeleteRefused, Participant, Period, Submission
from diary.study.trial import protocol_of

from .conftest import NOW, answers_for, assessment_of


def test_second_submission_for_an_assessment_is_refused_by_the_database(dosed):
    """Even bypassing the rules, the database keeps one submission per assessment."""
    participant, _ = dosed
    assessment = assessment_of(participant, 1, "M120")
    db.session.add(Submission(assessment_id=assessment.id, submitted_at=NOW, collected_at=NOW, source="participant"))
    db.session.commit()
    db.session.add(Submission(assessment_id=assessment.id, submitted_at=NOW, collected_at=NOW, source="participant"))
    with pytest.raises(IntegrityError):
        db.session.commit()
    db.session.rollback()
    assert db.session.scalar(select(db.func.count()).select_from(Submission)) == 1


def test_one_period_number_per_participant(enrolled):
    participant, _ = enrolled
    db.session.add(Period(participant_id=participant.id, number=1, treatment="A"))
    with pytest.raises(IntegrityError):
        db.session.commit()
    db.session.rollback()


def test_participant_code_unique_per_study(enrolled, study):
    db.session.add(Participant(study_id=study.id, code="P-TEST01", site="X", timezone="UTC", sequence="AB"))
    with pytest.raises(IntegrityError):
        db.session.commit()
    db.session.rollback()


def test_proxy_entry_without_reason_is_refused_by_the_database(dosed):
    participant, _ = dosed
    assessment = assessment_of(participant, 1, "M80")
    db.session.add(Submission(assessment_id=assessment.id, submitted_at=NOW, source="paper"))
    with pytest.raises(IntegrityError):
        db.session.commit()
    db.session.rollback()


def test_times_come_back_as_aware_utc(dosed):
    """What goes in as UTC comes back as the same aware UTC instant, on every database."""
    participant, _ = dosed
    db.session.expire_all()
    dose_start = db.session.get(Period, participant.periods[0].id).dose_start
    assert dose_start == NOW - timedelta(hours=2)
    assert dose_start.utcoffset() == timedelta(0)


def test_naive_datetimes_are_refused(enrolled):
    participant, _ = enrolled
    participant.periods[0].dose_start = datetime(2026, 1, 1, 9, 0)
    with pytest.raises(Exception, match="naive datetime"):
        db.session.commit()
    db.session.rollback()


def test_nothing_is_hard_deleted(dosed):
    participant, _ = dosed
    db.session.delete(participant.periods[0].assessments[0])
    with pytest.raises(HardDeleteRefused):
        db.session.flush()
    db.session.rollback()


def test_audit_events_cannot_be_changed(dosed):
    event = db.session.scalars(select(AuditEvent)).first()
    event.new_value = "rewritten"
    with pytest.raises(HardDeleteRefused, match="append-only"):
        db.session.flush()
    db.session.rollback()


def test_submission_is_idempotent_by_key(dosed, study):
    """A retried submit with the same key returns the first submission and stores nothing new."""
    participant, _ = dosed
    assessment = assessment_of(participant, 1, "M120")
    form = answers_for(protocol_of(study.current_protocol_version), "M120")
    first, created = record_submission(assessment, form, now=NOW, actor="t", idempotency_key="k1")
    db.session.commit()
    again, created_again = record_submission(assessment, form, now=NOW, actor="t", idempotency_key="k1")
    assert created and not created_again and again.id == first.id
    assert db.session.scalar(select(db.func.count()).select_from(Submission)) == 1


def test_submission_outside_window_is_refused_and_stores_nothing(dosed, study):
    participant, _ = dosed
    assessment = assessment_of(participant, 1, "D3")
    form = answers_for(protocol_of(study.current_protocol_version), "D3")
    with pytest.raises(Refused, match="not open yet"):
        record_submission(assessment, form, now=NOW, actor="t")
    db.session.rollback()
    assert db.session.scalar(select(db.func.count()).select_from(Submission)) == 0


def test_dose_materialises_and_correction_reanchors(dosed):
    """A corrected infusion time moves the unsubmitted windows and is audited with its reason."""
    participant, _ = dosed
    before = assessment_of(participant, 1, "D1").window_open
    record_dose(participant, 1, NOW - timedelta(hours=3), actor="t", now=NOW, reason="typo in time")
    db.session.commit()
    assert assessment_of(participant, 1, "D1").window_open == before - timedelta(hours=1)
    event = db.session.scalars(select(AuditEvent).where(AuditEvent.action == "correct_dose")).one()
    assert event.reason == "typo in time"
    assert event.old_value == (NOW - timedelta(hours=2)).isoformat()


def test_migrations_match_the_models(tmp_path):
    """`init` builds, through migrations alone, exactly the schema the models describe."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext
    from flask_migrate import upgrade

    from diary.database import MIGRATIONS

    from .conftest import make_app

    app = make_app(f"sqlite:///{tmp_path / 'migrated.sqlite'}")
    with app.app_context():
        upgrade(directory=str(MIGRATIONS))
        with db.engine.connect() as connection:
            diff = compare_metadata(MigrationContext.configure(connection), db.metadata)
        assert diff == []
        mode = db.session.execute(text("PRAGMA journal_mode")).scalar()
        assert mode == "wal"
        assert db.session.execute(text("PRAGMA foreign_keys")).scalar() == 1


@pytest.mark.skipif(
    not __import__("os").environ.get("DIARY_TEST_DATABASE_URL"),
    reason="needs DIARY_TEST_DATABASE_URL (a PostgreSQL server)",
)
def test_migrations_match_the_models_on_postgresql():
    """The same migrations build the same schema on PostgreSQL, in a database of their own."""
    import psycopg
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext
    from flask_migrate import upgrade
    from sqlalchemy.engine import make_url

    from diary.database import MIGRATIONS

    from .conftest import PG_URL, make_app

    url = make_url(PG_URL)
    admin = psycopg.connect(
        host=url.host, port=url.port or 5432, user=url.username, dbname=url.database, autocommit=True
    )
    admin.execute("DROP DATABASE IF EXISTS diary_migration_check")
    admin.execute("CREATE DATABASE diary_migration_check")
    try:
        app = make_app(url.set(database="diary_migration_check").render_as_string(hide_password=False))
        with app.app_context():
            upgrade(directory=str(MIGRATIONS))
            with db.engine.connect() as connection:
                diff = compare_metadata(MigrationContext.configure(connection), db.metadata)
            db.engine.dispose()
        assert diff == []
    finally:
        admin.execute("DROP DATABASE IF EXISTS diary_migration_check")
        admin.close()


def test_a_connection_postgresql_dropped_is_replaced_not_a_500(app, client, backend):
    """pool_pre_ping: after the server ends every connection, the next request still answers."""
    if backend != "postgresql":
        pytest.skip("PostgreSQL only: SQLite has no server to drop connections")
    from sqlalchemy import create_engine, text

    assert client.get("/healthz").status_code == 200
    killer = create_engine(app.config["SQLALCHEMY_DATABASE_URI"])
    with killer.begin() as connection:
        ended = connection.execute(
            text(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid() AND usename = current_user "
                "AND application_name NOT LIKE 'pg_%'"
            )
        ).scalar()
    killer.dispose()
    assert ended >= 1
    assert client.get("/healthz").status_code == 200
    assert client.get("/staff/login").status_code == 200


def test_an_unreachable_postgresql_named_for_the_suite_stops_the_run_with_the_reason(tmp_path):
    """DIARY_TEST_DATABASE_URL set but not answering: the run exits 3 at once, saying why, rather
    than failing every PostgreSQL test or passing on SQLite alone."""
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    environment = {
        **__import__("os").environ,
        "DIARY_TEST_DATABASE_URL": "postgresql+psycopg://postgres@127.0.0.1:9/test",
    }
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--collect-only", "tests/test_schedule.py"],
        cwd=root,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 3
    assert "but that PostgreSQL does not answer" in result.stdout + result.stderr
