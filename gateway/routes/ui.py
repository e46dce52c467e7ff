"""``/ui``: the dashboard, plain ES modules and CSS from ``gateway/static/ui`` (no build step).

It reads only the public API, like any client. Files are served with their exact content type
(module scripts must be JavaScript), ``nosniff``, and ``Cache-Control: no-cache`` with an ETag:
without a build step file names carry no content hash, so the browser revalidates each file
(a 304 when unchanged) and never mixes modules of two versions. A strict Content Security
Policy keeps the page from loading anything from elsewhere.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from sparkgate.gateway.blocking import blocking
from sparkgate.gateway.openapi import HTML_PAGE, PAGE_FILE, PAGE_FILE_ANSWERS, UNCHANGED, redirect
from sparkgate.gateway.routing import OPEN, Endpoints, Op
from sparkgate.jobs.errors import NotFound

endpoints = Endpoints()

ROOT = Path(__file__).resolve().parent.parent / "static" / "ui"

CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
    ".json": "application/json",
}

CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self'; object-src 'none'; base-uri 'self'; frame-ancestors 'none'; "
       "form-action 'self'")


@dataclass(frozen=True)
class _File:
    body: bytes
    etag: str
    stamp: tuple[int, int]


_cache: dict[Path, _File] = {}


# The dashboard's files hold no data (its API calls need a role): public.
@endpoints.get("/ui", OPEN, Op(
    "dashboardRedirect", "pages", "The dashboard", {"302": redirect("/ui/")}, backed=False))
async def ui_root(request: web.Request) -> web.Response:
    # index.html names its modules relative to itself: they resolve under /ui/ only.
    raise web.HTTPFound("/ui/")


@endpoints.get("/ui/", OPEN, Op(
    "dashboard", "pages", "The dashboard", {"200": HTML_PAGE, **UNCHANGED}, backed=False))
async def ui_index(request: web.Request) -> web.Response:
    return await _serve(request, "index.html")


@endpoints.get("/ui/{path:.+}", OPEN, Op(
    "dashboardFile", "pages", "A file of the dashboard", PAGE_FILE_ANSWERS,
    parameters=[PAGE_FILE], backed=False))
async def ui_file(request: web.Request) -> web.Response:
    return await _serve(request, request.match_info["path"])


async def _serve(request: web.Request, relative: str) -> web.Response:
    path = _resolve(relative)
    file = await blocking(_read, path)
    if file is None:
        raise NotFound(f"no such dashboard file: {relative}", {"path": relative})
    headers = {
        "Cache-Control": "no-cache",
        "ETag": file.etag,
        "X-Content-Type-Options": "nosniff",
        "Content-Security-Policy": CSP,
        "Referrer-Policy": "no-referrer",
    }
    if file.etag in _if_none_match(request):
        return web.Response(status=304, headers=headers)
    return web.Response(body=file.body, headers={**headers,
                                                 "Content-Type": CONTENT_TYPES[path.suffix]})


def _resolve(relative: str) -> Path:
    parts = relative.split("/")
    if any(p in ("", ".", "..") or p.startswith(".") for p in parts):
        raise NotFound(f"no such dashboard file: {relative}", {"path": relative})
    path = ROOT.joinpath(*parts)
    if path.suffix not in CONTENT_TYPES:
        raise NotFound(f"no such dashboard file: {relative}", {"path": relative})
    return path


def _read(path: Path) -> _File | None:
    """The file's bytes, re-read only when its size or modification time changed."""
    try:
        stat = path.stat()
    except OSError:
        return None
    if not path.is_file():
        return None
    stamp = (stat.st_mtime_ns, stat.st_size)
    cached = _cache.get(path)
    if cached is not None and cached.stamp == stamp:
        return cached
    body = path.read_bytes()
    file = _File(body, f'"{hashlib.sha1(body).hexdigest()[:20]}"', stamp)
    _cache[path] = file
    return file


def _if_none_match(request: web.Request) -> set[str]:
    raw = request.headers.get("If-None-Match", "")
    return {tag.strip().removeprefix("W/") for tag in raw.split(",") if tag.strip()}
