"""``/v2/api/contexts``: the Spark settings and worker policy each context's workers run with."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from sparkgate.gateway.auth import redaction_for
from sparkgate.gateway.blocking import blocking
from sparkgate.gateway.openapi import CONTEXT_NAME, array, links, ok, ref, request_body, use
from sparkgate.gateway.params import checked_name, json_body, json_object
from sparkgate.gateway.resources import CATALOG, SETTINGS
from sparkgate.gateway.routing import ADMIN, READ, Endpoints, Op
from sparkgate.gateway.wire.contexts import ContextInfo, context_from
from sparkgate.gateway.wire.fields import to_json
from sparkgate.jobs.contexts import Health
from sparkgate.jobs.errors import BadRequest

endpoints = Endpoints()


@endpoints.get("/v2/api/contexts", READ, Op(
    "listContexts", "contexts", "List contexts",
    {"200": ok(array(ref("Context")), "sorted by name, `default` included")}))
async def list_contexts(request: web.Request) -> web.Response:
    catalog = request.app[CATALOG]
    contexts = await blocking(catalog.list_contexts)
    health = await blocking(catalog.all_health)
    redaction = redaction_for(request)
    return web.json_response([to_json(ContextInfo.of(c, health.get(c.name, Health()),
                                                     redaction)) for c in contexts])


@endpoints.get("/v2/api/contexts/{name}", READ, Op(
    "getContext", "contexts", "One context",
    {"200": ok(ref("Context")), "404": use("NotFound")}, parameters=[CONTEXT_NAME]))
async def get_context(request: web.Request) -> web.Response:
    return await _answer(request, request.match_info["name"])


@endpoints.post("/v2/api/contexts", ADMIN, Op(
    "saveContext", "contexts", "Create or replace a context",
    {"200": ok(ref("Context"), "the stored context"), "400": use("BadRequest")},
    body=request_body(ref("ContextDefinition"), "the context; only `name` is required"),
    description="As Mist's: replaces a context of that name. Its workers drain and restart "
                "with the new definition.",
    links=links("$response.body#/name", "name", "getContext", "replaceContext",
                "deleteContext")))
async def create_context(request: web.Request) -> web.Response:
    """Create, or update an existing one: Mist's POST upserts, and mist-cli relies on it."""
    body = await _body(request)
    context = context_from(body, checked_name(body.get("name"), "name"),
                           request.app[SETTINGS].context)
    catalog = request.app[CATALOG]
    await blocking(catalog.save_context, context)
    return await _answer(request, context.name)


@endpoints.put("/v2/api/contexts/{name}", ADMIN, Op(
    "replaceContext", "contexts", "Replace a context (and repair it)",
    {"200": ok(ref("Context"), "the stored context"), "400": use("BadRequest"),
     "404": use("NotFound")}, parameters=[CONTEXT_NAME],
    body=request_body(ref("ContextReplacement"), "the whole definition")))
async def update_context(request: web.Request) -> web.Response:
    body = await _body(request)
    name = request.match_info["name"]
    if body.get("name", name) != name:
        raise BadRequest(f"name: the body says {body['name']!r} but the path says {name!r}",
                         {"field": "name"})
    context = context_from(body, name, request.app[SETTINGS].context)
    await blocking(request.app[CATALOG].update_context, context)
    return await _answer(request, name)


@endpoints.delete("/v2/api/contexts/{name}", ADMIN, Op(
    "deleteContext", "contexts", "Delete a context",
    {"200": ok(ref("Context"), "the deleted context"), "400": use("BadRequest"),
     "404": use("NotFound"), "409": use("Conflict")}, parameters=[CONTEXT_NAME],
    description="`400` for `default`; `409` while a function has it as its default."))
async def delete_context(request: web.Request) -> web.Response:
    deleted = await blocking(request.app[CATALOG].delete_context, request.match_info["name"])
    return web.json_response(to_json(ContextInfo.of(deleted, Health(), redaction_for(request))))


async def _answer(request: web.Request, name: str) -> web.Response:
    catalog = request.app[CATALOG]
    context = await blocking(catalog.get_context, name)
    health = await blocking(catalog.health, name)
    return web.json_response(to_json(ContextInfo.of(context, health, redaction_for(request))))


async def _body(request: web.Request) -> dict[str, Any]:
    return json_object(await json_body(request, limit=request.app[SETTINGS].max_body_bytes),
                       "context")

