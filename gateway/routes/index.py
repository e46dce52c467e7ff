"""``/``: where a browser or an API client lands first."""

from __future__ import annotations

from aiohttp import web

from sparkgate.gateway.openapi import STRING, ok, redirect, ref
from sparkgate.gateway.routing import OPEN, Endpoints, Op

endpoints = Endpoints()


# Links only: public.
@endpoints.get("/", OPEN, Op(
    "index", "status", "Links to the main resources",
    {"200": ok(ref("Index")), "302": redirect("/ui/")}, backed=False,
    description="A browser (`Accept: text/html`) is sent to the dashboard.",
    parameters=[{"name": "Accept", "in": "header", "required": False, "schema": STRING}]))
async def index(request: web.Request) -> web.Response:
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
