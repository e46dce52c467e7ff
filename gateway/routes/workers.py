"""``/v2/api/workers``: the live workers, as they announce themselves in Redis."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from gateway.blocking import blocking
from gateway.resources import AREDIS, WORKERS
from jobs.cancellation import control_channel
from jobs.db import now_ms
from jobs.errors import NotFound

routes = web.RouteTableDef()


@routes.get("/v2/api/workers")
async def list_workers(request: web.Request) -> web.Response:
    records = await blocking(request.app[WORKERS].live)
    return web.json_response([worker_info(r) for r in records])


@routes.get("/v2/api/workers/{id}")
async def get_worker(request: web.Request) -> web.Response:
    return web.json_response(worker_info(await _live(request)))


@routes.delete("/v2/api/workers/{id}")
async def stop_worker(request: web.Request) -> web.Response:
    """Drain and stop: the worker takes no new job and ends once its running jobs have (those
    still running after its stop grace fail, saying why). Answers at once."""
    record = await _live(request)
    await request.app[AREDIS].publish(control_channel(record["id"]),
                                      json.dumps({"stop": True}))
    return web.json_response({**worker_info(record), "state": "draining"})


async def _live(request: web.Request) -> dict[str, Any]:
    worker_id = request.match_info["id"]
    record = await blocking(request.app[WORKERS].get, worker_id)
    if record is None:
        raise NotFound(f"worker {worker_id} is not live", {"workerId": worker_id})
    return record


def worker_info(record: dict[str, Any]) -> dict[str, Any]:
    """Mist's WorkerLink (``name``, ``address``, ``sparkUi``, ``initInfo``) plus live state."""
    return {
        "name": record["id"],
        "address": f"{record['host']}:{record['pid']}",
        "context": record["context"],
        "initInfo": {
            "sparkConf": record["sparkConf"],
            "maxJobs": record["maxJobs"],
            "workerMode": record["workerMode"],
        },
        "startedAt": record["startedAt"],
        "uptimeMs": now_ms() - record["startedAt"],
        "heartbeatAt": record["heartbeatAt"],
        "runningJobs": record["runningJobs"],
        "jobsDone": record["jobsDone"],
        "state": record.get("state", "running"),
        "drainReason": record.get("drainReason"),
    }
