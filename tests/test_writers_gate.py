"""The writers' gate on SQLite: writers to one database file take turns before BEGIN IMMEDIATE,
across threads and processes, and every way a write transaction ends lets the next one in."""

import os
import sqlite3
import threading

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import OperationalError

from diary import database
from diary.database import GatedConnection, engine_options, tune_sqlite, writers_gate

from .conftest import worker_context


def _engine(path):
    url = f"sqlite:///{path}"
    engine = create_engine(url, **engine_options(url, {}))
    tune_sqlite(engine)
    with engine.begin() as connection:
        connection.execute(text("CREATE TABLE IF NOT EXISTS tally (n INTEGER)"))
    return engine


def _hold_the_gate(path, holding, release, queue):
    """Another process: pass the gate in a write transaction, wait to be told, then commit."""
    engine = _engine(path)
    with engine.begin() as connection:
        connection.execute(text("INSERT INTO tally VALUES (1)"))
        queue.put(connection.connection.dbapi_connection.in_gate)
        holding.set()
        release.wait(30)
    queue.put("committed")
    engine.dispose()


def test_a_gate_is_one_per_database_file_and_none_in_memory(tmp_path):
    path = str(tmp_path / "diary.sqlite")
    assert writers_gate(":memory:") is None and writers_gate("") is None
    assert writers_gate("file:diary?mode=ro") is None  # a URI names no file of ours to lock beside
    assert writers_gate(path) is writers_gate(path)
    assert writers_gate(path) is not writers_gate(str(tmp_path / "other.sqlite"))
    assert writers_gate(path).path == f"{os.path.abspath(path)}-writers.lock"


def test_a_forked_process_gets_a_gate_of_its_own(tmp_path):
    """A lock or open file shared with the parent would let both write at once."""
    path = str(tmp_path / "diary.sqlite")
    parent = writers_gate(path)
    assert parent.enter(1)
    child = os.fork()
    if child == 0:  # the child: its own gate, which the parent's holding keeps shut
        gate = writers_gate(path)
        os._exit(0 if gate is not parent and gate.pid == os.getpid() and not gate.enter(0.2) else 1)
    _, status = os.waitpid(child, 0)
    parent.leave()
    assert os.waitstatus_to_exitcode(status) == 0


def test_the_gate_keeps_a_second_thread_out_until_the_first_leaves(tmp_path):
    gate = writers_gate(str(tmp_path / "diary.sqlite"))
    assert gate.enter(1)
    outcome = []
    waiter = threading.Thread(target=lambda: outcome.append(gate.enter(0.2)))
    waiter.start()
    waiter.join()
    assert outcome == [False]  # refused within its timeout while the gate is held
    gate.leave()
    assert gate.enter(1)  # free again
    gate.leave()


def test_the_gate_keeps_another_process_out_until_its_transaction_commits(tmp_path):
    """Real parallel processes: while one holds a write transaction, the other cannot pass the
    gate; the holder's COMMIT lets it in, and both rows are stored."""
    path = tmp_path / "diary.sqlite"
    engine = _engine(path)
    context = worker_context()
    holding, release, queue = context.Event(), context.Event(), context.Queue()
    holder = context.Process(target=_hold_the_gate, args=(str(path), holding, release, queue))
    holder.start()
    try:
        assert holding.wait(60)
        assert queue.get(timeout=10) is True  # the holder's connection is in the gate
        gate = writers_gate(str(path))
        assert not gate.enter(0.3)
        release.set()
        assert queue.get(timeout=30) == "committed"
        assert gate.enter(5)
        gate.leave()
        with engine.begin() as connection:
            connection.execute(text("INSERT INTO tally VALUES (2)"))
            assert connection.execute(text("SELECT count(*) FROM tally")).scalar() == 2
    finally:
        release.set()
        holder.join(30)
        engine.dispose()
    assert holder.exitcode == 0


@pytest.mark.parametrize("ending", ["commit", "rollback", "close"])
def test_every_end_of_a_write_transaction_leaves_the_gate(tmp_path, ending):
    engine = _engine(tmp_path / "diary.sqlite")
    gate = writers_gate(str(tmp_path / "diary.sqlite"))
    connection = engine.connect()
    dbapi = connection.connection.dbapi_connection
    assert isinstance(dbapi, GatedConnection)
    transaction = connection.begin()
    connection.execute(text("INSERT INTO tally VALUES (1)"))
    assert dbapi.in_gate and not gate.enter(0.1)
    if ending == "commit":
        transaction.commit()
    elif ending == "rollback":
        transaction.rollback()
    else:
        connection.invalidate()  # the DBAPI connection is closed mid-transaction
    assert not dbapi.in_gate
    assert gate.enter(1)
    gate.leave()
    connection.close()
    engine.dispose()


def test_a_read_transaction_does_not_take_the_gate(tmp_path):
    engine = _engine(tmp_path / "diary.sqlite")
    gate = writers_gate(str(tmp_path / "diary.sqlite"))
    with engine.connect().execution_options(diary_readonly=True) as connection:
        connection.execute(text("SELECT count(*) FROM tally"))
        assert not connection.connection.dbapi_connection.in_gate
        assert gate.enter(1)  # a writer elsewhere is not kept out by a reader
        gate.leave()
    engine.dispose()


def test_a_begin_that_fails_leaves_the_gate(tmp_path, monkeypatch):
    """SQLite's lock stays the guard: a writer outside the gate (an ungated sqlite3 connection)
    holds it, so BEGIN IMMEDIATE fails after the busy timeout, and the gate is left for the next."""
    monkeypatch.setattr(database, "SQLITE_BUSY_TIMEOUT_S", 0.2)
    path = tmp_path / "diary.sqlite"
    engine = _engine(path)
    engine.dispose()  # new connections take the short timeout
    outsider = sqlite3.connect(path, timeout=0, isolation_level=None)
    outsider.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(OperationalError, match="locked"):
            with engine.begin() as connection:
                connection.execute(text("INSERT INTO tally VALUES (1)"))
        gate = writers_gate(str(path))
        assert gate.enter(1)
        gate.leave()
    finally:
        outsider.execute("ROLLBACK")
        outsider.close()
        engine.dispose()
