"""Hostile input through the HTTP API (DESIGN invariant 4): artifact names, archives and JSON
bodies made to break things each get a 4xx whose message names the problem, and afterwards
nothing was written: no artifact, blob, function, context or job, and no file anywhere.

The real app runs against the real database (SQLite and PostgreSQL) and Redis.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import json
import zipfile
import zlib
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from sqlalchemy import func, select

from sparkgate.gateway.app import create_app
from sparkgate.gateway.connections import make_runner
from sparkgate.jobs import tables
from tests.api_responses import error_of, json_of
from tests.conftest import free_port, function_source
from tests.zips import (
    as_wheel,
    make_zip,
    package_zip,
    rename_entry,
    set_declared_size,
    with_symlink,
)

API = "/v2/api"
OK = b"def f(spark, n: int = 1):\n    return n\n"
COUNTED = (tables.artifacts, tables.artifact_blobs, tables.functions, tables.contexts,
           tables.jobs)


# ---------------------------------------------------------------------------------------------
# Fixtures and helpers


# Where the escaping entries of the hostile archives would land if they were ever written.
ESCAPED_NAMES = ("escape.py", "sparkgate-evil.py", "evil.py", "passwd.py")


class Footprint:
    """Row counts of what a request could create, every file under the test's folder (the
    app's data_dir is in it), and the places an escaping entry would reach."""

    def __init__(self, engine, tmp_path: Path) -> None:
        self.engine = engine
        self.tmp_path = tmp_path
        self.before = self.take()

    def take(self) -> tuple[dict[str, int], set[str]]:
        with self.engine.connect() as conn:
            counts = {t.name: conn.execute(select(func.count()).select_from(t)).scalar()
                      for t in COUNTED}
        files = {str(p) for p in self.tmp_path.rglob("*")}
        for place in (Path.cwd(), *self.tmp_path.parents[:4], Path("/tmp"), Path("/etc")):
            files.update(str(place / n) for n in ESCAPED_NAMES if (place / n).exists())
        return counts, files

    def unchanged(self) -> None:
        counts, files = self.take()
        assert counts == self.before[0]
        assert files == self.before[1]
        assert not any(Path(f).name in ESCAPED_NAMES for f in files)


@pytest.fixture
def footprint(engine, tmp_path: Path) -> Footprint:
    return Footprint(engine, tmp_path)


def raw_multipart(filename_header: str, content: bytes) -> tuple[bytes, str]:
    """A multipart body with the Content-Disposition's file name part written as is."""
    boundary = "hostile-boundary-2b7"
    head = (f'--{boundary}\r\nContent-Disposition: form-data; name="file"; {filename_header}'
            "\r\nContent-Type: application/octet-stream\r\n\r\n").encode("utf-8",
                                                                        "surrogateescape")
    return (head + content + f"\r\n--{boundary}--\r\n".encode(),
            f"multipart/form-data; boundary={boundary}")


async def upload(client, name: str, content: bytes, query: str = ""):
    form = aiohttp.FormData()
    form.add_field("file", content, filename=name, content_type="application/zip")
    return await client.post(f"{API}/artifacts{query}", data=form)


async def deploy_echo(client) -> None:
    form = aiohttp.FormData()
    form.add_field("file", function_source("echo.py"), filename="echo.py")
    assert (await client.post(f"{API}/artifacts", data=form)).status == 200
    for file, name in (("echo.py", "echo"),):
        response = await client.post(f"{API}/functions",
                                     json={"name": name, "path": file, "className": name})
        assert response.status == 200, await response.text()


# ---------------------------------------------------------------------------------------------
# Artifact names


