"""``sparkgate deploy PATH``: a folder's artifacts, functions and contexts, described in one
file, applied to a gateway as a diff (as ``mist-cli apply`` did), or only planned
(``--dry-run``).

The file is the format of examples/deploy.toml (which ``serve`` deploys): ``[contexts.NAME]``
and ``[functions.NAME]`` tables, each the body ``POST /v2/api/contexts`` or
``POST /v2/api/functions`` takes, a function's ``path`` a file of the folder, uploaded as the
artifact of that name; plus an optional ``artifacts`` list of more files to upload, and an
optional ``[requirements]`` table: an artifact's name -> its Python requirements, a list of
requirement lines or the name of a requirements file of the folder (docs/environments.md)
(docs/cli.md#deploy).
"""

from __future__ import annotations

import hashlib
import json
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import click
from rich.text import Text

from sparkgate.jobs.durations import parse_duration
from sparkgate.jobs.errors import BadRequest
from sparkgate.jobs.requirements import normalized, parse_requirements, wheel_requirements
from sparkgate.remote import Remote, RemoteError
from sparkgate.remote_options import answered, console, output_option, remote_options

MANIFEST_NAMES = ("sparkgate.toml", "deploy.toml")
MANIFEST_KEYS = frozenset({"artifacts", "functions", "contexts", "requirements"})
# What a function's definition holds besides its name (tags: accepted, never stored).
FUNCTION_FIELDS = ("path", "className", "defaultContext", "cache")
DURATION_FIELDS = frozenset({"downtime", "streamingDuration", "startTimeout", "performTimeout"})
# The order they are applied in: artifacts first, since an upload is what most often fails
# (an environment pip cannot build) and the slowest; a deploy it stops has changed nothing.
KINDS = ("artifact", "context", "function")
MARKS = {"create": ("+", "green"), "update": ("~", "yellow"), "unchanged": ("=", "dim")}


@dataclass(frozen=True)
class Manifest:
    folder: Path
    file: Path
    artifacts: tuple[str, ...]
    functions: dict[str, dict[str, Any]]
    contexts: dict[str, dict[str, Any]]
    # An artifact's requirement lines, normalized; an artifact not named has none.
    requirements: dict[str, tuple[str, ...]]


@dataclass(frozen=True)
class Change:
    kind: str  # context, artifact, function
    name: str
    action: str  # create, update, unchanged
    differences: tuple[str, ...] = ()

    def as_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "name": self.name, "action": self.action,
                "differences": list(self.differences)}


