"""A function on the wire: Mist's FunctionInfo (plus its arguments as JSON Schema), and the
definition a request creates or replaces one with."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sparkgate.gateway.params import checked_name
from sparkgate.gateway.wire.fields import ABSENT, Absent, Reading, read_each, schema_of, wire
from sparkgate.gateway.wire.schema import NAME_STRING, STRING, array, ref
from sparkgate.jobs.contexts import DEFAULT_CONTEXT
from sparkgate.jobs.durations import format_duration, parse_duration
from sparkgate.jobs.errors import BadRequest
from sparkgate.jobs.functions import Function
from sparkgate.jobs.signatures.model import Signature

TAGS = array(STRING)


@dataclass(slots=True)
class FunctionInfo:
    name: str = wire("name", STRING)
    lang: str = wire("lang", {"const": "python"})
    execute: dict[str, Any] = wire("execute", {
        "type": "object", "additionalProperties": ref("MistType"),
        "description": "Mist's argument map, in declaration order"})
    tags: list[str] = wire("tags", TAGS)
    path: str = wire("path", STRING, description="the artifact")
    class_name: str = wire("className", STRING)
    default_context: str = wire("defaultContext", STRING)
    # sparkgate's own: the same arguments as JSON Schema, and whether it takes a Spark handle;
    # null when deployed uninspected.
    arguments_schema: dict[str, Any] | None = wire("argumentsSchema", {
        "type": ["object", "null"],
        "description": "*sparkgate*: the arguments as JSON Schema (2020-12); null when stored "
                       "with force=true"})
    needs_spark: bool | None = wire("needsSpark", {
        "type": ["boolean", "null"],
        "description": "*sparkgate*: true for a Spark function (its first parameter takes a "
                       "Spark handle), which runs only in contexts of engine spark; false for "
                       "a plain function, which runs on any engine; null when stored with "
                       "force=true"})
    # Left out while off, so a function without it reads exactly as Mist's FunctionInfo.
    cache: str | Absent = wire("cache", STRING, optional=True, description=(
        "*sparkgate*: how long an identical call is answered with the result of the job that "
        "ran it instead of running again (docs/caching.md); left out: never"))

    @classmethod
    def of(cls, function: Function) -> FunctionInfo:
        signature = Signature.from_dict(function.signature) if function.signature else None
        return cls(name=function.name, lang=function.lang,
                   execute=signature.to_mist_execute() if signature else {},
                   tags=function.tags, path=function.path, class_name=function.class_name,
                   default_context=function.default_context,
                   arguments_schema=signature.to_json_schema() if signature else None,
                   needs_spark=signature.needs_spark if signature else None,
                   cache=ABSENT if function.cache_ms is None
                   else format_duration(function.cache_ms / 1000))


def _name(field: str) -> Reading:
    return Reading(NAME_STRING, lambda raw: checked_name(None if raw is ABSENT else raw, field))


def _read_class_name(raw: Any) -> str:
    parts = raw.split(".") if isinstance(raw, str) else []
    if not parts or not all(p.isidentifier() for p in parts):
        shown = None if raw is ABSENT else raw
        raise BadRequest(
            f"className: expected a Python function name (or package.module.function), "
            f"got {shown!r}", {"field": "className", "expected": "identifier", "got": shown},
        )
    return raw


def _read_default_context(raw: Any) -> str:
    # Any false value (left out, null, "") means `default`.
    return checked_name(DEFAULT_CONTEXT if raw is ABSENT or not raw else raw, "defaultContext")


def _read_lang(raw: Any) -> str:
    if raw is not ABSENT and raw != "python":
        raise BadRequest(f"lang: expected \"python\", got {raw!r}",
                         {"field": "lang", "expected": "python", "got": raw})
    return "python"


def _read_tags(raw: Any) -> list[str]:
    value = [] if raw is ABSENT else raw
    if not isinstance(value, list) or not all(isinstance(t, str) for t in value):
        raise BadRequest(f"tags: expected an array of strings, got {value!r}",
                         {"field": "tags", "expected": "array of strings", "got": value})
    return value


def _read_cache(raw: Any) -> int | None:
    """Milliseconds; off (None) for null, left out or 0. A cached result must go stale some
    day: Inf is refused."""
    if raw is ABSENT or raw is None:
        return None
    try:
        seconds = parse_duration(raw, "cache") if isinstance(raw, str) else None
    except ValueError:
        seconds = None
    if seconds is None:
        raise BadRequest(f"cache: expected a duration like 30s or 10min, got {raw!r}",
                         {"field": "cache", "expected": "a duration like 30s or 10min",
                          "got": raw})
    return round(seconds * 1000) or None


@dataclass(slots=True)
class FunctionDefinition:
    """What a request creates or replaces a function with: read field by field, each problem
    a 400 of its own (as Mist's clients are used to)."""

    name: str = wire("name", reads=_name("name"))
    path: str = wire("path", reads=_name("path"), description="an uploaded artifact")
    class_name: str = wire("className", reads=Reading(STRING, _read_class_name),
                           description="a top-level function of the artifact (identifier), "
                                       "or package.module.function")
    default_context: str = wire("defaultContext", optional=True, reads=Reading(
        {"type": ["string", "null"]}, _read_default_context),
        description="an existing context; `default` when left out, empty or null")
    lang: str = wire("lang", optional=True, reads=Reading({"const": "python"}, _read_lang))
    tags: list[str] = wire("tags", optional=True, reads=Reading(TAGS, _read_tags))
    cache_ms: int | None = wire("cache", optional=True, reads=Reading(
        {"type": ["string", "null"]}, _read_cache), description=(
        "*sparkgate*: answer an identical call within this time (`30s`, `10min`) with the "
        "result of the job that ran it, without running it again (docs/caching.md); null, "
        "left out or `0`: off"))


def function_definition(body: dict[str, Any]) -> FunctionDefinition:
    return read_each(FunctionDefinition, body, "function")


FUNCTION_INFO = schema_of(FunctionInfo, "Mist's FunctionInfo, plus argumentsSchema")
FUNCTION_DEFINITION = schema_of(FunctionDefinition)
