"""An artifact on the wire: its name, hash and size, and the Python requirements its functions
run with (docs/environments.md). sparkgate's own: Mist lists artifacts by name only."""

from __future__ import annotations

from dataclasses import dataclass

from sparkgate.gateway.wire.fields import schema_of, wire
from sparkgate.gateway.wire.schema import INT, STRING, TIME_MS, array
from sparkgate.jobs.artifacts import Artifact


@dataclass(slots=True)
class ArtifactInfo:
    name: str = wire("name", STRING)
    sha1: str = wire("sha1", {"type": "string", "pattern": "^[0-9a-f]{40}$"})
    size: int = wire("size", INT, description="bytes")
    created_at: int = wire("createdAt", TIME_MS)
    updated_at: int = wire("updatedAt", TIME_MS)
    requirements: list[str] = wire("requirements", array(STRING), description=(
        "its pip requirement lines, normalized and sorted; none: the base environment"))
    environment: str | None = wire("environment", {"type": ["string", "null"]}, description=(
        "the id of the environment its functions' workers run in; null: the base one"))

    @classmethod
    def of(cls, artifact: Artifact) -> ArtifactInfo:
        return cls(artifact.name, artifact.sha1, artifact.size, artifact.created_at,
                   artifact.updated_at, artifact.requirement_lines, artifact.environment)


ARTIFACT = schema_of(ArtifactInfo, "an artifact and the environment its functions run in")
