"""Streaming jobs end to end (docs/streaming.md), against one real `sparkgate serve`: a function
that returns a StreamingQuery makes a job that stays `started` while the query runs, shows its
progress over the API and SSE, stops when cancelled, fails with the query, and leaves its
context's other slots free."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from playwright.sync_api import expect

from tests.browser import chromium, collect_problems
from tests.server_process import Server, running_server, wait_until

STREAM_FUNCTIONS = "streaming_behaviours.py"


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[Server]:
    with running_server(tmp_path_factory.mktemp("serve-streaming")) as server:
        for name in ("failing_stream", "orphan_stream", "finite_stream", "active_streams",
                     "undeclared_stream"):
            server.deploy(STREAM_FUNCTIONS, name, name)
        server.deploy("streaming_mist.py", "mist_stream", "mist_stream")
        yield server


class EventReader:
    """An SSE stream (`GET /v2/api/events`) read on a thread of its own."""

    def __init__(self, server: Server, **filters: str) -> None:
        self.response = requests.get(server.api("/events"), params=filters, stream=True,
                                     timeout=120)
        assert self.response.status_code == 200, self.response.text
        self.events: list[tuple[str, dict]] = []
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        name = None
        try:
            for line in self.response.iter_lines(decode_unicode=True):
                if line.startswith("event: "):
                    name = line.removeprefix("event: ")
                elif line.startswith("data: ") and name is not None:
                    with self._lock:
                        self.events.append((name, json.loads(line.removeprefix("data: "))))
        except Exception:  # closed by the test, whichever way requests says it
            pass

    def of(self, name: str, job_id: str) -> list[dict]:
        with self._lock:
            return [data for event, data in self.events if event == name
                    and data.get("id") == job_id]

    def close(self) -> None:
        self.response.close()


def streaming(job: dict) -> dict:
    return (job.get("progress") or {}).get("streaming") or {}


def streamed(server: Server, job_id: str, key: str, at_least: int,
             timeout_s: float = 60) -> dict:
    """The job, once its stream's progress has ``key`` at ``at_least`` (or it ended)."""
    def seen() -> dict | None:
        job = server.job(job_id)
        done = (job["status"] not in ("queued", "started")
                or streaming(job).get(key, -1) >= at_least)
        return job if done else None
    return wait_until(seen, timeout_s, f"{key} {at_least} in the progress of job {job_id}")


def logs(server: Server, job_id: str) -> str:
    return server.get(f"/jobs/{job_id}/logs").text


def window_rows(folder: Path) -> list[dict]:
    return [json.loads(line) for part in sorted(folder.glob("part-*.json"))
            for line in part.read_text().splitlines() if line]


def committed_batches(folder: Path) -> list[str]:
    """The batches the file sink committed (its _spark_metadata log, one file per batch)."""
    return sorted(p.name.removesuffix(".compact") for p in (folder / "_spark_metadata").iterdir()
                  if p.name.removesuffix(".compact").isdigit())


def run_sync(server: Server, function: str, arguments: dict, **params: str) -> object:
    answer = server.post(f"/functions/{function}/jobs", params={"force": "true", **params},
                         json=arguments).json()
    assert answer["success"] is True, answer
    return answer["payload"]


def test_a_stream_runs_for_batches_shows_its_progress_and_stops_when_cancelled(
        server: Server, tmp_path: Path) -> None:
    events = EventReader(server, function="rate_windows")
    output = tmp_path / "windows"
    try:
        job_id = server.submit("rate_windows", {"rows_per_second": 20, "output": str(output)})
        job = streamed(server, job_id, "batchId", 3)
        assert job["status"] == "started", job

        # The job's progress: the query's, under "streaming", beside the Spark counts.
        progress = streaming(job)
        assert progress["kind"] == "query" and progress["active"] is True
        assert progress["name"] == "rate_windows_files"
        assert progress["numInputRows"] >= 0 and progress["inputRowsPerSecond"] is not None
        assert progress["processedRowsPerSecond"] is not None
        (source,) = progress["sources"]
        assert source["description"].startswith("RateStreamV2")
        assert isinstance(source["endOffset"], int) and source["endOffset"] > 0
        assert "percent" in job["progress"]

        # ... and as `progress` events, batch after batch.
        batch_ids = wait_until(
            lambda: len(ids := sorted({streaming(e)["batchId"]
                                       for e in events.of("progress", job_id)
                                       if "batchId" in streaming(e)})) >= 2 and ids,
            30, "progress events of two batches")
        assert batch_ids == sorted(batch_ids)

        # The stream holds one of the context's two slots: a job beside it runs at once.
        began = time.monotonic()
        assert run_sync(server, "active_streams", {}) == ["rate_windows_files"]
        assert time.monotonic() - began < 30

        # The dashboard shows the stream's batches, on the job's page and in the jobs list.
        with chromium() as browser:
            page = browser.new_page(base_url=server.url)
            problems = collect_problems(page)
            page.goto(f"/ui/#/jobs/{job_id}")
            stream = page.locator("#stream")
            expect(stream.locator('[data-stream="active"]')).to_contain_text("batch ")
            expect(stream).to_contain_text("RateStreamV2")
            expect(stream).to_contain_text("rows/s")
            page.goto("/ui/#/jobs")
            expect(page.locator(f'tr[data-job-id="{job_id}"] [data-cell="progress"]')
                   ).to_contain_text("streaming · batch ")
            page.close()
            assert not problems, problems

        # Closed windows reach the sink the test reads.
        rows = wait_until(lambda: window_rows(output), 30, "a window written to the sink")
        assert {"start", "end", "rows", "total"} <= set(rows[0])

        cancelling = server.delete(f"/jobs/{job_id}")
        assert cancelling.status_code == 200, cancelling.text
        assert cancelling.json()["status"] == "cancelling"
        job = server.wait_for_job(job_id, {"cancelled", "failed", "finished"}, timeout_s=30)
        assert job["status"] == "cancelled", job
        assert streaming(job)["active"] is False

        # The query is really stopped: no longer active, and its sink commits no more batches.
        # (Not its part files: a task under way at the stop may still finish writing one, which
        # no batch commits.)
        assert run_sync(server, "active_streams", {}) == []
        committed = committed_batches(output)
        time.sleep(3)
        assert committed_batches(output) == committed

        text = logs(server, job_id)
        assert "streaming query 'rate_windows_files'" in text
        assert "started; the job runs until it stops" in text
        assert "stopped" in text and "cancelled after" in text
        assert any(e.get("event") == "cancelled" for e in
                   [data for name, data in events.events if data.get("id") == job_id])
    finally:
        events.close()