@pytest.mark.parametrize("header", [
    'filename="a/b.py"',
    'filename="../x.py"',
    'filename=".."',
    'filename="..\\\\..\\\\x.py"',
    'filename="x\\\\y.py"',
    'filename="a\x00b.py"',
    'filename="/etc/passwd.py"',
    f'filename="{"a" * 300}.py"',
    "filename*=UTF-8''..%2F..%2Fetc%2Fevil.py",
    "filename*=UTF-8''a%00b.py",
    'filename="C:\\\\evil.py"',
    'filename="caf\u00e9.py"',
])
async def test_hostile_artifact_names_are_refused(client, footprint, header):
    body, content_type = raw_multipart(header, b"x = 1\n")
    response = await client.post(f"{API}/artifacts", data=body,
                                 headers={"Content-Type": content_type})
    error = await error_of(response, 400, "bad_request")
    if "\x00" in header:  # a NUL is not even a valid header: the form cannot be read
        assert error["message"].startswith("upload: malformed multipart/form-data: ")
    else:
        assert error["message"].startswith("file name: expected a name of letters, digits")
        assert error["details"]["field"] == "file name"
    footprint.unchanged()


# ---------------------------------------------------------------------------------------------
# Archives


def bomb() -> bytes:
    return make_zip({"ok/__init__.py": OK, "ok/zeros.py": b"\0" * (20 * 1024 * 1024)})


HOSTILE_ARCHIVES = {
    "absolute": (make_zip({"ok/__init__.py": OK, "/tmp/sparkgate-evil.py": OK}),
                 "/tmp/sparkgate-evil.py", "absolute_path"),
    "escaping": (make_zip({"ok/__init__.py": OK, "ok/../../../escape.py": OK}),
                 "ok/../../../escape.py", "parent_component"),
    "backslash": (make_zip({"ok/__init__.py": OK, "..\\..\\escape.py": OK}),
                  "..\\..\\escape.py", "backslash"),
    "symlink": (with_symlink({"ok/__init__.py": OK}, "ok/link.py", "/etc/passwd"),
                "ok/link.py", "symlink"),
    "nul": (rename_entry(make_zip({"ok/__init__.py": OK, "ok/aXb.py": OK}), "ok/aXb.py",
                         b"ok/a\x00b.py"), "ok/a\x00b.py", "bad_name"),
    "duplicate": (make_zip([("ok/__init__.py", OK), ("ok/a.py", OK), ("ok/a.py", b"x=2\n")]),
                  "ok/a.py", "duplicate"),
    "bomb_ratio": (bomb(), "ok/zeros.py", "compression_ratio"),
    "lying_small": (set_declared_size(bomb(), "ok/zeros.py", 2000), "ok/zeros.py", "checksum"),
    "lying_large": (set_declared_size(make_zip({"ok/__init__.py": OK}), "ok/__init__.py", 900),
                    "ok/__init__.py", "size_mismatch"),
    "stdlib_shadow": (make_zip({"subprocess.py": OK}), "subprocess.py", "reserved_name"),
}


@pytest.mark.parametrize("kind", sorted(HOSTILE_ARCHIVES))
@pytest.mark.parametrize("suffix", [".zip", ".whl"])
async def test_hostile_archives_are_refused_naming_entry_and_rule(client, footprint, kind,
                                                                  suffix):
    content, entry, rule = HOSTILE_ARCHIVES[kind]
    name = f"hostile{suffix}"
    error = await error_of(await upload(client, name, content), 400, "invalid_artifact")
    assert error["details"]["rule"] == rule, error
    assert error["details"]["entry"] == entry
    assert error["message"].startswith(f"artifact {name!r}: entry {entry!r}: ")
    footprint.unchanged()


@pytest.mark.parametrize(("content", "text"), [
    (b"PK\x03\x04 truncated", "not a readable zip archive"),
    (package_zip()[:-30], "not a readable zip archive"),
    (b"def f(spark):\n    return 1\n", "is not a zip archive"),
    (gzip.compress(OK), "is not a zip archive"),
], ids=["zip_header_only", "zip_cut_short", "python_source", "gzip"])  # the bytes hold the time
async def test_truncated_and_fake_archives_are_refused(client, footprint, content, text):
    error = await error_of(await upload(client, "fake.egg", content), 400, "invalid_artifact")
    assert text in error["message"] and error["details"]["rule"] == "not_a_zip"
    footprint.unchanged()


