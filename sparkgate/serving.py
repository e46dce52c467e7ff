"""``sparkgate serve``: the gateway, its supervisor and, by default, embedded Redis and SQLite.

One ``serve`` per port and per data folder: both are claimed before anything starts (see
sparkgate/claims.py). Nothing it starts outlives it: the embedded Redis is stopped (and saves)
on the way out, and gets SIGKILL from the kernel if ``serve`` dies first; workers watch
``serve`` and stop at once when it is gone; each worker's temp files live in a scratch folder
that goes with it.

The first SIGINT/SIGTERM stops gracefully (running jobs get ``worker_stop_grace_s``) and says
so; a second one stops at once (running jobs fail), still ending every child. One that comes
while ``serve`` is still starting stops what had started (KeyboardInterrupt, or
StoppedWhileStarting for SIGTERM) and ends it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

from aiohttp import web
from redis import Redis
from redis.exceptions import RedisError
from sqlalchemy import Engine, make_url
from sqlalchemy.exc import DBAPIError

from sparkgate import shared_metrics
from sparkgate.claims import data_dir_held, listen
from sparkgate.embedded import deploy_examples, start_embedded_redis
from sparkgate.gateway.app import create_app
from sparkgate.gateway.mqtt import MqttInterface
from sparkgate.gateway_processes import (
    HTTP_SHUTDOWN_S,
    GatewayProcesses,
    make_runner,
    start_gateway_processes,
)
from sparkgate.jobs.catalog import Catalog
from sparkgate.jobs.contexts import DEFAULT_CONTEXT
from sparkgate.jobs.db import make_engine
from sparkgate.jobs.keys import KeyStore
from sparkgate.jobs.migrate import prepare_database
from sparkgate.jobs.queue import JobQueue
from sparkgate.jobs.reconciler import Reconciler
from sparkgate.jobs.result_cache import ResultCache
from sparkgate.jobs.scheduler import Scheduler
from sparkgate.jobs.schedules import ScheduleBook
from sparkgate.jobs.settings import Settings
from sparkgate.jobs.store import Store
from sparkgate.jobs.webhooks import WebhookBook
from sparkgate.jobs.worker_registry import WorkerRegistry
from sparkgate.webhook_sender import WebhookSender
from sparkgate.workers.engines.spark import check_java
from sparkgate.workers.scratch import sweep_scratch
from sparkgate.workers.supervisor import Supervisor

log = logging.getLogger("sparkgate.serve")

# How long the first signal's message may wait for the count of running jobs.
COUNT_TIMEOUT_S = 2.0


class StoppedWhileStarting(Exception):
    """SIGTERM came before serve's loop took its signals over."""


def _stop_while_starting(signum: int, frame: object) -> None:
    # Raised where the main thread is, so what had started is stopped on the way out, as
    # Ctrl-C's KeyboardInterrupt does: the embedded Redis saves, gateway processes and workers
    # are told to stop. A second one ends serve at once.
    signal.signal(signum, signal.SIG_DFL)
    raise StoppedWhileStarting


def run_server(settings: Settings, host: str, port: int, config_path: Path | None,
               first_key: bool = False) -> int:
    """Serve until stopped; the exit status: 0 after a graceful stop, 128 + the signal's
    number after a second signal stopped it at once. ``first_key``: with authentication on and
    no active key, make an admin key and log its token (``_first_admin_key``).
    Raises StoppedWhileStarting (or KeyboardInterrupt) for a signal before it serves."""
    signal.signal(signal.SIGTERM, _stop_while_starting)  # until ``_serve`` handles it
    if settings.start_workers and settings.context.engine == "spark":
        # Before anything starts: a missing Java is a message, not a trace. (Other contexts'
        # spark workers say it too, as their failure; python ones need no Java.)
        check_java()
    sockets = listen(host, port)
    with contextlib.ExitStack() as stack:
        for sock in sockets:
            stack.callback(sock.close)
        stack.enter_context(data_dir_held(settings.data_dir))
        sweep_scratch(settings.data_dir)  # workers of a killed serve that were killed too
        shared_metrics.reset(settings.data_dir)
        redis_url = settings.redis_url
        if settings.embedded_redis:
            embedded = start_embedded_redis(settings.data_dir)
            stack.callback(embedded.stop)
            redis_url = embedded.url
        assert redis_url is not None
        database_url = settings.resolved_database_url
        prepare_database(database_url)
        engine = make_engine(database_url)
        stack.callback(engine.dispose)
        if first_key and settings.auth_enabled:
            _first_admin_key(KeyStore(engine))
        catalog = Catalog(engine, settings.context)
        if settings.deploy_examples:
            deployed = deploy_examples(catalog)
            log.info("example functions deployed: %s", ", ".join(deployed))
            _purge_cached_results(redis_url, settings, deployed)
        background = _Background.start(settings, redis_url, config_path, engine, catalog)
        stack.push(background.unwind)
        if settings.gateway_processes > 1:
            background.gateways = start_gateway_processes(
                settings.gateway_processes - 1, sockets, settings, redis_url, config_path)
        app = create_app(settings, redis_url)
        if background.gateways is not None:
            background.gateways.wait_ready()
        return asyncio.run(_serve(app, sockets, background, settings,
                                  make_url(database_url).render_as_string()))


