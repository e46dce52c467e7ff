"""The `sparkgate` command against a real gateway with auth on: `run` with its progress and
logs, its exit statuses, `--output json`, the listings, and `deploy` of a folder as a diff."""

from __future__ import annotations

import json
import re
import subprocess
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.server_process import Server, function_source, running_server

pytestmark = pytest.mark.slow

FUNCTIONS = '''
import logging
import time


def add(x: int, y: int = 1) -> int:
    return x + y


def chatty(lines: int = 3) -> dict:
    log = logging.getLogger("chatty")
    for n in range(lines):
        log.warning("chatty line %d", n)
        time.sleep(0.2)
    return {"lines": lines}


def boom(message: str = "boom") -> int:
    raise ValueError(message)


def naps(seconds: float) -> float:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        time.sleep(0.05)
    return seconds
'''

MANIFEST = '''
[contexts.quick]
engine = "python"
maxJobs = 4

[functions.add]
path = "tools.py"
className = "add"

[functions.chatty]
path = "tools.py"
className = "chatty"
defaultContext = "quick"

[functions.boom]
path = "tools.py"
className = "boom"

[functions.naps]
path = "tools.py"
className = "naps"
'''


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    workdir = tmp_path_factory.mktemp("cli-remote")
    with running_server(workdir, {"SPARKGATE_AUTH_ENABLED": "true",
                                  "SPARKGATE_CONTEXT_ENGINE": "python",
                                  "SPARKGATE_DEPLOY_EXAMPLES": "false"},
                        wait_for_worker=False) as server:
        yield server


@pytest.fixture(scope="module")
def admin(server: Server) -> str:
    return server.create_key("ops", "admin")


def cli(server: Server, key: str | None, *args: str,
        timeout_s: float = 120) -> subprocess.CompletedProcess[str]:
    env = {**server.env, "SPARKGATE_URL": server.url, "SPARKGATE_PROFILE": "/nonexistent"}
    if key is not None:
        env["SPARKGATE_API_KEY"] = key
    return subprocess.run(["sparkgate", *args], capture_output=True, text=True,
                          timeout=timeout_s, env=env)


def folder(base: Path, manifest: str = MANIFEST, functions: str = FUNCTIONS) -> Path:
    base.mkdir(parents=True, exist_ok=True)
    (base / "sparkgate.toml").write_text(textwrap.dedent(manifest))
    (base / "tools.py").write_text(functions)
    return base


@pytest.fixture(scope="module")
def deployed(server: Server, admin: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = folder(tmp_path_factory.mktemp("deploy") / "tools")
    done = cli(server, admin, "deploy", str(path))
    assert done.returncode == 0, done.stderr
    assert "+ context quick: created" in done.stdout
    assert "+ artifact tools.py: created" in done.stdout
    assert "+ function chatty: created" in done.stdout
    assert "6 created, 0 updated, 0 unchanged" in done.stdout
    return path


def test_run_shows_logs_and_prints_the_result(server: Server, admin: str, deployed: Path):
    done = cli(server, admin, "run", "chatty", "--arg", "lines=3")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"lines": 3}
    for n in range(3):
        assert f"chatty line {n}" in done.stderr
    assert "chatty: finished" in done.stderr


def test_run_output_json_and_args_from_a_file(server: Server, admin: str, deployed: Path,
                                              tmp_path: Path):
    (tmp_path / "args.json").write_text('{"x": 40, "y": 1}')
    done = cli(server, admin, "run", "add", "--args", f"@{tmp_path / 'args.json'}",
               "--arg", "y=2", "--output", "json", "--context", "quick")
    assert done.returncode == 0, done.stderr
    job = json.loads(done.stdout)
    assert (job["status"], job["jobResult"], job["submitter"]) == ("finished", 42, "key:ops")
    assert job["context"] == "quick"  # not add's default context


