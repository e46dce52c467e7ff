"""``/v2/api/status`` (what mist-cli prints) and ``/health`` (for load balancers, containers)."""

from __future__ import annotations

import functools
import platform
import re
import subprocess
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from aiohttp import web
from sqlalchemy import make_url

from sparkgate.gateway.blocking import blocking
from sparkgate.gateway.openapi import obj, ok, ref
from sparkgate.gateway.resources import AREDIS, HUB, SETTINGS, STARTED_MS, STORE, WORKERS
from sparkgate.gateway.routing import OPEN, READ, Endpoints, Op

endpoints = Endpoints()


# Versions of sparkgate, Spark, Java and Python, the database kind: useful to an attacker
# choosing an exploit, so not public (the public health check is /health).
@endpoints.get("/v2/api/status", READ, Op(
    "status", "status", "Versions and counters", {"200": ok(ref("Status"))}))
async def status(request: web.Request) -> web.Response:
    app = request.app
    workers = await blocking(app[WORKERS].live)
    return web.json_response({
        "mistVersion": sparkgate_version(),
        "sparkgateVersion": sparkgate_version(),
        "sparkVersion": _package_version("pyspark"),
        "started": app[STARTED_MS],
        "javaVersion": await blocking(java_version),
        "pythonVersion": platform.python_version(),
        "database": make_url(app[SETTINGS].resolved_database_url).get_backend_name(),
        "workers": len(workers),
        "syncWaiters": app[HUB].waiting,
    })


# What load balancers and containers probe without credentials; it says only "ok".
@endpoints.get("/health", OPEN, Op(
    "health", "status", "Liveness",
    {"200": ok(obj({"status": {"const": "ok"}}),
               "serving, and Redis and the database answer (503 when either does not)")}))
async def health(request: web.Request) -> web.Response:
    """200 when Redis and the database both answer; else 503 naming the one that does not
    (the error middleware's), so a load balancer takes a gateway that cannot submit out."""
    await request.app[AREDIS].ping()
    await blocking(request.app[STORE].ping)
    return web.json_response({"status": "ok"})


async def read_installation(app: web.Application) -> None:
    """``on_startup``: the versions /status reports are read here, once. Read per call, each
    opened a package's metadata file: a cost per call, and a 500 once a flood of connections
    had used up the process's file descriptors."""
    await blocking(_installation)


def _installation() -> None:
    sparkgate_version()
    _package_version("pyspark")
    java_version()


def sparkgate_version() -> str:
    return _package_version("sparkgate")


@functools.cache
def _package_version(name: str) -> str:
    try:
        return version(name)
    except PackageNotFoundError:
        return "unknown"


@functools.cache
def java_version() -> dict[str, Any]:
    """Mist's shape: ``{"runtimeVersion", "vmVersion"}``, from ``java -version`` once."""
    try:
        out = subprocess.run(["java", "-version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return {"runtimeVersion": "not found", "vmVersion": "not found"}
    text = out.stderr or out.stdout
    runtime = re.search(r'version "([^"]+)"', text)
    vm = re.search(r"VM \(build ([^,]+)", text)
    return {"runtimeVersion": runtime.group(1) if runtime else "unknown",
            "vmVersion": vm.group(1) if vm else "unknown"}
