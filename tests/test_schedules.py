"""Schedules: the API that saves them (checked as a submit is) and the scheduler that turns
their ticks into jobs, exactly one per tick, on SQLite and PostgreSQL with real Redis.

No worker runs here: the scheduler's passes are called with the time they act at, so a tick
that is late, missed, or handled by two schedulers at once is a call away, not a wait. Real
`sparkgate serve` processes running schedules are tests/test_schedules_e2e.py.
"""

from __future__ import annotations

import itertools
import threading
from typing import Any

import pytest

from sparkgate.jobs.catalog import Catalog
from sparkgate.jobs.db import now_ms
from sparkgate.jobs.errors import BadRequest
from sparkgate.jobs.queue import JobQueue
from sparkgate.jobs.scheduler import Scheduler, due_ticks
from sparkgate.jobs.schedules import Cron, ScheduleBook
from sparkgate.jobs.state import JobStatus
from sparkgate.jobs.store import Job, JobQuery, Store
from tests.api_responses import error_of, json_of
from tests.test_api_jobs import API, deploy

GRACE_MS = 10_000
EVERY_2S = "*/2 * * * * *"


@pytest.fixture
async def add(client) -> str:
    """``add(x: int, y: int = 1)``, a plain function, deployed as ``add``."""
    await deploy(client, "add", "plain.py")
    return "add"


@pytest.fixture
def scheduler(catalog: Catalog, store: Store, queue: JobQueue) -> Scheduler:
    return Scheduler(ScheduleBook(store.engine, catalog), catalog, store, queue, GRACE_MS)


async def create(client, **fields: Any) -> dict[str, Any]:
    body = {"name": "nightly", "function": "add", "arguments": {"x": 1}, "cron": EVERY_2S,
            **fields}
    return await json_of(await client.post(f"{API}/schedules", json=body))


def jobs_of(store: Store, schedule: str = "nightly") -> list[Job]:
    jobs, _ = store.list_jobs(JobQuery(schedule=schedule, limit=1000))
    return sorted(jobs, key=lambda j: j.create_time)


def next_tick(scheduler: Scheduler, name: str = "nightly") -> int:
    tick = scheduler.book.get(name).next_tick_ms
    assert tick is not None
    return tick


# -- cron expressions ------------------------------------------------------------------------


def test_six_fields_put_the_seconds_first_and_times_follow_the_zone():
    every_2s = Cron.parse(EVERY_2S, "UTC")
    assert every_2s.next_after(1_000) == 2_000
    assert every_2s.next_after(2_000) == 4_000  # strictly after
    assert every_2s.at_or_before(3_999) == 2_000
    assert every_2s.at_or_before(4_000) == 4_000
    daily_berlin = Cron.parse("30 2 * * *", "Europe/Berlin")
    # 2027-03-27 12:00 UTC; 02:30 does not exist in Berlin on the 28th (clocks jump 2 -> 3).
    runs = daily_berlin.upcoming(1_806_148_800_000, 3)
    assert runs == [1_806_195_600_000,  # 2027-03-28 01:00 UTC = 03:00 CEST
                    1_806_280_200_000,  # 2027-03-29 00:30 UTC = 02:30 CEST
                    1_806_366_600_000]
    assert Cron.parse("@daily", "UTC").next_after(0) == 86_400_000


@pytest.mark.parametrize(("cron", "timezone", "field"), [
    ("* * * *", "UTC", "cron"),
    ("* * * * * * *", "UTC", "cron"),
    ("61 * * * *", "UTC", "cron"),
    ("0 0 31 2 *", "UTC", "cron"),  # no such date
    ("@reboot", "UTC", "cron"),
    ("0 2 * * *", "Mars/Olympus", "timezone"),
    ("0 2 * * *", "", "timezone"),
])
def test_bad_cron_or_zone_names_the_field(cron, timezone, field):
    with pytest.raises(BadRequest) as raised:
        Cron.parse(cron, timezone)
    assert raised.value.details["field"] == field


def test_ticks_on_time_run_and_missed_ones_follow_the_policy():
    cron = Cron.parse(EVERY_2S, "UTC")
    # On time (within the grace): each tick runs, in order; the next one is after now.
    assert due_ticks(cron, 10_000, 14_500, GRACE_MS, "skip") == ([10_000, 12_000, 14_000],
                                                                  16_000)
    # Ticks 10 s to 100 s were missed (more than the grace late at 110.5 s).
    assert due_ticks(cron, 10_000, 110_500, GRACE_MS, "skip") == (
        [102_000, 104_000, 106_000, 108_000, 110_000], 112_000)
    assert due_ticks(cron, 10_000, 110_500, GRACE_MS, "once") == (
        [100_000, 102_000, 104_000, 106_000, 108_000, 110_000], 112_000)
    assert due_ticks(cron, 10_000, 110_500, 0, "once") == ([110_000], 112_000)
    assert due_ticks(cron, 10_000, 9_999, GRACE_MS, "once") == ([], 10_000)


