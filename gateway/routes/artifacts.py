"""``/v2/api/artifacts``: the code that functions run (a ``.py`` file or a ``.zip``/``.egg``/
``.whl`` package), stored in the database by sha1."""

from __future__ import annotations

from aiohttp import BodyPartReader, web
from aiohttp.http_exceptions import BadHttpMessage

from sparkgate.gateway.blocking import blocking
from sparkgate.gateway.content_coding import refuse_encoded
from sparkgate.gateway.openapi import (
    ARTIFACT_NAME,
    STRING,
    array,
    bool_param,
    links,
    obj,
    ok,
    ref,
    use,
)
from sparkgate.gateway.params import checked_name, query_bool
from sparkgate.gateway.resources import CATALOG, RESULT_CACHE, SETTINGS
from sparkgate.gateway.routing import ADMIN, READ, Endpoints, Op
from sparkgate.gateway.wire.artifacts import ArtifactInfo
from sparkgate.gateway.wire.fields import to_json
from sparkgate.jobs import deployment
from sparkgate.jobs.archives import ArchiveLimits
from sparkgate.jobs.environments import Environments
from sparkgate.jobs.errors import BadRequest, PayloadTooLarge
from sparkgate.jobs.requirements import parse_requirements

endpoints = Endpoints()

_SHA1 = {"type": "string", "pattern": "^[0-9a-f]{40}$"}
# The requirements field is pip requirement lines, not a file: a few KiB at most.
REQUIREMENTS_MAX_BYTES = 64 * 1024
_UPLOAD = {"required": True, "description": "the file in the field `file`; its file name is the "
           "artifact's name (a name ending in `.py`); optionally its Python requirements in "
           "the field `requirements` (docs/environments.md)",
           "content": {"multipart/form-data": {
               "schema": {"type": "object", "required": ["file"], "properties": {
                   "file": {"type": "string", "format": "binary",
                            "contentMediaType": "application/octet-stream"},
                   "requirements": {"type": "string", "description": (
                       "pip requirement lines, one a line (no options, URLs or paths)")}}},
               "encoding": {"file": {"contentType": "application/octet-stream, text/x-python"}},
           }}}


@endpoints.get("/v2/api/artifacts", READ, Op(
    "listArtifacts", "artifacts", "List artifact names",
    {"200": ok(array(STRING), "names, sorted")}))
async def list_artifacts(request: web.Request) -> web.Response:
    artifacts = await blocking(request.app[CATALOG].list_artifacts)
    return web.json_response([a.name for a in artifacts])


# The code itself (which may hold credentials) is the admin's; its name and hash are not.
@endpoints.get("/v2/api/artifacts/{name}", ADMIN, Op(
    "downloadArtifact", "artifacts", "Download an artifact",
    {"200": ok({"type": "string", "format": "binary"}, "the file", "application/octet-stream",
               {"Content-Disposition": {"required": True, "schema": STRING},
                "ETag": {"required": True, "schema": STRING,
                         "description": "the quoted SHA-1"}}),
     "404": use("NotFound")}, parameters=[ARTIFACT_NAME]))
async def download_artifact(request: web.Request) -> web.Response:
    catalog = request.app[CATALOG]
    artifact = await blocking(catalog.get_artifact, request.match_info["name"])
    content = await blocking(catalog.artifact_content, artifact.sha1)
    return web.Response(
        body=content, content_type="application/octet-stream",
        headers={"Content-Disposition": f'attachment; filename="{artifact.name}"',
                 "ETag": f'"{artifact.sha1}"'},
    )


@endpoints.get("/v2/api/artifacts/{name}/sha", READ, Op(
    "artifactSha", "artifacts", "An artifact's SHA-1",
    {"200": ok(_SHA1, "hex", "text/plain"), "404": use("NotFound")},
    parameters=[ARTIFACT_NAME]))
async def artifact_sha(request: web.Request) -> web.Response:
    artifact = await blocking(request.app[CATALOG].get_artifact, request.match_info["name"])
    return web.Response(text=artifact.sha1)


@endpoints.get("/v2/api/artifacts/{name}/info", READ, Op(
    "artifactInfo", "artifacts", "An artifact's hash, size and requirements",
    {"200": ok(ref("Artifact")), "404": use("NotFound")}, parameters=[ARTIFACT_NAME]))
async def artifact_info(request: web.Request) -> web.Response:
    artifact = await blocking(request.app[CATALOG].get_artifact, request.match_info["name"])
    return web.json_response(to_json(ArtifactInfo.of(artifact)))


