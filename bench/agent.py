"""The load generator: a separate process that the runner drives over its stdin/stdout.

Every latency in the table is measured here, with ``time.perf_counter``, never in a server's
process nor on a server's event loop. One agent has one role at a time: HTTP client (aiohttp),
a warm in-process SparkSession (the floor of scenario 1), a Spark Connect client, or an RQ
client. Requests and answers are JSON, one per line:

    {"op": "http", "args": {...}}   ->   {"ok": true, "result": {...}}
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
import traceback
from typing import Any

import aiohttp

SPARK_QUERY = "sum(id) AS s"  # the query of scenario 1, here and in the deployed function


class Agent:
    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.spark: Any = None

    # -- HTTP --------------------------------------------------------------------------------

    def http(self, method: str, url: str, count: int, concurrency: int = 1, body: Any = None,
             warmup: int = 0, timeout_s: float = 600) -> dict[str, Any]:
        """``count`` requests from ``concurrency`` clients (one keep-alive connection each):
        the latency of each, the wall time of all, and the answers' statuses."""
        return self.loop.run_until_complete(
            self._http(method, url, count, concurrency, body, warmup, timeout_s))

    async def _http(self, method, url, count, concurrency, body, warmup, timeout_s):
        connector = aiohttp.TCPConnector(limit=0, force_close=False)
        timeout = aiohttp.ClientTimeout(total=timeout_s)
        payload = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": "application/json"}
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
            if warmup:
                await _hammer(session, method, url, payload, headers, warmup,
                              min(concurrency, warmup))
            started = time.perf_counter()
            latencies, statuses, errors = await _hammer(session, method, url, payload, headers,
                                                        count, concurrency)
            wall = time.perf_counter() - started
        return {"latencies_ms": latencies, "wall_s": wall, "statuses": statuses,
                "errors": errors[:3], "error_count": len(errors)}

    def e2e(self, base: str, function: str, count: int, concurrency: int,
            body: Any = None, timeout_s: float = 600) -> dict[str, Any]:
        """Submit ``count`` jobs (async) from ``concurrency`` clients, then poll the API until
        none of ``function``'s jobs is queued or started: submit and end-to-end wall times."""
        return self.loop.run_until_complete(
            self._e2e(base, function, count, concurrency, body, timeout_s))

    async def _e2e(self, base, function, count, concurrency, body, timeout_s):
        url = f"{base}/v2/api/functions/{function}/jobs"
        pending = (f"{base}/v2/api/jobs?function={function}&status=queued&status=started"
                   f"&limit=0&paginate=true")
        failed = f"{base}/v2/api/jobs?function={function}&status=failed&limit=0&paginate=true"
        payload = json.dumps(body if body is not None else {}).encode()
        headers = {"Content-Type": "application/json"}
        timeout = aiohttp.ClientTimeout(total=timeout_s)
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0),
                                         timeout=timeout) as session:
            started = time.perf_counter()
            latencies, statuses, errors = await _hammer(session, "POST", url, payload, headers,
                                                        count, concurrency)
            submitted = time.perf_counter()
            deadline = submitted + timeout_s
            while time.perf_counter() < deadline:
                async with session.get(pending) as response:
                    left = (await response.json())["total"]
                if left == 0:
                    break
                await asyncio.sleep(0.02)
            ended = time.perf_counter()
            async with session.get(failed) as response:
                failures = (await response.json())["total"]
        return {"latencies_ms": latencies, "statuses": statuses, "errors": errors[:3],
                "error_count": len(errors), "submit_wall_s": submitted - started,
                "e2e_wall_s": ended - started, "left": left, "failed": failures}

    # -- bare RQ (scenario 4's baseline) -----------------------------------------------------

    def rq_e2e(self, redis_url: str, queue: str, count: int,
               timeout_s: float = 600) -> dict[str, Any]:
        """Enqueue ``count`` no-op jobs on an RQ queue that a stock SimpleWorker serves, and
        wait until all are in its finished registry."""
        from redis import Redis
        from rq import Queue
        from rq.registry import FailedJobRegistry, FinishedJobRegistry

        redis = Redis.from_url(redis_url)
        q = Queue(queue, connection=redis)
        finished = FinishedJobRegistry(queue=q)
        failed = FailedJobRegistry(queue=q)
        before = finished.count
        started = time.perf_counter()
        for n in range(count):
            q.enqueue("bench.rq_jobs.noop", n)
        enqueued = time.perf_counter()
        deadline = started + timeout_s
        while finished.count - before < count and time.perf_counter() < deadline:
            if failed.count:
                break
            time.sleep(0.02)
        ended = time.perf_counter()
        return {"enqueue_wall_s": enqueued - started, "e2e_wall_s": ended - started,
                "finished": finished.count - before, "failed": failed.count}

    # -- Spark: in process (the floor) and through Spark Connect -----------------------------

    def spark_init(self, conf: dict[str, str]) -> dict[str, Any]:
        from pyspark.sql import SparkSession

        started = time.perf_counter()
        builder = SparkSession.builder.appName("bench-in-process")
        for key, value in conf.items():
            builder = builder.config(key, value)
        self.spark = builder.getOrCreate()
        return {"start_s": time.perf_counter() - started}

    def connect_init(self, url: str) -> dict[str, Any]:
        from pyspark.sql import SparkSession

        started = time.perf_counter()
        self.spark = SparkSession.builder.remote(url).getOrCreate()
        return {"start_s": time.perf_counter() - started}

    def spark_query(self, n: int, count: int) -> dict[str, Any]:
        latencies = []
        value = None
        for _ in range(count):
            started = time.perf_counter()
            value = self.spark.range(n).selectExpr(SPARK_QUERY).first()["s"]
            latencies.append((time.perf_counter() - started) * 1000)
        return {"latencies_ms": latencies, "value": value}

    def spark_stop(self) -> dict[str, Any]:
        if self.spark is not None:
            self.spark.stop()
            self.spark = None
        return {}


async def _hammer(session, method, url, payload, headers, count, concurrency):
    """``count`` requests spread over ``concurrency`` concurrent clients."""
    latencies: list[float] = []
    statuses: dict[str, int] = {}
    errors: list[str] = []
    remaining = [count]

    async def client() -> None:
        while remaining[0] > 0:
            remaining[0] -= 1
            started = time.perf_counter()
            try:
                async with session.request(method, url, data=payload, headers=headers) as resp:
                    text = await resp.read()
                    status = resp.status
            except Exception as exc:  # a refused or dropped connection is a result too
                errors.append(f"{type(exc).__name__}: {exc}")
                continue
            latencies.append((time.perf_counter() - started) * 1000)
            statuses[str(status)] = statuses.get(str(status), 0) + 1
            if status >= 400 and len(errors) < 3:
                errors.append(f"HTTP {status}: {text[:300]!r}")

    await asyncio.gather(*(client() for _ in range(max(1, concurrency))))
    return latencies, statuses, errors


def main() -> None:
    # Answers go to the original stdout; anything else that prints (Spark, py4j) to stderr.
    answers = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    agent = Agent()
    for line in sys.stdin:
        request = json.loads(line)
        try:
            result = getattr(agent, request["op"])(**request.get("args", {}))
            answer = {"ok": True, "result": result}
        except Exception:
            answer = {"ok": False, "error": traceback.format_exc()}
        answers.write(json.dumps(answer) + "\n")


if __name__ == "__main__":
    main()