# -- the API ---------------------------------------------------------------------------------


async def test_create_answers_the_schedule_with_its_next_runs(client, add):
    before = now_ms()
    schedule = await create(client, timezone="Europe/Berlin")
    assert {k: schedule[k] for k in ("name", "function", "arguments", "context", "cron",
                                     "timezone", "enabled", "missed", "overlap", "waiting",
                                     "lastError", "savedBy")} == {
        "name": "nightly", "function": "add", "arguments": {"x": 1}, "context": None,
        "cron": EVERY_2S, "timezone": "Europe/Berlin", "enabled": True, "missed": "once",
        "overlap": "skip", "waiting": None, "lastError": None, "savedBy": "anonymous"}
    runs = schedule["nextRuns"]
    assert len(runs) == 5 and before < runs[0] <= before + 2_100
    assert [b - a for a, b in itertools.pairwise(runs)] == [2_000] * 4
    assert [s["name"] for s in await json_of(await client.get(f"{API}/schedules"))] == [
        "nightly"]
    await error_of(await client.post(f"{API}/schedules", json={
        "name": "nightly", "function": "add", "arguments": {"x": 1}, "cron": "0 * * * *"}),
        409, "conflict")


@pytest.mark.parametrize(("fields", "code", "field"), [
    ({"arguments": {"x": "one"}}, "invalid_arguments", "arguments.x"),
    ({"arguments": {}}, "invalid_arguments", "arguments.x"),
    ({"arguments": {"x": 1, "z": 2}}, "invalid_arguments", "arguments.z"),
    ({"arguments": [1]}, "invalid_arguments", "arguments"),
    ({"cron": "every day"}, "bad_request", "cron"),
    ({"timezone": "Nowhere/Land"}, "bad_request", "timezone"),
    ({"missed": "twice"}, "invalid_arguments", "missed"),
    ({"overlap": "parallel"}, "invalid_arguments", "overlap"),
    ({"enabled": "yes"}, "invalid_arguments", "enabled"),
    ({"context": "nowhere"}, "bad_request", "context"),
    ({"cron": None}, "invalid_arguments", "cron"),
    ({"colour": "red"}, "invalid_arguments", "colour"),
])
async def test_a_schedule_that_could_not_run_is_refused_naming_the_field(client, add, store,
                                                                        fields, code, field):
    body = {"name": "nightly", "function": "add", "arguments": {"x": 1}, "cron": EVERY_2S,
            **fields}
    error = await error_of(await client.post(f"{API}/schedules", json=body), 400, code)
    details = error["details"]
    named = [p["field"] for p in details] if isinstance(details, list) else [details["field"]]
    assert field in named, error
    assert await json_of(await client.get(f"{API}/schedules")) == []


async def test_missing_function_and_cron_are_named(client, add):
    error = await error_of(await client.post(f"{API}/schedules", json={"name": "n"}), 400,
                           "bad_request")
    assert error["details"]["field"] == "function"
    assert "function, cron missing" in error["message"]
    error = await error_of(await client.post(f"{API}/schedules", json={
        "name": "n", "function": "nothing", "cron": EVERY_2S}), 404, "not_found")
    assert "nothing" in error["message"]


async def test_a_spark_function_cannot_be_scheduled_in_a_python_context(client):
    await deploy(client, "echo", "echo.py")
    response = await client.post(f"{API}/contexts", json={"name": "py", "engine": "python"})
    assert response.status == 200
    error = await error_of(await client.post(f"{API}/schedules", json={
        "name": "n", "function": "echo", "cron": EVERY_2S, "context": "py"}), 400,
        "wrong_engine")
    assert "echo" in error["message"] and "py" in error["message"]


