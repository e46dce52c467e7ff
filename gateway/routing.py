"""One declaration per route: its method, path, handler, who may call it and its OpenAPI
operation, written once on the handler (litestar-style) and read by everything else.

Each routes module collects its routes in an ``Endpoints``::

    endpoints = Endpoints()

    @endpoints.get("/v2/api/functions", READ, Op("listFunctions", "functions", ...))
    async def list_functions(request): ...

``create_app`` registers them (``add_routes``), the auth middleware finds a request's rule in
them (``declaration``) and gateway/openapi_document.py builds the document from them. A route
on the router that was not declared is refused to everyone by the auth middleware and reported
by ``undeclared``.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass, field

from aiohttp import web

from sparkgate.gateway.wire.schema import Schema
from sparkgate.jobs.keys import RANK

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

PUBLIC = "public"


@dataclass(frozen=True)
class Rule:
    """Who may call a route."""

    # PUBLIC, or the weakest role allowed (see jobs.keys.ROLES).
    role: str
    # Event streams only: ``?access_token=`` is accepted as well as the header.
    token_in_query: bool = False
    # "path": a key limited to some functions may call it only for those (the route's {name}
    # is the function). Cancels need no such check: a submit key cancels only its own jobs,
    # which are all of functions it may run.
    function: str | None = None

    def __post_init__(self) -> None:
        if self.role != PUBLIC and self.role not in RANK:
            raise ValueError(f"unknown role {self.role!r}: {PUBLIC} or one of {', '.join(RANK)}")
        if self.function not in (None, "path"):
            raise ValueError(f"function: None or 'path', not {self.function!r}")


READ, SUBMIT, ADMIN = Rule("read"), Rule("submit"), Rule("admin")
#: The event streams: browsers cannot set headers on a WebSocket or an EventSource.
EVENTS = Rule("read", token_in_query=True)
OPEN = Rule(PUBLIC)


@dataclass(frozen=True)
class Op:
    """A route's OpenAPI operation, less what gateway/openapi_document.py adds by rule."""

    operation_id: str
    tag: str
    summary: str
    responses: dict[str, Schema]
    description: str = ""
    parameters: list[Schema] = field(default_factory=list)
    body: Schema | None = None
    #: Reads the database or Redis: may answer 503.
    backed: bool = True
    #: OpenAPI links from a 200 answer to the operations that take what it names: tools
    #: (schemathesis's stateful phase) chain calls through them.
    links: dict[str, Schema] = field(default_factory=dict)


# aiohttp's ``{name:regex}`` variables, written ``{name}`` by OpenAPI and by the router's
# ``canonical``.
_VARIABLE_REGEX = re.compile(r"\{(\w+):[^{}]*\}")


# eq=False: routes are told apart by identity, which also makes them hashable (the served
# document is cached per tuple of routes).
@dataclass(frozen=True, eq=False)
class Route:
    method: str
    #: As aiohttp takes it (``{path:.+}`` allowed).
    path: str
    handler: Handler
    rule: Rule
    op: Op

    def __post_init__(self) -> None:
        # Checked at import: a declaration without a rule or an operation cannot ship.
        if not isinstance(self.rule, Rule) or not isinstance(self.op, Op):
            raise TypeError(f"{self.method} {self.path}: a route needs a Rule and an Op")

    @property
    def template(self) -> str:
        """The path as OpenAPI and the router's ``canonical`` write it."""
        return _VARIABLE_REGEX.sub(r"{\1}", self.path)

    @property
    def answers_a_list(self) -> bool:
        """Its 200 answer is (or may be) a JSON array: Mist's listings."""
        content = self.op.responses.get("200", {}).get("content", {})
        schema = content.get("application/json", {}).get("schema", {})
        return any(s.get("type") == "array" for s in schema.get("anyOf", [schema]))


class Endpoints:
    """The routes a routes module declares, in the order it declares them."""

    def __init__(self) -> None:
        self._routes: list[Route] = []

    def __iter__(self) -> Iterator[Route]:
        return iter(self._routes)

    def route(self, method: str, path: str, rule: Rule,
              op: Op) -> Callable[[Handler], Handler]:
        def declare(handler: Handler) -> Handler:
            self._routes.append(Route(method, path, handler, rule, op))
            return handler
        return declare

    def get(self, path: str, rule: Rule, op: Op) -> Callable[[Handler], Handler]:
        """Also answers HEAD, as aiohttp does (the document has a HEAD twin for it)."""
        return self.route("GET", path, rule, op)

    def post(self, path: str, rule: Rule, op: Op) -> Callable[[Handler], Handler]:
        return self.route("POST", path, rule, op)

    def put(self, path: str, rule: Rule, op: Op) -> Callable[[Handler], Handler]:
        return self.route("PUT", path, rule, op)

    def delete(self, path: str, rule: Rule, op: Op) -> Callable[[Handler], Handler]:
        return self.route("DELETE", path, rule, op)


ROUTES = web.AppKey("routes", dict[tuple[str, str], Route])


def add_routes(app: web.Application, routes: Iterable[Route]) -> None:
    """Registers ``routes`` on the app's router, and keeps them for ``declaration``."""
    table: dict[tuple[str, str], Route] = {}
    for route in routes:
        if route.method == "GET":
            app.router.add_get(route.path, route.handler)  # and HEAD
        else:
            app.router.add_route(route.method, route.path, route.handler)
        table[(route.method, route.template)] = route
    app[ROUTES] = table


def declaration(app: web.Application, method: str, template: str) -> Route | None:
    # aiohttp answers HEAD with the GET handler: it reveals what GET does.
    return app[ROUTES].get(("GET" if method == "HEAD" else method, template))


def route_of(request: web.Request) -> Route | None:
    """The declaration of the route ``request`` matched; None: no route, or an undeclared one."""
    match = request.match_info
    if match.http_exception is not None:
        return None
    resource = match.route.resource
    canonical = resource.canonical if resource is not None else request.path
    return declaration(request.app, request.method, canonical)


def undeclared(app: web.Application) -> list[str]:
    """The routes of the app's router that no declaration describes (``METHOD path``)."""
    return [f"{route.method} {route.resource.canonical}" for route in app.router.routes()
            if route.resource is not None
            and declaration(app, route.method, route.resource.canonical) is None]