async def test_the_unpacked_size_cap_follows_max_artifact_bytes(make_client, engine, tmp_path):
    client = await make_client(max_artifact_bytes=60_000)  # so at most 600,000 unpacked
    noise = bytes(range(256)) * 1000  # 256,000 bytes that do not compress much when stored
    content = make_zip({"ok/__init__.py": OK, **{f"ok/d{i}.py": noise for i in range(3)}},
                       method=zipfile.ZIP_STORED)
    footprint = Footprint(engine, tmp_path)
    error = await error_of(await upload(client, "big.zip", content), 413, "payload_too_large")
    assert "60000 bytes" in error["message"]  # the archive itself is over the upload limit
    small = make_zip({"ok/__init__.py": OK, **{f"ok/d{i}.py": noise for i in range(3)}})
    assert len(small) < 60_000
    error = await error_of(await upload(client, "big.zip", small), 400, "invalid_artifact")
    assert error["details"]["rule"] in ("unpacked_size", "compression_ratio")
    assert "600,000" in error["message"] or "ratio" in error["message"]
    footprint.unchanged()


async def test_a_hostile_replacement_leaves_the_stored_artifact_as_it_was(client, engine,
                                                                          tmp_path):
    good = as_wheel({"orders/__init__.py": b"", "orders/jobs.py": OK})
    assert (await upload(client, "orders-1.0-py3-none-any.whl", good)).status == 200
    footprint = Footprint(engine, tmp_path)
    for content, _, _ in HOSTILE_ARCHIVES.values():
        response = await upload(client, "orders-1.0-py3-none-any.whl", content, "?force=true")
        await error_of(response, 400, "invalid_artifact")
    download = await client.get(f"{API}/artifacts/orders-1.0-py3-none-any.whl")
    assert await download.read() == good
    footprint.unchanged()


# ---------------------------------------------------------------------------------------------
# JSON bodies, on every route that takes one

FUNCTION = {"name": "f2", "path": "echo.py", "className": "echo"}
CONTEXT = {"name": "ctx2"}
JSON_ROUTES = [
    ("POST", "/functions", FUNCTION),
    ("PUT", "/functions", {"name": "echo", "path": "echo.py", "className": "echo"}),
    ("POST", "/functions/echo/jobs", {"value": 1}),
    ("POST", "/contexts", CONTEXT),
    ("PUT", "/contexts/default", {"name": "default", "maxJobs": 2}),
]


def nested(depth: int) -> bytes:
    return b'{"value": ' + b"[" * depth + b"]" * depth + b"}"


HOSTILE_BODIES = {
    "latin-1": ('{"name": "caf\xe9"}'.encode("latin-1"), "not UTF-8"),
    "utf-16": ('{"name": "x"}'.encode("utf-16"), "not UTF-8"),
    "nested_100": (nested(100), "nested deeper than 64 levels"),
    "nested_100000": (nested(100_000), "nested deeper than 64 levels"),
    "1e999": (b'{"value": 1e999}', "1e999 (too large for a double)"),
    "-1e999": (b'{"value": -1e999}', "too large for a double"),
    "NaN": (b'{"value": NaN}', "JSON has no NaN or infinite numbers"),
    "10**5000": (b'{"value": 1' + b"0" * 5000 + b"}", "got one of 5,001 digits"),
    "-10**5000": (b'{"value": -1' + b"0" * 5000 + b"}", "got one of 5,001 digits"),
    "truncated": (b'{"value": [1, 2', "parse error at line 1"),
    "not_json": (b"value=1&name=x", "parse error at line 1 column 1"),
}


@pytest.mark.parametrize("kind", sorted(HOSTILE_BODIES))
@pytest.mark.parametrize(("method", "path", "_"), JSON_ROUTES)
async def test_hostile_json_bodies_are_refused_on_every_route(client, engine, tmp_path, kind,
                                                              method, path, _):
    await deploy_echo(client)
    footprint = Footprint(engine, tmp_path)
    body, text = HOSTILE_BODIES[kind]
    response = await client.request(method, f"{API}{path}", data=body,
                                    headers={"Content-Type": "application/json"})
    error = await error_of(response, 400, "bad_request")
    assert error["message"].startswith("request body: ")
    assert text in error["message"], error
    footprint.unchanged()


@pytest.mark.parametrize("content_type", [
    "multipart/form-data; boundary=x", "application/xml", "text/xml", "image/png",
    "application/zip"])