def test_a_failed_job_exits_1_with_its_error(server: Server, admin: str, deployed: Path):
    done = cli(server, admin, "run", "boom", "--arg", "message=no luck")
    assert done.returncode == 1
    assert "failed: ValueError: no luck" in done.stderr and done.stdout == ""


def test_bad_arguments_and_usage_exit_2(server: Server, admin: str, deployed: Path):
    bad = cli(server, admin, "run", "add", "--arg", "x=many")
    assert bad.returncode == 2 and "x" in bad.stderr and "Traceback" not in bad.stderr
    unknown = cli(server, admin, "run", "nothere")
    assert unknown.returncode == 2 and "nothere" in unknown.stderr
    assert cli(server, admin, "run", "add", "--args", "[1]").returncode == 2
    assert cli(server, admin, "jobs", "--limit", "x").returncode == 2
    no_key = cli(server, None, "run", "add", "--arg", "x=1")
    assert no_key.returncode == 2


def test_a_cancelled_job_exits_3(server: Server, admin: str, deployed: Path):
    started = cli(server, admin, "run", "naps", "--arg", "seconds=60", "--async")
    assert started.returncode == 0, started.stderr
    job_id = started.stdout.strip()
    follower = subprocess.Popen(
        ["sparkgate", "logs", job_id, "--follow"], stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
        env={**server.env, "SPARKGATE_URL": server.url, "SPARKGATE_API_KEY": admin})
    cancelled = cli(server, admin, "cancel", job_id)
    assert cancelled.returncode == 0, cancelled.stderr
    assert f"job {job_id} cancel" in cancelled.stdout
    assert follower.wait(timeout=60) == 3
    shown = cli(server, admin, "job", job_id, "-o", "json")
    assert json.loads(shown.stdout)["status"] == "cancelled"
    again = cli(server, admin, "cancel", job_id)
    assert again.returncode == 2 and "already cancelled" in again.stderr


def test_listings(server: Server, admin: str, deployed: Path):
    ran = cli(server, admin, "run", "add", "--arg", "x=1", "--async")
    job_id = ran.stdout.strip()
    server_jobs = cli(server, admin, "jobs", "--function", "add")
    assert server_jobs.returncode == 0, server_jobs.stderr
    assert job_id in server_jobs.stdout and "FUNCTION" in server_jobs.stdout
    listed = json.loads(cli(server, admin, "jobs", "--output", "json").stdout)
    assert job_id in {j["jobId"] for j in listed}
    assert "chatty" in cli(server, admin, "functions").stdout
    assert "quick" in cli(server, admin, "contexts").stdout
    assert cli(server, admin, "workers").returncode == 0
    shown = cli(server, admin, "job", job_id)
    assert shown.returncode == 0 and job_id in shown.stdout
    logs = cli(server, admin, "logs", job_id, "--follow")
    assert logs.returncode == 0 and job_id in logs.stdout


def test_deploy_dry_run_plans_and_changes_nothing(server: Server, admin: str, deployed: Path,
                                                   tmp_path: Path):
    again = cli(server, admin, "deploy", str(deployed), "--dry-run")
    assert again.returncode == 0, again.stderr
    assert "0 to create, 0 to update, 6 unchanged" in again.stdout
    manifest = MANIFEST.replace("maxJobs = 4", "maxJobs = 2") + (
        '\n[functions.add_more]\npath = "tools.py"\nclassName = "add"\n')
    changed = folder(tmp_path / "tools", manifest, FUNCTIONS + "\n# a change\n")
    plan = cli(server, admin, "deploy", str(changed), "--dry-run")
    assert plan.returncode == 0, plan.stderr
    assert "~ context quick: update" in plan.stdout and "maxJobs: 4 -> 2" in plan.stdout
    assert "~ artifact tools.py: update" in plan.stdout
    assert "+ function add_more: create" in plan.stdout
    assert "= function add: unchanged" in plan.stdout
    assert "(dry run: nothing changed)" in plan.stdout
    assert server.get("/functions/add_more").status_code in (401, 404)
    context = json.loads(cli(server, admin, "contexts", "-o", "json").stdout)
    assert {c["name"]: c["maxJobs"] for c in context}["quick"] == 4
    planned = json.loads(cli(server, admin, "deploy", str(changed), "--dry-run",
                             "-o", "json").stdout)
    assert {(c["kind"], c["name"], c["action"]) for c in planned["changes"]} >= {
        ("function", "add_more", "create"), ("context", "quick", "update")}
    bad = folder(tmp_path / "bad", "[functions.x]\npath = \"missing.py\"\nclassName = \"x\"\n")
    refused = cli(server, admin, "deploy", str(bad))
    assert refused.returncode == 2 and "missing.py" in refused.stderr


