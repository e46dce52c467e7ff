"""Submits from many concurrent requests, recorded together.

Each submit costs a database commit and a Redis round trip, and on two cores the gateway's
own CPU per call dominates. Requests that arrive while earlier ones are being recorded are
handed to ``submit_many`` together, so they share one transaction, one Redis pipeline and one
hop to the thread pool. Nothing waits to fill a batch: a lone request goes at once, so a
sequential client sees no added latency; batches only grow when requests queue up anyway.
Jobs answered from the result cache's call index (gateway/cached_calls.py) are recorded the
same way, in batches of their own.
"""

from __future__ import annotations

import asyncio
import functools
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar

from sparkgate.gateway.blocking import blocking
from sparkgate.jobs.catalog import Catalog
from sparkgate.jobs.errors import SparkgateError
from sparkgate.jobs.queue import JobQueue
from sparkgate.jobs.result_cache import Pending, ResultCache
from sparkgate.jobs.store import Job, NewJob, Store
from sparkgate.jobs.submission import Outcome, SubmitRequest, record_answered, submit_many

# Batches recorded at once: a slow commit holds back only the requests of its own batch.
MAX_IN_FLIGHT = 4
MAX_BATCH = 256


In = TypeVar("In")
Out = TypeVar("Out")


class Batcher(Generic[In, Out]):
    """Items that arrive while earlier ones are being recorded are handed to ``record``
    together, on the executor; ``record`` answers each item's outcome or error, in order."""

    def __init__(self, record: Callable[[list[In]], Sequence[Out | SparkgateError]]) -> None:
        self.record = record
        self._waiting: deque[tuple[In, asyncio.Future[Out]]] = deque()
        self._in_flight = 0

    async def submit(self, item: In) -> Out:
        future: asyncio.Future[Out] = asyncio.get_running_loop().create_future()
        # If the client went away, nobody awaits the outcome: mark an error as seen, or asyncio
        # logs "Future exception was never retrieved" for a 4xx nobody will read.
        future.add_done_callback(_seen)
        self._waiting.append((item, future))
        if self._in_flight < MAX_IN_FLIGHT:
            self._in_flight += 1
            asyncio.get_running_loop().create_task(self._drain())
        # A client that goes away does not cancel its batch: its job is recorded regardless,
        # as it would be had the request reached the database a moment earlier.
        return await asyncio.shield(future)

    async def _drain(self) -> None:
        try:
            while self._waiting:
                batch = [self._waiting.popleft()
                         for _ in range(min(MAX_BATCH, len(self._waiting)))]
                await self._record(batch)
        finally:
            self._in_flight -= 1

    async def _record(self, batch: list[tuple[In, asyncio.Future[Out]]]) -> None:
        try:
            outcomes = await blocking(self.record, [item for item, _ in batch])
        except Exception as exc:  # the database unreachable, or a bug: every one fails
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        except BaseException:  # shutting down
            for _, future in batch:
                future.cancel()
            raise
        for (_, future), outcome in zip(batch, outcomes, strict=True):
            if future.done():
                continue
            if isinstance(outcome, SparkgateError):
                future.set_exception(outcome)
            else:
                future.set_result(outcome)


Submitted = Job | Pending


class Submissions:
    def __init__(self, catalog: Catalog, store: Store, queue: JobQueue,
                 max_queued: int, cache: ResultCache | None = None) -> None:
        self.catalog = catalog
        self.store = store
        self.queue = queue
        self.max_queued = max_queued
        self.cache = cache
        self._requests = Batcher[SubmitRequest, Submitted](self._submit_many)
        self._answered = Batcher[NewJob, Job](
            functools.partial(record_answered, store, queue))

    async def submit(self, request: SubmitRequest) -> Submitted:
        """The queued job (announced on the event channel), or the request's error; for a
        request with ``follow``, possibly an identical call's job to wait for (``Pending``)."""
        return await self._requests.submit(request)

    async def record_answered(self, job: NewJob) -> Job:
        """A job answered from the result cache's call index, recorded (and announced)."""
        return await self._answered.submit(job)

    def _submit_many(self, requests: list[SubmitRequest]) -> list[Outcome]:
        return submit_many(self.catalog, self.store, self.queue, requests, announce=True,
                           max_queued=self.max_queued, cache=self.cache)


def _seen(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()
