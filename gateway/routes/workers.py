"""``/v2/api/workers``: the live workers, as they announce themselves in Redis."""

from __future__ import annotations

from dataclasses import replace

from aiohttp import web

from sparkgate.gateway.auth import identity, redaction_for
from sparkgate.gateway.blocking import blocking
from sparkgate.gateway.openapi import WORKER_ID, array, ok, ref, use
from sparkgate.gateway.resources import AREDIS, STORE, WORKERS
from sparkgate.gateway.routing import ADMIN, READ, Endpoints, Op
from sparkgate.gateway.wire.fields import to_json
from sparkgate.gateway.wire.workers import WorkerInfo
from sparkgate.jobs.db import now_ms
from sparkgate.jobs.errors import NotFound
from sparkgate.jobs.publishing import send_control_async
from sparkgate.jobs.worker_registry import WorkerRecord

endpoints = Endpoints()


@endpoints.get("/v2/api/workers", READ, Op(
    "listWorkers", "workers", "Live workers",
    {"200": ok(array(ref("Worker")), "sorted by id")}))
async def list_workers(request: web.Request) -> web.Response:
    records = await blocking(request.app[WORKERS].live)
    owned = await _owned_running_jobs(request, records)
    redaction = redaction_for(request)
    now = now_ms()
    return web.json_response([to_json(WorkerInfo.of(r, redaction, now, owned))
                              for r in records])


@endpoints.get("/v2/api/workers/{id}", READ, Op(
    "getWorker", "workers", "One live worker",
    {"200": ok(ref("Worker")), "404": use("NotFound")}, parameters=[WORKER_ID]))
async def get_worker(request: web.Request) -> web.Response:
    record = await _live(request)
    owned = await _owned_running_jobs(request, [record])
    info = WorkerInfo.of(record, redaction_for(request), now_ms(), owned)
    return web.json_response(to_json(info))


@endpoints.delete("/v2/api/workers/{id}", ADMIN, Op(
    "stopWorker", "workers", "Drain and stop a live worker",
    {"200": ok(ref("Worker"), "the worker, `state` `draining`"), "404": use("NotFound")},
    parameters=[WORKER_ID]))
async def stop_worker(request: web.Request) -> web.Response:
    """Drain and stop: the worker takes no new job and ends once its running jobs have (those
    still running after its stop grace fail, saying why). Answers at once."""
    record = await _live(request)
    await send_control_async(request.app[AREDIS], record.id, {"stop": True})
    info = WorkerInfo.of(record, redaction_for(request), now_ms())
    return web.json_response(to_json(replace(info, state="draining")))


async def _live(request: web.Request) -> WorkerRecord:
    worker_id = request.match_info["id"]
    record = await blocking(request.app[WORKERS].get, worker_id)
    if record is None:
        raise NotFound(f"worker {worker_id} is not live", {"workerId": worker_id})
    return record


async def _owned_running_jobs(request: web.Request,
                              records: list[WorkerRecord]) -> set[str] | None:
    """The running jobs of ``records`` that the caller may see; None: all of them."""
    owner = identity(request).owner_scope
    if owner is None:
        return None
    running = [job_id for r in records for job_id in r.running_jobs]
    return await blocking(request.app[STORE].submitted_by, running, owner)

