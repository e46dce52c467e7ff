"""Group commit on SQLite: status changes that threads of one process ask for at the same time
share one transaction.

A worker running several jobs at once claims and ends them from as many threads, each a short
transaction. SQLite runs one writer at a time, and a thread that finds the database locked
waits and tries again (jobs/db.py's ``_begin_writing``). Here the first thread to ask commits at
once, alone; threads that ask while a commit is under way queue up, and the next of them commits
all of the queue in one transaction. A write alone pays nothing more than before; under load a
commit carries many, and no thread of the process waits on another's lock (measured:
docs/benchmarks.md).

PostgreSQL gets no such sharing: its transactions run side by side on their own connections and
each WAL flush already serves every commit waiting at the time; measured, a shared transaction
there was no faster.

Each write is a function of the transaction's connection. What one of them raises as a
``SparkgateError`` (a transition refused: no row changed) is its own outcome and leaves the
others be: such errors come before the write they refuse. Any other error rolls the shared
transaction back. One that a write caused (a constraint, a value the database refuses) is found
by trying each write again in a transaction of its own, so it fails alone and its neighbours
commit. One of the database itself (locked past its busy timeout, unreachable, its disk) is
every write's outcome at once: trying each again would only wait that long once more for each,
and their callers have their own ways through an outage (a job's end is retried, a claim goes
back to the queue).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import OperationalError

from sparkgate.jobs.db import writing
from sparkgate.jobs.errors import SparkgateError

T = TypeVar("T")


@dataclass
class _Write(Generic[T]):
    work: Callable[[Connection], T]
    value: Any = None
    error: BaseException | None = None
    # Set once the write is settled, or once it is its turn to commit the queue (``leads``).
    woken: threading.Event = field(default_factory=threading.Event)
    leads: bool = False

    def outcome(self) -> T:
        if self.error is not None:
            raise self.error
        return self.value


class GroupCommit:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.shares = engine.dialect.name == "sqlite"
        self._queued: list[_Write[Any]] = []
        self._committing = False
        self._lock = threading.Lock()

    def run(self, work: Callable[[Connection], T]) -> T:
        """``work(conn)``'s value once its transaction is committed (or what it raised).
        ``work`` must not itself ask this for a write: it would wait for its own commit."""
        if not self.shares:
            with writing(self.engine) as conn:
                return work(conn)
        write: _Write[T] = _Write(work)
        with self._lock:
            self._queued.append(write)
            write.leads = not self._committing
            self._committing = True
        if not write.leads:
            # Each waiter is woken alone: by the commit that settles it, or to lead the next.
            write.woken.wait()
        if write.leads:
            self._lead()
        return write.outcome()

    def _lead(self) -> None:
        with self._lock:
            batch, self._queued = self._queued, []
        try:
            _commit(self.engine, batch)
        finally:
            with self._lock:
                if self._queued:
                    successor = self._queued[0]
                    successor.leads = True
                    successor.woken.set()
                else:
                    self._committing = False


def _commit(engine: Engine, batch: list[_Write[Any]]) -> None:
    try:
        _together(engine, batch)
    except BaseException as exc:
        if len(batch) == 1 or not isinstance(exc, Exception) or isinstance(exc, OperationalError):
            for write in batch:
                _settle(write, error=exc)
            return
        for write in batch:
            try:
                _together(engine, [write])
            except Exception as alone:
                _settle(write, error=alone)


def _together(engine: Engine, batch: list[_Write[Any]]) -> None:
    outcomes: list[tuple[Any, BaseException | None]] = []
    with writing(engine) as conn:
        for write in batch:
            try:
                outcomes.append((write.work(conn), None))
            except SparkgateError as refused:
                outcomes.append((None, refused))
    for write, (value, error) in zip(batch, outcomes, strict=True):
        _settle(write, value=value, error=error)


def _settle(write: _Write[Any], value: Any = None, error: BaseException | None = None) -> None:
    write.value, write.error = value, error
    write.woken.set()
