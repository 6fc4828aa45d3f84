"""Shared fixtures: an app on a real SQLite file (and on PostgreSQL when configured).

Set DIARY_TEST_DATABASE_URL (e.g. postgresql+psycopg://postgres@127.0.0.1:5432/test) and every
test that takes ``app`` runs once per database.
"""

from __future__ import annotations

import multiprocessing
import os
from datetime import UTC, datetime, timedelta

# Hashing with production Argon2 parameters takes ~0.2 s; the suite hashes hundreds of PINs and
# demo passwords, so it hashes with argon2-cffi's test profile (still Argon2id, still verified;
# hashes carry their parameters, so production code verifies them unchanged). The timing test
# that needs production strength makes its own hasher.
import argon2  # noqa: E402
import pytest
from flask import has_app_context
from flask.testing import FlaskClient
from sqlalchemy import text

import diary.governance.passwords  # noqa: E402
from diary import create_app
from diary.extensions import db
from diary.models import Participant
from diary.study.trial import ensure_study

diary.governance.passwords._hasher = argon2.PasswordHasher.from_parameters(argon2.profiles.CHEAPEST)

PG_URL = os.environ.get("DIARY_TEST_DATABASE_URL", "")
BACKENDS = ["sqlite"] + (["postgresql"] if PG_URL else [])


def pytest_sessionstart(session):
    """A PostgreSQL named by DIARY_TEST_DATABASE_URL is required: if it does not answer, the run
    stops here with the reason, instead of every PostgreSQL test failing (or CI passing on
    SQLite alone without saying so)."""
    if not PG_URL:
        return
    from sqlalchemy import create_engine
    from sqlalchemy.exc import SQLAlchemyError

    engine = create_engine(PG_URL, connect_args={"connect_timeout": 5})
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except SQLAlchemyError as error:
        pytest.exit(
            f"DIARY_TEST_DATABASE_URL is set to {PG_URL!r}, but that PostgreSQL does not answer "
            f"({error.__class__.__name__}: {str(error).splitlines()[0]}). Start it, or unset the "
            "variable to run on SQLite only.",
            returncode=3,
        )
    finally:
        engine.dispose()


NOW = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)


