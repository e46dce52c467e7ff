"""Per-artifact environments (docs/environments.md): requirement lines checked and normalized,
an environment built once per set with wheels only, an install failure refusing the upload
with pip's own message, and the jobs of such an artifact queued for, and run by, workers in
that environment, and only there.

The one package installed is ``sparkgate_testdep``, a wheel written here into a folder that
pip is pointed at, with no index: everything runs offline.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import signal
import socket
import subprocess
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import psutil
import pytest
import requests
from rq import Queue as RQQueue
from sparkgate_client import Client, InvalidArtifact

from sparkgate.jobs import deployment
from sparkgate.jobs.cancellation import cancel
from sparkgate.jobs.catalog import Catalog
from sparkgate.jobs.environments import MARKER, Environments
from sparkgate.jobs.errors import BadRequest, EnvironmentBuildFailed
from sparkgate.jobs.queue import JobQueue, queue_name
from sparkgate.jobs.reconciler import Reconciler
from sparkgate.jobs.requirements import (
    environment_id,
    parse_requirements,
    wheel_requirements,
)
from sparkgate.jobs.state import JobStatus
from sparkgate.jobs.store import Store
from sparkgate.jobs.submission import SubmitRequest, submit
from sparkgate.jobs.worker_registry import WorkerRegistry
from tests.conftest import function_source
from tests.server_process import (
    Server,
    running_server,
    server_database,
    wait_until,
)

API = "/v2/api"
TESTDEP = "sparkgate_testdep==1.0"
OTHER = "sparkgate_testdep_other==1.0"
MISSING = "sparkgate-no-such-package==1.0"


def write_wheel(folder: Path, name: str = "sparkgate_testdep", version: str = "1.0",
                body: str = "VALUE = 42\n", requires: tuple[str, ...] = ()) -> Path:
    """A minimal pure-Python wheel: a package ``name`` whose ``__init__`` is ``body``."""
    info = f"{name}-{version}.dist-info"
    metadata = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
    metadata += "".join(f"Requires-Dist: {line}\n" for line in requires)
    files = {f"{name}/__init__.py": body, f"{info}/METADATA": metadata,
             f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: sparkgate-tests\n"
                              "Root-Is-Purelib: true\nTag: py3-none-any\n"}
    files[f"{info}/RECORD"] = "".join(f"{path},,\n" for path in files) + f"{info}/RECORD,,\n"
    path = folder / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as archive:
        for entry, text in files.items():
            archive.writestr(entry, text)
    return path


@pytest.fixture(scope="module")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("wheels")
    write_wheel(folder)
    write_wheel(folder, "sparkgate_testdep_other")
    return folder


@pytest.fixture(scope="module")
def environments(wheels: Path, tmp_path_factory: pytest.TempPathFactory) -> Environments:
    """One folder of environments for the module's tests: each set is built once."""
    return Environments(tmp_path_factory.mktemp("data") / "environments", no_index=True,
                        find_links=(str(wheels),), timeout_s=120)


# -- requirement lines -----------------------------------------------------------------------


def test_requirement_lines_are_normalized_sorted_and_deduplicated():
    text = "requests >= 2.0  # HTTP\n\n# a comment\nnumpy==1.26.0\nrequests>=2.0\n"
    assert parse_requirements(text) == ("numpy==1.26.0", "requests>=2.0")
    assert parse_requirements("") == ()


@pytest.mark.parametrize("line", [
    "-e .", "--index-url https://evil.example/simple", "-r other.txt",
    "pkg @ https://evil.example/pkg.whl", "./local/path", "pkg>=", "pkg==1 ;",
])
def test_options_urls_paths_and_malformed_lines_are_refused_by_name(line: str):
    with pytest.raises(BadRequest) as refused:
        parse_requirements(f"numpy\n{line}\n")
    assert refused.value.message.startswith(f"requirements: {line.strip()!r}")
    assert refused.value.details == {"field": "requirements", "got": line.strip()}


def test_the_environment_id_is_the_set_and_the_python_version():
    lines = parse_requirements("b==1\na==2")
    assert environment_id(lines) == environment_id(parse_requirements("a==2\n b==1 "))
    assert len(environment_id(lines) or "") == 16
    assert environment_id(lines, "3.12") != environment_id(lines, "3.11")
    assert environment_id(()) is None  # no requirements: the base environment


