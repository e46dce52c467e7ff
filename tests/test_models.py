"""The model store: the domain on SQLite and PostgreSQL, its HTTP API and auth rules, and
``sparkgate.models`` (save, load once per process, reload when another version goes live)."""

from __future__ import annotations

import dataclasses
import hashlib
import pickle
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sparkgate import models
from sparkgate.jobs.catalog import Catalog
from sparkgate.jobs.errors import ConfigError, Conflict, NotFound, PayloadTooLarge
from sparkgate.jobs.keys import KeyStore
from sparkgate.jobs.logs.capture import JobLogCapture
from sparkgate.jobs.models import ModelStore
from sparkgate.jobs.queue import JobQueue
from sparkgate.jobs.state import JobStatus
from sparkgate.jobs.store import Job, Store
from sparkgate.workers.artifacts import FunctionLoader
from sparkgate.workers.engines.python import PythonEngine
from sparkgate.workers.execution import JobRunner
from sparkgate.workers.watchdog import Watchdog
from tests.api_responses import error_of, json_of
from tests.test_execution import deploy, enqueue, run_next

API = "/v2/api/models"


@pytest.fixture
def model_store(engine) -> ModelStore:
    return ModelStore(engine, max_bytes=1024)


@pytest.fixture
def unconfigured(monkeypatch: pytest.MonkeyPatch) -> None:
    """The process-wide store of ``sparkgate.models`` as it was once the test ends."""
    monkeypatch.setattr(models, "_models", None)


