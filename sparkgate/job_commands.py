"""``sparkgate run FUNCTION``, ``jobs``, ``job``, ``logs``, ``cancel``, ``functions``,
``contexts``, ``workers``: the gateway's jobs and catalog over HTTP (docs/cli.md)."""

from __future__ import annotations

import json
import sys
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any
from urllib.parse import quote, urlencode

import click
from rich.table import Table
from rich.text import Text

from sparkgate.arguments import parse_arguments
from sparkgate.follow import follow, follow_logs, job_path, read_logs
from sparkgate.remote import Remote
from sparkgate.remote_options import (
    EXIT_CANCELLED,
    EXIT_FAILED,
    EXIT_FINISHED,
    answered,
    console,
    output_option,
    remote_options,
)

EXIT_OF = {"finished": EXIT_FINISHED, "failed": EXIT_FAILED, "cancelled": EXIT_CANCELLED}
EXIT_INTERRUPTED = 130


def run_remote(remote: Remote, function: str, args_json: str | None, pairs: Sequence[str],
               context: str | None, run_async: bool, output: str) -> None:
    """Submit FUNCTION's job, then follow it to its end (unless ``run_async``); exits with the
    job's outcome."""
    with answered():
        arguments = parse_arguments(args_json, pairs)
        query = urlencode({"context": context} if context else {})
        path = f"/v2/api/functions/{quote(function, safe='')}/jobs" + (f"?{query}" if query else "")
        # Always with a key: a repeated submit never runs the job twice.
        job_id = str(remote.call("POST", path, arguments,
                                 {"Idempotency-Key": uuid.uuid4().hex})["id"])
    if run_async:
        click.echo(json.dumps({"id": job_id}) if output == "json" else job_id)
        return
    err = console(stderr=True)
    err.print(Text(f"job {job_id} ({function})"), soft_wrap=True)
    try:
        with answered():
            job = follow(remote, job_id, function, err)
    except KeyboardInterrupt:
        click.echo(f"\nstopped following job {job_id}; it goes on "
                   f"(sparkgate cancel {job_id})", err=True)
        sys.exit(EXIT_INTERRUPTED)
    _ended(job, output)


def _ended(job: dict[str, Any], output: str) -> None:
    status = str(job["status"])
    if output == "json":
        click.echo(json.dumps(job, indent=2))
    elif status == "finished":
        click.echo(json.dumps(job.get("jobResult"), indent=2))
    elif status == "failed":
        click.echo(f"job {job['jobId']} failed: {job.get('jobResult') or 'no error text'}",
                   err=True)
    else:
        why = f": {job['jobResult']}" if job.get("jobResult") else ""
        click.echo(f"job {job['jobId']} was cancelled{why}", err=True)
    sys.exit(EXIT_OF.get(status, EXIT_FAILED))


@click.command("jobs")
@click.option("--status", "statuses", multiple=True, metavar="STATUS",
              help="queued, started, cancelling, finished, failed, cancelled; repeatable or "
                   "comma-separated.")
@click.option("--function", help="Jobs of this function.")
@click.option("--context", help="Jobs of this context.")
@click.option("--external-id", help="Jobs with this external id.")
@click.option("--schedule", help="Jobs made by this schedule.")
@click.option("--limit", type=click.IntRange(0, 1000), default=25, show_default=True)
@click.option("--offset", type=click.IntRange(min=0), default=0, show_default=True)
@output_option
@remote_options
def jobs(remote: Remote, statuses: tuple[str, ...], function: str | None,
         context: str | None, external_id: str | None, schedule: str | None, limit: int,
         offset: int, output: str) -> None:
    """Jobs, newest first, as a table.

    \b
    sparkgate jobs --status failed --function pi --limit 10
    """
    params: list[tuple[str, str]] = [("limit", str(limit)), ("offset", str(offset)),
                                     ("paginate", "true")]
    params += [("status", status) for status in statuses]
    params += [(name, value) for name, value in (
        ("function", function), ("context", context), ("externalId", external_id),
        ("schedule", schedule)) if value is not None]
    with answered():
        page = remote.call("GET", f"/v2/api/jobs?{urlencode(params)}")
    if output == "json":
        click.echo(json.dumps(page["jobs"], indent=2))
        return
    table = _table("ID", "FUNCTION", "CONTEXT", "STATUS", "CREATED", "DURATION", "TASKS")
    for job in page["jobs"]:
        table.add_row(*_cells(job["jobId"], job["function"], job["context"], job["status"],
                              _when(job.get("createTime")), _duration(job),
                              _tasks(job.get("progress"))))
    shown = f"{offset + 1}-{offset + len(page['jobs'])}" if page["jobs"] else "none"
    table.caption = f"{shown} of {page['total']}{'' if page.get('totalExact', True) else '~'}"
    console().print(table)


@click.command("job")
@click.argument("job_id", metavar="ID")
@output_option
@remote_options
def job(remote: Remote, job_id: str, output: str) -> None:
    """One job: its status, times, arguments, progress and result or error."""
    with answered():
        found = remote.call("GET", job_path(job_id))
    if output == "json":
        click.echo(json.dumps(found, indent=2))
        return
    table = _table("FIELD", "VALUE", header=False)
    rows = [("id", found["jobId"]), ("function", found["function"]),
            ("context", found["context"]), ("status", found["status"]),
            ("submitter", found.get("submitter", "-")),
            ("external id", found.get("externalId", "-")),
            ("schedule", found.get("schedule", "-")),
            ("created", _when(found.get("createTime"))),
            ("started", _when(found.get("startTime"))), ("ended", _when(found.get("endTime"))),
            ("duration", _duration(found)), ("worker", found.get("workerId", "-")),
            ("Spark tasks", _tasks(found.get("progress"))),
            ("arguments", json.dumps(found.get("params", {}).get("arguments")))]
    for name, value in rows:
        table.add_row(*_cells(name, value))
    out = console()
    out.print(table)
    if "jobResult" in found:
        label = "result" if found["status"] == "finished" else "error"
        value = found["jobResult"]
        out.print(Text(f"{label}:\n" + (value if isinstance(value, str) and label == "error"
                                          else json.dumps(value, indent=2))), soft_wrap=True)


