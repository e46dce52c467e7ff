"""``/v2/api/functions``: named callables in artifacts, with their argument schema."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from sparkgate.gateway.blocking import blocking
from sparkgate.gateway.openapi import (
    FUNCTION_NAME,
    array,
    bool_param,
    links,
    ok,
    ref,
    request_body,
    use,
)
from sparkgate.gateway.params import checked_name, json_body, json_object, query_bool
from sparkgate.gateway.render import function_info
from sparkgate.gateway.resources import CATALOG, SETTINGS
from sparkgate.gateway.routing import ADMIN, READ, Endpoints, Op
from sparkgate.jobs.contexts import DEFAULT_CONTEXT
from sparkgate.jobs.deployment import build_function
from sparkgate.jobs.errors import BadRequest
from sparkgate.jobs.functions import Function

endpoints = Endpoints()

_DEFINITION = request_body(ref("FunctionDefinition"), "the function: `path` names an uploaded "
                           "artifact, `className` a function in it")
_FORCE = bool_param("force", "store without reading the artifact (no argument schema)")

_FIELDS = {"name", "path", "className", "defaultContext", "lang", "tags"}


@endpoints.get("/v2/api/functions", READ, Op(
    "listFunctions", "functions", "List functions",
    {"200": ok(array(ref("FunctionInfo")), "every function, sorted by name")}))
async def list_functions(request: web.Request) -> web.Response:
    functions = await blocking(request.app[CATALOG].list_functions)
    return web.json_response([function_info(f) for f in functions])


@endpoints.get("/v2/api/functions/{name}", READ, Op(
    "getFunction", "functions", "One function",
    {"200": ok(ref("FunctionInfo")), "404": use("NotFound")}, parameters=[FUNCTION_NAME]))
async def get_function(request: web.Request) -> web.Response:
    function = await blocking(request.app[CATALOG].get_function, request.match_info["name"])
    return web.json_response(function_info(function))


@endpoints.post("/v2/api/functions", ADMIN, Op(
    "createFunction", "functions", "Create a function",
    {"200": ok(ref("FunctionInfo"), "the new function"), "400": use("BadRequest")},
    parameters=[_FORCE], body=_DEFINITION,
    description="The artifact's source is read (never run) for the function and its argument "
                "schema. `400` if the name exists, the artifact or context does not, or the "
                "artifact lacks the function.",
    links=links("$response.body#/name", "name", "getFunction", "runFunction",
                "listFunctionJobs", "deleteFunction")))
async def create_function(request: web.Request) -> web.Response:
    catalog = request.app[CATALOG]
    function = await _function_from_request(request)
    created = await blocking(catalog.create_function, function)
    return web.json_response(function_info(created))


@endpoints.put("/v2/api/functions", ADMIN, Op(
    "updateFunction", "functions", "Update a function",
    {"200": ok(ref("FunctionInfo"), "the updated function"), "400": use("BadRequest"),
     "404": use("NotFound")}, parameters=[_FORCE], body=_DEFINITION,
    description="Replaces the function of that `name`; `404` if there is none."))
async def update_function(request: web.Request) -> web.Response:
    catalog = request.app[CATALOG]
    function = await _function_from_request(request)
    updated = await blocking(catalog.update_function, function)
    return web.json_response(function_info(updated))


@endpoints.delete("/v2/api/functions/{name}", ADMIN, Op(
    "deleteFunction", "functions", "Delete a function",
    {"200": ok(ref("FunctionInfo"), "the deleted function"), "404": use("NotFound")},
    parameters=[FUNCTION_NAME]))
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

