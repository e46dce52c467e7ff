"""The gateway's metrics, in Prometheus's text format through the official client
(prometheus-client): ``GET /metrics`` (gateway/routes/metrics.py) renders the app's registry.

Two kinds, so that a scrape answered by any of ``serve``'s gateway processes is right
(docs/metrics.md):

- **Shared state**, read when scraped (:class:`StateCollector`): jobs by function, context and
  status, their run time and queue wait histograms, webhook deliveries (the database, through
  ``jobs.metrics.StoredTotals``), queue depths and live workers (Redis). Every process reads
  the same rows, so every process answers the same.
- **Per process** (:class:`ProcessMetrics`): HTTP requests by route and status, their
  durations, sync waiters, event streams. Under ``serve``, prometheus-client's multiprocess
  mode adds them up over its gateway processes: each writes its values to a file of its own in
  ``<data_dir>/metrics`` (sparkgate/shared_metrics.py), which a scrape reads, whichever process
  takes it. Elsewhere (one process, tests) they live in the app's registry.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

from aiohttp import web
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
    values,
)
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from prometheus_client.registry import Collector
from redis.exceptions import RedisError
from sqlalchemy.exc import SQLAlchemyError

from sparkgate.gateway.events_hub import EventHub
from sparkgate.gateway.log_throttle import LogThrottle
from sparkgate.gateway.resources import CATALOG, HUB, QUEUE, STORE, WORKERS
from sparkgate.gateway.routing import Handler
from sparkgate.jobs.catalog import Catalog
from sparkgate.jobs.metrics import (
    RUN_BUCKETS_MS,
    WAIT_BUCKETS_MS,
    Group,
    StoredTotals,
    queue_counts,
)
from sparkgate.jobs.queue import JobQueue
from sparkgate.jobs.state import JobStatus
from sparkgate.jobs.worker_registry import WorkerRegistry

log = logging.getLogger("sparkgate.metrics")

#: Prometheus's text format 0.0.4: what every Prometheus and agent reads.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
#: prometheus-client's multiprocess mode's folder (sparkgate/shared_metrics.py sets it).
FOLDER_ENV = "PROMETHEUS_MULTIPROC_DIR"
#: How often a process writes its sync waiters and event streams for the others to read.
SAMPLE_EVERY_S = 1.0
HTTP_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                  30.0, 60.0, 300.0)
#: Route label of a request that matched no route (404, 405): paths are unbounded, a label
#: must not be.
UNMATCHED = "unmatched"
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"})
#: nginx's "client closed request": the client left before its answer (a sync wait given up).
CLIENT_GONE = 499

_FAILURES = LogThrottle(log, every_s=60.0, burst=1)


def shared_folder() -> Path | None:
    """The multiprocess folder, when this process writes its metrics there: prometheus-client
    decides it as it is first imported, from ``PROMETHEUS_MULTIPROC_DIR``."""
    folder = os.environ.get(FOLDER_ENV)
    if folder and values.ValueClass is not values.MutexValue:
        return Path(folder)
    return None


class ProcessMetrics:
    """What each gateway process counts of its own."""

    def __init__(self, registry: CollectorRegistry | None) -> None:
        self.requests = Counter(
            "sparkgate_http_requests", "HTTP requests answered, by route (its template, as "
            "the OpenAPI document has it), method and status", ("route", "method", "status"),
            registry=registry)
        self.durations = Histogram(
            "sparkgate_http_request_duration_seconds", "Time from a request's arrival to "
            "its answer (a sync call waits for its job; an event stream lasts until it ends)",
            ("route", "method"), buckets=HTTP_BUCKETS_S, registry=registry)
        self.sync_waiters = Gauge(
            "sparkgate_sync_waiters", "Requests waiting for a job's end (force=true, ?wait=)",
            registry=registry, multiprocess_mode="livesum")
        self.event_streams = Gauge(
            "sparkgate_event_streams", "Open event streams (WebSockets, SSE)",
            registry=registry, multiprocess_mode="livesum")
        self.processes = Gauge(
            "sparkgate_gateway_processes", "Gateway processes answering on this port",
            registry=registry, multiprocess_mode="livesum")
        self.processes.set(1)
        self._children: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}

    def observe(self, route: str, method: str, status: int, seconds: float) -> None:
        key = (route, method, status)
        children = self._children.get(key)
        if children is None:  # a few hundred at most: routes x methods x statuses
            children = (self.requests.labels(route, method, str(status)),
                        self.durations.labels(route, method))
            self._children[key] = children
        children[0].inc()
        children[1].observe(seconds)

    def sample(self, hub: EventHub) -> None:
        """On the event loop: the hub's counts, as they are now."""
        self.sync_waiters.set(hub.waiting)
        self.event_streams.set(hub.streaming)