SPARK_MANIFEST = '''
[contexts.sparky]
engine = "spark"
maxJobs = 1

[contexts.sparky.sparkConf]
"spark.master" = "local[2]"
"spark.ui.enabled" = "false"
"spark.ui.showConsoleProgress" = "false"

[functions.slow_spark]
path = "behaviours.py"
className = "slow_spark"
defaultContext = "sparky"
'''


def test_run_shows_the_spark_tasks_done_as_they_are(server: Server, admin: str,
                                                    tmp_path: Path):
    """Captured output (no terminal): a line each time the counts change, from the job's
    progress events, then the result on stdout."""
    spark = tmp_path / "spark"
    spark.mkdir()
    (spark / "sparkgate.toml").write_text(SPARK_MANIFEST)
    (spark / "behaviours.py").write_bytes(function_source("behaviours.py"))
    deployed = cli(server, admin, "deploy", str(spark))
    assert deployed.returncode == 0, deployed.stderr
    # Four tasks of half a second.
    done = cli(server, admin, "run", "slow_spark", "--arg", "seconds=2", timeout_s=240)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == 6
    counts = [(int(d), int(t)) for d, t in re.findall(r"slow_spark: (\d+)/(\d+) Spark tasks",
                                                      done.stderr)]
    assert counts and all(total == 4 for _, total in counts), done.stderr
    assert [d for d, _ in counts] == sorted({d for d, _ in counts}), done.stderr
    # Seen while it ran (the events), not only read from the ended job.
    ended = done.stderr.index("slow_spark: finished")
    assert done.stderr.index(" Spark tasks") < ended, done.stderr


def test_the_gateway_and_key_from_flags_or_the_profile_file(server: Server, admin: str,
                                                            deployed: Path, tmp_path: Path):
    profile = tmp_path / "profile.toml"
    profile.write_text(f'url = "{server.url}"\napi_key = "{admin}"\n')
    env = {**server.env, "SPARKGATE_PROFILE": str(profile)}  # no SPARKGATE_URL, no key

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["sparkgate", "run", "add", "--arg", "x=1", *args],
                              capture_output=True, text=True, timeout=120, env=env)

    done = run()
    assert (done.returncode, done.stdout.strip()) == (0, "2"), done.stderr
    profile.write_text('url = "http://127.0.0.1:9"\napi_key = "sgk_wrong"\n')
    done = run("--url", server.url, "--api-key", admin)  # the flags win
    assert (done.returncode, done.stdout.strip()) == (0, "2"), done.stderr
    refused = run("--url", server.url)  # the profile's key, refused
    assert refused.returncode == 2 and "401" not in refused.stdout, refused.stderr
    assert "API key" in refused.stderr or "unauthenticated" in refused.stderr, refused.stderr


def test_version_and_short_help():
    version = subprocess.run(["sparkgate", "--version"], capture_output=True, text=True,
                             timeout=60)
    assert version.returncode == 0 and version.stdout.startswith("sparkgate, version ")
    helped = subprocess.run(["sparkgate", "run", "-h"], capture_output=True, text=True,
                            timeout=60)
    assert helped.returncode == 0 and "--output" in helped.stdout