async def test_pause_resume_replace_and_delete(client, add):
    await create(client)
    paused = await json_of(await client.put(f"{API}/schedules/nightly", json={
        "function": "add", "arguments": {"x": 2}, "cron": EVERY_2S, "enabled": False}))
    assert paused["enabled"] is False and paused["nextRuns"] == []
    assert paused["arguments"] == {"x": 2}
    resumed = await json_of(await client.put(f"{API}/schedules/nightly", json={
        "function": "add", "arguments": {"x": 2}, "cron": "0 3 * * *"}))
    assert resumed["enabled"] is True and len(resumed["nextRuns"]) == 5
    assert resumed["createdAt"] == paused["createdAt"] <= resumed["updatedAt"]
    await error_of(await client.put(f"{API}/schedules/nightly", json={
        "name": "other", "function": "add", "cron": EVERY_2S}), 400, "bad_request")
    await error_of(await client.put(f"{API}/schedules/absent", json={
        "function": "add", "arguments": {"x": 2}, "cron": EVERY_2S}), 404, "not_found")
    deleted = await json_of(await client.delete(f"{API}/schedules/nightly"))
    assert deleted["name"] == "nightly"
    await error_of(await client.get(f"{API}/schedules/nightly"), 404, "not_found")


async def test_run_now_creates_a_job_of_the_schedule(client, add, queue):
    await create(client, enabled=False)
    job_id = (await json_of(await client.post(f"{API}/schedules/nightly/jobs")))["id"]
    job = await json_of(await client.get(f"{API}/jobs/{job_id}"))
    assert job["schedule"] == "nightly" and job["source"] == "Schedule"
    assert job["params"]["arguments"] == {"x": 1} and job["status"] == "queued"
    assert job["submitter"] == "anonymous"  # who pressed "run now"
    assert queue.queued_ids("default") == [job_id]
    listed = await json_of(await client.get(f"{API}/jobs?schedule=nightly"))
    assert [j["jobId"] for j in listed] == [job_id]
    assert await json_of(await client.get(f"{API}/jobs?schedule=other")) == []
    details = await json_of(await client.get(f"{API}/schedules/nightly"))
    assert [j["id"] for j in details["lastJobs"]] == [job_id]
    await error_of(await client.post(f"{API}/schedules/absent/jobs"), 404, "not_found")


# -- the scheduler ---------------------------------------------------------------------------


async def test_each_tick_makes_one_job_however_many_schedulers_act(client, add, scheduler,
                                                                   store, queue):
    await create(client)
    first = next_tick(scheduler)
    others = [Scheduler(scheduler.book, scheduler.catalog, Store(store.engine), queue, GRACE_MS)
              for _ in range(3)]
    for tick in (first, first + 2_000, first + 4_000):
        barrier = threading.Barrier(len(others))

        def act(s: Scheduler, at: int = tick, barrier: threading.Barrier = barrier) -> None:
            barrier.wait()
            s.pass_once(at)

        threads = [threading.Thread(target=act, args=(s,)) for s in others]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        (job,) = [j for j in jobs_of(store) if j.status is JobStatus.QUEUED]
        assert queue.queued_ids("default") == [job.id]
        # As if a worker ran it: the next tick sees no run going (overlap "skip").
        store.transition(job.id, JobStatus.CANCELLED, end_time=now_ms())
        queue.remove(job.id, "default")
    jobs = jobs_of(store)
    assert len(jobs) == 3
    assert {j.source for j in jobs} == {"schedule"}
    assert {j.submitter for j in jobs} == {"schedule:nightly"}
    assert next_tick(scheduler) == first + 6_000


async def test_a_scheduler_killed_between_the_job_and_the_advance_adds_nothing(
        client, add, scheduler, store):
    await create(client, overlap="queue")
    tick = next_tick(scheduler)
    schedule = scheduler.book.get("nightly")
    scheduler._submit(schedule, tick)  # the job exists; the schedule was not advanced
    assert next_tick(scheduler) == tick
    scheduler.pass_once(tick + 500)
    assert len(jobs_of(store)) == 1
    assert next_tick(scheduler) == tick + 2_000
    assert scheduler.book.get("nightly").held_tick_ms is None  # its own job is no overlap


async def test_nothing_runs_before_its_time_or_while_paused(client, add, scheduler, store):
    await create(client)
    tick = next_tick(scheduler)
    scheduler.pass_once(tick - 1)
    assert jobs_of(store) == []
    await json_of(await client.put(f"{API}/schedules/nightly", json={
        "function": "add", "arguments": {"x": 1}, "cron": EVERY_2S, "enabled": False}))
    scheduler.pass_once(tick + 60_000)
    assert jobs_of(store) == []


@pytest.mark.parametrize(("missed", "expected"), [("skip", 0), ("once", 1)])
async def test_missed_ticks_run_once_or_not_at_all(client, add, scheduler, store, missed,
                                                   expected):
    await create(client, missed=missed, cron="0 3 * * *")  # daily, at 03:00
    tick = next_tick(scheduler)
    scheduler.pass_once(tick + 3 * 86_400_000 + 60_000)  # three days later, a minute past
    assert len(jobs_of(store)) == expected
    assert next_tick(scheduler) == tick + 4 * 86_400_000


