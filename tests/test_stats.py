"""``GET /v2/api/stats`` and ``Store.job_stats``: jobs per bucket by status and run-time
percentiles over a window, aggregated in SQL on SQLite and PostgreSQL, reading only a range of
the (create_time) index however many older jobs there are.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import event, insert, text

from sparkgate.jobs import tables as t
from sparkgate.jobs.db import now_ms
from sparkgate.jobs.store import Store

API = "/v2/api"
MINUTE = 60_000
HOUR = 60 * MINUTE
# A window of 10 minutes starting on a whole hour (in 2023).
SINCE = 1_700_002_800_000
UNTIL = SINCE + 10 * MINUTE


def job_row(status: str, create: int, start: int | None = None, end: int | None = None,
            function: str = "f") -> dict:
    return {
        "id": str(uuid.uuid4()), "function": function, "context": "default", "arguments": {},
        "file_path": "f.py", "class_name": function, "artifact_sha1": None, "status": status,
        "source": "http", "external_id": None, "create_time": create, "start_time": start,
        "end_time": end,
    }


def add(store: Store, *rows: dict) -> None:
    with store.engine.begin() as conn:
        conn.execute(insert(t.jobs), list(rows))


def stats(store: Store, lookback: int = 24 * HOUR) -> dict:
    return store.job_stats(SINCE, UNTIL, MINUTE, lookback)


def test_jobs_are_counted_by_the_bucket_they_were_submitted_and_ended_in(store: Store):
    add(
        store,
        job_row("finished", SINCE + 1_000, SINCE + 2_000, SINCE + 5_000),
        job_row("failed", SINCE + 1_000, SINCE + 2_000, SINCE + 59_999),
        job_row("finished", SINCE + 50_000, SINCE + 55_000, SINCE + MINUTE),
        job_row("cancelled", SINCE + 2 * MINUTE, None, SINCE + 2 * MINUTE + 10),
        # Ended before the window, though it ran into its first minute's start.
        job_row("finished", SINCE - 5 * MINUTE, SINCE - 5 * MINUTE, SINCE - 1),
        # Ended at the window's end: the next window's.
        job_row("failed", UNTIL - 10, UNTIL - 5, UNTIL),
        # Not ended: only in the active counts (and submitted where created in the window).
        job_row("started", SINCE + 3 * MINUTE, SINCE + 3 * MINUTE),
        job_row("queued", SINCE - HOUR),
        job_row("cancelling", SINCE + 9 * MINUTE, SINCE + 9 * MINUTE),
    )
    result = stats(store)
    assert result["ended"] == {0: {"finished": 1, "failed": 1}, 1: {"finished": 1},
                               2: {"cancelled": 1}}
    assert result["submitted"] == {0: 3, 2: 1, 3: 1, 9: 2}
    assert result["active"] == {"queued": 1, "started": 1, "cancelling": 1}


def test_run_time_percentiles_are_nearest_rank_per_bucket_and_over_the_window(store: Store):
    # Bucket 4: run times 10, 20, ..., 1000 ms (in shuffled order); bucket 7: 1, 2, 3 ms.
    rows = [job_row("finished", SINCE + 4 * MINUTE, SINCE + 4 * MINUTE,
                    SINCE + 4 * MINUTE + ms) for ms in range(10, 1001, 10)]
    rows = rows[1::2] + rows[::2]
    rows += [job_row("failed", SINCE + 7 * MINUTE, SINCE + 7 * MINUTE + 100,
                     SINCE + 7 * MINUTE + 100 + ms) for ms in (3, 1, 2)]
    # Ended in the window but never ran: counted as cancelled, with no run time.
    rows.append(job_row("cancelled", SINCE + 7 * MINUTE, None, SINCE + 7 * MINUTE + 1))
    add(store, *rows)
    result = stats(store)
    assert result["runTimes"] == {4: {"count": 100, "p50": 500, "p95": 950},
                                  7: {"count": 3, "p50": 2, "p95": 3}}
    # 103 values: 1, 2, 3, 10, 20, ... 1000. Rank ceil(p * 103 / 100).
    assert result["runTime"] == {"count": 103, "p50": 490, "p90": 900, "p95": 950,
                                 "p99": 990, "max": 1000}
    assert result["ended"][7] == {"failed": 3, "cancelled": 1}


def test_an_empty_window_has_no_percentiles(store: Store):
    assert stats(store) == {"submitted": {}, "ended": {}, "runTimes": {},
                            "runTime": {"count": 0, "p50": None, "p90": None, "p95": None,
                                        "p99": None, "max": None},
                            "active": {}}


def test_a_job_created_before_the_lookback_is_not_counted_where_it_ended(store: Store):
    add(
        store,
        job_row("finished", SINCE - 2 * HOUR, SINCE - 2 * HOUR, SINCE + 30_000),
        job_row("finished", SINCE - 30 * MINUTE, SINCE - 30 * MINUTE, SINCE + 30_000),
    )
    assert stats(store, lookback=HOUR)["ended"] == {0: {"finished": 1}}
    assert stats(store, lookback=3 * HOUR)["ended"] == {0: {"finished": 2}}


@pytest.fixture
def statements(store: Store) -> Iterator[list[tuple[str, object]]]:
    seen: list[tuple[str, object]] = []

    def record(conn, cursor, statement, parameters, context, executemany):
        if "FROM jobs" in statement and not statement.startswith("EXPLAIN"):
            seen.append((statement, parameters))

    event.listen(store.engine, "before_cursor_execute", record)
    yield seen
    event.remove(store.engine, "before_cursor_execute", record)


def test_every_read_is_a_range_of_an_index_however_many_older_jobs(store: Store, statements):
    old = SINCE - 3 * 24 * HOUR
    add(store, *[job_row("finished", old + i * 1000, old + i * 1000, old + i * 1000 + 50)
                 for i in range(20_000)])
    add(store, job_row("finished", SINCE + 1, SINCE + 2, SINCE + 3),
        job_row("queued", SINCE + 4))
    with store.engine.begin() as conn:
        conn.execute(text("ANALYZE"))
    stats(store)
    assert len(statements) == 5
    with store.engine.connect() as conn:
        for statement, parameters in statements:
            plan = _plan(conn, statement, parameters)
            assert "ix_jobs_create_time" in plan or "ix_jobs_status_create_time" in plan, plan
            assert "Seq Scan on jobs" not in plan, plan
            assert not [line for line in plan.splitlines()
                        if "SCAN jobs" in line and "USING INDEX" not in line], plan
            # A full scan of an index is as bad as a scan of the table.
            assert "SCAN jobs USING" not in plan, plan


def _plan(conn, statement: str, parameters: object) -> str:
    if conn.dialect.name == "sqlite":
        rows = conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, parameters).all()
        return "\n".join(row[-1] for row in rows)
    rows = conn.exec_driver_sql("EXPLAIN " + statement, parameters).all()
    return "\n".join(row[0] for row in rows)


# ---------------------------------------------------------------------------------------------
# The endpoint


async def test_the_last_hour_in_minutes_by_default(client, store: Store):
    now = now_ms()
    add(store, job_row("finished", now - 3_000, now - 2_000, now - 1_000),
        job_row("failed", now - 3_000, now - 2_900, now - 2_000),
        job_row("started", now - 500, now - 400))
    response = await client.get(f"{API}/stats")
    assert response.status == 200
    body = await response.json()
    assert body["bucketMs"] == MINUTE and len(body["buckets"]) == 60
    assert body["windowMs"] == HOUR and body["to"] - body["from"] == HOUR
    assert body["to"] % MINUTE == 0 and body["from"] <= now < body["to"]
    assert [b["time"] for b in body["buckets"]] == list(range(body["from"], body["to"], MINUTE))
    counted = sum(b["finished"] + b["failed"] for b in body["buckets"])
    assert counted == 2 and body["totals"]["finished"] == 1 and body["totals"]["failed"] == 1
    assert body["totals"]["submitted"] == 3 and body["totals"]["cancelled"] == 0
    assert body["runTime"] == {"count": 2, "p50": 900, "p90": 1000, "p95": 1000, "p99": 1000,
                               "max": 1000}
    assert body["active"] == {"queued": 0, "started": 1, "cancelling": 0}
    empty = body["buckets"][0]
    assert empty["runTime"] == {"count": 0, "p50": None, "p95": None}
    assert body["runLookbackMs"] == 24 * HOUR


@pytest.mark.parametrize(("query", "buckets", "bucket_ms"), [
    ("window=15min", 15, MINUTE),
    ("window=24h", 120, 12 * MINUTE),
    ("window=6h", 120, 3 * MINUTE),
    ("window=10min&bucket=10s", 60, 10_000),
    ("window=30s", 1, 30_000),
])
async def test_window_and_bucket_sizes(client, query: str, buckets: int, bucket_ms: int):
    response = await client.get(f"{API}/stats?{query}")
    assert response.status == 200, await response.text()
    body = await response.json()
    assert len(body["buckets"]) == buckets and body["bucketMs"] == bucket_ms
    assert body["to"] % bucket_ms == 0


@pytest.mark.parametrize(("query", "field"), [
    ("window=25h", "window"),
    ("window=0s", "window"),
    ("window=Inf", "window"),
    ("window=soon", "window"),
    ("window=1h&bucket=1s", "bucket"),
    ("window=1h&bucket=2h", "bucket"),
])
async def test_a_window_beyond_a_day_or_too_many_buckets_is_refused(client, query: str,
                                                                    field: str):
    response = await client.get(f"{API}/stats?{query}")
    assert response.status == 400
    error = (await response.json())["error"]
    assert error["code"] == "bad_request" and error["details"]["field"] == field
    assert f"query parameter {field}" in error["message"]
