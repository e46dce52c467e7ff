"""The model store on the wire: a model (its name and live version), its versions, and what
``POST /v2/api/models/{name}/live`` takes (a version to make live, or a roll back)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from sparkgate.gateway.wire.fields import (
    Absent,
    Reading,
    read_present,
    schema_of,
    settable,
    to_json,
    wire,
)
from sparkgate.gateway.wire.schema import INT, STRING, TIME_MS, Schema, array, obj
from sparkgate.jobs.errors import BadRequest
from sparkgate.jobs.models import Model, ModelVersion

SHA256: Schema = {"type": "string", "pattern": "^[0-9a-f]{64}$",
                  "description": "the version: the SHA-256 of its bytes, in hex"}
_LIVE: Schema = {"anyOf": [SHA256, {"type": "null"}],
                 "description": "the live version; null until one is made live"}
_SHA256_TEXT = re.compile("[0-9a-f]{64}")


@dataclass(slots=True)
class ModelInfo:
    name: str = wire("name", STRING)
    live: str | None = wire("live", _LIVE)
    versions: int = wire("versions", INT, description="how many versions it has")
    created_at: int = wire("createdAt", TIME_MS)
    updated_at: int = wire("updatedAt", TIME_MS)

    @classmethod
    def of(cls, model: Model) -> ModelInfo:
        return cls(model.name, model.live, model.versions, model.created_at, model.updated_at)


@dataclass(slots=True)
class VersionInfo:
    version: str = wire("version", SHA256)
    size: int = wire("size", INT, description="bytes")
    created_at: int = wire("createdAt", TIME_MS)
    created_by: str = wire("createdBy", STRING, description=(
        '"job:<id>" for a version a job saved, else who uploaded it ("key:<name>", '
        '"jwt:<subject>", "anonymous") or "local" (sparkgate run --local)'))
    promoted_at: int | None = wire("promotedAt", {"type": ["integer", "null"],
                                                  "description": "when it last became live"})
    live: bool = wire("live", {"type": "boolean"})

    @classmethod
    def of(cls, version: ModelVersion, live: str | None) -> VersionInfo:
        return cls(version.sha256, version.size, version.created_at, version.created_by,
                   version.promoted_at, version.sha256 == live)


@dataclass(slots=True)
class ModelDetails:
    name: str = wire("name", STRING)
    live: str | None = wire("live", _LIVE)
    versions: list[dict[str, Any]] = wire("versions", array(schema_of(VersionInfo)),
                                          description="newest first")

    @classmethod
    def of(cls, model: Model, versions: list[ModelVersion]) -> ModelDetails:
        return cls(model.name, model.live,
                   [to_json(VersionInfo.of(v, model.live)) for v in versions])


def _read_sha256(raw: Any) -> str:
    if not isinstance(raw, str) or not _SHA256_TEXT.fullmatch(raw):
        raise ValueError("a version: 64 lowercase hex digits (its SHA-256)")
    return raw


def _read_true(raw: Any) -> bool:
    if raw is not True:
        raise ValueError("true")
    return True


@dataclass(slots=True)
class LiveChange:
    """Make ``version`` live, or (``rollback``) the version that was live before the live one."""

    version: str | Absent = wire("version", reads=Reading(SHA256, _read_sha256), optional=True)
    rollback: bool | Absent = wire("rollback", reads=Reading(
        {"const": True, "description": "make the previous live version live again"},
        _read_true), optional=True)

    @classmethod
    def read(cls, body: dict[str, Any]) -> LiveChange:
        change = cls(**read_present(cls, body, "live"))
        if (change.version is Absent.ABSENT) == (change.rollback is Absent.ABSENT):
            raise BadRequest('live: expected exactly one of "version" (a version to make live) '
                             'or "rollback": true', {"field": "version",
                                                     "expected": "version or rollback",
                                                     "got": sorted(body)})
        return change


MODEL = schema_of(ModelInfo, "a model: its name and live version")
MODEL_DETAILS = schema_of(ModelDetails, "a model and its versions")
VERSION = schema_of(VersionInfo, "a version of a model")
LIVE_CHANGE = obj({}, settable(LiveChange),
                  description='exactly one of "version" and "rollback"')
