"""What every command that talks to a gateway over HTTP shares: where it is and the key
(``--url``/``SPARKGATE_URL``, ``--api-key``/``SPARKGATE_API_KEY``, else the profile file),
``--output``, the consoles it prints on, and how a refusal ends the command (docs/cli.md)."""

from __future__ import annotations

import functools
import os
import sys
import tomllib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn

import click
from rich.console import Console

from sparkgate.jobs.errors import BadRequest
from sparkgate.remote import DEFAULT_URL, Remote, RemoteError

# Exit statuses of the commands that talk to a gateway (docs/cli.md#exit-status).
EXIT_FINISHED, EXIT_FAILED, EXIT_USAGE, EXIT_CANCELLED = 0, 1, 2, 3
PROFILE_KEYS = frozenset({"url", "api_key"})
# Rich wraps tables to 80 columns when not on a terminal: wide enough for a job id and more.
PIPE_WIDTH = 200


def profile_path() -> Path:
    """``SPARKGATE_PROFILE``, else ``$XDG_CONFIG_HOME/sparkgate/profile.toml`` (~/.config)."""
    if os.environ.get("SPARKGATE_PROFILE"):
        return Path(os.environ["SPARKGATE_PROFILE"])
    config = os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config"
    return Path(config) / "sparkgate" / "profile.toml"


def read_profile(path: Path) -> dict[str, str]:
    """The profile's ``url`` and ``api_key``; none if there is no file. Unknown keys are an
    error, not silently dropped."""
    try:
        values = tomllib.loads(path.read_text("utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise click.UsageError(f"profile {path}: {exc}") from None
    unknown = sorted(set(values) - PROFILE_KEYS)
    if unknown or not all(isinstance(v, str) for v in values.values()):
        raise click.UsageError(f"profile {path}: expected only the strings url and api_key, "
                               f"got {', '.join(unknown) or 'a value that is not a string'}")
    return values


def make_remote(url: str | None, api_key: str | None) -> Remote:
    """Flags and environment first (click reads both), then the profile, then the default."""
    profile = read_profile(profile_path()) if url is None or api_key is None else {}
    return Remote(url or profile.get("url") or DEFAULT_URL,
                  api_key if api_key is not None else profile.get("api_key"))


def remote_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """``--url`` and ``--api-key``; the command is given ``remote``."""

    @functools.wraps(command)
    def with_remote(*args: Any, url: str | None, api_key: str | None, **kwargs: Any) -> Any:
        return command(*args, remote=make_remote(url, api_key), **kwargs)

    with_remote = click.option(
        "--api-key", envvar="SPARKGATE_API_KEY",
        help="The API key, with auth on (env SPARKGATE_API_KEY; else the profile's).")(with_remote)
    return click.option(
        "--url", envvar="SPARKGATE_URL",
        help=f"The gateway (env SPARKGATE_URL; else the profile's; else {DEFAULT_URL}).",
    )(with_remote)


output_option = click.option(
    "--output", "-o", type=click.Choice(["text", "json"]), default="text", show_default=True,
    help="text: tables and lines for people; json: the API's JSON.")


def console(stderr: bool = False) -> Console:
    """A console that prints text as it is (no markup: log lines hold ``[job id]``)."""
    out = Console(stderr=stderr, markup=False, highlight=False, emoji=False)
    if not out.is_terminal:
        out.width = max(out.width, PIPE_WIDTH)
    return out


def fail(message: str, code: int) -> NoReturn:
    click.echo(f"Error: {message}", err=True)
    sys.exit(code)


@contextmanager
def answered() -> Iterator[None]:
    """A refusal (4xx, bad arguments) exits 2, a gateway failing or out of reach exits 1: each
    with the gateway's own message."""
    try:
        yield
    except BadRequest as exc:
        fail(exc.message, EXIT_USAGE)
    except RemoteError as exc:
        fail(exc.message, EXIT_USAGE if exc.refused else EXIT_FAILED)
