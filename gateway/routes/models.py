"""``/v2/api/models``: the model store (jobs/models.py). Anyone who reads sees the models and
their versions; only admins write them or download their bytes, which the gateway never
unpickles (docs/models.md)."""

from __future__ import annotations

from aiohttp import web

from sparkgate.gateway.auth import identity
from sparkgate.gateway.blocking import blocking
from sparkgate.gateway.content_coding import refuse_encoded
from sparkgate.gateway.openapi import array, ok, path_param, request_body, use
from sparkgate.gateway.params import checked_name, json_body, json_object
from sparkgate.gateway.resources import CATALOG, SETTINGS
from sparkgate.gateway.routing import ADMIN, READ, Endpoints, Op
from sparkgate.gateway.wire.fields import to_json
from sparkgate.gateway.wire.models import (
    LIVE_CHANGE,
    MODEL,
    MODEL_DETAILS,
    SHA256,
    VERSION,
    LiveChange,
    ModelDetails,
    ModelInfo,
    VersionInfo,
)
from sparkgate.jobs.errors import BadRequest, PayloadTooLarge
from sparkgate.jobs.models import ModelStore

endpoints = Endpoints()

_NAME = path_param("name", "the model's name")
_VERSION = path_param("sha", "the version (its SHA-256)", SHA256)
_BYTES = {"type": "string", "format": "binary"}


def _store(request: web.Request) -> ModelStore:
    return ModelStore(request.app[CATALOG].engine, request.app[SETTINGS].max_model_bytes)


@endpoints.get("/v2/api/models", READ, Op(
    "listModels", "models", "List models",
    {"200": ok(array(MODEL), "every model, sorted by name")}))
async def list_models(request: web.Request) -> web.Response:
    models = await blocking(_store(request).list_models)
    return web.json_response([to_json(ModelInfo.of(m)) for m in models])


@endpoints.get("/v2/api/models/{name}", READ, Op(
    "getModel", "models", "A model's versions, and which one is live",
    {"200": ok(MODEL_DETAILS), "404": use("NotFound")}, parameters=[_NAME]))
async def get_model(request: web.Request) -> web.Response:
    return await _details(request, request.match_info["name"])


@endpoints.post("/v2/api/models/{name}/versions", ADMIN, Op(
    "uploadModelVersion", "models", "Upload a version of a model",
    {"200": ok(VERSION, "the version stored"), "400": use("BadRequest"),
     "413": use("PayloadTooLarge")},
    parameters=[_NAME],
    body={"required": True, "description": "the pickled object, as `sparkgate.models.save` "
          "writes it; at most `max_model_bytes`",
          "content": {"application/octet-stream": {"schema": _BYTES}}},
    description="Stored, never unpickled by the gateway. Not made live: promote it with "
                "`POST /v2/api/models/{name}/live`. The same bytes again are the same version."))
async def upload_version(request: web.Request) -> web.Response:
    name = checked_name(request.match_info["name"], "name")
    store = _store(request)
    content = await _read_body(request, store.max_bytes)
    version = await blocking(store.save, name, content, identity(request).submitter, False)
    model = await blocking(store.get_model, name)
    return web.json_response(to_json(VersionInfo.of(version, model.live)))


@endpoints.post("/v2/api/models/{name}/live", ADMIN, Op(
    "setLiveModelVersion", "models", "Promote or roll back a model",
    {"200": ok(MODEL_DETAILS, "the model, with its new live version"),
     "400": use("BadRequest"), "404": use("NotFound"), "409": use("Conflict")},
    parameters=[_NAME],
    body=request_body(LIVE_CHANGE, '`{"version": sha}` makes that version live (a newer one, '
                      'or an older one back); `{"rollback": true}` the version live before '
                      'the live one'),
    description="Workers that load the model pick the new live version up within about a "
                "second, without a restart. `409`: no earlier live version to roll back to."))
async def set_live(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    body = json_object(await json_body(request, limit=request.app[SETTINGS].max_body_bytes),
                       "live")
    change = LiveChange.read(body)
    store = _store(request)
    if isinstance(change.version, str):
        await blocking(store.promote, name, change.version)
    else:
        await blocking(store.roll_back, name)
    return await _details(request, name)


# The bytes are the admin's, as an artifact's code is: a model may hold what it was trained on.
@endpoints.get("/v2/api/models/{name}/versions/{sha}", ADMIN, Op(
    "downloadModelVersion", "models", "Download a version's bytes",
    {"200": ok(_BYTES, "the pickled object", "application/octet-stream",
               {"ETag": {"required": True, "schema": {"type": "string"},
                         "description": "the quoted SHA-256"}}),
     "404": use("NotFound")}, parameters=[_NAME, _VERSION]))
async def download_version(request: web.Request) -> web.Response:
    sha256 = request.match_info["sha"]
    content = await blocking(_store(request).content, request.match_info["name"], sha256)
    return web.Response(body=content, content_type="application/octet-stream",
                        headers={"ETag": f'"{sha256}"'})


async def _details(request: web.Request, name: str) -> web.Response:
    store = _store(request)
    model = await blocking(store.get_model, name)
    versions = await blocking(store.versions, name)
    return web.json_response(to_json(ModelDetails.of(model, versions)))


async def _read_body(request: web.Request, limit: int) -> bytes:
    """The upload, refused with 413 as soon as it is known to be over ``limit``."""
    refuse_encoded(request, "model upload")
    if request.content_length is not None and request.content_length > limit:
        raise _too_large(request.content_length, limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.content.iter_chunked(1 << 16):
        size += len(chunk)
        if size > limit:
            raise _too_large(size, limit, "at least ")
        chunks.append(chunk)
    if not size:
        raise BadRequest("model upload: the body is empty; expected the pickled object",
                         {"field": "body", "expected": "bytes", "got": "empty"})
    return b"".join(chunks)


def _too_large(size: int, limit: int, more: str = "") -> PayloadTooLarge:
    return PayloadTooLarge(f"model upload: the body is {more}{size} bytes; the limit is {limit} "
                           "(max_model_bytes)", {"field": "body", "limit": limit})