def test_a_query_that_throws_fails_its_job_with_sparks_error(server: Server) -> None:
    job_id = server.submit("failing_stream", {"fail_at": 2})
    job = server.wait_for_job(job_id, {"finished", "failed", "cancelled"}, timeout_s=60)
    assert job["status"] == "failed", job
    error = job["jobResult"]
    assert error.startswith("pyspark.errors.exceptions.captured.StreamingQueryException: "
                            "[STREAM_FAILED]"), error[:300]
    assert "ValueError: boom in batch 2" in error
    assert streaming(job)["active"] is False
    assert "streaming query 'failing_stream'" in logs(server, job_id)
    assert run_sync(server, "active_streams", {}) == []


def test_a_stream_that_ends_by_itself_finishes_its_job_with_its_last_progress(
        server: Server) -> None:
    job_id = server.submit("finite_stream", {"rows": 30})
    job = server.wait_for_job(job_id, {"finished", "failed", "cancelled"}, timeout_s=60)
    assert job["status"] == "finished", job
    result = job["jobResult"]
    assert result["kind"] == "query" and result["name"] == "finite_stream"
    assert result["active"] is False
    assert "ended by itself" in logs(server, job_id)


def test_a_query_started_and_not_returned_is_stopped_with_its_job(server: Server) -> None:
    assert run_sync(server, "orphan_stream", {}) == {"started": "orphan_stream"}
    assert run_sync(server, "active_streams", {}) == []


def test_performtimeout_bounds_a_stream_only_when_the_submission_sets_it(
        server: Server) -> None:
    server.context("bounded", maxJobs=3, performTimeout="4s")
    # Declared streaming (-> StreamingQuery): no performTimeout but the submission's, even
    # while its function starts the query (seconds, on a cold worker).
    declared = server.submit("rate_windows", {"table": "declared"}, context="bounded")
    bounded = server.submit("rate_windows", {"table": "bounded"}, context="bounded",
                            performTimeout="8s")
    assert streamed(server, declared, "batchId", 0)["status"] == "started"
    # Not declared: the context's default bounds its function until it returns the query.
    undeclared = server.submit("undeclared_stream", {}, context="bounded")
    try:
        assert streamed(server, undeclared, "batchId", 0)["status"] == "started"
        job = server.wait_for_job(bounded, {"finished", "failed", "cancelled"}, timeout_s=60)
        assert job["status"] == "failed", job
        assert job["jobResult"].startswith("performTimeout exceeded"), job["jobResult"]
        assert job["endTime"] - job["startTime"] >= 8000
        wait_until(lambda: server.job(undeclared)["startTime"] < time.time() * 1000 - 6000,
                   30, "the undeclared stream past its context's performTimeout")
        for job_id in (declared, undeclared):
            job = server.job(job_id)
            assert job["status"] == "started", (job, logs(server, job_id))
        assert "does not bound a stream" in logs(server, undeclared)
        assert "does not bound a stream" not in logs(server, declared)
        latest = run_sync(server, "rate_windows_latest", {"table": "declared"},
                          context="bounded")
        assert isinstance(latest, list)
    finally:
        for job_id in (declared, undeclared):
            server.delete(f"/jobs/{job_id}")
    for job_id in (declared, undeclared):
        job = server.wait_for_job(job_id, {"finished", "failed", "cancelled"}, timeout_s=30)
        assert job["status"] == "cancelled", job


def test_a_mist_streaming_context_function_streams_until_cancelled(server: Server) -> None:
    info = server.get("/functions/mist_stream").json()
    assert info["execute"] == {"per_batch": {"type": "MOption", "args": [{"type": "MInt"}]}}
    job_id = server.submit("mist_stream", {"per_batch": 30})
    job = streamed(server, job_id, "batches", 2)
    assert job["status"] == "started", job
    progress = streaming(job)
    assert progress["kind"] == "dstream" and progress["batchDurationMs"] == 1000
    assert progress["active"] is True and progress["processingDelayMs"] >= 0
    server.delete(f"/jobs/{job_id}")
    job = server.wait_for_job(job_id, {"cancelled", "failed", "finished"}, timeout_s=30)
    assert job["status"] == "cancelled", job
    # A second one gets the worker's (one) StreamingContext now that the first let it go.
    again = server.submit("mist_stream", {})
    assert streamed(server, again, "batches", 1)["status"] == "started"
    server.delete(f"/jobs/{again}")
    assert server.wait_for_job(again, {"cancelled", "failed", "finished"})["status"] == (
        "cancelled")


def test_streaming_functions_need_a_spark_context(server: Server) -> None:
    server.context("plain_python", engine="python")
    refused = server.post("/functions/mist_stream/jobs", params={"context": "plain_python"},
                          json={})
    assert refused.status_code == 400, refused.text
    assert "StreamingContext" in refused.json()["error"]["message"]
