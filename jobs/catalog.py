"""What can be run: artifacts (code), functions (a callable in an artifact) and contexts
(the Spark settings a worker is built with). Jobs live in ``jobs.store``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from sqlalchemy import Connection, Engine, delete, exists, insert, literal, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError

from sparkgate.jobs import tables as t
from sparkgate.jobs.db import now_ms, writing
from sparkgate.jobs.errors import BadRequest, Conflict, NotFound
from sparkgate.jobs.settings import ContextDefaults

DEFAULT_CONTEXT = "default"


@dataclass(frozen=True)
class Artifact:
    name: str
    sha1: str
    size: int
    created_at: int
    updated_at: int


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


class Catalog:
    def __init__(self, engine: Engine, context_defaults: ContextDefaults) -> None:
        self.engine = engine
        self.context_defaults = context_defaults

    # -- artifacts ---------------------------------------------------------------------------

    def list_artifacts(self) -> list[Artifact]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(t.artifacts).order_by(t.artifacts.c.name)).mappings()
            return [Artifact(**r) for r in rows]

    def get_artifact(self, name: str) -> Artifact:
        with self.engine.connect() as conn:
            row = conn.execute(
                select(t.artifacts).where(t.artifacts.c.name == name)
            ).mappings().first()
        if row is None:
            raise NotFound(f"artifact {name!r} does not exist", {"artifact": name})
        return Artifact(**row)

    def put_artifact(self, name: str, content: bytes, replace_existing: bool,
                     signatures: Mapping[str, dict[str, Any] | None] | None = None) -> Artifact:
        """Store ``content`` as ``name``; 409 if the name is taken unless ``replace_existing``.

        ``signatures``: function name -> its signature read from the new content, written in
        the same transaction so a function's schema always matches its artifact's code.
        """
        sha1 = hashlib.sha1(content).hexdigest()
        now = now_ms()
        try:
            with writing(self.engine) as conn:
                created = self._put_artifact(conn, name, sha1, content, replace_existing, now)
                for function, signature in (signatures or {}).items():
                    conn.execute(update(t.functions).where(t.functions.c.name == function)
                                 .values(signature=signature, updated_at=now))
        except IntegrityError:  # a concurrent upload of the same new name won the insert
            raise Conflict(f"artifact {name!r} was uploaded concurrently; retry",
                           {"artifact": name}) from None
        return Artifact(name=name, sha1=sha1, size=len(content), created_at=created, updated_at=now)

    def _put_artifact(self, conn: Connection, name: str, sha1: str, content: bytes,
                      replace_existing: bool, now: int) -> int:
        """The row's creation time."""
        existing = conn.execute(
            select(t.artifacts.c.created_at).where(t.artifacts.c.name == name)
        ).first()
        if existing is not None and not replace_existing:
            raise Conflict(
                f"artifact {name!r} already exists; upload with force=true to replace it",
                {"artifact": name},
            )
        self._put_blob(conn, sha1, content, now)
        values = {"sha1": sha1, "size": len(content), "updated_at": now}
        if existing is None:
            conn.execute(insert(t.artifacts).values(name=name, created_at=now, **values))
            return now
        conn.execute(update(t.artifacts).where(t.artifacts.c.name == name).values(values))
        return existing.created_at

    @staticmethod
    def _put_blob(conn: Connection, sha1: str, content: bytes, now: int) -> None:
        # Same content uploaded twice at once: both may find no blob; the second insert is a
        # no-op, not an error.
        conn.execute(
            _dialect_insert(conn)(t.artifact_blobs)
            .values(sha1=sha1, size=len(content), content=content, created_at=now)
            .on_conflict_do_nothing(index_elements=["sha1"])
        )

    def artifact_content(self, sha1: str) -> bytes:
        with self.engine.connect() as conn:
            content = conn.execute(
                select(t.artifact_blobs.c.content).where(t.artifact_blobs.c.sha1 == sha1)
            ).scalar()
        if content is None:
            raise NotFound(f"no artifact content with sha1 {sha1}", {"sha1": sha1})
        return bytes(content)

    def delete_artifact(self, name: str) -> Artifact:
        artifact = self.get_artifact(name)
        with writing(self.engine) as conn:
            users = conn.execute(
                select(t.functions.c.name).where(t.functions.c.path == name)
            ).scalars().all()
            if users:
                raise Conflict(
                    f"artifact {name!r} is used by function(s) {', '.join(users)}; "
                    "delete or update them first",
                    {"artifact": name, "functions": list(users)},
                )
            conn.execute(delete(t.artifacts).where(t.artifacts.c.name == name))
        # The blob stays: queued jobs may still need it by sha.
        return artifact

    # -- functions ---------------------------------------------------------------------------

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

    # -- contexts ----------------------------------------------------------------------------

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
            statement = _dialect_insert(conn)(t.contexts).values(values)
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


    # -- what a submit reads -----------------------------------------------------------------

    def submission_target(self, conn: Connection, function: str,
                          context: str | None) -> SubmissionTarget:
        """The function, the context its job would run in (``context``, else the function's
        default), its artifact's current sha and the context's health: one statement, so a
        submit reads the catalog in a single round trip."""
        f, a, c, h = t.functions, t.artifacts, t.contexts, t.context_health
        context_name = f.c.default_context if context is None else literal(context)
        statement = (
            select(f, a.c.sha1.label("artifact_sha1"),
                   *(col.label("context_" + col.name) for col in c.c),
                   *(col.label("health_" + col.name) for col in h.c if col.name != "name"),
                   context_name.label("target_context"))
            .select_from(f.outerjoin(a, a.c.name == f.c.path)
                         .outerjoin(c, c.c.name == context_name)
                         .outerjoin(h, h.c.name == context_name))
            .where(f.c.name == function)
        )
        row = conn.execute(statement).mappings().first()
        if row is None:
            raise NotFound(f"function {function!r} does not exist", {"function": function})
        found = Function(**{col.name: row[col.name] for col in f.c})
        name = row["target_context"]
        if row["context_name"] is not None:
            target = Context(**{col.name: row["context_" + col.name] for col in c.c})
        elif name == DEFAULT_CONTEXT:
            target = Context.from_defaults(DEFAULT_CONTEXT, self.context_defaults)
        else:
            raise BadRequest(f"context: context {name!r} does not exist",
                             {"field": "context", "got": name})
        if row["artifact_sha1"] is None:
            raise NotFound(f"artifact {found.path!r} does not exist", {"artifact": found.path})
        health = Health(row["health_failures"] or 0, row["health_last_failure"],
                        row["health_broken_at"])
        return SubmissionTarget(found, target, row["artifact_sha1"], health)


@dataclass(frozen=True)
class SubmissionTarget:
    function: Function
    context: Context
    artifact_sha1: str
    health: Health


def _dialect_insert(conn: Connection) -> Any:
    """INSERT with ON CONFLICT, which both SQLite and PostgreSQL have (each its own class)."""
    return pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
