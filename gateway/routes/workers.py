"""``/v2/api/workers``: the live workers, as they announce themselves in Redis."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from gateway.blocking import blocking
from gateway.resources import WORKERS
from jobs.errors import NotFound

routes = web.RouteTableDef()


@routes.get("/v2/api/workers")
async def list_workers(request: web.Request) -> web.Response:
    records = await blocking(request.app[WORKERS].live)
    return web.json_response([worker_info(r) for r in records])


@routes.get("/v2/api/workers/{id}")
async def get_worker(request: web.Request) -> web.Response:
    worker_id = request.match_info["id"]
    record = await blocking(request.app[WORKERS].get, worker_id)
    if record is None:
        raise NotFound(f"worker {worker_id} is not live", {"workerId": worker_id})
    return web.json_response(worker_info(record))


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
        "heartbeatAt": record["heartbeatAt"],
        "runningJobs": record["runningJobs"],
        "jobsDone": record["jobsDone"],
    }
