"""Gateway processes beside ``serve``'s own (the ``processes`` setting, ``serve --processes``):
each serves the same app on the same listening sockets, which it inherits, and the kernel hands
each new connection to one of them. A gateway keeps no state of its own (the database and Redis
hold everything), so a job submitted through one process is waited for, listed and cancelled
through any. Only ``serve``'s own process runs the worker supervisor, the reconciler and the
MQTT interface, deploys the examples and holds the embedded Redis and the data folder.

Inherited sockets rather than SO_REUSEPORT: a port that any process of the same user can also
bind with SO_REUSEPORT would let a second ``serve`` share it silently (sparkgate/claims.py).

A gateway process is ``serve``'s child, in a session of its own (a terminal's Ctrl-C is
``serve``'s to handle), killed by the kernel if ``serve`` dies; ``serve`` stops them with
SIGTERM as it stops, and each finishes its requests in progress, as ``serve``'s own does.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from sparkgate.embedded import dies_with
from sparkgate.gateway import connections
from sparkgate.gateway.app import create_app
from sparkgate.jobs.settings import Settings

log = logging.getLogger("sparkgate.serve")

# Requests in progress when a gateway (serve's own or another) stops get this long to finish
# (sync waits included).
HTTP_SHUTDOWN_S = 10.0
# How long serve waits for a gateway process past that before it kills it.
STOP_MARGIN_S = 5.0


def make_runner(app: web.Application, settings: Settings) -> web.AppRunner:
    """The HTTP server of every gateway process, and every option it runs with (its limits on
    clients: gateway/connections.py)."""
    return connections.make_runner(app, settings, handle_signals=False,
                                   shutdown_timeout=HTTP_SHUTDOWN_S)


@dataclass
class GatewayProcesses:
    processes: list[subprocess.Popen[bytes]]

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.processes]

    def stop(self) -> None:
        for process in self.processes:
            process.terminate()
        for process in self.processes:
            try:
                process.wait(timeout=HTTP_SHUTDOWN_S + STOP_MARGIN_S)
            except subprocess.TimeoutExpired:
                log.warning("gateway process %d did not stop in time: killed", process.pid)
                process.kill()
                process.wait()

    def kill(self) -> None:
        """At once: their requests in progress end now (serve's second signal)."""
        for process in self.processes:
            process.kill()


def start_gateway_processes(count: int, sockets: list[socket.socket], settings: Settings,
                            redis_url: str, config_path: Path | None) -> GatewayProcesses:
    """``count`` more gateways on ``sockets``, with ``settings`` as ``serve`` resolved them
    (its host, its Redis, even an embedded one, and its database)."""
    fds = [sock.fileno() for sock in sockets]
    command = [sys.executable, "-P", "-m", "sparkgate", "gateway-process",
               *(["--config", str(config_path)] if config_path else []),
               *(arg for fd in fds for arg in ("--fd", str(fd)))]
    env = {**os.environ, "SPARKGATE_HOST": settings.host, "SPARKGATE_REDIS_URL": redis_url,
           "SPARKGATE_DATABASE_URL": settings.resolved_database_url}
    started = GatewayProcesses([])
    try:
        for _ in range(count):
            started.processes.append(subprocess.Popen(
                command, env=env, pass_fds=fds, stdin=subprocess.DEVNULL,
                start_new_session=True, preexec_fn=dies_with(os.getpid())))
    except OSError:
        started.stop()
        raise
    log.info("%d more gateway process(es) on the same port: pid %s", count,
             ", ".join(map(str, started.pids)))
    return started


def run_gateway_process(settings: Settings, fds: list[int]) -> int:
    """A gateway process's life: serve the app on the inherited sockets until SIGTERM."""
    sockets = [socket.socket(fileno=fd) for fd in fds]
    assert settings.redis_url is not None, "serve gives its gateway processes its Redis"
    return asyncio.run(_serve(create_app(settings, settings.redis_url), sockets, settings))


async def _serve(app: web.Application, sockets: list[socket.socket], settings: Settings) -> int:
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stopping.set)
    runner = make_runner(app, settings)
    await runner.setup()
    for sock in sockets:
        await web.SockSite(runner, sock).start()
    await stopping.wait()
    await runner.cleanup()
    return 0
