"""A context on the wire: Mist's Context, plus sparkgate's job timeout defaults and health.

The fields a request sets carry the domain's attribute names (``downtime_s``), so what a body
sets replaces those of ``Context.from_defaults`` as it is.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Any

from sparkgate.gateway.redaction import REDACTED, Redaction
from sparkgate.gateway.wire.fields import Reading, read_present, schema_of, settable, wire
from sparkgate.gateway.wire.schema import (
    DURATION_TEXT,
    DURATION_VALUE,
    INT,
    NAME_STRING,
    STRING,
    WS,
    Schema,
    any_case,
    obj,
)
from sparkgate.jobs.booleans import STRICT_WORDS, parse_bool
from sparkgate.jobs.contexts import Context, Health
from sparkgate.jobs.durations import format_duration, parse_duration
from sparkgate.jobs.settings import ENGINES, ContextDefaults

WORKER_MODES = ("shared", "exclusive")
# Its column is a 32-bit integer of seconds (PostgreSQL refuses more: it was a 500).
MAX_STREAMING_S = 2**31 - 1


def _integer(low: int, high: int) -> Reading:
    def read(raw: Any) -> int:
        # ASCII digits only: isdigit() is also true of other scripts' digits and of "²".
        value = int(raw) if isinstance(raw, str) and re.fullmatch(r"\s*[0-9]+\s*", raw) else raw
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise ValueError(f"an integer from {low} to {high}")
        return value
    return Reading({"anyOf": [{"type": "integer", "minimum": low, "maximum": high},
                              {"type": "string", "pattern": rf"^{WS}*[0-9]+{WS}*$",
                               "description": f"digits, {low} to {high}"}]}, read)


def _read_bool(raw: Any) -> bool:
    try:
        return parse_bool(raw, strict=True)
    except ValueError:
        raise ValueError(" or ".join(STRICT_WORDS)) from None


_BOOLEAN = Reading({"anyOf": [{"type": "boolean"}, {
    "type": "string", "pattern": f"^({'|'.join(any_case(w) for w in STRICT_WORDS)})$"}]},
    _read_bool)


def _duration(schema: Schema, allow_inf: bool, max_s: int | None = None) -> Reading:
    def read(raw: Any) -> int | None:
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
    return Reading(schema, read)


_TIMEOUT = _duration(DURATION_VALUE, allow_inf=True)


def _read_spark_conf(raw: Any) -> dict[str, str]:
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


def _read_worker_mode(raw: Any) -> str:
    if raw not in WORKER_MODES:
        raise ValueError(" or ".join(WORKER_MODES))
    return raw


def _read_engine(raw: Any) -> str:
    if raw not in ENGINES:
        raise ValueError(" or ".join(ENGINES))
    return raw


def _read_text(raw: Any) -> str:
    # PostgreSQL text cannot hold NUL: refused here, not a 500 from the database.
    if not isinstance(raw, str) or "\x00" in raw:
        raise ValueError("a string without NUL characters")
    return raw


SPARK_CONF: Schema = {"type": "object", "additionalProperties": STRING}
WORKER_MODE: Schema = {"enum": list(WORKER_MODES)}
ENGINE: Schema = {"enum": list(ENGINES)}


@dataclass(slots=True)
class ContextInfo:
    name: str = wire("name", STRING)
    spark_conf: dict[str, str] = wire("sparkConf", SPARK_CONF, reads=Reading(
        {"type": "object", "additionalProperties": {"type": ["string", "number", "boolean"]}},
        _read_spark_conf))
    max_jobs: int = wire("maxJobs", INT, reads=_integer(1, 1000))
    worker_mode: str = wire("workerMode", WORKER_MODE, reads=Reading(WORKER_MODE,
                                                                     _read_worker_mode))
    precreated: bool = wire("precreated", {"type": "boolean"}, reads=_BOOLEAN)
    downtime_s: int | None = wire("downtime", STRING, show=format_duration, reads=_TIMEOUT)
    max_conn_failures: int = wire("maxConnFailures", INT, reads=_integer(1, 1000))
    run_options: str = wire("runOptions", STRING, reads=Reading(
        {"type": "string", "pattern": "^[^\\x00]*$", "description": "no NUL"}, _read_text))
    streaming_duration_s: int = wire("streamingDuration", STRING, show=format_duration,
                                     reads=_duration(
        {"anyOf": [{"type": "number", "minimum": 0, "maximum": MAX_STREAMING_S}, DURATION_TEXT],
         "description": f"finite, at most {MAX_STREAMING_S}s (68 years)"},
        allow_inf=False, max_s=MAX_STREAMING_S))
    # sparkgate's own: the engine, job timeout defaults, and how the context's workers are doing.
    engine: str = wire("engine", ENGINE, reads=Reading(ENGINE, _read_engine))
    start_timeout_s: int | None = wire("startTimeout", STRING, show=format_duration,
                                       reads=_TIMEOUT)
    perform_timeout_s: int | None = wire("performTimeout", STRING, show=format_duration,
                                         reads=_TIMEOUT)
    state: str = wire("state", {"enum": ["ok", "broken"]})
    worker_failures: int = wire("workerFailures", INT)
    last_failure: str | None = wire("lastFailure", {"type": ["string", "null"]})

    @classmethod
    def of(cls, context: Context, health: Health, redaction: Redaction) -> ContextInfo:
        return cls(
            name=context.name,
            spark_conf=redaction.shown(context.spark_conf),
            max_jobs=context.max_jobs,
            worker_mode=context.worker_mode,
            precreated=context.precreated,
            downtime_s=context.downtime_s,
            max_conn_failures=context.max_conn_failures,
            run_options=context.run_options,
            streaming_duration_s=context.streaming_duration_s,
            start_timeout_s=context.start_timeout_s,
            perform_timeout_s=context.perform_timeout_s,
            engine=context.engine,
            state="broken" if health.broken else "ok",
            worker_failures=health.failures,
            last_failure=health.last_failure,
        )


def context_from(body: dict[str, Any], name: str, defaults: ContextDefaults) -> Context:
    """Fields left out take the configured defaults (so a PUT is a full replacement)."""
    values = read_present(ContextInfo, body, f"context {name!r}", ignore=("name",))
    return replace(Context.from_defaults(name, defaults), **values)


CONTEXT = schema_of(ContextInfo, "Mist's Context, plus job timeout defaults and health")
CONTEXT_DEFINITION = obj({"name": NAME_STRING}, settable(ContextInfo),
                         description="fields left out take the configured context defaults")
CONTEXT_REPLACEMENT = obj({}, {"name": {**STRING, "description": "if given, the path's name"},
                               **settable(ContextInfo)})