def test_a_wheel_s_own_requires_dist_counts_but_not_its_extras(tmp_path: Path):
    wheel = write_wheel(tmp_path, "withdeps", requires=(
        "sparkgate_testdep==1.0", "rich>=13; python_version >= '3'",
        "pytest; extra == 'test'"))
    assert wheel_requirements(wheel.read_bytes()) == (
        'rich>=13; python_version >= "3"', "sparkgate_testdep==1.0")


# -- building --------------------------------------------------------------------------------


def test_an_environment_is_built_once_over_sparkgate_s_own_packages(environments):
    environment = environment_id((TESTDEP,))
    assert environment is not None
    environments.ensure(environment, [TESTDEP])  # built here, or by an earlier test
    marker = environments.path(environment) / MARKER
    built_at = marker.stat().st_mtime_ns
    assert environments.ensure(environment, [TESTDEP]) is False
    assert marker.stat().st_mtime_ns == built_at
    # The environment's own package, and sparkgate's and pyspark's from the base below it.
    shown = subprocess.run(
        [str(environments.python(environment)), "-P", "-c",
         "import sparkgate_testdep, sparkgate.jobs, pyspark; print(sparkgate_testdep.VALUE)"],
        capture_output=True, text=True, timeout=60, env=_without_pythonpath())
    assert shown.stdout.strip() == "42", shown.stderr


def test_a_requirement_that_cannot_be_installed_fails_with_pip_s_message(environments):
    with pytest.raises(EnvironmentBuildFailed) as failed:
        environments.ensure("0" * 16, [MISSING])
    assert "No matching distribution found for " + MISSING in failed.value.message
    assert not environments.path("0" * 16).exists()


def test_a_package_with_only_a_source_distribution_is_refused_unbuilt(environments,
                                                                        tmp_path: Path):
    """Wheels only: an sdist's setup.py would run at install, in the gateway."""
    sdists = tmp_path / "sdists"
    sdists.mkdir()
    ran = tmp_path / "setup-py-ran"
    project = tmp_path / "sparkgate_sdist_only-1.0"
    project.mkdir()
    (project / "setup.py").write_text(
        f"open({str(ran)!r}, 'w').close()\n"
        "from setuptools import setup\nsetup(name='sparkgate_sdist_only', version='1.0')\n")
    (project / "PKG-INFO").write_text(
        "Metadata-Version: 2.1\nName: sparkgate_sdist_only\nVersion: 1.0\n")
    shutil.make_archive(str(sdists / project.name), "gztar", tmp_path, project.name)
    offline = dataclasses.replace(environments, root=tmp_path / "envs",
                                  find_links=(*environments.find_links, str(sdists)))
    with pytest.raises(EnvironmentBuildFailed) as failed:
        offline.ensure("2" * 16, ["sparkgate_sdist_only==1.0"])
    assert "No matching distribution found for sparkgate_sdist_only" in failed.value.message
    assert not ran.exists()


def test_a_build_that_takes_too_long_fails_saying_which_setting(environments, tmp_path):
    hurried = dataclasses.replace(environments, root=tmp_path, timeout_s=0.001)
    with pytest.raises(EnvironmentBuildFailed, match="longer than environment_build_timeout_s"):
        hurried.ensure("1" * 16, [TESTDEP])
    assert not hurried.path("1" * 16).exists()


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)  # the process, not the storage
def test_a_worker_stopped_while_it_builds_its_environment_ends_the_installer_too(
        catalog: Catalog, db_url: str, redis_url: str, tmp_path: Path):
    silent = socket.socket()  # an index that takes the connection and never answers
    silent.bind(("127.0.0.1", 0))
    silent.listen()
    catalog.put_artifact("slow.py", b"X = 1\n", False, requirements=(TESTDEP,))
    environment = environment_id((TESTDEP,))
    assert environment is not None
    env = {**_without_pythonpath(), "SPARKGATE_DATABASE_URL": db_url,
           "SPARKGATE_REDIS_URL": redis_url, "SPARKGATE_DATA_DIR": str(tmp_path),
           "SPARKGATE_ENVIRONMENT_INDEX_URL": f"http://127.0.0.1:{silent.getsockname()[1]}/"}
    with (tmp_path / "worker.log").open("wb") as log:
        worker = subprocess.Popen(["sparkgate", "worker", "--environment", environment],
                                  env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        installers = wait_until(lambda: [p for p in psutil.Process(worker.pid).children(True)
                                         if "pip" in p.cmdline()], 60, "pip runs")
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=15) == 0, (tmp_path / "worker.log").read_text()
        _, alive = psutil.wait_procs(installers, timeout=5)
        assert not alive
    finally:
        worker.kill()
        silent.close()


