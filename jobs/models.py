"""The model store: objects saved under a name, one version per distinct content (its SHA-256),
one version of each name live, promoted and rolled back by pointing at another version.

The store holds bytes and never unpickles them: only ``sparkgate.models`` does, inside a
worker (docs/models.md, the trust boundary). The bytes are kept once per content, like
artifacts' blobs.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, func, select, update

from sparkgate.jobs import tables as t
from sparkgate.jobs.db import dialect_insert, now_ms, writing
from sparkgate.jobs.errors import Conflict, NotFound, PayloadTooLarge
from sparkgate.jobs.settings import Settings


@dataclass(frozen=True)
class Model:
    name: str
    #: The live version's sha256; None until one is made live.
    live: str | None
    versions: int
    created_at: int
    updated_at: int


@dataclass(frozen=True)
class ModelVersion:
    name: str
    sha256: str
    size: int
    created_at: int
    created_by: str
    #: When it last became live; None: never.
    promoted_at: int | None


_VERSION_COLUMNS = (t.model_versions.c.name, t.model_versions.c.sha256, t.model_versions.c.size,
                    t.model_versions.c.created_at, t.model_versions.c.created_by,
                    t.model_versions.c.promoted_at)


class ModelStore:
    def __init__(self, engine: Engine, max_bytes: int = Settings.max_model_bytes) -> None:
        self.engine = engine
        self.max_bytes = max_bytes

    def list_models(self) -> list[Model]:
        m, v = t.models, t.model_versions
        counts = (select(v.c.name, func.count().label("versions")).group_by(v.c.name)
                  .subquery())
        statement = (select(m, func.coalesce(counts.c.versions, 0).label("versions"))
                     .select_from(m.outerjoin(counts, counts.c.name == m.c.name))
                     .order_by(m.c.name))
        with self.engine.connect() as conn:
            return [_model(row) for row in conn.execute(statement).mappings()]

    def get_model(self, name: str) -> Model:
        with self.engine.connect() as conn:
            row = conn.execute(select(t.models).where(t.models.c.name == name)).mappings().first()
            if row is None:
                raise _no_model(name)
            versions = conn.execute(select(func.count()).select_from(t.model_versions)
                                    .where(t.model_versions.c.name == name)).scalar_one()
        return _model({**row, "versions": versions})

    def live_version(self, name: str) -> str | None:
        """The live version's sha256: one primary-key read, what workers poll."""
        with self.engine.connect() as conn:
            row = conn.execute(select(t.models.c.live_sha256)
                               .where(t.models.c.name == name)).first()
        if row is None:
            raise _no_model(name)
        return row.live_sha256

    def versions(self, name: str) -> list[ModelVersion]:
        """Newest first; none for a model that does not exist (``get_model`` says 404)."""
        v = t.model_versions
        with self.engine.connect() as conn:
            rows = conn.execute(select(*_VERSION_COLUMNS).where(v.c.name == name)
                                .order_by(v.c.created_at.desc(), v.c.sha256)).mappings()
            return [ModelVersion(**r) for r in rows]

    def save(self, name: str, content: bytes, created_by: str, live: bool = True) -> ModelVersion:
        """Store ``content`` as a version of ``name`` (created if new), and make it live unless
        ``live`` is false. The same content saved again is the same version (its first
        ``created_by`` kept)."""
        if len(content) > self.max_bytes:
            raise PayloadTooLarge(f"model {name!r}: {len(content)} bytes is over the limit of "
                                  f"{self.max_bytes} bytes (max_model_bytes)",
                                  {"field": "model", "limit": self.max_bytes,
                                   "size": len(content)})
        sha256 = hashlib.sha256(content).hexdigest()
        now = now_ms()
        with writing(self.engine) as conn:
            insert = dialect_insert(conn)
            # Concurrent saves of one new name or one content: the later insert is a no-op.
            conn.execute(insert(t.model_blobs).values(sha256=sha256, size=len(content),
                                                      content=content, created_at=now)
                         .on_conflict_do_nothing(index_elements=["sha256"]))
            conn.execute(insert(t.models).values(name=name, live_sha256=None, created_at=now,
                                                 updated_at=now)
                         .on_conflict_do_nothing(index_elements=["name"]))
            conn.execute(insert(t.model_versions).values(
                name=name, sha256=sha256, size=len(content), created_at=now,
                created_by=created_by, promoted_at=None,
            ).on_conflict_do_nothing(index_elements=["name", "sha256"]))
            if live:
                _make_live(conn, name, sha256, now)
            return _version(conn, name, sha256)

    def promote(self, name: str, sha256: str) -> ModelVersion:
        """Make version ``sha256`` of ``name`` the live one (a newer one, or an older one back)."""
        with writing(self.engine) as conn:
            _version(conn, name, sha256)  # 404 before anything changes
            _make_live(conn, name, sha256, now_ms())
            return _version(conn, name, sha256)

    def roll_back(self, name: str) -> ModelVersion:
        """Make live again the version that was live before the live one."""
        v = t.model_versions
        with writing(self.engine) as conn:
            live = conn.execute(select(t.models.c.live_sha256)
                                .where(t.models.c.name == name)).first()
            if live is None:
                raise _no_model(name)
            previous = conn.execute(
                select(v.c.sha256).where(v.c.name == name, v.c.promoted_at.is_not(None),
                                         v.c.sha256 != (live.live_sha256 or ""))
                .order_by(v.c.promoted_at.desc()).limit(1)
            ).scalar()
            if previous is None:
                raise Conflict(f"model {name!r} has no earlier live version to roll back to",
                               {"model": name, "live": live.live_sha256})
            _make_live(conn, name, previous, now_ms())
            return _version(conn, name, previous)

    def content(self, name: str, sha256: str) -> bytes:
        """The bytes of version ``sha256`` of ``name``."""
        v, b = t.model_versions, t.model_blobs
        with self.engine.connect() as conn:
            content = conn.execute(
                select(b.c.content).select_from(b.join(v, v.c.sha256 == b.c.sha256))
                .where(v.c.name == name, v.c.sha256 == sha256)
            ).scalar()
        if content is None:
            raise _no_version(name, sha256)
        return bytes(content)


def _make_live(conn: Connection, name: str, sha256: str, now: int) -> None:
    v = t.model_versions
    # Strictly after the last promotion, even within one millisecond: a roll back finds the
    # previous live version by this order.
    last = conn.execute(select(func.max(v.c.promoted_at)).where(v.c.name == name)).scalar()
    promoted_at = now if last is None else max(now, last + 1)
    conn.execute(update(t.models).where(t.models.c.name == name)
                 .values(live_sha256=sha256, updated_at=now))
    conn.execute(update(v).where(v.c.name == name, v.c.sha256 == sha256)
                 .values(promoted_at=promoted_at))


def _version(conn: Connection, name: str, sha256: str) -> ModelVersion:
    v = t.model_versions
    row = conn.execute(select(*_VERSION_COLUMNS)
                       .where(v.c.name == name, v.c.sha256 == sha256)).mappings().first()
    if row is None:
        raise _no_version(name, sha256)
    return ModelVersion(**row)


def _model(row: Mapping[Any, Any]) -> Model:
    return Model(name=row["name"], live=row["live_sha256"], versions=row["versions"],
                 created_at=row["created_at"], updated_at=row["updated_at"])


def _no_model(name: str) -> NotFound:
    return NotFound(f"model {name!r} does not exist", {"model": name})


def _no_version(name: str, sha256: str) -> NotFound:
    return NotFound(f"model {name!r} has no version {sha256}",
                    {"field": "version", "model": name, "got": sha256})
