"""``sparkgate run --local`` and ``sparkgate.testing``: a function run here exactly as deployed,
refused with the gateway's own messages.

The command runs in subprocesses, each its own JVM when the function takes Spark: two do (pi,
word_count, marked slow); refusals and plain functions start none. The ``sparkgate.testing``
tests share this process's one local SparkSession.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from sparkgate.jobs.errors import InvalidArguments, InvalidArtifact
from sparkgate.local import local_spark

# spark_session is a fixture, taken by name (a conftest.py may list sparkgate.testing in
# pytest_plugins instead; this module imports it first, which pytest_plugins would warn about).
from sparkgate.testing import run_function, spark_session  # noqa: F401
from tests.api_responses import error_of
from tests.conftest import EXAMPLES_DIR
from tests.test_api_jobs import API, deploy

REPO = EXAMPLES_DIR.parent
# What the gateway refuses for pi: a string for an integer, and an unknown argument.
BAD_PI_ARGUMENTS = {"samples": "lots", "sample": 3}


def run_local(*args: str) -> subprocess.CompletedProcess[str]:
    # -P, as a worker runs: the working folder is not importable, only the installed sparkgate.
    return subprocess.run([sys.executable, "-P", "-m", "sparkgate", "run", "--local", *args],
                          capture_output=True, text=True, timeout=240, cwd=REPO)


@pytest.fixture(scope="module")
def refused_pi() -> subprocess.CompletedProcess[str]:
    return run_local("examples/pi.py:pi", "--arg", "samples=lots", "--arg", "sample=3")


@pytest.mark.slow
def test_pi_prints_the_result_a_job_stores():
    done = run_local("examples/pi.py:pi", "--arg", "samples=1000", "--arg", "seed=7")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["samples"] == 1000 and 0 < result["inside"] <= 1000
    assert result["pi"] == 4 * result["inside"] / 1000


@pytest.mark.slow
def test_word_count_takes_args_json_and_arg_wins_over_it():
    done = run_local("examples/word_count.py:word_count",
                     "--args", '{"lines": ["b a", "b c b"], "top": 5}', "--arg", "top=1")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {
        "total_words": 5, "distinct_words": 3, "top": [{"word": "b", "count": 3}]}


async def test_bad_arguments_exit_2_with_the_gateways_message(client, refused_pi):
    await deploy(client, "pi", "pi.py")
    response = await client.post(f"{API}/functions/pi/jobs", json=BAD_PI_ARGUMENTS)
    error = await error_of(response, 400, "invalid_arguments")
    assert error["message"].startswith("2 invalid arguments: samples: expected integer")
    assert (refused_pi.returncode, refused_pi.stdout) == (2, "")
    assert refused_pi.stderr == f"Error: {error['message']}\n"


@pytest.mark.parametrize(("target", "message"), [
    ("examples/nope.py:pi", "Error: cannot read 'examples/nope.py': No such file or directory"),
    ("examples/pi.py:tau", "Error: pi.py has no top-level function 'tau' (its top-level "
                           "functions: pi)"),
    ("examples/pi.py", "Error: expected FILE.py:FUNCTION, got 'examples/pi.py'"),
])
def test_an_unknown_file_or_function_exits_2_saying_so(target: str, message: str):
    done = run_local(target)
    assert (done.returncode, done.stdout, done.stderr) == (2, "", message + "\n")


@pytest.mark.parametrize(("args", "message"), [
    (["--arg", "samples"], "Error: --arg expects NAME=VALUE, got 'samples'"),
    (["--args", "[1000]"], "Error: --args must be a JSON object of arguments, got '[1000]'"),
])
def test_malformed_arguments_exit_2(args: list[str], message: str):
    done = run_local("examples/pi.py:pi", *args)
    assert (done.returncode, done.stderr) == (2, message + "\n")


def test_a_plain_function_runs_without_a_jvm(tmp_path: Path):
    (tmp_path / "plain.py").write_text(
        "import sys\n\n\n"
        "def add(x: int, y: float = 0.5, label: str = 'sum') -> dict:\n"
        "    return {label: x + y, 'pyspark': 'pyspark' in sys.modules}\n")
    done = run_local(f"{tmp_path}/plain.py:add", "--arg", "x=2", "--arg", "label=total")
    assert (done.returncode, done.stderr) == (0, "")
    assert json.loads(done.stdout) == {"total": 2.5, "pyspark": False}


def test_models_work_on_a_machine_that_never_ran_serve(tmp_path: Path):
    """The model store of this machine's settings: here the embedded SQLite, which a local run
    creates and migrates as serve would."""
    model_user = str(REPO / "tests" / "functions" / "model_user.py")
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPARKGATE_")}

    def run_here(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-P", "-m", "sparkgate", "run", "--local", *args],
                              capture_output=True, text=True, timeout=120, cwd=tmp_path, env=env)

    trained = run_here(f"{model_user}:train", "--arg", "factor=6")
    assert trained.returncode == 0, trained.stderr
    assert (tmp_path / "sparkgate-data" / "sparkgate.db").is_file()
    scored = run_here(f"{model_user}:score", "--arg", "x=7")
    assert (scored.returncode, scored.stdout.strip()) == (0, "42"), scored.stderr


def test_a_failing_function_exits_1_with_the_jobs_error(tmp_path: Path):
    (tmp_path / "fails.py").write_text("def fails(n: int):\n    raise ValueError(f'no {n}')\n")
    done = run_local(f"{tmp_path}/fails.py:fails", "--arg", "n=3")
    assert (done.returncode, done.stdout) == (1, "")
    assert done.stderr.startswith("ValueError: no 3\n\nTraceback (most recent call last):\n")
    assert done.stderr.endswith("ValueError: no 3\n")


# -- sparkgate.testing -------------------------------------------------------------------------


def test_run_function_returns_the_stored_result():
    result = run_function(EXAMPLES_DIR / "word_count.py", "word_count",
                          {"text": "To be, or not to be", "top": 2})
    assert result == {"total_words": 6, "distinct_words": 4,
                      "top": [{"word": "be", "count": 2}, {"word": "to", "count": 2}]}


def test_run_function_raises_the_gateways_error(refused_pi):
    with pytest.raises(InvalidArguments) as raised:
        run_function(EXAMPLES_DIR / "pi.py", "pi", BAD_PI_ARGUMENTS)
    assert refused_pi.stderr == f"Error: {raised.value.message}\n"
    with pytest.raises(InvalidArtifact, match="has no top-level function 'tau'"):
        run_function(EXAMPLES_DIR / "pi.py", "tau")


def test_what_the_function_raises_comes_out_as_it_is():
    with pytest.raises(ValueError, match="give exactly one of 'text' or 'lines'"):
        run_function(EXAMPLES_DIR / "word_count.py", "word_count")


def test_a_file_is_imported_once_and_keeps_its_state(tmp_path: Path):
    counter = tmp_path / "counter.py"
    counter.write_text("CALLS = []\n\n\ndef count() -> int:\n"
                       "    CALLS.append(1)\n    return len(CALLS)\n")
    assert [run_function(counter, "count") for _ in range(2)] == [1, 2]
    counter.write_text(counter.read_text() + "\n")  # a new version: a new module, fresh state
    assert run_function(counter, "count") == 1


def test_spark_functions_get_the_spark_session_fixture(tmp_path: Path,
                                                       spark_session):  # noqa: F811
    (tmp_path / "session.py").write_text("def app(spark) -> str:\n"
                                         "    return spark.sparkContext.applicationId\n")
    assert spark_session is local_spark()
    assert run_function(tmp_path / "session.py", "app") == spark_session.sparkContext.applicationId