@endpoints.post("/v2/api/artifacts", ADMIN, Op(
    "uploadArtifact", "artifacts", "Upload an artifact",
    {"200": ok({"type": "string"}, "the stored name, as Mist answered", "text/plain",
               {"X-Artifact-Sha1": {"required": True, "schema": _SHA1}}),
     "400": use("BadRequest"), "409": use("Conflict")},
    parameters=[bool_param("force", "replace an artifact of that name")], body=_UPLOAD,
    description="Parsed, never run. `409` if the name exists (unless `force=true`); replacing "
                "it re-reads the schemas of the functions that use it. With `requirements` "
                "(or a wheel's own Requires-Dist), their environment is built first (wheels "
                "only, no package code runs): `400` with the installer's message if it "
                "cannot be, and nothing is stored.",
    links=links("$response.body", "name", "downloadArtifact", "artifactSha",
                "deleteArtifact")))
async def upload_artifact(request: web.Request) -> web.Response:
    force = query_bool(request, "force")
    settings = request.app[SETTINGS]
    name, content, requirements = await _read_upload(request, settings.max_artifact_bytes)
    # Checked (a package fully unpacked in memory, within limits, its environment built)
    # before anything is stored; on the executor, as a build may take minutes.
    artifact = await blocking(deployment.upload_artifact, request.app[CATALOG], name, content,
                              force, ArchiveLimits.for_artifact_bytes(settings.max_artifact_bytes),
                              parse_requirements(requirements),
                              Environments.for_settings(settings))
    if force:
        await _purge_results_of_users(request.app, name)
    # Mist answers with the stored name as plain text; mist-cli reads it back that way.
    return web.Response(text=artifact.name, headers={"X-Artifact-Sha1": artifact.sha1})


@endpoints.delete("/v2/api/artifacts/{name}", ADMIN, Op(
    "deleteArtifact", "artifacts", "Delete an artifact",
    {"200": ok(obj({"name": STRING, "sha1": _SHA1}), "what was deleted"),
     "404": use("NotFound"), "409": use("Conflict")}, parameters=[ARTIFACT_NAME],
    description="`409` while functions use it (`details.functions` lists them)."))
async def delete_artifact(request: web.Request) -> web.Response:
    artifact = await blocking(request.app[CATALOG].delete_artifact, request.match_info["name"])
    return web.json_response({"name": artifact.name, "sha1": artifact.sha1})


async def _purge_results_of_users(app: web.Application, artifact: str) -> None:
    """New code: results its functions cached are stale (docs/caching.md). Their cache keys
    name the artifact's sha1 anyway; the call index does not, hence the purge."""
    users = [f.name for f in await blocking(app[CATALOG].list_functions) if f.path == artifact]
    if users:
        await blocking(app[RESULT_CACHE].purge, *users)


async def _read_upload(request: web.Request, limit: int) -> tuple[str, bytes, str]:
    """The artifact's name and content (field ``file``) and its requirements' text (field
    ``requirements``, empty when left out)."""
    refuse_encoded(request, "upload")
    if not request.content_type.startswith("multipart/"):
        raise BadRequest(
            f"upload: expected multipart/form-data with a 'file' field, got "
            f"{request.content_type or 'no content type'}",
            {"field": "file", "expected": "multipart/form-data", "got": request.content_type},
        )
    upload: tuple[str, bytes] | None = None
    requirements = ""
    try:
        async for part in await request.multipart():
            if isinstance(part, BodyPartReader) and part.name == "file" and upload is None:
                upload = (checked_name(part.filename, "file name"),
                          await _read_limited(part, limit, "artifact"))
            elif isinstance(part, BodyPartReader) and part.name == "requirements":
                requirements = _text(await _read_limited(part, REQUIREMENTS_MAX_BYTES,
                                                         "requirements"))
    except (ValueError, BadHttpMessage) as exc:  # no boundary, malformed part headers
        detail = " ".join(str(getattr(exc, "message", None) or exc).split())[:200]
        raise BadRequest(f"upload: malformed multipart/form-data: {detail}",
                         {"field": "file", "expected": "multipart/form-data"}) from None
    if upload is None:
        raise BadRequest("upload: the form has no 'file' field", {"field": "file"})
    return (*upload, requirements)


def _text(content: bytes) -> str:
    try:
        return content.decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequest("requirements: not UTF-8 text", {"field": "requirements"}) from None


async def _read_limited(part: BodyPartReader, limit: int, what: str) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while chunk := await part.read_chunk(1 << 16):
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"{what} is larger than the limit of {limit} bytes",
                                  {"limit": limit})
        chunks.append(chunk)
    return b"".join(chunks)

