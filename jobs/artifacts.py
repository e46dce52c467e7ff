"""Artifacts: uploaded code under a name, its content stored once per sha1 (a blob)."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from sparkgate.jobs import tables as t
from sparkgate.jobs.db import dialect_insert, now_ms, writing
from sparkgate.jobs.errors import Conflict, NotFound
from sparkgate.jobs.requirements import environment_id, python_version, requirements_text


@dataclass(frozen=True)
class Artifact:
    name: str
    sha1: str
    size: int
    created_at: int
    updated_at: int
    # Normalized requirement lines, one a line (None: none), and the environment they make.
    requirements: str | None = None
    environment: str | None = None

    @property
    def requirement_lines(self) -> list[str]:
        return self.requirements.splitlines() if self.requirements else []


class ArtifactStore:
    """The catalog's artifacts; a part of ``Catalog``, which gives it the engine."""

    engine: Engine

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
                     signatures: Mapping[str, dict[str, Any] | None] | None = None,
                     requirements: Sequence[str] = ()) -> Artifact:
        """Store ``content`` as ``name``; 409 if the name is taken unless ``replace_existing``.

        ``signatures``: function name -> its signature read from the new content, written in
        the same transaction so a function's schema always matches its artifact's code.
        ``requirements``: its normalized requirement lines (jobs/requirements.py).
        """
        sha1 = hashlib.sha1(content).hexdigest()
        now = now_ms()
        env = _Environment(requirements_text(requirements), environment_id(requirements))
        try:
            with writing(self.engine) as conn:
                created = self._put_artifact(conn, name, sha1, content, replace_existing, now,
                                             env)
                for function, signature in (signatures or {}).items():
                    conn.execute(update(t.functions).where(t.functions.c.name == function)
                                 .values(signature=signature, updated_at=now))
        except IntegrityError:  # a concurrent upload of the same new name won the insert
            raise Conflict(f"artifact {name!r} was uploaded concurrently; retry",
                           {"artifact": name}) from None
        return Artifact(name=name, sha1=sha1, size=len(content), created_at=created,
                        updated_at=now, requirements=env.requirements, environment=env.id)

    def _put_artifact(self, conn: Connection, name: str, sha1: str, content: bytes,
                      replace_existing: bool, now: int, env: _Environment) -> int:
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
        _put_environment(conn, env, now)
        values = {"sha1": sha1, "size": len(content), "updated_at": now,
                  "requirements": env.requirements, "environment": env.id}
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
            dialect_insert(conn)(t.artifact_blobs)
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

    def environment_requirements(self, environment: str) -> list[str]:
        """The requirement lines environment ``environment`` is built from."""
        with self.engine.connect() as conn:
            text = conn.execute(select(t.environments.c.requirements)
                                .where(t.environments.c.id == environment)).scalar()
        if text is None:
            raise NotFound(f"environment {environment!r} does not exist",
                           {"environment": environment})
        return text.splitlines()

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


@dataclass(frozen=True)
class _Environment:
    requirements: str | None
    id: str | None


def _put_environment(conn: Connection, env: _Environment, now: int) -> None:
    """Environments are kept for good: a queued job may name one that no artifact has now."""
    if env.id is None or env.requirements is None:
        return
    conn.execute(dialect_insert(conn)(t.environments)
                 .values(id=env.id, requirements=env.requirements, python=python_version(),
                         created_at=now)
                 .on_conflict_do_nothing(index_elements=["id"]))
