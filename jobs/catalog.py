"""What can be run, in one place: artifacts (code), functions (a callable in an artifact) and
contexts (the Spark settings a worker is built with), each stored by its own module, and the
one read a submit makes of all three. Jobs live in ``jobs.store``.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from sqlalchemy import Connection, Dialect, Engine, String, bindparam, select

from sparkgate.jobs import tables as t
from sparkgate.jobs.artifacts import ArtifactStore
from sparkgate.jobs.contexts import DEFAULT_CONTEXT, Context, ContextStore, Health
from sparkgate.jobs.driver_sql import DriverSelect, compiled_select
from sparkgate.jobs.errors import BadRequest, NotFound
from sparkgate.jobs.functions import Function, FunctionStore
from sparkgate.jobs.placement import check_placement
from sparkgate.jobs.settings import ContextDefaults
from sparkgate.jobs.signatures.model import Signature


class Catalog(ArtifactStore, FunctionStore, ContextStore):
    """One object over the three stores, the one that the gateway and workers hold: a submit
    and a deployment each read and write more than one of them."""

    def __init__(self, engine: Engine, context_defaults: ContextDefaults) -> None:
        self.engine = engine
        self.context_defaults = context_defaults

    def update_context(self, context: Context) -> Context:
        """Refused (WrongEngine, field ``engine``) if a function whose default context this is
        could no longer run in it: a Spark function, when the engine changes to python."""
        for function in self.list_functions():
            if function.default_context == context.name and function.signature is not None:
                check_placement(function.name, Signature.from_dict(function.signature),
                                context, "engine")
        return super().update_context(context)

    def submission_target(self, conn: Connection, function: str,
                          context: str | None) -> SubmissionTarget:
        """The function, the context its job would run in (``context``, else the function's
        default), its artifact's current sha and the context's health: one statement, so a
        submit reads the catalog in a single round trip."""
        given = {"function": function} if context is None else {
            "function": function, "context": context}
        statement = _target_statement(conn.dialect, given_context=context is not None)
        rows = statement.rows(conn, given)
        row = rows[0] if rows else None
        if row is None:
            raise NotFound(f"function {function!r} does not exist", {"function": function})
        found = Function(**{col.name: row[col.name] for col in t.functions.c})
        name = row["target_context"]
        if row["context_name"] is not None:
            target = Context(**{col.name: row["context_" + col.name] for col in t.contexts.c})
        elif name == DEFAULT_CONTEXT:
            target = Context.from_defaults(DEFAULT_CONTEXT, self.context_defaults)
        else:
            raise BadRequest(f"context: context {name!r} does not exist",
                             {"field": "context", "got": name})
        if row["artifact_sha1"] is None:
            raise NotFound(f"artifact {found.path!r} does not exist", {"artifact": found.path})
        health = Health(row["health_failures"] or 0, row["health_last_failure"],
                        row["health_broken_at"])
        return SubmissionTarget(found, target, row["artifact_sha1"], health,
                                row["artifact_environment"])


@functools.lru_cache(maxsize=8)
def _target_statement(dialect: Dialect, given_context: bool) -> DriverSelect:
    """Compiled once per shape and run on the driver's cursor (jobs/driver_sql.py): through
    SQLAlchemy's execution it cost a submit more than the database took to run it."""
    f, a, c, h = t.functions, t.artifacts, t.contexts, t.context_health
    context_name = bindparam("context", type_=String) if given_context else f.c.default_context
    return compiled_select(
        select(f, a.c.sha1.label("artifact_sha1"), a.c.environment.label("artifact_environment"),
               *(col.label("context_" + col.name) for col in c.c),
               *(col.label("health_" + col.name) for col in h.c if col.name != "name"),
               context_name.label("target_context"))
        .select_from(f.outerjoin(a, a.c.name == f.c.path)
                     .outerjoin(c, c.c.name == context_name)
                     .outerjoin(h, h.c.name == context_name))
        .where(f.c.name == bindparam("function")),
        dialect,
    )


@dataclass(frozen=True)
class SubmissionTarget:
    function: Function
    context: Context
    artifact_sha1: str
    health: Health
    # The environment its artifact's functions run in (jobs/environments.py); None: the base.
    environment: str | None = None
