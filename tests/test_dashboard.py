"""The dashboard (``/ui``) in a real headless Chromium (Debian's, driven by Playwright) against a
real ``sparkgate serve`` with workers: running a function from its form, following a job to its
result, errors with their traceback, live logs, cancel, filters and pagination, validation
messages at their fields, the overview's charts, contexts and workers (state, stop).

Each page is saved as a screenshot under ``test-artifacts/screenshots/``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from playwright.sync_api import Browser, Page, expect

from tests.browser import SCREENSHOTS, UI_TIMEOUT_MS, checked_page, chromium, collect_problems
from tests.conftest import TEST_SPARK_CONF
from tests.server_process import Server, create_key, running_server, wait_until

pytestmark = pytest.mark.slow

STATIC = Path(__file__).resolve().parent.parent / "gateway" / "static" / "ui"


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[Server]:
    workdir = tmp_path_factory.mktemp("dashboard")
    with running_server(workdir, {"SPARKGATE_CANCEL_GRACE_S": "2",
                                  "SPARKGATE_WORKER_STOP_GRACE_S": "10"}) as server:
        for name in ("fail", "chatty", "sleep_python", "slow_spark", "sum_range"):
            server.deploy("behaviours.py", name, name)
        server.deploy("typed.py", "typed", "typed")
        yield server


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as browser:
        yield browser


@pytest.fixture
def page(browser: Browser, server: Server) -> Iterator[Page]:
    with checked_page(browser, server.url) as page:
        yield page


def open_ui(page: Page, hash_route: str) -> None:
    page.goto(f"/ui/{hash_route}")
    expect(page.locator("main .page")).to_be_visible()


def screenshot(page: Page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.evaluate("window.scrollTo(0, 0)")
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def head_status(page: Page):
    return page.locator(".head-status .badge")


def job_row(page: Page, job_id: str):
    return page.locator(f'tr[data-job-id="{job_id}"]')


def without_the_event_stream(page: Page) -> None:
    """The events endpoint answers 404, as an older gateway would: the page polls."""
    page.route("**/v2/api/events*", lambda route: route.fulfill(
        status=404, content_type="application/json",
        body='{"error": {"code": "not_found", "message": "no such endpoint", "details": null}}'))


# ---------------------------------------------------------------------------------------------
# Serving


def test_the_dashboard_is_served_as_static_files_with_their_types(server: Server):
    index = requests.get(f"{server.url}/", headers={"Accept": "text/html"},
                         allow_redirects=False, timeout=10)
    assert index.status_code == 302 and index.headers["Location"] == "/ui/"
    api_index = requests.get(f"{server.url}/", timeout=10)
    assert api_index.json()["ui"] == "/ui/" and api_index.json()["api"] == "/v2/api"
    bare = requests.get(f"{server.url}/ui", allow_redirects=False, timeout=10)
    assert bare.status_code == 302 and bare.headers["Location"] == "/ui/"

    types = {".html": "text/html", ".js": "text/javascript", ".css": "text/css",
             ".svg": "image/svg+xml"}
    files = sorted(p.relative_to(STATIC).as_posix() for p in STATIC.rglob("*") if p.is_file())
    assert {"index.html", "app.js", "style.css", "pages/jobs.js"} <= set(files)
    for name in files:
        response = requests.get(f"{server.url}/ui/{name}", timeout=10)
        assert response.status_code == 200, name
        assert response.headers["Content-Type"].startswith(types[Path(name).suffix]), name
        assert response.content == (STATIC / name).read_bytes()
        assert response.headers["Cache-Control"] == "no-cache"
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert "default-src 'self'" in response.headers["Content-Security-Policy"]
        again = requests.get(f"{server.url}/ui/{name}", timeout=10,
                             headers={"If-None-Match": response.headers["ETag"]})
        assert again.status_code == 304 and not again.content

    index_page = requests.get(f"{server.url}/ui/", timeout=10)
    assert index_page.headers["Content-Type"].startswith("text/html")
    assert index_page.content == (STATIC / "index.html").read_bytes()
    # Nothing from elsewhere: no absolute URL in any file the page loads.
    for name in files:
        text = (STATIC / name).read_text()
        assert not re.search(r"""(src|href)=["']?(https?:)?//""", text), name
        assert "import(" not in text or "'./pages/" in text, name

    for bad in ("nope.js", "%2e%2e/routes/ui.py", "..%2Fapp.py", "pages/../../app.py",
                ".hidden.js", "app.py"):
        response = requests.get(f"{server.url}/ui/{bad}", timeout=10)
        assert response.status_code == 404, bad
        assert response.json()["error"]["code"] == "not_found"


