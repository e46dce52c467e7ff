"""Submitting: nothing is written for a refused request; an accepted id is never lost."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import pytest
from redis import Redis
from sqlalchemy import func, select

from sparkgate.jobs import tables
from sparkgate.jobs.catalog import Catalog
from sparkgate.jobs.contexts import Context
from sparkgate.jobs.errors import (
    BadRequest,
    Conflict,
    InvalidArguments,
    NotFound,
    TooManyRequests,
    Unavailable,
    WrongEngine,
)
from sparkgate.jobs.functions import Function
from sparkgate.jobs.queue import JobQueue
from sparkgate.jobs.signatures.reading import inspect_source
from sparkgate.jobs.state import JobStatus
from sparkgate.jobs.store import Store
from sparkgate.jobs.submission import SubmitRequest, submit, submit_many
from tests.conftest import function_source


def deploy(catalog: Catalog, file_name: str, name: str) -> str:
    content = function_source(file_name)
    catalog.put_artifact(file_name, content, replace_existing=False)
    catalog.create_function(Function(
        name=name, path=file_name, class_name=name, default_context="default",
        signature=inspect_source(content.decode(), name, file_name).to_dict()))
    return name


@pytest.fixture
def echo(catalog: Catalog) -> str:
    return deploy(catalog, "echo.py", "echo")


@pytest.fixture
def add(catalog: Catalog) -> str:
    return deploy(catalog, "plain.py", "add")


@pytest.fixture
def python_context(catalog: Catalog) -> str:
    defaults = Context.from_defaults("scoring", catalog.context_defaults)
    catalog.save_context(replace(defaults, engine="python"))
    return "scoring"


def test_a_submit_reads_the_catalog_as_its_stores_do(catalog, add, python_context):
    """The submit's one joined read (run on the driver's cursor) gives the function, context
    and health the catalog's own reads give: JSON, booleans and nulls converted alike."""
    stored = catalog.get_context(python_context)
    catalog.save_context(replace(stored, spark_conf={"spark.x": "1", "n": [1, 2]},
                                 precreated=True, perform_timeout_s=30))
    catalog.update_function(replace(catalog.get_function(add), tags=["a", "b"]))
    with catalog.engine.connect() as conn:
        named = catalog.submission_target(conn, add, python_context)
        default = catalog.submission_target(conn, add, None)
    assert named.function == catalog.get_function(add)
    assert named.context == catalog.get_context(python_context)
    assert named.context.precreated is True and named.context.spark_conf["n"] == [1, 2]
    assert default.context == Context.from_defaults("default", catalog.context_defaults)
    assert named.health == catalog.all_health().get(python_context, named.health)
    assert named.artifact_sha1 == catalog.get_artifact("plain.py").sha1


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


def test_redis_down_takes_the_job_back_and_says_unavailable(catalog, store, echo):
    dead = JobQueue(Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.5))
    with pytest.raises(Unavailable):
        submit(catalog, store, dead, SubmitRequest(echo, {}, idempotency_key="k-1"))
    # The client was told 503 and got no id: nothing is left that could run behind its back,
    # and its retry with the same key is a new submit, not the dead one.
    assert job_count(store) == 0


def test_retry_after_a_queue_outage_gets_a_queued_job(catalog, store, queue, echo):
    dead = JobQueue(Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.5))
    with pytest.raises(Unavailable):
        submit(catalog, store, dead, SubmitRequest(echo, {}, idempotency_key="k-1"))
    job = submit(catalog, store, queue, SubmitRequest(echo, {}, idempotency_key="k-1"))
    assert job.status is JobStatus.QUEUED
    assert queue.queued_ids("default") == [job.id]


@pytest.mark.parametrize("key", [
    {"idempotency_key": "order-17"},
    {"external_id": "order-17"},
])
def test_a_retried_submit_returns_the_same_job(catalog, store, queue, echo, key):
    first = submit(catalog, store, queue, SubmitRequest(echo, {"value": 1}, **key))
    again = submit(catalog, store, queue, SubmitRequest(echo, {"value": 1}, **key))
    assert again.id == first.id
    assert job_count(store) == 1
    assert queue.queued_ids("default") == [first.id]


def test_a_key_names_a_job_even_after_it_ended(catalog, store, queue, echo):
    first = submit(catalog, store, queue, SubmitRequest(echo, {}, idempotency_key="k"))
    store.transition(first.id, JobStatus.CANCELLED)
    again = submit(catalog, store, queue, SubmitRequest(echo, {}, idempotency_key="k"))
    assert (again.id, again.status) == (first.id, JobStatus.CANCELLED)


def test_the_same_key_with_other_arguments_is_a_conflict(catalog, store, queue, echo):
    first = submit(catalog, store, queue, SubmitRequest(echo, {"value": 1},
                                                        idempotency_key="k"))
    with pytest.raises(Conflict) as caught:
        submit(catalog, store, queue, SubmitRequest(echo, {"value": 2}, idempotency_key="k"))
    assert first.id in caught.value.message
    assert caught.value.details == {"field": "Idempotency-Key", "jobId": first.id}
    assert job_count(store) == 1