@pytest.mark.parametrize(("method", "path", "body"), JSON_ROUTES)
async def test_json_routes_refuse_a_body_labelled_as_something_else(client, engine, tmp_path,
                                                                    content_type, method, path,
                                                                    body):
    await deploy_echo(client)
    footprint = Footprint(engine, tmp_path)
    response = await client.request(method, f"{API}{path}", data=json.dumps(body),
                                    headers={"Content-Type": content_type})
    error = await error_of(response, 400, "bad_request")
    assert error["message"] == ("request body: expected JSON (Content-Type: application/json), "
                                f"got Content-Type {content_type.split(';')[0]}")
    assert error["details"]["field"] == "Content-Type"
    footprint.unchanged()


@pytest.mark.parametrize(("method", "path", "body"), JSON_ROUTES)
@pytest.mark.parametrize("content_type", [None, "application/x-www-form-urlencoded",
                                          "text/plain"])
async def test_json_sent_the_way_curl_and_mist_clients_send_it_is_read(client, method, path,
                                                                       body, content_type):
    """curl -d labels JSON form-urlencoded, and a bare client labels it nothing: both work."""
    await deploy_echo(client)
    headers = {} if content_type is None else {"Content-Type": content_type}
    response = await client.request(method, f"{API}{path}", data=json.dumps(body).encode(),
                                    headers=headers, skip_auto_headers=["Content-Type"])
    await json_of(response)


@pytest.mark.parametrize("content_type", ["application/json", "text/plain",
                                          "application/x-www-form-urlencoded"])
async def test_artifact_upload_refuses_anything_but_multipart(client, footprint, content_type):
    response = await client.post(f"{API}/artifacts", data=package_zip(),
                                 headers={"Content-Type": content_type})
    error = await error_of(response, 400, "bad_request")
    assert f"expected multipart/form-data with a 'file' field, got {content_type}" \
        in error["message"]
    footprint.unchanged()


async def test_a_compressed_body_is_measured_as_it_is_decompressed(make_client, engine,
                                                                   tmp_path):
    client = await make_client(max_body_bytes=100_000)
    await deploy_echo(client)
    footprint = Footprint(engine, tmp_path)
    body = b'{"value": "' + b" " * (50 * 1024 * 1024) + b'"}'
    packed = gzip.compress(body)
    assert len(packed) < 100_000
    response = await client.post(f"{API}/functions/echo/jobs", data=packed,
                                 headers={"Content-Type": "application/json",
                                          "Content-Encoding": "gzip"})
    error = await error_of(response, 413, "payload_too_large")
    assert "the limit is 100000" in error["message"]
    footprint.unchanged()


async def test_huge_integers_for_a_float_argument_are_invalid_arguments(client, engine,
                                                                        tmp_path):
    form = aiohttp.FormData()
    form.add_field("file", function_source("typed.py"), filename="typed.py")
    assert (await client.post(f"{API}/artifacts", data=form)).status == 200
    await json_of(await client.post(f"{API}/functions", json={
        "name": "typed", "path": "typed.py", "className": "typed"}))
    footprint = Footprint(engine, tmp_path)
    arguments = (b'{"count": 1, "ratio": 1' + b"0" * 400 + b', "label": "x", "enabled": true, '
                 b'"items": [], "weights": {"a": 1' + b"0" * 400 + b"}}")
    response = await client.post(f"{API}/functions/typed/jobs", data=arguments,
                                 headers={"Content-Type": "application/json"})
    error = await error_of(response, 400, "invalid_arguments")
    assert [d["field"] for d in error["details"]] == ["ratio", "weights.a"]
    assert error["details"][0]["expected"] == "finite number"
    assert error["details"][0]["got"].startswith("number 1000000000")
    footprint.unchanged()


# ---------------------------------------------------------------------------------------------
# Compressed bodies (Content-Encoding)