def _first_admin_key(keys: KeyStore) -> None:
    """A first admin key, when there is none: a container started with its defaults is usable
    at once (its log holds the token) and never open. Logged, not printed: the log is where a
    container's operator looks, and only the token's holder can use it."""
    if keys.count_active():
        return
    name = f"admin-{datetime.now(UTC):%Y%m%d-%H%M%S}"
    made = keys.create(name, "admin")
    log.warning("authentication is on and there was no API key: created the admin key %r. Its "
                "token, shown only now (send it as Authorization: Bearer <token>):\n\n    %s\n\n"
                "Make keys of your own (sparkgate keys create) and revoke this one "
                "(sparkgate keys revoke %s).", name, made.token, name)


def _purge_cached_results(redis_url: str, settings: Settings, functions: list[str]) -> None:
    """Results cached for the examples' earlier code: the API purges them when it changes a
    function, and this deploy does not go through the API. Redis down: the cache is down too
    (a miss), and its entries expire with their time."""
    redis = Redis.from_url(redis_url)
    try:
        ResultCache(redis, settings.result_cache_max_bytes).purge(*functions)
    except RedisError as exc:
        log.warning("cached results of the examples not purged: %s", exc)
    finally:
        redis.close()


async def _serve(app: web.Application, sockets: list[socket.socket], background: _Background,
                 settings: Settings, database: str) -> int:
    signals: asyncio.Queue[int] = asyncio.Queue()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, signals.put_nowait, signum)
    runner = make_runner(app, settings)
    await runner.setup()
    if background.gateways is not None:
        background.gateways.go()
    for sock in sockets:
        await web.SockSite(runner, sock).start()
    host, port = sockets[0].getsockname()[:2]
    log.info("sparkgate on http://%s:%d (database: %s)", _url_host(host), port, database)
    first = await signals.get()
    log.warning("%s", await _stopping_message(first, background, settings))
    return await _stop(runner, background, signals)


async def _stop(runner: web.AppRunner, background: _Background,
                signals: asyncio.Queue[int]) -> int:
    """The HTTP server and the background (workers above all) stop side by side, so a sync
    request can still get the result of a job that the drain lets finish."""
    # Not the default executor: the app's cleanup shuts that down, cancelling what it runs.
    with ThreadPoolExecutor(1, thread_name_prefix="stop") as stopper:
        http = asyncio.ensure_future(runner.cleanup())
        rest = asyncio.get_running_loop().run_in_executor(stopper, background.stop)
        second = asyncio.ensure_future(signals.get())
        while not (http.done() and rest.done()):
            await asyncio.wait({task for task in (http, rest, second) if not task.done()},
                               return_when=asyncio.FIRST_COMPLETED)
            if second.done():
                return await _stop_now(second.result(), http, rest, background)
        second.cancel()
        http.result()
        rest.result()
        return 0


async def _stop_now(signum: int, http: asyncio.Future, rest: asyncio.Future,
                    background: _Background) -> int:
    log.warning("stopping now (a second %s): running jobs fail; ending the workers and "
                "Redis", signal.Signals(signum).name)
    background.stop_now()
    http.cancel()  # requests still in progress end now
    await asyncio.gather(http, rest, return_exceptions=True)
    return 128 + signum


