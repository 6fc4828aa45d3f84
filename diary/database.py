"""Binding the database: SQLite tuning, migrations, and the study's protocol."""

from __future__ import annotations

import fcntl
import os
import sqlite3
import threading
import time
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
        # Writers wait for each other (busy timeout) instead of failing at once, taking turns
        # at the writers' gate first (``GatedConnection``).
        options["connect_args"] = {"timeout": SQLITE_BUSY_TIMEOUT_S, "factory": GatedConnection}
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
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_S * 1000}")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def on_begin(connection):
        if connection.get_execution_options().get("isolation_level") == "AUTOCOMMIT":
            return  # each statement is its own transaction (the dispatch pass's outcomes)
        if connection.get_execution_options().get("diary_readonly") or READ_ONLY.get():
            connection.exec_driver_sql("BEGIN")
            if isinstance(connection.connection.dbapi_connection, GatedConnection):
                connection.connection.dbapi_connection.reading = True
        else:
            gated = connection.connection.dbapi_connection
            if isinstance(gated, GatedConnection):
                gated.enter_gate()
            try:
                connection.exec_driver_sql("BEGIN IMMEDIATE")
            except BaseException:
                if isinstance(gated, GatedConnection):
                    gated.leave_gate()
                raise


def write_from_here(connection) -> None:
    """The request writes from here on. On SQLite, a request that began in a read transaction
    (``READ_FIRST`` endpoints: a participant's submit reads what its rules need first) ends it
    (it changed nothing) and begins a write transaction: the writers' gate, then BEGIN
    IMMEDIATE. The write lock is then held for the writes alone, not for the reads, the checks
    and the rendering before them: held for the whole request, it made submits take turns (150
    a second at 10 clients against 183 at one). What was read is then judged as PostgreSQL's
    READ COMMITTED judges it (a change committed between the read and the write is not seen);
    what must not happen twice, a second submission of an entry, the unique constraint refuses.
    Anywhere else (PostgreSQL, a write transaction already) it does nothing."""
    dbapi_connection = connection.connection.dbapi_connection
    if not (isinstance(dbapi_connection, GatedConnection) and dbapi_connection.reading):
        return
    READ_ONLY.set(False)
    dbapi_connection.execute("COMMIT")
    dbapi_connection.reading = False
    dbapi_connection.enter_gate()
    try:
        dbapi_connection.execute("BEGIN IMMEDIATE")
    except BaseException:
        dbapi_connection.leave_gate()
        raise


# --- The writers' gate (SQLite) ----------------------------------------------------------------

SQLITE_BUSY_TIMEOUT_S = 30


class WritersGate:
    """Writers to one SQLite file take turns here, just before their BEGIN IMMEDIATE.

    SQLite's own busy handler makes a writer that finds the lock taken sleep and try again, 1,
    2, 5, 10 … then 100 ms at a time; a submit holds the lock for about 4 ms, so with ten
    participants submitting at once the lock sat free while its waiters slept: a p99 of 1.3 s
    at 10 clients, the workers' two cores half idle. Here a thread waits on its process's lock
    (woken the moment it is free) and that lock's holder on an ``flock`` of a file beside the
    database (tried every 0.2–2 ms), so the next writer starts as soon as the last one ends.

    SQLite's lock stays the guard: a writer that has not passed the gate within the busy
    timeout goes on to its BEGIN IMMEDIATE, which waits (and fails) as it did before.
    """

    def __init__(self, database: str):
        self.path = f"{database}-writers.lock"
        self.pid = os.getpid()
        self.turn = threading.Lock()  # one writer of this process at the file's lock
        self.fd: int | None = None

    def enter(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        if not self.turn.acquire(timeout=timeout):
            return False
        try:
            if self.fd is None:
                self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
            pause = 0.0002
            while True:
                try:
                    fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    return True
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        break
                    time.sleep(pause)
                    pause = min(pause * 2, 0.002)
        except OSError:
            pass  # no lock file (a read-only folder): SQLite's lock alone, as before
        self.turn.release()
        return False

    def leave(self) -> None:
        try:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
        finally:
            self.turn.release()


_gates: dict[str, WritersGate] = {}
_gates_lock = threading.Lock()


def writers_gate(database: str) -> WritersGate | None:
    """This process's gate for a database file (none for an in-memory database)."""
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    path = os.path.abspath(database)
    with _gates_lock:
        gate = _gates.get(path)
        if gate is None or gate.pid != os.getpid():
            # A forked process gets gates of its own: a lock or open file shared with its
            # parent would let both write at once.
            gate = _gates[path] = WritersGate(path)
        return gate


class GatedConnection(sqlite3.Connection):
    """A SQLite connection that passes the writers' gate before a write transaction and leaves
    it when the transaction ends: after its COMMIT or ROLLBACK has run, or when it closes."""

    def __init__(self, database, *args, **kwargs):
        super().__init__(database, *args, **kwargs)
        self.gate = writers_gate(os.fspath(database))
        self.in_gate = False
        self.reading = False  # in a read transaction (a plain BEGIN) that ``write_from_here`` may end

    def enter_gate(self) -> None:
        if self.gate is not None and not self.in_gate:
            self.in_gate = self.gate.enter(SQLITE_BUSY_TIMEOUT_S)

    def leave_gate(self) -> None:
        self.reading = False
        if self.in_gate:
            self.in_gate = False
            self.gate.leave()

    def commit(self):
        try:
            super().commit()
        finally:
            self.leave_gate()

    def rollback(self):
        try:
            super().rollback()
        finally:
            self.leave_gate()

    def close(self):
        try:
            super().close()
        finally:
            self.leave_gate()
