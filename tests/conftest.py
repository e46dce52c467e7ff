"""Shared fixtures: real PostgreSQL, SQLite, Redis and Spark, as the machine has them.

- Storage tests run twice, on SQLite and on PostgreSQL (``db_url`` is parametrized). Each test
  session gets a PostgreSQL database of its own, migrated once, dropped at the end; tables are
  emptied between tests.
- Redis: database 15 of the local server, flushed before each test.
- Spark: one local SparkSession for the whole test process.
- Missing infrastructure fails the run: a skipped storage test would hide the bugs it is for.
"""

from __future__ import annotations

import dataclasses
import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from redis import Redis
from sqlalchemy import create_engine, delete, text

from sparkgate.jobs import tables
from sparkgate.jobs.catalog import Catalog
from sparkgate.jobs.db import make_engine
from sparkgate.jobs.migrate import upgrade
from sparkgate.jobs.queue import JobQueue
from sparkgate.jobs.settings import ContextDefaults, Settings
from sparkgate.jobs.store import Store

PG_ADMIN_URL = os.environ.get("SGTEST_PG_ADMIN_URL",
                              "postgresql://postgres@127.0.0.1:5432/postgres")
# The suite runs in two pytest-xdist processes (setup.cfg), each with a Redis database of its
# own, since tests flush theirs; the modules that name one (test_e2e 14, test_reconciler 13,
# test_cluster 12, test_mqtt 11) run whole in one process (--dist loadfile).
XDIST_REDIS_DBS = (15, 10)


def _redis_test_url() -> str:
    if url := os.environ.get("SGTEST_REDIS_URL"):
        return url
    worker = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw"))
    if worker >= len(XDIST_REDIS_DBS):
        raise RuntimeError(f"the tests have Redis databases for {len(XDIST_REDIS_DBS)} xdist "
                           "processes: run them with -n 2 at most")
    return f"redis://127.0.0.1:6379/{XDIST_REDIS_DBS[worker]}"


REDIS_TEST_URL = _redis_test_url()
FUNCTIONS_DIR = Path(__file__).parent / "functions"
EXAMPLES_DIR = Path(__file__).parent.parent / "examples"

# Contexts in tests: small, quiet, no UI.
TEST_SPARK_CONF = {
    "spark.master": "local[2]",
    "spark.ui.enabled": "false",
    "spark.ui.showConsoleProgress": "false",
    "spark.sql.shuffle.partitions": "4",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def create_pg_database(prefix: str = "sparkgate_test") -> str:
    """A new, empty PostgreSQL database of this test run; its URL."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = admin.url.set(database=name).render_as_string(hide_password=False)
    admin.dispose()
    return url


def drop_pg_database(url: str) -> None:
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    name = url.rsplit("/", 1)[1]
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """A fresh, migrated PostgreSQL database for this test session."""
    url = create_pg_database()
    upgrade(url)
    yield url
    drop_pg_database(url)


@pytest.fixture(scope="session")
def sqlite_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("sqlite") / "sparkgate.db"
    url = f"sqlite:///{path}"
    upgrade(url)
    return url


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest) -> Iterator[str]:
    url = request.getfixturevalue("pg_url" if request.param == "postgresql" else "sqlite_url")
    engine = create_engine(url)
    _empty(engine)
    yield url
    engine.dispose()


def _empty(engine) -> None:
    with engine.begin() as conn:
        for table in reversed(tables.metadata.sorted_tables):
            conn.execute(delete(table))


@pytest.fixture
def engine(db_url: str):
    engine = make_engine(db_url)
    yield engine
    engine.dispose()


@pytest.fixture
def store(engine) -> Store:
    return Store(engine)


@pytest.fixture
def context_defaults() -> ContextDefaults:
    return ContextDefaults(spark_conf=dict(TEST_SPARK_CONF), max_jobs=2)


@pytest.fixture
def catalog(engine, context_defaults: ContextDefaults) -> Catalog:
    return Catalog(engine, context_defaults)


@pytest.fixture
def redis_url() -> Iterator[str]:
    client = Redis.from_url(REDIS_TEST_URL)
    client.flushdb()
    yield REDIS_TEST_URL
    client.flushdb()
    client.close()


@pytest.fixture
def redis(redis_url: str) -> Iterator[Redis]:
    client = Redis.from_url(redis_url)
    yield client
    client.close()


@pytest.fixture
def queue(redis: Redis) -> JobQueue:
    return JobQueue(redis)


@pytest.fixture
def settings(db_url: str, tmp_path: Path, context_defaults: ContextDefaults) -> Settings:
    return Settings(data_dir=tmp_path / "data", database_url=db_url,
                    redis_url=REDIS_TEST_URL, context=context_defaults)


@pytest.fixture
def make_client(aiohttp_client, settings: Settings, redis_url: str):
    """A test client of an app built from ``settings`` with some fields replaced."""

    async def make(**overrides: Any):
        from sparkgate.gateway.app import create_app

        return await aiohttp_client(
            create_app(dataclasses.replace(settings, **overrides), redis_url))

    return make


@pytest.fixture
async def client(make_client):
    """A test client of the app built from ``settings``."""
    return await make_client()


@pytest.fixture(scope="session")
def spark():
    """The one SparkSession of this test process (FAIR, like a worker's)."""
    from pyspark.sql import SparkSession

    builder = SparkSession.builder.appName("sparkgate-tests").config("spark.scheduler.mode",
                                                                      "FAIR")
    for key, value in TEST_SPARK_CONF.items():
        builder = builder.config(key, value)
    session = builder.getOrCreate()
    yield session
    session.stop()


def function_source(name: str) -> bytes:
    """A test function file from tests/functions/ (or an example), as an artifact's bytes."""
    path = FUNCTIONS_DIR / name
    if not path.exists():
        path = EXAMPLES_DIR / name
    return path.read_bytes()
