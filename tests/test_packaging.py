"""What `pip install` puts on a user's machine: one package, sparkgate, and nothing that can
collide with the user's own modules (a jobs.py, a workers/ folder, an artifact named jobs)."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.server_process import Server, running_server
from tests.zips import make_zip

REPO = Path(__file__).resolve().parent.parent
# The repository's folders and where setup.cfg's package_dir maps them in the wheel.
MAPPED = {"sparkgate": "sparkgate", "gateway": "sparkgate/gateway", "jobs": "sparkgate/jobs",
          "workers": "sparkgate/workers", "migrations": "sparkgate/migrations",
          "examples": "sparkgate/examples"}
# A user's own modules that used to be shadowed by (or shadow) sparkgate's: importing any of
# them in sparkgate's processes stops the process and says which one it was.
USERS_OWN = ("jobs.py", "workers.py", "gateway/__init__.py", "migrations.py", "examples.py",
             "sparkgate.py")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> list[str]:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps",
                    "-q", "-w", str(out), str(REPO)], check=True, capture_output=True)
    (built,) = out.glob("sparkgate-*.whl")
    with zipfile.ZipFile(built) as archive:
        return archive.namelist()


def test_the_wheel_holds_nothing_outside_sparkgate(wheel: list[str]):
    outside = [n for n in wheel
               if not n.startswith("sparkgate/") and not n.split("/")[0].endswith(".dist-info")]
    assert outside == []
    assert any(n.startswith("sparkgate/jobs/") for n in wheel)


def test_every_module_and_data_file_of_the_repository_is_in_the_wheel(wheel: list[str]):
    """A folder added without its setup.cfg entry would install without it."""
    expected = set()
    for folder, mapped in MAPPED.items():
        for path in (REPO / folder).rglob("*"):
            relative = path.relative_to(REPO / folder)
            if (path.is_dir() or "__pycache__" in relative.parts
                    or relative.parts[0] == "packages"):  # examples/packages: zips' sources
                continue
            if path.suffix in {".py", ".mako", ".html", ".js", ".css", ".svg", ".json"}:
                expected.add(f"{mapped}/{relative.as_posix()}")
    missing = sorted(expected - set(wheel))
    assert missing == []
    assert "sparkgate/gateway/static/ui/index.html" in wheel
    assert "sparkgate/migrations/script.py.mako" in wheel


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[Server]:
    """`sparkgate serve` started from a project folder that holds modules named as
    sparkgate's parts used to be."""
    workdir = tmp_path_factory.mktemp("users-project")
    for name in USERS_OWN:
        path = workdir / name
        path.parent.mkdir(exist_ok=True)
        path.write_text(f"raise SystemExit('the user\\'s own {name} was imported')\n")
    with running_server(workdir) as server:
        yield server


@pytest.mark.slow
def test_serve_from_a_folder_with_its_own_jobs_and_workers_modules_runs_pi(server: Server):
    answer = server.post("/functions/pi/jobs", params={"force": "true"},
                         json={"samples": 20000}).json()
    assert answer["success"] is True, answer
    assert 2.9 < answer["payload"]["pi"] < 3.4
    assert "was imported" not in server.log.read_text()


@pytest.mark.slow
def test_an_artifact_may_bring_modules_named_jobs_and_workers(server: Server):
    package = make_zip({
        "jobs/__init__.py": b"",
        "jobs/stats.py": (b"from workers import double\n\n\n"
                          b"def total(spark, values: list[float]) -> float:\n"
                          b"    return double(sum(values))\n"),
        "workers.py": b"def double(x: float) -> float:\n    return 2 * x\n",
    })
    upload = server.post("/artifacts", files={"file": ("mine.zip", package)})
    assert upload.status_code == 200, upload.text
    created = server.post("/functions", json={"name": "total", "path": "mine.zip",
                                              "className": "jobs.stats.total"})
    assert created.status_code == 200, created.text
    answer = server.post("/functions/total/jobs", params={"force": "true"},
                         json={"values": [1.5, 2.5]}).json()
    assert answer == {"success": True, "payload": 8.0, "errors": []}
