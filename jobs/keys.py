"""API keys: create (the token is shown once), list, revoke, and look a token up.

A token is ``sgk_<prefix>_<secret>``: ``prefix`` is 8 random hex characters, public, shown in
listings so people can tell keys apart; ``secret`` is 256 random bits (base64url). Only the
SHA-256 of the secret is stored. A lookup is by that hash (a unique index), never by comparing
secrets: what an attacker controls is the secret, and the hash of a guess tells the database
nothing about the stored hashes' bytes, so the lookup leaks no timing about any real secret.
A slow password hash (bcrypt, argon2) would add latency per request and no safety: the secret
is random and 256 bits long, not a password anyone could guess from a dictionary.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, RowMapping, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from sparkgate.jobs import tables as t
from sparkgate.jobs.db import now_ms, writing
from sparkgate.jobs.errors import BadRequest, Conflict, NotFound
from sparkgate.jobs.ids import uuid7

#: Weakest first: a rule needing a role is met by that role or a stronger one.
ROLES = ("read", "submit", "admin")
RANK = {role: rank for rank, role in enumerate(ROLES, start=1)}
#: Whose jobs a role sees, apart from the routes it may call: ``read`` is the operators' and
#: dashboards' role (every job, nothing changed); ``submit`` is a client's (its own jobs only:
#: one client must not read another's arguments and results, nor cancel its jobs).
SEES_ALL_JOBS = frozenset({"read", "admin"})
#: Roles that cancel every owner's jobs; ``submit`` cancels its own.
CANCELS_ALL_JOBS = frozenset({"admin"})
#: Roles shown secret-looking Spark settings as they are (gateway/redaction.py).
SEES_SECRETS = frozenset({"admin"})
TOKEN_START = "sgk_"
#: last_used_at is written at most this often per key (it is for people, not for billing).
LAST_USED_RESOLUTION_MS = 60_000

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@:-]{0,127}")
_TOKEN = re.compile(r"sgk_([0-9a-f]{8})_([A-Za-z0-9_-]{43})")


@dataclass(frozen=True)
class ApiKey:
    id: str
    name: str
    prefix: str
    role: str
    # submit keys only: the functions it may run; None: any.
    functions: tuple[str, ...] | None
    created_at: int
    revoked_at: int | None = None
    last_used_at: int | None = None

    @property
    def active(self) -> bool:
        return self.revoked_at is None

    @property
    def submitter(self) -> str:
        return f"key:{self.name}"

    @classmethod
    def from_row(cls, row: RowMapping) -> ApiKey:
        functions = row["functions"]
        return cls(id=row["id"], name=row["name"], prefix=row["prefix"], role=row["role"],
                   functions=None if functions is None else tuple(functions),
                   created_at=row["created_at"], revoked_at=row["revoked_at"],
                   last_used_at=row["last_used_at"])

    def to_dict(self) -> dict[str, Any]:
        """What listings show: everything but the secret's hash."""
        return {"name": self.name, "prefix": self.prefix, "role": self.role,
                "functions": None if self.functions is None else list(self.functions),
                "createdAt": self.created_at, "revokedAt": self.revoked_at,
                "lastUsedAt": self.last_used_at}


@dataclass(frozen=True)
class CreatedKey:
    key: ApiKey
    # The whole token: shown to its owner once, stored nowhere.
    token: str


def secret_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def parse_token(token: str) -> tuple[str, str] | None:
    """(prefix, secret) of a well-formed sparkgate token, else None."""
    match = _TOKEN.fullmatch(token)
    return (match.group(1), match.group(2)) if match else None


