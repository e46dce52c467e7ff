"""sparkgate as a user runs it: `sparkgate serve` as a real process, workers with real Spark,
driven over HTTP and by Mist's own command-line tool, on SQLite with the embedded Redis and on
PostgreSQL with an external Redis.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from redis import Redis

from tests.conftest import FUNCTIONS_DIR, TEST_SPARK_CONF
from tests.server_process import Server, running_server, server_database

pytestmark = pytest.mark.slow

E2E_REDIS_URL = "redis://127.0.0.1:6379/14"


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def server(request: pytest.FixtureRequest, tmp_path_factory) -> Iterator[Server]:
    workdir = tmp_path_factory.mktemp(f"serve-{request.param}")
    overrides: dict[str, str] = {}
    if request.param == "postgresql":
        overrides = {"SPARKGATE_REDIS_URL": E2E_REDIS_URL}
        Redis.from_url(E2E_REDIS_URL).flushdb()
    with (server_database(request.param, overrides) as database,
          running_server(workdir, {**overrides, **database}) as server):
        yield server


def deploy(server: Server, file_name: str, function: str, class_name: str) -> None:
    server.deploy(file_name, function, class_name)


# -- the embedded defaults -------------------------------------------------------------------


def test_examples_are_deployed_and_pi_runs_sync(server: Server):
    names = {f["name"] for f in server.get("/functions").json()}
    assert {"pi", "word_count", "simulate_portfolio", "mist_multiply"} <= names
    answer = server.post("/functions/pi/jobs", params={"force": "true"},
                         json={"samples": 20000}).json()
    assert answer["success"] is True, answer
    assert 2.9 < answer["payload"]["pi"] < 3.4
    assert answer["errors"] == []


def test_word_count_and_portfolio_examples(server: Server):
    words = server.post("/functions/word_count/jobs", params={"force": "true"},
                        json={"text": "to be or not to be", "top": 2}).json()
    assert words["payload"]["top"] == [{"word": "be", "count": 2}, {"word": "to", "count": 2}]
    risk = server.post("/functions/simulate_portfolio/jobs", params={"force": "true"}, json={
        "weights": {"A": 0.6, "B": 0.4}, "expected_returns": {"A": 0.07, "B": 0.03},
        "volatilities": {"A": 0.2, "B": 0.05}, "scenarios": 2000,
    }).json()
    assert risk["success"], risk
    assert risk["payload"]["value_at_risk"]["99"] >= risk["payload"]["value_at_risk"]["95"] > 0


# -- deploy your own function over HTTP ------------------------------------------------------


def test_deploy_then_run_sync_async_poll_logs_and_list(server: Server):
    deploy(server, "behaviours.py", "e2e_sum", "sum_range")
    sync = server.post("/functions/e2e_sum/jobs", params={"force": "true"}, json={"n": 100})
    assert sync.json() == {"success": True, "payload": 4950, "errors": []}

    submitted = server.post("/functions/e2e_sum/jobs", params={"externalId": "order-17"},
                            json={"n": 10})
    assert submitted.status_code == 200 and set(submitted.json()) == {"id"}
    job_id = submitted.json()["id"]
    job = server.wait_for_job(job_id, {"finished", "failed"})
    assert job["status"] == "finished" and job["jobResult"] == 45
    assert job["externalId"] == "order-17" and job["source"] == "Http"
    assert job["params"] == {"filePath": "behaviours.py", "className": "sum_range",
                             "arguments": {"n": 10}, "action": "execute"}
    assert job["createTime"] <= job["startTime"] <= job["endTime"]
    assert job["workerId"] in {w["name"] for w in server.get("/workers").json()}

    logs = server.get(f"/jobs/{job_id}/logs")
    assert logs.headers["Content-Type"].startswith("text/plain")
    lines = logs.text.splitlines()
    assert lines[0].startswith("INFO ") and f"[{job_id}] started on worker" in lines[0]
    assert "finished in" in lines[-1]

    listed = server.get("/functions/e2e_sum/jobs").json()
    assert [j["jobId"] for j in listed][:1] == [job_id]
    page = server.get("/jobs", params={"status": "finished", "paginate": "true",
                                       "limit": 1}).json()
    assert page["total"] >= 2 and len(page["jobs"]) == 1


def test_a_failing_function_reports_its_error(server: Server):
    deploy(server, "behaviours.py", "e2e_fail", "fail")
    answer = server.post("/functions/e2e_fail/jobs", params={"force": "true"},
                         json={"message": "no data for 2026-11-25"}).json()
    assert answer["success"] is False and answer["payload"] == {}
    assert answer["errors"][0].startswith("ValueError: no data for 2026-11-25")
    failed = server.get("/jobs", params={"status": "failed"}).json()[0]
    assert failed["function"] == "e2e_fail"
    assert failed["jobResult"].startswith("ValueError: no data for 2026-11-25")


def test_bad_arguments_are_refused_before_a_job_exists(server: Server):
    before = server.get("/jobs", params={"paginate": "true"}).json()["total"]
    refused = server.post("/functions/pi/jobs", json={"samples": "many"})
    assert refused.status_code == 400
    assert refused.json()["error"]["details"] == [
        {"field": "samples", "expected": "integer", "got": 'string "many"'}]
    assert server.get("/jobs", params={"paginate": "true"}).json()["total"] == before


def test_a_plain_function_runs_in_the_spark_default_context(server: Server):
    deploy(server, "plain.py", "e2e_add", "add")
    assert server.get("/functions/e2e_add").json()["needsSpark"] is False
    answer = server.post("/functions/e2e_add/jobs", params={"force": "true"},
                         json={"x": 40, "y": 2}).json()
    assert answer == {"success": True, "payload": 42, "errors": []}


def test_a_spark_function_sent_to_a_python_context_is_a_400_and_no_job(server: Server):
    created = server.post("/contexts", json={"name": "e2e_python", "engine": "python"})
    assert created.status_code == 200, created.text
    before = server.get("/jobs", params={"paginate": "true"}).json()["total"]
    refused = server.post("/functions/pi/jobs", params={"context": "e2e_python"},
                          json={"samples": 10})
    assert refused.status_code == 400
    assert refused.json()["error"]["code"] == "wrong_engine"
    assert "function 'pi'" in refused.json()["error"]["message"]
    assert server.get("/jobs", params={"paginate": "true"}).json()["total"] == before


def test_job_output_is_captured_in_its_logs(server: Server):
    deploy(server, "behaviours.py", "e2e_chatty", "chatty")
    answer = server.post("/functions/e2e_chatty/jobs", params={"wait": "60s"},
                         json={"name": "zeta", "lines": 2}).json()
    assert answer["status"] == "finished", answer
    text = server.get(f"/jobs/{answer['jobId']}/logs").text
    assert "zeta print 1" in text and "WARN" in text and "zeta log 1" in text
    assert "zeta stderr 0" in text


def test_wait_returns_202_while_the_job_runs(server: Server):
    deploy(server, "behaviours.py", "e2e_sleep", "sleep_python")
    pending = server.post("/functions/e2e_sleep/jobs", params={"wait": "100ms"},
                          json={"seconds": 2})
    assert pending.status_code == 202
    job_id = pending.json()["id"]
    assert pending.headers["Location"] == f"/v2/api/jobs/{job_id}"
    assert server.wait_for_job(job_id, {"finished"})["jobResult"] == {"slept": 2}


def test_cancel_a_running_spark_job(server: Server):
    deploy(server, "behaviours.py", "e2e_slow", "slow_spark")
    job_id = server.post("/functions/e2e_slow/jobs", json={"seconds": 120}).json()["id"]
    server.wait_for_job(job_id, {"started"})
    time.sleep(1)
    cancelling = server.delete(f"/jobs/{job_id}")
    assert cancelling.status_code == 200 and cancelling.json()["status"] == "cancelling"
    job = server.wait_for_job(job_id, {"cancelled", "failed", "finished"}, timeout_s=30)
    assert job["status"] == "cancelled"
    # The worker lives on and takes the next job.
    answer = server.post("/functions/e2e_sum/jobs", params={"force": "true"}, json={"n": 3})
    assert answer.json()["payload"] == 3


# -- Mist's own command-line tool ------------------------------------------------------------


def mist_cli(server: Server, *args: str, cwd: Path | None = None) -> str:
    done = subprocess.run(["mist-cli", "--host", "127.0.0.1", "--port", str(server.port), *args],
                          capture_output=True, text=True, timeout=180, cwd=cwd,
                          env={**os.environ, "USER": ""})
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_mist_cli_deploys_a_mistpy_function_to_a_new_context_and_runs_it(
        server: Server, tmp_path: Path):
    source = (Path(__file__).parent.parent / "examples" / "mist_multiply.py").read_text()
    (tmp_path / "multiply.py").write_text(source)
    conf = tmp_path / "deploy"
    conf.mkdir()
    (conf / "00artifact.conf").write_text(
        'model = Artifact\nname = multiply\nversion = "0.0.1"\n'
        f'data {{ file-path = "{tmp_path / "multiply.py"}" }}\n')
    spark_conf = "\n".join(f'    "{k}" = "{v}"' for k, v in TEST_SPARK_CONF.items())
    (conf / "10context.conf").write_text(
        "model = Context\nname = cli_ctx\n"
        f"data {{\n  max-jobs = 2\n  downtime = Inf\n  spark-conf {{\n{spark_conf}\n  }}\n}}\n")
    (conf / "20function.conf").write_text(
        "model = Function\nname = cli_multiply\n"
        'data { path = "multiply_0.0.1.py", class-name = "mist_multiply", context = cli_ctx }\n')

    out = mist_cli(server, "-y", "apply", "-f", str(conf))
    assert "Success: Function cli_multiply" in out, out
    context = server.get("/contexts/cli_ctx").json()
    assert context["maxJobs"] == 2 and context["downtime"] == "Inf"
    assert context["sparkConf"]["spark.master"] == "local[2]"

    started = mist_cli(server, "start", "job", "cli_multiply", '{"numbers": [1, 2, 5]}')
    assert json.loads(started)["payload"] == {"result": [2, 4, 10]}
    assert "cli_multiply" in mist_cli(server, "list", "functions")
    assert "cli_ctx" in mist_cli(server, "list", "contexts")
    status = mist_cli(server, "status")
    assert "4.3" in status or "Spark" in status


def test_artifacts_round_trip(server: Server):
    listed = server.get("/artifacts").json()
    assert "behaviours.py" in listed
    content = server.get("/artifacts/behaviours.py").content
    assert content == (FUNCTIONS_DIR / "behaviours.py").read_bytes()
    import hashlib

    assert server.get("/artifacts/behaviours.py/sha").text == hashlib.sha1(content).hexdigest()
