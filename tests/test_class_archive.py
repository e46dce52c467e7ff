"""The Spark class archive (workers/class_archive.py): built once in the background when the
first Spark worker is up, then mapped by the JVM of every Spark worker started after, and of
local runs; one builder per machine at a time, and a build cut short leaves nothing behind."""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from sparkgate.jobs.settings import Settings
from sparkgate.workers.class_archive import ArchiveBuilder, installation_key, ready
from sparkgate.workers.engines.spark import check_java
from tests.conftest import FUNCTIONS_DIR
from tests.server_process import machine_class_archive, running_server, wait_until

pytestmark = pytest.mark.slow


def _jvm_of(worker: dict) -> psutil.Process:
    pid = int(worker["address"].rsplit(":", 1)[1])
    return next(p for p in psutil.Process(pid).children(recursive=True) if p.name() == "java")


def _maps(process: psutil.Process, path: Path) -> bool:
    return str(path) in Path(f"/proc/{process.pid}/maps").read_text()


def test_workers_started_after_the_build_map_the_archive(tmp_path: Path):
    archives = tmp_path / "archives"
    with running_server(tmp_path, {"SPARKGATE_SPARK_CLASS_ARCHIVE_DIR": str(archives)}) as server:
        archive = archives / (installation_key(check_java()) + ".jsa")
        first = wait_until(lambda: server.workers("default"), 60, "the default worker")[0]
        wait_until(archive.is_file, 300, "the class archive is built")
        assert "Spark class archive built" in server.log.read_text()
        assert not list(archives.glob("*.partial"))
        # The build waited for the first worker to be up: that one read its classes from the
        # jars.
        assert not _maps(_jvm_of(first), archive)

        server.context("archived", precreated=True)
        later = wait_until(lambda: server.workers("archived"), 120, "the next worker")[0]
        assert _maps(_jvm_of(later), archive)
        job = server.wait_for_job(server.submit("pi", {"samples": 1000}, context="archived"),
                                  {"finished", "failed"})
        assert job["status"] == "finished" and 2 < job["jobResult"]["pi"] < 4.5
    # Nothing of the build is left running.
    assert not [p for p in psutil.process_iter(["cmdline"])
                if any("ArchiveClassesAtExit" in arg for arg in p.info["cmdline"] or [])]


def test_one_builder_at_a_time_and_a_stopped_build_leaves_nothing(tmp_path: Path):
    key = installation_key(check_java())
    first, second = ArchiveBuilder(tmp_path, tmp_path), ArchiveBuilder(tmp_path, tmp_path)
    first.wanted(check_java)
    second.wanted(check_java)  # the lock is taken: this one builds nothing
    builds = [b for b in (first._build, second._build) if b is not None]
    assert len(builds) == 1 and builds[0] is first._build
    process = psutil.Process(first._build.process.pid)
    time.sleep(3)  # the JVM is loading classes
    first.stop()
    assert not process.is_running() or process.status() == psutil.STATUS_ZOMBIE
    assert not list(tmp_path.glob("*.partial")) and not (tmp_path / f"{key}.jsa").exists()
    with (tmp_path / f"{key}.lock").open("w") as lock:  # released
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)


def test_a_built_archive_is_not_built_again(tmp_path: Path):
    (tmp_path / f"{installation_key(check_java())}.jsa").write_bytes(b"an archive")
    builder = ArchiveBuilder(tmp_path, tmp_path)
    builder.wanted(check_java)
    assert builder._build is None


@pytest.mark.parametrize("setting", ["default", "off"])
def test_a_local_run_maps_the_machine_s_archive_unless_turned_off(setting: str):
    machine_class_archive()
    archive = ready(Settings.spark_class_archive_dir, check_java())
    assert archive is not None
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPARKGATE_")}
    if setting == "off":
        env["SPARKGATE_SPARK_CLASS_ARCHIVE_DIR"] = ""
    run = subprocess.run([sys.executable, "-P", "-m", "sparkgate", "run", "--local",
                          f"{FUNCTIONS_DIR / 'behaviours.py'}:class_archives"],
                         capture_output=True, text=True, timeout=240, env=env)
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout) == ([str(archive)] if setting == "default" else []), run.stderr
