"""What lives on the app, under typed keys, set up and torn down by ``cleanup_ctx``."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import redis.asyncio as aioredis
from aiohttp import web
from redis import Redis

from sparkgate.gateway.blocking import THREADS, make_executor
from sparkgate.gateway.events_hub import EventHub
from sparkgate.gateway.submissions import Submissions
from sparkgate.jobs.catalog import Catalog
from sparkgate.jobs.db import make_engine
from sparkgate.jobs.queue import JobQueue
from sparkgate.jobs.result_cache import ResultCache
from sparkgate.jobs.settings import Settings
from sparkgate.jobs.store import Store
from sparkgate.jobs.worker_registry import WorkerRegistry

SETTINGS = web.AppKey("settings", Settings)
REDIS_URL = web.AppKey("redis_url", str)
STORE = web.AppKey("store", Store)
CATALOG = web.AppKey("catalog", Catalog)
QUEUE = web.AppKey("queue", JobQueue)
WORKERS = web.AppKey("workers", WorkerRegistry)
AREDIS = web.AppKey("aredis", aioredis.Redis)
HUB = web.AppKey("hub", EventHub)
SUBMISSIONS = web.AppKey("submissions", Submissions)
RESULT_CACHE = web.AppKey("result_cache", ResultCache)
STARTED_MS = web.AppKey("started_ms", int)


async def executor_ctx(app: web.Application) -> AsyncIterator[None]:
    executor = make_executor()
    asyncio.get_running_loop().set_default_executor(executor)
    yield
    executor.shutdown(wait=False, cancel_futures=True)


async def database_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    engine = make_engine(settings.resolved_database_url, pool_size=THREADS)
    app[STORE] = Store(engine)
    app[CATALOG] = Catalog(engine, settings.context)
    yield
    engine.dispose()


async def redis_ctx(app: web.Application) -> AsyncIterator[None]:
    url = app[REDIS_URL]
    # RQ is blocking-only: its client is used on the executor, never on the loop.
    sync_redis = Redis.from_url(url)
    app[QUEUE] = JobQueue(sync_redis)
    app[AREDIS] = aioredis.Redis.from_url(url)
    app[RESULT_CACHE] = ResultCache(sync_redis, app[SETTINGS].result_cache_max_bytes,
                                    app[AREDIS])
    app[SUBMISSIONS] = Submissions(app[CATALOG], app[STORE], app[QUEUE],
                                   app[SETTINGS].max_queued_per_context, app[RESULT_CACHE])
    app[WORKERS] = WorkerRegistry(sync_redis, app[SETTINGS].worker_ttl_s)
    hub = EventHub(app[AREDIS])
    app[HUB] = hub
    await hub.start()
    app[STARTED_MS] = time.time_ns() // 1_000_000
    yield
    await hub.stop()
    await app[AREDIS].aclose()
    sync_redis.close()
