"""Functions: a callable in an artifact, with the context its jobs run in by default."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any

from sqlalchemy import Engine, delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from sparkgate.jobs import tables as t
from sparkgate.jobs.db import now_ms, writing
from sparkgate.jobs.errors import BadRequest, NotFound


@dataclass(frozen=True)
class Function:
    name: str
    path: str
    class_name: str
    default_context: str
    lang: str = "python"
    signature: dict[str, Any] | None = None
    tags: list[str] = field(default_factory=list)
    created_at: int = 0
    updated_at: int = 0
    # How long an identical call's result is reused (jobs/result_cache.py); None: never.
    cache_ms: int | None = None


class FunctionStore:
    """The catalog's functions; a part of ``Catalog``, which gives it the engine."""

    engine: Engine

    def list_functions(self) -> list[Function]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(t.functions).order_by(t.functions.c.name)).mappings()
            return [Function(**r) for r in rows]

    def get_function(self, name: str) -> Function:
        with self.engine.connect() as conn:
            row = conn.execute(
                select(t.functions).where(t.functions.c.name == name)
            ).mappings().first()
        if row is None:
            raise NotFound(f"function {name!r} does not exist", {"function": name})
        return Function(**row)

    def create_function(self, function: Function) -> Function:
        now = now_ms()
        function = replace(function, created_at=now, updated_at=now)
        try:
            with writing(self.engine) as conn:
                conn.execute(insert(t.functions).values(asdict(function)))
        except IntegrityError:
            raise BadRequest(
                f"function {function.name!r} already exists; use PUT to update it",
                {"function": function.name},
            ) from None
        return function

    def update_function(self, function: Function) -> Function:
        current = self.get_function(function.name)
        function = replace(function, created_at=current.created_at, updated_at=now_ms())
        values = asdict(function)
        with writing(self.engine) as conn:
            conn.execute(update(t.functions).where(t.functions.c.name == function.name)
                         .values(values))
        return function

    def delete_function(self, name: str) -> Function:
        function = self.get_function(name)
        with writing(self.engine) as conn:
            conn.execute(delete(t.functions).where(t.functions.c.name == name))
        return function
