"""Schemathesis against a running ``sparkgate serve`` with authentication on, driven by the
OpenAPI document it serves: thousands of generated requests (valid and invalid), and every
answer must be no 5xx, a documented status, the documented content type, headers and body.

How the run stays bounded with real sync submits (``force=true``, ``wait=``):
- the gateway (on PostgreSQL, the stricter store) runs no supervisor; one worker for
  ``default``, started by hand, runs its jobs (the deployed functions, ``echo`` and ``typed``,
  return at once). A worker started by hand reads its context once, so the fuzzer's
  ``PUT /v2/api/contexts/default`` cannot turn it into an exclusive context that starts a JVM
  per job; contexts the fuzzer creates get no worker;
- the context defaults bound every job: ``startTimeout`` 3 s (the reconciler fails a job that
  waits longer: a sync wait on a context without a worker ends within seconds) and
  ``performTimeout`` 10 s;
- two values are pinned in the fuzzer's config: ``startTimeout`` of a submit (a generated
  "100 years" would undo the bound above; the same parser reads ``performTimeout`` and
  ``wait``, which stay generated) and the worker id of ``DELETE /v2/api/workers/{id}`` (a stop
  would leave no worker; the stop's answer is checked against the document below instead).
- ``GET /v2/api/events`` (operation ``events``) is an endless stream: left out of the fuzzing
  (its HEAD is in), checked below by hand.

Run by hand against a gateway of your own: see README.md ("Checking the API against its
OpenAPI document").
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from sparkgate.gateway.app import create_app
from sparkgate.jobs.migrate import upgrade
from tests.conftest import (
    FUNCTIONS_DIR,
    TEST_SPARK_CONF,
    create_pg_database,
    drop_pg_database,
)
from tests.server_process import Server, running_server, wait_until
from tests.test_openapi import assert_conforms as assert_answer_conforms

CHECKS = ",".join([
    "not_a_server_error", "status_code_conformance", "content_type_conformance",
    "response_headers_conformance", "response_schema_conformance", "negative_data_rejection",
    "missing_required_header", "unsupported_method", "allow_header_conformance",
    "use_after_free", "ensure_resource_availability", "ignored_auth",
])
# Not run: positive_data_acceptance. It expects a 2xx for every request the document calls
# valid, and no document can say which artifacts, functions and contexts exist, or that a
# context's streamingDuration must be finite: such requests rightly get 400/404/409.
# Per operation; SGTEST_SCHEMATHESIS_EXAMPLES=300 for a deeper run by hand.
MAX_EXAMPLES = int(os.environ.get("SGTEST_SCHEMATHESIS_EXAMPLES", "50"))
MIN_CASES = 2000
SEED = os.environ.get("SGTEST_SCHEMATHESIS_SEED", "20261125")
PHASES = os.environ.get("SGTEST_SCHEMATHESIS_PHASES", "examples,coverage,fuzzing,stateful")
# A bound for a hang, not a speed check: on a slow day of this machine the 5,750 cases took
# 225 s alone, and more than 250 s beside another test process.
RUN_TIMEOUT_S = max(480, MAX_EXAMPLES * 10)
REPORTS = Path(__file__).resolve().parent.parent / "test-artifacts" / "schemathesis"
PINNED = """
# A generated query can take the request line past aiohttp's 8190 bytes (or a generated
# Idempotency-Key a header line): 414 and 431 reject such a request as surely as a 400, but
# schemathesis's default list lacks them.
[checks.negative_data_rejection]
expected-statuses = ["400", "401", "403", "404", "405", "406", "409", "414", "415", "422",
                     "428", "429", "431", "5xx"]

[[operations]]
include-operation-id = "runFunction"
parameters = { "startTimeout" = "3s" }

