"""The OpenAPI document: valid OpenAPI, built from the routes' declarations (each route's
operation and rule, gateway/routing.py), so exactly the routes of ``create_app``. It is served as
built, publicly.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping

import jsonschema
from openapi_spec_validator import validate

from sparkgate.gateway.app import ENDPOINTS, create_app
from sparkgate.gateway.openapi import OPENAPI_PATH
from sparkgate.gateway.openapi_document import build_document
from sparkgate.gateway.routing import PUBLIC
from sparkgate.jobs.db import make_engine
from sparkgate.jobs.keys import KeyStore
from sparkgate.jobs.settings import Settings
from tests.conftest import REDIS_TEST_URL, free_port

METHODS = {"get", "put", "post", "delete", "patch", "head", "options", "trace"}


def assert_conforms(document: dict, method: str, path: str, status: int,
                    headers: Mapping[str, str], body: bytes) -> None:
    """What schemathesis checks of an answer, for answers it cannot provoke: a documented
    status, its required headers, its content type and (JSON) its schema."""
    operation = document["paths"][path][method]
    assert str(status) in operation["responses"], (method, path, status)
    spec = operation["responses"][str(status)]
    if "$ref" in spec:
        spec = document["components"]["responses"][spec["$ref"].rsplit("/", 1)[1]]
    lower = {k.lower(): v for k, v in headers.items()}
    for name, header in spec.get("headers", {}).items():
        if header.get("required"):
            assert name.lower() in lower, (name, dict(headers))
    content = spec.get("content")
    if content:
        media = lower["content-type"].split(";")[0]
        assert media in content, (media, list(content))
        if media == "application/json":
            schema = {**content[media]["schema"], "components": document["components"]}
            jsonschema.validate(json.loads(body), schema, cls=jsonschema.Draft202012Validator)


def app_routes(settings: Settings) -> set[tuple[str, str]]:
    """(method, path template) of every route in the app's router; ``{path:.+}`` reads
    ``{path}`` as OpenAPI writes it."""
    app = create_app(settings, REDIS_TEST_URL)
    return {(route.method.lower(), route.resource.canonical)
            for route in app.router.routes() if route.resource is not None}


def document_routes(document: dict) -> set[tuple[str, str]]:
    return {(method, path) for path, item in document["paths"].items()
            for method in item if method in METHODS}


def role_of(method: str, path: str) -> str | None:
    """The role a route's declaration names; None for a public one."""
    method = "GET" if method == "HEAD" else method
    [rule] = [r.rule for r in ENDPOINTS if (r.method, r.template) == (method, path)]
    return None if rule.role == PUBLIC else rule.role


def test_the_document_is_valid_openapi_3_1():
    document = build_document(ENDPOINTS, "1.2.3")
    validate(document)
    assert document["openapi"] == "3.1.0"
    assert document["info"]["version"] == "1.2.3"
    # JSON as served: nothing Python-only (tuples, sets) is left in it.
    assert json.loads(json.dumps(document)) == document


def test_every_route_of_the_app_is_in_the_document_and_nothing_else(tmp_path):
    routes = app_routes(Settings(data_dir=tmp_path))
    documented = document_routes(build_document(ENDPOINTS))
    assert routes - documented == set(), "routes missing from the OpenAPI document"
    assert documented - routes == set(), "documented operations the app does not route"
    # Sanity of the comparison itself: the app has the routes it is known to have.
    assert {("post", "/v2/api/functions/{name}/jobs"), ("head", "/v2/api/jobs/{id}"),
            ("get", "/ui/{path}"), ("get", OPENAPI_PATH)} <= routes


def test_every_operation_has_an_id_a_tag_and_its_error_responses():
    document = build_document(ENDPOINTS)
    ids = []
    tags = {t["name"] for t in document["tags"]}
    for path, item in document["paths"].items():
        for method, operation in item.items():
            ids.append(operation["operationId"])
            assert operation["tags"][0] in tags, (method, path)
            responses = operation["responses"]
            assert any(code.startswith("2") or code in ("101", "302") for code in responses)
            if path.startswith("/v2/api/") and path != OPENAPI_PATH:
                assert "503" in responses, (method, path)
            if "requestBody" in operation:
                assert {"400", "413", "415"} <= set(responses), (method, path)
            assert {"414", "431"} <= set(responses), (method, path)
            assert ("421" in responses) is (path != "/health"), (method, path)
            assert "403" in responses or method in ("get", "head"), (method, path)
            if "{" in path and path.startswith("/v2/api/") and method != "head" \
                    and "/ws/" not in path and path != "/v2/api/workers/{id}/jobs":
                assert "404" in responses, (method, path)
    assert len(ids) == len(set(ids))
    unavailable = document["components"]["responses"]["Unavailable"]
    assert unavailable["headers"]["Retry-After"]["required"] is True


def test_with_auth_off_nothing_asks_for_credentials():
    document = build_document(ENDPOINTS)
    for item in document["paths"].values():
        for operation in item.values():
            assert "security" not in operation
            assert "401" not in operation["responses"]


def test_with_auth_on_protected_operations_say_so_and_the_rest_are_public():
    document = build_document(ENDPOINTS, secured=True)
    validate(document)
    health = document["paths"]["/health"]["get"]
    assert health["security"] == [] and "401" not in health["responses"]
    submit = document["paths"]["/v2/api/functions/{name}/jobs"]["post"]
    assert submit["security"] == [{"bearer": []}]
    assert submit["x-sparkgate-role"] == "submit"
    assert {"401", "403", "429"} <= set(submit["responses"])
    stream = document["paths"]["/v2/api/events"]["get"]
    assert {"accessToken": []} in stream["security"]
    assert document["components"]["securitySchemes"]["accessToken"]["in"] == "query"