# ---------------------------------------------------------------------------------------------
# Jobs


def test_a_function_run_from_its_form_is_followed_to_its_result(page: Page, server: Server):
    # A context without a worker yet: the job waits in the queue while one starts.
    server.context("dash")
    open_ui(page, "#/functions/sleep_python")
    form = page.locator('form[data-function="sleep_python"]')
    form.locator('[data-arg="seconds"]').fill("3")
    form.locator('select[name="context"]').select_option("dash")
    form.locator('input[name="externalId"]').fill("from-the-form")
    screenshot(page, "functions")
    form.get_by_role("button", name="Run").click()

    expect(page).to_have_url(re.compile(r"#/jobs/[0-9a-f-]{36}$"))
    job_id = page.url.rsplit("/", 1)[1]
    expect(head_status(page)).to_have_text("queued")
    expect(head_status(page)).to_have_text("started", timeout=120_000)
    expect(head_status(page)).to_have_text("finished", timeout=60_000)
    expect(page.locator("#result")).to_contain_text('"slept": 3')
    steps = page.locator(".timeline li")
    expect(steps).to_have_count(3)
    assert [s.get_attribute("data-step") for s in steps.all()] == ["queued", "started",
                                                                   "finished"]
    expect(page.locator('[data-fact="External id"]')).to_have_text("from-the-form")
    expect(page.locator('[data-fact="Context"]')).to_have_text("dash")
    job = server.job(job_id)
    assert job["status"] == "finished" and job["params"]["arguments"] == {"seconds": 3.0}
    assert job["context"] == "dash" and job["externalId"] == "from-the-form"
    screenshot(page, "job-finished")

    # Copy as curl says how to make the same request; run again makes a new job like it.
    page.get_by_role("button", name="Copy as curl").click()
    command = page.locator("#curl-command").inner_text()
    assert command.startswith("curl -sS -X POST ")
    assert f"{server.url}/v2/api/functions/sleep_python/jobs?context=dash" in command
    assert """-d '{"seconds":3}'""" in command
    page.get_by_role("button", name="Run again").click()
    expect(page).not_to_have_url(re.compile(job_id))
    again = page.url.rsplit("/", 1)[1]
    expect(head_status(page)).to_have_text("finished", timeout=60_000)
    assert server.job(again)["params"]["arguments"] == {"seconds": 3.0}
    assert server.job(again)["context"] == "dash"


def test_a_failed_job_shows_its_error_and_traceback(page: Page, server: Server):
    job_id = server.submit("fail", {"message": "the dashboard's boom"})
    server.wait_for_job(job_id, {"failed"})
    open_ui(page, f"#/jobs/{job_id}")
    expect(head_status(page)).to_have_text("failed")
    expect(page.locator("#error-message")).to_have_text("ValueError: the dashboard's boom")
    traceback = page.locator("#traceback")
    expect(traceback).to_contain_text("Traceback (most recent call last)")
    expect(traceback).to_contain_text("raise ValueError(message)")
    expect(page.locator("#result")).to_have_count(0)
    expect(page.locator("#logs")).to_contain_text("failed after")
    screenshot(page, "job-failed")