[[operations]]
include-operation-id = "stopWorker"
parameters = { "id" = "no-such-worker" }
"""


@pytest.fixture(scope="module")
def gateway(tmp_path_factory) -> Iterator[tuple[Server, str]]:
    workdir = tmp_path_factory.mktemp("schemathesis")
    # PostgreSQL, the production store, is the stricter one (no NUL in text, for one).
    database_url = create_pg_database("sparkgate_fuzz")
    upgrade(database_url)
    env = {"SPARKGATE_DATABASE_URL": database_url, "SPARKGATE_START_WORKERS": "false",
           "SPARKGATE_DEPLOY_EXAMPLES": "false", "SPARKGATE_AUTH_ENABLED": "true",
           "SPARKGATE_CONTEXT_START_TIMEOUT_S": "3", "SPARKGATE_CONTEXT_PERFORM_TIMEOUT_S": "10"}
    try:
        yield from _serve(workdir, env)
    finally:
        drop_pg_database(database_url)


def _serve(workdir: Path, env: dict[str, str]) -> Iterator[tuple[Server, str]]:
    with running_server(workdir, env, wait_for_worker=False) as server:
        token = server.create_key("fuzz-admin", "admin")
        worker = start_worker(server, workdir)
        try:
            headers = {"Authorization": f"Bearer {token}"}
            for file_name, function in (("echo.py", "echo"), ("typed.py", "typed")):
                deploy(server, headers, file_name, function)
            wait_until(lambda: server.get("/workers", headers=headers).json(), 120,
                       "the worker for default is live")
            yield server, token
        finally:
            worker.terminate()
            worker.wait(timeout=60)


def start_worker(server: Server, workdir: Path) -> subprocess.Popen[bytes]:
    socket = wait_until(lambda: re.search(r"embedded Redis on (unix://\S+)",
                                          server.log.read_text()), 30, "the embedded Redis")
    env = {**server.env, "SPARKGATE_REDIS_URL": socket.group(1),
           "SPARKGATE_CONTEXT_SPARK_CONF": json.dumps(TEST_SPARK_CONF)}
    with (workdir / "worker.log").open("ab") as out:
        return subprocess.Popen(["sparkgate", "worker", "--context", "default"], env=env,
                                cwd=workdir, stdout=out, stderr=subprocess.STDOUT)


def deploy(server: Server, headers: dict, file_name: str, function: str,
           class_name: str | None = None) -> None:
    with (FUNCTIONS_DIR / file_name).open("rb") as fh:
        upload = requests.post(server.api("/artifacts"), files={"file": (file_name, fh)},
                               headers=headers, params={"force": "true"}, timeout=60)
    assert upload.status_code == 200, upload.text
    created = requests.post(server.api("/functions"), headers=headers, timeout=60, json={
        "name": function, "path": file_name, "className": class_name or function})
    assert created.status_code == 200, created.text


@pytest.mark.slow
@pytest.mark.timeout(RUN_TIMEOUT_S + 60)
def test_the_api_conforms_to_its_openapi_document(gateway):
    server, token = gateway
    REPORTS.mkdir(parents=True, exist_ok=True)
    config = REPORTS / "schemathesis.toml"
    config.write_text(PINNED)
    report = REPORTS / "report.json"
    report.unlink(missing_ok=True)
    command = [
        "st", "--config-file", str(config), "run", server.api("/openapi.json"),
        "--checks", CHECKS, "--exclude-operation-id", "events",
        "--header", f"Authorization: Bearer {token}",
        # A generation health check, not the API's: complex patterns (durations) make
        # hypothesis discard many candidates for the submit's negative cases.
        "--suppress-health-check", "filter_too_much",
        "--max-examples", str(MAX_EXAMPLES), "--workers", "1", "--request-timeout", "30",
        "--phases", PHASES, "--seed", SEED,
        "--report", "json", "--report-json-path", str(report), "--output-truncate", "true",
    ]
    started = time.monotonic()
    # In the reports folder: st keeps a .schemathesis/ folder where it runs.
    run = subprocess.run(command, capture_output=True, text=True, timeout=RUN_TIMEOUT_S,
                         cwd=REPORTS)
    elapsed = time.monotonic() - started
    output = run.stdout + run.stderr
    (REPORTS / "output.txt").write_text(output)
    log = server.log.read_text()
    (REPORTS / "serve.log").write_text(log)
    assert run.returncode == 0, f"schemathesis found problems:\n{output[-20000:]}"
    summary = json.loads(report.read_text())
    cases = summary["test_cases"]["generated"]
    print(f"schemathesis: {cases} cases over {summary['operations']['tested']} operations "
          f"in {elapsed:.0f}s")
    assert cases >= MIN_CASES, output[-5000:]
    assert summary["operations"]["tested"] == summary["operations"]["selected"]
    assert not summary["failures"] and not summary["errors"], summary
    # Bugs that the error middleware turned into a 500 are logged with their traceback. (aiohttp
    # logs one of its own for the requests its HTTP parser refuses, a NUL in a header say.)
    assert "unhandled error in" not in log
    assert f'File "{Path(__file__).resolve().parent.parent}' not in log


def assert_conforms(document: dict, method: str, path: str, response: requests.Response,
                    streamed: bool = False) -> None:
    """What schemathesis checks, for the answers it cannot reach."""
    body = b"" if streamed else response.content
    assert_answer_conforms(document, method, path, response.status_code, response.headers, body)


@pytest.mark.slow
def test_sync_waits_event_stream_and_worker_stop_conform(gateway):
    server, token = gateway
    headers = {"Authorization": f"Bearer {token}"}
    document = requests.get(server.api("/openapi.json"), timeout=10).json()
    submit = "/v2/api/functions/{name}/jobs"
    # The fuzzer may have set the default context's engine to python, which runs no Spark
    # function: back to the configured defaults (a PUT replaces the whole context).
    requests.put(server.api("/contexts/default"), json={"sparkConf": TEST_SPARK_CONF},
                 headers=headers, timeout=10).raise_for_status()
    # A function of its own: the fuzzer may have deleted or replaced echo.
    deploy(server, headers, "echo.py", "sync_echo", "echo")

    def run(**params) -> requests.Response:
        return requests.post(server.api("/functions/sync_echo/jobs"), params=params,
                             json={"value": 1}, headers=headers, timeout=60)

    synced = run(force="true")
    assert synced.status_code == 200 and synced.json()["success"] is True, synced.text
    assert_conforms(document, "post", submit, synced)
    waited = run(wait="30s")
    assert waited.status_code == 200 and waited.json()["status"] == "finished", waited.text
    assert_conforms(document, "post", submit, waited)
    # A context without a worker: the wait runs out (202), then startTimeout fails the job.
    requests.post(server.api("/contexts"), json={"name": "idle", "startTimeout": "3s"},
                  headers=headers, timeout=10).raise_for_status()
    pending = run(wait="0s", context="idle")
    assert pending.status_code == 202, pending.text
    assert_conforms(document, "post", submit, pending)
    failed = run(force="true", context="idle")
    assert failed.status_code == 200 and failed.json()["success"] is False, failed.text
    assert "start timeout" in failed.json()["errors"][0]

    events = "/v2/api/events"
    with requests.get(server.url + events, params={"access_token": token}, stream=True,
                      timeout=10) as stream:
        assert stream.status_code == 200
        assert_conforms(document, "get", events, stream, streamed=True)
    refused = requests.get(server.url + events, params={"job": "a\x01b"}, headers=headers,
                           timeout=10)
    assert refused.status_code == 400
    assert_conforms(document, "get", events, refused)
    anonymous = requests.get(server.url + events, timeout=10)
    assert anonymous.status_code == 401
    assert_conforms(document, "get", events, anonymous)

    worker = requests.get(server.api("/workers"), headers=headers, timeout=10).json()[0]
    stopped = requests.delete(server.api(f"/workers/{worker['name']}"), headers=headers,
                              timeout=10)
    assert stopped.status_code == 200
    assert_conforms(document, "delete", "/v2/api/workers/{id}", stopped)


@pytest.mark.slow
def test_an_over_long_url_is_a_documented_414(gateway):
    """The fuzzer's URLs stay short; a client's may not: a request line over aiohttp's limit
    was answered in text/plain, which the document cannot describe."""
    server, token = gateway
    headers = {"Authorization": f"Bearer {token}"}
    document = requests.get(server.api("/openapi.json"), timeout=10).json()
    long = "a" * 9000
    cases = [("get", "/v2/api/functions/{name}", f"/functions/{long}"),
             ("post", "/v2/api/functions/{name}/jobs", f"/functions/echo/jobs?externalId={long}"),
             ("get", "/v2/api/jobs", f"/jobs?status={long}"),
             ("delete", "/v2/api/contexts/{name}", f"/contexts/{long}")]
    for method, path, url in cases:
        response = requests.request(method, server.api(url), headers=headers, timeout=30,
                                    json={} if method == "post" else None)
        assert response.status_code == 414, response.text
        assert response.json()["error"]["code"] == "uri_too_long"
        assert_conforms(document, method, path, response)
    assert requests.get(server.api("/status"), headers=headers, timeout=10).ok


# ---------------------------------------------------------------------------------------------
# What schemathesis found, kept as plain tests


@pytest.mark.parametrize("content_type, body", [
    ("multipart/form-data", b"--x\r\n"),  # no boundary
    ("multipart/form-data; boundary=b",  # a part header that is not valid HTTP
     b'--b\r\nContent-Disposition: form-data; name="\xf2\xa2\xa0\x81\x07"\r\n\r\nx\r\n--b--\r\n'),
])
async def test_a_malformed_upload_is_a_400_not_a_500(aiohttp_client, settings, redis_url,
                                                     content_type, body):
    client = await aiohttp_client(create_app(settings, redis_url))
    response = await client.post("/v2/api/artifacts", data=body,
                                 headers={"Content-Type": content_type})
    assert response.status == 400, await response.text()
    error = (await response.json())["error"]
    assert error["code"] == "bad_request"
    assert error["message"].startswith("upload: malformed multipart/form-data")


@pytest.mark.parametrize("body", [{"name": "trailing-newline\n"}, {"name": "ok\n", "maxJobs": 1}])
async def test_a_name_ending_in_a_newline_is_refused(aiohttp_client, settings, redis_url, body):
    """Python's $ also matches before a final newline: such a context was created, and then
    could never be read, replaced or deleted (a path holding a newline names nothing)."""
    client = await aiohttp_client(create_app(settings, redis_url))
    response = await client.post("/v2/api/contexts", json=body)
    assert response.status == 400, await response.text()
    assert (await response.json())["error"]["code"] == "bad_request"
    names = [c["name"] for c in await (await client.get("/v2/api/contexts")).json()]
    assert body["name"] not in names


async def test_a_context_text_field_holding_nul_is_a_400(aiohttp_client, settings, redis_url):
    """PostgreSQL text cannot hold NUL: runOptions "a\\u0000b" was a 500 there."""
    client = await aiohttp_client(create_app(settings, redis_url))
    response = await client.post("/v2/api/contexts",
                                 json={"name": "nul-options", "runOptions": "a\x00b"})
    assert response.status == 400, await response.text()
    error = (await response.json())["error"]
    assert error["code"] == "invalid_arguments"
    assert error["details"][0]["field"] == "runOptions"
    fine = await client.post("/v2/api/contexts", json={"name": "nul-options", "runOptions": "-v"})
    assert fine.status == 200


@pytest.mark.parametrize("value", [3153599999, "36500d", "2147483648s"])
async def test_a_streaming_duration_beyond_its_column_is_a_400(aiohttp_client, settings,
                                                               redis_url, value):
    """streamingDuration is kept in a 32-bit column: PostgreSQL refused 100 years with a 500."""
    client = await aiohttp_client(create_app(settings, redis_url))
    response = await client.post("/v2/api/contexts",
                                 json={"name": "long", "streamingDuration": value})
    assert response.status == 400, await response.text()
    assert (await response.json())["error"]["details"][0]["field"] == "streamingDuration"
    longest = await client.post("/v2/api/contexts",
                                json={"name": "long", "streamingDuration": 2**31 - 1})
    assert longest.status == 200, await longest.text()
    assert (await longest.json())["streamingDuration"] == f"{2**31 - 1}s"


@pytest.mark.parametrize("url", ["/v2/api/functions/x/jobs?wait=%D9%A3s",  # Arabic-Indic 3
                                 "/v2/api/stats?window=%E0%A5%AD"])  # Devanagari 7
async def test_durations_take_ascii_digits_only(aiohttp_client, settings, redis_url, url):
    """The document says [0-9]; Python's \\d also read other scripts' digits."""
    client = await aiohttp_client(create_app(settings, redis_url))
    response = await client.request("POST" if "jobs" in url else "GET", url, json={})
    assert response.status == 400, await response.text()
