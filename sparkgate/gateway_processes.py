"""Gateway processes beside ``serve``'s own (the ``processes`` setting, ``serve --processes``):
each serves the same app on the same listening sockets, which it inherits, and the kernel hands
each new connection to one of them. A gateway keeps no state of its own (the database and Redis
hold everything), so a job submitted through one process is waited for, listed and cancelled
through any. Only ``serve``'s own process runs the worker supervisor, the reconciler and the
MQTT interface, deploys the examples and holds the embedded Redis and the data folder.

All start serving at one moment, once every one is set up (``GatewayProcesses.wait_ready``):
the clients that connect as ``serve`` starts are spread across them.

Inherited sockets rather than SO_REUSEPORT: a port that any process of the same user can also
bind with SO_REUSEPORT would let a second ``serve`` share it silently (sparkgate/claims.py).

A gateway process is ``serve``'s child, in a session of its own (a terminal's Ctrl-C is
``serve``'s to handle), killed by the kernel if ``serve`` dies; ``serve`` stops them with
SIGTERM as it stops, and each finishes its requests in progress, as ``serve``'s own does.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import select
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from sparkgate.gateway import connections
from sparkgate.gateway.app import create_app
from sparkgate.jobs.child_processes import dies_with
from sparkgate.jobs.settings import Settings

log = logging.getLogger("sparkgate.serve")

# Requests in progress when a gateway (serve's own or another) stops get this long to finish
# (sync waits included).
HTTP_SHUTDOWN_S = 10.0
# How long serve waits for a gateway process past that before it kills it.
STOP_MARGIN_S = 5.0
# How long serve waits for its gateway processes to be set up before it starts serving without
# the ones still starting.
READY_TIMEOUT_S = 60.0


def make_runner(app: web.Application, settings: Settings) -> web.AppRunner:
    """The HTTP server of every gateway process, and every option it runs with (its limits on
    clients: gateway/connections.py)."""
    return connections.make_runner(app, settings, handle_signals=False,
                                   shutdown_timeout=HTTP_SHUTDOWN_S)


@dataclass
class GatewayProcesses:
    processes: list[subprocess.Popen[bytes]]
    #: Each process's end of a pipe it writes a line to once it is set up (``--ready-fd``)...
    ready_pipes: list[int]
    #: ...and the end of the pipe they all wait on to serve (``--go-fd``): closed to start them.
    go_pipe: int | None

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.processes]

    def wait_ready(self, timeout_s: float = READY_TIMEOUT_S) -> None:
        """Until every process is set up to serve (or has exited, or ``timeout_s`` ran out:
        said in the log). Then ``go`` starts them, and ``serve``'s own, at one moment: the
        clients that connect first (an app's pool of keep-alive connections, opened at once)
        are spread across all the processes, and stay where they landed. A process that
        served before the others got them all, the others idle: 64 of 64, measured."""
        deadline = time.monotonic() + timeout_s
        waiting = dict(zip(self.ready_pipes, self.processes, strict=True))
        while waiting and (left := deadline - time.monotonic()) > 0:
            readable, _, _ = select.select(list(waiting), [], [], left)
            for fd in readable:
                process = waiting.pop(fd)
                if not os.read(fd, 1):  # the pipe closed with no line: it exited
                    log.warning("gateway process %d exited as it started (status %s)",
                                process.pid, process.wait())
        for process in waiting.values():
            log.warning("gateway process %d not set up after %gs; serving without it until "
                        "it is", process.pid, timeout_s)
        self._close_ready_pipes()

    def go(self) -> None:
        """Every process starts serving (those still starting, as soon as they are set up)."""
        if self.go_pipe is not None:
            os.close(self.go_pipe)
            self.go_pipe = None

    def stop(self) -> None:
        self._close_ready_pipes()
        self.go()  # one still waiting to serve stops as it is told to
        for process in self.processes:
            process.terminate()
        for process in self.processes:
            try:
                process.wait(timeout=HTTP_SHUTDOWN_S + STOP_MARGIN_S)
            except subprocess.TimeoutExpired:
                log.warning("gateway process %d did not stop in time: killed", process.pid)
                process.kill()
                process.wait()

    def _close_ready_pipes(self) -> None:
        for fd in self.ready_pipes:
            os.close(fd)
        self.ready_pipes = []

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
    go, started_go = os.pipe()
    command += ["--go-fd", str(go)]
    started = GatewayProcesses([], [], started_go)
    try:
        for _ in range(count):
            ready, told = os.pipe()
            started.ready_pipes.append(ready)
            try:
                started.processes.append(subprocess.Popen(
                    [*command, "--ready-fd", str(told)], env=env, pass_fds=(*fds, go, told),
                    stdin=subprocess.DEVNULL, start_new_session=True,
                    preexec_fn=dies_with(os.getpid())))
            finally:
                os.close(told)
    except OSError:
        os.close(go)
        started.stop()
        raise
    os.close(go)
    log.info("%d more gateway process(es) on the same port: pid %s", count,
             ", ".join(map(str, started.pids)))
    return started


def run_gateway_process(settings: Settings, fds: list[int], ready_fd: int, go_fd: int) -> int:
    """A gateway process's life: set up, say so on ``ready_fd``, serve the app on the
    inherited sockets once ``go_fd`` closes (``GatewayProcesses.go``), until SIGTERM."""
    sockets = [socket.socket(fileno=fd) for fd in fds]
    assert settings.redis_url is not None, "serve gives its gateway processes its Redis"
    return asyncio.run(_serve(create_app(settings, settings.redis_url), sockets, settings,
                              ready_fd, go_fd))


async def _serve(app: web.Application, sockets: list[socket.socket], settings: Settings,
                 ready_fd: int, go_fd: int) -> int:
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stopping.set)
    runner = make_runner(app, settings)
    await runner.setup()
    with contextlib.suppress(OSError):  # serve stopped waiting (it gave up, or is stopping)
        os.write(ready_fd, b"\n")
    os.close(ready_fd)
    await asyncio.to_thread(os.read, go_fd, 1)  # returns when serve closes its end
    os.close(go_fd)
    if not stopping.is_set():
        for sock in sockets:
            await web.SockSite(runner, sock).start()
        await stopping.wait()
    await runner.cleanup()
    return 0
