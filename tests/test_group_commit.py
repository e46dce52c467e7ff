"""On SQLite, status changes asked for at once by threads of one process share a commit (group
commit), each with its own outcome; on PostgreSQL each keeps a transaction of its own."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from sqlalchemy import Connection, event, text
from sqlalchemy.exc import IntegrityError, OperationalError

from sparkgate.jobs.errors import IllegalTransition, NotFound
from sparkgate.jobs.group_commit import GroupCommit
from sparkgate.jobs.state import JobStatus
from sparkgate.jobs.store import Store
from tests.test_state import new_job

# Long enough for the threads started behind a held commit to queue up behind it.
QUEUE_UP_S = 0.3


@pytest.fixture
def transactions(engine) -> Iterator[list[int]]:
    """One item for each transaction begun from now on."""
    counted: list[int] = []

    def count(_conn: Any) -> None:
        counted.append(1)

    event.listen(engine, "begin", count)
    yield counted
    event.remove(engine, "begin", count)


@pytest.fixture
def hold_next_commit(engine) -> Iterator[Callable[[], threading.Event]]:
    """Once called, the next transaction to begin waits until the event it returns is set: a
    commit is under way while the test's other threads ask for theirs."""
    release = threading.Event()
    held: list[int] = []

    def hold(_conn: Any) -> None:
        if not held:
            held.append(1)
            assert release.wait(30)

    def arm() -> threading.Event:
        event.listen(engine, "begin", hold)
        return release

    yield arm
    release.set()
    if event.contains(engine, "begin", hold):
        event.remove(engine, "begin", hold)


def _at_once(calls: list[Callable[[], Any]], release: threading.Event) -> list[Any]:
    """Each call's value (or what it raised) after running them on threads of their own, the
    first one first: the others start while its commit is held."""
    outcomes: list[Any] = [None] * len(calls)
    calling = [threading.Event() for _ in calls]

    def call(i: int) -> None:
        calling[i].set()
        try:
            outcomes[i] = calls[i]()
        except Exception as exc:
            outcomes[i] = exc

    threads = [threading.Thread(target=call, args=(i,)) for i in range(len(calls))]
    # However slowly a loaded machine starts threads: each is calling before a pause begins.
    threads[0].start()
    assert calling[0].wait(30)
    time.sleep(QUEUE_UP_S)
    for thread in threads[1:]:
        thread.start()
    assert all(started.wait(30) for started in calling)
    time.sleep(QUEUE_UP_S)
    release.set()
    for thread in threads:
        thread.join(30)
    return outcomes


SQLITE_ONLY = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)


def test_transitions_asked_for_at_once_share_a_commit_on_sqlite_only(
        db_url: str, store: Store, transactions: list[int], hold_next_commit):
    job_ids = [new_job(store) for _ in range(8)]
    transactions.clear()
    calls = [lambda j=j: store.transition(j, JobStatus.STARTED, worker_id=f"w-{j}")
             for j in job_ids]
    outcomes = _at_once(calls, hold_next_commit())
    assert [(job.id, job.status, job.worker_id) for job in outcomes] == [
        (j, JobStatus.STARTED, f"w-{j}") for j in job_ids]
    # SQLite: the first commits alone; the seven that waited behind it commit together.
    assert len(transactions) == (2 if db_url.startswith("sqlite") else 8)
    assert all(store.get_job(j).status is JobStatus.STARTED for j in job_ids)