def _without_pythonpath() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}


# -- the API ---------------------------------------------------------------------------------


async def upload(client, name: str, requirements: str | None,
                 content: bytes | None = None):
    form = aiohttp.FormData()
    form.add_field("file", content or function_source("testdep_user.py"), filename=name,
                   content_type="text/x-python")
    if requirements is not None:
        form.add_field("requirements", requirements)
    return await client.post(f"{API}/artifacts", data=form)


@pytest.fixture
async def env_client(make_client, environments: Environments, wheels: Path):
    return await make_client(data_dir=environments.root.parent, environment_no_index=True,
                             environment_find_links=(str(wheels),))


async def test_an_upload_with_requirements_builds_their_environment_once(env_client,
                                                                         environments):
    response = await upload(env_client, "one.py", f"{TESTDEP}\n")
    assert response.status == 200, await response.text()
    info = await (await env_client.get(f"{API}/artifacts/one.py/info")).json()
    environment = environment_id((TESTDEP,))
    assert info["requirements"] == [TESTDEP] and info["environment"] == environment
    assert environment is not None
    marker = environments.path(environment) / MARKER
    built_at = marker.stat().st_mtime_ns
    # The same set, written otherwise, for another artifact: the same environment, not rebuilt.
    response = await upload(env_client, "two.py", f"  {TESTDEP}  # the test package\n")
    assert response.status == 200, await response.text()
    assert (await (await env_client.get(f"{API}/artifacts/two.py/info")).json())[
        "environment"] == environment
    assert marker.stat().st_mtime_ns == built_at


async def test_an_artifact_without_requirements_has_the_base_environment(env_client):
    response = await upload(env_client, "base.py", None)
    assert response.status == 200, await response.text()
    info = await (await env_client.get(f"{API}/artifacts/base.py/info")).json()
    assert info["requirements"] == [] and info["environment"] is None


async def test_a_bad_requirement_line_is_a_400_naming_it_and_stores_nothing(env_client):
    response = await upload(env_client, "bad.py", f"{TESTDEP}\n--extra-index-url http://x/\n")
    assert response.status == 400
    error = (await response.json())["error"]
    assert error["message"].startswith("requirements: '--extra-index-url http://x/'")
    assert error["details"]["field"] == "requirements"
    assert (await env_client.get(f"{API}/artifacts/bad.py/sha")).status == 404


async def test_an_uninstallable_requirement_is_a_400_with_pip_s_message(env_client,
                                                                        environments):
    response = await upload(env_client, "missing.py", MISSING)
    assert response.status == 400
    error = (await response.json())["error"]
    assert "No matching distribution found for " + MISSING in error["message"], error
    assert (await env_client.get(f"{API}/artifacts/missing.py/sha")).status == 404
    environment = environment_id((MISSING,))
    assert environment is not None and not environments.path(environment).exists()


# -- queueing --------------------------------------------------------------------------------


def test_a_job_s_environment_decides_its_queue_through_cancel_and_the_reconciler(
        catalog: Catalog, store: Store, queue: JobQueue, redis, environments):
    deployment.upload_artifact(catalog, "dep.py", function_source("testdep_user.py"), False,
                               requirements=(TESTDEP,), environments=environments)
    catalog.create_function(deployment.build_function(
        catalog, "testdep", "dep.py", "testdep_value", "default", [], inspect=True))
    environment = environment_id((TESTDEP,))
    job = submit(catalog, store, queue, SubmitRequest("testdep", {}))
    assert job.environment == environment
    assert store.get_job(job.id).environment == environment
    env_queue = RQQueue(queue_name("default", environment), connection=redis)
    assert env_queue.name == queue_name("default", environment) != queue_name("default")
    assert env_queue.get_job_ids() == [job.id] and queue.queued_ids("default") == []
    # Redis loses it: the reconciler puts it back where it belongs, its environment's queue.
    redis.flushdb()
    reconciler = Reconciler(store, catalog, queue, WorkerRegistry(redis, 10), redis,
                            settle_s=0, requeue_grace_s=0)
    try:
        for _ in range(3):
            reconciler.run_once()
    finally:
        reconciler.release()
    assert env_queue.get_job_ids() == [job.id] and queue.queued_ids("default") == []
    assert cancel(store, queue, job.id).status is JobStatus.CANCELLED
    assert env_queue.get_job_ids() == []