def metrics_middleware(metrics: ProcessMetrics,
                       ) -> Callable[..., Awaitable[web.StreamResponse]]:
    @web.middleware
    async def count_requests(request: web.Request, handler: Handler) -> web.StreamResponse:
        """Outermost: counts every answer, the error middlewares' included."""
        began = time.perf_counter()
        status = 500
        try:
            response = await handler(request)
            status = response.status
            return response
        except web.HTTPException as exc:  # a redirect, passed through as raised
            status = exc.status
            raise
        except asyncio.CancelledError:
            status = CLIENT_GONE
            raise
        finally:
            metrics.observe(_route_label(request), _method_label(request.method), status,
                            time.perf_counter() - began)
    return count_requests


def _route_label(request: web.Request) -> str:
    resource = request.match_info.route.resource
    return UNMATCHED if resource is None else resource.canonical


def _method_label(method: str) -> str:
    return method if method in METHODS else "OTHER"


class StateCollector(Collector):
    """The shared state's metrics, read at each scrape (on the blocking executor: it queries
    the database and Redis). A source that cannot be read is left out of that scrape, and
    ``sparkgate_metrics_source_up`` says so."""

    def __init__(self, totals: StoredTotals, catalog: Catalog, queue: JobQueue,
                 workers: WorkerRegistry) -> None:
        self.totals = totals
        self.catalog = catalog
        self.queue = queue
        self.workers = workers

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("sparkgate_metrics_source_up", "1 when this scrape could read "
                               "the source (database, redis); 0: its metrics are left out",
                               labels=["source"])
        took = GaugeMetricFamily("sparkgate_metrics_read_seconds", "How long this scrape "
                                 "took to read each source", labels=["source"])
        contexts: list[str] = []
        try:
            stored = self.totals.read()
            contexts = [c.name for c in self.catalog.list_contexts()]
        except (SQLAlchemyError, OSError) as exc:  # the rest is still worth a scrape
            _FAILURES.log(logging.WARNING, "database", "metrics: the database could not be "
                          "read: %s", exc)
            up.add_metric(["database"], 0)
        else:
            up.add_metric(["database"], 1)
            took.add_metric(["database"], stored.read_s)
            yield from _job_families(stored.jobs)
            yield from _delivery_families(stored.deliveries)
        try:
            queues = queue_counts(self.queue.redis, self.workers, contexts)
        except (RedisError, OSError) as exc:
            _FAILURES.log(logging.WARNING, "redis", "metrics: Redis could not be read: %s", exc)
            up.add_metric(["redis"], 0)
        else:
            up.add_metric(["redis"], 1)
            took.add_metric(["redis"], queues.read_s)
            depth = GaugeMetricFamily("sparkgate_queue_depth", "Jobs waiting in each "
                                      "context's queue (Redis)", labels=["context"])
            for context, n in sorted(queues.depth.items()):
                depth.add_metric([context], n)
            workers = GaugeMetricFamily("sparkgate_workers", "Live workers by context and "
                                        "state (running, draining)", labels=["context", "state"])
            for (context, state), n in sorted(queues.workers.items()):
                workers.add_metric([context, state], n)
            yield depth
            yield workers
        yield up
        yield took


