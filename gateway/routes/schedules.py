"""``/v2/api/schedules``: functions run at the times of a cron expression (jobs/schedules.py;
the scheduler that runs them is jobs/scheduler.py). Anyone who reads sees them; only admins
save, delete or run them, since a schedule runs code on its own, for as long as it exists."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from sparkgate.gateway.auth import identity
from sparkgate.gateway.blocking import blocking
from sparkgate.gateway.openapi import array, links, ok, path_param, ref, request_body, use
from sparkgate.gateway.params import checked_name, json_body, json_object
from sparkgate.gateway.resources import CATALOG, SETTINGS, STORE, SUBMISSIONS
from sparkgate.gateway.routing import ADMIN, READ, Endpoints, Op
from sparkgate.gateway.wire.fields import to_json
from sparkgate.gateway.wire.jobs import JobId
from sparkgate.gateway.wire.schedules import (
    SCHEDULE,
    SCHEDULE_DEFINITION,
    SCHEDULE_REPLACEMENT,
    ScheduleInfo,
    definition_from,
)
from sparkgate.jobs.errors import BadRequest
from sparkgate.jobs.scheduler import tick_request
from sparkgate.jobs.schedules import ScheduleBook
from sparkgate.jobs.store import Job, JobQuery, Store

endpoints = Endpoints()

LAST_JOBS = 10
_NAME = path_param("name", "the schedule's name")
_CHANGES = links("$response.body#/name", "name", "getSchedule", "replaceSchedule",
                 "deleteSchedule", "runSchedule")


def _book(request: web.Request) -> ScheduleBook:
    catalog = request.app[CATALOG]
    return ScheduleBook(catalog.engine, catalog)


@endpoints.get("/v2/api/schedules", READ, Op(
    "listSchedules", "schedules", "List schedules",
    {"200": ok(array(SCHEDULE), "sorted by name")}))
async def list_schedules(request: web.Request) -> web.Response:
    schedules = await blocking(_book(request).list_schedules)
    return web.json_response([to_json(ScheduleInfo.of(s)) for s in schedules])


@endpoints.post("/v2/api/schedules", ADMIN, Op(
    "createSchedule", "schedules", "Create a schedule",
    {"200": ok(SCHEDULE, "the stored schedule"), "400": use("BadRequest"),
     "404": use("NotFound"), "409": use("Conflict")},
    body=request_body(SCHEDULE_DEFINITION, "the schedule; `name`, `function` and `cron` are "
                      "required"),
    description="Checked as its ticks' submits would be: `404` for a function that does not "
                "exist, `400` naming the field for a bad cron, time zone or argument, a "
                "context that does not exist, or a Spark function for a python context. "
                "`409` if the name is taken (replace it with `PUT`).",
    links=_CHANGES))
async def create_schedule(request: web.Request) -> web.Response:
    body = await _body(request)
    name = checked_name(body.get("name"), "name")
    definition = definition_from(body, name)
    schedule = await blocking(_book(request).create, definition, identity(request).submitter)
    return web.json_response(to_json(ScheduleInfo.of(schedule)))


@endpoints.get("/v2/api/schedules/{name}", READ, Op(
    "getSchedule", "schedules", "One schedule, with its next runs and latest jobs",
    {"200": ok(SCHEDULE), "404": use("NotFound")}, parameters=[_NAME]))
async def get_schedule(request: web.Request) -> web.Response:
    schedule = await blocking(_book(request).get, request.match_info["name"])
    last_jobs = await blocking(_last_jobs, request.app[STORE], schedule.name)
    return web.json_response(to_json(ScheduleInfo.of(schedule, last_jobs)))


@endpoints.put("/v2/api/schedules/{name}", ADMIN, Op(
    "replaceSchedule", "schedules", "Replace a schedule (pause or resume it)",
    {"200": ok(SCHEDULE, "the stored schedule"), "400": use("BadRequest"),
     "404": use("NotFound")}, parameters=[_NAME],
    body=request_body(SCHEDULE_REPLACEMENT, "the whole definition"),
    description="Checked as a create is. The schedule starts afresh from now: its next run is "
                "the cron's first time after the save, and a tick waiting for an earlier run "
                "is dropped. `enabled: false` pauses it (no jobs); `true` resumes it (the "
                "ticks that fell while it was paused do not run)."))
async def replace_schedule(request: web.Request) -> web.Response:
    body = await _body(request)
    name = request.match_info["name"]
    if body.get("name", name) != name:
        raise BadRequest(f"name: the body says {body['name']!r} but the path says {name!r}",
                         {"field": "name", "expected": name, "got": body["name"]})
    definition = definition_from(body, name)
    schedule = await blocking(_book(request).replace, definition, identity(request).submitter)
    return web.json_response(to_json(ScheduleInfo.of(schedule)))


@endpoints.delete("/v2/api/schedules/{name}", ADMIN, Op(
    "deleteSchedule", "schedules", "Delete a schedule",
    {"200": ok(SCHEDULE, "the deleted schedule"), "404": use("NotFound")}, parameters=[_NAME],
    description="Its jobs stay, and so do runs still going."))
async def delete_schedule(request: web.Request) -> web.Response:
    schedule = await blocking(_book(request).delete, request.match_info["name"])
    return web.json_response(to_json(ScheduleInfo.of(schedule)))


@endpoints.post("/v2/api/schedules/{name}/jobs", ADMIN, Op(
    "runSchedule", "schedules", "Run a schedule now",
    {"200": ok(ref("JobId"), "the job, queued"), "400": use("BadRequest"),
     "404": use("NotFound")}, parameters=[_NAME],
    description="A job of the schedule's function and arguments, at once, whatever its cron, "
                "`enabled` and `overlap` say; recorded as the schedule's (`source` "
                "`Schedule`), submitted by the caller. The ticks count it as a run going.",
    links=links("$response.body#/id", "id", "getJob", "getJobLogs", "cancelJob")))
async def run_schedule(request: web.Request) -> web.Response:
    schedule = await blocking(_book(request).get, request.match_info["name"])
    job = await request.app[SUBMISSIONS].submit(
        tick_request(schedule, None, by=identity(request).submitter))
    assert isinstance(job, Job)  # no result cache follow: never Pending
    return web.json_response(to_json(JobId(job.id)))


def _last_jobs(store: Store, name: str) -> list[dict[str, Any]]:
    jobs, _ = store.list_jobs(JobQuery(schedule=name, limit=LAST_JOBS), value_max_bytes=0)
    return [{"id": j.id, "status": j.status.value, "createTime": j.create_time,
             **({"startTime": j.start_time} if j.start_time is not None else {}),
             **({"endTime": j.end_time} if j.end_time is not None else {})} for j in jobs]


async def _body(request: web.Request) -> dict[str, Any]:
    return json_object(await json_body(request, limit=request.app[SETTINGS].max_body_bytes),
                       "schedule")
