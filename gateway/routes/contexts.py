"""``/v2/api/contexts``: the Spark settings and worker policy each context's workers run with."""

from __future__ import annotations

import re
from typing import Any

from aiohttp import web

from sparkgate.gateway.blocking import blocking
from sparkgate.gateway.openapi import CONTEXT_NAME, array, links, ok, ref, request_body, use
from sparkgate.gateway.params import checked_name, json_body, json_object, json_type
from sparkgate.gateway.redaction import REDACTED, redaction_for
from sparkgate.gateway.render import context_info
from sparkgate.gateway.resources import CATALOG, SETTINGS
from sparkgate.gateway.routing import ADMIN, READ, Endpoints, Op
from sparkgate.jobs.contexts import Context, Health
from sparkgate.jobs.durations import parse_duration
from sparkgate.jobs.errors import BadRequest, InvalidArguments

endpoints = Endpoints()

WORKER_MODES = ("shared", "exclusive")


@endpoints.get("/v2/api/contexts", READ, Op(
    "listContexts", "contexts", "List contexts",
    {"200": ok(array(ref("Context")), "sorted by name, `default` included")}))
async def list_contexts(request: web.Request) -> web.Response:
    catalog = request.app[CATALOG]
    contexts = await blocking(catalog.list_contexts)
    health = await blocking(catalog.all_health)
    redaction = redaction_for(request)
    return web.json_response([context_info(c, health.get(c.name, Health()), redaction)
                              for c in contexts])


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
    context = _context_from(body, checked_name(body.get("name"), "name"), request)
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
    await blocking(request.app[CATALOG].update_context, _context_from(body, name, request))
    return await _answer(request, name)


@endpoints.delete("/v2/api/contexts/{name}", ADMIN, Op(
    "deleteContext", "contexts", "Delete a context",
    {"200": ok(ref("Context"), "the deleted context"), "400": use("BadRequest"),
     "404": use("NotFound"), "409": use("Conflict")}, parameters=[CONTEXT_NAME],
    description="`400` for `default`; `409` while a function has it as its default."))
async def delete_context(request: web.Request) -> web.Response:
    deleted = await blocking(request.app[CATALOG].delete_context, request.match_info["name"])
    return web.json_response(context_info(deleted, Health(), redaction_for(request)))


async def _answer(request: web.Request, name: str) -> web.Response:
    catalog = request.app[CATALOG]
    context = await blocking(catalog.get_context, name)
    health = await blocking(catalog.health, name)
    return web.json_response(context_info(context, health, redaction_for(request)))


async def _body(request: web.Request) -> dict[str, Any]:
    return json_object(await json_body(request, limit=request.app[SETTINGS].max_body_bytes),
                       "context")


def _context_from(body: dict[str, Any], name: str, request: web.Request) -> Context:
    """Fields left out take the configured defaults (so a PUT is a full replacement)."""
    base = Context.from_defaults(name, request.app[SETTINGS].context)
    problems: list[dict[str, Any]] = []
    values: dict[str, Any] = {}
    for field, raw in body.items():
        if field == "name":
            continue
        parser = _PARSERS.get(field)
        if parser is None:
            problems.append({"field": field, "expected": "one of " + ", ".join(_PARSERS),
                             "got": "unknown field"})
            continue
        attribute, convert = parser
        try:
            values[attribute] = convert(raw)
        except (TypeError, ValueError) as exc:
            problems.append({"field": field, "expected": str(exc), "got": _show(raw)})
    if problems:
        fields = ", ".join(p["field"] for p in problems)
        raise InvalidArguments(f"context {name!r}: invalid field(s) {fields}", problems)
    return Context(**{**base.__dict__, **values})


def _show(raw: Any) -> str:
    text = repr(raw)
    return f"{json_type(raw)} {text[:40]}"


def _int(low: int, high: int):
    def convert(raw: Any) -> int:
        # ASCII digits only: isdigit() is also true of other scripts' digits and of "²".
        value = int(raw) if isinstance(raw, str) and re.fullmatch(r"\s*[0-9]+\s*", raw) else raw
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise ValueError(f"an integer from {low} to {high}")
        return value
    return convert


def _bool(raw: Any) -> bool:
    if isinstance(raw, bool):
        return raw
    if isinstance(raw, str) and raw.lower() in ("true", "false"):
        return raw.lower() == "true"
    raise ValueError("true or false")


def _duration(allow_inf: bool, max_s: int | None = None):
    def convert(raw: Any) -> int | None:
        try:
            seconds = parse_duration(raw)
        except ValueError:
            raise ValueError(
                "a duration like 3600s, 10min" + (" or Inf" if allow_inf else "")
            ) from None
        if seconds is None and not allow_inf:
            raise ValueError("a finite duration like 1s")
        if max_s is not None and seconds is not None and seconds > max_s:
            raise ValueError(f"a duration of at most {max_s}s")
        return None if seconds is None else max(1, round(seconds))
    return convert


def _spark_conf(raw: Any) -> dict[str, str]:
    if not isinstance(raw, dict):
        raise ValueError("an object of Spark settings, e.g. {\"spark.executor.memory\": \"2g\"}")
    if any(isinstance(v, (dict, list)) or v is None for v in raw.values()):
        raise ValueError("an object whose values are strings, numbers or booleans")
    # Keys reach the JVM as names in its configuration and in command lines, values as C
    # strings: NUL cuts them short, and control characters make names no one can type.
    bad_keys = sorted(repr(k) for k in raw if not k or any(ord(c) < 0x20 or c == "\x7f"
                                                           for c in k))
    if bad_keys:
        raise ValueError(f"Spark setting names without control characters (got "
                         f"{', '.join(bad_keys)})")
    if any("\x00" in str(v) for v in raw.values()):
        raise ValueError("Spark setting values without NUL characters")
    pasted = sorted(str(k) for k, v in raw.items() if v == REDACTED)
    if pasted:
        raise ValueError(f"real values, not the redaction marker {REDACTED!r} that callers "
                         f"other than admins are shown (in {', '.join(pasted)})")
    return {str(k): (str(v).lower() if isinstance(v, bool) else str(v)) for k, v in raw.items()}


def _worker_mode(raw: Any) -> str:
    if raw not in WORKER_MODES:
        raise ValueError(" or ".join(WORKER_MODES))
    return raw


def _text(raw: Any) -> str:
    # PostgreSQL text cannot hold NUL: refused here, not a 500 from the database.
    if not isinstance(raw, str) or "\x00" in raw:
        raise ValueError("a string without NUL characters")
    return raw


_PARSERS: dict[str, tuple[str, Any]] = {
    "sparkConf": ("spark_conf", _spark_conf),
    "maxJobs": ("max_jobs", _int(1, 1000)),
    "workerMode": ("worker_mode", _worker_mode),
    "precreated": ("precreated", _bool),
    "downtime": ("downtime_s", _duration(allow_inf=True)),
    "maxConnFailures": ("max_conn_failures", _int(1, 1000)),
    "runOptions": ("run_options", _text),
    # Its column is a 32-bit integer of seconds (PostgreSQL refuses more: it was a 500).
    "streamingDuration": ("streaming_duration_s", _duration(allow_inf=False, max_s=2**31 - 1)),
    "startTimeout": ("start_timeout_s", _duration(allow_inf=True)),
    "performTimeout": ("perform_timeout_s", _duration(allow_inf=True)),
}
