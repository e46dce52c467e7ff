"""``/v2/api/functions``: named callables in artifacts, with their argument schema."""

from __future__ import annotations

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
from sparkgate.gateway.params import json_body, json_object, query_bool
from sparkgate.gateway.resources import CATALOG, RESULT_CACHE, SETTINGS
from sparkgate.gateway.routing import ADMIN, READ, Endpoints, Op
from sparkgate.gateway.wire.fields import to_json
from sparkgate.gateway.wire.functions import FunctionInfo, function_definition
from sparkgate.jobs.deployment import build_function
from sparkgate.jobs.functions import Function

endpoints = Endpoints()

_DEFINITION = request_body(ref("FunctionDefinition"), "the function: `path` names an uploaded "
                           "artifact, `className` a function in it")
_FORCE = bool_param("force", "store without reading the artifact (no argument schema)")


@endpoints.get("/v2/api/functions", READ, Op(
    "listFunctions", "functions", "List functions",
    {"200": ok(array(ref("FunctionInfo")), "every function, sorted by name")}))
async def list_functions(request: web.Request) -> web.Response:
    functions = await blocking(request.app[CATALOG].list_functions)
    return web.json_response([to_json(FunctionInfo.of(f)) for f in functions])


@endpoints.get("/v2/api/functions/{name}", READ, Op(
    "getFunction", "functions", "One function",
    {"200": ok(ref("FunctionInfo")), "404": use("NotFound")}, parameters=[FUNCTION_NAME]))
async def get_function(request: web.Request) -> web.Response:
    function = await blocking(request.app[CATALOG].get_function, request.match_info["name"])
    return web.json_response(to_json(FunctionInfo.of(function)))


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
    await _purge(request, created.name)
    return web.json_response(to_json(FunctionInfo.of(created)))


@endpoints.put("/v2/api/functions", ADMIN, Op(
    "updateFunction", "functions", "Update a function",
    {"200": ok(ref("FunctionInfo"), "the updated function"), "400": use("BadRequest"),
     "404": use("NotFound")}, parameters=[_FORCE], body=_DEFINITION,
    description="Replaces the function of that `name`; `404` if there is none."))
async def update_function(request: web.Request) -> web.Response:
    catalog = request.app[CATALOG]
    function = await _function_from_request(request)
    updated = await blocking(catalog.update_function, function)
    await _purge(request, updated.name)
    return web.json_response(to_json(FunctionInfo.of(updated)))


@endpoints.delete("/v2/api/functions/{name}", ADMIN, Op(
    "deleteFunction", "functions", "Delete a function",
    {"200": ok(ref("FunctionInfo"), "the deleted function"), "404": use("NotFound")},
    parameters=[FUNCTION_NAME]))
async def delete_function(request: web.Request) -> web.Response:
    deleted = await blocking(request.app[CATALOG].delete_function, request.match_info["name"])
    await _purge(request, deleted.name)
    return web.json_response(to_json(FunctionInfo.of(deleted)))


@endpoints.delete("/v2/api/functions/{name}/cache", ADMIN, Op(
    "purgeFunctionCache", "functions", "Forget a function's cached results",
    {"204": ok(None, "done: the next identical call runs"), "404": use("NotFound")},
    parameters=[FUNCTION_NAME],
    description="*sparkgate*: every result cached for the function (deployed with `cache`) "
                "is forgotten at once, on every gateway; jobs already answered from it keep "
                "their records. See docs/caching.md."))
async def purge_function_cache(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    await blocking(request.app[CATALOG].get_function, name)
    await _purge(request, name)
    return web.Response(status=204)


async def _purge(request: web.Request, function: str) -> None:
    """Every change of a definition forgets the function's cached results: its entries' keys
    name the definition anyway, but the call index does not (jobs/result_cache.py). Redis
    down: 503 after the change is stored; the client's retry (the same body) purges."""
    await blocking(request.app[RESULT_CACHE].purge, function)


async def _function_from_request(request: web.Request) -> Function:
    body = json_object(await json_body(request, limit=request.app[SETTINGS].max_body_bytes),
                       "function")
    definition = function_definition(body)
    inspect = not query_bool(request, "force")
    return await blocking(build_function, request.app[CATALOG], definition.name,
                          definition.path, definition.class_name, definition.default_context,
                          definition.tags, inspect, definition.cache_ms)