@click.command("logs")
@click.argument("job_id", metavar="ID")
@click.option("--follow", "-f", "follow_", is_flag=True,
              help="Go on printing new records until the job ends; exit with its outcome.")
@click.option("--offset", type=click.IntRange(min=0), default=0, show_default=True,
              help="Skip this many records.")
@remote_options
def logs(remote: Remote, job_id: str, follow_: bool, offset: int) -> None:
    """The job's log records (LEVEL time [job id] message).

    With --follow, exit status 0 finished, 1 failed, 3 cancelled (as `run`)."""
    with answered():
        if not follow_:
            for record in read_logs(remote, job_id, offset).records:
                click.echo(record)
            return
        try:
            status = follow_logs(remote, job_id, offset, click.echo)
        except KeyboardInterrupt:
            sys.exit(EXIT_INTERRUPTED)
    sys.exit(EXIT_OF.get(status, EXIT_FAILED))


@click.command("cancel")
@click.argument("job_id", metavar="ID")
@output_option
@remote_options
def cancel(remote: Remote, job_id: str, output: str) -> None:
    """Cancel a job: `cancelled`, or `cancelling` while its worker stops it. An ended job is
    refused (exit 2)."""
    with answered():
        found = remote.call("DELETE", job_path(job_id))
    if output == "json":
        click.echo(json.dumps(found, indent=2))
    else:
        click.echo(f"job {found['jobId']} {found['status']}")


@click.command("functions")
@output_option
@remote_options
def functions(remote: Remote, output: str) -> None:
    """Deployed functions: artifact, default context, arguments (`?`: optional)."""
    with answered():
        found = remote.call("GET", "/v2/api/functions")
    if output == "json":
        click.echo(json.dumps(found, indent=2))
        return
    table = _table("NAME", "ARTIFACT", "CLASS", "CONTEXT", "SPARK", "ARGUMENTS")
    for f in found:
        spark = {True: "yes", False: "no"}.get(f.get("needsSpark"), "?")
        table.add_row(*_cells(f["name"], f["path"], f["className"], f["defaultContext"], spark,
                              _arguments(f.get("execute") or {})))
    console().print(table)


@click.command("contexts")
@output_option
@remote_options
def contexts(remote: Remote, output: str) -> None:
    """Contexts: engine, worker mode, jobs at once, state."""
    with answered():
        found = remote.call("GET", "/v2/api/contexts")
    if output == "json":
        click.echo(json.dumps(found, indent=2))
        return
    table = _table("NAME", "ENGINE", "MODE", "MAX JOBS", "PRECREATED", "DOWNTIME", "STATE")
    for c in found:
        table.add_row(*_cells(c["name"], c.get("engine", "spark"), c["workerMode"],
                              c["maxJobs"], "yes" if c["precreated"] else "no", c["downtime"],
                              c.get("state", "ok")))
    console().print(table)


@click.command("workers")
@output_option
@remote_options
def workers(remote: Remote, output: str) -> None:
    """Live workers: context, state, running jobs, jobs done, uptime."""
    with answered():
        found = remote.call("GET", "/v2/api/workers")
    if output == "json":
        click.echo(json.dumps(found, indent=2))
        return
    table = _table("NAME", "CONTEXT", "STATE", "RUNNING", "DONE", "UPTIME", "DRAINING BECAUSE")
    for w in found:
        running = w.get("runningJobCount", len(w.get("runningJobs", [])))
        table.add_row(*_cells(w["name"], w.get("context", "-"), w.get("state", "running"),
                              running, w.get("jobsDone", "-"),
                              _seconds(w.get("uptimeMs")), w.get("drainReason") or "-"))
    console().print(table)


def _table(*columns: str, header: bool = True) -> Table:
    table = Table(show_header=header, box=None, pad_edge=False, caption_justify="left")
    for column in columns:
        table.add_column(column, no_wrap=column in ("ID", "NAME"), overflow="fold")
    return table


def _cells(*values: Any) -> list[Text]:
    return [Text("-" if value is None else str(value)) for value in values]


def _when(ms: int | None) -> str:
    if ms is None:
        return "-"
    return datetime.fromtimestamp(ms / 1000).astimezone().strftime("%Y-%m-%d %H:%M:%S")


def _duration(job: dict[str, Any]) -> str:
    start, end = job.get("startTime"), job.get("endTime")
    return "-" if start is None or end is None else _seconds(end - start)


def _seconds(ms: int | None) -> str:
    return "-" if ms is None else f"{ms / 1000:.1f}s"


def _tasks(progress: Any) -> str:
    tasks = progress.get("tasks") if isinstance(progress, dict) else None
    if not isinstance(tasks, dict) or not tasks.get("total"):
        return "-"
    return f"{tasks.get('done', 0)}/{tasks['total']}"


def _arguments(execute: dict[str, Any]) -> str:
    return ", ".join(name + ("?" if kind.get("type") == "MOption" else "")
                     for name, kind in execute.items())
