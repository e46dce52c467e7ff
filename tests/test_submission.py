"""Submitting: nothing is written for a refused request; an accepted id is never lost."""

from __future__ import annotations

import pytest
from redis import Redis
from sqlalchemy import func, select

from jobs import tables
from jobs.catalog import Catalog, Function
from jobs.errors import BadRequest, InvalidArguments, NotFound, Unavailable
from jobs.queue import JobQueue
from jobs.signatures import inspect_source
from jobs.state import JobStatus
from jobs.store import Store
from jobs.submission import SubmitRequest, submit
from tests.conftest import function_source


@pytest.fixture
def echo(catalog: Catalog) -> str:
    content = function_source("echo.py")
    catalog.put_artifact("echo.py", content, replace_existing=False)
    catalog.create_function(Function(
        name="echo", path="echo.py", class_name="echo", default_context="default",
        signature=inspect_source(content.decode(), "echo", "echo.py").to_dict()))
    return "echo"


def job_count(store: Store) -> int:
    with store.engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(tables.jobs)).scalar_one()


def test_accepted_job_is_stored_then_queued(catalog, store, queue, echo):
    job = submit(catalog, store, queue, SubmitRequest(echo, {"value": [1, "x"]},
                                                      external_id="e-1"))
    assert store.get_job(job.id).status is JobStatus.QUEUED
    assert store.get_job(job.id).artifact_sha1 == catalog.get_artifact("echo.py").sha1
    assert queue.queued_ids("default") == [job.id]


@pytest.mark.parametrize(("request_", "error"), [
    (SubmitRequest("nope", {}), NotFound),
    (SubmitRequest("echo", {"valu": 1}), InvalidArguments),
    (SubmitRequest("echo", [1]), InvalidArguments),
    (SubmitRequest("echo", {}, context="no-such-context"), BadRequest),
])
def test_refused_requests_write_nothing(catalog, store, queue, echo, request_, error):
    with pytest.raises(error):
        submit(catalog, store, queue, request_)
    assert job_count(store) == 0
    assert queue.queued_ids("default") == []


def test_redis_down_fails_the_recorded_job_and_says_unavailable(catalog, store, echo):
    dead = JobQueue(Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.5))
    with pytest.raises(Unavailable):
        submit(catalog, store, dead, SubmitRequest(echo, {}))
    # The row exists (it was committed first) and is terminal: it can never run behind the
    # back of a client that was told 503 and retries.
    (job,) = store.jobs_in([JobStatus.FAILED])
    assert "could not be queued" in job.error
    assert store.jobs_in([JobStatus.QUEUED]) == []