def test_a_job_with_megabytes_of_arguments_is_listed_and_shown(page: Page, server: Server):
    server.deploy("echo.py", "echo", "echo")
    values = list(range(300_000))  # about 2 MB of JSON
    job_id = server.submit("echo", {"value": values, "tag": "big"})
    listed = server.get("/jobs", params={"function": "echo"}).json()
    assert listed[0]["truncated"][0] == "params.arguments"
    open_ui(page, "#/jobs?function=echo")
    expect(job_row(page, job_id)).to_be_visible()
    job_row(page, job_id).get_by_role("link").first.click()
    expect(page.locator("#arguments")).to_contain_text('"tag": "big"', timeout=UI_TIMEOUT_MS)
    expect(page.locator("#arguments")).to_contain_text("299999")


def test_logs_arrive_while_the_job_runs(page: Page, server: Server):
    lines = 400
    job_id = server.submit("chatty", {"name": "talk", "lines": lines})
    open_ui(page, f"#/jobs/{job_id}")
    log_lines = page.locator("#logs .log-line")
    # Some lines are there while the job still runs...
    expect(head_status(page)).to_have_text("started", timeout=60_000)
    expect(log_lines.filter(has_text="talk print")).not_to_have_count(0)
    seen_while_running = log_lines.count()
    assert head_status(page).inner_text() == "started", "the job ended before its logs showed"
    # ...and every one of them once it has ended, each once.
    expect(head_status(page)).to_have_text("finished", timeout=60_000)
    expect(log_lines.filter(has_text="talk print")).to_have_count(lines)
    expect(log_lines.filter(has_text=f"talk log {lines - 1}")).to_have_count(1)
    expect(log_lines.filter(has_text="finished in")).to_have_count(1)
    total = 3 * lines + 2  # print, logging and stderr per line; "started on", "finished in"
    expect(log_lines).to_have_count(total)
    expect(page.locator("#log-count")).to_have_text(f"{total} lines")
    assert 0 < seen_while_running < total
    warn = log_lines.filter(has_text="talk log 0").first
    expect(warn.locator(".log-level")).to_have_text("WARN")
    screenshot(page, "job-logs")


def test_a_running_job_is_cancelled_from_the_jobs_table(page: Page, server: Server):
    job_id = server.submit("slow_spark", {"seconds": 120})
    server.wait_for_job(job_id, {"started"}, timeout_s=120)
    open_ui(page, "#/jobs?function=slow_spark")
    row = job_row(page, job_id)
    expect(row.locator(".badge")).to_have_text("started")
    cancel = row.locator('button[data-action="cancel"]')
    cancel.click()
    expect(cancel).to_have_text("Confirm cancel")
    assert server.job(job_id)["status"] == "started"  # one click only asks
    cancel.click()
    expect(row.locator(".badge")).to_have_text("cancelled", timeout=30_000)
    expect(row.locator('button[data-action="cancel"]')).to_have_count(0)
    assert server.job(job_id)["status"] == "cancelled"
    screenshot(page, "jobs-cancelled")