def test_with_the_real_auth_rules_every_operation_has_its_role():
    document = build_document(ENDPOINTS, secured=True)
    validate(document)
    for path, item in document["paths"].items():
        for method, operation in item.items():
            role = role_of(method.upper(), path)
            assert operation.get("x-sparkgate-role") == role, (method, path)
            assert ("401" in operation["responses"]) == (role is not None), (method, path)
    assert document["paths"][OPENAPI_PATH]["get"]["security"] == []
    assert document["paths"]["/docs"]["get"]["security"] == []


async def test_with_auth_on_the_served_document_says_who_may_call_what(
        aiohttp_client, settings, redis_url):
    client = await aiohttp_client(create_app(dataclasses.replace(settings, auth_enabled=True),
                                             redis_url))
    response = await client.get(OPENAPI_PATH)  # public: no credentials
    assert response.status == 200
    served = await response.json()
    assert served == json.loads(json.dumps(build_document(ENDPOINTS, served["info"]["version"],
                                                          secured=True)))
    assert served["paths"]["/v2/api/jobs"]["get"]["security"] == [{"bearer": []}]
    page = await client.get("/docs")
    assert page.status == 200


async def test_the_document_is_served_publicly_as_built(aiohttp_client, settings, redis_url):
    client = await aiohttp_client(create_app(settings, redis_url))
    response = await client.get(OPENAPI_PATH)
    assert response.status == 200
    assert response.content_type == "application/json"
    served = await response.json()
    assert served == json.loads(json.dumps(build_document(ENDPOINTS,
                                                          served["info"]["version"])))
    head = await client.head(OPENAPI_PATH)
    assert head.status == 200


async def test_the_docs_page_and_its_files_are_served(aiohttp_client, settings, redis_url):
    client = await aiohttp_client(create_app(dataclasses.replace(settings), redis_url))
    page = await client.get("/docs")
    assert page.status == 200 and page.content_type == "text/html"
    assert "default-src 'self'" in page.headers["Content-Security-Policy"]
    script = await client.get("/docs/docs.js")
    assert script.status == 200 and script.content_type == "text/javascript"
    again = await client.get("/docs/docs.js", headers={"If-None-Match": script.headers["ETag"]})
    assert again.status == 304
    for bad in ("/docs/../app.py", "/docs/.hidden.js", "/docs/nothere.js", "/docs/x.py"):
        missing = await client.get(bad)
        assert missing.status == 404, bad
        assert (await missing.json())["error"]["code"] == "not_found"


async def conforms(document: dict, method: str, path: str, response) -> int:
    assert_conforms(document, method, path, response.status, response.headers,
                    await response.read())
    return response.status


async def test_answers_schemathesis_cannot_provoke_conform(aiohttp_client, settings, redis_url):
    """413, 429 (queue cap and submit rate) and 401/403, each as the document says."""
    strict = dataclasses.replace(settings, max_body_bytes=100, submits_per_second=0.001,
                                 submit_burst=1)
    client = await aiohttp_client(create_app(strict, redis_url))
    document = build_document(ENDPOINTS)
    big = await client.post("/v2/api/contexts", data=b'{"name": "' + b"x" * 200 + b'"}')
    assert await conforms(document, "post", "/v2/api/contexts", big) == 413
    submit = "/v2/api/functions/{name}/jobs"
    first = await client.post("/v2/api/functions/nope/jobs", json={})
    assert await conforms(document, "post", submit, first) == 404
    limited = await client.post("/v2/api/functions/nope/jobs", json={})
    assert await conforms(document, "post", submit, limited) == 429
    rebound = await client.get("/v2/api/jobs", headers={"Host": "evil.example"})
    assert await conforms(document, "get", "/v2/api/jobs", rebound) == 421
    cross_site = await client.post("/v2/api/contexts", json={"name": "x"},
                                   headers={"Origin": "https://evil.example"})
    assert await conforms(document, "post", "/v2/api/contexts", cross_site) == 403
    brotli = await client.post("/v2/api/contexts", data=b"{}",
                               headers={"Content-Encoding": "br"})
    assert await conforms(document, "post", "/v2/api/contexts", brotli) == 415

    secured = dataclasses.replace(settings, auth_enabled=True)
    client = await aiohttp_client(create_app(secured, redis_url))
    document = build_document(ENDPOINTS, secured=True)
    anonymous = await client.get("/v2/api/jobs")
    assert await conforms(document, "get", "/v2/api/jobs", anonymous) == 401
    wrong = await client.get("/v2/api/jobs", headers={"Authorization": "Bearer sgk_nope"})
    assert await conforms(document, "get", "/v2/api/jobs", wrong) == 401
    events = await client.get("/v2/api/events")
    assert await conforms(document, "get", "/v2/api/events", events) == 401
    engine = make_engine(secured.resolved_database_url)
    reader = KeyStore(engine).create("reader", "read", None).token
    engine.dispose()
    forbidden = await client.post("/v2/api/contexts", json={"name": "x"},
                                  headers={"Authorization": f"Bearer {reader}"})
    assert await conforms(document, "post", "/v2/api/contexts", forbidden) == 403


async def test_a_lost_database_is_a_documented_503(aiohttp_client, settings, redis_url):
    closed = f"postgresql://postgres@127.0.0.1:{free_port()}/nothing"
    client = await aiohttp_client(create_app(dataclasses.replace(settings, database_url=closed),
                                             redis_url))
    document = build_document(ENDPOINTS)
    for method, path, url in (("get", "/v2/api/functions", "/v2/api/functions"),
                              ("get", "/v2/api/jobs/{id}", "/v2/api/jobs/x"),
                              ("get", "/health", "/health")):
        response = await client.request(method.upper(), url)
        assert await conforms(document, method, path, response) == 503, url
