"""``/v2/api/stats``: what the dashboard's overview draws — jobs per minute by status and run-time
percentiles over a recent window, aggregated by the database.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from sparkgate.gateway.auth import identity
from sparkgate.gateway.blocking import blocking
from sparkgate.gateway.openapi import STATS_DURATION, ok, query_param, ref, use
from sparkgate.gateway.resources import STORE
from sparkgate.gateway.routing import READ, Endpoints, Op
from sparkgate.jobs.db import now_ms
from sparkgate.jobs.durations import parse_duration
from sparkgate.jobs.errors import BadRequest

endpoints = Endpoints()

DEFAULT_WINDOW_MS = 3_600_000
MAX_WINDOW_MS = 24 * 3_600_000
MIN_BUCKET_MS = 1000
MAX_BUCKETS = 1440
# A job that ended in the window counts if it was created at most this long before the window:
# every read stays a bounded range of the (create_time) index.
RUN_LOOKBACK_MS = 24 * 3_600_000
ENDED = ("finished", "failed", "cancelled")


@endpoints.get("/v2/api/stats", READ, Op(
    "stats", "status", "Jobs per bucket over a window",
    {"200": ok(ref("Stats")), "400": use("BadRequest")}, parameters=[
        query_param("window", STATS_DURATION, "how far back: 1s to 24h (default 1h)"),
        query_param("bucket", STATS_DURATION, "bucket size: at least 1s, at most the window, "
                                              "at most 1440 buckets (default 1min)"),
    ]))
async def stats(request: web.Request) -> web.Response:
    window_ms = _duration_ms(request, "window", DEFAULT_WINDOW_MS, MIN_BUCKET_MS, MAX_WINDOW_MS)
    bucket_ms = _duration_ms(request, "bucket", _default_bucket_ms(window_ms), MIN_BUCKET_MS,
                             window_ms)
    if -(-window_ms // bucket_ms) > MAX_BUCKETS:
        raise BadRequest(
            f"query parameter bucket: at most {MAX_BUCKETS} buckets per window; "
            f"a window of {window_ms} ms needs buckets of {-(-window_ms // MAX_BUCKETS)} ms or "
            f"more, got {bucket_ms} ms",
            {"field": "bucket", "expected": f"at least {-(-window_ms // MAX_BUCKETS)} ms",
             "got": request.query.get("bucket")},
        )
    # Buckets sit on whole multiples of their size (whole minutes by default); the last one is
    # the current, partial one.
    until = (now_ms() // bucket_ms + 1) * bucket_ms
    count = -(-window_ms // bucket_ms)
    since = until - count * bucket_ms
    # A caller who sees only its own jobs gets the charts of its own jobs.
    data = await blocking(request.app[STORE].job_stats, since, until, bucket_ms, RUN_LOOKBACK_MS,
                          identity(request).owner_scope)
    return web.json_response(_body(data, since, until, bucket_ms, count))


def _body(data: dict[str, Any], since: int, until: int, bucket_ms: int,
          count: int) -> dict[str, Any]:
    buckets = []
    for i in range(count):
        ended = data["ended"].get(i, {})
        runs = data["runTimes"].get(i, {"count": 0, "p50": None, "p95": None})
        buckets.append({
            "time": since + i * bucket_ms,
            "submitted": data["submitted"].get(i, 0),
            **{status: ended.get(status, 0) for status in ENDED},
            "runTime": runs,
        })
    totals = {key: sum(b[key] for b in buckets) for key in ("submitted", *ENDED)}
    return {
        "from": since,
        "to": until,
        "windowMs": until - since,
        "bucketMs": bucket_ms,
        "runLookbackMs": RUN_LOOKBACK_MS,
        "buckets": buckets,
        "totals": totals,
        "runTime": data["runTime"],
        "active": {s: data["active"].get(s, 0) for s in ("queued", "started", "cancelling")},
    }


def _default_bucket_ms(window_ms: int) -> int:
    """A minute up to two hours of window; beyond, whole minutes making about 120 buckets."""
    if window_ms <= 2 * 3_600_000:
        return min(60_000, window_ms)
    return -(-window_ms // 120 // 60_000) * 60_000


def _duration_ms(request: web.Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    try:
        seconds = parse_duration(raw, f"query parameter {name}")
    except ValueError:
        seconds = -1.0
    value = -1 if seconds is None else round(seconds * 1000)
    if not low <= value <= high:
        raise BadRequest(
            f"query parameter {name}: expected a duration from {low} ms to {high} ms "
            f"(like 15min, 1h, 24h), got {raw!r}",
            {"field": name, "expected": f"a duration from {low} to {high} ms", "got": raw},
        )
    return value
