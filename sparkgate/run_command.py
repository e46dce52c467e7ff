"""``sparkgate run``: a function as a job of the gateway, followed live, or (``--local``)
here, exactly as a worker runs it."""

from __future__ import annotations

import json
import sys

import click

from sparkgate.job_commands import run_remote
from sparkgate.jobs.errors import BadRequest, ConfigError
from sparkgate.remote import Remote
from sparkgate.remote_options import output_option, remote_options


@click.command()
@click.argument("target", metavar="FUNCTION | FILE.py:FUNCTION")
@click.option("--local", is_flag=True,
              help="Run FILE.py:FUNCTION in this process instead of as a job of the gateway.")
@click.option("--arg", "pairs", multiple=True, metavar="NAME=VALUE",
              help="An argument. VALUE is read as JSON when it is valid JSON (42, true, "
                   "[1,2], \"7\"), else as the string written. Repeatable; wins over --args.")
@click.option("--args", "args_json", metavar="JSON|@FILE",
              help="The arguments, a JSON object (@FILE: read from FILE).")
@click.option("--context", help="The job's context (default: the function's).")
@click.option("--async", "run_async", is_flag=True, help="Print the job's id; do not wait.")
@output_option
@remote_options
def run(remote: Remote, target: str, local: bool, pairs: tuple[str, ...],
        args_json: str | None, context: str | None, run_async: bool, output: str) -> None:
    """Run FUNCTION as a job of the gateway: its Spark progress and logs as they come, then
    its result (stdout; progress and logs on stderr). Exit status: 0 finished, 1 failed,
    2 refused (bad arguments, no such function), 3 cancelled.

    With --local, run FUNCTION of FILE.py here, exactly as deployed: the gateway's argument
    checks and messages, the worker's import and call, a local Spark session only if the
    function takes one. Prints the result JSON a job would store. Exit status: 0 done, 1 the
    function failed (its error as the job's), 2 refused (bad arguments, no such file or
    function).

    \b
    sparkgate run pi --arg samples=100000          # SPARKGATE_URL, SPARKGATE_API_KEY
    sparkgate run word_count --args @text.json --output json
    sparkgate run --local examples/pi.py:pi --arg samples=100000 --arg seed=7
    sparkgate run --local examples/word_count.py:word_count --args '{"text": "to be or not"}'
    """
    if not local:
        run_remote(remote, target, args_json, pairs, context, run_async, output)
        return
    if context or run_async:
        raise click.UsageError("--context and --async are for jobs of the gateway, not --local")
    from sparkgate.local import FunctionFailed, run_target

    try:
        result = run_target(target, args_json, pairs)
    except BadRequest as exc:
        click.echo(f"Error: {exc.message}", err=True)
        sys.exit(2)
    except ConfigError as exc:
        raise click.ClickException(exc.message) from None
    except FunctionFailed as exc:
        click.echo(exc.text, err=True)
        sys.exit(1)
    click.echo(json.dumps(result, indent=2))