def test_filters_search_and_pagination(page: Page, server: Server):
    ids = [server.submit("sum_range", {"n": i}, externalId=f"page-{i}") for i in range(30)]
    failed = server.submit("fail", {}, context="dash")
    for job_id in (*ids, failed):
        server.wait_for_job(job_id, {"finished", "failed"}, timeout_s=120)

    open_ui(page, "#/jobs?function=sum_range")
    rows = page.locator("tbody tr[data-job-id]")
    expect(rows).to_have_count(25)
    # Newest first: the last 25 submitted.
    assert [r.get_attribute("data-job-id") for r in rows.all()] == ids[:4:-1]
    expect(page.locator(".pager")).to_contain_text("Jobs 1–25, newest first")
    expect(page.get_by_role("button", name="← Newer")).to_be_disabled()
    screenshot(page, "jobs")
    page.get_by_role("button", name="Older →").click()
    expect(page).to_have_url(re.compile(r"offset=25"))
    expect(rows).to_have_count(5)
    assert [r.get_attribute("data-job-id") for r in rows.all()] == ids[4::-1]
    expect(page.locator(".pager")).to_contain_text("Jobs 26–30")
    expect(page.get_by_role("button", name="Older →")).to_be_disabled()
    page.get_by_role("button", name="← Newer").click()
    expect(rows).to_have_count(25)

    # Status chips: only failed jobs.
    open_ui(page, "#/jobs")
    page.locator('[data-status-filter="failed"]').click()
    expect(page).to_have_url(re.compile(r"status=failed"))
    expect(job_row(page, failed)).to_be_visible()
    # Retrying assertions: live updates may be re-rendering the table at any moment (a one-shot
    # read of the rows once caught it empty).
    expect(page.locator('tbody tr[data-job-id]:not([data-status="failed"])')).to_have_count(0)
    expect(rows.first).to_have_attribute("data-status", "failed")
    # Function and context selects.
    page.locator('select[data-filter="context"]').select_option("dash")
    expect(page).to_have_url(re.compile(r"context=dash"))
    expect(job_row(page, failed)).to_be_visible()
    assert {r.locator("td").nth(3).inner_text() for r in rows.all()} == {"dash"}
    page.locator('select[data-filter="function"]').select_option("sum_range")
    expect(page.locator(".empty")).to_have_text("No job matches these filters.")
    page.get_by_role("link", name="Clear filters").click()
    expect(rows).to_have_count(25)

    # Search by external id, then by id.
    search = page.get_by_role("searchbox")
    search.fill("page-7")
    search.press("Enter")
    expect(rows).to_have_count(1)
    expect(job_row(page, ids[7])).to_be_visible()
    search = page.get_by_role("searchbox")
    search.fill(ids[12])
    search.press("Enter")
    expect(page).to_have_url(re.compile(f"#/jobs/{ids[12]}$"))
    expect(page.locator("#result")).to_have_text(str(sum(range(12))))


def test_argument_errors_are_shown_at_their_fields(page: Page, server: Server):
    open_ui(page, "#/functions/typed")
    form = page.locator('form[data-function="typed"]')
    field_error = lambda name: form.locator(f'[data-error-for="{name}"]')  # noqa: E731
    # Checked in the page first: required fields, numbers that are not numbers, bad JSON.
    form.locator('[data-arg="count"]').fill("three")
    form.locator('[data-arg="weights"]').fill("{oops")
    form.get_by_role("button", name="Run").click()
    expect(field_error("count")).to_have_text('expected an integer, got "three"')
    expect(field_error("ratio")).to_contain_text("required")
    expect(field_error("weights")).to_contain_text("expected JSON")
    expect(form.locator('[data-arg="count"]')).to_have_attribute("aria-invalid", "true")
    expect(field_error("note")).to_have_text("")

    # Then by the gateway: its 400's details land at their fields.
    form.locator('[data-arg="count"]').fill("3")
    form.locator('[data-arg="ratio"]').fill("0.5")
    form.locator('[data-arg="label"]').fill("x")
    form.locator('[data-arg="enabled"]').select_option("true")
    form.locator('[data-arg="items"]').fill('[1, "two", 3]')
    form.locator('[data-arg="weights"]').fill('{"a": 1, "b": "heavy"}')
    form.get_by_role("button", name="Run").click()
    expect(field_error("items")).to_contain_text("items[1]: expected integer")
    expect(field_error("items")).to_contain_text("two")
    expect(field_error("weights")).to_contain_text("weights.b: expected number")
    expect(field_error("count")).to_have_text("")
    expect(form.locator('[data-arg="items"]')).to_have_attribute("aria-invalid", "true")
    expect(page).to_have_url(re.compile(r"#/functions/typed$"))  # no job was made
    screenshot(page, "function-form-errors")

    # Fixed, it runs.
    form.locator('[data-arg="items"]').fill("[1, 2, 3]")
    form.locator('[data-arg="weights"]').fill('{"a": 1}')
    form.get_by_role("button", name="Run").click()
    expect(page).to_have_url(re.compile(r"#/jobs/[0-9a-f-]{36}$"))
    expect(head_status(page)).to_have_text("finished", timeout=60_000)
    expect(page.locator("#result")).to_contain_text('"items": [')


