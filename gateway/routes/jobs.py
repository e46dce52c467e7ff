"""Running functions and following jobs: submit (async, ``force=true``, ``wait=``), get, list,
logs, cancel.
"""

from __future__ import annotations

import dataclasses

from aiohttp import web

from gateway.auth import identity, require_cancel, visible
from gateway.blocking import blocking
from gateway.params import (
    json_body,
    query_bool,
    query_duration_ms,
    query_int,
    query_str,
)
from gateway.publish import publish
from gateway.ratelimit import check_submit_rate
from gateway.render import job_details, sync_response
from gateway.resources import CATALOG, HUB, QUEUE, SETTINGS, STORE, SUBMISSIONS
from gateway.waiting import wait_for_end
from jobs import cancellation
from jobs.errors import BadRequest
from jobs.events import lifecycle_event
from jobs.ids import uuid7
from jobs.logs import format_mist_line
from jobs.state import MIST_STATUSES
from jobs.store import Job, JobQuery
from jobs.submission import SubmitRequest

routes = web.RouteTableDef()

MAX_LIMIT = 1000


@routes.post("/v2/api/functions/{name}/jobs")
async def run_function(request: web.Request) -> web.Response:
    app = request.app
    who = identity(request)
    # Before the body is read: a client over its rate costs one Redis call, nothing more.
    await check_submit_rate(app, who.submitter)
    force = query_bool(request, "force")
    wait_ms = query_duration_ms(request, "wait")
    submit_request = SubmitRequest(
        function=request.match_info["name"],
        arguments=await json_body(request, default={}, limit=app[SETTINGS].max_body_bytes),
        context=query_str(request, "context"),
        external_id=query_str(request, "externalId"),
        start_timeout_ms=query_duration_ms(request, "startTimeout"),
        perform_timeout_ms=query_duration_ms(request, "performTimeout"),
        submitter=who.submitter,
        idempotency_key=request.headers.get("Idempotency-Key"),
    )
    if not (force or "wait" in request.query):
        job = await app[SUBMISSIONS].submit(submit_request)
        return web.json_response({"id": job.id})
    # Watched before it exists: its end cannot be missed, and the wait needs no first read.
    new_id = uuid7()
    with app[HUB].watch(new_id) as watch:
        job = await app[SUBMISSIONS].submit(dataclasses.replace(submit_request, job_id=new_id))
        # Another id: an earlier job of the same idempotency key, watched by wait_for_end.
        ours = {"watch": watch, "known": job} if job.id == new_id else {}
        timeout_s = None if force or wait_ms is None else wait_ms / 1000
        job = await wait_for_end(app[HUB], app[STORE], job.id, timeout_s,
                                 outcome_only=force, **ours)
    if force:
        return web.json_response(sync_response(job))
    if job.status.terminal:
        return web.json_response(job_details(job))
    return web.json_response(
        {"id": job.id, "status": job.status.value, "url": f"/v2/api/jobs/{job.id}"},
        status=202, headers={"Location": f"/v2/api/jobs/{job.id}"},
    )


@routes.get("/v2/api/jobs")
async def list_jobs(request: web.Request) -> web.Response:
    return await _list(request, JobQuery())


@routes.get("/v2/api/functions/{name}/jobs")
async def list_function_jobs(request: web.Request) -> web.Response:
    await blocking(request.app[CATALOG].get_function, request.match_info["name"])
    return await _list(request, JobQuery(function=request.match_info["name"]))


@routes.get("/v2/api/workers/{id}/jobs")
async def list_worker_jobs(request: web.Request) -> web.Response:
    return await _list(request, JobQuery(worker_id=request.match_info["id"]))


@routes.get("/v2/api/jobs/{id}")
async def get_job(request: web.Request) -> web.Response:
    return web.json_response(job_details(await _visible_job(request)))


@routes.get("/v2/api/jobs/{id}/logs")
async def job_logs(request: web.Request) -> web.Response:
    store = request.app[STORE]
    job_id = (await _visible_job(request)).id
    lines = await blocking(store.job_logs, job_id)
    text = "".join(format_mist_line(job_id, line) + "\n" for line in lines)
    return web.Response(text=text, content_type="text/plain")


@routes.delete("/v2/api/jobs/{id}")
async def cancel_job(request: web.Request) -> web.Response:
    app = request.app
    require_cancel(request, await _visible_job(request))
    job = await blocking(cancellation.cancel, app[STORE], app[QUEUE], request.match_info["id"])
    await publish(app, lifecycle_event(job))
    return web.json_response(job_details(job))


async def _visible_job(request: web.Request) -> Job:
    return visible(request, await blocking(request.app[STORE].get_job,
                                           request.match_info["id"]))


async def _list(request: web.Request, base: JobQuery) -> web.Response:
    statuses = request.query.getall("status", [])
    statuses = [s.strip() for raw in statuses for s in raw.split(",") if s.strip()]
    unknown = [s for s in statuses if s not in MIST_STATUSES]
    if unknown:
        raise BadRequest(
            f"query parameter status: expected any of {', '.join(MIST_STATUSES)}, got "
            f"{', '.join(unknown)}",
            {"field": "status", "expected": list(MIST_STATUSES), "got": unknown},
        )
    query = JobQuery(
        statuses=statuses, function=base.function or query_str(request, "function"),
        worker_id=base.worker_id, submitter=identity(request).owner_scope,
        context=query_str(request, "context"), external_id=query_str(request, "externalId"),
        limit=query_int(request, "limit", 25, 0, MAX_LIMIT),
        offset=query_int(request, "offset", 0, 0, 10**9),
    )
    paginate = query_bool(request, "paginate")
    jobs, _ = await blocking(request.app[STORE].list_jobs, query)
    body = [job_details(j) for j in jobs]
    if paginate:
        counted = await blocking(request.app[STORE].count_jobs, query)
        # totalExact (sparkgate's): false when the total is PostgreSQL's estimate.
        return web.json_response({"jobs": body, "total": counted.total,
                                  "totalExact": counted.exact})
    return web.json_response(body)
