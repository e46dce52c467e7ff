"""``/v2/api/functions``: named callables in artifacts, with their argument schema."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from sparkgate.gateway.blocking import blocking
from sparkgate.gateway.params import checked_name, json_body, json_object, query_bool
from sparkgate.gateway.render import function_info
from sparkgate.gateway.resources import CATALOG, SETTINGS
from sparkgate.jobs.contexts import DEFAULT_CONTEXT
from sparkgate.jobs.deployment import build_function
from sparkgate.jobs.errors import BadRequest
from sparkgate.jobs.functions import Function

routes = web.RouteTableDef()

_FIELDS = {"name", "path", "className", "defaultContext", "lang", "tags"}


@routes.get("/v2/api/functions")
async def list_functions(request: web.Request) -> web.Response:
    functions = await blocking(request.app[CATALOG].list_functions)
    return web.json_response([function_info(f) for f in functions])


@routes.get("/v2/api/functions/{name}")
async def get_function(request: web.Request) -> web.Response:
    function = await blocking(request.app[CATALOG].get_function, request.match_info["name"])
    return web.json_response(function_info(function))


@routes.post("/v2/api/functions")
async def create_function(request: web.Request) -> web.Response:
    catalog = request.app[CATALOG]
    function = await _function_from_request(request)
    created = await blocking(catalog.create_function, function)
    return web.json_response(function_info(created))


@routes.put("/v2/api/functions")
async def update_function(request: web.Request) -> web.Response:
    catalog = request.app[CATALOG]
    function = await _function_from_request(request)
    updated = await blocking(catalog.update_function, function)
    return web.json_response(function_info(updated))


@routes.delete("/v2/api/functions/{name}")
async def delete_function(request: web.Request) -> web.Response:
    deleted = await blocking(request.app[CATALOG].delete_function, request.match_info["name"])
    return web.json_response(function_info(deleted))


async def _function_from_request(request: web.Request) -> Function:
    body = json_object(await json_body(request, limit=request.app[SETTINGS].max_body_bytes),
                       "function")
    unknown = sorted(set(body) - _FIELDS)
    if unknown:
        raise BadRequest(f"function: unknown field(s) {', '.join(unknown)}; expected "
                         f"{', '.join(sorted(_FIELDS))}", {"fields": unknown})
    name = checked_name(body.get("name"), "name")
    path = checked_name(body.get("path"), "path")
    class_name = _class_name(body.get("className"))
    context = checked_name(body.get("defaultContext") or DEFAULT_CONTEXT, "defaultContext")
    if body.get("lang", "python") != "python":
        raise BadRequest(f"lang: expected \"python\", got {body.get('lang')!r}",
                         {"field": "lang", "expected": "python", "got": body.get("lang")})
    tags = _tags(body.get("tags", []))
    inspect = not query_bool(request, "force")
    return await blocking(build_function, request.app[CATALOG], name, path, class_name, context,
                          tags, inspect)


def _tags(value: Any) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(t, str) for t in value):
        raise BadRequest(f"tags: expected an array of strings, got {value!r}",
                         {"field": "tags", "expected": "array of strings", "got": value})
    return value


def _class_name(value: Any) -> str:
    parts = value.split(".") if isinstance(value, str) else []
    if not parts or not all(p.isidentifier() for p in parts):
        raise BadRequest(
            f"className: expected a Python function name (or package.module.function), "
            f"got {value!r}", {"field": "className", "expected": "identifier", "got": value},
        )
    return value

