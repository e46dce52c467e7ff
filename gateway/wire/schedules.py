"""A schedule on the wire: what ``POST``/``PUT /v2/api/schedules`` take, and what they, the
listing and ``GET /v2/api/schedules/{name}`` answer (the definition, its next runs, the tick
waiting for an earlier run, its last refusal, and in ``GET`` of one, its last jobs)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sparkgate.gateway.wire.fields import (
    ABSENT,
    Absent,
    Reading,
    read_present,
    schema_of,
    settable,
    wire,
)
from sparkgate.gateway.wire.schema import NAME_STRING, STRING, TIME_MS, array, obj
from sparkgate.jobs.errors import BadRequest
from sparkgate.jobs.schedules import (
    DEFAULT_MISSED,
    DEFAULT_OVERLAP,
    DEFAULT_TIMEZONE,
    MISSED,
    OVERLAP,
    Definition,
    Schedule,
)

NEXT_RUNS = 5


def _read_name(raw: Any) -> str:
    if not isinstance(raw, str) or not raw or "\x00" in raw:
        raise ValueError("a function's name")
    return raw


def _read_text(raw: Any) -> str:
    if not isinstance(raw, str) or not raw.strip() or "\x00" in raw:
        raise ValueError("a non-empty string without NUL characters")
    return raw


def _read_arguments(raw: Any) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise ValueError("an object of the function's arguments")
    return raw


def _read_context(raw: Any) -> str | None:
    if raw is None:
        return None
    return _read_name(raw)


def _read_bool(raw: Any) -> bool:
    if not isinstance(raw, bool):
        raise ValueError("true or false")
    return raw


def _choice(words: tuple[str, ...], default: str) -> Reading:
    def read(raw: Any) -> str:
        if raw not in words:
            raise ValueError(" or ".join(words))
        return raw
    return Reading({"enum": list(words), "default": default}, read)


_FUNCTION = Reading({"type": "string", "minLength": 1, "pattern": "^[^\\x00]*$"}, _read_name)
_CONTEXT = Reading({"type": ["string", "null"], "minLength": 1, "pattern": "^[^\\x00]*$",
                    "description": "null or left out: the function's default context"},
                   _read_context)
_CRON = Reading({"type": "string", "pattern": "^[^\\x00]*\\S[^\\x00]*$",
                 "description": "5 fields (minute hour day month weekday), 6 with seconds "
                                "first, or @yearly, @monthly, @weekly, @daily, @hourly"},
                _read_text)
_TIMEZONE = Reading({"type": "string", "default": DEFAULT_TIMEZONE,
                     "description": "an IANA time zone: the cron's times are its wall-clock "
                                    "times"}, _read_text)
_JOB_BRIEF = obj({"id": STRING, "status": STRING, "createTime": TIME_MS},
                 {"startTime": TIME_MS, "endTime": TIME_MS})
_ERROR = obj({"message": STRING, "time": TIME_MS},
             description="why the last refused tick was refused (the function was deleted, "
                         "its arguments no longer fit); cleared by a save")


@dataclass(slots=True)
class ScheduleInfo:
    name: str = wire("name", NAME_STRING)
    function: str = wire("function", STRING, reads=_FUNCTION)
    arguments: dict[str, Any] = wire("arguments", {"type": "object"}, reads=Reading(
        {"type": "object", "default": {},
         "description": "the function's arguments, checked as a submit's are"},
        _read_arguments))
    context: str | None = wire("context", {"type": ["string", "null"]}, reads=_CONTEXT)
    cron: str = wire("cron", STRING, reads=_CRON)
    timezone: str = wire("timezone", STRING, reads=_TIMEZONE)
    enabled: bool = wire("enabled", {"type": "boolean"}, reads=Reading(
        {"type": "boolean", "default": True, "description": "false: paused, no jobs"},
        _read_bool))
    missed: str = wire("missed", {"enum": list(MISSED)}, reads=_choice(MISSED, DEFAULT_MISSED))
    overlap: str = wire("overlap", {"enum": list(OVERLAP)},
                        reads=_choice(OVERLAP, DEFAULT_OVERLAP))
    saved_by: str = wire("savedBy", STRING)
    created_at: int = wire("createdAt", TIME_MS)
    updated_at: int = wire("updatedAt", TIME_MS)
    next_runs: list[int] = wire("nextRuns", array(TIME_MS), description=(
        f"the next {NEXT_RUNS} ticks, the first one possibly due; empty while paused"))
    waiting: int | None = wire("waiting", {"type": ["integer", "null"], "description": (
        "overlap `queue`: the tick waiting for an earlier run to end")})
    last_error: dict[str, Any] | None = wire("lastError", {"anyOf": [_ERROR, {"type": "null"}]})
    last_jobs: list[dict[str, Any]] | Absent = wire("lastJobs", array(_JOB_BRIEF),
                                                    optional=True, description=(
        "GET of one schedule: its latest jobs, newest first (all: "
        "`GET /v2/api/jobs?schedule=`)"))

    @classmethod
    def of(cls, schedule: Schedule, last_jobs: list[dict[str, Any]] | None = None
           ) -> ScheduleInfo:
        d = schedule.definition
        next_runs: list[int] = []
        if schedule.next_tick_ms is not None:
            next_runs = [schedule.next_tick_ms,
                         *schedule.cron.upcoming(schedule.next_tick_ms, NEXT_RUNS - 1)]
        error = None if schedule.last_error is None else {
            "message": schedule.last_error, "time": schedule.last_error_ms}
        return cls(d.name, d.function, d.arguments, d.context, d.cron, d.timezone, d.enabled,
                   d.missed, d.overlap, schedule.saved_by, schedule.created_at,
                   schedule.updated_at, next_runs, schedule.held_tick_ms, error,
                   ABSENT if last_jobs is None else last_jobs)


def definition_from(body: dict[str, Any], name: str) -> Definition:
    """A whole definition: ``function`` and ``cron`` are required; the rest take defaults."""
    values = read_present(ScheduleInfo, body, f"schedule {name!r}", ignore=("name",))
    missing = [field for field in ("function", "cron") if field not in values]
    if missing:
        raise BadRequest(f"schedule {name!r}: {', '.join(missing)} missing",
                         {"field": missing[0], "expected": "present", "got": "nothing"})
    return Definition(name=name, **values)


SCHEDULE = schema_of(ScheduleInfo, "a schedule: its definition, next runs and state")
_SETTABLE = settable(ScheduleInfo)
SCHEDULE_DEFINITION = obj(
    {"name": NAME_STRING, "function": _SETTABLE["function"], "cron": _SETTABLE["cron"]},
    {k: v for k, v in _SETTABLE.items() if k not in ("function", "cron")},
    description="fields left out take their defaults")
SCHEDULE_REPLACEMENT = obj(
    {"function": _SETTABLE["function"], "cron": _SETTABLE["cron"]},
    {"name": {**STRING, "description": "if given, the path's name"},
     **{k: v for k, v in _SETTABLE.items() if k not in ("function", "cron")}},
    description="the whole definition: fields left out take their defaults")
