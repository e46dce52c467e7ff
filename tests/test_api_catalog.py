"""The catalog half of the HTTP API: artifacts, functions, contexts, status, and the error shape.

The real app (``create_app``) runs against the real database (SQLite and PostgreSQL through
``db_url``) and Redis. Nothing here runs a job, so no worker is started.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
from importlib.metadata import version
from typing import Any

import aiohttp
import jsonschema
import pytest
from sqlalchemy import delete

from sparkgate.jobs import tables
from sparkgate.jobs.settings import ContextDefaults
from tests.api_responses import error_of, json_of
from tests.conftest import function_source

API = "/v2/api"


# ---------------------------------------------------------------------------------------------
# Fixtures and helpers


async def upload(client, name: str, content: bytes, query: str = ""):
    """Upload as aiohttp (and mist-cli, through requests) do: a multipart form, field ``file``."""
    form = aiohttp.FormData()
    form.add_field("file", content, filename=name, content_type="text/x-python")
    return await client.post(f"{API}/artifacts{query}", data=form)


def raw_multipart(filename: str | None, content: bytes, field: str = "file") -> tuple[bytes, str]:
    """A multipart body with the file name written as is (as curl -F does), unlike aiohttp's
    client, which percent-escapes it; returns (body, content type)."""
    boundary = "sparkgate-test-boundary-7d1"
    disposition = f'form-data; name="{field}"'
    if filename is not None:
        disposition += f'; filename="{filename}"'
    head = (f"--{boundary}\r\nContent-Disposition: {disposition}\r\n"
            "Content-Type: application/octet-stream\r\n\r\n").encode()
    return head + content + f"\r\n--{boundary}--\r\n".encode(), \
        f"multipart/form-data; boundary={boundary}"


async def deploy(client, name: str, file: str, class_name: str | None = None,
                 context: str | None = None) -> dict[str, Any]:
    """Upload ``file`` (tests/functions or examples) unless present, then create the function."""
    if (await client.get(f"{API}/artifacts/{file}/sha")).status == 404:
        response = await upload(client, file, function_source(file))
        assert response.status == 200, await response.text()
    body = {"name": name, "path": file, "className": class_name or name}
    if context is not None:
        body["defaultContext"] = context
    response = await client.post(f"{API}/functions", json=body)
    assert response.status == 200, await response.text()
    return await response.json()


async def artifact_names(client) -> list[str]:
    return await json_of(await client.get(f"{API}/artifacts"))


def mist(kind: str, *args: dict[str, Any]) -> dict[str, Any]:
    """A Mist ``Type``: ``mist("MInt")``, ``mist("MList", mist("MInt"))``."""
    return {"type": kind, "args": list(args)} if args else {"type": kind}


# ---------------------------------------------------------------------------------------------
# Artifacts


async def test_upload_list_download_and_sha(client):
    echo, typed = function_source("echo.py"), function_source("typed.py")

    response = await upload(client, "typed.py", typed)
    assert response.status == 200
    assert await response.text() == "typed.py"  # Mist's answer: the stored name, as text
    assert response.headers["X-Artifact-Sha1"] == hashlib.sha1(typed).hexdigest()
    assert (await upload(client, "echo.py", echo)).status == 200

    assert await artifact_names(client) == ["echo.py", "typed.py"]
    download = await client.get(f"{API}/artifacts/echo.py")
    assert download.status == 200
    assert await download.read() == echo
    sha = await client.get(f"{API}/artifacts/typed.py/sha")
    assert sha.status == 200
    assert await sha.text() == hashlib.sha1(typed).hexdigest()


async def test_unknown_artifact_is_404(client):
    for path in ("nope.py", "nope.py/sha"):
        error = await error_of(await client.get(f"{API}/artifacts/{path}"), 404, "not_found")
        assert "nope.py" in error["message"]


async def test_reupload_without_force_is_409_and_keeps_the_original(client):
    original = function_source("echo.py")
    assert (await upload(client, "echo.py", original)).status == 200

    response = await upload(client, "echo.py", b"x = 2\n")
    error = await error_of(response, 409, "conflict")
    assert "force=true" in error["message"]
    download = await client.get(f"{API}/artifacts/echo.py")
    assert await download.read() == original


@pytest.mark.parametrize("force", ["true", "True"])  # mist-cli sends Python's str(True)
async def test_force_replaces_an_artifact(client, force):
    assert (await upload(client, "echo.py", function_source("echo.py"))).status == 200
    replacement = b"def echo(spark, value=None):\n    return value\n"

    response = await upload(client, "echo.py", replacement, query=f"?force={force}")
    assert response.status == 200, await response.text()
    assert await response.text() == "echo.py"
    assert await (await client.get(f"{API}/artifacts/echo.py")).read() == replacement
    sha = await client.get(f"{API}/artifacts/echo.py/sha")
    assert await sha.text() == hashlib.sha1(replacement).hexdigest()
    assert await artifact_names(client) == ["echo.py"]


async def test_replacing_an_artifact_rereads_the_functions_that_use_it(client):
    await deploy(client, "echo", "echo.py")
    replacement = b"def echo(spark, count: int):\n    return count\n"
    assert (await upload(client, "echo.py", replacement, query="?force=true")).status == 200

    info = await json_of(await client.get(f"{API}/functions/echo"))
    assert info["execute"] == {"count": mist("MInt")}
    assert info["argumentsSchema"]["required"] == ["count"]
    response = await client.post(f"{API}/functions/echo/jobs", json={"count": 1})
    assert response.status == 200, await response.text()
    response = await client.post(f"{API}/functions/echo/jobs", json={"value": 1})
    await error_of(response, 400, "invalid_arguments")


async def test_replacement_without_a_function_in_use_is_refused(client):
    original = function_source("echo.py")
    info = await deploy(client, "echo", "echo.py")

    response = await upload(client, "echo.py", ALPHA_BETA, query="?force=true")
    error = await error_of(response, 400, "invalid_artifact")
    assert error["details"]["function"] == "echo"
    assert "echo" in error["message"]
    assert await (await client.get(f"{API}/artifacts/echo.py")).read() == original
    assert await json_of(await client.get(f"{API}/functions/echo")) == info


async def test_delete_artifact(client):
    content = function_source("echo.py")
    assert (await upload(client, "echo.py", content)).status == 200

    deleted = await json_of(await client.delete(f"{API}/artifacts/echo.py"))
    assert deleted == {"name": "echo.py", "sha1": hashlib.sha1(content).hexdigest()}
    assert await artifact_names(client) == []
    await error_of(await client.get(f"{API}/artifacts/echo.py"), 404, "not_found")
    await error_of(await client.delete(f"{API}/artifacts/echo.py"), 404, "not_found")
    # The name is free again: no force needed.
    assert (await upload(client, "echo.py", content)).status == 200


async def test_delete_artifact_used_by_a_function_is_409(client):
    await deploy(client, "echo", "echo.py")

    error = await error_of(await client.delete(f"{API}/artifacts/echo.py"), 409, "conflict")
    assert error["details"] == {"artifact": "echo.py", "functions": ["echo"]}
    assert "echo" in error["message"]
    assert await artifact_names(client) == ["echo.py"]


@pytest.mark.parametrize("name", ["../x.py", "a/b.py", ".hidden.py", "", "x\\..\\..\\y.py"])
async def test_hostile_artifact_names_are_refused(client, name):
    body, content_type = raw_multipart(name, b"x = 1\n")
    response = await client.post(f"{API}/artifacts", data=body,
                                 headers={"Content-Type": content_type})

    error = await error_of(response, 400, "bad_request")
    assert error["message"].startswith("file name: ")
    assert error["details"]["field"] == "file name"
    assert await artifact_names(client) == []


async def test_upload_without_a_file_name_is_400(client):
    body, content_type = raw_multipart(None, b"x = 1\n")
    response = await client.post(f"{API}/artifacts", data=body,
                                 headers={"Content-Type": content_type})
    error = await error_of(response, 400, "bad_request")
    assert error["details"]["field"] == "file name"
    assert await artifact_names(client) == []


async def test_upload_of_a_form_without_a_file_field_is_400(client):
    body, content_type = raw_multipart("echo.py", b"x = 1\n", field="upload")
    response = await client.post(f"{API}/artifacts", data=body,
                                 headers={"Content-Type": content_type})
    error = await error_of(response, 400, "bad_request")
    assert "'file'" in error["message"]
    assert await artifact_names(client) == []


async def test_artifact_that_is_not_python_is_400(client):
    error = await error_of(await upload(client, "notes.txt", b"hello\n"), 400, "invalid_artifact")
    assert "notes.txt" in error["message"]
    assert ".py" in error["message"]
    assert await artifact_names(client) == []


async def test_artifact_with_a_syntax_error_is_400_with_the_line(client):
    content = b"import os\n\ndef broken(spark:\n    return 1\n"
    error = await error_of(await upload(client, "broken.py", content), 400, "invalid_artifact")
    assert "line 3" in error["message"]
    assert error["details"] == {"line": 3}
    assert await artifact_names(client) == []


async def test_artifact_that_is_not_utf8_is_400(client):
    error = await error_of(await upload(client, "latin.py", b"name = '\xe9t\xe9'\n"), 400,
                           "invalid_artifact")
    assert "UTF-8" in error["message"]
    assert await artifact_names(client) == []


async def test_upload_that_is_not_multipart_is_400(client):
    response = await client.post(f"{API}/artifacts", data=b"x = 1\n",
                                 headers={"Content-Type": "text/x-python"})
    error = await error_of(response, 400, "bad_request")
    assert "multipart/form-data" in error["message"]
    assert error["details"]["field"] == "file"
    assert await artifact_names(client) == []


async def test_artifact_over_the_size_limit_is_413(make_client):
    client = await make_client(max_artifact_bytes=1000)
    at_limit = b"#" * 999 + b"\n"

    response = await upload(client, "big.py", at_limit + b"\n")
    error = await error_of(response, 413, "payload_too_large")
    assert "1000 bytes" in error["message"]
    assert error["details"] == {"limit": 1000}
    assert await artifact_names(client) == []
    # Exactly the limit is allowed.
    assert (await upload(client, "big.py", at_limit)).status == 200
    assert await artifact_names(client) == ["big.py"]


# ---------------------------------------------------------------------------------------------
# Functions

TYPED_EXECUTE = {
    "count": mist("MInt"),
    "ratio": mist("MDouble"),
    "label": mist("MString"),
    "enabled": mist("MBoolean"),  # Mist said MInt for bool: sparkgate must not
    "items": mist("MList", mist("MInt")),
    "weights": mist("MMap", mist("MString"), mist("MDouble")),
    "note": mist("MOption", mist("MString")),
    "anything": mist("MOption", mist("MAny")),
    "nested": mist("MOption", mist("MList", mist("MMap", mist("MString"),
                                                 mist("MList", mist("MString"))))),
}

TYPED_SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "properties": {
        "count": {"type": "integer"},
        "ratio": {"type": "number"},
        "label": {"type": "string"},
        "enabled": {"type": "boolean"},
        "items": {"type": "array", "items": {"type": "integer"}},
        "weights": {"type": "object", "additionalProperties": {"type": "number"}},
        "note": {"anyOf": [{"type": "string"}, {"type": "null"}], "default": None},
        "anything": {"anyOf": [{}, {"type": "null"}], "default": None},
        "nested": {"type": "array",
                   "items": {"type": "object",
                             "additionalProperties": {"type": "array",
                                                      "items": {"type": "string"}}},
                   "default": []},
    },
    "required": ["count", "ratio", "label", "enabled", "items", "weights"],
    "additionalProperties": False,
}


async def test_create_function_returns_mist_function_info(client):
    info = await deploy(client, "typed", "typed.py")

    assert info == {
        "name": "typed",
        "lang": "python",
        "execute": TYPED_EXECUTE,
        "tags": [],
        "path": "typed.py",
        "className": "typed",
        "defaultContext": "default",
        "argumentsSchema": TYPED_SCHEMA,
        "needsSpark": True,
    }
    assert list(info["execute"]) == list(TYPED_EXECUTE)  # declaration order
    assert await json_of(await client.get(f"{API}/functions/typed")) == info
    assert await json_of(await client.get(f"{API}/functions")) == [info]


async def test_arguments_schema_checks_what_validation_checks(client):
    schema = (await deploy(client, "typed", "typed.py"))["argumentsSchema"]
    validator = jsonschema.Draft202012Validator(schema)
    validator.check_schema(schema)
    good = {"count": 1, "ratio": 0.5, "label": "x", "enabled": True, "items": [1],
            "weights": {"a": 1.5}, "note": None}
    assert list(validator.iter_errors(good)) == []
    for bad in ({**good, "count": 1.5}, {**good, "enabled": 1}, {**good, "colour": "red"},
                {k: v for k, v in good.items() if k != "label"}):
        assert list(validator.iter_errors(bad)), bad


@pytest.mark.parametrize(("file", "execute"), [
    ("echo.py", {"value": mist("MOption", mist("MAny")),
                 "tag": mist("MOption", mist("MString"))}),
    ("pi.py", {"samples": mist("MOption", mist("MInt")),
               "seed": mist("MOption", mist("MInt"))}),
    ("word_count.py", {"text": mist("MOption", mist("MString")),
                       "lines": mist("MOption", mist("MList", mist("MString"))),
                       "top": mist("MOption", mist("MInt"))}),
    # mistpy's decorators: with_args(arg("numbers", list_type(int)), arg(..., default=2))
    ("mist_multiply.py", {"numbers": mist("MList", mist("MInt")),
                          "multiplier": mist("MOption", mist("MInt"))}),
])
async def test_execute_of_each_example(client, file, execute):
    name = file.removesuffix(".py")
    info = await deploy(client, name, file)
    assert info["execute"] == execute
    assert (info["path"], info["className"]) == (file, name)


async def test_creating_a_function_whose_name_exists_is_400(client):
    original = await deploy(client, "echo", "echo.py")
    await deploy(client, "typed", "typed.py")

    response = await client.post(f"{API}/functions", json={
        "name": "echo", "path": "typed.py", "className": "typed"})
    error = await error_of(response, 400, "bad_request")
    assert "already exists" in error["message"]
    assert await json_of(await client.get(f"{API}/functions/echo")) == original


async def test_put_updates_a_function(client):
    await deploy(client, "job", "echo.py", class_name="echo")
    assert (await client.post(f"{API}/contexts", json={"name": "other"})).status == 200
    assert (await upload(client, "typed.py", function_source("typed.py"))).status == 200

    response = await client.put(f"{API}/functions", json={
        "name": "job", "path": "typed.py", "className": "typed", "defaultContext": "other"})
    updated = await json_of(response)
    assert updated["execute"] == TYPED_EXECUTE
    assert (updated["path"], updated["className"], updated["defaultContext"]) == \
        ("typed.py", "typed", "other")
    assert await json_of(await client.get(f"{API}/functions/job")) == updated


async def test_a_spark_function_with_a_python_default_context_is_400(client):
    body = {"name": "scoring", "engine": "python"}
    assert (await client.post(f"{API}/contexts", json=body)).status == 200
    await deploy(client, "job", "echo.py", class_name="echo")
    definition = {"path": "echo.py", "className": "echo", "defaultContext": "scoring"}

    response = await client.put(f"{API}/functions", json={"name": "job", **definition})
    error = await error_of(response, 400, "wrong_engine")
    assert error["message"] == (
        "defaultContext: function 'job' takes a SparkSession, so it needs engine 'spark', but "
        "context 'scoring' runs on engine 'python'; use a context with engine 'spark', or drop "
        "the Spark handle to make it a plain function (docs/functions.md)")
    assert error["details"] == {"field": "defaultContext", "function": "job",
                                "context": "scoring", "engine": "python", "needs": "spark"}
    response = await client.post(f"{API}/functions", json={"name": "new", **definition})
    assert "function 'new'" in (await error_of(response, 400, "wrong_engine"))["message"]

    listed = await json_of(await client.get(f"{API}/functions"))
    assert [(f["name"], f["defaultContext"]) for f in listed] == [("job", "default")]


async def test_a_context_of_spark_functions_cannot_switch_to_python(client):
    assert (await client.post(f"{API}/contexts", json={"name": "batch"})).status == 200
    await deploy(client, "job", "echo.py", class_name="echo", context="batch")
    await deploy(client, "add", "plain.py", context="batch")

    response = await client.put(f"{API}/contexts/batch", json={"engine": "python"})
    error = await error_of(response, 400, "wrong_engine")
    assert error["message"].startswith("engine: function 'job' takes a SparkSession, so it "
                                       "needs engine 'spark'")
    assert (await json_of(await client.get(f"{API}/contexts/batch")))["engine"] == "spark"

    await client.put(f"{API}/functions", json={"name": "job", "path": "echo.py",
                                                "className": "echo"})  # back to `default`
    response = await client.put(f"{API}/contexts/batch", json={"engine": "python"})
    assert (await json_of(response))["engine"] == "python"  # a plain function runs there


async def test_a_plain_function_may_default_to_a_python_context(client):
    body = {"name": "scoring", "engine": "python"}
    assert (await client.post(f"{API}/contexts", json=body)).status == 200
    info = await deploy(client, "add", "plain.py", context="scoring")
    assert (info["needsSpark"], info["defaultContext"]) == (False, "scoring")
    assert info["execute"] == {"x": mist("MInt"), "y": mist("MOption", mist("MInt"))}


async def test_put_of_an_unknown_function_is_404_and_creates_nothing(client):
    assert (await upload(client, "echo.py", function_source("echo.py"))).status == 200
    response = await client.put(f"{API}/functions", json={
        "name": "ghost", "path": "echo.py", "className": "echo"})
    error = await error_of(response, 404, "not_found")
    assert "ghost" in error["message"]
    assert await json_of(await client.get(f"{API}/functions")) == []


async def test_delete_function_returns_it_then_it_is_gone(client):
    info = await deploy(client, "echo", "echo.py")

    assert await json_of(await client.delete(f"{API}/functions/echo")) == info
    await error_of(await client.get(f"{API}/functions/echo"), 404, "not_found")
    assert await json_of(await client.get(f"{API}/functions")) == []
    await error_of(await client.delete(f"{API}/functions/echo"), 404, "not_found")
    # The artifact is free to delete now.
    assert (await client.delete(f"{API}/artifacts/echo.py")).status == 200


async def test_get_unknown_function_is_404(client):
    error = await error_of(await client.get(f"{API}/functions/nope"), 404, "not_found")
    assert error["details"] == {"function": "nope"}


async def test_function_in_an_unknown_artifact_is_400(client):
    response = await client.post(f"{API}/functions", json={
        "name": "echo", "path": "missing.py", "className": "echo"})
    error = await error_of(response, 400, "bad_request")
    assert error["details"] == {"field": "path", "got": "missing.py"}
    assert "missing.py" in error["message"]
    assert await json_of(await client.get(f"{API}/functions")) == []


async def test_function_with_an_unknown_context_is_400(client):
    assert (await upload(client, "echo.py", function_source("echo.py"))).status == 200
    response = await client.post(f"{API}/functions", json={
        "name": "echo", "path": "echo.py", "className": "echo", "defaultContext": "nope"})
    error = await error_of(response, 400, "bad_request")
    assert error["details"] == {"field": "defaultContext", "got": "nope"}
    assert await json_of(await client.get(f"{API}/functions")) == []


ALPHA_BETA = b"""GAMMA = 3


