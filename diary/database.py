"""Binding the database: SQLite tuning, migrations, and the study's protocol."""

from __future__ import annotations

from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path

from flask import Flask
from sqlalchemy import event

from .extensions import db, migrate

MIGRATIONS = Path(__file__).resolve().parent / "migrations"

# True while serving something that only reads (a GET): on SQLite its transaction is a plain
# deferred BEGIN, so a long page render never holds the write lock a participant's submit needs.
READ_ONLY: ContextVar[bool] = ContextVar("diary_read_only", default=False)


@contextmanager
def reading_only():
    """Run the block's database work in read transactions (SQLite: no write lock)."""
    token = READ_ONLY.set(True)
    try:
        yield
    finally:
        READ_ONLY.reset(token)


def engine_options(url: str, config) -> dict:
    """The engine's settings for ``url``; the web benchmark's bare app is built with the same."""
    options: dict = {}
    if url.startswith("sqlite"):
        # Writers wait for each other (busy timeout) instead of failing at once.
        options["connect_args"] = {"timeout": 30}
    else:
        # A connection the server dropped (restart, failover, idle timeout) is replaced before
        # use instead of failing a request; no statement runs for ever.
        options["pool_pre_ping"] = True
        options["pool_size"] = config.get("DATABASE_POOL_SIZE", 5)
        options["max_overflow"] = config.get("DATABASE_MAX_OVERFLOW", 10)
        options["pool_recycle"] = 1800
        timeout_ms = int(config.get("DATABASE_STATEMENT_TIMEOUT_MS", 30000))
        options["connect_args"] = {"options": f"-c statement_timeout={timeout_ms}"}
    return options


def init_app(app: Flask) -> None:
    options = app.config.setdefault("SQLALCHEMY_ENGINE_OPTIONS", {})
    for name, value in engine_options(app.config["SQLALCHEMY_DATABASE_URI"], app.config).items():
        # What the deployment configured wins, key by key.
        options[name] = {**value, **options.get(name, {})} if isinstance(value, dict) else options.get(name, value)
    db.init_app(app)
    migrate.init_app(app, db, directory=str(MIGRATIONS), render_as_batch=True)
    with app.app_context():
        if db.engine.dialect.name == "sqlite":
            tune_sqlite(db.engine)


def tune_sqlite(engine) -> None:
    """WAL, foreign keys, a busy timeout, and write transactions that lock up front.

    pysqlite starts transactions lazily (a plain BEGIN); two writers that both read first then
    try to upgrade their locks deadlock, and one fails at once with "database is locked" whatever
    the timeout. BEGIN IMMEDIATE takes the write lock at the start, so the second writer waits.
    Read-only work (exports) asks for ``execution_options(diary_readonly=True)`` and gets a
    deferred BEGIN, so a long export does not hold the write lock.
    """

    @event.listens_for(engine, "connect")
    def on_connect(dbapi_connection, connection_record):
        dbapi_connection.isolation_level = None  # we issue BEGIN ourselves below
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def on_begin(connection):
        if connection.get_execution_options().get("isolation_level") == "AUTOCOMMIT":
            return  # each statement is its own transaction (the dispatch pass's outcomes)
        if connection.get_execution_options().get("diary_readonly") or READ_ONLY.get():
            connection.exec_driver_sql("BEGIN")
        else:
            connection.exec_driver_sql("BEGIN IMMEDIATE")
