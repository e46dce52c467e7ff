"""What a function returns becomes JSON, or the job fails saying exactly why."""

from __future__ import annotations

import datetime
import decimal
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from pyspark.sql import Row

from sparkgate.jobs.functions import Function
from sparkgate.jobs.logs.capture import JobLogCapture
from sparkgate.jobs.signatures.reading import inspect_source
from sparkgate.jobs.state import JobStatus
from sparkgate.jobs.submission import SubmitRequest, submit
from sparkgate.workers.artifacts import FunctionLoader
from sparkgate.workers.engines.spark import SparkEngine
from sparkgate.workers.execution import JobRunner
from sparkgate.workers.progress import ProgressTracker
from sparkgate.workers.results import (
    ResultNotSerializable,
    ResultTooLarge,
    checked_result,
    to_json_value,
)
from sparkgate.workers.watchdog import Watchdog


def test_common_python_and_spark_values_convert():
    value = {
        "row": Row(a=1, b=Row(c="x")),
        "np": [np.int64(3), np.float32(0.5), np.array([1, 2, 3]), np.bool_(True)],
        "dec": decimal.Decimal("1.25"),
        "when": datetime.date(2026, 11, 25),
        "tuple": (1, 2),
        3: "int key",
    }
    converted = to_json_value(value)
    assert converted == {
        "row": {"a": 1, "b": {"c": "x"}},
        "np": [3, 0.5, [1, 2, 3], True],
        "dec": 1.25,
        "when": "2026-11-25",
        "tuple": [1, 2],
        "3": "int key",
    }
    json.dumps(converted, allow_nan=False)


@pytest.mark.parametrize(("value", "message"), [
    ({"x": [object()]}, "result.x[0] is a builtins.object"),
    ({"x": float("nan")}, "result.x is nan"),
    ({(1, 2): 1}, "result has a key of type tuple"),
])
def test_unconvertible_values_name_the_place(value, message):
    with pytest.raises(ResultNotSerializable, match=message.replace("[", r"\[").replace(
            "]", r"\]")):
        to_json_value(value)


# ---------------------------------------------------------------------------------------------
# The size limit (max_result_bytes)


def test_a_result_at_the_limit_passes_and_one_byte_more_fails_with_both_sizes():
    value = {"text": "x" * 88}  # {"text": "xxx..."} is 100 bytes of JSON
    assert checked_result(value, 100) == value
    with pytest.raises(ResultTooLarge) as caught:
        checked_result(value, 99)
    assert str(caught.value).startswith(
        "result is 100 bytes of JSON; the limit is max_result_bytes = 99:")


def test_the_size_is_that_of_the_converted_json():
    # Non-ASCII text is stored \u-escaped: 6 bytes a character, counted as such.
    assert checked_result({"t": "é" * 10}, 69) == {"t": "é" * 10}
    with pytest.raises(ResultTooLarge, match="result is 70 bytes"):
        checked_result({"t": "é" * 10 + "a"}, 69)
    with pytest.raises(ResultTooLarge, match="result is 20,971,524 bytes of JSON; the limit is "
                                             "max_result_bytes = 16,777,216"):
        checked_result(["y" * (20 * 1024 * 1024)], 16 * 1024 * 1024)


SIZED = b"""
from pyspark.sql import SparkSession


def sized(spark: SparkSession, n: int) -> list:
    # The rows come from Spark: the limit applies to what a real job collects.
    return [row.id for row in spark.range(n).collect()]
"""


@pytest.fixture
def small_limit_runner(store, catalog, queue, redis, spark, tmp_path: Path
                       ) -> Iterator[JobRunner]:
    """A worker's job runner, in this process, whose results may be 1,000 bytes of JSON."""
    sc = spark.sparkContext
    engine = SparkEngine(spark)
    capture = JobLogCapture(store.append_logs, flush_interval_s=0.1)
    watchdog = Watchdog(engine.cancel, lambda job_id, why: None, cancel_grace_s=30)
    progress = ProgressTracker(sc, store.set_progress, interval_s=0.1)
    yield JobRunner(store=store, queue=queue, redis=redis,
                    loader=FunctionLoader(catalog, tmp_path / "cache"), engine=engine,
                    worker_id="results-worker", capture=capture, watchdog=watchdog,
                    progress=progress, max_result_bytes=1000)
    watchdog.close()
    progress.close()
    capture.close()


def run_sized(runner: JobRunner, catalog, store, queue, n: int):
    job = submit(catalog, store, queue, SubmitRequest(function="sized", arguments={"n": n}))
    popped = queue.pop("default", 1)
    assert popped == job.id
    runner.run(popped, 0)
    return store.get_job(job.id)


def test_a_too_large_result_fails_its_job_and_the_worker_runs_the_next(
        small_limit_runner, catalog, store, queue):
    catalog.put_artifact("sized.py", SIZED, replace_existing=True)
    catalog.create_function(Function(
        name="sized", path="sized.py", class_name="sized", default_context="default",
        signature=inspect_source(SIZED.decode(), "sized", "sized.py").to_dict()))

    # [0, 1, ..., 299] is 1,390 bytes of JSON.
    failed = run_sized(small_limit_runner, catalog, store, queue, 300)
    assert failed.status is JobStatus.FAILED
    assert failed.result is None
    assert failed.error.startswith("sparkgate.workers.results.ResultTooLarge: result is 1,390 "
                                   "bytes of JSON; the limit is max_result_bytes = 1,000")
    logs = [line.message for line in store.job_logs(failed.id)]
    assert any("result is 1,390 bytes" in line for line in logs)

    finished = run_sized(small_limit_runner, catalog, store, queue, 10)
    assert finished.status is JobStatus.FINISHED
    assert finished.result == list(range(10))