def test_the_overview_draws_its_charts(page: Page, server: Server):
    for job_id in [server.submit("sleep_python", {"seconds": s}) for s in (0.1, 0.3)]:
        server.wait_for_job(job_id, {"finished"})
    server.wait_for_job(server.submit("fail", {}), {"failed"})
    open_ui(page, "#/overview")
    expect(page.locator("#chart-jobs svg rect.series.status-finished")).not_to_have_count(0)
    expect(page.locator("#chart-jobs svg rect.series.status-failed")).not_to_have_count(0)
    expect(page.locator("#chart-jobs svg polyline.submitted")).to_have_count(1)
    expect(page.locator("#chart-durations svg circle.pct-p50")).not_to_have_count(0)
    labels = page.locator("#chart-percentiles svg text").all_text_contents()
    assert {"p50", "p90", "p95", "p99", "max"} <= set(labels)
    finished = page.locator(".tile", has_text="finished").locator(".tile-value")
    assert int(finished.inner_text().replace(",", "")) >= 2
    # Drawn at the width of their box: text stays its size.
    box = page.locator("#chart-jobs svg").bounding_box()
    assert box and box["width"] > 400
    drawn = int(page.locator("#chart-jobs svg").get_attribute("viewBox").split()[2])
    assert abs(drawn - box["width"]) <= 1
    page.locator(".segmented a", has_text="24 hours").click()
    expect(page).to_have_url(re.compile(r"window=24h"))
    expect(page.locator("#chart-jobs svg g.bar")).to_have_count(120)
    page.locator(".segmented a", has_text="1 hour").click()
    expect(page.locator("#chart-jobs svg g.bar")).to_have_count(60)
    screenshot(page, "overview")


# ---------------------------------------------------------------------------------------------
# Contexts and workers


def test_contexts_show_their_state_and_a_broken_one_is_repaired(page: Page, server: Server):
    server.context("fragile", maxConnFailures=1, sparkConf={"spark.master": "nonsense://x"})
    job_id = server.submit("sum_range", {"n": 2}, context="fragile")
    server.wait_for_job(job_id, {"failed"}, timeout_s=120)
    open_ui(page, "#/contexts")
    default = page.locator('[data-context="default"]')
    expect(default.locator(".badge").first).to_have_text("ok")
    expect(default.locator(".worker-list li")).not_to_have_count(0)
    fragile = page.locator('[data-context="fragile"]')
    expect(fragile.locator("h2 .badge")).to_have_text("broken")
    expect(fragile).to_contain_text("nonsense://x")
    expect(fragile).to_contain_text("Last failure")
    expect(fragile.locator('[data-fact="Engine"]')).to_have_text("spark")
    screenshot(page, "contexts")
    repair = fragile.locator('button[data-action="repair"]')
    repair.click()
    repair.click()
    expect(fragile.locator("h2 .badge")).to_have_text("ok")
    assert server.get("/contexts/fragile").json()["state"] == "ok"
    server.put("/contexts/fragile", json={"sparkConf": TEST_SPARK_CONF})


def test_a_context_s_engine_is_switched_and_a_switch_its_functions_forbid_is_refused(
        page: Page, server: Server):
    server.context("switchable")
    server.context("sparky")
    server.deploy("behaviours.py", "sparky_sum", "sum_range", context="sparky")
    open_ui(page, "#/contexts")
    card = page.locator('[data-context="switchable"]')
    expect(card.locator('select[data-action="engine"] option')).to_have_text(["spark", "python"])
    card.locator('select[data-action="engine"]').select_option("python")
    switch = card.locator('button[data-action="switch"]')
    switch.click()
    expect(switch).to_have_text("Confirm: python")
    switch.click()
    expect(card.locator('[data-fact="Engine"]')).to_have_text("python")
    assert server.get("/contexts/switchable").json()["engine"] == "python"

    sparky = page.locator('[data-context="sparky"]')
    sparky.locator('select[data-action="engine"]').select_option("python")
    sparky.locator('button[data-action="switch"]').click()
    sparky.locator('button[data-action="switch"]').click()
    expect(page.locator(".notice-area .error-box")).to_contain_text(
        "function 'sparky_sum' takes a SparkSession, so it needs engine 'spark'")
    expect(sparky.locator('[data-fact="Engine"]')).to_have_text("spark")
    assert server.get("/contexts/sparky").json()["engine"] == "spark"
    server.put("/functions", json={"name": "sparky_sum", "path": "behaviours.py",
                                   "className": "sum_range"})


