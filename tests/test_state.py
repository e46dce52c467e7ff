"""The job state machine and its one-winner transitions, on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from sparkgate.jobs.errors import IllegalTransition, NotFound
from sparkgate.jobs.state import ALLOWED_SOURCES, TERMINAL, JobStatus, allowed
from sparkgate.jobs.store import JobCount, JobQuery, NewJob, Store


def new_job(store: Store, **overrides) -> str:
    values = dict(function="f", context="default", arguments={"n": 1}, file_path="f.py",
                  class_name="f", artifact_sha1="0" * 40)
    values.update(overrides)
    return store.create_job(NewJob(**values)).id


def test_terminal_states_have_no_way_out():
    for target, sources in ALLOWED_SOURCES.items():
        assert not (sources & TERMINAL), f"{target} reachable from a terminal state"


def test_mist_lifecycle_moves():
    assert allowed(JobStatus.QUEUED, JobStatus.STARTED)
    assert allowed(JobStatus.QUEUED, JobStatus.CANCELLED)
    assert allowed(JobStatus.QUEUED, JobStatus.FAILED)
    assert allowed(JobStatus.STARTED, JobStatus.CANCELLING)
    assert allowed(JobStatus.CANCELLING, JobStatus.CANCELLED)
    assert allowed(JobStatus.CANCELLING, JobStatus.FINISHED)
    # A started job is cancelled only through `cancelling`, so its worker always hears of it.
    assert not allowed(JobStatus.STARTED, JobStatus.CANCELLED)
    assert not allowed(JobStatus.QUEUED, JobStatus.FINISHED)


def test_transition_writes_fields_and_returns_the_new_row(store: Store):
    job_id = new_job(store)
    job = store.transition(job_id, JobStatus.STARTED, worker_id="w1", start_time=123)
    assert (job.status, job.worker_id, job.start_time) == (JobStatus.STARTED, "w1", 123)
    job = store.transition(job_id, JobStatus.FINISHED, result={"x": [1, 2]}, end_time=456)
    assert store.get_job(job_id) == job
    assert job.result == {"x": [1, 2]} and job.end_time == 456


def test_illegal_transition_raises_and_changes_nothing(store: Store):
    job_id = new_job(store)
    store.transition(job_id, JobStatus.CANCELLED, end_time=1)
    with pytest.raises(IllegalTransition) as raised:
        store.transition(job_id, JobStatus.STARTED, worker_id="w1")
    assert raised.value.current == "cancelled"
    job = store.get_job(job_id)
    assert job.status is JobStatus.CANCELLED and job.worker_id is None


def test_transition_of_unknown_job_is_not_found(store: Store):
    with pytest.raises(NotFound):
        store.transition("no-such-job", JobStatus.STARTED)


def test_only_from_narrows_the_sources(store: Store):
    job_id = new_job(store)
    store.transition(job_id, JobStatus.STARTED)
    store.transition(job_id, JobStatus.CANCELLING)
    with pytest.raises(IllegalTransition):
        store.transition(job_id, JobStatus.FAILED, only_from={JobStatus.STARTED})
    assert store.get_job(job_id).status is JobStatus.CANCELLING


@pytest.mark.parametrize("rounds", [25])
def test_start_and_cancel_race_has_exactly_one_winner(store: Store, rounds: int):
    """Two threads race a queued job: one starts it, one cancels it. Exactly one wins,
    every time, and the stored state is the winner's."""
    for _ in range(rounds):
        job_id = new_job(store)
        barrier = threading.Barrier(2)
        outcomes: dict[str, str] = {}

        def attempt(target: JobStatus, name: str, job_id: str = job_id,
                    barrier: threading.Barrier = barrier,
                    outcomes: dict[str, str] = outcomes) -> None:
            barrier.wait()
            try:
                store.transition(job_id, target, worker_id=name if target is
                                 JobStatus.STARTED else None)
                outcomes[name] = "won"
            except IllegalTransition:
                outcomes[name] = "lost"

        threads = [threading.Thread(target=attempt, args=(JobStatus.STARTED, "starter")),
                   threading.Thread(target=attempt, args=(JobStatus.CANCELLED, "canceller"))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(outcomes.values()) == ["lost", "won"]
        final = store.get_job(job_id).status
        winner = next(k for k, v in outcomes.items() if v == "won")
        assert final is (JobStatus.STARTED if winner == "starter" else JobStatus.CANCELLED)


def test_two_workers_racing_to_start_one_job(store: Store):
    job_id = new_job(store)
    barrier = threading.Barrier(4)
    winners: list[str] = []

    def start(name: str) -> None:
        barrier.wait()
        try:
            store.transition(job_id, JobStatus.STARTED, worker_id=name)
            winners.append(name)
        except IllegalTransition:
            pass

    threads = [threading.Thread(target=start, args=(f"w{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(winners) == 1
    assert store.get_job(job_id).worker_id == winners[0]


def test_listing_is_newest_first_with_filters_and_total(store: Store):
    ids = [new_job(store, function="a" if i % 2 else "b") for i in range(6)]
    store.transition(ids[0], JobStatus.CANCELLED)
    jobs, total = store.list_jobs(JobQuery(limit=3), count=True)
    assert total == 6
    assert [j.id for j in jobs] == ids[::-1][:3]
    jobs, total = store.list_jobs(JobQuery(function="a", statuses=["queued"]), count=True)
    assert {j.id for j in jobs} == {ids[1], ids[3], ids[5]} and total == 3
    jobs, _ = store.list_jobs(JobQuery(statuses=["cancelled"]))
    assert [j.id for j in jobs] == [ids[0]]
    jobs, _ = store.list_jobs(JobQuery(limit=2, offset=5))
    assert [j.id for j in jobs] == [ids[0]]


@pytest.mark.parametrize("value_max_bytes", [None, 1024])
def test_several_statuses_list_as_one_newest_first_run(store: Store, value_max_bytes):
    """A filter on several statuses is read per status and merged (jobs/store.py, _page):
    pages across the interleaving, other filters and a status named twice list as if one."""
    ids = [new_job(store, function="a" if i % 3 else "b") for i in range(12)]
    ends = {JobStatus.FINISHED: ids[0:12:3], JobStatus.CANCELLED: ids[1:12:3]}
    for status, chosen in ends.items():
        for job_id in chosen:
            if status is JobStatus.FINISHED:
                store.transition(job_id, JobStatus.STARTED, worker_id="w")
            store.transition(job_id, status)
    either = sorted(ends[JobStatus.FINISHED] + ends[JobStatus.CANCELLED], reverse=True)

    def listed(**query: Any) -> list[str]:
        jobs, _ = store.list_jobs(JobQuery(**query), value_max_bytes=value_max_bytes)
        return [j.id for j in jobs]

    statuses = ["finished", "cancelled", "finished"]
    assert listed(statuses=statuses, limit=3) == either[:3]
    assert listed(statuses=statuses, limit=3, offset=2) == either[2:5]
    assert listed(statuses=statuses, limit=2, offset=4) == either[4:6]
    assert listed(statuses=statuses, limit=10, offset=6) == either[6:]
    assert listed(statuses=["cancelled", "queued"], function="a", limit=25) == [
        i for i in ids[::-1] if i not in ends[JobStatus.FINISHED] and ids.index(i) % 3]


def test_totals_are_exact_up_to_the_cap_then_estimated(store: Store):
    for _ in range(5):
        new_job(store, function="a")
    assert store.count_jobs(JobQuery(function="a"), exact_up_to=5) == JobCount(5, True)
    beyond = store.count_jobs(JobQuery(function="a"), exact_up_to=3)
    if store.engine.dialect.name == "postgresql":
        # The planner's estimate, never below what was seen.
        assert beyond.exact is False and beyond.total >= 4
    else:
        assert beyond == JobCount(5, True)
