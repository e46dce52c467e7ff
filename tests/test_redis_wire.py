"""jobs/redis_wire.py against the real Redis: a transaction packed by hiredis does what a
redis-py transaction pipeline does, errors and lost connections included."""

from __future__ import annotations

import contextlib
import socket
import threading

import pytest
from redis import Redis
from redis.exceptions import ResponseError

from sparkgate.jobs.redis_wire import queued, transaction


def test_a_transactions_commands_run_together_and_exec_replies_come_back(redis: Redis) -> None:
    redis.delete("wire:list", "wire:hash")
    with redis.pipeline(transaction=False) as pipe:
        pipe.rpush("wire:list", "a", "b")
        pipe.hset("wire:hash", mapping={"text": "é", "raw": b"\x00\xff", "count": -1})
        pipe.llen("wire:list")
        replies = transaction(redis, queued(pipe))
    assert replies == [2, 3, 2]
    assert redis.hgetall("wire:hash") == {b"text": "é".encode(), b"raw": b"\x00\xff",
                                          b"count": b"-1"}


def test_a_refused_command_raises_runs_nothing_and_leaves_the_connection_usable(
        redis: Redis) -> None:
    redis.delete("wire:list")
    connection = redis.client_id()
    with pytest.raises(ResponseError, match="wrong number of arguments"):
        transaction(redis, [("RPUSH", "wire:list", "a"), ("LLEN",)])
    assert redis.exists("wire:list") == 0  # EXECABORT: the RPUSH did not run either
    assert redis.client_id() == connection  # every reply read: back in the pool, not redone
    assert transaction(redis, [("RPUSH", "wire:list", "b")]) == [1]


def test_a_command_failing_inside_exec_raises_its_error(redis: Redis) -> None:
    redis.delete("wire:string", "wire:list")
    redis.set("wire:string", "x")
    with pytest.raises(ResponseError, match="WRONGTYPE"):
        transaction(redis, [("RPUSH", "wire:list", "a"), ("RPUSH", "wire:string", "b")])
    assert redis.lrange("wire:list", 0, -1) == [b"a"]  # Redis ran the others, as EXEC does
    assert redis.ping()


def test_a_connection_the_server_closed_since_its_last_use_is_not_used(
        redis: Redis, redis_url: str) -> None:
    redis.delete("wire:list")
    pool = redis.connection_pool
    conn = pool.get_connection()
    conn.send_command("CLIENT", "ID")
    client_id = conn.read_response()
    pool.release(conn)
    other = Redis.from_url(redis_url)  # a restart, an idle timeout...
    assert other.client_kill_filter(_id=client_id) == 1
    other.close()
    assert transaction(redis, [("RPUSH", "wire:list", "a")]) == [1]


class DroppingProxy:
    """A TCP proxy to Redis that drops a connection as a transaction arrives on it, the first
    ``drops`` times: a Redis restarting under a transaction."""

    def __init__(self, target: tuple[str, int], drops: int) -> None:
        self.target, self.drops = target, drops
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            client, _ = self.server.accept()
            upstream = socket.create_connection(self.target)
            threading.Thread(target=self._pipe, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, client, False), daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket, watch: bool) -> None:
        try:
            while data := source.recv(65536):
                if watch and b"MULTI" in data and self.drops > 0:
                    self.drops -= 1
                    break
                sink.sendall(data)
        except OSError:
            pass
        for end in (source, sink):
            with contextlib.suppress(OSError):
                end.shutdown(socket.SHUT_RDWR)


def test_a_transaction_whose_connection_drops_is_sent_again_on_a_new_one(redis_url: str) -> None:
    kwargs = Redis.from_url(redis_url).connection_pool.connection_kwargs
    proxy = DroppingProxy((kwargs.get("host", "127.0.0.1"), kwargs.get("port", 6379)), drops=1)
    through = Redis(port=proxy.port, db=kwargs.get("db", 0))
    through.delete("wire:list")
    assert transaction(through, [("RPUSH", "wire:list", "a")]) == [1]
    assert through.lrange("wire:list", 0, -1) == [b"a"]  # once: the dropped one never ran
    assert proxy.drops == 0