def worker_context():
    """For the tests' real parallel processes: started from a server that has imported the diary
    once (``forkserver``, preloading this module), so each starts in milliseconds instead of
    importing everything again (a spawned process took about a second: twenty of them, half a
    minute), and none inherits the test's threads, connections or locks, as a plain fork would."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["tests.conftest"])
    return context


class FreshContextClient(FlaskClient):
    """A test client whose every request runs in its own app context, as in production.

    A test that holds an app context (to use ``db.session``) would otherwise share ``g`` and
    the database session with every request it makes. The test's own transaction is committed
    first, so that on SQLite it does not hold the write lock while the request runs.
    """

    def open(self, *args, **kwargs):
        if has_app_context():
            db.session.commit()
        with self.application.app_context():
            response = super().open(*args, **kwargs)
        if has_app_context():
            db.session.expire_all()  # the request may have changed what the test holds
        return response


def make_app(url: str, **overrides):
    config = {
        "TESTING": True,
        "SECRET_KEY": "test-secret",
        "SQLALCHEMY_DATABASE_URI": url,
        "BASE_URL": "http://diary.test",
        "WTF_CSRF_ENABLED": True,
        # The daily digest would add an email to every pass after 08:00: tests about it turn it on.
        "DIGEST_HOUR": None,
    }
    config.update(overrides)
    app = create_app(config)
    app.test_client_class = FreshContextClient
    return app


_pg_schema_ready = False


def _reset_postgres(app):
    """Create the schema once per run, then empty every table between tests (fast)."""
    global _pg_schema_ready
    with app.app_context():
        if not _pg_schema_ready:
            db.drop_all()
            with db.engine.begin() as connection:
                connection.execute(text("DROP TABLE IF EXISTS alembic_version"))
            db.create_all()
            _pg_schema_ready = True
        tables = ", ".join(f'"{t.name}"' for t in db.metadata.sorted_tables)
        with db.engine.begin() as connection:
            connection.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))


@pytest.fixture(params=BACKENDS)
def backend(request):
    return request.param


@pytest.fixture
def app(backend, tmp_path, request):
    overrides = getattr(request, "param", None) or {}
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path / 'diary.sqlite'}"
    else:
        url = PG_URL
    app = make_app(url, **overrides)
    if backend == "postgresql":
        _reset_postgres(app)
    with app.app_context():
        if backend == "sqlite":
            db.create_all()
        ensure_study()
        db.session.commit()
    yield app
    with app.app_context():
        db.session.remove()
        db.engine.dispose()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def runner(app):
    return app.test_cli_runner()


@pytest.fixture
def ctx(app):
    with app.app_context():
        yield


@pytest.fixture
def study(ctx):
    from diary.study.trial import require_study

    return require_study()


@pytest.fixture
def enrolled(study):
    """A participant in sequence AB, New York time, not yet dosed. Returns (participant, token)."""
    from diary.participants.enrolment import enroll

    participant, token = enroll(
        study,
        site="NIH-CC",
        timezone="America/New_York",
        sequence="AB",
        actor="test",
        now=NOW - timedelta(days=10),
        code="P-TEST01",
        email="p1@example.org",
    )
    db.session.commit()
    return participant, token


@pytest.fixture
def dosed(enrolled):
    """The enrolled participant with infusion 1 started two hours before NOW."""
    from diary.dosing.infusions import record_dose

    participant, token = enrolled
    record_dose(participant, 1, NOW - timedelta(hours=2), actor="test", now=NOW)
    db.session.commit()
    return participant, token


def assessment_of(participant: Participant, period: int, code: str):
    for assessment in participant.periods[period - 1].assessments:
        if assessment.timepoint == code:
            return assessment
    raise KeyError(code)


def answers_for(protocol, code: str, vas: int = 40, **extra) -> dict:
    """A complete, valid form for time point ``code``."""
    from diary.entries.recording import field_name

    form = {}
    for instrument in protocol.instruments_for(protocol.timepoint(code)):
        for item in instrument.items:
            name = field_name(instrument, item)
            if item.type == "vas":
                form[name], form[f"{name}.touched"] = str(vas), "1"
            elif item.type == "nrs":
                form[name] = "5"
            elif item.type == "single_choice":
                form[name] = item.choices[-1].code
            elif item.type == "severity_checklist":
                for term in item.terms:
                    form[field_name(instrument, item, term.code)] = "none"
    form.update(extra)
    return form


_readiness = iter(range(1, 10**6))


def ready_for_the_truth(study):
    """Lock the study with every participant-period signed (or waived, when it had no infusion)
    by an investigator, as the true allocation and unblinding require. Uses the real rules."""
    import pyotp

    from diary.governance.lock import is_locked, lock_study
    from diary.governance.signoff import sign_all, unsigned_periods
    from diary.models import now_utc

    from .staff_helpers import PASSWORD, TOTP_SECRET, make_staff

    investigator = make_staff("investigator", f"investigator-{next(_readiness)}@site.test")
    now = now_utc()
    periods = [period for period, _status in unsigned_periods(study.id)]
    code = pyotp.TOTP(TOTP_SECRET).at(now)
    sign_all(periods, by=investigator, password=PASSWORD, code=code, now=now)
    waiting = [period for period, _status in unsigned_periods(study.id)]
    if waiting:
        later = now + timedelta(seconds=31)
        sign_all(
            waiting,
            by=investigator,
            password=PASSWORD,
            code=pyotp.TOTP(TOTP_SECRET).at(later),
            now=later,
            kind="waived",
            reason="no infusion given",
        )
    if not is_locked(study):
        lock_study(study, reason="database lock before unblinding", actor="test", by_id=None, now=now)
    db.session.commit()
