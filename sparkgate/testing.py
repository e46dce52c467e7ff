"""Unit-testing functions exactly as they will run deployed, with pytest.

``run_function`` checks a file and its arguments with the gateway's code and runs the function
with the worker's (``sparkgate/local.py``)::

    import pytest
    from sparkgate.jobs.errors import InvalidArguments
    from sparkgate.testing import run_function

    def test_pi():
        assert run_function("jobs/pi.py", "pi", {"samples": 1000})["samples"] == 1000

    def test_pi_refuses_text():
        with pytest.raises(InvalidArguments, match='samples: expected integer, got string'):
            run_function("jobs/pi.py", "pi", {"samples": "many"})

A function that takes a Spark handle gets this process's local session, started by the first
such test and shared by all. The ``spark_session`` fixture hands that same session to tests that
build DataFrames themselves: add ``pytest_plugins = ["sparkgate.testing"]`` to a conftest.py.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from sparkgate.local import local_runner, local_spark

if TYPE_CHECKING:
    from pyspark.sql import SparkSession


def run_function(path: str | os.PathLike[str], function: str,
                 arguments: dict[str, Any] | None = None) -> Any:
    """The result ``function`` of the file at ``path`` gives for ``arguments``, as a job would
    store it (JSON-ready: Rows as dicts, dates as strings).

    Raises what the gateway would answer 400 with, before any job: InvalidArtifact (no such
    function, a hint sparkgate cannot check) or InvalidArguments (same message as the API).
    What the function raises, and a result no job could store (ResultNotSerializable,
    ResultTooLarge), comes out as it is. The file is imported once per content, as a worker
    does: its module-level state lives on from test to test.
    """
    return local_runner().run(Path(path), function, {} if arguments is None else arguments)


@pytest.fixture(scope="session")
def spark_session() -> SparkSession:
    """The local SparkSession that ``run_function`` gives Spark functions."""
    return local_spark()