def sha(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


# ---------------------------------------------------------------------------------------------
# The store


def test_a_saved_version_is_live_and_listed(model_store: ModelStore):
    version = model_store.save("churn", b"v1", "job:j1")
    assert (version.sha256, version.size, version.created_by) == (sha(b"v1"), 2, "job:j1")
    assert model_store.live_version("churn") == sha(b"v1")
    [model] = model_store.list_models()
    assert (model.name, model.live, model.versions) == ("churn", sha(b"v1"), 1)
    assert model_store.content("churn", sha(b"v1")) == b"v1"


def test_a_version_saved_not_live_waits_for_a_promotion(model_store: ModelStore):
    model_store.save("churn", b"v1", "local")
    model_store.save("churn", b"v2", "local", live=False)
    assert model_store.live_version("churn") == sha(b"v1")
    assert [v.sha256 for v in model_store.versions("churn")] == [sha(b"v2"), sha(b"v1")]
    model_store.promote("churn", sha(b"v2"))
    assert model_store.get_model("churn").live == sha(b"v2")


def test_roll_back_returns_to_the_previous_live_version(model_store: ModelStore):
    for content in (b"v1", b"v2", b"v3"):
        model_store.save("churn", content, "local")
    assert model_store.roll_back("churn").sha256 == sha(b"v2")
    assert model_store.live_version("churn") == sha(b"v2")
    # Promoting an old version and rolling back goes back to the one it replaced.
    model_store.promote("churn", sha(b"v1"))
    assert model_store.roll_back("churn").sha256 == sha(b"v2")


def test_roll_back_without_an_earlier_live_version_is_a_conflict(model_store: ModelStore):
    model_store.save("churn", b"v1", "local")
    with pytest.raises(Conflict, match="no earlier live version"):
        model_store.roll_back("churn")


def test_the_same_content_is_one_version(model_store: ModelStore):
    model_store.save("churn", b"v1", "job:first")
    model_store.save("churn", b"v2", "local")
    again = model_store.save("churn", b"v1", "job:second")
    assert again.created_by == "job:first"
    assert model_store.get_model("churn").versions == 2
    assert model_store.live_version("churn") == sha(b"v1")


def test_missing_models_and_versions_are_not_found(model_store: ModelStore):
    with pytest.raises(NotFound, match="model 'nope' does not exist"):
        model_store.live_version("nope")
    with pytest.raises(NotFound):
        model_store.roll_back("nope")
    model_store.save("churn", b"v1", "local")
    with pytest.raises(NotFound) as raised:
        model_store.promote("churn", sha(b"other"))
    assert raised.value.details["field"] == "version"
    with pytest.raises(NotFound):
        model_store.content("churn", sha(b"other"))


def test_a_version_over_the_size_limit_is_refused(model_store: ModelStore):
    with pytest.raises(PayloadTooLarge, match="max_model_bytes"):
        model_store.save("churn", b"x" * 1025, "local")
    assert model_store.list_models() == []


# ---------------------------------------------------------------------------------------------
# sparkgate.models in a process


class CountingStore(ModelStore):
    """Counts the reads of a version's bytes: a load that costs nothing reads none."""

    def __init__(self, engine) -> None:
        super().__init__(engine)
        self.reads = 0

    def content(self, name: str, sha256: str) -> bytes:
        self.reads += 1
        return super().content(name, sha256)


def wait_for(predicate, timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_load_is_cached_and_follows_the_live_version(engine, unconfigured):
    store = CountingStore(engine)
    models.use(store, check_every_s=0.05)
    v1 = models.save("scorer", {"weights": [1, 2]})
    assert models.load("scorer") == {"weights": [1, 2]}
    first = models.load("scorer")
    assert models.load("scorer") is first and store.reads == 1
    time.sleep(0.1)
    models.load("scorer")  # stale: a check starts in the background, nothing changed
    time.sleep(0.1)
    assert models.load("scorer") is first and store.reads == 1

    v2 = models.save("scorer", {"weights": [3, 4]})  # a newer version goes live
    wait_for(lambda: models.load("scorer") == {"weights": [3, 4]})
    assert store.reads == 2
    store.promote("scorer", v1)  # and a roll back
    wait_for(lambda: models.load("scorer") == {"weights": [1, 2]})
    assert v1 != v2 and store.reads == 3


def test_a_live_version_that_does_not_load_leaves_the_loaded_one(engine, unconfigured, caplog):
    store = ModelStore(engine)
    models.use(store, check_every_s=0)
    models.save("scorer", "good")
    assert models.load("scorer") == "good"
    store.save("scorer", b"not a pickle", "key:admin")
    # Each call may start a check; every check fails to unpickle and keeps "good".
    wait_for(lambda: models.load("scorer") == "good"
             and "could not check for a new live version" in caplog.text)


def test_a_version_saved_not_live_is_not_loaded(engine, unconfigured):
    models.use(ModelStore(engine), check_every_s=0)
    models.save("scorer", "old")
    models.save("scorer", "new", live=False)
    assert models.load("scorer") == "old"


def test_a_save_in_a_job_is_recorded_as_the_jobs(engine, unconfigured):
    store = ModelStore(engine)
    models.use(store, job_of_thread=lambda: "job-42")
    version = models.save("scorer", [1])
    assert store.versions("scorer")[0].created_by == "job:job-42"
    assert store.content("scorer", version) == pickle.dumps([1], pickle.HIGHEST_PROTOCOL)
    models.use(store)
    models.save("scorer", [2])
    assert store.versions("scorer")[0].created_by == "local"


def test_save_refuses_a_name_the_api_could_not_serve(engine, unconfigured):
    models.use(ModelStore(engine))
    with pytest.raises(ValueError, match="model name"):
        models.save("a/b", 1)


def test_load_of_an_unknown_model_names_it(engine, unconfigured):
    models.use(ModelStore(engine))
    with pytest.raises(NotFound, match="'absent'"):
        models.load("absent")


def test_outside_a_worker_the_store_is_the_database_of_the_settings(
        db_url: str, engine, unconfigured, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("SPARKGATE_CONFIG", raising=False)
    monkeypatch.setenv("SPARKGATE_DATABASE_URL", db_url)
    version = models.save("scorer", {"local": True})
    assert models.load("scorer") == {"local": True}
    [saved] = ModelStore(engine).versions("scorer")
    assert (saved.sha256, saved.created_by) == (version, "local")
    models._configured().store.engine.dispose()  # the one it made


@pytest.fixture
def python_runner(store: Store, catalog: Catalog, queue: JobQueue, redis, engine,
                  tmp_path: Path, unconfigured) -> Iterator[JobRunner]:
    """A python-engine job runner wired to the model store as a worker process wires it."""
    capture = JobLogCapture(store.append_logs, flush_interval_s=0.1)
    python = PythonEngine()
    watchdog = Watchdog(python.cancel, lambda job_id, why: None, cancel_grace_s=30)
    models.use(ModelStore(engine), capture.current_job, check_every_s=0)
    yield JobRunner(store=store, queue=queue, redis=redis,
                    loader=FunctionLoader(catalog, tmp_path / "cache"), engine=python,
                    worker_id="test-worker", capture=capture, watchdog=watchdog,
                    progress=python.progress(store.set_progress))
    watchdog.close()
    capture.close()


def test_a_training_job_saves_and_scoring_jobs_follow_it(python_runner, catalog, store, queue,
                                                         engine):
    deploy(catalog, "model_user.py", "train")
    deploy(catalog, "model_user.py", "score")

    def run(function: str, arguments: dict[str, Any]) -> Job:
        enqueue(catalog, store, queue, function, arguments)
        job = store.get_job(run_next(python_runner, queue))
        assert job.status is JobStatus.FINISHED, job.error
        return job

    training = run("train", {"factor": 3})
    [version] = ModelStore(engine).versions("multiplier")
    assert (version.sha256, version.created_by) == (training.result, f"job:{training.id}")
    assert run("score", {"x": 2}).result == 6
    run("train", {"factor": 5})  # a second training run: the scoring worker picks it up
    wait_for(lambda: run("score", {"x": 2}).result == 10)


# ---------------------------------------------------------------------------------------------
# The HTTP API


async def upload(client, name: str, content: bytes, headers: dict[str, str] | None = None):
    return await client.post(f"{API}/{name}/versions", data=content,
                             headers={"Content-Type": "application/octet-stream",
                                      **(headers or {})})


async def test_upload_promote_roll_back_and_download(client):
    assert await json_of(await client.get(API)) == []
    first = await json_of(await upload(client, "churn", b"one"))
    assert first["version"] == sha(b"one") and first["live"] is False
    assert first["createdBy"] == "anonymous"
    await json_of(await upload(client, "churn", b"two"))
    model = await json_of(await client.get(f"{API}/churn"))
    assert model["live"] is None
    assert [v["version"] for v in model["versions"]] == [sha(b"two"), sha(b"one")]

    for content in (b"one", b"two"):
        model = await json_of(await client.post(f"{API}/churn/live",
                                                json={"version": sha(content)}))
        assert model["live"] == sha(content)
    model = await json_of(await client.post(f"{API}/churn/live", json={"rollback": True}))
    assert model["live"] == sha(b"one")
    assert [v["live"] for v in model["versions"]] == [False, True]
    [listed] = await json_of(await client.get(API))
    assert (listed["name"], listed["live"], listed["versions"]) == ("churn", sha(b"one"), 2)

    response = await client.get(f"{API}/churn/versions/{sha(b'two')}")
    assert response.status == 200 and await response.read() == b"two"
    assert response.headers["ETag"] == f'"{sha(b"two")}"'


async def test_an_upload_over_max_model_bytes_is_413(make_client):
    client = await make_client(max_model_bytes=8)
    error = await error_of(await upload(client, "churn", b"x" * 9), 413, "payload_too_large")
    assert error["details"] == {"field": "body", "limit": 8}
    assert await json_of(await client.get(API)) == []


async def test_an_upload_may_be_larger_than_max_body_bytes(make_client):
    # Over aiohttp's client_max_size too, which the other two limits set.
    client = await make_client(max_body_bytes=1024, max_artifact_bytes=1024,
                               max_model_bytes=1 << 20)
    content = bytes(range(256)) * 4096
    assert (await json_of(await upload(client, "big", content)))["size"] == len(content)
    response = await client.get(f"{API}/big/versions/{sha(content)}")
    assert await response.read() == content


@pytest.mark.parametrize("body, field", [
    ({"version": "abc"}, "version"),
    ({"rollback": False}, "rollback"),
    ({"colour": "red"}, "colour"),
])
async def test_a_bad_live_change_names_the_field(client, body: dict[str, Any], field: str):
    await json_of(await upload(client, "churn", b"one"))
    error = await error_of(await client.post(f"{API}/churn/live", json=body), 400,
                           "invalid_arguments")
    assert [p["field"] for p in error["details"]] == [field]


async def test_a_live_change_needs_exactly_one_field(client):
    await json_of(await upload(client, "churn", b"one"))
    for body in ({}, {"version": sha(b"one"), "rollback": True}):
        error = await error_of(await client.post(f"{API}/churn/live", json=body), 400,
                               "bad_request")
        assert error["details"]["field"] == "version"


async def test_missing_models_versions_and_bad_names(client):
    await error_of(await client.get(f"{API}/nope"), 404, "not_found")
    await error_of(await client.post(f"{API}/nope/live", json={"rollback": True}), 404,
                   "not_found")
    await json_of(await upload(client, "churn", b"one"))
    error = await error_of(await client.post(f"{API}/churn/live", json={"version": sha(b"x")}),
                           404, "not_found")
    assert error["details"]["field"] == "version"
    await error_of(await client.get(f"{API}/churn/versions/{sha(b'x')}"), 404, "not_found")
    await error_of(await client.post(f"{API}/churn/live", json={"rollback": True}), 409,
                   "conflict")
    error = await error_of(await upload(client, "-bad", b"one"), 400, "bad_request")
    assert error["details"]["field"] == "name"
    error = await error_of(await upload(client, "churn", b""), 400, "bad_request")
    assert error["details"]["field"] == "body"


async def test_read_sees_models_and_only_admin_writes_or_downloads(make_client, engine):
    keys = KeyStore(engine)
    admin = {"Authorization": f"Bearer {keys.create('k-admin', 'admin').token}"}
    reader = {"Authorization": f"Bearer {keys.create('k-read', 'read').token}"}
    submitter = {"Authorization": f"Bearer {keys.create('k-submit', 'submit').token}"}
    client = await make_client(auth_enabled=True)
    version = await json_of(await upload(client, "churn", b"one", admin))
    assert version["createdBy"] == "key:k-admin"
    for who in (reader, submitter):
        await error_of(await upload(client, "churn", b"two", who), 403, "forbidden")
        await error_of(await client.post(f"{API}/churn/live", json={"rollback": True},
                                         headers=who), 403, "forbidden")
        await error_of(await client.get(f"{API}/churn/versions/{sha(b'one')}", headers=who),
                       403, "forbidden")
    assert len(await json_of(await client.get(API, headers=reader))) == 1
    assert (await json_of(await client.get(f"{API}/churn", headers=reader)))["live"] is None
    await error_of(await client.get(API), 401, "unauthenticated")
    await json_of(await client.post(f"{API}/churn/live", json={"version": sha(b"one")},
                                    headers=admin))


def test_settings_refuse_a_limit_that_is_not_positive(settings):
    with pytest.raises(ConfigError, match="max_model_bytes"):
        dataclasses.replace(settings, max_model_bytes=0)
