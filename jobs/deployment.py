"""Deploying code: checking an artifact before it is stored, and building a function's record
(with its argument schema) from the artifact it names. Used by the HTTP API and by ``serve``
when it deploys the examples, so both check exactly the same things.
"""

from __future__ import annotations

import ast
from typing import Any

from jobs.catalog import Artifact, Catalog, Function
from jobs.errors import BadRequest, InvalidArtifact, NotFound
from jobs.signatures import inspect_source

ARTIFACT_SUFFIXES = (".py",)


def upload_artifact(catalog: Catalog, name: str, content: bytes, replace: bool) -> Artifact:
    """Check and store an artifact. Replacing one re-reads the schema of every function that
    uses it, in the same transaction; if the new code no longer has a function one of them
    names, nothing is stored and the error says which."""
    source = _checked_source(name, content)
    refreshed: dict[str, dict[str, Any] | None] = {}
    if replace:
        for function in catalog.list_functions():
            if function.path == name and function.signature is not None:
                refreshed[function.name] = _signature(source, function.class_name, name,
                                                      function.name)
    return catalog.put_artifact(name, content, replace, refreshed)


def build_function(catalog: Catalog, name: str, path: str, class_name: str, context: str,
                   tags: list[str], inspect: bool) -> Function:
    """The function record for ``class_name`` in artifact ``path``; ``inspect=False`` (Mist's
    ``force``) stores it without reading a schema, so its arguments are not checked."""
    try:
        artifact = catalog.get_artifact(path)
    except NotFound:
        raise BadRequest(f"path: artifact {path!r} does not exist; upload it first",
                         {"field": "path", "got": path}) from None
    if not catalog.context_exists(context):
        raise BadRequest(f"defaultContext: context {context!r} does not exist; create it first",
                         {"field": "defaultContext", "got": context})
    signature = None
    if inspect:
        source = _checked_source(path, catalog.artifact_content(artifact.sha1))
        signature = inspect_source(source, class_name, path).to_dict()
    return Function(name=name, path=path, class_name=class_name, default_context=context,
                    signature=signature, tags=tags)


def _signature(source: str, class_name: str, path: str, function: str) -> dict[str, Any]:
    try:
        return inspect_source(source, class_name, path).to_dict()
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
