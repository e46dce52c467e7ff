"""The OpenAPI 3.1 document of the routes the gateway serves (``GET /v2/api/openapi.json``),
built from their declarations (gateway/routing.py): each route's operation and rule.

Responses every operation of a kind can give are added by rule, not by hand: ``503`` (with
``Retry-After``) wherever the database or Redis is read, ``413`` wherever a body is read,
``401``/``403`` on every operation a role protects, and a ``HEAD`` twin for every ``GET``
(aiohttp answers both).
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from typing import Any

from sparkgate.gateway.browsers import ANY_HOST_PATHS
from sparkgate.gateway.openapi import PARAMETERS, RESPONSES, SCHEMAS, Schema, use
from sparkgate.gateway.routing import PUBLIC, Route

TAGS = [
    {"name": "functions", "description": "Named Python callables in artifacts, with their "
                                         "argument schema"},
    {"name": "jobs", "description": "Running functions and following their jobs. With "
                                    "authentication on, a submit key sees, follows and cancels "
                                    "only its own jobs (another owner's is `404`, as if it did "
                                    "not exist); read and admin see every job"},
    {"name": "contexts", "description": "Spark settings and worker policy per context. "
                                        "Settings that look secret read "
                                        "`*********(redacted)` for all but admins"},
    {"name": "workers", "description": "Live workers, each holding a warm SparkSession"},
    {"name": "artifacts", "description": "The code functions run"},
    {"name": "models", "description": "Named, versioned models that jobs save and load "
                                      "(`sparkgate.models`), one version of each live"},
    {"name": "schedules", "description": "Functions run at the times of a cron expression, "
                                         "each tick exactly one job"},
    {"name": "webhooks", "description": "Job events POSTed to URLs an admin chose, signed, "
                                        "at least once, with every attempt on record"},
    {"name": "status", "description": "Versions, counters, health"},
    {"name": "events", "description": "Live job events: Mist's WebSockets and SSE; a submit "
                                      "key's streams carry only its own jobs' events"},
    {"name": "pages", "description": "The dashboard, this documentation and this document"},
]


def build_document(routes: Iterable[Route], version: str = "0",
                   secured: bool = False) -> dict[str, Any]:
    """The document of ``routes``. ``secured``: authentication is on, so each operation a role
    protects says so (security, 401, 403)."""
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        item = paths.setdefault(route.template, {})
        operation = _operation(route, secured)
        item[route.method.lower()] = operation
        if route.method == "GET":
            item["head"] = _head_twin(route, operation)
    document: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {
            "title": "sparkgate",
            "version": version,
            "description": "Spark functions as a web service: Hydrosphere Mist's HTTP API v2 "
                           "and sparkgate's extensions. Errors have one shape, "
                           "`{\"error\": {\"code\", \"message\", \"details\"}}`, except where "
                           "Mist's contract fixes another. Every GET also answers HEAD.",
            "license": {"name": "Apache-2.0", "identifier": "Apache-2.0"},
        },
        "tags": TAGS,
        # Copied: the declarations' pieces are shared module data, not the caller's to change.
        "paths": copy.deepcopy(paths),
        "components": {
            "schemas": copy.deepcopy(SCHEMAS),
            "parameters": copy.deepcopy(PARAMETERS),
            "responses": copy.deepcopy(RESPONSES),
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer",
                           "description": "an API key (`sparkgate keys create`) or a JWT"},
                "accessToken": {"type": "apiKey", "in": "query", "name": "access_token",
                                "description": "the same key or JWT, for the event streams "
                                               "only (browsers cannot set headers on them)"},
            },
        },
    }
    return document


def _operation(route: Route, secured: bool) -> dict[str, Any]:
    op = route.op
    responses = {**_refusals(route), **op.responses}
    if op.body is not None:
        responses.setdefault("413", use("PayloadTooLarge"))
    if "{" in route.path:  # also a name or id holding a control character (path_middleware)
        responses.setdefault("404", use("NotFound"))
    if op.backed:
        responses.setdefault("503", use("Unavailable"))
    operation: dict[str, Any] = {"operationId": op.operation_id, "tags": [op.tag],
                                 "summary": op.summary}
    if op.description:
        operation["description"] = op.description
    if op.parameters:
        operation["parameters"] = list(op.parameters)
    if op.body is not None:
        operation["requestBody"] = op.body
    if secured:
        if route.rule.role == PUBLIC:
            operation["security"] = []
        else:
            operation["security"] = ([{"bearer": []}, {"accessToken": []}]
                                     if route.rule.token_in_query else [{"bearer": []}])
            operation["x-sparkgate-role"] = route.rule.role
            responses.setdefault("401", use("Unauthenticated"))
            responses.setdefault("403", use("Forbidden"))
    if op.links:
        ok_response = dict(responses["200"])
        ok_response["links"] = op.links
        responses["200"] = ok_response
    operation["responses"] = dict(sorted(responses.items()))
    return operation


def _refusals(route: Route) -> dict[str, Schema]:
    """What any request may get before its route sees it: from the HTTP parser, for its form,
    and from gateway/browsers.py."""
    refusals = {"414": use("UriTooLong"), "431": use("HeaderTooLarge")}
    if route.op.body is not None:
        refusals["415"] = use("UnsupportedMediaType")
    if route.method != "GET":  # a page of another site
        refusals["403"] = use("Forbidden")
    if route.template not in ANY_HOST_PATHS:
        refusals["421"] = use("MisdirectedRequest")
    return refusals


def _head_twin(route: Route, get: dict[str, Any]) -> dict[str, Any]:
    """HEAD answers as GET does, with the headers and no body."""
    head = {k: v for k, v in get.items() if k not in ("responses", "description")}
    head["operationId"] = route.op.operation_id + "Head"
    head["summary"] = f"{route.op.summary} (headers only)"
    head["responses"] = {status: _without_content(response)
                         for status, response in get["responses"].items()}
    return head


def _without_content(response: Schema) -> Schema:
    if "$ref" in response:
        name = response["$ref"].rsplit("/", 1)[1]
        response = RESPONSES[name]
    return {k: v for k, v in response.items() if k != "content"}
