"""The scheduler: turns schedules' ticks into jobs, exactly one job per tick.

Every ``sparkgate serve`` runs one, with no lease: any number may act at once, and across
restarts, because a tick's job is made unique in the database, not in memory. Its submit
carries an idempotency key derived from the schedule and the tick's time (``tick:<ms>``),
which the jobs table holds unique: of two gateways firing the same tick, one inserts the job
and the other finds it. The tick state in the schedule's row (the next tick not yet handled)
is advanced only after the tick's job exists, by a conditional update; a scheduler killed in
between leaves the tick due, and whoever handles it next finds its job and advances.

When a tick runs late:

- up to ``grace_ms`` late, it runs (a scheduler that was busy, a gateway restarting);
- later, it was *missed* (no scheduler ran at its time) and the schedule's ``missed`` policy
  applies: ``skip``, or ``once``: one job for the latest missed tick, now.

``overlap``, while an earlier run of the schedule (a tick's job or a "run now") is queued or
running: ``skip`` the tick, ``cancel`` that run and start this one, or ``queue``: the tick is
held in the schedule's row and its job created when the earlier run ends (one tick at most
waits; ticks that fall while one waits are skipped, so a schedule slower than its cron never
builds a backlog).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

from redis.exceptions import RedisError
from sqlalchemy.exc import DBAPIError

from sparkgate.jobs import cancellation
from sparkgate.jobs.catalog import Catalog
from sparkgate.jobs.db import now_ms
from sparkgate.jobs.errors import Conflict, IllegalTransition, NotFound, RetryLater, SparkgateError
from sparkgate.jobs.events import lifecycle_event
from sparkgate.jobs.publishing import publish
from sparkgate.jobs.queue import JobQueue
from sparkgate.jobs.schedules import Cron, Schedule, ScheduleBook
from sparkgate.jobs.state import JobStatus
from sparkgate.jobs.store import Job, JobQuery, Store
from sparkgate.jobs.submission import SubmitRequest, idempotency_digest, submit_many

log = logging.getLogger("sparkgate.scheduler")

# The longest a scheduler sleeps: a schedule saved meanwhile is seen this soon at the latest.
MAX_SLEEP_S = 0.5
# Runs of a schedule that count as "still going" for its overlap policy.
ACTIVE = (JobStatus.QUEUED, JobStatus.STARTED, JobStatus.CANCELLING)
SOURCE = "schedule"


def due_ticks(cron: Cron, next_tick: int, now: int, grace_ms: int,
              missed: str) -> tuple[list[int], int]:
    """The ticks of ``cron`` from ``next_tick`` on that are to run at ``now``, oldest first,
    and the first tick after ``now``."""
    ticks = []
    on_time_from = now - grace_ms
    tick = next_tick
    if next_tick < on_time_from:
        if missed == "once":
            ticks.append(cron.at_or_before(on_time_from - 1))
        tick = cron.next_after(on_time_from - 1)
    while tick <= now:
        ticks.append(tick)
        tick = cron.next_after(tick)
    return ticks, tick


def tick_request(schedule: Schedule, tick_ms: int | None, by: str | None = None) -> SubmitRequest:
    """The submit of a tick's job (``tick_ms``), or of a "run now" by ``by`` (no tick)."""
    definition = schedule.definition
    return SubmitRequest(
        function=definition.function, arguments=definition.arguments, source=SOURCE,
        context=definition.context, submitter=by or schedule.submitter,
        idempotency_key=None if tick_ms is None else f"tick:{tick_ms}", schedule=schedule.name)