async def test_overlap_skip_leaves_out_ticks_while_a_run_is_going(client, add, scheduler,
                                                                  store):
    await create(client, overlap="skip")
    tick = next_tick(scheduler)
    scheduler.pass_once(tick)
    scheduler.pass_once(tick + 2_000)  # the first job is still queued: no worker runs here
    assert len(jobs_of(store)) == 1
    store.transition(jobs_of(store)[0].id, JobStatus.CANCELLED, end_time=now_ms())
    scheduler.pass_once(tick + 4_000)
    assert len(jobs_of(store)) == 2


async def test_overlap_queue_holds_one_tick_until_the_run_ends(client, add, scheduler, store):
    await create(client, overlap="queue")
    tick = next_tick(scheduler)
    scheduler.pass_once(tick)
    scheduler.pass_once(tick + 2_000)
    scheduler.pass_once(tick + 4_000)  # a tick waits already: this one is skipped
    assert len(jobs_of(store)) == 1
    details = await json_of(await client.get(f"{API}/schedules/nightly"))
    assert details["waiting"] == tick + 2_000
    store.transition(jobs_of(store)[0].id, JobStatus.CANCELLED, end_time=now_ms())
    scheduler.pass_once(tick + 4_500)
    jobs = jobs_of(store)
    assert len(jobs) == 2 and jobs[1].status is JobStatus.QUEUED
    assert scheduler.book.get("nightly").held_tick_ms is None


async def test_overlap_cancel_ends_the_run_going_and_starts_the_tick(client, add, scheduler,
                                                                    store, queue):
    await create(client, overlap="cancel")
    tick = next_tick(scheduler)
    scheduler.pass_once(tick)
    scheduler.pass_once(tick + 2_000)
    first, second = jobs_of(store)
    assert store.get_job(first.id).status is JobStatus.CANCELLED
    assert second.status is JobStatus.QUEUED
    assert queue.queued_ids("default") == [second.id]


async def test_a_refused_tick_is_recorded_and_the_schedule_goes_on(client, add, scheduler,
                                                                   store):
    await create(client)
    tick = next_tick(scheduler)
    response = await client.delete(f"{API}/functions/add")
    assert response.status == 200, await response.text()
    scheduler.pass_once(tick)
    assert jobs_of(store) == []
    details = await json_of(await client.get(f"{API}/schedules/nightly"))
    assert "add" in details["lastError"]["message"]
    assert details["nextRuns"][0] == tick + 2_000


async def test_a_save_wins_over_a_scheduler_working_from_the_old_definition(client, add,
                                                                           scheduler):
    await create(client)
    old = scheduler.book.get("nightly")
    replaced = await json_of(await client.put(f"{API}/schedules/nightly", json={
        "function": "add", "arguments": {"x": 1}, "cron": "0 3 * * *"}))
    assert old.next_tick_ms is not None
    scheduler._handle(old, old.next_tick_ms)  # it had read the schedule before the save
    assert next_tick(scheduler) == replaced["nextRuns"][0]


async def test_a_tick_made_from_the_replaced_definition_is_the_tick_s_one_job(
        client, add, scheduler, store):
    await create(client, cron="0 3 * * *")
    old = scheduler.book.get("nightly")
    await json_of(await client.put(f"{API}/schedules/nightly", json={
        "function": "add", "arguments": {"x": 2}, "cron": "0 3 * * *"}))
    tick = next_tick(scheduler)
    assert tick == old.next_tick_ms
    scheduler._submit(old, tick)  # a scheduler that read it before the save made the job
    scheduler.pass_once(tick)
    (job,) = jobs_of(store)
    assert job.arguments == {"x": 1}
    details = await json_of(await client.get(f"{API}/schedules/nightly"))
    assert details["lastError"] is None and details["nextRuns"][0] == tick + 86_400_000


async def test_a_schedule_whose_pass_fails_holds_up_no_other(client, add, scheduler, store,
                                                             monkeypatch):
    await create(client, name="broken")
    await create(client, name="fine")
    tick = next_tick(scheduler, "fine")
    assert next_tick(scheduler, "broken") == tick
    handle = scheduler._handle

    def failing(schedule, now):
        if schedule.name == "broken":
            raise ValueError("a bug in one schedule's pass")
        handle(schedule, now)

    monkeypatch.setattr(scheduler, "_handle", failing)
    scheduler.pass_once(tick)
    assert len(jobs_of(store, "fine")) == 1 and jobs_of(store, "broken") == []
    assert next_tick(scheduler, "broken") == tick  # due again at the next pass