def test_workers_show_what_they_run_and_stop(page: Page, server: Server):
    server.context("stoppable")
    job_id = server.submit("sleep_python", {"seconds": 8}, context="stoppable")
    worker_id = server.wait_for_job(job_id, {"started"}, timeout_s=120)["workerId"]
    wait_until(lambda: server.get(f"/workers/{worker_id}").json()["runningJobs"] == [job_id],
               10, "the worker reports its job")

    open_ui(page, "#/contexts")
    card = page.locator('[data-context="stoppable"]')
    expect(card.locator(f'[data-worker="{worker_id}"]')).to_contain_text(job_id[-8:])

    open_ui(page, "#/workers")
    row = page.locator(f'tr[data-worker="{worker_id}"]')
    expect(row.locator('[data-cell="running"] a')).to_have_attribute("href", f"#/jobs/{job_id}")
    expect(row.locator(".badge")).to_have_text("running")
    screenshot(page, "workers")
    stop = row.locator('button[data-action="stop"]')
    stop.click()
    expect(stop).to_have_text("Confirm stop")
    stop.click()
    expect(row.locator(".badge")).to_have_text("draining")
    # It drains: its job finishes, then it leaves the list.
    assert server.wait_for_job(job_id, {"finished", "failed"})["status"] == "finished"
    expect(row).to_have_count(0, timeout=60_000)
    assert server.get(f"/workers/{worker_id}").status_code == 404


def test_without_the_event_stream_pages_poll(page: Page, server: Server):
    """An older gateway, or a proxy that cuts streams: the pages still follow jobs."""
    without_the_event_stream(page)
    job_id = server.submit("chatty", {"name": "polled", "lines": 100})
    open_ui(page, f"#/jobs/{job_id}")
    expect(page.locator("#live")).to_have_text("polling")
    expect(head_status(page)).to_have_text("finished", timeout=60_000)
    expect(page.locator("#logs .log-line").filter(has_text="polled print")).to_have_count(100)
    open_ui(page, "#/jobs")
    expect(page.locator("#live")).to_have_text("polling")
    later = server.submit("sleep_python", {"seconds": 0.1})
    expect(job_row(page, later)).to_be_visible(timeout=10_000)
    expect(job_row(page, later).locator(".badge")).to_have_text("finished", timeout=30_000)


def test_the_job_page_tails_its_log_by_offset(page: Page, server: Server):
    """Each read of the log asks only for the records after those read before (`offset`):
    the page appends them, each once and in order, instead of reading the whole log again."""
    # Polling, the page's log comes from its reads alone (no events add lines): every second.
    without_the_event_stream(page)
    asked: list[int] = []  # the offset of each log read, in the order they were sent
    answered: list[tuple[int, int]] = []  # (offset asked, next offset answered) of each answer

    def offset_of(url: str) -> int:
        return int(parse_qs(urlsplit(url).query).get("offset", ["0"])[0])

    def is_log_read(url: str) -> bool:
        return urlsplit(url).path.endswith("/logs")

    page.on("request", lambda request: asked.append(offset_of(request.url))
            if is_log_read(request.url) else None)
    page.on("response", lambda response: answered.append(
        (offset_of(response.url), int(response.headers["x-sparkgate-next-offset"])))
        if is_log_read(response.url) and response.ok else None)

    lines = 400  # about 5 s of logging, stored every half second: several reads see it grow
    job_id = server.submit("chatty", {"name": "tailed", "lines": lines})
    open_ui(page, f"#/jobs/{job_id}")
    expect(page.locator("#live")).to_have_text("polling")
    expect(head_status(page)).to_have_text("finished", timeout=60_000)
    stored = [line.split("] ", 1)[1]
              for line in server.get(f"/jobs/{job_id}/logs").text.splitlines()]
    assert len(stored) == 3 * lines + 2  # print, logging and stderr per line; start and end
    messages = page.locator("#logs .log-line .log-message")
    expect(messages).to_have_count(len(stored))
    assert messages.all_inner_texts() == stored  # each record once, in the stored order
    expect(page.locator("#log-count")).to_have_text(f"{len(stored)} lines")

    assert asked[0] == 0 and asked == sorted(asked), asked
    assert asked[-1] > 0, asked
    assert any(0 < offset < after for offset, after in answered), answered  # read on, not again
    assert max(after for _, after in answered) == len(stored), answered


