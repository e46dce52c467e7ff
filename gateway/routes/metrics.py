"""``/metrics``: the gateway's metrics in Prometheus's text format (gateway/metrics.py says
what they are and how several gateway processes answer alike; docs/metrics.md lists them)."""

from __future__ import annotations

from aiohttp import web

from sparkgate.gateway.blocking import blocking
from sparkgate.gateway.metrics import CONTENT_TYPE, METRICS
from sparkgate.gateway.openapi import ok
from sparkgate.gateway.resources import HUB
from sparkgate.gateway.routing import READ, Endpoints, Op

endpoints = Endpoints()


# Every owner's jobs, counted by function: the read role, as the job listings' (with
# authentication off, open as every route is).
@endpoints.get("/metrics", READ, Op(
    "metrics", "status", "Metrics for Prometheus",
    {"200": ok({"type": "string"}, "Prometheus's text exposition format, version 0.0.4",
               "text/plain")},
    description="Jobs by function, context and status; job run time and queue wait "
                "histograms; queue depth; workers by context and state; webhook deliveries; "
                "HTTP requests by route and status; sync waiters. The same from every gateway "
                "process of a `serve` (docs/metrics.md). A source that cannot be read (the "
                "database, Redis) is left out, and `sparkgate_metrics_source_up` says so.",
    backed=False))
async def metrics(request: web.Request) -> web.Response:
    gateway_metrics = request.app[METRICS]
    gateway_metrics.process.sample(request.app[HUB])
    body = await blocking(gateway_metrics.render)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})