@dataclass
class Scheduler:
    book: ScheduleBook
    catalog: Catalog
    store: Store
    queue: JobQueue
    grace_ms: int

    def run(self, stop: threading.Event) -> None:
        failing = False
        while not stop.is_set():
            try:
                sleep_s = self.pass_once(now_ms())
                if failing:
                    log.info("scheduling again")
                failing = False
            except (DBAPIError, RedisError, RetryLater) as exc:
                if not failing:
                    log.warning("scheduling paused, retrying: %s", exc)
                failing, sleep_s = True, MAX_SLEEP_S
            except Exception:
                log.exception("scheduler pass failed")
                sleep_s = MAX_SLEEP_S
            stop.wait(sleep_s)

    def pass_once(self, now: int) -> float:
        """Handle every due schedule; the seconds until the next tick (at most MAX_SLEEP_S).
        An outage (the database, Redis) stops the pass; anything else stops only the schedule
        it happened to, which is retried at the next pass, so no schedule holds up the others."""
        for schedule in self.book.due(now):
            try:
                self._handle(schedule, now)
            except (DBAPIError, RedisError, RetryLater):
                raise
            except Exception:
                log.exception("schedule %s: its pass failed; trying again", schedule.name)
        earliest = self.book.earliest_tick()
        if earliest is None:
            return MAX_SLEEP_S
        return min(MAX_SLEEP_S, max(0.0, (earliest - now_ms()) / 1000))

    def _handle(self, schedule: Schedule, now: int) -> None:
        definition = schedule.definition
        held = schedule.held_tick_ms
        errors = []
        if held is not None and not self._others_running(schedule, held):
            errors += self._submit(schedule, held)
            held = None
        ticks: list[int] = []
        next_tick = schedule.next_tick_ms
        if next_tick is not None and next_tick <= now:
            ticks, next_tick = due_ticks(schedule.cron, next_tick, now, self.grace_ms,
                                         definition.missed)
        assert next_tick is not None
        for tick in ticks:
            running = self._others_running(schedule, tick)
            if running and definition.overlap == "skip":
                log.info("schedule %s: tick %d skipped: an earlier run is still going",
                         schedule.name, tick)
                continue
            if running and definition.overlap == "queue":
                if held is None:
                    held = tick
                else:
                    log.info("schedule %s: tick %d skipped: tick %d waits already",
                             schedule.name, tick, held)
                continue
            if running:
                self._cancel(running)
            errors += self._submit(schedule, tick)
        if (next_tick, held) != (schedule.next_tick_ms, schedule.held_tick_ms) or errors:
            self.book.advance(schedule, next_tick, held, errors[-1] if errors else None)

    def _submit(self, schedule: Schedule, tick: int) -> list[str]:
        """Submit the tick's job; the error (a message) if it was refused. Raises (leaving the
        tick due) when the queue or the database is unavailable."""
        (outcome,) = submit_many(self.catalog, self.store, self.queue,
                                 [tick_request(schedule, tick)], announce=True)
        if isinstance(outcome, RetryLater):
            raise outcome
        if isinstance(outcome, Conflict):
            # The tick's key holds a job with other arguments: a scheduler working from the
            # definition a save replaced made it, and it is the tick's one job.
            return []
        if isinstance(outcome, SparkgateError):
            log.warning("schedule %s: tick %d refused: %s", schedule.name, tick, outcome.message)
            return [outcome.message]
        return []

    def _others_running(self, schedule: Schedule, tick: int) -> list[Job]:
        """The schedule's runs still going, other than ``tick``'s own job."""
        jobs, _ = self.store.list_jobs(JobQuery(statuses=[s.value for s in ACTIVE],
                                                schedule=schedule.name, limit=100))
        key = _key(schedule, tick)
        return [job for job in jobs if job.idempotency_key != key]

    def _cancel(self, jobs: list[Job]) -> None:
        for job in jobs:
            try:
                cancelled = cancellation.cancel(self.store, self.queue, job.id)
            except (Conflict, IllegalTransition, NotFound):
                continue  # it ended meanwhile
            publish(self.queue.redis, lifecycle_event(cancelled))


def _key(schedule: Schedule, tick: int) -> str:
    digest = idempotency_digest(tick_request(schedule, tick))
    assert digest is not None
    return digest