@SQLITE_ONLY
def test_a_refused_transition_in_a_shared_commit_leaves_the_others_be(
        store: Store, transactions: list[int], hold_next_commit):
    first, cancelled, fine = new_job(store), new_job(store), new_job(store)
    store.transition(cancelled, JobStatus.CANCELLED, end_time=1)
    transactions.clear()
    outcomes = _at_once([
        lambda: store.transition(first, JobStatus.STARTED, worker_id="w"),
        lambda: store.transition(cancelled, JobStatus.STARTED, worker_id="w"),
        lambda: store.transition("no-such-job", JobStatus.STARTED, worker_id="w"),
        lambda: store.transition(fine, JobStatus.STARTED, worker_id="w"),
    ], hold_next_commit())
    assert outcomes[0].status is JobStatus.STARTED
    assert isinstance(outcomes[1], IllegalTransition) and outcomes[1].current == "cancelled"
    assert isinstance(outcomes[2], NotFound)
    assert outcomes[3].status is JobStatus.STARTED
    assert len(transactions) == 2
    assert store.get_job(fine).status is JobStatus.STARTED
    assert store.get_job(cancelled).worker_id is None


def test_two_changes_of_one_job_in_a_shared_commit_have_one_winner(
        store: Store, hold_next_commit):
    first, raced = new_job(store), new_job(store)
    store.transition(raced, JobStatus.STARTED, worker_id="w")
    outcomes = _at_once([
        lambda: store.transition(first, JobStatus.STARTED, worker_id="w"),
        lambda: store.transition(raced, JobStatus.FINISHED, result=1, end_time=2),
        lambda: store.transition(raced, JobStatus.FAILED, error="lost", end_time=3),
    ], hold_next_commit())
    winners = [o for o in outcomes[1:] if not isinstance(o, Exception)]
    losers = [o for o in outcomes[1:] if isinstance(o, IllegalTransition)]
    assert len(winners) == 1 and len(losers) == 1
    assert store.get_job(raced).status is winners[0].status


class _Writes:
    """Writes for a group commit of the test's own: the first to run waits for ``release``
    (its commit under way while the others queue up); each notes its name as it runs."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.ran: list[str] = []

    def __call__(self, name: str, statement: str = "", error: Exception | None = None,
                 **params: str) -> Callable[[Connection], str]:
        def work(conn: Connection) -> str:
            if not self.ran:
                assert self.release.wait(30)
            self.ran.append(name)
            if error is not None:
                raise error
            if statement:
                conn.execute(text(statement), params)
            return name
        return work


@SQLITE_ONLY
def test_a_write_the_database_refuses_fails_alone(engine, store: Store):
    job_ids = [new_job(store) for _ in range(3)]
    group, writes = GroupCommit(engine), _Writes()
    set_worker = "UPDATE jobs SET worker_id = 'set' WHERE id = :id"
    outcomes = _at_once([
        lambda: group.run(writes("held")),
        lambda: group.run(writes(job_ids[0], set_worker, id=job_ids[0])),
        lambda: group.run(writes("refused", "UPDATE jobs SET id = :taken WHERE id = :id",
                                 taken=job_ids[0], id=job_ids[1])),
        lambda: group.run(writes(job_ids[2], set_worker, id=job_ids[2])),
    ], writes.release)
    assert outcomes == ["held", job_ids[0], outcomes[2], job_ids[2]]
    assert isinstance(outcomes[2], IntegrityError)
    # Tried together (rolled back at the refused write), then each alone.
    assert writes.ran.count("refused") == 2
    assert [store.get_job(j).worker_id for j in job_ids] == ["set", None, "set"]


@SQLITE_ONLY
def test_when_the_database_fails_a_shared_commit_every_write_fails_at_once(engine):
    """Locked past its busy timeout, say: trying each write again alone would wait that long
    again for each."""
    group, writes = GroupCommit(engine), _Writes()
    locked = OperationalError("UPDATE jobs", {}, Exception("database is locked"))
    outcomes = _at_once([lambda: group.run(writes("held")), lambda: group.run(writes("a")),
                         lambda: group.run(writes("locked", error=locked)),
                         lambda: group.run(writes("b"))], writes.release)
    assert outcomes[0] == "held"
    assert all(isinstance(o, OperationalError) for o in outcomes[1:])
    assert writes.ran.count("locked") == 1 and len(writes.ran) <= 4
