"""Database engines: SQLite (embedded default) and PostgreSQL, tuned for many small writes."""

from __future__ import annotations

import json
import re
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, cast

import orjson
from sqlalchemy import Connection, Engine, create_engine, event, make_url
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from sparkgate.jobs.driver_sql import DriverStatement, execute


@contextmanager
def writing(engine: Engine) -> Iterator[Connection]:
    """A transaction that will write. On SQLite it starts with BEGIN IMMEDIATE: a deferred
    transaction that reads and then writes fails at once ("database is locked") when another
    writer got in between, whereas IMMEDIATE waits its turn up front (``_begin_writing``)."""
    with engine.connect() as conn:
        conn = conn.execution_options(sparkgate_writes=True)
        with conn.begin():
            yield conn


def dialect_insert(conn: Connection) -> Any:
    """INSERT with ON CONFLICT, which both SQLite and PostgreSQL have (each its own class)."""
    return pg_insert if conn.dialect.name == "postgresql" else sqlite_insert


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def json_text(value: Any) -> str:
    """``value`` as the JSON text the database stores (compact). orjson does it several times
    faster than the json module: megabytes of arguments or results are encoded while the GIL
    is held, so the time is also the time every other thread of the process waits. What orjson
    does not take (integers beyond 64 bits, keys that are not strings) the json module does,
    as before."""
    try:
        return orjson.dumps(value).decode()
    except TypeError:  # orjson.JSONEncodeError is one
        return json.dumps(value, separators=(",", ":"))


def json_value(text: str | bytes) -> Any:
    """What ``json_text`` stored (or the json module before it), read back (as text, or as
    UTF-8 bytes from PostgreSQL's driver)."""
    long_digits = (_LONG_DIGITS.search(text) if isinstance(text, str)
                   else _LONG_DIGITS_BYTES.search(text))
    if long_digits:  # perhaps an integer beyond 64 bits: orjson makes it a float
        return json.loads(text)
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:  # NaN, which the json module once wrote
        return json.loads(text)


_LONG_DIGITS = re.compile("[0-9]{19}")
_LONG_DIGITS_BYTES = re.compile(b"[0-9]{19}")


def make_engine(url: str, pool_size: int = 10) -> Engine:
    """``pool_size``: as many connections as threads that use the engine at once (beyond it,
    connections are opened and closed per use, each a new PostgreSQL backend).

    No pre-ping: it is a round trip on every checkout, for a failure that is detected anyway.
    When the server restarts, the first statement on a stale connection fails (a 503 in the
    gateway, a retry in workers) and SQLAlchemy then discards every connection older than the
    failure, so the next checkouts connect afresh."""
    if make_url(url).get_backend_name() == "sqlite":
        return _sqlite_engine(url)
    return create_engine(url, pool_size=pool_size, max_overflow=max(pool_size, 20),
                         pool_use_lifo=True, json_serializer=json_text,
                         json_deserializer=json_value)


def _sqlite_engine(url: str) -> Engine:
    database = make_url(url).database
    if database and database != ":memory:":
        Path(database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, connect_args={"check_same_thread": False,
                                              "timeout": SQLITE_BUSY_TIMEOUT_S},
                           json_serializer=json_text, json_deserializer=json_value)
    event.listen(engine, "connect", _sqlite_pragmas)
    # pysqlite's legacy transaction handling issues BEGIN only before DML, so a transaction's
    # reads could see another snapshot than its writes; issue BEGIN ourselves instead.
    event.listen(engine, "begin", _sqlite_begin)
    return engine


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    # WAL: the gateway reads while a worker writes; NORMAL sync is durable across process
    # crashes (only a power loss may drop the last commits).
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute(_WAIT_FOR_LOCKS)
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


SQLITE_BUSY_TIMEOUT_S = 30  # how long a statement waits for a lock before it fails
_WAIT_FOR_LOCKS = f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_S * 1000}"
LOCK_POLL_FIRST_S, LOCK_POLL_MAX_S = 0.0002, 0.002

# On the driver's cursor: through exec_driver_sql, SQLAlchemy's execution machinery cost more
# than the BEGIN itself, once per transaction.
_BEGIN, _BEGIN_IMMEDIATE = DriverStatement("BEGIN", ()), DriverStatement("BEGIN IMMEDIATE", ())


def _sqlite_begin(connection: Connection) -> None:
    if connection.get_execution_options().get("sparkgate_writes", False):
        _begin_writing(connection)
    else:
        execute(connection, _BEGIN, {})


def _begin_writing(connection: Connection) -> None:
    """BEGIN IMMEDIATE, waiting for the write lock in steps of 0.2 to 2 ms. SQLite's own busy
    handler sleeps 1, 2, 5, 10, 15, 20, 25 ... ms between tries: with a gateway and workers
    writing at once, a transaction slept milliseconds for a lock freed a fraction of one
    after it first tried (measured: docs/benchmarks.md). Other statements keep SQLite's own
    wait (``busy_timeout``): with WAL and this BEGIN, only a rare one ever waits."""
    sqlite = cast(sqlite3.Connection, connection.connection.driver_connection)
    sqlite.execute("PRAGMA busy_timeout=0")
    try:
        deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_S
        pause_s = LOCK_POLL_FIRST_S
        while time.monotonic() < deadline:
            try:
                sqlite.execute("BEGIN IMMEDIATE")
                return
            except sqlite3.OperationalError as exc:
                if exc.sqlite_errorcode & 0xFF != sqlite3.SQLITE_BUSY:
                    break
            time.sleep(pause_s)
            pause_s = min(pause_s * 2, LOCK_POLL_MAX_S)
        # Once more, through SQLAlchemy: the error it raises is the one callers handle.
        execute(connection, _BEGIN_IMMEDIATE, {})
    finally:
        sqlite.execute(_WAIT_FOR_LOCKS)
