"""``sparkgate serve``: the gateway, its supervisor and, by default, embedded Redis and SQLite."""

from __future__ import annotations

import contextlib
import logging
import threading
from pathlib import Path

from aiohttp import web
from redis import Redis
from redis.exceptions import RedisError
from sqlalchemy import make_url

from gateway.app import create_app
from gateway.embedded import deploy_examples, embedded_redis_url, start_embedded_redis
from gateway.mqtt import MqttInterface
from jobs.catalog import DEFAULT_CONTEXT, Catalog
from jobs.db import make_engine
from jobs.errors import ConfigError
from jobs.migrate import current, upgrade
from jobs.queue import JobQueue
from jobs.reconciler import Reconciler
from jobs.settings import Settings
from jobs.store import Store
from jobs.worker_registry import WorkerRegistry
from workers.session import check_java
from workers.supervisor import Supervisor

log = logging.getLogger("sparkgate.serve")


def run_server(settings: Settings, host: str, port: int, config_path: Path | None) -> None:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    if settings.start_workers:
        check_java()  # before anything starts: a missing Java is a message, not a stack trace
    embedded = start_embedded_redis(settings.data_dir) if settings.embedded_redis else None
    redis_url = embedded_redis_url(embedded) if embedded is not None else settings.redis_url
    assert redis_url is not None
    database_url = settings.resolved_database_url
    _prepare_database(database_url)
    engine = make_engine(database_url)
    catalog = Catalog(engine, settings.context)
    if settings.deploy_examples:
        log.info("example functions deployed: %s", ", ".join(deploy_examples(catalog)))
    supervisor = None
    if settings.start_workers:
        supervisor = Supervisor.for_settings(settings, redis_url, config_path,
                                             warm=(DEFAULT_CONTEXT,))
        threading.Thread(target=supervisor.run, name="supervisor", daemon=True).start()
    # Every gateway runs one; the lease in Redis lets one act at a time.
    redis = Redis.from_url(redis_url, socket_timeout=30)
    reconciler = Reconciler(Store(engine), catalog, JobQueue(redis),
                            WorkerRegistry(redis, settings.worker_ttl_s), redis)
    stop_reconciler = threading.Event()
    reconciling = threading.Thread(target=reconciler.run, args=(stop_reconciler,),
                                   name="reconciler", daemon=True)
    reconciling.start()
    mqtt = (MqttInterface.for_settings(settings, redis_url, catalog, Store(engine)).start()
            if settings.mqtt_url else None)
    try:
        log.info("sparkgate on http://%s:%d (database: %s)", host, port,
                 make_url(database_url).render_as_string())
        web.run_app(create_app(settings, redis_url), host=host, port=port, print=None,
                    handle_signals=True, shutdown_timeout=10,
                    # A client that hangs up ends its request: no waiter outlives its caller.
                    handler_cancellation=True)
    finally:
        if mqtt is not None:
            mqtt.stop()
        stop_reconciler.set()
        reconciling.join(timeout=30)
        if supervisor is not None:
            supervisor.stop()
        engine.dispose()
        if embedded is not None:
            _stop_embedded_redis(embedded)


def _stop_embedded_redis(server: Redis) -> None:
    # Redis closes the connection as it shuts down; that is the success case.
    with contextlib.suppress(RedisError):
        server.shutdown(save=True)


def _prepare_database(url: str) -> None:
    """Migrate an embedded SQLite in place; a server database must be migrated on purpose."""
    if make_url(url).get_backend_name() == "sqlite":
        upgrade(url)
        return
    from alembic.script import ScriptDirectory

    from jobs.migrate import alembic_config

    head = ScriptDirectory.from_config(alembic_config(url)).get_current_head()
    if current(url) != head:
        raise ConfigError(
            f"database {make_url(url).render_as_string()} is at revision {current(url)}, "
            f"not {head}: run `sparkgate db upgrade` first"
        )
