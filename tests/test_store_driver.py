"""The store's per-job statements run on the driver's cursor (jobs/driver_sql.py): what they
read and write, and the errors they raise, are those of SQLAlchemy Core, on SQLite and
PostgreSQL."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from sparkgate.jobs import tables as t
from sparkgate.jobs.db import writing
from sparkgate.jobs.errors import IllegalTransition, NotFound
from sparkgate.jobs.logs.lines import LogLine
from sparkgate.jobs.state import JobStatus
from sparkgate.jobs.store import NewJob, RawJSON, Store


def new(**overrides: Any) -> NewJob:
    values: dict[str, Any] = dict(function="f", context="default", arguments={"n": 1},
                                  file_path="f.py", class_name="f", artifact_sha1=None)
    return NewJob(**{**values, **overrides})


def stored(store: Store, job_id: str, column: str) -> Any:
    with store.engine.connect() as conn:
        return conn.execute(select(t.jobs.c[column]).where(t.jobs.c.id == job_id)).scalar()


@pytest.mark.parametrize("result", [None, 1, 2.5, "text", [1, "a"], {"big": 2**70},
                                    {"nested": {"x": [None, True]}}])
def test_json_values_read_back_as_written(store: Store, result: Any):
    job_id = store.create_job(new(arguments={"a": result})).id
    store.transition(job_id, JobStatus.STARTED, worker_id="w", start_time=1)
    ended = store.transition(job_id, JobStatus.FINISHED, result=result, end_time=2,
                             progress={"tasks": 3})
    read = store.get_job(job_id)
    assert ended == read
    assert (read.result, read.arguments, read.progress) == (result, {"a": result}, {"tasks": 3})
    assert type(read.result) is type(result)


def test_a_queued_jobs_result_is_sql_null_and_a_written_none_json_null(store: Store):
    queued = store.create_job(new()).id
    assert stored(store, queued, "result") is None
    store.transition(queued, JobStatus.CANCELLED, end_time=1, progress=None)
    with store.engine.connect() as conn:
        (text,) = conn.exec_driver_sql(
            "SELECT CAST(progress AS TEXT) FROM jobs WHERE id = "
            + ("?" if conn.dialect.name == "sqlite" else "%(id)s"),
            (queued,) if conn.dialect.name == "sqlite" else {"id": queued}).one()
    assert text == "null"


def test_raw_values_are_the_stored_json_text(store: Store):
    job_id = store.create_job(new(arguments={"n": 1})).id
    raw = store.get_job(job_id, raw_values=True)
    assert raw.arguments == RawJSON('{"n":1}') and raw.result is None
    assert raw.status is JobStatus.QUEUED


def test_inserts_of_both_shapes_in_one_call(store: Store):
    cached = new(status=JobStatus.FINISHED, result={"r": 1}, cached_from="c" * 36)
    with writing(store.engine) as conn:
        queued, done = store.insert_jobs(conn, [new(external_id="e"), cached])
    assert store.get_job(queued.id) == queued and queued.external_id == "e"
    assert store.get_job(done.id) == done and done.result == {"r": 1}
    assert done.end_time == done.create_time and queued.end_time is None


def test_a_duplicate_insert_raises_sqlalchemys_integrity_error(store: Store):
    job = new(idempotency_key="k")
    store.create_job(job)
    with pytest.raises(IntegrityError):
        store.create_job(new(idempotency_key="k"))
    with pytest.raises(IntegrityError):
        store.create_job(job)  # the same id
    store.create_job(new())  # the connection is usable again


def test_logs_are_stored_only_with_the_move(store: Store):
    job_id = store.create_job(new()).id
    lines = [LogLine(1, "INFO", "one"), LogLine(2, "WARN", "two")]
    store.transition(job_id, JobStatus.STARTED, logs=lines[:1])
    store.transition(job_id, JobStatus.FINISHED, logs=lines[1:])
    with pytest.raises(IllegalTransition):
        store.transition(job_id, JobStatus.FAILED, logs=[LogLine(3, "INFO", "never")])
    assert store.job_logs(job_id) == lines


def test_inserts_join_the_callers_transaction_as_sqlalchemy_would(store: Store):
    with store.engine.connect() as conn:
        (kept,) = store.insert_jobs(conn, [new()])
        conn.commit()
        (dropped,) = store.insert_jobs(conn, [new()])
        conn.rollback()
    assert store.get_job(kept.id) == kept
    with pytest.raises(NotFound):
        store.get_job(dropped.id)
