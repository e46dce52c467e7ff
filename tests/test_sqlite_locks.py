"""SQLite's write lock: a write transaction waits for one held elsewhere (another process's, as
a gateway's and its workers' are) and goes on once it is free; held past the busy timeout, the
transaction fails with SQLAlchemy's error, as callers expect."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine
from sqlalchemy.exc import OperationalError

from sparkgate.jobs import db
from sparkgate.jobs.db import make_engine, writing

HELD_S = 0.3


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "locks.db"


@pytest.fixture
def engine(path: Path) -> Iterator[Engine]:
    engine = make_engine(f"sqlite:///{path}")
    with writing(engine) as conn:
        conn.exec_driver_sql("CREATE TABLE t (x INTEGER)")
    yield engine
    engine.dispose()


def _hold_write_lock(path: Path, release: threading.Event) -> threading.Thread:
    """Another connection holds the write lock until ``release`` is set."""
    taken = threading.Event()

    def hold() -> None:
        other = sqlite3.connect(path, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")
        taken.set()
        release.wait(30)
        other.execute("COMMIT")
        other.close()

    thread = threading.Thread(target=hold)
    thread.start()
    assert taken.wait(10)
    return thread


def test_a_write_waits_for_the_lock_held_elsewhere_then_goes_on(engine: Engine, path: Path):
    release = threading.Event()
    holder = _hold_write_lock(path, release)
    timer = threading.Timer(HELD_S, release.set)
    timer.start()
    with writing(engine) as conn:
        assert release.is_set()  # it began only once the lock was free
        conn.exec_driver_sql("INSERT INTO t VALUES (1)")
    holder.join(10)
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM t").scalar() == 1
        # Other statements keep SQLite's own wait for a lock.
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 30_000


def test_a_lock_held_past_the_busy_timeout_fails_the_write(engine: Engine, path: Path,
                                                          monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(db, "SQLITE_BUSY_TIMEOUT_S", HELD_S)
    release = threading.Event()
    holder = _hold_write_lock(path, release)
    try:
        with pytest.raises(OperationalError, match="locked"), writing(engine) as conn:
            conn.exec_driver_sql("INSERT INTO t VALUES (1)")
    finally:
        release.set()
        holder.join(10)
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM t").scalar() == 0
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 30_000