def check_new_key(name: str, role: str, functions: Sequence[str] | None) -> None:
    """BadRequest naming the field, what was expected and what came."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise BadRequest(
            f"name: expected 1 to 128 letters, digits or ._@:- (starting with a letter or "
            f"digit), got {name!r}", {"field": "name", "expected": _NAME.pattern, "got": name})
    if role not in RANK:
        raise BadRequest(f"role: expected one of {', '.join(ROLES)}, got {role!r}",
                         {"field": "role", "expected": list(ROLES), "got": role})
    if functions is None:
        return
    if role != "submit":
        raise BadRequest(
            f"functions: expected none for a {role} key (only submit keys can be limited to "
            f"functions; {role} keys {'run every function' if role == 'admin' else 'run none'}"
            f"), got {list(functions)!r}",
            {"field": "functions", "expected": "no functions unless role is submit",
             "got": list(functions)})
    bad = [f for f in functions if not isinstance(f, str) or not f.strip() or len(f) > 255]
    if not functions or bad:
        raise BadRequest(f"functions: expected one or more function names, got "
                         f"{list(functions)!r}",
                         {"field": "functions", "expected": "function names",
                          "got": list(functions)})


class KeyStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def create(self, name: str, role: str,
               functions: Sequence[str] | None = None) -> CreatedKey:
        """A new key and its token (Conflict if the name is taken, even by a revoked key:
        a name in old jobs' ``submitter`` must keep meaning one key)."""
        check_new_key(name, role, functions)
        prefix = secrets.token_hex(4)
        secret = secrets.token_urlsafe(32)  # 256 bits -> 43 base64url characters
        key = ApiKey(id=uuid7(), name=name, prefix=prefix, role=role,
                     functions=None if functions is None else tuple(dict.fromkeys(functions)),
                     created_at=now_ms())
        try:
            with writing(self.engine) as conn:
                conn.execute(insert(t.api_keys).values(
                    id=key.id, name=key.name, prefix=prefix, secret_sha256=secret_hash(secret),
                    role=role, functions=None if key.functions is None else list(key.functions),
                    created_at=key.created_at))
        except IntegrityError:
            raise Conflict(f"name: a key named {name!r} already exists (revoked keys keep "
                           f"their names); choose another name",
                           {"field": "name", "got": name}) from None
        return CreatedKey(key, f"{TOKEN_START}{prefix}_{secret}")

    def list_keys(self) -> list[ApiKey]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(t.api_keys).order_by(t.api_keys.c.created_at,
                                                            t.api_keys.c.name)).mappings()
            return [ApiKey.from_row(row) for row in rows]

    def get(self, name: str) -> ApiKey:
        with self.engine.connect() as conn:
            row = conn.execute(select(t.api_keys).where(t.api_keys.c.name == name)
                               ).mappings().first()
        if row is None:
            raise NotFound(f"no API key named {name!r}", {"name": name})
        return ApiKey.from_row(row)

    def revoke(self, name: str) -> ApiKey:
        """The key, revoked from now on; revoking it again changes nothing."""
        with writing(self.engine) as conn:
            conn.execute(update(t.api_keys)
                         .where(t.api_keys.c.name == name, t.api_keys.c.revoked_at.is_(None))
                         .values(revoked_at=now_ms()))
        return self.get(name)

    def count_active(self) -> int:
        with self.engine.connect() as conn:
            return conn.execute(select(func.count()).select_from(t.api_keys)
                                .where(t.api_keys.c.revoked_at.is_(None))).scalar_one()

    def lookup(self, token: str) -> ApiKey | None:
        """The key this token belongs to (revoked ones too: the caller says why it refuses),
        or None for a token that is malformed or belongs to no key."""
        parsed = parse_token(token)
        if parsed is None:
            return None
        prefix, secret = parsed
        with self.engine.connect() as conn:
            row = conn.execute(select(t.api_keys).where(
                t.api_keys.c.secret_sha256 == secret_hash(secret))).mappings().first()
        # The prefix is public, but a token pasted with another key's prefix is a mistake
        # worth refusing rather than silently accepting.
        if row is None or not hmac.compare_digest(row["prefix"], prefix):
            return None
        return ApiKey.from_row(row)

    def touch(self, key: ApiKey) -> None:
        """Record a use, at most once per LAST_USED_RESOLUTION_MS (one conditional UPDATE,
        so several gateways do not write it each)."""
        now = now_ms()
        if key.last_used_at is not None and now - key.last_used_at < LAST_USED_RESOLUTION_MS:
            return
        stale = now - LAST_USED_RESOLUTION_MS
        with writing(self.engine) as conn:
            conn.execute(update(t.api_keys).where(
                t.api_keys.c.id == key.id,
                (t.api_keys.c.last_used_at.is_(None)) | (t.api_keys.c.last_used_at < stale),
            ).values(last_used_at=now))
