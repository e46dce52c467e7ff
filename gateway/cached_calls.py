"""Calls answered from the result cache's call index (jobs/result_cache.py), before the submit
path: a call a hit has answered once is answered again with one Redis round trip, no database
read; with ``record=false``, without leaving the event loop at all."""

from __future__ import annotations

from aiohttp import web

from sparkgate.gateway.resources import RESULT_CACHE, SUBMISSIONS
from sparkgate.jobs.store import Job
from sparkgate.jobs.submission import SubmitRequest, answer_call


async def from_call_index(app: web.Application, request: SubmitRequest) -> Job | None:
    """The job answering ``request`` (recorded finished, or the job that ran), or None: the
    call goes the submit path's way."""
    cache = app[RESULT_CACHE]
    # A call with an idempotency key must find the job its key made first: the submit path
    # reads it. Functions this gateway has not seen with ``cache`` cost no round trip.
    if request.idempotency_key or request.external_id \
            or request.function not in cache.functions_cached:
        return None
    found = await cache.look_up_call(request.function, request.context, request.arguments)
    if found is None:
        return None
    answer = answer_call(request, found)
    if isinstance(answer, Job):
        return answer
    return await app[SUBMISSIONS].record_answered(answer)