def read_manifest(path: Path) -> Manifest:
    """The deployment PATH describes (a folder holding sparkgate.toml or deploy.toml, or the
    file itself); BadRequest saying what is wrong with it."""
    # The gateway's reader of a function's definition: the same checks, the same messages.
    # Imported here: it would cost every command (a worker's start too) a quarter second.
    from sparkgate.gateway.wire.functions import function_definition

    file = path if path.is_file() else next(
        (path / name for name in MANIFEST_NAMES if (path / name).is_file()), None)
    if file is None:
        raise BadRequest(f"{path}: no {' or '.join(MANIFEST_NAMES)} there")
    try:
        manifest = tomllib.loads(file.read_text("utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise BadRequest(f"{file}: {exc}") from None
    unknown = sorted(set(manifest) - MANIFEST_KEYS)
    if unknown:
        raise BadRequest(f"{file}: unknown key(s) {', '.join(unknown)}; expected "
                         f"{', '.join(sorted(MANIFEST_KEYS))}")
    functions, contexts = _tables(file, manifest, "functions"), _tables(file, manifest, "contexts")
    for name, body in functions.items():
        try:
            function_definition({"name": name, **body})
        except BadRequest as exc:
            raise BadRequest(f"{file}: [functions.{name}]: {exc.message}") from None
    extra = manifest.get("artifacts", [])
    if not isinstance(extra, list) or not all(isinstance(a, str) for a in extra):
        raise BadRequest(f"{file}: artifacts: expected a list of file names")
    artifacts = tuple(sorted({*extra, *(str(body["path"]) for body in functions.values())}))
    for artifact in artifacts:
        if Path(artifact).name != artifact or not (file.parent / artifact).is_file():
            raise BadRequest(f"{file}: artifact {artifact!r} is not a file of {file.parent}")
    requirements = _requirements(file, manifest.get("requirements", {}), artifacts)
    return Manifest(file.parent, file, artifacts, functions, contexts, requirements)


def _requirements(file: Path, table: Any, artifacts: tuple[str, ...]
                  ) -> dict[str, tuple[str, ...]]:
    """The ``[requirements]`` table: artifact name -> a list of lines, or a requirements
    file of the folder; each line checked as the gateway checks it."""
    if not isinstance(table, dict):
        raise BadRequest(f"{file}: requirements: expected a table of artifact names")
    found = {}
    for artifact, given in table.items():
        where = f"{file}: [requirements] {artifact!r}"
        if artifact not in artifacts:
            raise BadRequest(f"{where}: not an artifact of this deployment")
        try:
            found[artifact] = _lines(file.parent, given, where)
        except BadRequest as exc:
            raise BadRequest(f"{where}: {exc.message}") from None
    return found


def _lines(folder: Path, given: Any, where: str) -> tuple[str, ...]:
    if isinstance(given, list) and all(isinstance(line, str) for line in given):
        return normalized(given)
    if isinstance(given, str) and Path(given).name == given and (folder / given).is_file():
        return parse_requirements((folder / given).read_text("utf-8"), given)
    raise BadRequest(f"{where}: expected a list of requirement lines or the name of a "
                     f"requirements file of {folder}")


def _tables(file: Path, manifest: dict[str, Any], key: str) -> dict[str, dict[str, Any]]:
    tables = manifest.get(key, {})
    if not isinstance(tables, dict) or not all(isinstance(t, dict) for t in tables.values()):
        raise BadRequest(f"{file}: {key}: expected [{key}.NAME] tables")
    return tables


def plan(remote: Remote, manifest: Manifest) -> list[Change]:
    """What applying the manifest would do, read from the gateway; nothing is changed."""
    changes = [_context_change(remote, name, body) for name, body in manifest.contexts.items()]
    changes += [_artifact_change(remote, manifest, name) for name in manifest.artifacts]
    changes += [_function_change(remote, name, body)
                for name, body in manifest.functions.items()]
    return sorted(changes, key=lambda c: (KINDS.index(c.kind), c.name))


def apply(remote: Remote, manifest: Manifest, changes: list[Change],
          done: Callable[[Change], None]) -> None:
    """Artifacts, then contexts, then functions (which name both): what ``plan`` found."""
    for change in changes:
        if change.action == "unchanged":
            continue
        if change.kind == "context":
            remote.call("POST", "/v2/api/contexts",
                        {"name": change.name, **manifest.contexts[change.name]})
        elif change.kind == "artifact":
            content = (manifest.folder / change.name).read_bytes()
            remote.upload(change.name, content, replace=change.action == "update",
                          requirements=manifest.requirements.get(change.name, ()))
        else:
            body = {"name": change.name, **manifest.functions[change.name]}
            remote.call("POST" if change.action == "create" else "PUT", "/v2/api/functions",
                        body)
        done(change)


def _current(remote: Remote, path: str) -> Any:
    """The gateway's JSON at ``path``, or None if it has no such thing."""
    try:
        return remote.call("GET", path)
    except RemoteError as exc:
        if exc.status == 404:
            return None
        raise


def _artifact_change(remote: Remote, manifest: Manifest, name: str) -> Change:
    content = (manifest.folder / name).read_bytes()
    local = hashlib.sha1(content, usedforsecurity=False).hexdigest()
    stored = _current(remote, f"/v2/api/artifacts/{quote(name, safe='')}/info")
    if stored is None:
        return Change("artifact", name, "create")
    # What the gateway stores: the lines given and, for a wheel, its own Requires-Dist.
    own = wheel_requirements(content) if name.endswith(".whl") else ()
    wanted = list(normalized([*manifest.requirements.get(name, ()), *own]))
    differences = []
    if stored["sha1"] != local:
        differences.append(f"sha1: {stored['sha1'][:12]} -> {local[:12]}")
    if stored.get("requirements", []) != wanted:
        differences.append(f"requirements: {_shown(stored.get('requirements', []))} -> "
                           f"{_shown(wanted)}")
    return Change("artifact", name, "update" if differences else "unchanged",
                  tuple(differences))


def _function_change(remote: Remote, name: str, body: dict[str, Any]) -> Change:
    current = _current(remote, f"/v2/api/functions/{quote(name, safe='')}")
    if current is None:
        return Change("function", name, "create")
    wanted = {"defaultContext": "default", **body}
    differences = tuple(f"{field}: {_shown(current.get(field))} -> {_shown(wanted.get(field))}"
                        for field in FUNCTION_FIELDS
                        if not _same(field, wanted.get(field), current.get(field)))
    return Change("function", name, "update" if differences else "unchanged", differences)


def _context_change(remote: Remote, name: str, body: dict[str, Any]) -> Change:
    current = _current(remote, f"/v2/api/contexts/{quote(name, safe='')}")
    if current is None:
        return Change("context", name, "create")
    # Only the fields the file sets: the others are the gateway's defaults either way.
    differences = tuple(f"{field}: {_shown(current.get(field))} -> {_shown(value)}"
                        for field, value in body.items()
                        if not _same(field, value, current.get(field)))
    return Change("context", name, "update" if differences else "unchanged", differences)


def _same(field: str, wanted: Any, current: Any) -> bool:
    """Equal as the gateway stores them: numbers and booleans of sparkConf as strings,
    durations in seconds."""
    if field == "sparkConf" and isinstance(wanted, dict) and isinstance(current, dict):
        return {k: _text(v) for k, v in wanted.items()} == current
    if field in DURATION_FIELDS | {"cache"} and wanted is not None and current is not None:
        try:
            return parse_duration(wanted, field) == parse_duration(current, field)
        except ValueError:
            return False
    return wanted == current or _text(wanted) == _text(current)


def _text(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def _shown(value: Any) -> str:
    return "-" if value is None else json.dumps(value)


@click.command("deploy")
@click.argument("path", type=click.Path(exists=True, path_type=Path))
@click.option("--dry-run", is_flag=True, help="Print the plan; change nothing.")
@output_option
@remote_options
def deploy(remote: Remote, path: Path, dry_run: bool, output: str) -> None:
    """Apply the artifacts, contexts and functions PATH describes (its sparkgate.toml): create
    what is missing, update what differs, leave the rest.

    \b
    sparkgate deploy ./scoring --dry-run   # the plan: + create, ~ update, = unchanged
    sparkgate deploy ./scoring
    """
    with answered():
        manifest = read_manifest(path)
        changes = plan(remote, manifest)
        out = console()

        def show(change: Change) -> None:
            if output == "text":
                out.print(_line(change, dry_run), soft_wrap=True)

        # A dry run shows the plan; a deploy what is unchanged, then each change once made.
        for change in changes:
            if dry_run or change.action == "unchanged":
                show(change)
        if not dry_run:
            apply(remote, manifest, changes, show)
    if output == "json":
        click.echo(json.dumps({"dryRun": dry_run, "changes": [c.as_json() for c in changes]},
                              indent=2))
        return
    counts = {action: sum(c.action == action for c in changes) for action in MARKS}
    made, changed = ("to create", "to update") if dry_run else ("created", "updated")
    summary = (f"{counts['create']} {made}, {counts['update']} {changed}, "
               f"{counts['unchanged']} unchanged")
    out.print(Text(summary + (" (dry run: nothing changed)" if dry_run else "")))


def _line(change: Change, dry_run: bool) -> Text:
    mark, style = MARKS[change.action]
    action = change.action if change.action == "unchanged" or dry_run else {
        "create": "created", "update": "updated"}[change.action]
    line = Text(f"{mark} {change.kind} {change.name}: {action}", style=style)
    for difference in change.differences:
        line.append(f"\n    {difference}")
    return line