# ---------------------------------------------------------------------------------------------
# Authentication


def test_the_api_key_is_sent_with_every_request(page: Page, server: Server):
    server.submit("sleep_python", {"seconds": 0.1})  # a row to wait for, run alone too
    seen: list[tuple[str, str | None]] = []
    page.on("request", lambda request: seen.append(
        (request.url, request.headers.get("authorization"))) if "/v2/api/" in request.url
        else None)
    open_ui(page, "#/jobs")
    expect(page.locator("tbody tr[data-job-id]")).not_to_have_count(0)
    assert seen and all(auth is None for _, auth in seen)
    page.get_by_role("button", name="API key").click()
    page.locator("#key-input").fill("s3cret-key")
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_role("button", name="API key ✓")).to_be_visible()
    seen.clear()
    open_ui(page, "#/overview")
    expect(page.locator("#chart-jobs svg")).to_be_visible()
    open_ui(page, "#/jobs")
    expect(page.locator("tbody tr[data-job-id]")).not_to_have_count(0)
    urls = {url.split("?")[0].split("/v2/api/")[1] for url, _ in seen}
    assert {"stats", "jobs", "events"} <= urls
    assert all(auth == "Bearer s3cret-key" for _, auth in seen), seen
    # Kept for this tab only (sessionStorage), never where it outlives the tab.
    assert page.evaluate("sessionStorage.getItem('sparkgate.apiKey')") == "s3cret-key"
    assert page.evaluate("localStorage.getItem('sparkgate.apiKey')") is None
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("button", name="API key", exact=True)).to_be_visible()
    assert page.evaluate("sessionStorage.getItem('sparkgate.apiKey')") is None


# A gateway with authentication on: no workers (the jobs it gets wait in the queue), keys made
# with the command line before it starts, as an operator would.


@pytest.fixture(scope="module")
def auth_server(tmp_path_factory) -> Iterator[tuple[Server, dict[str, str]]]:
    workdir = tmp_path_factory.mktemp("dashboard-auth")
    env = {"SPARKGATE_AUTH_ENABLED": "true", "SPARKGATE_START_WORKERS": "false"}
    cli_env = {**{k: v for k, v in os.environ.items() if not k.startswith("SPARKGATE_")},
               "SPARKGATE_DATA_DIR": str(workdir / "data")}
    tokens = {}
    for name, role in (("ops", "admin"), ("viewer", "read"), ("client", "submit")):
        tokens[name] = create_key(cli_env, name, role, workdir)
    # It answers 401 to the unauthenticated readiness probe: no worker to wait for anyway.
    with running_server(workdir, env, wait_for_worker=False) as server:
        yield server, tokens


