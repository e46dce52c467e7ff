"""``/v2/api/artifacts``: the code that functions run (a ``.py`` file or a ``.zip``/``.egg``/
``.whl`` package), stored in the database by sha1."""

from __future__ import annotations

from aiohttp import BodyPartReader, web
from aiohttp.http_exceptions import BadHttpMessage

from sparkgate.gateway.blocking import blocking
from sparkgate.gateway.content_coding import refuse_encoded
from sparkgate.gateway.openapi import ARTIFACT_NAME, STRING, array, bool_param, links, obj, ok, use
from sparkgate.gateway.params import checked_name, query_bool
from sparkgate.gateway.resources import CATALOG, RESULT_CACHE, SETTINGS
from sparkgate.gateway.routing import ADMIN, READ, Endpoints, Op
from sparkgate.jobs import deployment
from sparkgate.jobs.archives import ArchiveLimits
from sparkgate.jobs.errors import BadRequest, PayloadTooLarge

endpoints = Endpoints()

_SHA1 = {"type": "string", "pattern": "^[0-9a-f]{40}$"}
_UPLOAD = {"required": True, "description": "the file in the field `file`; its file name is the "
           "artifact's name (a name ending in `.py`)",
           "content": {"multipart/form-data": {
               "schema": {"type": "object", "required": ["file"], "properties": {
                   "file": {"type": "string", "format": "binary",
                            "contentMediaType": "application/octet-stream"}}},
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


@endpoints.post("/v2/api/artifacts", ADMIN, Op(
    "uploadArtifact", "artifacts", "Upload an artifact",
    {"200": ok({"type": "string"}, "the stored name, as Mist answered", "text/plain",
               {"X-Artifact-Sha1": {"required": True, "schema": _SHA1}}),
     "400": use("BadRequest"), "409": use("Conflict")},
    parameters=[bool_param("force", "replace an artifact of that name")], body=_UPLOAD,
    description="Parsed, never run. `409` if the name exists (unless `force=true`); replacing "
                "it re-reads the schemas of the functions that use it.",
    links=links("$response.body", "name", "downloadArtifact", "artifactSha",
                "deleteArtifact")))
async def upload_artifact(request: web.Request) -> web.Response:
    force = query_bool(request, "force")
    limit = request.app[SETTINGS].max_artifact_bytes
    name, content = await _read_upload(request, limit)
    # Checked (a package fully unpacked in memory, within limits) before anything is stored.
    artifact = await blocking(deployment.upload_artifact, request.app[CATALOG], name, content,
                              force, ArchiveLimits.for_artifact_bytes(limit))
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


async def _read_upload(request: web.Request, limit: int) -> tuple[str, bytes]:
    refuse_encoded(request, "upload")
    if not request.content_type.startswith("multipart/"):
        raise BadRequest(
            f"upload: expected multipart/form-data with a 'file' field, got "
            f"{request.content_type or 'no content type'}",
            {"field": "file", "expected": "multipart/form-data", "got": request.content_type},
        )
    try:
        reader = await request.multipart()
        async for part in reader:
            if isinstance(part, BodyPartReader) and part.name == "file":
                name = checked_name(part.filename, "file name")
                return name, await _read_limited(part, limit)
    except (ValueError, BadHttpMessage) as exc:  # no boundary, malformed part headers
        detail = " ".join(str(getattr(exc, "message", None) or exc).split())[:200]
        raise BadRequest(f"upload: malformed multipart/form-data: {detail}",
                         {"field": "file", "expected": "multipart/form-data"}) from None
    raise BadRequest("upload: the form has no 'file' field", {"field": "file"})


async def _read_limited(part: BodyPartReader, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while chunk := await part.read_chunk(1 << 16):
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"artifact is larger than the limit of {limit} bytes",
                                  {"limit": limit})
        chunks.append(chunk)
    return b"".join(chunks)

