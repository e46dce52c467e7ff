"""Contexts: the engine and settings a worker is built with, and their workers' health."""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

from sqlalchemy import Engine, delete, exists, insert, select, update

from sparkgate.jobs import tables as t
from sparkgate.jobs.db import dialect_insert, now_ms, writing
from sparkgate.jobs.errors import BadRequest, Conflict, NotFound
from sparkgate.jobs.settings import ContextDefaults

DEFAULT_CONTEXT = "default"


@dataclass(frozen=True)
class Context:
    name: str
    spark_conf: dict[str, str]
    max_jobs: int
    worker_mode: str
    precreated: bool
    downtime_s: int | None
    max_conn_failures: int
    run_options: str
    streaming_duration_s: int
    created_at: int = 0
    updated_at: int = 0
    start_timeout_s: int | None = None
    perform_timeout_s: int | None = None
    engine: str = "spark"

    @classmethod
    def from_defaults(cls, name: str, defaults: ContextDefaults) -> Context:
        return cls(
            name=name,
            spark_conf=dict(defaults.spark_conf),
            max_jobs=defaults.max_jobs,
            worker_mode=defaults.worker_mode,
            precreated=defaults.precreated,
            downtime_s=_whole_seconds(defaults.downtime_s),
            max_conn_failures=defaults.max_conn_failures,
            run_options=defaults.run_options,
            streaming_duration_s=int(defaults.streaming_duration_s),
            start_timeout_s=_whole_seconds(defaults.start_timeout_s),
            perform_timeout_s=_whole_seconds(defaults.perform_timeout_s),
            engine=defaults.engine,
        )


@dataclass(frozen=True)
class Health:
    """A context's workers' record: failures in a row; broken once they reach the limit."""

    failures: int = 0
    last_failure: str | None = None
    broken_at: int | None = None

    @property
    def broken(self) -> bool:
        return self.broken_at is not None


def _whole_seconds(seconds: float | None) -> int | None:
    return None if seconds is None else max(1, round(seconds))


class ContextStore:
    """The catalog's contexts and their health; a part of ``Catalog``, which gives it the
    engine and the configured defaults (what ``default`` is until someone updates it)."""

    engine: Engine
    context_defaults: ContextDefaults

    def list_contexts(self) -> list[Context]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(t.contexts).order_by(t.contexts.c.name)).mappings()
            stored = [Context(**r) for r in rows]
        if not any(c.name == DEFAULT_CONTEXT for c in stored):
            stored.insert(0, Context.from_defaults(DEFAULT_CONTEXT, self.context_defaults))
        return stored

    def get_context(self, name: str) -> Context:
        with self.engine.connect() as conn:
            row = conn.execute(
                select(t.contexts).where(t.contexts.c.name == name)
            ).mappings().first()
        if row is not None:
            return Context(**row)
        if name == DEFAULT_CONTEXT:
            # Until someone updates it, `default` is the configured defaults themselves.
            return Context.from_defaults(DEFAULT_CONTEXT, self.context_defaults)
        raise NotFound(f"context {name!r} does not exist", {"context": name})

    def context_exists(self, name: str) -> bool:
        if name == DEFAULT_CONTEXT:
            return True
        with self.engine.connect() as conn:
            return bool(conn.execute(
                select(exists().where(t.contexts.c.name == name))
            ).scalar())

    def create_context(self, context: Context) -> Context:
        if self.context_exists(context.name):
            raise Conflict(f"context {context.name!r} already exists; use PUT to update it",
                           {"context": context.name})
        return self.save_context(context)

    def update_context(self, context: Context) -> Context:
        if not self.context_exists(context.name):
            raise NotFound(f"context {context.name!r} does not exist", {"context": context.name})
        return self.save_context(context)

    def save_context(self, context: Context) -> Context:
        """Create or replace, in one statement, so concurrent saves of one name all succeed."""
        now = now_ms()
        values = asdict(replace(context, created_at=now, updated_at=now))
        replaced = {k: v for k, v in values.items() if k not in ("name", "created_at")}
        with writing(self.engine) as conn:
            statement = dialect_insert(conn)(t.contexts).values(values)
            conn.execute(statement.on_conflict_do_update(index_elements=["name"], set_=replaced))
            # Updating a context is how an operator repairs it: its failure count starts over.
            conn.execute(delete(t.context_health).where(t.context_health.c.name == context.name))
            row = conn.execute(select(t.contexts).where(t.contexts.c.name == context.name))
            return Context(**row.mappings().one())

    def all_health(self) -> dict[str, Health]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(t.context_health)).mappings().all()
        return {r["name"]: Health(r["failures"], r["last_failure"], r["broken_at"])
                for r in rows}

    def health(self, name: str) -> Health:
        with self.engine.connect() as conn:
            row = conn.execute(
                select(t.context_health.c.failures, t.context_health.c.last_failure,
                       t.context_health.c.broken_at)
                .where(t.context_health.c.name == name)
            ).mappings().first()
        return Health(**row) if row else Health()

    def record_failure(self, name: str, reason: str, limit: int) -> Health:
        """One more worker failure in a row; the context breaks when ``limit`` is reached."""
        now = now_ms()
        with writing(self.engine) as conn:
            current = conn.execute(
                select(t.context_health.c.failures, t.context_health.c.broken_at)
                .where(t.context_health.c.name == name).with_for_update()
            ).first()
            failures = (current.failures if current else 0) + 1
            broken_at = (current.broken_at if current else None) or (
                now if failures >= limit else None)
            values = {"failures": failures, "last_failure": reason, "broken_at": broken_at,
                      "updated_at": now}
            if current is None:
                conn.execute(insert(t.context_health).values(name=name, **values))
            else:
                conn.execute(update(t.context_health)
                             .where(t.context_health.c.name == name).values(values))
        return Health(failures, reason, broken_at)

    def record_success(self, name: str) -> None:
        """A worker of the context did its work: the failures are no longer "in a row"."""
        with writing(self.engine) as conn:
            conn.execute(delete(t.context_health).where(
                t.context_health.c.name == name, t.context_health.c.broken_at.is_(None)))

    def delete_context(self, name: str) -> Context:
        if name == DEFAULT_CONTEXT:
            raise BadRequest("the default context cannot be deleted", {"context": name})
        context = self.get_context(name)
        with writing(self.engine) as conn:
            users = conn.execute(
                select(t.functions.c.name).where(t.functions.c.default_context == name)
            ).scalars().all()
            if users:
                raise Conflict(
                    f"context {name!r} is the default context of function(s) "
                    f"{', '.join(users)}; update them first",
                    {"context": name, "functions": list(users)},
                )
            conn.execute(delete(t.contexts).where(t.contexts.c.name == name))
            conn.execute(delete(t.context_health).where(t.context_health.c.name == name))
        return context
