"""The one primitive for waiting on a job's end, used by ``force=true`` and ``?wait=``."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from typing import Any

from sparkgate.gateway.blocking import blocking
from sparkgate.gateway.events_hub import EventHub, JobWatch
from sparkgate.jobs.state import JobStatus
from sparkgate.jobs.store import Job, Store

# Events are best effort (a worker whose publish failed ends the job all the same): a waiter
# also reads the job this often, so a lost event delays its answer, never holds it for ever.
RECHECK_S = 5.0


async def wait_for_end(hub: EventHub, store: Store, job_id: str, timeout_s: float | None, *,
                       watch: JobWatch | None = None, known: Job | None = None,
                       outcome_only: bool = False) -> Job:
    """The job once it is terminal, or as it is when ``timeout_s`` runs out (None: no limit).

    The watch is registered before the first read, so a job that ends between the read and the
    wait still wakes us: no end is missed, however fast the worker; a lost event costs at most
    ``RECHECK_S``. A caller that registered ``watch`` before the job could change (before
    submitting it) passes the job as it was then, ``known``, and saves that read.
    ``outcome_only``: the caller needs only the status, result and error, which the terminal
    event carries, so the job's row is not read again.
    Jobs read here have their arguments and result as stored (``RawJSON``): the caller answers
    them as they are, and they may be megabytes.
    """
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    with contextlib.ExitStack() as stack:
        if watch is None or known is None:
            watch = stack.enter_context(hub.watch(job_id))
            job = await blocking(store.get_job, job_id, raw_values=True)
        else:
            job = known
        while not job.status.terminal:
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                # What it is now, not what it was when the wait began.
                return await blocking(store.get_job, job_id, raw_values=True)
            # asyncio.timeout, not wait_for: wait_for (3.11) runs the wait as a task of its own.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(min(remaining or RECHECK_S, RECHECK_S)):
                    await watch.wait()
            ended = watch.ended_with
            watch.clear()
            # An event whose result was too big to carry has a marker in its place.
            if outcome_only and ended is not None and "truncated" not in ended:
                return _ended(job, ended)
            job = await blocking(store.get_job, job_id, raw_values=True)
    return job


def _ended(job: Job, event: dict[str, Any]) -> Job:
    """``job`` as its terminal event tells it ended: status, result or error, end time."""
    return dataclasses.replace(
        job, status=JobStatus(event["event"]), result=event.get("result"),
        error=event.get("error"), end_time=event.get("time"))
