"""The engine boundary (workers/engines/): every engine a context may name is a module with a
``start``, and the python engine's interruption of a running job's thread."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from sparkgate.jobs.contexts import Context
from sparkgate.jobs.settings import ENGINES, ContextDefaults
from sparkgate.workers.calling import in_function
from sparkgate.workers.engines import starter
from sparkgate.workers.engines.python import JobInterrupted, PythonEngine


@pytest.mark.parametrize("name", ENGINES)
def test_every_engine_a_context_may_name_is_a_module_with_a_start(name: str):
    assert callable(starter(name))


def test_a_python_worker_never_imports_pyspark():
    code = ("import sys, sparkgate.workers.process as p, sparkgate.workers.engines.python; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('pyspark', 'py4j')))")
    done = subprocess.run([sys.executable, "-P", "-c", code], capture_output=True, text=True,
                          check=True, timeout=60)
    assert done.stdout.strip() == "[]"


def python_engine(tmp_path: Path) -> PythonEngine:
    context = Context.from_defaults("scoring", ContextDefaults(engine="python"))
    started = starter("python")(context, tmp_path)
    assert isinstance(started, PythonEngine)
    return started


def test_a_cancel_interrupts_the_job_s_thread_and_nothing_else(tmp_path: Path):
    engine = python_engine(tmp_path)
    inside, ended = threading.Event(), []

    def naps() -> None:
        inside.set()
        while True:
            time.sleep(0.01)

    def job() -> None:
        try:
            with engine.running("job-1", "naps", 0):
                in_function(naps)
        except JobInterrupted:
            ended.append("interrupted")

    thread = threading.Thread(target=job)
    thread.start()
    assert inside.wait(5)
    engine.cancel("some-other-job")  # not running here: nothing happens
    time.sleep(0.1)
    assert ended == []
    engine.cancel("job-1")
    thread.join(5)
    assert ended == ["interrupted"]
    engine.cancel("job-1")  # ended: nothing left to interrupt


def test_an_interruption_lands_only_in_the_function_never_in_sparkgates_own_code(
        tmp_path: Path):
    """Raised from outside, an exception lands wherever its thread is: in sparkgate's own code
    (claiming the job, recording its end) it could leave a lock held or an end unrecorded. So
    however often the watchdog cancels, nothing is raised while the job's thread is outside
    the function, before it is called or after it returned."""
    engine = python_engine(tmp_path)
    before, after, go_on = threading.Event(), threading.Event(), threading.Event()
    raised = []

    def bookkeeping(reached: threading.Event) -> None:  # Python code, as sparkgate's is
        reached.set()
        while not go_on.is_set():
            time.sleep(0.002)
        go_on.clear()

    def job() -> None:
        try:
            with engine.running("job-1", "quick", 0):
                bookkeeping(before)
                in_function(lambda: None)
                bookkeeping(after)
        except JobInterrupted:
            raised.append("interrupted")

    thread = threading.Thread(target=job)
    thread.start()
    for reached in (before, after):
        assert reached.wait(5)
        for _ in range(20):  # the watchdog's ticks
            engine.cancel("job-1")
            time.sleep(0.005)
        go_on.set()
    thread.join(5)
    assert raised == []


def test_a_thread_runs_on_after_its_job_whatever_was_cancelled(tmp_path: Path):
    engine = python_engine(tmp_path)
    with engine.running("job-1", "quick", 0):
        pass
    engine.cancel("job-1")
    time.sleep(0.05)  # an interruption, had one been sent, would land here


def test_a_spark_function_on_the_python_engine_fails_saying_why(tmp_path: Path):
    with pytest.raises(TypeError, match="engine 'python', which has no Spark"):
        python_engine(tmp_path).handle("session")