async def _stopping_message(signum: int, background: _Background, settings: Settings) -> str:
    again = "press Ctrl-C again (or send SIGTERM again) to stop now"
    name = signal.Signals(signum).name
    if background.supervisor is None:
        return f"stopping ({name}): finishing requests in progress (up to " \
               f"{HTTP_SHUTDOWN_S:g}s); {again}"
    try:
        running = await asyncio.wait_for(asyncio.to_thread(background.supervisor.running_jobs),
                                         COUNT_TIMEOUT_S)
    except (RedisError, DBAPIError, TimeoutError):  # the message comes at once regardless
        return (f"stopping ({name}): the workers' running jobs get up to "
                f"{settings.worker_stop_grace_s:g}s to end, then fail; {again}, failing them")
    if not running:
        return f"stopping ({name}): no job is running; stopping the workers; {again}"
    return (f"stopping ({name}): waiting for {running} running job(s) to end, up to "
            f"{settings.worker_stop_grace_s:g}s (still running then, they fail); {again}, "
            "failing them")


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


class _Background:
    """What ``serve`` runs beside its HTTP server: the reconciler, the scheduler, the webhook
    sender, the worker supervisor and the MQTT interface, each in its thread, and its other
    gateway processes."""

    def __init__(self) -> None:
        self.loops_stop = threading.Event()
        self.threads: list[threading.Thread] = []
        self.supervisor: Supervisor | None = None
        self.mqtt: MqttInterface | None = None
        self.gateways: GatewayProcesses | None = None
        self._stopped = threading.Lock()

    @classmethod
    def start(cls, settings: Settings, redis_url: str, config_path: Path | None,
              engine: Engine, catalog: Catalog) -> _Background:
        background = cls()
        if settings.start_workers:
            background.supervisor = Supervisor.for_settings(settings, redis_url, config_path,
                                                            warm=(DEFAULT_CONTEXT,))
            background._run(background.supervisor.run, "supervisor")
        # Every gateway runs one; the lease in Redis lets one act at a time.
        redis = Redis.from_url(redis_url, socket_timeout=30)
        reconciler = Reconciler(Store(engine), catalog, JobQueue(redis),
                                WorkerRegistry(redis, settings.worker_ttl_s), redis)
        background._run(lambda: reconciler.run(background.loops_stop), "reconciler")
        # Every gateway runs one too, with no lease: a tick's job is unique in the database.
        scheduler = Scheduler(ScheduleBook(engine, catalog), catalog, Store(engine),
                              JobQueue(redis), round(settings.schedule_grace_s * 1000))
        background._run(lambda: scheduler.run(background.loops_stop), "scheduler")
        sender = WebhookSender(WebhookBook(engine), Store(engine), settings)
        background._run(lambda: sender.run(background.loops_stop), "webhooks")
        if settings.mqtt_url:
            background.mqtt = MqttInterface.for_settings(settings, redis_url, catalog,
                                                         Store(engine)).start()
        return background

    def _run(self, target: Callable[[], None], name: str) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        self.threads.append(thread)

    def stop(self) -> None:
        """Stop everything, workers drained; a second call (an error on the way) is a no-op."""
        if not self._stopped.acquire(blocking=False):
            return
        # Beside the rest, as serve's own HTTP server stops beside it all.
        gateways = threading.Thread(target=self.gateways.stop, name="gateways-stop") \
            if self.gateways is not None else None
        if gateways is not None:
            gateways.start()
        if self.mqtt is not None:
            self.mqtt.stop()
        self.loops_stop.set()
        if self.supervisor is not None:
            self.supervisor.stopping.set()
        for thread in self.threads:  # a check under way must not start a worker after stop()
            thread.join(timeout=30)
        if self.supervisor is not None:
            self.supervisor.stop()
        if gateways is not None:
            gateways.join()

    def stop_now(self) -> None:
        if self.gateways is not None:
            self.gateways.kill()
        if self.supervisor is not None:
            self.supervisor.stop_now()

    def unwind(self, exc_type: type[BaseException] | None, *_: object) -> bool:
        """As ``serve`` ends: stopped already, or at once if an error or a Ctrl-C while it
        was starting ends it (no job is running yet, and nobody waits for a drain then)."""
        if exc_type is not None:
            self.stop_now()
        self.stop()
        return False


