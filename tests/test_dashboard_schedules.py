"""The dashboard's schedules (``#/schedules``, ``#/schedules/<name>``) in a real headless
Chromium against a real ``sparkgate serve``: a schedule created from the form (a bad cron refused
at its field first), listed with its next run; run now, the job linking back to its schedule;
pause, resume and delete.

Each page is saved as a screenshot under ``test-artifacts/screenshots/``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.browser import checked_page, chromium
from tests.server_process import Server, running_server
from tests.test_dashboard import head_status, open_ui, screenshot

pytestmark = pytest.mark.slow

NIGHTLY = "0 3 * * *"


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[Server]:
    with running_server(tmp_path_factory.mktemp("dashboard-schedules")) as server:
        server.deploy("plain.py", "add", "add")
        yield server


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as browser:
        yield browser


@pytest.fixture
def page(browser: Browser, server: Server) -> Iterator[Page]:
    # The browser in UTC: the times the page shows can be compared with the API's.
    with checked_page(browser, server.url, timezone_id="UTC") as page:
        yield page


def create(server: Server, name: str, **fields) -> dict:
    body = {"name": name, "function": "add", "arguments": {"x": 1}, "cron": NIGHTLY, **fields}
    response = server.post("/schedules", json=body)
    assert response.status_code == 200, response.text
    return response.json()


def schedule_row(page: Page, name: str):
    return page.locator(f'tr[data-schedule="{name}"]')


def utc(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S")


def test_a_schedule_made_in_the_form_is_listed_with_its_next_run(page: Page, server: Server):
    open_ui(page, "#/jobs")
    page.locator("#nav").get_by_role("link", name="Schedules").click()
    expect(page.locator(".page-schedules .empty")).to_contain_text("No schedules yet.")
    page.get_by_role("link", name="New schedule").click()
    form = page.locator("form.schedule-form")
    expect(form.locator("#schedule-timezone")).to_have_value("UTC")
    expect(form.locator('[data-hint="signature"]')).to_have_text("add(x: integer, y: integer?)")
    form.locator("#schedule-name").fill("nightly-add")
    form.locator("#schedule-function").select_option("add")
    form.locator("#schedule-arguments").fill('{"x": 2, "y": 3}')
    form.locator("#schedule-overlap").select_option("queue")

    # A cron the gateway refuses: its message at the cron field, and nothing saved.
    form.locator("#schedule-cron").fill("* * *")
    form.get_by_role("button", name="Create").click()
    cron_error = form.locator('[data-error-for="cron"]')
    expect(cron_error).to_contain_text("cron: expected 5 fields (minute hour day month weekday)")
    expect(cron_error).to_contain_text("got '* * *'")
    expect(form.locator("#schedule-cron")).to_have_attribute("aria-invalid", "true")
    expect(form.locator('[data-error-for="name"]')).to_have_text("")
    assert server.get("/schedules/nightly-add").status_code == 404
    screenshot(page, "schedule-form-error")

    form.locator("#schedule-cron").fill(NIGHTLY)
    form.get_by_role("button", name="Create").click()
    expect(page).to_have_url(re.compile(r"#/schedules\?highlight=nightly-add$"))
    stored = server.get("/schedules/nightly-add").json()
    assert stored["arguments"] == {"x": 2, "y": 3} and stored["cron"] == NIGHTLY
    assert stored["timezone"] == "UTC" and stored["overlap"] == "queue" and stored["enabled"]
    row = schedule_row(page, "nightly-add")
    expect(row.locator('[data-cell="when"]')).to_have_text(f"{NIGHTLY} UTC")
    expect(row.locator(".badge")).to_have_text("enabled")
    next_run = stored["nextRuns"][0]
    assert utc(next_run).endswith(" 03:00:00")
    expect(row.locator(".next-at")).to_have_text(utc(next_run))
    expect(row.locator(".next-in")).to_have_text(re.compile(r"^in \d"))
    screenshot(page, "schedules")

    # Its page: the next five runs, the definition.
    row.get_by_role("link", name="nightly-add").click()
    expect(page).to_have_url(re.compile(r"#/schedules/nightly-add$"))
    expect(page.locator("#next-runs li")).to_have_count(5)
    expect(page.locator("#next-runs li").first).to_contain_text(utc(next_run))
    expect(page.locator('[data-fact="Overlap"]')).to_have_text("queue")
    expect(page.locator("#schedule-arguments")).to_contain_text('"y": 3')


def test_run_now_makes_a_job_that_links_back_to_its_schedule(page: Page, server: Server):
    create(server, "adder", arguments={"x": 40, "y": 2})
    open_ui(page, "#/schedules/adder")
    expect(page.locator("#last-jobs")).to_contain_text("No jobs yet.")
    page.locator('.page-head [data-action="run-now"]').click()

    # The new job's page, which names its schedule.
    expect(page).to_have_url(re.compile(r"#/jobs/[0-9a-f-]{36}$"))
    job_id = page.url.rsplit("/", 1)[1]
    expect(head_status(page)).to_have_text("finished", timeout=120_000)
    expect(page.locator("#result")).to_have_text("42")
    expect(page.locator('[data-fact="Source"]')).to_have_text("Schedule")
    job = server.job(job_id)
    assert job["schedule"] == "adder" and job["params"]["arguments"] == {"x": 40, "y": 2}
    screenshot(page, "schedule-job")
    page.locator('[data-fact="Schedule"]').get_by_role("link", name="adder").click()

    # Back on the schedule: the job among its last jobs, linked.
    expect(page).to_have_url(re.compile(r"#/schedules/adder$"))
    row = page.locator(f'#last-jobs tr[data-job-id="{job_id}"]')
    expect(row.locator(".badge")).to_have_text("finished")
    expect(row.get_by_role("link")).to_have_attribute("href", f"#/jobs/{job_id}")
    screenshot(page, "schedule")

    # All its jobs: the jobs page, filtered by the schedule.
    page.get_by_role("link", name="All jobs of this schedule").click()
    expect(page).to_have_url(re.compile(r"#/jobs\?schedule=adder$"))
    expect(page.locator('[data-filter-chip="schedule"]')).to_contain_text("schedule adder")
    expect(page.locator("tbody tr[data-job-id]")).to_have_count(1)
    expect(page.locator(f'tr[data-job-id="{job_id}"]')).to_be_visible()


def test_a_schedule_is_paused_resumed_and_deleted(page: Page, server: Server):
    create(server, "pausable", arguments={"x": 5}, overlap="cancel", timezone="Europe/Berlin")
    open_ui(page, "#/schedules")
    row = schedule_row(page, "pausable")
    expect(row.locator(".badge")).to_have_text("enabled")

    row.locator('button[data-action="pause"]').click()
    expect(row.locator(".badge")).to_have_text("paused")
    expect(row.locator('[data-cell="next-run"]')).to_have_text("none while paused")
    stored = server.get("/schedules/pausable").json()
    assert stored["enabled"] is False and stored["nextRuns"] == []
    # The rest of the definition is kept: a pause is a PUT of the whole of it.
    assert stored["arguments"] == {"x": 5} and stored["overlap"] == "cancel"
    assert stored["timezone"] == "Europe/Berlin" and stored["cron"] == NIGHTLY
    screenshot(page, "schedules-paused")

    row.locator('button[data-action="resume"]').click()
    expect(row.locator(".badge")).to_have_text("enabled")
    expect(row.locator(".next-in")).to_have_text(re.compile(r"^in \d"))
    assert server.get("/schedules/pausable").json()["enabled"] is True

    delete = row.locator('button[data-action="delete"]')
    delete.click()
    expect(delete).to_have_text("Confirm delete")
    assert server.get("/schedules/pausable").status_code == 200  # one click only asks
    delete.click()
    expect(row).to_have_count(0)
    assert server.get("/schedules/pausable").status_code == 404
