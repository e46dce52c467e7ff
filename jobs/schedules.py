"""Schedules: a function called with fixed arguments at the times of a cron expression.

A schedule is saved whole (create, replace, delete; pausing is a replace with ``enabled``
false). Saving checks everything a submit would check, so a schedule whose ticks would all be
refused is refused at once: the function exists, may run on the context's engine, and takes
these arguments. Every save starts the schedule afresh from now: its next tick is the cron's
first time after the save, so ticks that fell while it was paused never run.

The tick state (``next_tick_ms``, ``held_tick_ms``) lives in the row and is written by the
scheduler (jobs/scheduler.py) with conditional updates that name the schedule's ``revision``:
a scheduler working from a definition that a save has since replaced changes nothing.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterBadDateError, CroniterError, croniter
from sqlalchemy import Connection, Engine, delete, func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from sparkgate.jobs import tables as t
from sparkgate.jobs.catalog import Catalog
from sparkgate.jobs.db import now_ms, writing
from sparkgate.jobs.errors import BadRequest, Conflict, InvalidArguments, NotFound
from sparkgate.jobs.submission import checked_arguments

#: What to do with the ticks that fell while no scheduler ran (every gateway stopped):
#: ``skip`` them, or run ``once`` for all of them (the latest) as soon as one runs again.
MISSED = ("once", "skip")
#: What a tick does while an earlier run of the schedule is still queued or running: ``skip``
#: (no job for this tick), ``queue`` (the tick waits, and runs when that run ends; while one
#: waits, further ticks are skipped) or ``cancel`` (the earlier run, then run).
OVERLAP = ("skip", "queue", "cancel")
DEFAULT_MISSED = "once"
DEFAULT_OVERLAP = "skip"
DEFAULT_TIMEZONE = "UTC"
# Six fields put the seconds first (Quartz, Spring); croniter puts them last unless told.
_FIELDS = (5, 6)


@dataclass(frozen=True)
class Cron:
    """A cron expression in a time zone: five fields, six with seconds first, or one of the
    ``@hourly``-style names. Times are epoch milliseconds; daylight saving time is the zone's:
    a time that does not exist that day runs at the first one after it, a time that exists
    twice runs once."""

    expression: str
    timezone: str

    @classmethod
    def parse(cls, expression: Any, timezone: Any) -> Cron:
        if not isinstance(timezone, str) or not _known_zone(timezone):
            raise BadRequest(f"timezone: expected an IANA time zone like UTC or Europe/Berlin, "
                             f"got {timezone!r}", {"field": "timezone", "expected": "time zone",
                                                   "got": repr(timezone)})
        expected = ("5 fields (minute hour day month weekday), 6 with seconds first, or "
                    "@yearly, @monthly, @weekly, @daily, @hourly")
        fields = expression.split() if isinstance(expression, str) else []
        named = len(fields) == 1 and fields[0].startswith("@")
        if not (named or len(fields) in _FIELDS) or "\x00" in str(expression):
            raise BadRequest(f"cron: expected {expected}, got {expression!r}",
                             {"field": "cron", "expected": expected, "got": repr(expression)})
        cron = cls(" ".join(fields), timezone)
        try:
            cron.next_after(now_ms())
        except CroniterBadDateError:
            raise BadRequest(f"cron: {expression!r} matches no date",
                             {"field": "cron", "expected": "a time that exists",
                              "got": expression}) from None
        except (CroniterError, ValueError, KeyError) as exc:
            raise BadRequest(f"cron: {expression!r} is not valid ({exc}); expected {expected}",
                             {"field": "cron", "expected": expected, "got": expression}) from None
        return cron

    def next_after(self, ms: int) -> int:
        """The first time after ``ms``."""
        return _ms(self._iterator(ms).get_next(datetime))

    def at_or_before(self, ms: int) -> int:
        """The last time at or before ``ms``."""
        return _ms(self._iterator(ms + 1).get_prev(datetime))

    def upcoming(self, after_ms: int, count: int) -> list[int]:
        iterator = self._iterator(after_ms)
        return [_ms(iterator.get_next(datetime)) for _ in range(count)]

    def _iterator(self, ms: int) -> croniter:
        start = datetime.fromtimestamp(ms / 1000, _zone(self.timezone))
        return croniter(self.expression, start,
                        second_at_beginning=len(self.expression.split()) == 6)


@functools.lru_cache(maxsize=256)
def _zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def _known_zone(name: str) -> bool:
    try:
        _zone(name)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True


def _ms(moment: datetime) -> int:
    return round(moment.timestamp() * 1000)


@dataclass(frozen=True)
class Definition:
    """What a user sets."""

    name: str
    function: str
    cron: str
    arguments: dict[str, Any] = field(default_factory=dict)
    context: str | None = None
    timezone: str = DEFAULT_TIMEZONE
    enabled: bool = True
    missed: str = DEFAULT_MISSED
    overlap: str = DEFAULT_OVERLAP


@dataclass(frozen=True)
class Schedule:
    definition: Definition
    saved_by: str
    created_at: int
    updated_at: int
    revision: int
    next_tick_ms: int | None
    held_tick_ms: int | None
    last_error: str | None
    last_error_ms: int | None

    @property
    def name(self) -> str:
        return self.definition.name

    @property
    def cron(self) -> Cron:
        return Cron(self.definition.cron, self.definition.timezone)

    @property
    def submitter(self) -> str:
        """Who its ticks' jobs are submitted as."""
        return f"schedule:{self.name}"

    @classmethod
    def from_row(cls, row: Any) -> Schedule:
        values = dict(row)
        definition = Definition(**{name: values.pop(name) for name in _DEFINITION})
        return cls(definition=definition, **values)


