"""``/v2/api/workers``: the live workers, as they announce themselves in Redis."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from sparkgate.gateway.auth import identity
from sparkgate.gateway.blocking import blocking
from sparkgate.gateway.openapi import WORKER_ID, array, ok, ref, use
from sparkgate.gateway.redaction import Redaction, redaction_for
from sparkgate.gateway.resources import AREDIS, STORE, WORKERS
from sparkgate.gateway.routing import ADMIN, READ, Endpoints, Op
from sparkgate.jobs.db import now_ms
from sparkgate.jobs.errors import NotFound
from sparkgate.jobs.publishing import send_control_async

endpoints = Endpoints()


@endpoints.get("/v2/api/workers", READ, Op(
    "listWorkers", "workers", "Live workers",
    {"200": ok(array(ref("Worker")), "sorted by id")}))
async def list_workers(request: web.Request) -> web.Response:
    records = await blocking(request.app[WORKERS].live)
    owned = await _owned_running_jobs(request, records)
    redaction = redaction_for(request)
    return web.json_response([worker_info(r, redaction, owned) for r in records])


@endpoints.get("/v2/api/workers/{id}", READ, Op(
    "getWorker", "workers", "One live worker",
    {"200": ok(ref("Worker")), "404": use("NotFound")}, parameters=[WORKER_ID]))
async def get_worker(request: web.Request) -> web.Response:
    record = await _live(request)
    owned = await _owned_running_jobs(request, [record])
    return web.json_response(worker_info(record, redaction_for(request), owned))


@endpoints.delete("/v2/api/workers/{id}", ADMIN, Op(
    "stopWorker", "workers", "Drain and stop a live worker",
    {"200": ok(ref("Worker"), "the worker, `state` `draining`"), "404": use("NotFound")},
    parameters=[WORKER_ID]))
async def stop_worker(request: web.Request) -> web.Response:
    """Drain and stop: the worker takes no new job and ends once its running jobs have (those
    still running after its stop grace fail, saying why). Answers at once."""
    record = await _live(request)
    await send_control_async(request.app[AREDIS], record["id"], {"stop": True})
    return web.json_response({**worker_info(record, redaction_for(request)),
                              "state": "draining"})


async def _live(request: web.Request) -> dict[str, Any]:
    worker_id = request.match_info["id"]
    record = await blocking(request.app[WORKERS].get, worker_id)
    if record is None:
        raise NotFound(f"worker {worker_id} is not live", {"workerId": worker_id})
    return record


async def _owned_running_jobs(request: web.Request,
                              records: list[dict[str, Any]]) -> set[str] | None:
    """The running jobs of ``records`` that the caller may see; None: all of them."""
    owner = identity(request).owner_scope
    if owner is None:
        return None
    running = [job_id for r in records for job_id in r["runningJobs"]]
    return await blocking(request.app[STORE].submitted_by, running, owner)


def worker_info(record: dict[str, Any], redaction: Redaction,
                visible_jobs: set[str] | None = None) -> dict[str, Any]:
    """Mist's WorkerLink (``name``, ``address``, ``sparkUi``, ``initInfo``) plus live state.
    ``visible_jobs``: the running jobs the caller may see (None: all)."""
    running = record["runningJobs"]
    return {
        "name": record["id"],
        "address": f"{record['host']}:{record['pid']}",
        "context": record["context"],
        "initInfo": {
            "sparkConf": redaction.shown(record["sparkConf"]),
            "maxJobs": record["maxJobs"],
            "workerMode": record["workerMode"],
        },
        "startedAt": record["startedAt"],
        "uptimeMs": now_ms() - record["startedAt"],
        "heartbeatAt": record["heartbeatAt"],
        "runningJobs": [j for j in running if visible_jobs is None or j in visible_jobs],
        # sparkgate's own: every running job, the caller's or not (how busy the worker is).
        "runningJobCount": len(running),
        "jobsDone": record["jobsDone"],
        "state": record.get("state", "running"),
        "drainReason": record.get("drainReason"),
    }