ARGUMENTS = b'{"value": 5}'
PACKED = gzip.compress(ARGUMENTS)
BROKEN_STREAMS = {
    "gzip_corrupt": ("gzip", PACKED[:10] + bytes(b ^ 0x5A for b in PACKED[10:]),
                     "the compressed data is corrupt"),
    "gzip_header_only": ("gzip", PACKED[:10], "ends before its end marker"),
    "gzip_no_trailer": ("gzip", PACKED[:-8], "ends before its end marker"),
    "gzip_not_gzip": ("gzip", ARGUMENTS, "the compressed data is corrupt"),
    "deflate_corrupt": ("deflate", b"\x78\x9c" + b"\xff" * 20, "the compressed data is corrupt"),
    "deflate_cut": ("deflate", zlib.compress(ARGUMENTS)[:6], "ends before its end marker"),
    "deflate_trailing": ("deflate", zlib.compress(ARGUMENTS) + b"junk",
                         "4 bytes follow the end of the compressed stream"),
}


@pytest.mark.parametrize("kind", sorted(BROKEN_STREAMS))
async def test_a_broken_compressed_body_is_a_400_and_runs_nothing(client, engine, tmp_path,
                                                                  kind):
    """A corrupt stream was a 500 with a traceback; one cut after its header read as {} and
    the job ran with its defaults."""
    await deploy_echo(client)
    footprint = Footprint(engine, tmp_path)
    coding, body, text = BROKEN_STREAMS[kind]
    response = await client.post(f"{API}/functions/echo/jobs", data=body, headers={
        "Content-Type": "application/json", "Content-Encoding": coding})
    error = await error_of(response, 400, "bad_request")
    assert error["message"].startswith(f"request body: Content-Encoding {coding}: ")
    assert text in error["message"], error
    assert error["details"] == {"field": "Content-Encoding", "got": coding}
    footprint.unchanged()


@pytest.mark.parametrize("coding", ["br", "zstd", "compress", "gzip, br"])
async def test_an_unsupported_content_encoding_is_a_415_in_the_error_shape(client, footprint,
                                                                           coding):
    response = await client.post(f"{API}/contexts", data=b"\x28\xb5\x2f\xfd not decodable",
                                 headers={"Content-Type": "application/json",
                                          "Content-Encoding": coding})
    error = await error_of(response, 415, "unsupported_media_type")
    assert error["message"] == (f"request body: Content-Encoding {coding} is not accepted; send "
                                "the body uncompressed, or compressed with gzip or deflate")
    footprint.unchanged()


async def test_a_compressed_upload_is_a_415(client, footprint):
    body, content_type = raw_multipart('filename="ok.py"', OK)
    response = await client.post(f"{API}/artifacts", data=gzip.compress(body),
                                 headers={"Content-Type": content_type,
                                          "Content-Encoding": "gzip"})
    error = await error_of(response, 415, "unsupported_media_type")
    assert error["message"] == "upload: Content-Encoding gzip is not accepted here; send it " \
                               "uncompressed"
    footprint.unchanged()


@pytest.mark.parametrize(("coding", "body"), [
    ("gzip", PACKED),
    ("x-gzip", PACKED),
    ("gzip", gzip.compress(ARGUMENTS[:5]) + gzip.compress(ARGUMENTS[5:])),  # two members
    ("deflate", zlib.compress(ARGUMENTS)),
    ("deflate", zlib.compress(ARGUMENTS)[2:-4]),  # the raw stream some clients send
    ("identity", ARGUMENTS),
], ids=["gzip", "x-gzip", "two-members", "zlib", "raw-deflate", "identity"])
async def test_well_compressed_bodies_are_read(client, coding, body):
    await deploy_echo(client)
    job = await json_of(await client.post(f"{API}/functions/echo/jobs", data=body, headers={
        "Content-Type": "application/json", "Content-Encoding": coding}))
    described = await json_of(await client.get(f"{API}/jobs/{job['id']}"))
    assert described["params"]["arguments"] == {"value": 5}


# ---------------------------------------------------------------------------------------------
# Text that is not text

LONE_SURROGATES = [
    ("/contexts", b'{"name": "s", "runOptions": "-v \\ud800"}', "runOptions"),
    ("/contexts", b'{"name": "s", "sparkConf": {"spark.x": "\\udfff"}}', "sparkConf.spark.x"),
    ("/contexts", b'{"name": "s", "sparkConf": {"spark.\\ud800": "1"}}', "sparkConf"),
    ("/functions/echo/jobs", b'{"value": ["ok", "a\\uDBFFb"]}', "value[1]"),
    ("/functions", b'{"name": "f\\ud800", "path": "echo.py", "className": "echo"}', "name"),
]