def test_with_auth_on_the_dashboard_asks_for_a_key(browser: Browser, auth_server):
    server, tokens = auth_server
    assert requests.get(server.api("/jobs"), timeout=10).status_code == 401
    submitted = requests.post(server.api("/functions/pi/jobs"), json={"samples": 10},
                              headers={"Authorization": f"Bearer {tokens['ops']}"}, timeout=30)
    assert submitted.status_code == 200, submitted.text
    job_id = submitted.json()["id"]

    context = browser.new_context(base_url=server.url, viewport={"width": 1360, "height": 900})
    page = context.new_page()
    page.set_default_timeout(UI_TIMEOUT_MS)
    problems: list[str] = []
    page.on("pageerror", lambda error: problems.append(f"uncaught: {error}"))
    seen: list[tuple[str, str | None]] = []
    page.on("request", lambda request: seen.append(
        (request.url, request.headers.get("authorization"))) if "/v2/api/" in request.url
        else None)

    # The static files load without a key; the first API call's 401 opens the key dialog.
    page.goto("/ui/#/jobs")
    dialog = page.locator("#key-dialog")
    expect(dialog).to_be_visible()
    expect(page.locator("#key-reason")).to_contain_text("requires an API key")
    screenshot(page, "auth-key-dialog")
    page.locator("#key-input").fill("sgk_00000000_" + "A" * 43)
    page.get_by_role("button", name="Save").click()
    expect(page.locator("#key-reason")).to_contain_text("refused this key")

    page.locator("#key-input").fill(tokens["viewer"])
    page.get_by_role("button", name="Save").click()
    expect(dialog).to_be_hidden()
    expect(job_row(page, job_id)).to_be_visible()
    expect(page.locator("#live")).to_have_text("live")  # the event stream took the key too
    assert page.evaluate("sessionStorage.getItem('sparkgate.apiKey')") == tokens["viewer"]
    sent = [(url, auth) for url, auth in seen if auth == f"Bearer {tokens['viewer']}"]
    assert {url.split("?")[0].split("/v2/api/")[1] for url, _ in sent} >= {"jobs", "events"}
    assert all(tokens["viewer"] not in url for url, _ in seen)  # never in a URL

    open_ui(page, f"#/jobs/{job_id}")
    expect(page.locator('[data-fact="Submitted by"]')).to_have_text("key:ops")
    screenshot(page, "auth-job")

    # A read key may look but not run: the 403 is shown, and the key is kept.
    open_ui(page, "#/functions/pi")
    form = page.locator('form[data-function="pi"]')
    form.get_by_role("button", name="Run").click()
    expect(page.locator("#banner")).to_contain_text("This key may not do that")
    expect(page.locator("#banner")).to_contain_text("needs submit")
    assert requests.get(server.api("/jobs"), timeout=10,
                        headers={"Authorization": f"Bearer {tokens['ops']}"}).json()[0][
        "jobId"] == job_id  # nothing was submitted

    # Sign out: the key is forgotten and the next call asks again.
    page.get_by_role("button", name="Sign out").click()
    expect(dialog).to_be_visible()
    assert page.evaluate("sessionStorage.getItem('sparkgate.apiKey')") is None
    expect(page.get_by_role("button", name="Sign out")).to_be_hidden()
    context.close()
    assert not problems, problems


def test_with_a_submit_key_the_dashboard_shows_that_keys_own_jobs(browser: Browser,
                                                                    auth_server):
    server, tokens = auth_server

    def submit(token: str) -> str:
        made = requests.post(server.api("/functions/pi/jobs"), json={"samples": 10},
                             headers={"Authorization": f"Bearer {token}"}, timeout=30)
        assert made.status_code == 200, made.text
        return made.json()["id"]

    others, own = submit(tokens["ops"]), submit(tokens["client"])
    context = browser.new_context(base_url=server.url, viewport={"width": 1360, "height": 900})
    page = context.new_page()
    page.set_default_timeout(UI_TIMEOUT_MS)
    problems = collect_problems(page)
    page.goto("/ui/#/jobs")
    page.locator("#key-input").fill(tokens["client"])
    page.get_by_role("button", name="Save").click()
    expect(job_row(page, own)).to_be_visible()
    expect(page.locator("#live")).to_have_text("live")
    expect(job_row(page, others)).to_have_count(0)

    open_ui(page, "#/")
    expect(page.locator("main .page")).not_to_contain_text("This key may not do that")
    # Another owner's job is not found, exactly as an id that does not exist.
    open_ui(page, f"#/jobs/{others}")
    expect(page.locator("main .page")).to_contain_text(f"job {others} does not exist")
    screenshot(page, "auth-submit-key-other-owners-job")
    context.close()
    assert not problems, problems
