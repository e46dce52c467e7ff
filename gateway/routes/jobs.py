"""Running functions and following jobs: submit (async, ``force=true``, ``wait=``), get, list,
logs, cancel.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import secrets
import time
from typing import Any

from aiohttp import web

from sparkgate.gateway.auth import identity, require_cancel, visible
from sparkgate.gateway.blocking import blocking
from sparkgate.gateway.cached_calls import from_call_index
from sparkgate.gateway.openapi import (
    BOOLEAN_QUERY,
    FUNCTION_NAME,
    JOB_ID_PARAM,
    JOB_LIST_PARAMS,
    STRING,
    WORKER_ID,
    array,
    bool_param,
    duration_param,
    links,
    ok,
    param,
    query_param,
    ref,
    request_body,
    text_param,
    use,
)
from sparkgate.gateway.params import (
    json_body,
    query_bool,
    query_duration_ms,
    query_int,
    query_str,
)
from sparkgate.gateway.ratelimit import check_submit_rate
from sparkgate.gateway.resources import AREDIS, CATALOG, HUB, QUEUE, SETTINGS, STORE, SUBMISSIONS
from sparkgate.gateway.routing import READ, SUBMIT, Endpoints, Op, Rule
from sparkgate.gateway.waiting import wait_for_end
from sparkgate.gateway.wire.fields import to_json
from sparkgate.gateway.wire.jobs import JobDetails, JobId, JobPage, SyncResult, WaitPending
from sparkgate.jobs import cancellation
from sparkgate.jobs.db import json_text
from sparkgate.jobs.errors import BadRequest, NotFound
from sparkgate.jobs.events import lifecycle_event
from sparkgate.jobs.ids import uuid7
from sparkgate.jobs.logs.mist_text import format_mist_line
from sparkgate.jobs.publishing import publish_async
from sparkgate.jobs.result_cache import Pending
from sparkgate.jobs.state import MIST_STATUSES
from sparkgate.jobs.store import Job, JobQuery, RawJSON, Store
from sparkgate.jobs.submission import SubmitRequest
from sparkgate.jobs.webhooks import callback_allowed, checked_url

endpoints = Endpoints()

MAX_LIMIT = 1000

_PAGE = {"anyOf": [array(ref("JobDetails")), ref("JobPage")]}
_LISTED = "newest first: a bare list, or `{jobs, total}` with `paginate=true`"


@endpoints.post("/v2/api/functions/{name}/jobs", Rule("submit", function="path"), Op(
    "runFunction", "jobs", "Run a function",
    {
        "200": ok({"anyOf": [ref("JobId"), ref("SyncResult"), ref("JobDetails")]},
                  "async: `{id}` once queued; `force=true`: Mist's `{success, payload, "
                  "errors}` once ended (a failed job too); `wait=`: the ended job"),
        "202": ok(ref("WaitPending"), "`wait=` ran out before the job ended",
                  headers={"Location": {"required": True, "schema": STRING,
                                        "description": "the job"}}),
        "400": use("BadRequest"), "404": use("NotFound"), "409": use("Conflict"),
        "429": use("TooManyRequests"),
    },
    description="Arguments are checked against the function's schema before anything is "
                "recorded (`400 invalid_arguments` lists every problem), and the function "
                "against the context's engine (`400 wrong_engine`: a Spark function sent to "
                "a python context). `429` when the "
                "context already has `max_queued_per_context` jobs waiting, or the "
                "submitter is over `submits_per_second`.",
    parameters=[
        FUNCTION_NAME,
        bool_param("force", "Mist's sync call: answer when the job has ended"),
        duration_param("wait", "*sparkgate*: wait at most this long for the end; `202` "
                               "if it has not ended by then"),
        text_param("context", "run in this context instead of the function's default"),
        text_param("externalId", "your own id for the job; a repeated submit with the same "
                                 "id answers the job it created"),
        duration_param("startTimeout", "fail the job if it waits longer in the queue"),
        duration_param("performTimeout", "fail the job if it runs longer"),
        query_param("record", {"type": "string", "pattern": BOOLEAN_QUERY, "default": "true"},
                    "*sparkgate*, functions deployed with `cache`: `false` records no job "
                    "for a call answered from the cache; the answer is then the job that "
                    "ran (its id). See docs/caching.md"),
        query_param("callbackUrl", {"type": "string", "maxLength": 2000}, (
            "*sparkgate* (spark-jobserver's): POST the job's end here, signed, retried "
            "(docs/webhooks.md); only a URL starting with one of `callback_url_allowed` (none "
            "by default), else `400`")),
        {"name": "Idempotency-Key", "in": "header", "required": False, "schema": STRING,
         "description": "a retry with the same key (per submitter and function) answers "
                        "the job the first request created; with other arguments or "
                        "context, `409`. Without it, `externalId` plays that part"},
    ],
    body=request_body({"type": "object", "description": "the function's arguments"},
                      "the arguments (an empty body is `{}`)", required=False),
    links=links("$response.body#/id", "id", "getJob", "getJobLogs", "cancelJob")))
async def run_function(request: web.Request) -> web.Response:
    app = request.app
    who = identity(request)
    # Before the body is read: a client over its rate costs one Redis call, nothing more.
    await check_submit_rate(app, who.client)
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
        record=query_bool(request, "record", default=True),
        follow=force or "wait" in request.query,
        callback_url=_callback_url(request),
    )
    job = await from_call_index(app, submit_request)
    if job is None and not submit_request.follow:
        job = await _submit(app, submit_request, None)
    elif job is None:
        deadline = None if force or wait_ms is None else time.monotonic() + wait_ms / 1000
        job = await _submit_and_wait(app, submit_request, deadline, force)
    if not submit_request.follow:
        return web.json_response(to_json(JobId(job.id)))
    if force:
        # Inline: a result from the terminal event is small (events carry at most 64 KiB), one
        # read from the database is spliced in unparsed.
        return web.Response(body=_encode(to_json(SyncResult.of(job))),
                            content_type="application/json")
    if job.status.terminal:
        return await _job_response(job)
    return web.json_response(to_json(WaitPending.of(job)), status=202,
                             headers={"Location": f"/v2/api/jobs/{job.id}"})


async def _submit_and_wait(app: web.Application, submit_request: SubmitRequest,
                           deadline: float | None, outcome_only: bool) -> Job:
    # Watched before it exists: its end cannot be missed, and the wait needs no first read.
    new_id = uuid7()
    with app[HUB].watch(new_id) as watch:
        job = await _submit(app, dataclasses.replace(submit_request, job_id=new_id), deadline)
        # Another id: an earlier job of the same idempotency key, watched by wait_for_end;
        # or the cached job that ran, already ended.
        ours = job.id == new_id
        if not job.status.terminal:
            job = await wait_for_end(app[HUB], app[STORE], job.id, _left_s(deadline),
                                     outcome_only=outcome_only, watch=watch if ours else None,
                                     known=job if ours else None)
    return job


async def _submit(app: web.Application, submit_request: SubmitRequest,
                  deadline: float | None) -> Job:
    """The request's job. While an identical call's job is queued or running (a function
    deployed with ``cache``), wait for its end first (until ``deadline``), then submit again:
    its result is cached by then, or (it failed, or is still running) this call runs its own
    job. See docs/caching.md."""
    submitted = await app[SUBMISSIONS].submit(submit_request)
    if isinstance(submitted, Pending):
        with contextlib.suppress(NotFound):  # NotFound: its submit was taken back
            await wait_for_end(app[HUB], app[STORE], submitted.job_id, _left_s(deadline),
                               outcome_only=True)
        submitted = await app[SUBMISSIONS].submit(dataclasses.replace(submit_request,
                                                                      follow=False))
    assert not isinstance(submitted, Pending)  # not when following is off
    return submitted


def _callback_url(request: web.Request) -> str | None:
    """The submit's callbackUrl, if the settings allow it: a URL any caller chooses would
    have the gateway send requests into its own network."""
    url = query_str(request, "callbackUrl", max_length=2000)
    if url is None:
        return None
    checked_url(url, "callbackUrl")
    allowed = request.app[SETTINGS].callback_url_allowed
    if not callback_allowed(url, allowed):
        why = ("callbacks are off (callback_url_allowed is empty)" if not allowed else
               f"it must start with one of {', '.join(allowed)} (callback_url_allowed)")
        raise BadRequest(f"callbackUrl: {url!r} is not allowed: {why}",
                         {"field": "callbackUrl", "expected": list(allowed), "got": url})
    return url


def _left_s(deadline: float | None) -> float | None:
    return None if deadline is None else max(0.0, deadline - time.monotonic())


@endpoints.get("/v2/api/jobs", READ, Op(
    "listJobs", "jobs", "List jobs", {"200": ok(_PAGE, _LISTED), "400": use("BadRequest")},
    parameters=[*JOB_LIST_PARAMS, param("jobFunction")]))
async def list_jobs(request: web.Request) -> web.Response:
    return await _list(request, JobQuery())


@endpoints.get("/v2/api/functions/{name}/jobs", READ, Op(
    "listFunctionJobs", "jobs", "A function's jobs",
    {"200": ok(_PAGE, _LISTED), "400": use("BadRequest"), "404": use("NotFound")},
    parameters=[FUNCTION_NAME, *JOB_LIST_PARAMS]))
async def list_function_jobs(request: web.Request) -> web.Response:
    await blocking(request.app[CATALOG].get_function, request.match_info["name"])
    return await _list(request, JobQuery(function=request.match_info["name"]))


@endpoints.get("/v2/api/workers/{id}/jobs", READ, Op(
    "listWorkerJobs", "jobs", "A worker's jobs",
    {"200": ok(_PAGE, _LISTED), "400": use("BadRequest")},
    parameters=[WORKER_ID, *JOB_LIST_PARAMS, param("jobFunction")],
    description="Jobs a worker took, live or not."))
async def list_worker_jobs(request: web.Request) -> web.Response:
    return await _list(request, JobQuery(worker_id=request.match_info["id"]))


@endpoints.get("/v2/api/jobs/{id}", READ, Op(
    "getJob", "jobs", "One job", {"200": ok(ref("JobDetails")), "404": use("NotFound")},
    parameters=[JOB_ID_PARAM]))
async def get_job(request: web.Request) -> web.Response:
    return await _job_response(await _visible_job(request))


@endpoints.get("/v2/api/jobs/{id}/logs", READ, Op(
    "getJobLogs", "jobs", "A job's log",
    {"200": ok({"type": "string"}, "one line per record: `LEVEL ISO-time [job id] message`; "
               "empty while none", "text/plain", headers={
                   "X-Sparkgate-Next-Offset": {
                       "required": True, "schema": {"type": "integer", "minimum": 0},
                       "description": "*sparkgate*: the `offset` that reads on from here"},
                   "X-Sparkgate-Job-Status": {
                       "required": True, "schema": {"enum": list(MIST_STATUSES)},
                       "description": "*sparkgate*: the job's status, read before its log: "
                                      "once ended, the log is complete"}}),
     "400": use("BadRequest"), "404": use("NotFound")},
    parameters=[JOB_ID_PARAM, query_param(
        "offset", {"type": "integer", "minimum": 0, "maximum": 10**9, "default": 0},
        "*sparkgate*: records to skip (a multi-line record counts once): pass the last "
        "answer's `X-Sparkgate-Next-Offset` to read only what came since")]))
async def job_logs(request: web.Request) -> web.Response:
    store = request.app[STORE]
    offset = query_int(request, "offset", 0, 0, 10**9)
    # The status first: an ended job's last lines are stored with its end, so a log read
    # after an ended status is complete, and a follower can stop there.
    job = await _visible_job(request)
    lines = await blocking(store.job_logs, job.id, offset)
    text = "".join(format_mist_line(job.id, line) + "\n" for line in lines)
    return web.Response(text=text, content_type="text/plain", headers={
        "X-Sparkgate-Next-Offset": str(offset + len(lines)),
        "X-Sparkgate-Job-Status": job.status.value})


@endpoints.delete("/v2/api/jobs/{id}", SUBMIT, Op(
    "cancelJob", "jobs", "Cancel a job",
    {"200": ok(ref("JobDetails"), "the job: `cancelled`, or `cancelling` while its worker "
               "stops it"), "404": use("NotFound"), "409": use("Conflict")},
    parameters=[JOB_ID_PARAM]))
async def cancel_job(request: web.Request) -> web.Response:
    app = request.app
    require_cancel(request, await _visible_job(request))
    job = await blocking(cancellation.cancel, app[STORE], app[QUEUE], request.match_info["id"])
    await publish_async(app[AREDIS], lifecycle_event(job))
    return await _job_response(job)


async def _visible_job(request: web.Request) -> Job:
    """The job, its arguments and result unparsed (answered as stored, or not needed)."""
    return visible(request, await blocking(request.app[STORE].get_job,
                                           request.match_info["id"], raw_values=True))


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
        schedule=query_str(request, "schedule"),
        limit=query_int(request, "limit", 25, 0, MAX_LIMIT),
        offset=query_int(request, "offset", 0, 0, 10**9),
    )
    body = await blocking(_listing, request.app[STORE], query, query_bool(request, "paginate"),
                          request.app[SETTINGS].listing_value_max_bytes)
    return web.Response(body=body, content_type="application/json")


def _listing(store: Store, query: JobQuery, paginate: bool, value_max_bytes: int) -> bytes:
    """The page as JSON, read, rendered and encoded on a blocking thread: a page of big jobs
    never holds the event loop (nor its values the gateway's memory: see list_jobs). Even
    capped, a page of 1000 jobs can carry tens of MB: json_text encodes it in a fifth of the
    time json.dumps takes, with the GIL held."""
    jobs, _ = store.list_jobs(query, value_max_bytes=value_max_bytes)
    page = [to_json(JobDetails.of(j)) for j in jobs]
    if not paginate:
        return json_text(page).encode()
    counted = store.count_jobs(query)
    return json_text(to_json(JobPage(page, counted.total, counted.exact))).encode()


async def _job_response(job: Job) -> web.Response:
    """A job in full: its arguments or result may be megabytes, encoded off the loop."""
    return web.Response(body=await blocking(_encode, to_json(JobDetails.of(job))),
                        content_type="application/json")


def _encode(value: Any) -> bytes:
    """``value`` as JSON, with each ``RawJSON`` in it spliced in as it is: encoded as a
    placeholder first, which no other string can equal (a random token between NULs, which
    json.dumps escapes as the text \\u0000), then replaced by the stored text."""
    raw: list[str] = []
    token = secrets.token_hex(8)

    def placeholder(item: Any) -> str:
        if not isinstance(item, RawJSON):
            raise TypeError(f"{type(item).__name__} is not JSON")
        raw.append(item.text)
        return f"\0{token}{len(raw) - 1}\0"

    text = json.dumps(value, default=placeholder)
    for i, stored in enumerate(raw):
        text = text.replace(f'"\\u0000{token}{i}\\u0000"', stored, 1)
    return text.encode()