def alpha(spark, x: int):
    return x


def beta(spark):
    return GAMMA
"""


async def test_class_name_not_in_the_file_is_400_listing_what_exists(client):
    assert (await upload(client, "ab.py", ALPHA_BETA)).status == 200
    response = await client.post(f"{API}/functions", json={
        "name": "gamma", "path": "ab.py", "className": "gamma"})
    error = await error_of(response, 400, "invalid_artifact")
    assert error["details"]["functions"] == ["alpha", "beta"]
    assert "alpha, beta" in error["message"]
    assert await json_of(await client.get(f"{API}/functions")) == []


async def test_force_stores_a_function_without_inspecting_it(client):
    assert (await upload(client, "ab.py", ALPHA_BETA)).status == 200
    response = await client.post(f"{API}/functions?force=true", json={
        "name": "gamma", "path": "ab.py", "className": "gamma"})
    info = await json_of(response)
    assert info == {"name": "gamma", "lang": "python", "execute": {}, "tags": [],
                    "path": "ab.py", "className": "gamma", "defaultContext": "default",
                    "argumentsSchema": None, "needsSpark": None}
    assert await json_of(await client.get(f"{API}/functions/gamma")) == info


async def test_force_false_as_mist_cli_sends_it_inspects(client):
    """mist-cli sends ``force=False`` (Python's str of its validate flag) on every deploy."""
    assert (await upload(client, "ab.py", ALPHA_BETA)).status == 200
    response = await client.post(f"{API}/functions?force=False", json={
        "name": "alpha", "path": "ab.py", "className": "alpha"})
    assert (await json_of(response))["execute"] == {"x": mist("MInt")}
    response = await client.post(f"{API}/functions?force=False", json={
        "name": "gamma", "path": "ab.py", "className": "gamma"})
    await error_of(response, 400, "invalid_artifact")


async def test_function_body_that_is_not_json_is_400_with_line_and_column(client):
    body = b'{\n  "name": "echo",\n  "path": \n}'
    response = await client.post(f"{API}/functions", data=body,
                                 headers={"Content-Type": "application/json"})
    error = await error_of(response, 400, "bad_request")
    assert error["details"] == {"line": 4, "column": 1}
    assert "line 4 column 1" in error["message"]


@pytest.mark.parametrize("path", ["/functions", "/contexts"])
async def test_body_with_an_integer_too_long_to_read_is_400(client, path):
    body = b'{"name": "x", "maxJobs": ' + b"7" * 5000 + b"}"
    response = await client.post(API + path, data=body,
                                 headers={"Content-Type": "application/json"})
    error = await error_of(response, 400, "bad_request")
    assert error["message"].startswith("request body: ")


@pytest.mark.parametrize(("body", "got"), [
    (b'["echo"]', "an array"), (b'"echo"', "a string"), (b"null", "null")])
async def test_function_body_that_is_not_an_object_is_400(client, body, got):
    response = await client.post(f"{API}/functions", data=body,
                                 headers={"Content-Type": "application/json"})
    error = await error_of(response, 400, "bad_request")
    assert error["message"] == f"function: expected a JSON object, got {got}"


async def test_function_body_with_unknown_fields_is_400(client):
    assert (await upload(client, "echo.py", function_source("echo.py"))).status == 200
    response = await client.post(f"{API}/functions", json={
        "name": "echo", "path": "echo.py", "className": "echo", "colour": "red", "args": {}})
    error = await error_of(response, 400, "bad_request")
    assert error["details"] == {"fields": ["args", "colour"]}
    assert "args, colour" in error["message"]
    assert await json_of(await client.get(f"{API}/functions")) == []


async def test_tags_are_kept(client):
    assert (await upload(client, "echo.py", function_source("echo.py"))).status == 200
    body = {"name": "echo", "path": "echo.py", "className": "echo", "tags": ["demo", "fast"]}
    info = await json_of(await client.post(f"{API}/functions", json=body))
    assert info["tags"] == ["demo", "fast"]
    assert (await json_of(await client.get(f"{API}/functions/echo")))["tags"] == ["demo", "fast"]


@pytest.mark.parametrize(("field", "value"), [
    ("name", "../echo"), ("name", ""), ("className", "1echo"), ("className", "echo()"),
    ("lang", "scala"), ("tags", "demo"), ("tags", [1])])
async def test_function_fields_with_bad_values_are_400(client, field, value):
    assert (await upload(client, "echo.py", function_source("echo.py"))).status == 200
    body = {"name": "echo", "path": "echo.py", "className": "echo", field: value}
    error = await error_of(await client.post(f"{API}/functions", json=body), 400, "bad_request")
    assert error["details"]["field"] == field
    assert error["message"].startswith(f"{field}: ")
    assert await json_of(await client.get(f"{API}/functions")) == []


# ---------------------------------------------------------------------------------------------
# Contexts

CUSTOM_DEFAULTS = ContextDefaults(
    spark_conf={"spark.master": "local[1]", "spark.ui.enabled": "false"}, max_jobs=3,
    worker_mode="exclusive", precreated=False, downtime_s=None, max_conn_failures=7,
    run_options="--driver-memory 1g", streaming_duration_s=2.0,
)


MIST_CONTEXT_FIELDS = ("name", "sparkConf", "maxJobs", "workerMode", "precreated", "downtime",
                       "maxConnFailures", "runOptions", "streamingDuration")


def mist_view(context: dict[str, Any]) -> dict[str, Any]:
    """Mist's ``Context`` fields of a context (sparkgate adds its own, which old clients skip)."""
    assert set(MIST_CONTEXT_FIELDS) <= set(context), context
    return {k: context[k] for k in MIST_CONTEXT_FIELDS}


async def mist_contexts(client) -> list[dict[str, Any]]:
    return [mist_view(c) for c in await json_of(await client.get(f"{API}/contexts"))]


def custom_context(name: str, **fields: Any) -> dict[str, Any]:
    """A context as the API shows it: CUSTOM_DEFAULTS with ``fields`` replaced."""
    return {"name": name, "sparkConf": {"spark.master": "local[1]", "spark.ui.enabled": "false"},
            "maxJobs": 3, "workerMode": "exclusive", "precreated": False, "downtime": "Inf",
            "maxConnFailures": 7, "runOptions": "--driver-memory 1g",
            "streamingDuration": "2s", **fields}


@pytest.fixture
async def ctx_client(make_client):
    """A client whose context defaults are not the built-in ones, so they are seen to be used."""
    return await make_client(context=CUSTOM_DEFAULTS)


async def test_default_context_is_listed_with_the_configured_defaults(ctx_client):
    default = custom_context("default")
    assert await mist_contexts(ctx_client) == [default]
    assert mist_view(await json_of(await ctx_client.get(f"{API}/contexts/default"))) == default


async def test_default_context_uses_the_settings_of_the_test_session(client, settings):
    defaults = settings.context
    got = await json_of(await client.get(f"{API}/contexts/default"))
    assert mist_view(got) == {"name": "default", "sparkConf": defaults.spark_conf,
                   "maxJobs": defaults.max_jobs, "workerMode": defaults.worker_mode,
                   "precreated": defaults.precreated, "downtime": "3600s",
                   "maxConnFailures": defaults.max_conn_failures,
                   "runOptions": defaults.run_options, "streamingDuration": "1s"}


async def test_post_with_only_a_name_fills_the_defaults(ctx_client):
    created = await json_of(await ctx_client.post(f"{API}/contexts", json={"name": "batch"}))
    assert mist_view(created) == custom_context("batch")
    assert await json_of(await ctx_client.get(f"{API}/contexts/batch")) == created
    assert await mist_contexts(ctx_client) == [custom_context("default"), mist_view(created)]


async def test_post_of_an_existing_context_updates_it(ctx_client):
    """Mist's POST upserts, and mist-cli's ``apply`` relies on it."""
    first = {"name": "batch", "maxJobs": 4, "workerMode": "shared"}
    assert (await ctx_client.post(f"{API}/contexts", json=first)).status == 200

    second = {"name": "batch", "maxJobs": 9, "sparkConf": {"spark.executor.cores": "2"}}
    updated = await json_of(await ctx_client.post(f"{API}/contexts", json=second))
    assert mist_view(updated) == custom_context("batch", maxJobs=9,
                                     sparkConf={"spark.executor.cores": "2"})
    assert await json_of(await ctx_client.get(f"{API}/contexts/batch")) == updated
    names = [c["name"] for c in await json_of(await ctx_client.get(f"{API}/contexts"))]
    assert names == ["default", "batch"]


async def test_put_replaces_every_field(ctx_client):
    body = {"name": "batch", "maxJobs": 4, "workerMode": "shared", "precreated": True,
            "downtime": "120s", "runOptions": "--x"}
    assert (await ctx_client.post(f"{API}/contexts", json=body)).status == 200

    response = await ctx_client.put(f"{API}/contexts/batch", json={"maxJobs": 6})
    replaced = await json_of(response)
    # Fields left out go back to the defaults: PUT is a full update.
    assert mist_view(replaced) == custom_context("batch", maxJobs=6)
    assert await json_of(await ctx_client.get(f"{API}/contexts/batch")) == replaced


async def test_a_context_names_its_engine_spark_unless_set(ctx_client):
    assert (await json_of(await ctx_client.get(f"{API}/contexts/default")))["engine"] == "spark"
    created = await json_of(await ctx_client.post(
        f"{API}/contexts", json={"name": "scoring", "engine": "python"}))
    assert created["engine"] == "python"
    assert await json_of(await ctx_client.get(f"{API}/contexts/scoring")) == created
    replaced = await json_of(await ctx_client.put(f"{API}/contexts/scoring", json={}))
    assert replaced["engine"] == "spark"


async def test_put_of_the_default_context_changes_it(ctx_client):
    response = await ctx_client.put(f"{API}/contexts/default", json={"maxJobs": 8})
    assert mist_view(await json_of(response)) == custom_context("default", maxJobs=8)
    assert await mist_contexts(ctx_client) == [custom_context("default", maxJobs=8)]


async def test_put_of_an_unknown_context_is_404(client):
    await error_of(await client.put(f"{API}/contexts/ghost", json={"maxJobs": 2}), 404,
                   "not_found")
    await error_of(await client.get(f"{API}/contexts/ghost"), 404, "not_found")


async def test_put_with_another_name_in_the_body_is_400(client):
    assert (await client.post(f"{API}/contexts", json={"name": "a"})).status == 200
    response = await client.put(f"{API}/contexts/a", json={"name": "b", "maxJobs": 2})
    error = await error_of(response, 400, "bad_request")
    assert error["details"] == {"field": "name"}
    await error_of(await client.get(f"{API}/contexts/b"), 404, "not_found")


async def test_get_unknown_context_is_404(client):
    error = await error_of(await client.get(f"{API}/contexts/nope"), 404, "not_found")
    assert error["details"] == {"context": "nope"}


async def test_delete_context(ctx_client):
    created = await json_of(await ctx_client.post(f"{API}/contexts", json={"name": "batch"}))
    assert await json_of(await ctx_client.delete(f"{API}/contexts/batch")) == created
    await error_of(await ctx_client.get(f"{API}/contexts/batch"), 404, "not_found")
    await error_of(await ctx_client.delete(f"{API}/contexts/batch"), 404, "not_found")


async def test_delete_of_the_default_context_is_400(ctx_client):
    error = await error_of(await ctx_client.delete(f"{API}/contexts/default"), 400, "bad_request")
    assert "default" in error["message"]
    assert mist_view(await json_of(await ctx_client.get(f"{API}/contexts/default"))) == \
        custom_context("default")


async def test_delete_of_a_context_used_by_a_function_is_409(client):
    assert (await client.post(f"{API}/contexts", json={"name": "batch"})).status == 200
    await deploy(client, "echo", "echo.py", context="batch")

    error = await error_of(await client.delete(f"{API}/contexts/batch"), 409, "conflict")
    assert error["details"] == {"context": "batch", "functions": ["echo"]}
    assert (await client.get(f"{API}/contexts/batch")).status == 200


@pytest.mark.parametrize(("field", "value", "expected"), [
    ("maxJobs", "x", "an integer from 1 to 1000"),
    ("maxJobs", "\u0663", "an integer from 1 to 1000"),  # isdigit() is true of it
    ("maxJobs", 0, "an integer from 1 to 1000"),
    ("maxJobs", True, "an integer from 1 to 1000"),
    ("workerMode", "both", "shared or exclusive"),
    ("engine", "flink", "spark or python"),
    ("downtime", "soon", "a duration like 3600s, 10min or Inf"),
    ("streamingDuration", "Inf", "a finite duration like 1s"),
    ("sparkConf", ["spark.master", "local"], "an object of Spark settings"),
    ("sparkConf", {"spark.x": {"nested": 1}}, "an object whose values are strings"),
    ("precreated", "maybe", "true or false"),
    ("runOptions", 5, "a string"),
    ("colour", "red", "one of sparkConf, maxJobs"),
])
async def test_invalid_context_field_is_400_naming_it(client, field, value, expected):
    response = await client.post(f"{API}/contexts", json={"name": "bad", field: value})
    error = await error_of(response, 400, "invalid_arguments")
    [problem] = error["details"]
    assert problem["field"] == field
    assert problem["expected"].startswith(expected)
    assert field in error["message"]
    await error_of(await client.get(f"{API}/contexts/bad"), 404, "not_found")


async def test_every_invalid_context_field_is_reported_at_once(client):
    body = {"name": "bad", "maxJobs": "x", "workerMode": "both", "downtime": "soon",
            "sparkConf": "spark.master=local", "colour": "red"}
    error = await error_of(await client.post(f"{API}/contexts", json=body), 400,
                           "invalid_arguments")
    assert [p["field"] for p in error["details"]] == \
        ["maxJobs", "workerMode", "downtime", "sparkConf", "colour"]
    assert error["message"] == \
        "context 'bad': invalid field(s) maxJobs, workerMode, downtime, sparkConf, colour"
    await error_of(await client.get(f"{API}/contexts/bad"), 404, "not_found")


async def test_invalid_put_leaves_the_context_unchanged(client):
    created = await json_of(await client.post(f"{API}/contexts",
                                              json={"name": "batch", "maxJobs": 4}))
    response = await client.put(f"{API}/contexts/batch",
                                json={"maxJobs": 5, "workerMode": "both"})
    await error_of(response, 400, "invalid_arguments")
    assert await json_of(await client.get(f"{API}/contexts/batch")) == created


@pytest.mark.parametrize(("body", "problem"), [
    ({}, "name"), ({"name": "../up"}, "name"), ({"name": 5}, "name")])
async def test_context_without_a_usable_name_is_400(client, body, problem):
    error = await error_of(await client.post(f"{API}/contexts", json=body), 400, "bad_request")
    assert error["details"]["field"] == problem
    assert [c["name"] for c in await json_of(await client.get(f"{API}/contexts"))] == \
        ["default"]


async def test_context_body_that_is_not_an_object_is_400(client):
    response = await client.post(f"{API}/contexts", data=b"[1]",
                                 headers={"Content-Type": "application/json"})
    error = await error_of(response, 400, "bad_request")
    assert error["message"] == "context: expected a JSON object, got an array"


async def test_sparkgate_context_fields(make_client):
    """Beyond Mist's fields: default job timeouts, and the state of the context's workers."""
    client = await make_client(context=dataclasses.replace(CUSTOM_DEFAULTS, start_timeout_s=30.0))
    default = await json_of(await client.get(f"{API}/contexts/default"))
    assert {k: default[k] for k in ("startTimeout", "performTimeout", "state", "workerFailures",
                                    "lastFailure")} == \
        {"startTimeout": "30s", "performTimeout": "Inf", "state": "ok", "workerFailures": 0,
         "lastFailure": None}

    body = {"name": "timed", "startTimeout": "2min", "performTimeout": "10s"}
    created = await json_of(await client.post(f"{API}/contexts", json=body))
    assert (created["startTimeout"], created["performTimeout"]) == ("120s", "10s")
    assert await json_of(await client.get(f"{API}/contexts/timed")) == created


@pytest.mark.parametrize(("field", "value"), [
    ("downtime", "99999999999999999999999d"), ("downtime", 1e300),
    ("streamingDuration", "99999999999999999999999d"), ("performTimeout", 1e300),
])
async def test_absurdly_long_context_durations_are_400(client, field, value):
    response = await client.post(f"{API}/contexts", json={"name": "long", field: value})
    error = await error_of(response, 400, "invalid_arguments")
    assert [p["field"] for p in error["details"]] == [field]
    await error_of(await client.get(f"{API}/contexts/long"), 404, "not_found")


@pytest.mark.parametrize(("sent", "shown"), [
    ("Inf", "Inf"), ("inf", "Inf"), ("120s", "120s"), ("10min", "600s"),
    ("3600 seconds", "3600s"), (90, "90s")])
async def test_downtime_round_trip(client, sent, shown):
    created = await json_of(await client.post(f"{API}/contexts",
                                              json={"name": "d", "downtime": sent}))
    assert created["downtime"] == shown
    assert (await json_of(await client.get(f"{API}/contexts/d")))["downtime"] == shown


async def test_context_as_mist_cli_sends_it(client):
    """mist-cli's ``apply`` POSTs a context with every field, in camelCase, Spark settings as
    strings, durations as text (it defaults downtime to 120s and maxJobs to 20)."""
    body = {"name": "foo", "maxJobs": 20, "downtime": "120s",
            "sparkConf": {"spark.default.parallelism": "128", "spark.scheduler.mode": "FAIR",
                          "spark.speculation": True, "spark.speculation.multiplier": 0.1},
            "workerMode": "shared", "runOptions": "", "precreated": False,
            "streamingDuration": "1s", "maxConnFailures": 123}

    created = await json_of(await client.post(f"{API}/contexts", json=body))
    assert mist_view(created) == {
        "name": "foo", "maxJobs": 20, "downtime": "120s",
        "sparkConf": {"spark.default.parallelism": "128", "spark.scheduler.mode": "FAIR",
                      "spark.speculation": "true", "spark.speculation.multiplier": "0.1"},
        "workerMode": "shared", "runOptions": "", "precreated": False,
        "streamingDuration": "1s", "maxConnFailures": 123,
    }
    # Applying the same file again is an update, not an error.
    assert await json_of(await client.post(f"{API}/contexts", json=body)) == created


async def test_concurrent_posts_of_one_new_context_all_succeed(client):
    """mist-cli may apply the same context from several machines at once: POST upserts."""
    for attempt in range(5):
        name = f"race{attempt}"
        responses = await asyncio.gather(*(
            client.post(f"{API}/contexts", json={"name": name, "maxJobs": n})
            for n in range(1, 9)))
        assert [r.status for r in responses] == [200] * 8, [await r.text() for r in responses]
        stored = await json_of(await client.get(f"{API}/contexts/{name}"))
        assert 1 <= stored["maxJobs"] <= 8


async def test_concurrent_puts_of_the_default_context_all_succeed(client, engine):
    """``default`` exists before it is stored: the first updates all insert its row."""
    for _ in range(5):
        # Back to "configured defaults, not stored", the state of a fresh installation.
        with engine.begin() as conn:
            conn.execute(delete(tables.contexts).where(tables.contexts.c.name == "default"))
        responses = await asyncio.gather(*(
            client.put(f"{API}/contexts/default", json={"maxJobs": n}) for n in range(1, 9)))
        assert [r.status for r in responses] == [200] * 8, [await r.text() for r in responses]


async def test_concurrent_creation_of_distinct_contexts(client):
    for attempt in range(3):
        names = [f"c{attempt}-{n}" for n in range(20)]
        responses = await asyncio.gather(*(
            client.post(f"{API}/contexts", json={"name": name}) for name in names))
        assert [r.status for r in responses] == [200] * 20, \
            [await r.text() for r in responses if r.status != 200][:1]
    listed = {c["name"] for c in await json_of(await client.get(f"{API}/contexts"))}
    assert len(listed) == 61


async def test_concurrent_uploads_of_distinct_artifacts(client):
    for attempt in range(3):
        names = [f"a{attempt}_{n}.py" for n in range(20)]
        responses = await asyncio.gather(*(
            upload(client, name, f"X = {n}\n".encode()) for n, name in enumerate(names)))
        assert [r.status for r in responses] == [200] * 20, \
            [await r.text() for r in responses if r.status != 200][:1]
    assert len(await artifact_names(client)) == 60


# ---------------------------------------------------------------------------------------------
# Status and errors


async def test_status_reports_what_mist_cli_prints(client):
    status = await json_of(await client.get(f"{API}/status"))
    assert status["mistVersion"] == version("sparkgate")
    assert status["sparkVersion"] == version("pyspark")
    runtime = status["javaVersion"]["runtimeVersion"]
    assert isinstance(runtime, str)
    assert runtime
    assert isinstance(status["started"], int)
    assert status["started"] > 1_600_000_000_000  # epoch milliseconds, not seconds


async def test_health_is_ok_when_the_database_and_redis_answer(client):
    response = await client.get("/health")
    assert (response.status, await response.json()) == (200, {"status": "ok"})


async def test_health_is_503_while_the_database_is_unreachable(make_client):
    client = await make_client(database_url="postgresql+psycopg://nobody@127.0.0.1:1/none")
    response = await client.get("/health")
    error = await error_of(response, 503, "unavailable")
    assert "database" in error["message"]
    assert int(response.headers["Retry-After"]) > 0


async def test_unknown_route_is_404_in_the_error_shape(client):
    error = await error_of(await client.get(f"{API}/nothing/here"), 404, "not_found")
    assert error == {"code": "not_found", "message": "no such endpoint: GET /v2/api/nothing/here",
                     "details": None}


async def test_wrong_method_is_405_with_allow(client):
    response = await client.patch(f"{API}/functions")
    error = await error_of(response, 405, "method_not_allowed")
    allowed = {m.strip() for m in response.headers["Allow"].split(",")}
    assert {"GET", "POST", "PUT"} <= allowed
    assert "PATCH" not in allowed
    assert error["message"].startswith("PATCH is not allowed on /v2/api/functions")
    response = await client.post(f"{API}/status")
    await error_of(response, 405, "method_not_allowed")
    assert "GET" in response.headers["Allow"]


@pytest.mark.parametrize("path", [
    "/functions/a%00b", "/contexts/a%00b", "/artifacts/a%00b.py", "/artifacts/a%00b.py/sha"])
async def test_a_name_with_a_nul_character_is_not_found(client, path):
    error = await error_of(await client.get(API + path), 404, "not_found")
    [name] = error["details"].values()
    assert name.startswith("a\x00b")
    assert "does not exist" in error["message"]