def _job_families(groups: dict[tuple[str, ...], Group]) -> Iterator[Metric]:
    active = GaugeMetricFamily(
        "sparkgate_jobs", "Jobs now queued, started or cancelling, by function and context",
        labels=["function", "context", "status"])
    ended = CounterMetricFamily(
        "sparkgate_jobs_ended", "Jobs that ended, by function, context and final status "
        "(finished, failed, cancelled)", labels=["function", "context", "status"])
    per_function: dict[tuple[str, str], Group] = {}
    for key, group in sorted(groups.items()):
        function, context, status = key
        family = ended if JobStatus(status).terminal else active
        family.add_metric([function, context, status], group.count)
        per_function.setdefault((function, context), Group()).add(group)
    run = HistogramMetricFamily(
        "sparkgate_job_run_seconds", "Run time (end - start) of the jobs that ran and ended",
        labels=["function", "context"])
    wait = HistogramMetricFamily(
        "sparkgate_job_queue_wait_seconds", "Time in the queue (start - create) of the jobs "
        "that started", labels=["function", "context"])
    for (function, context), group in sorted(per_function.items()):
        run.add_metric([function, context], _buckets(group.run, RUN_BUCKETS_MS),
                       group.run_ms / 1000)
        wait.add_metric([function, context], _buckets(group.wait, WAIT_BUCKETS_MS),
                        group.wait_ms / 1000)
    yield from (active, ended, run, wait)


def _buckets(counts: list[int], bounds_ms: tuple[int, ...]) -> list[tuple[str, float]]:
    """Per-bucket counts as Prometheus's cumulative ``le`` buckets, in seconds."""
    cumulative: list[tuple[str, float]] = []
    total = 0
    for bound, n in zip((*(str(b / 1000) for b in bounds_ms), "+Inf"), counts, strict=True):
        total += n
        cumulative.append((bound, total))
    return cumulative


def _delivery_families(groups: dict[tuple[str, ...], Group]) -> Iterator[Metric]:
    ended = CounterMetricFamily(
        "sparkgate_webhook_deliveries", "Webhook deliveries done with: delivered, or failed "
        "(given up)", labels=["status"])
    pending = GaugeMetricFamily("sparkgate_webhook_deliveries_pending",
                                "Webhook deliveries not yet delivered nor given up")
    counts = {status: group.count for (status,), group in groups.items()}
    for status in ("delivered", "failed"):
        ended.add_metric([status], counts.get(status, 0))
    pending.add_metric([], counts.get("pending", 0))
    yield from (ended, pending)


class GatewayMetrics:
    """The app's registry and what feeds it: its process's metrics from the start (the
    middleware counts with them), the shared state's once the database and Redis are set up
    (``metrics_ctx``)."""

    def __init__(self, folder: Path | None) -> None:
        # No <name>_created series: the multiprocess mode has none either (a process-wide
        # switch of prometheus-client's; nothing else in a gateway uses it).
        disable_created_metrics()
        self.folder = folder
        self.registry = CollectorRegistry(auto_describe=False)
        if folder is None:
            self.process = ProcessMetrics(self.registry)
        else:  # values in files, every process's read by the collector
            self.process = ProcessMetrics(None)
            MultiProcessCollector(self.registry, path=str(folder))
        self._lock = threading.Lock()

    @classmethod
    def for_this_process(cls) -> GatewayMetrics:
        return cls(shared_folder())

    def render(self) -> bytes:
        """The text a scrape gets (blocking: run it on the executor); one at a time."""
        with self._lock:
            return generate_latest(self.registry)

    async def sample_forever(self, hub: EventHub) -> None:
        while True:
            self.process.sample(hub)
            await asyncio.sleep(SAMPLE_EVERY_S)


METRICS = web.AppKey("metrics", GatewayMetrics)


async def metrics_ctx(app: web.Application) -> AsyncIterator[None]:
    """After the database and Redis are set up: the shared state's collector; and, with other
    processes reading this one's metrics, its sampled gauges kept fresh."""
    metrics = app[METRICS]
    state = StateCollector(StoredTotals(app[STORE].engine), app[CATALOG], app[QUEUE],
                           app[WORKERS])
    metrics.registry.register(state)
    if metrics.folder is None:
        yield
        metrics.registry.unregister(state)
        return
    task = asyncio.create_task(metrics.sample_forever(app[HUB]), name="sparkgate-metrics")
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    # Its gauges no longer count (its counters do: what it answered was answered).
    mark_process_dead(os.getpid(), str(metrics.folder))
    metrics.registry.unregister(state)