# -- end to end ------------------------------------------------------------------------------


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
           wheels: Path) -> Iterator[Server]:
    overrides = {
        "SPARKGATE_CONTEXT_ENGINE": "python",
        "SPARKGATE_DEPLOY_EXAMPLES": "false",
        "SPARKGATE_ENVIRONMENT_NO_INDEX": "true",
        "SPARKGATE_ENVIRONMENT_FIND_LINKS": str(wheels),
    }
    # PostgreSQL with the embedded Redis: no Redis database to share.
    with server_database(request.param, overrides) as database:
        workdir = tmp_path_factory.mktemp(f"environments-{request.param}")
        with running_server(workdir, {**overrides, **database}) as server:
            yield server


def deploy(server: Server, artifact: str, function: str, requirements: str | None,
           source: str = "testdep_user.py", class_name: str = "testdep_value",
           context: str = "default") -> Any:
    data = {} if requirements is None else {"requirements": requirements}
    response = requests.post(server.api("/artifacts"), params={"force": "true"}, timeout=120,
                             files={"file": (artifact, function_source(source))}, data=data)
    if response.status_code == 200:
        body = {"name": function, "path": artifact, "className": class_name,
                "defaultContext": context}
        created = server.post("/functions", json=body)
        assert created.status_code == 200, created.text
    return response


def run(server: Server, function: str) -> dict:
    job_id = server.submit(function, {})
    return server.wait_for_job(job_id, {"finished", "failed"}, timeout_s=120)


@pytest.mark.slow
def test_a_function_runs_with_its_artifact_s_requirements_and_only_there(server: Server):
    assert deploy(server, "with_dep.py", "with_dep", TESTDEP).status_code == 200
    assert deploy(server, "without_dep.py", "without_dep", None).status_code == 200
    job = run(server, "with_dep")
    assert (job["status"], job.get("jobResult")) == ("finished", 42), job
    environment = environment_id((TESTDEP,))
    [worker] = [w for w in server.workers() if w["name"] == job["workerId"]]
    assert worker["environment"] == environment
    # The same code in an artifact with no requirements: a base worker, no such module.
    job = run(server, "without_dep")
    assert job["status"] == "failed", job
    assert "No module named 'sparkgate_testdep'" in str(job.get("jobResult")), job  # Mist's
    [worker] = [w for w in server.workers() if w["name"] == job["workerId"]]
    assert worker["environment"] is None


@pytest.mark.slow
def test_serve_refuses_an_uninstallable_requirement_with_pip_s_message(server: Server):
    response = deploy(server, "broken.py", "broken", MISSING)
    assert response.status_code == 400
    assert "No matching distribution found for " + MISSING in response.json()["error"][
        "message"]
    assert server.get("/artifacts/broken.py/sha").status_code == 404


@pytest.mark.slow
def test_a_worker_host_without_the_environment_builds_it_from_the_database(server: Server):
    requirements = f"{TESTDEP}\n{OTHER}"
    environment = environment_id(parse_requirements(requirements))
    assert environment is not None
    assert deploy(server, "rebuilt.py", "rebuilt", requirements).status_code == 200
    # As on a host where it was never built (no job has run for it yet).
    shutil.rmtree(server.data_dir / "environments" / environment)
    job = run(server, "rebuilt")
    assert (job["status"], job.get("jobResult")) == ("finished", 42), job
    assert (server.data_dir / "environments" / environment / MARKER).exists()


@pytest.mark.slow
def test_an_environment_a_host_cannot_build_fails_its_jobs_not_its_context(server: Server,
                                                                          wheels: Path):
    """A package that could be installed at upload but not on the worker's host (gone from
    its index, another index there): after maxConnFailures tries the environment's queued
    jobs fail with pip's message; the context and its base environment's jobs go on."""
    server.context("fragile", engine="python", maxConnFailures=2)
    vanishing = write_wheel(wheels, "sparkgate_vanishing", body="VALUE = 7\n")
    requirement = "sparkgate_vanishing==1.0"
    assert deploy(server, "vanishing.py", "vanishing", requirement,
                  context="fragile").status_code == 200
    vanishing.unlink()
    shutil.rmtree(server.data_dir / "environments" / str(environment_id((requirement,))))
    job = run(server, "vanishing")
    assert job["status"] == "failed", job
    error = str(job.get("jobResult"))
    assert "could not be built on host" in error and "(2 tries)" in error, error
    assert "No matching distribution found for sparkgate_vanishing" in error, error
    assert deploy(server, "plain_fragile.py", "plain_fragile", None, "plain.py", "add",
                  "fragile").status_code == 200
    plain = server.wait_for_job(server.submit("plain_fragile", {"x": 2}),
                                {"finished", "failed"})
    assert (plain["status"], plain.get("jobResult")) == ("finished", 3), plain
    assert server.get("/contexts/fragile").json()["state"] != "broken"


