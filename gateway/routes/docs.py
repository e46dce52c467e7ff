"""``/v2/api/openapi.json`` (the OpenAPI document of every route) and ``/docs`` (a page that
renders it, plain HTML, an ES module and CSS from ``gateway/static/docs``: no CDN, no build).

Both are public. The document is built from the app's route declarations, once per process:
with authentication on, it says which operations need credentials and that they can answer
401/403.
"""

from __future__ import annotations

import functools
import hashlib
import json
from pathlib import Path

from aiohttp import web

from sparkgate.gateway.blocking import blocking
from sparkgate.gateway.openapi import (
    DOCS_PATH,
    HTML_PAGE,
    OPENAPI_PATH,
    PAGE_FILE,
    PAGE_FILE_ANSWERS,
    UNCHANGED,
    ok,
)
from sparkgate.gateway.openapi_document import build_document
from sparkgate.gateway.resources import SETTINGS
from sparkgate.gateway.routes.status import sparkgate_version
from sparkgate.gateway.routes.ui import CONTENT_TYPES, CSP
from sparkgate.gateway.routing import OPEN, ROUTES, Endpoints, Op, Route
from sparkgate.jobs.errors import NotFound

endpoints = Endpoints()

ROOT = Path(__file__).resolve().parent.parent / "static" / "docs"


# The API's description and its page: what every client may learn anyway.
@endpoints.get(OPENAPI_PATH, OPEN, Op(
    "openapi", "pages", "This OpenAPI document",
    {"200": ok({"type": "object"}, "OpenAPI 3.1")}, backed=False))
async def openapi_document(request: web.Request) -> web.Response:
    body = document_json(tuple(request.app[ROUTES].values()),
                         bool(request.app[SETTINGS].auth_enabled))
    return web.Response(body=body, content_type="application/json",
                        headers={"Cache-Control": "no-cache"})


@functools.cache
def document_json(routes: tuple[Route, ...], secured: bool) -> bytes:
    """The document of the app's routes as served: built once per process for each case (the
    routes are the same objects in every app)."""
    return json.dumps(build_document(routes, sparkgate_version(), secured)).encode()


@endpoints.get(DOCS_PATH, OPEN, Op(
    "docs", "pages", "This API's documentation page", {"200": HTML_PAGE, **UNCHANGED},
    backed=False))
async def docs_page(request: web.Request) -> web.Response:
    return await _serve(request, "index.html")


@endpoints.get(DOCS_PATH + "/{path:.+}", OPEN, Op(
    "docsFile", "pages", "A file of the documentation page", PAGE_FILE_ANSWERS,
    parameters=[PAGE_FILE], backed=False))
async def docs_file(request: web.Request) -> web.Response:
    return await _serve(request, request.match_info["path"])


async def _serve(request: web.Request, relative: str) -> web.Response:
    parts = relative.split("/")
    path = ROOT.joinpath(*parts)
    if (any(p in ("", ".", "..") or p.startswith(".") for p in parts)
            or path.suffix not in CONTENT_TYPES):
        raise NotFound(f"no such documentation file: {relative}", {"path": relative})
    body = await blocking(_read, path)
    if body is None:
        raise NotFound(f"no such documentation file: {relative}", {"path": relative})
    etag = f'"{hashlib.sha1(body).hexdigest()[:20]}"'
    headers = {"Cache-Control": "no-cache", "ETag": etag, "X-Content-Type-Options": "nosniff",
               "Content-Security-Policy": CSP, "Referrer-Policy": "no-referrer"}
    if etag in {t.strip().removeprefix("W/") for t in
                request.headers.get("If-None-Match", "").split(",")}:
        return web.Response(status=304, headers=headers)
    return web.Response(body=body, headers={**headers, "Content-Type": CONTENT_TYPES[path.suffix]})


def _read(path: Path) -> bytes | None:
    try:
        return path.read_bytes() if path.is_file() else None
    except OSError:
        return None
