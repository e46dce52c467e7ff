"""Package artifacts as a user deploys them: `sparkgate serve` as a real process, a worker with
real Spark running functions from a .zip and a .whl of one package, two versions side by side.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.server_process import Server, running_server
from tests.zips import EXAMPLE_PACKAGES, as_wheel, package_zip

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[Server]:
    with running_server(tmp_path_factory.mktemp("serve-packages")) as server:
        yield server


def upload(server: Server, name: str, content: bytes) -> str:
    response = server.post("/artifacts", files={"file": (name, content)},
                           params={"force": "true"})
    assert response.status_code == 200, response.text
    assert response.text == name
    return server.get(f"/artifacts/{name}/sha").text


def create(server: Server, name: str, path: str, class_name: str) -> dict:
    response = server.post("/functions", json={"name": name, "path": path,
                                               "className": class_name})
    assert response.status_code == 200, response.text
    return response.json()


def run(server: Server, function: str, arguments: dict) -> dict:
    answer = server.post(f"/functions/{function}/jobs", params={"force": "true"},
                         json=arguments).json()
    assert answer["success"] is True, answer
    return answer["payload"]


def wheel_v2() -> bytes:
    files = {p.relative_to(EXAMPLE_PACKAGES).as_posix(): p.read_bytes()
             for p in EXAMPLE_PACKAGES.rglob("*.py") if "__pycache__" not in p.parts}
    files["orders/report.py"] = files["orders/report.py"].replace(b'VERSION = "1"',
                                                                  b'VERSION = "2"')
    return as_wheel(files, "orders", "2.0")


def test_a_zip_package_function_runs_and_a_wheel_of_the_next_version_runs_beside_it(
        server: Server):
    zip_sha = upload(server, "orders.zip", package_zip())
    info = create(server, "orders_summary", "orders.zip", "orders.report.summary")
    assert info["execute"]["amounts"] == {"type": "MList", "args": [{"type": "MDouble"}]}
    assert info["className"] == "orders.report.summary"

    v1 = run(server, "orders_summary", {"amounts": [10, 20.5, 3], "top": 2})
    assert v1 == {"orders": 3, "total": "33.50 EUR", "largest": ["20.50 EUR", "10.00 EUR"],
                  "version": "1"}

    # Version 2, as a wheel, named through the __init__'s re-export; the same worker runs it.
    wheel_sha = upload(server, "orders-2.0-py3-none-any.whl", wheel_v2())
    create(server, "orders_summary_v2", "orders-2.0-py3-none-any.whl", "orders.summary")
    v2 = run(server, "orders_summary_v2", {"amounts": [1], "currency": "USD"})
    assert v2 == {"orders": 1, "total": "1.00 USD", "largest": ["1.00 USD"], "version": "2"}
    # ... and version 1 still runs version 1's code.
    assert run(server, "orders_summary", {"amounts": [2]})["version"] == "1"

    cache = server.data_dir / "artifact-cache"
    for sha in (zip_sha, wheel_sha):
        assert (cache / sha / "orders" / "report.py").is_file()
    assert not [p for p in cache.iterdir() if p.name.startswith(".")]  # no temp folder left

    jobs = server.get("/functions/orders_summary/jobs").json()
    assert {j["params"]["filePath"] for j in jobs} == {"orders.zip"}
    assert {j["params"]["className"] for j in jobs} == {"orders.report.summary"}


def test_a_bad_class_name_in_a_package_is_refused_with_what_to_write(server: Server):
    upload(server, "orders.zip", package_zip())
    response = server.post("/functions", json={"name": "bad", "path": "orders.zip",
                                               "className": "summary"})
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid_artifact"
    assert "module.function" in error["message"]
