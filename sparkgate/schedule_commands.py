"""``sparkgate schedules``: schedules over the HTTP API (docs/schedules.md), from any host that
reaches the gateway."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import click

from sparkgate.arguments import parse_arguments
from sparkgate.jobs.errors import BadRequest
from sparkgate.jobs.schedules import (
    DEFAULT_MISSED,
    DEFAULT_OVERLAP,
    DEFAULT_TIMEZONE,
    MISSED,
    OVERLAP,
)
from sparkgate.remote import DEFAULT_URL, Remote, RemoteError

# What a PUT sends back of a schedule it read (pause, resume): its whole definition.
_DEFINITION = ("function", "arguments", "context", "cron", "timezone", "enabled", "missed",
               "overlap")


@click.group()
@click.option("--url", envvar="SPARKGATE_URL", default=DEFAULT_URL, show_default=True,
              help="The gateway (env SPARKGATE_URL).")
@click.option("--api-key", envvar="SPARKGATE_API_KEY",
              help="An admin key to save, run or delete; any key to read (env "
                   "SPARKGATE_API_KEY).")
@click.pass_context
def schedules(ctx: click.Context, url: str, api_key: str | None) -> None:
    """Functions run at the times of a cron expression, one job per tick.

    \b
    sparkgate schedules create nightly --function word_count --cron "0 2 * * *" \\
        --timezone Europe/Berlin --args '{"text": "to be or not"}'
    sparkgate schedules list
    sparkgate schedules show nightly
    sparkgate schedules pause nightly        # and: resume, run, delete

    Exit status: 0 done, 1 the gateway failed or could not be reached, 2 refused (the
    gateway's message says why).
    """
    ctx.obj = Remote(url, api_key)


def _definition_options(command: Any) -> Any:
    options = [
        click.option("--function", required=True, help="The function to run."),
        click.option("--cron", required=True,
                     help='5 fields ("0 2 * * *"), 6 with seconds first, or @daily etc.'),
        click.option("--arg", "pairs", multiple=True, metavar="NAME=VALUE",
                     help="An argument; VALUE is read as JSON when it is valid JSON. "
                          "Repeatable; wins over --args."),
        click.option("--args", "args_json", metavar="JSON", help="The arguments, a JSON object."),
        click.option("--context", help="Run in this context (default: the function's)."),
        click.option("--timezone", default=DEFAULT_TIMEZONE, show_default=True,
                     help="The cron's time zone (IANA)."),
        click.option("--missed", type=click.Choice(MISSED), default=DEFAULT_MISSED,
                     show_default=True, help="Ticks missed while no gateway ran."),
        click.option("--overlap", type=click.Choice(OVERLAP), default=DEFAULT_OVERLAP,
                     show_default=True, help="A tick while the previous run is going."),
        click.option("--paused", is_flag=True, help="Save it paused."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


@schedules.command("create")
@click.argument("name")
@_definition_options
@click.option("--replace", is_flag=True, help="Replace a schedule of that name.")
@click.pass_obj
def create(remote: Remote, name: str, replace: bool, **options: Any) -> None:
    """Create the schedule NAME (or with --replace, replace it)."""
    with _answered():
        body = _body(**options)
        if replace:
            saved = remote.call("PUT", _path(name), body)
        else:
            saved = remote.call("POST", "/v2/api/schedules", {"name": name, **body})
    click.echo(f"schedule {name!r} saved; next run {_next(saved)}")


@schedules.command("list")
@click.option("--json", "as_json", is_flag=True, help="The API's JSON instead of a table.")
@click.pass_obj
def list_(remote: Remote, as_json: bool) -> None:
    """Every schedule: function, cron, state, next run, last error."""
    with _answered():
        found = remote.call("GET", "/v2/api/schedules")
    if as_json:
        click.echo(json.dumps(found, indent=2))
        return
    rows = [("NAME", "FUNCTION", "CRON", "TIMEZONE", "STATE", "NEXT RUN", "LAST ERROR")]
    rows += [(s["name"], s["function"], s["cron"], s["timezone"],
              "enabled" if s["enabled"] else "paused", _next(s),
              (s["lastError"] or {}).get("message", "-")[:60]) for s in found]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        click.echo("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())


@schedules.command("show")
@click.argument("name")
@click.pass_obj
def show(remote: Remote, name: str) -> None:
    """The schedule NAME as JSON: its definition, next runs and latest jobs."""
    with _answered():
        click.echo(json.dumps(remote.call("GET", _path(name)), indent=2))


@schedules.command("pause")
@click.argument("name")
@click.pass_obj
def pause(remote: Remote, name: str) -> None:
    """Pause NAME: no jobs until it is resumed."""
    _set_enabled(remote, name, False)
    click.echo(f"schedule {name!r} paused")


@schedules.command("resume")
@click.argument("name")
@click.pass_obj
def resume(remote: Remote, name: str) -> None:
    """Resume NAME from now (ticks that fell while it was paused do not run)."""
    saved = _set_enabled(remote, name, True)
    click.echo(f"schedule {name!r} resumed; next run {_next(saved)}")


@schedules.command("run")
@click.argument("name")
@click.pass_obj
def run_now(remote: Remote, name: str) -> None:
    """Run NAME now, whatever its cron says; prints the job's id."""
    with _answered():
        click.echo(remote.call("POST", _path(name) + "/jobs")["id"])


@schedules.command("delete")
@click.argument("name")
@click.pass_obj
def delete(remote: Remote, name: str) -> None:
    """Delete NAME (its jobs stay)."""
    with _answered():
        remote.call("DELETE", _path(name))
    click.echo(f"schedule {name!r} deleted")


def _set_enabled(remote: Remote, name: str, enabled: bool) -> dict[str, Any]:
    with _answered():
        current = remote.call("GET", _path(name))
        body = {field: current[field] for field in _DEFINITION}
        saved: dict[str, Any] = remote.call("PUT", _path(name), {**body, "enabled": enabled})
    return saved


def _body(function: str, cron: str, pairs: tuple[str, ...], args_json: str | None,
          context: str | None, timezone: str, missed: str, overlap: str,
          paused: bool) -> dict[str, Any]:
    return {"function": function, "cron": cron, "arguments": parse_arguments(args_json, pairs),
            "context": context, "timezone": timezone, "missed": missed, "overlap": overlap,
            "enabled": not paused}


def _path(name: str) -> str:
    return f"/v2/api/schedules/{quote(name, safe='')}"


def _next(schedule: dict[str, Any]) -> str:
    if not schedule["nextRuns"]:
        return "- (paused)"
    moment = datetime.fromtimestamp(schedule["nextRuns"][0] / 1000, UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%SZ")


@contextmanager
def _answered() -> Iterator[None]:
    try:
        yield
    except (RemoteError, BadRequest) as exc:
        click.echo(f"Error: {exc.message}", err=True)
        refused = isinstance(exc, BadRequest) or exc.refused
        sys.exit(2 if refused else 1)