@pytest.mark.slow
@pytest.mark.parametrize("server", ["sqlite"], indirect=True)  # the engine, not the storage
def test_a_spark_function_and_its_executors_run_in_the_environment(server: Server):
    server.context("spark-env", engine="spark", maxJobs=1)
    assert deploy(server, "spark_dep.py", "spark_dep", TESTDEP, "testdep_spark.py",
                  "testdep_on_executors", "spark-env").status_code == 200
    job = run(server, "spark_dep")
    assert (job["status"], job.get("jobResult")) == ("finished", 42), job


@pytest.mark.slow
def test_sparkgate_deploy_sends_a_folder_s_requirements_and_diffs_them(server: Server,
                                                                       tmp_path: Path):
    app = tmp_path / "app"
    app.mkdir()
    (app / "dep_app.py").write_bytes(function_source("testdep_user.py"))
    (app / "requirements.txt").write_text(f"# pinned\n{TESTDEP}\n")
    manifest = ('[functions.dep_app]\npath = "dep_app.py"\nclassName = "testdep_value"\n\n'
                '[requirements]\n"dep_app.py" = "requirements.txt"\n')
    (app / "sparkgate.toml").write_text(manifest)
    done = deploy_folder(server, app)
    assert "+ artifact dep_app.py: created" in done
    assert server.get("/artifacts/dep_app.py/info").json()["requirements"] == [TESTDEP]
    assert "0 to create, 0 to update, 2 unchanged" in deploy_folder(server, app, "--dry-run")
    (app / "sparkgate.toml").write_text(manifest.replace(
        '"requirements.txt"', f'["{TESTDEP}", "{OTHER}"]'))
    plan = deploy_folder(server, app, "--dry-run")
    assert "~ artifact dep_app.py: update" in plan and OTHER in plan
    job = run(server, "dep_app")
    assert (job["status"], job.get("jobResult")) == ("finished", 42), job


@pytest.mark.slow
def test_a_deploy_stopped_by_pip_changes_nothing_and_says_why(server: Server, tmp_path: Path):
    """The upload is applied first, so the context the folder also names is not saved."""
    app = tmp_path / "app"
    app.mkdir()
    (app / "broken_app.py").write_bytes(function_source("testdep_user.py"))
    (app / "sparkgate.toml").write_text(
        '[contexts.broken_ctx]\nengine = "python"\n\n'
        '[functions.broken_app]\npath = "broken_app.py"\nclassName = "testdep_value"\n'
        'defaultContext = "broken_ctx"\n\n'
        f'[requirements]\n"broken_app.py" = ["{MISSING}"]\n')
    done = run_deploy(server, app)
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert "No matching distribution found for " + MISSING in done.stderr, done.stderr
    for path in ("/contexts/broken_ctx", "/artifacts/broken_app.py/sha",
                 "/functions/broken_app"):
        assert server.get(path).status_code == 404, path


@pytest.mark.slow
def test_the_client_waits_for_an_upload_s_environment_longer_than_its_timeout(
        server: Server, wheels: Path):
    """A build takes seconds (minutes with real packages): the upload's answer is waited for
    whatever the client's timeout; pip's refusal is InvalidArtifact with its message."""
    write_wheel(wheels, "sparkgate_slow_build")
    with Client(server.url, timeout=0.2) as client:
        built = client.upload_artifact("slow_build.py", function_source("testdep_user.py"),
                                       requirements=["sparkgate_slow_build==1.0"])
        assert client.artifact(built.name).environment == environment_id(
            ("sparkgate_slow_build==1.0",))
        with pytest.raises(InvalidArtifact) as refused:
            client.upload_artifact("refused.py", b"def f():\n    return 1\n",
                                   requirements=[MISSING])
    assert "No matching distribution found for " + MISSING in str(refused.value)


def run_deploy(server: Server, folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**server.env, "SPARKGATE_URL": server.url, "SPARKGATE_PROFILE": "/nonexistent"}
    return subprocess.run(["sparkgate", "deploy", str(folder), *args], capture_output=True,
                          text=True, timeout=120, env=env)


def deploy_folder(server: Server, folder: Path, *args: str) -> str:
    done = run_deploy(server, folder, *args)
    assert done.returncode == 0, done.stderr
    return done.stdout
