"""Reading a function's signature from an artifact's source with ``ast``: finding the function in
a file, or in a package artifact's modules, without importing or running anything.
"""

from __future__ import annotations

import ast
from collections.abc import Callable, Iterator

from sparkgate.jobs.errors import InvalidArtifact
from sparkgate.jobs.signatures.classes import ModuleClasses
from sparkgate.jobs.signatures.mist import mist_signature
from sparkgate.jobs.signatures.model import Signature
from sparkgate.jobs.signatures.plain import Where, plain_signature


def inspect_source(source: str, function_name: str, filename: str = "<artifact>") -> Signature:
    """The signature of top-level function ``function_name`` in ``source``; nothing is run."""
    return _inspect_tree(_parse_module(source, filename), function_name, filename)


def _inspect_tree(tree: ast.Module, function_name: str, filename: str) -> Signature:
    where = Where(filename, function_name)
    fn = _find_function(tree, where)
    signature = mist_signature(fn, where)
    if signature is None:
        return plain_signature(fn, where, ModuleClasses(tree))
    return signature


# A function re-exported from module to module (``from .jobs import pi`` in ``__init__.py``,
# as Mist's own python examples did) is followed this many times at most.
MAX_REEXPORTS = 8


def inspect_package(read: Callable[[str], bytes | None], class_name: str,
                    artifact: str) -> Signature:
    """The signature of ``class_name`` (``module.function``, the module dotted as in an import:
    ``mypkg.jobs.pi``, or ``tool.run`` for a top-level ``tool.py``) in a package artifact.

    ``read`` gives the bytes of a file of the archive by its path (``mypkg/jobs.py``), or None.
    A name the module imports from another module of the archive is followed there; nothing is
    imported or run.
    """
    module, _, function = class_name.rpartition(".")
    if not module or not function:
        raise InvalidArtifact(
            f"className {class_name!r}: in package artifact {artifact!r} a function is named "
            f"module.function, as in an import (e.g. mypkg.jobs.{class_name or 'run'})",
            {"field": "className", "expected": "module.function", "got": class_name},
        )
    seen: set[tuple[str, str]] = set()
    via: str | None = None
    for _ in range(MAX_REEXPORTS):
        seen.add((module, function))
        path, source = _module_source(read, module, artifact, via)
        filename = f"{artifact}:{path}"
        tree = _parse_module(source, filename)
        origin = _imported_from(tree, function, module, path.endswith("/__init__.py"))
        if origin is None or origin in seen:
            return _inspect_tree(tree, function, filename)
        via = f"{filename} imports {function!r} from {origin[0]!r}"
        module, function = origin
    raise InvalidArtifact(
        f"className {class_name!r}: re-exported more than {MAX_REEXPORTS} times in "
        f"{artifact!r}; name the module that defines it",
        {"field": "className", "got": class_name},
    )


def _module_source(read: Callable[[str], bytes | None], module: str, artifact: str,
                   via: str | None) -> tuple[str, str]:
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
    if via is not None:
        message = (f"{via}, which is not a module of the archive (no {base}.py or "
                   f"{base}/__init__.py): schemas are read from the archive's own source; "
                   "name the module that defines the function")
    else:
        message = (f"{artifact!r} has no module {module!r} (expected {base}.py or "
                   f"{base}/__init__.py)")
    raise InvalidArtifact(message, {"artifact": artifact, "module": module})


def _imported_from(tree: ast.Module, name: str, module: str,
                   is_package: bool) -> tuple[str, str] | None:
    """(module, name) where ``name`` comes from when the module's last top-level binding of it is
    ``from M import name``; None for any other binding (which inspection then judges)."""
    last: ast.stmt | None = None
    for stmt in tree.body:
        if name in _bound_names(stmt):
            last = stmt
    if not isinstance(last, ast.ImportFrom):
        return None
    alias = next(a for a in last.names if (a.asname or a.name) == name)
    if alias.name == "*":
        return None
    if last.level == 0:
        source = last.module or ""
    else:
        package = module.split(".") if is_package else module.split(".")[:-1]
        keep = len(package) - (last.level - 1)
        if keep < 0:
            return None
        source = ".".join([*package[:keep], *([last.module] if last.module else [])])
    return (source, alias.name) if source else None


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
        for name in _bound_names(stmt):
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


def _bound_names(stmt: ast.stmt) -> Iterator[str]:
    if isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
        yield stmt.name
    elif isinstance(stmt, ast.Assign | ast.AnnAssign | ast.AugAssign):
        targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]
        for target in targets:
            for node in ast.walk(target):
                if isinstance(node, ast.Name):
                    yield node.id
    elif isinstance(stmt, ast.Import | ast.ImportFrom):
        for alias in stmt.names:
            yield alias.asname or alias.name.split(".")[0]


def _what_is(stmt: ast.stmt) -> str:
    if isinstance(stmt, ast.AsyncFunctionDef):
        return "an async def"
    if isinstance(stmt, ast.ClassDef):
        return "a class"
    if isinstance(stmt, ast.Import | ast.ImportFrom):
        return "an imported name"
    return f"a name assigned at line {stmt.lineno}"
