"""What a module's top-level names are bound to, read from its ``ast``: the statement that binds
a name last (what an import of the module sees), and the module an import takes a name from.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator


def bound_names(stmt: ast.stmt) -> Iterator[str]:
    """The top-level names ``stmt`` binds (``import a.b`` binds ``a``)."""
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


def last_binding(tree: ast.Module, name: str) -> ast.stmt | None:
    last: ast.stmt | None = None
    for stmt in tree.body:
        if name in bound_names(stmt):
            last = stmt
    return last


def imported_from(tree: ast.Module, name: str, module: str,
                  is_package: bool) -> tuple[str, str] | None:
    """(module, name) where ``name`` comes from when the module's last top-level binding of it is
    ``from M import name`` (``M`` made absolute: ``module`` is the importing module's dotted
    name, ``is_package`` whether it is a package's ``__init__``); None for any other binding."""
    last = last_binding(tree, name)
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


def imported_module(tree: ast.Module, name: str) -> str | None:
    """The module ``name`` stands for when the module's last top-level binding of it is
    ``import M as name``, or ``import name.sub`` (which binds the package ``name``); None for
    any other binding."""
    last = last_binding(tree, name)
    if not isinstance(last, ast.Import):
        return None
    alias = next(a for a in reversed(last.names) if (a.asname or a.name.split(".")[0]) == name)
    return alias.name if alias.asname else name