def test_keys_are_per_submitter(catalog, store, queue, echo):
    mine = submit(catalog, store, queue, SubmitRequest(echo, {}, external_id="x",
                                                       submitter="key:alice"))
    theirs = submit(catalog, store, queue, SubmitRequest(echo, {}, external_id="x",
                                                         submitter="key:bob"))
    assert mine.id != theirs.id
    assert store.get_job(mine.id).submitter == "key:alice"


def test_concurrent_retries_create_one_job(catalog, store, queue, echo):
    with ThreadPoolExecutor(8) as pool:
        jobs = list(pool.map(
            lambda _: submit(catalog, store, queue, SubmitRequest(echo, {}, idempotency_key="k")),
            range(16)))
    assert len({j.id for j in jobs}) == 1
    assert job_count(store) == 1
    assert queue.queued_ids("default") == [jobs[0].id]


def test_a_full_context_queue_refuses_with_retry_after(catalog, store, queue, echo):
    for _ in range(3):
        submit(catalog, store, queue, SubmitRequest(echo, {}), max_queued=3)
    with pytest.raises(TooManyRequests) as caught:
        submit(catalog, store, queue, SubmitRequest(echo, {}), max_queued=3)
    assert caught.value.retry_after_s > 0
    assert "max_queued_per_context = 3" in caught.value.message
    assert job_count(store) == 3


def test_a_batch_answers_each_request_on_its_own(catalog, store, queue, echo):
    outcomes = submit_many(catalog, store, queue, [
        SubmitRequest(echo, {"value": 1}),
        SubmitRequest(echo, {"valu": 1}),
        SubmitRequest("nope", {}),
        SubmitRequest(echo, {"value": 2}, idempotency_key="k"),
        SubmitRequest(echo, {"value": 2}, idempotency_key="k"),
        SubmitRequest(echo, {"value": 3}, idempotency_key="k"),
    ])
    first, bad_args, unknown, keyed, same, conflict = outcomes
    assert isinstance(bad_args, InvalidArguments)
    assert isinstance(unknown, NotFound)
    assert isinstance(conflict, Conflict)
    assert same.id == keyed.id
    assert (first.arguments, keyed.arguments) == ({"value": 1}, {"value": 2})
    # Only the two accepted jobs exist, committed and queued in request order.
    assert job_count(store) == 2
    assert queue.queued_ids("default") == [first.id, keyed.id]
    assert store.get_job(keyed.id).create_time == keyed.create_time


def test_a_broken_context_fails_its_jobs_and_queues_the_others(catalog, store, queue, echo):
    catalog.save_context(Context.from_defaults("fragile", catalog.context_defaults))
    catalog.record_failure("fragile", "JVM died", limit=1)
    healthy, broken = submit_many(catalog, store, queue, [
        SubmitRequest(echo, {}), SubmitRequest(echo, {}, context="fragile")])
    assert healthy.status is JobStatus.QUEUED
    assert broken.status is JobStatus.FAILED and "is broken" in broken.error
    assert queue.queued_ids("default") == [healthy.id]
    assert queue.queued_ids("fragile") == []


def test_a_spark_function_sent_to_a_python_context_is_refused(catalog, store, queue, echo,
                                                               python_context):
    with pytest.raises(WrongEngine) as info:
        submit(catalog, store, queue, SubmitRequest(echo, {}, context=python_context))
    assert info.value.http_status == 400
    assert info.value.message == (
        "context: function 'echo' takes a SparkSession, so it needs engine 'spark', but context "
        "'scoring' runs on engine 'python'; use a context with engine 'spark', or drop the "
        "Spark handle to make it a plain function (docs/functions.md)")
    assert info.value.details == {"field": "context", "function": "echo", "context": "scoring",
                                  "engine": "python", "needs": "spark"}
    assert job_count(store) == 0
    assert queue.queued_ids(python_context) == []


def test_a_plain_function_is_accepted_by_any_engine(catalog, store, queue, add, python_context):
    on_python = submit(catalog, store, queue, SubmitRequest(add, {"x": 1}, context=python_context))
    on_spark = submit(catalog, store, queue, SubmitRequest(add, {"x": 1}))
    assert queue.queued_ids(python_context) == [on_python.id]
    assert queue.queued_ids("default") == [on_spark.id]


def test_a_function_stored_unread_is_not_refused_by_its_engine(catalog, store, queue,
                                                                python_context):
    # force=true stored no signature: whether it needs Spark is found out by its worker.
    catalog.put_artifact("echo.py", function_source("echo.py"), replace_existing=False)
    catalog.create_function(Function(name="forced", path="echo.py", class_name="echo",
                                     default_context="default"))
    job = submit(catalog, store, queue, SubmitRequest("forced", {}, context=python_context))
    assert queue.queued_ids(python_context) == [job.id]
