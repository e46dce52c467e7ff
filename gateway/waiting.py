"""The one primitive for waiting on a job's end, used by ``force=true`` and ``?wait=``."""

from __future__ import annotations

import asyncio
import time

from gateway.blocking import blocking
from gateway.events_hub import EventHub
from jobs.store import Job, Store


async def wait_for_end(hub: EventHub, store: Store, job_id: str,
                       timeout_s: float | None) -> Job:
    """The job once it is terminal, or as it is when ``timeout_s`` runs out (None: no limit).

    The watch is registered before the first read, so a job that ends between the read and the
    wait still wakes us: no end is missed, however fast the worker.
    """
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    with hub.watch(job_id) as ended:
        job = await blocking(store.get_job, job_id)
        while not job.status.terminal:
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                break
            try:
                await asyncio.wait_for(ended.wait(), remaining)
            except TimeoutError:
                break
            ended.clear()
            job = await blocking(store.get_job, job_id)
    return job
