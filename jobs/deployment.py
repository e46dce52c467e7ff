"""Deploying code: checking an artifact before it is stored, and building a function's record
(with its argument schema) from the artifact it names. Used by the HTTP API and by ``serve``
when it deploys the examples, so both check exactly the same things.

An artifact is a ``.py`` file or a package archive (``.zip``, ``.egg``, ``.whl``; see
``jobs.archives``). Either way every check runs before anything is stored.
"""

from __future__ import annotations

import ast
from collections.abc import Sequence
from typing import Any

from sparkgate.jobs.archives import (
    PACKAGE_SUFFIXES,
    ArchiveLimits,
    Package,
    is_package,
    read_package,
)
from sparkgate.jobs.artifacts import Artifact
from sparkgate.jobs.catalog import Catalog
from sparkgate.jobs.environments import Environments
from sparkgate.jobs.errors import BadRequest, InvalidArtifact, NotFound
from sparkgate.jobs.functions import Function
from sparkgate.jobs.placement import check_placement
from sparkgate.jobs.requirements import environment_id, normalized, wheel_requirements
from sparkgate.jobs.settings import Settings
from sparkgate.jobs.signatures.model import Signature
from sparkgate.jobs.signatures.reading import inspect_package, inspect_source

ARTIFACT_SUFFIXES = (".py", *PACKAGE_SUFFIXES)

# What a checked artifact holds: the source of a .py file, or a package's paths and sources.
Code = str | Package


def default_limits(content: bytes = b"") -> ArchiveLimits:
    """Limits for an archive when the caller has no settings at hand (code already stored was
    checked on upload with the configured ones): never smaller than the archive itself needs."""
    return ArchiveLimits.for_artifact_bytes(max(len(content), Settings.max_artifact_bytes))


def upload_artifact(catalog: Catalog, name: str, content: bytes, replace: bool,
                    limits: ArchiveLimits | None = None, requirements: Sequence[str] = (),
                    environments: Environments | None = None) -> Artifact:
    """Check and store an artifact. Replacing one re-reads the schema of every function that
    uses it, in the same transaction; if the new code no longer has a function one of them
    names, or makes one a Spark function whose default context has no Spark, nothing is
    stored and the error says which. ``limits`` bound a package archive (by default, derived
    from the default ``max_artifact_bytes``).

    ``requirements`` (checked lines, see jobs/requirements.py), with a wheel's own
    Requires-Dist, make the environment its functions run in: built here, in
    ``environments``, before anything is stored, so one that cannot be installed fails the
    upload with the installer's message."""
    code = checked_code(name, content, limits or default_limits())
    lines = _requirements(name, content, requirements)
    refreshed: dict[str, dict[str, Any] | None] = {}
    if replace:
        for function in catalog.list_functions():
            if function.path == name and function.signature is not None:
                signature = _signature(code, function.class_name, name, function.name)
                check_placement(function.name, signature,
                                catalog.get_context(function.default_context), "defaultContext")
                refreshed[function.name] = signature.to_dict()
    if lines:  # last of the checks: the slowest
        _build_environment(environments, lines)
    return catalog.put_artifact(name, content, replace, refreshed, lines)


def _requirements(name: str, content: bytes, given: Sequence[str]) -> tuple[str, ...]:
    own = wheel_requirements(content) if name.endswith(".whl") else ()
    return normalized([*given, *own])


def _build_environment(environments: Environments | None, lines: Sequence[str]) -> None:
    if environments is None:
        raise BadRequest("requirements: this deployment builds no environments",
                         {"field": "requirements"})
    environment = environment_id(lines)
    assert environment is not None
    environments.ensure(environment, lines)


def signature_of(code: Code, class_name: str, path: str) -> Signature:
    """``class_name``'s signature in checked code: a function of a .py file, or
    ``module.function`` in a package."""
    if isinstance(code, Package):
        return inspect_package(code.sources.get, class_name, path)
    return inspect_source(code, class_name, path)


def checked_code(name: str, content: bytes, limits: ArchiveLimits) -> Code:
    """The artifact's code after every check an upload makes; InvalidArtifact otherwise."""
    if is_package(name):
        return read_package(name, content, limits)
    return _checked_source(name, content)


def build_function(catalog: Catalog, name: str, path: str, class_name: str, context: str,
                   tags: list[str], inspect: bool, cache_ms: int | None = None) -> Function:
    """The function record for ``class_name`` in artifact ``path``; ``inspect=False`` (Mist's
    ``force``) stores it without reading a schema, so its arguments are not checked.
    ``cache_ms``: how long its results are reused (jobs/result_cache.py); None: never."""
    try:
        artifact = catalog.get_artifact(path)
    except NotFound:
        raise BadRequest(f"path: artifact {path!r} does not exist; upload it first",
                         {"field": "path", "got": path}) from None
    try:
        target = catalog.get_context(context)
    except NotFound:
        raise BadRequest(f"defaultContext: context {context!r} does not exist; create it first",
                         {"field": "defaultContext", "got": context}) from None
    signature = None
    if inspect:
        content = catalog.artifact_content(artifact.sha1)
        code = checked_code(path, content, default_limits(content))
        read = signature_of(code, class_name, path)
        check_placement(name, read, target, "defaultContext")
        signature = read.to_dict()
    return Function(name=name, path=path, class_name=class_name, default_context=context,
                    signature=signature, tags=tags, cache_ms=cache_ms)


def _signature(code: Code, class_name: str, path: str, function: str) -> Signature:
    try:
        return signature_of(code, class_name, path)
    except InvalidArtifact as exc:
        raise InvalidArtifact(
            f"the new {path!r} does not fit function {function!r}, which uses it: "
            f"{exc.message}; update or delete the function, or upload under a new name",
            {"function": function, "cause": exc.details},
        ) from None


def _checked_source(name: str, content: bytes) -> str:
    if not name.endswith(ARTIFACT_SUFFIXES):
        raise InvalidArtifact(
            f"artifact {name!r}: expected a file ending in {', '.join(ARTIFACT_SUFFIXES)}",
            {"field": "file name", "expected": list(ARTIFACT_SUFFIXES), "got": name},
        )
    try:
        source = content.decode("utf-8")
        # Parsing runs no code: it only tells the uploader about a syntax error now, not at
        # the first job.
        ast.parse(source, filename=name)
    except UnicodeDecodeError:
        raise InvalidArtifact(f"artifact {name!r} is not UTF-8 text") from None
    except (SyntaxError, ValueError) as exc:  # ValueError: source with a NUL byte
        line = getattr(exc, "lineno", None)
        raise InvalidArtifact(
            f"artifact {name!r} has a syntax error at line {line}: "
            f"{getattr(exc, 'msg', exc)}", {"line": line},
        ) from None
    return source
