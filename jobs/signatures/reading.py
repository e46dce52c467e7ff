"""Reading a function's signature from an artifact's source with ``ast``: finding the function in
a file, or in a package artifact's modules, without importing or running anything.
"""

from __future__ import annotations

import ast
from collections.abc import Callable
from dataclasses import dataclass

from sparkgate.jobs.errors import InvalidArtifact
from sparkgate.jobs.signatures.classes import InArchive, ModuleClasses
from sparkgate.jobs.signatures.imports import bound_names, imported_from
from sparkgate.jobs.signatures.mist import mist_signature
from sparkgate.jobs.signatures.model import Signature
from sparkgate.jobs.signatures.plain import Where, plain_signature


def inspect_source(source: str, function_name: str, filename: str = "<artifact>") -> Signature:
    """The signature of top-level function ``function_name`` in ``source``; nothing is run.
    Its hints may name the file's own classes only: its imports are not followed."""
    tree = _parse_module(source, filename)
    return _inspect_tree(tree, function_name, filename, ModuleClasses(tree))


def _inspect_tree(tree: ast.Module, function_name: str, filename: str,
                  classes: ModuleClasses) -> Signature:
    where = Where(filename, function_name)
    fn = _find_function(tree, where)
    signature = mist_signature(fn, where)
    if signature is None:
        return plain_signature(fn, where, classes)
    return signature


# A function re-exported from module to module (``from .jobs import pi`` in ``__init__.py``,
# as Mist's own python examples did) is followed this many times at most.
MAX_REEXPORTS = 8


def inspect_package(read: Callable[[str], bytes | None], class_name: str,
                    artifact: str) -> Signature:
    """The signature of ``class_name`` (``module.function``, the module dotted as in an import:
    ``mypkg.jobs.pi``, or ``tool.run`` for a top-level ``tool.py``) in a package artifact.

    ``read`` gives the bytes of a file of the archive by its path (``mypkg/jobs.py``), or None.
    The function's name, and the classes its hints name, are followed through the module's
    imports to the archive's other modules; nothing is imported or run.
    """
    module, _, function = class_name.rpartition(".")
    if not module or not function:
        raise InvalidArtifact(
            f"className {class_name!r}: in package artifact {artifact!r} a function is named "
            f"module.function, as in an import (e.g. mypkg.jobs.{class_name or 'run'})",
            {"field": "className", "expected": "module.function", "got": class_name},
        )
    archive = _Archive(read, artifact)
    seen: set[tuple[str, str]] = set()
    via: str | None = None
    for _ in range(MAX_REEXPORTS):
        seen.add((module, function))
        found = archive.module(module)
        if found is None:
            raise _no_module(module, artifact, via)
        origin = imported_from(found.tree, function, module, found.where.is_package)
        if origin is None or origin in seen:
            return _inspect_tree(found.tree, function, found.filename, found.classes)
        via = f"{found.filename} imports {function!r} from {origin[0]!r}"
        module, function = origin
    raise InvalidArtifact(
        f"className {class_name!r}: re-exported more than {MAX_REEXPORTS} times in "
        f"{artifact!r}; name the module that defines it",
        {"field": "className", "got": class_name},
    )


@dataclass(frozen=True)
class _Module:
    """A module of a package artifact, parsed."""

    where: InArchive
    filename: str  # ``artifact:path``, as errors name it
    tree: ast.Module
    classes: ModuleClasses


class _Archive:
    """The modules of a package artifact as one inspection reads them: each parsed once, when
    first named (by the function's name, or by a class a hint names)."""

    def __init__(self, read: Callable[[str], bytes | None], artifact: str) -> None:
        self._read = read
        self._artifact = artifact
        self._modules: dict[str, _Module | None] = {}

    def module(self, name: str) -> _Module | None:
        """Module ``name`` (dotted), or None when the archive has no file of it."""
        if name not in self._modules:
            self._modules[name] = self._parsed(name)
        return self._modules[name]

    def classes(self, module: str) -> ModuleClasses | None:
        found = self.module(module)
        return None if found is None else found.classes

    def _parsed(self, name: str) -> _Module | None:
        found = _module_file(self._read, name, self._artifact)
        if found is None:
            return None
        path, source = found
        filename = f"{self._artifact}:{path}"
        tree = _parse_module(source, filename)
        where = InArchive(self, name, path.endswith("/__init__.py"))
        return _Module(where, filename, tree, ModuleClasses(tree, where))


def _module_file(read: Callable[[str], bytes | None], module: str,
                 artifact: str) -> tuple[str, str] | None:
    """(path, source) of dotted ``module`` in the archive, or None when it has no such file."""
    base = module.replace(".", "/")
    for path in (f"{base}.py", f"{base}/__init__.py"):
        content = read(path)
        if content is None:
            continue
        try:
            return path, content.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidArtifact(f"{artifact}:{path} is not UTF-8 text",
                                  {"file": f"{artifact}:{path}"}) from None
    return None


def _no_module(module: str, artifact: str, via: str | None) -> InvalidArtifact:
    base = module.replace(".", "/")
    if via is not None:
        message = (f"{via}, which is not a module of the archive (no {base}.py or "
                   f"{base}/__init__.py): schemas are read from the archive's own source; "
                   "name the module that defines the function")
    else:
        message = (f"{artifact!r} has no module {module!r} (expected {base}.py or "
                   f"{base}/__init__.py)")
    return InvalidArtifact(message, {"artifact": artifact, "module": module})


def _parse_module(source: str, filename: str) -> ast.Module:
    try:
        tree = ast.parse(source, filename)
        # Compiling (not running) also catches what the parser lets through, such as duplicate
        # parameter names, so a file that cannot be imported in the worker is refused here.
        compile(tree, filename, "exec", dont_inherit=True)
    except SyntaxError as e:
        raise InvalidArtifact(
            f"{filename}: syntax error at line {e.lineno}: {e.msg}",
            {"file": filename, "line": e.lineno},
        ) from None
    except (ValueError, RecursionError, MemoryError) as e:
        # Null bytes (ValueError) or absurdly deep nesting: not a Python file we can read.
        raise InvalidArtifact(
            f"{filename}: cannot be read as Python: {e}", {"file": filename}
        ) from None
    return tree


def _find_function(tree: ast.Module, where: Where) -> ast.FunctionDef:
    # The last top-level binding of a name is what the worker's import will see.
    bindings: dict[str, ast.stmt] = {}
    for stmt in tree.body:
        for name in bound_names(stmt):
            bindings[name] = stmt
    bound = bindings.get(where.function)
    if bound is None:
        defs = [n for n, s in bindings.items() if isinstance(s, ast.FunctionDef)]
        listed = ", ".join(defs) if defs else "none"
        raise InvalidArtifact(
            f"{where.filename} has no top-level function {where.function!r} "
            f"(its top-level functions: {listed})",
            {"file": where.filename, "function": where.function, "functions": defs},
        )
    if isinstance(bound, ast.FunctionDef):
        return bound
    raise where.error(f"must be a plain def, but it is {_what_is(bound)}", bound.lineno)


def _what_is(stmt: ast.stmt) -> str:
    if isinstance(stmt, ast.AsyncFunctionDef):
        return "an async def"
    if isinstance(stmt, ast.ClassDef):
        return "a class"
    if isinstance(stmt, ast.Import | ast.ImportFrom):
        return "an imported name"
    return f"a name assigned at line {stmt.lineno}"
