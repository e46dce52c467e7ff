"""``create_app(settings, redis_url)``: the single way to build the gateway's aiohttp app."""

from __future__ import annotations

from aiohttp import web

from sparkgate.gateway.auth import auth_middleware
from sparkgate.gateway.browsers import browser_middleware, cors_headers
from sparkgate.gateway.errors import error_middleware, path_middleware, unexpected_middleware
from sparkgate.gateway.memory import trim_after_big_bodies
from sparkgate.gateway.metrics import METRICS, GatewayMetrics, metrics_ctx, metrics_middleware
from sparkgate.gateway.resources import (
    REDIS_URL,
    SETTINGS,
    database_ctx,
    executor_ctx,
    redis_ctx,
)
from sparkgate.gateway.routes import (
    artifacts,
    contexts,
    docs,
    events,
    functions,
    index,
    jobs,
    metrics,
    models,
    schedules,
    stats,
    status,
    ui,
    webhooks,
    workers,
)
from sparkgate.gateway.routing import Route, add_routes
from sparkgate.jobs.settings import Settings

#: Every route the gateway serves, each declared once in its routes module (gateway/routing.py);
#: in this order in the OpenAPI document.
ENDPOINTS: tuple[Route, ...] = (
    *functions.endpoints, *jobs.endpoints, *contexts.endpoints, *workers.endpoints,
    *artifacts.endpoints, *models.endpoints, *schedules.endpoints, *webhooks.endpoints,
    *status.endpoints, *stats.endpoints, *metrics.endpoints, *index.endpoints,
    *events.endpoints, *ui.endpoints, *docs.endpoints,
)


def create_app(settings: Settings, redis_url: str) -> web.Application:
    gateway_metrics = GatewayMetrics.for_this_process()
    # Uploads are checked against their own limit as they stream; this only caps aiohttp.
    app = web.Application(
        # metrics outermost, so that it counts every answer as sent; auth after
        # error_middleware, so its 401/403 take the common error shape; browsers before auth,
        # since a CORS preflight carries no credentials.
        middlewares=[metrics_middleware(gateway_metrics.process), unexpected_middleware,
                     error_middleware, browser_middleware(settings), auth_middleware(settings),
                     path_middleware],
        client_max_size=max(settings.max_body_bytes, settings.max_artifact_bytes) + 65536,
        # Bodies are decoded by gateway/content_coding.py, which refuses bad streams with 400.
        handler_args={"auto_decompress": False},
    )
    app[SETTINGS] = settings
    app[REDIS_URL] = redis_url
    app[METRICS] = gateway_metrics
    app.cleanup_ctx.extend([executor_ctx, database_ctx, redis_ctx, metrics_ctx])
    app.on_response_prepare.append(cors_headers(settings))
    app.on_response_prepare.append(trim_after_big_bodies())
    app.on_startup.append(status.read_installation)
    app.on_shutdown.append(events.end_streams)
    add_routes(app, ENDPOINTS)
    return app

