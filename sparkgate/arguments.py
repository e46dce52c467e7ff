"""A function's arguments as the command line takes them: ``--args JSON`` (or ``--args @FILE``,
the JSON read from a file) and repeated ``--arg NAME=VALUE`` (``sparkgate run``,
``sparkgate schedules``)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sparkgate.jobs.errors import BadRequest


def parse_arguments(args_json: str | None, pairs: Sequence[str]) -> dict[str, Any]:
    """The arguments object of ``--args JSON`` (``@FILE``: the JSON in that file), with each
    ``--arg NAME=VALUE`` set over it: VALUE is read as JSON when it is valid JSON (``5``,
    ``true``, ``[1, 2]``, ``"5"``), else it is the string as written."""
    arguments: dict[str, Any] = {}
    if args_json is not None and args_json.startswith("@"):  # never valid JSON
        args_json = _read_file(args_json[1:])
    if args_json is not None:
        try:
            arguments = json.loads(args_json)
        except ValueError as exc:
            raise BadRequest(f"--args is not valid JSON: {exc}") from None
        if not isinstance(arguments, dict):
            raise BadRequest(f"--args must be a JSON object of arguments, got {args_json!r}")
    for pair in pairs:
        name, equals, value = pair.partition("=")
        if not name or not equals:
            raise BadRequest(f"--arg expects NAME=VALUE, got {pair!r}")
        arguments[name] = _json_or_text(value)
    return arguments


def _read_file(name: str) -> str:
    try:
        return Path(name).read_text("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise BadRequest(f"--args @{name}: cannot read the file: {exc}") from None


def _json_or_text(value: str) -> Any:
    try:
        return json.loads(value)
    except ValueError:
        return value