@pytest.mark.parametrize(("path", "body", "field"), LONE_SURROGATES,
                         ids=[field for _, _, field in LONE_SURROGATES])
async def test_a_lone_surrogate_is_a_400_on_every_route(client, engine, tmp_path, path, body,
                                                        field):
    """Half a UTF-16 pair is no character: in runOptions it was a 500."""
    await deploy_echo(client)
    footprint = Footprint(engine, tmp_path)
    response = await client.post(f"{API}{path}", data=body,
                                 headers={"Content-Type": "application/json"})
    error = await error_of(response, 400, "bad_request")
    assert error["message"].startswith(f"request body: {field}: expected text, got a lone "
                                       "UTF-16 surrogate")
    assert error["details"]["field"] == field
    footprint.unchanged()


async def test_a_surrogate_pair_is_a_character(client):
    response = await client.post(f"{API}/contexts", data=b'{"name": "s", "runOptions": '
                                 b'"\\ud83d\\ude00"}', headers={"Content-Type": "application/json"})
    assert (await json_of(response))["runOptions"] == "\U0001f600"


@pytest.mark.parametrize(("conf", "expected"), [
    ({"spark.a\x00b": "1"}, "Spark setting names without control characters"),
    ({"spark.a\nb": "1"}, "Spark setting names without control characters"),
    ({"": "1"}, "Spark setting names without control characters"),
    ({"spark.app.name": "a\x00b"}, "Spark setting values without NUL characters"),
])
async def test_spark_settings_hold_no_nul_or_control_characters(client, footprint, conf,
                                                                expected):
    response = await client.post(f"{API}/contexts", json={"name": "nul", "sparkConf": conf})
    error = await error_of(response, 400, "invalid_arguments")
    assert error["details"][0]["field"] == "sparkConf"
    assert error["details"][0]["expected"].startswith(expected)
    footprint.unchanged()


# ---------------------------------------------------------------------------------------------
# What aiohttp's HTTP parser refuses, answered by the server `serve` runs


@contextlib.asynccontextmanager
async def served(settings, redis_url) -> AsyncIterator[int]:
    runner = make_runner(create_app(settings, redis_url), settings)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield port
    finally:
        await runner.cleanup()


async def raw_exchange(port: int, request: bytes) -> tuple[int, dict[str, str], bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request)
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    status_line, *lines = head.decode().split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
    return int(status_line.split()[1]), headers, body


LONG = "a" * 9000
REFUSED_BY_THE_PARSER = {
    "long_path": (f"GET /v2/api/functions/{LONG} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
                  414, "uri_too_long", "the request line (method, path and query) is longer "
                                       "than 8190 bytes"),
    "long_query": (f"GET /v2/api/jobs?status={LONG} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
                   414, "uri_too_long", "send long values in a JSON body"),
    "long_header": (f"GET /v2/api/jobs HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: {LONG}\r\n\r\n",
                    431, "request_header_fields_too_large", "a request header is longer than"),
    "nul_in_header": ("GET /v2/api/jobs HTTP/1.1\r\nHost: 127.0.0.1\r\nBad\x00Name: 1\r\n\r\n",
                      400, "bad_request", "malformed HTTP request: Invalid header token"),
    "too_many_headers": ("GET /v2/api/jobs HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                         + "".join(f"X-{i}: 1\r\n" for i in range(200)) + "\r\n",
                         400, "bad_request", "malformed HTTP request: Too many headers"),
}


@pytest.mark.parametrize("kind", sorted(REFUSED_BY_THE_PARSER))
async def test_what_the_http_parser_refuses_is_answered_in_the_error_shape(settings, redis_url,
                                                                           kind):
    """An over-long request line was answered in text/plain, unlike every other error."""
    request, status, code, text = REFUSED_BY_THE_PARSER[kind]
    async with served(settings, redis_url) as port:
        got, headers, body = await raw_exchange(port, request.encode())
    assert got == status, body
    assert headers["content-type"].startswith("application/json")
    error = json.loads(body)["error"]
    assert set(error) == {"code", "message", "details"}
    assert error["code"] == code
    assert text in error["message"], error