_DEFINITION = ("name", "function", "cron", "arguments", "context", "timezone", "enabled",
               "missed", "overlap")


class ScheduleBook:
    """The schedules in the database: saved by the API, read and advanced by the scheduler."""

    def __init__(self, engine: Engine, catalog: Catalog) -> None:
        self.engine = engine
        self.catalog = catalog

    def list_schedules(self) -> list[Schedule]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(t.schedules).order_by(t.schedules.c.name)).mappings()
            return [Schedule.from_row(r) for r in rows]

    def get(self, name: str) -> Schedule:
        with self.engine.connect() as conn:
            return _get(conn, name)

    def create(self, definition: Definition, by: str) -> Schedule:
        with writing(self.engine) as conn:
            checked = self._checked(conn, definition)
            now = now_ms()
            row = {**_definition_row(checked), "saved_by": by, "created_at": now,
                   "updated_at": now, "revision": 1, "next_tick_ms": _first_tick(checked, now)}
            try:
                conn.execute(insert(t.schedules), row)
            except IntegrityError:
                raise _exists(definition.name) from None
        return self.get(definition.name)

    def replace(self, definition: Definition, by: str) -> Schedule:
        with writing(self.engine) as conn:
            checked = self._checked(conn, definition)
            now = now_ms()
            changed = conn.execute(
                update(t.schedules).where(t.schedules.c.name == definition.name)
                .values(**_definition_row(checked), saved_by=by, updated_at=now,
                        revision=t.schedules.c.revision + 1,
                        next_tick_ms=_first_tick(checked, now), held_tick_ms=None,
                        last_error=None, last_error_ms=None))
            if not changed.rowcount:
                raise _not_found(definition.name)
        return self.get(definition.name)

    def delete(self, name: str) -> Schedule:
        with writing(self.engine) as conn:
            schedule = _get(conn, name)
            conn.execute(delete(t.schedules).where(t.schedules.c.name == name))
        return schedule

    def checked_arguments(self, conn: Connection, definition: Definition) -> dict[str, Any]:
        """The arguments as a tick's job would get them; raises as that submit would."""
        target = self.catalog.submission_target(conn, definition.function, definition.context)
        try:
            return checked_arguments(target, definition.arguments)
        except InvalidArguments as exc:
            problems = [{**p, "field": f"arguments.{p['field']}"} for p in exc.details or []]
            raise InvalidArguments(f"schedule {definition.name!r}: arguments: {exc.message}",
                                   problems) from None

    def _checked(self, conn: Connection, definition: Definition) -> Definition:
        Cron.parse(definition.cron, definition.timezone)
        return replace(definition, arguments=self.checked_arguments(conn, definition))

    # -- the scheduler's side ----------------------------------------------------------------

    def due(self, now: int) -> list[Schedule]:
        """Enabled schedules with a tick at or before ``now``, or a tick waiting (overlap
        ``queue``)."""
        c = t.schedules.c
        statement = select(t.schedules).where(
            c.enabled, or_(c.next_tick_ms <= now, c.held_tick_ms.is_not(None))
        ).order_by(c.next_tick_ms)
        with self.engine.connect() as conn:
            return [Schedule.from_row(r) for r in conn.execute(statement).mappings()]

    def earliest_tick(self) -> int | None:
        c = t.schedules.c
        with self.engine.connect() as conn:
            return conn.execute(select(func.min(c.next_tick_ms)).where(c.enabled)).scalar()

    def advance(self, schedule: Schedule, next_tick_ms: int, held_tick_ms: int | None,
                error: str | None = None) -> bool:
        """Record that ``schedule``'s ticks before ``next_tick_ms`` are handled, and which one
        waits; false (nothing written) if a save or another scheduler got there first."""
        c = t.schedules.c
        values: dict[str, Any] = {"next_tick_ms": next_tick_ms, "held_tick_ms": held_tick_ms}
        if error is not None:
            values.update(last_error=error, last_error_ms=now_ms())
        with writing(self.engine) as conn:
            changed = conn.execute(
                update(t.schedules).where(
                    c.name == schedule.name, c.revision == schedule.revision,
                    c.next_tick_ms == schedule.next_tick_ms,
                    _same(c.held_tick_ms, schedule.held_tick_ms),
                ).values(**values))
        return bool(changed.rowcount)


def _same(column: Any, value: int | None) -> Any:
    return column.is_(None) if value is None else column == value


def _get(conn: Connection, name: str) -> Schedule:
    row = conn.execute(select(t.schedules).where(t.schedules.c.name == name)).mappings().first()
    if row is None:
        raise _not_found(name)
    return Schedule.from_row(row)


def _definition_row(definition: Definition) -> dict[str, Any]:
    return {name: getattr(definition, name) for name in _DEFINITION}


def _first_tick(definition: Definition, now: int) -> int | None:
    if not definition.enabled:
        return None
    return Cron(definition.cron, definition.timezone).next_after(now)


def _not_found(name: str) -> NotFound:
    return NotFound(f"schedule {name!r} does not exist", {"schedule": name})


def _exists(name: str) -> Conflict:
    return Conflict(f"schedule {name!r} exists already; replace it with PUT "
                    f"/v2/api/schedules/{name}", {"schedule": name})
