"""Redis commands on the hot path, packed by hiredis and sent on a connection of the client's
pool: what a redis-py ``Pipeline`` does, without its per-argument work in Python.

A pipeline encodes each argument of each command in Python before hiredis packs it: a job's
enqueue and its two events are about 50 arguments, and that encoding, with the pipeline's reply
bookkeeping, was about a fifth of a submit's CPU (in process, SQLite: 1,214-1,256 µs a submit
through a ``Pipeline``, 956-1,023 µs packed here). Commands are still queued on a
``Pipeline`` by the code that declares them (``JobQueue.enqueue``, ``add_events``); only the
sending is done here.

hiredis packs ``str`` (UTF-8), ``bytes``, ``int`` and ``float`` arguments, which is all these
commands carry.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import hiredis
from redis import Redis
from redis.client import Pipeline
from redis.exceptions import ResponseError

Command = tuple[Any, ...]


def queued(pipe: Pipeline) -> list[Command]:
    """The commands queued on ``pipe`` (which is then never executed)."""
    return [args for args, _options in pipe.command_stack]


def packed(commands: Sequence[Command]) -> list[bytes]:
    """``commands`` in Redis's protocol, for ``Connection.send_packed_command``."""
    return [b"".join(hiredis.pack_command(command) for command in commands)]


def transaction(redis: Redis, commands: Sequence[Command]) -> list[Any]:
    """Run ``commands`` in one MULTI ... EXEC: one write, their replies read in one wait.

    As a redis-py transaction pipeline: the connection's retry policy applies to a lost
    connection (it is dropped and the whole transaction sent again on a new one), and a command
    that Redis refuses raises its ``ResponseError`` once every reply is read, so the connection
    goes back to the pool clean. Returns EXEC's replies."""
    payload = packed([("MULTI",), *commands, ("EXEC",)])
    pool = redis.connection_pool
    conn = pool.get_connection()
    try:
        return conn.retry.call_with_retry(lambda: _exchange(conn, payload, len(commands)),
                                          lambda _error: conn.disconnect())
    except ResponseError:
        raise
    except BaseException:
        conn.disconnect()  # replies may be half read: it cannot be reused as is
        raise
    finally:
        pool.release(conn)


def _exchange(conn: Any, payload: list[bytes], count: int) -> list[Any]:
    conn.send_packed_command(payload)
    error: ResponseError | None = None
    for _ in range(count + 1):  # MULTI's OK, then QUEUED (or the refusal) for each command
        try:
            conn.read_response()
        except ResponseError as exc:
            error = error or exc
    try:
        replies = conn.read_response()  # EXEC's
    except ResponseError as exc:  # EXECABORT, after a refused command: that one says why
        raise error or exc from None
    if error is not None:
        raise error
    failed = next((r for r in replies if isinstance(r, ResponseError)), None)
    if failed is not None:
        raise failed
    return list(replies)
