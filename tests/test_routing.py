"""One declaration per route (gateway/routing.py): every route the app serves carries a rule and
an OpenAPI operation, and a route that does not is caught (and refused, tests/test_auth_routes.py).
"""

from __future__ import annotations

import pytest
from aiohttp import web

from sparkgate.gateway.app import ENDPOINTS, create_app
from sparkgate.gateway.openapi import ok
from sparkgate.gateway.openapi_document import build_document
from sparkgate.gateway.routing import (
    READ,
    Endpoints,
    Op,
    Rule,
    add_routes,
    declaration,
    undeclared,
)

OPERATION = Op("probe", "status", "A probe", {"200": ok()})


async def probe(request: web.Request) -> web.Response:
    return web.json_response({})


def test_every_route_the_app_serves_is_declared(settings, redis_url):
    app = create_app(settings, redis_url)
    assert len(app.router.routes()) > 30  # the walk sees the real router
    assert undeclared(app) == [], "routes served without a declaration (so without a rule and "\
                                  "an OpenAPI operation): refused to everyone until declared"


def test_a_route_registered_without_a_declaration_is_reported(settings, redis_url):
    app = create_app(settings, redis_url)
    app.router.add_get("/v2/api/undeclared", probe)
    assert sorted(undeclared(app)) == ["GET /v2/api/undeclared", "HEAD /v2/api/undeclared"]


def test_a_declaration_needs_a_rule_and_an_operation():
    endpoints = Endpoints()
    with pytest.raises(TypeError, match="needs a Rule and an Op"):
        endpoints.get("/v2/api/probe", READ, None)(probe)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="needs a Rule and an Op"):
        endpoints.get("/v2/api/probe", None, OPERATION)(probe)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown role"):
        Rule("viewer")
    assert list(endpoints) == []


def test_one_declaration_serves_the_route_its_rule_and_its_operation(settings, redis_url):
    """Adding a route is one declaration: the router, the auth rule and the document follow."""
    endpoints = Endpoints()
    endpoints.get("/v2/api/probe/{path:.+}", READ, OPERATION)(probe)
    [route] = endpoints
    assert route.template == "/v2/api/probe/{path}"
    app = web.Application()
    add_routes(app, [*ENDPOINTS, route])
    assert undeclared(app) == []
    assert declaration(app, "HEAD", "/v2/api/probe/{path}") is route
    document = build_document([*ENDPOINTS, route], secured=True)
    item = document["paths"]["/v2/api/probe/{path}"]
    assert item["get"]["operationId"] == "probe" and item["head"]["operationId"] == "probeHead"
    assert item["get"]["x-sparkgate-role"] == "read"
