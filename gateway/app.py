"""``create_app(settings, redis_url)``: the single way to build the gateway's aiohttp app."""

from __future__ import annotations

from aiohttp import web

from sparkgate.gateway.auth import auth_middleware
from sparkgate.gateway.browsers import browser_middleware, cors_headers
from sparkgate.gateway.errors import error_middleware, path_middleware, unexpected_middleware
from sparkgate.gateway.memory import trim_after_big_bodies
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
    jobs,
    stats,
    status,
    ui,
    workers,
)
from sparkgate.jobs.settings import Settings

ROUTE_TABLES = (artifacts.routes, contexts.routes, functions.routes, jobs.routes,
                status.routes, workers.routes, stats.routes, ui.routes, events.routes,
                docs.routes)


def create_app(settings: Settings, redis_url: str) -> web.Application:
    # Uploads are checked against their own limit as they stream; this only caps aiohttp.
    app = web.Application(
        # auth after error_middleware, so its 401/403 take the common error shape; browsers
        # before auth, since a CORS preflight carries no credentials.
        middlewares=[unexpected_middleware, error_middleware, browser_middleware(settings),
                     auth_middleware(settings), path_middleware],
        client_max_size=max(settings.max_body_bytes, settings.max_artifact_bytes) + 65536,
        # Bodies are decoded by gateway/content_coding.py, which refuses bad streams with 400.
        handler_args={"auto_decompress": False},
    )
    app[SETTINGS] = settings
    app[REDIS_URL] = redis_url
    app.cleanup_ctx.extend([executor_ctx, database_ctx, redis_ctx])
    app.on_response_prepare.append(cors_headers(settings))
    app.on_response_prepare.append(trim_after_big_bodies())
    app.on_startup.append(status.read_installation)
    app.on_shutdown.append(events.end_streams)
    for table in ROUTE_TABLES:
        app.router.add_routes(table)
    app.router.add_get("/", _index)
    return app


async def _index(request: web.Request) -> web.Response:
    """A browser goes to the dashboard; an API client gets links to the main resources."""
    if "text/html" in request.headers.get("Accept", ""):
        raise web.HTTPFound("/ui/")
    return web.json_response({
        "name": "sparkgate",
        "ui": "/ui/",
        "api": "/v2/api",
        "status": "/v2/api/status",
        "functions": "/v2/api/functions",
        "jobs": "/v2/api/jobs",
    })
