"""Argument schemas of user functions, read from source without running it.

The gateway must publish a function's arguments (Mist's ``execute`` map, JSON Schema) and check
a job's arguments before queueing it, yet user code may run only in workers. So the schema comes
from the artifact's Python source through ``ast``: type hints and literal defaults of a plain
function, or the ``mistpy`` decorators of a function written for Mist.
"""

from __future__ import annotations

import ast
import copy
import json
import math
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from sparkgate.jobs.errors import InvalidArguments, InvalidArtifact

KINDS = frozenset({"int", "float", "str", "bool", "any", "list", "dict", "optional"})
_CONTAINER_KINDS = frozenset({"list", "dict", "optional"})
HANDLES = frozenset({"session", "context", "sql_context"})

# The JSON value to the right of "got" is cut here so one huge string cannot flood an error.
_MAX_SHOWN_CHARS = 40
# Bounds on an error's size: a body with a million bad items must not become a huge response.
_MAX_DETAILS = 100
_MAX_MESSAGE_PROBLEMS = 10


# ---------------------------------------------------------------------------------------------
# The data model


@dataclass(frozen=True)
class ArgType:
    """The type of one argument: a scalar kind, or a container of ``of``.

    ``of`` is the item type of a list, the value type of a dict (keys are always strings, as in
    JSON) and the inner type of an optional; it is None for scalars and ``any``.
    """

    kind: str
    of: ArgType | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown argument kind {self.kind!r}")
        if (self.kind in _CONTAINER_KINDS) != (self.of is not None):
            raise ValueError(f"kind {self.kind!r}: 'of' must be set exactly for list/dict/optional")

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind}
        if self.of is not None:
            out["of"] = self.of.to_dict()
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ArgType:
        of = d.get("of")
        return cls(d["kind"], None if of is None else cls.from_dict(of))


INT = ArgType("int")
FLOAT = ArgType("float")
STR = ArgType("str")
BOOL = ArgType("bool")
ANY = ArgType("any")


def list_of(item: ArgType) -> ArgType:
    return ArgType("list", item)


def dict_of(value: ArgType) -> ArgType:
    return ArgType("dict", value)


def optional(inner: ArgType) -> ArgType:
    """Optional of ``inner``; never Optional of Optional (``Optional[X] | None`` is one level)."""
    return inner if inner.kind == "optional" else ArgType("optional", inner)


@dataclass(frozen=True)
class Param:
    """One argument. ``default`` is a JSON value and means something only if ``has_default``.

    A parameter can be not required and still have no known default: its default in the source is
    an expression (``10**6``, a call) that Python evaluates in the worker.
    """

    name: str
    type: ArgType
    required: bool
    default: Any = None
    has_default: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "type": self.type.to_dict(),
            "required": self.required,
            "has_default": self.has_default,
            "default": self.default,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Param:
        return cls(
            name=d["name"],
            type=ArgType.from_dict(d["type"]),
            required=d["required"],
            default=d.get("default"),
            has_default=d.get("has_default", False),
        )


@dataclass(frozen=True)
class Signature:
    """What the gateway knows of a function: which Spark handle it takes and its arguments.

    ``mist`` marks functions written with the ``mistpy`` decorators, which need every argument
    passed (see ``call_kwargs``).
    """

    handle: str
    params: tuple[Param, ...]
    mist: bool = False

    def __post_init__(self) -> None:
        # Callers (and from_dict) may hand in a list; a tuple keeps the dataclass truly frozen.
        object.__setattr__(self, "params", tuple(self.params))
        if self.handle not in HANDLES:
            raise ValueError(f"unknown Spark handle {self.handle!r}")
        names = [p.name for p in self.params]
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate argument names in {names}")

    def to_mist_execute(self) -> dict[str, Any]:
        """Mist's ``FunctionInfo.execute``: ``{argName: Type}``, in declaration order."""
        out: dict[str, Any] = {}
        for p in self.params:
            # Mist shows every argument that may be left out as MOption.
            t = p.type if p.required else optional(p.type)
            out[p.name] = _mist_type(t)
        return out

    def to_json_schema(self) -> dict[str, Any]:
        """JSON Schema (draft 2020-12) of the arguments object a job is submitted with."""
        properties: dict[str, Any] = {}
        for p in self.params:
            schema = _json_schema(p.type)
            if p.has_default:
                schema["default"] = p.default
            properties[p.name] = schema
        return {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "type": "object",
            "properties": properties,
            "required": [p.name for p in self.params if p.required],
            "additionalProperties": False,
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "handle": self.handle,
            "mist": self.mist,
            "params": [p.to_dict() for p in self.params],
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Signature:
        return cls(
            handle=d["handle"],
            params=tuple(Param.from_dict(p) for p in d["params"]),
            mist=d.get("mist", False),
        )

    def call_kwargs(self, arguments: dict[str, Any]) -> dict[str, Any]:
        """Keyword arguments to call the function with, after ``validate_arguments``.

        mistpy's ``with_args`` wrapper applies only its last ``arg`` decorator, so defaults that
        Mist-era functions declared in ``arg(..., default=...)``/``opt_arg`` are not filled in by
        mistpy itself: we pass them. Plain functions get exactly what was sent, and Python
        applies the defaults written in the def.
        """
        kwargs = dict(arguments)
        if self.mist:
            for p in self.params:
                if p.name not in kwargs and p.has_default:
                    # A copy: the function may mutate a list default, and the signature is shared.
                    kwargs[p.name] = copy.deepcopy(p.default)
        return kwargs


_MIST_SCALARS = {"int": "MInt", "float": "MDouble", "str": "MString", "bool": "MBoolean"}


def _mist_type(t: ArgType) -> dict[str, Any]:
    if t.kind in _MIST_SCALARS:
        return {"type": _MIST_SCALARS[t.kind]}
    if t.kind == "any":
        return {"type": "MAny"}
    assert t.of is not None
    if t.kind == "list":
        return {"type": "MList", "args": [_mist_type(t.of)]}
    if t.kind == "dict":
        return {"type": "MMap", "args": [{"type": "MString"}, _mist_type(t.of)]}
    return {"type": "MOption", "args": [_mist_type(t.of)]}


_JSON_SCALARS = {"int": "integer", "float": "number", "str": "string", "bool": "boolean"}


def _json_schema(t: ArgType) -> dict[str, Any]:
    if t.kind in _JSON_SCALARS:
        return {"type": _JSON_SCALARS[t.kind]}
    if t.kind == "any":
        return {}
    assert t.of is not None
    if t.kind == "list":
        return {"type": "array", "items": _json_schema(t.of)}
    if t.kind == "dict":
        return {"type": "object", "additionalProperties": _json_schema(t.of)}
    return {"anyOf": [_json_schema(t.of), {"type": "null"}]}


# ---------------------------------------------------------------------------------------------
# Reading the source


@dataclass(frozen=True)
class _Where:
    """Which function of which file is being read, so every error can say so."""

    filename: str
    function: str

    def error(self, message: str, line: int | None = None) -> InvalidArtifact:
        details: dict[str, Any] = {"file": self.filename, "function": self.function}
        if line is not None:
            details["line"] = line
        return InvalidArtifact(f"{self.function} in {self.filename}: {message}", details)


class _UnsupportedHint(Exception):
    """A hint that cannot describe a JSON value; turned into InvalidArtifact by the caller."""


_SUPPORTED_HINTS = (
    "int, float, str, bool, Any, list, list[X], dict, dict[str, X], Optional[X] or X | None"
)
_MIST_SUPPORTED_HINTS = "int, float, str, bool, list, dict, list_type(X) or None"

_HANDLE_ANNOTATIONS = {
    "SparkSession": "session",
    "SparkContext": "context",
    "SQLContext": "sql_context",
}

_MIST_HANDLE_DECORATORS = {
    "on_spark_context": "context",
    "on_spark_session": "session",
    "on_hive_session": "session",
    "on_sql_context": "sql_context",
    "on_hive_context": "sql_context",
}


def inspect_source(source: str, function_name: str, filename: str = "<artifact>") -> Signature:
    """The signature of top-level function ``function_name`` in ``source``; nothing is run."""
    return _inspect_tree(_parse_module(source, filename), function_name, filename)


def _inspect_tree(tree: ast.Module, function_name: str, filename: str) -> Signature:
    where = _Where(filename, function_name)
    fn = _find_function(tree, where)
    handle, with_args = _mist_decorators(fn, where)
    if handle is not None:
        return _mist_signature(fn, handle, with_args, where)
    handle = _handle_from_annotation(_first_param(fn, where), where)
    return Signature(handle, _def_params(fn, where, typed=True), mist=False)


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


def _find_function(tree: ast.Module, where: _Where) -> ast.FunctionDef:
    # The last top-level binding of a name is what the worker's import will see.
    bindings: dict[str, ast.stmt] = {}
    for stmt in tree.body:
        for name in _bound_names(stmt):
            bindings[name] = stmt
    stmt = bindings.get(where.function)
    if stmt is None:
        defs = [n for n, s in bindings.items() if isinstance(s, ast.FunctionDef)]
        listed = ", ".join(defs) if defs else "none"
        raise InvalidArtifact(
            f"{where.filename} has no top-level function {where.function!r} "
            f"(its top-level functions: {listed})",
            {"file": where.filename, "function": where.function, "functions": defs},
        )
    if isinstance(stmt, ast.FunctionDef):
        return stmt
    raise where.error(f"must be a plain def, but it is {_what_is(stmt)}", stmt.lineno)


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


def _positional(fn: ast.FunctionDef) -> list[ast.arg]:
    return [*fn.args.posonlyargs, *fn.args.args]


def _first_param(fn: ast.FunctionDef, where: _Where) -> ast.arg:
    params = _positional(fn)
    if not params:
        raise where.error(
            "has no positional parameter: its first parameter receives the Spark handle "
            "(SparkSession, SparkContext or SQLContext)",
            fn.lineno,
        )
    return params[0]


def _handle_from_annotation(param: ast.arg, where: _Where) -> str:
    if param.annotation is None:
        return "session"
    try:
        name = _last_name(_unstring(param.annotation))
    except _UnsupportedHint:
        name = None
    if name in _HANDLE_ANNOTATIONS:
        return _HANDLE_ANNOTATIONS[name]
    raise where.error(
        f"first parameter {param.arg!r} receives the Spark handle, so its hint "
        f"{ast.unparse(param.annotation)!r} must be SparkSession, SparkContext or SQLContext "
        "(or left out, meaning SparkSession)",
        param.lineno,
    )


def _def_params(fn: ast.FunctionDef, where: _Where, typed: bool) -> tuple[Param, ...]:
    """The parameters after the first, from the def itself; ``typed=False`` reads no hints."""
    _refuse_varargs(fn, where)
    positional = _positional(fn)
    if len(fn.args.posonlyargs) > 1:
        bad = fn.args.posonlyargs[1]
        raise where.error(
            f"parameter {bad.arg!r} is positional-only: arguments are passed by name from a JSON "
            "object, so only the Spark handle may come before '/'",
            bad.lineno,
        )
    # Defaults belong to the last positional parameters, and to keyword-only ones one by one.
    defaults: list[ast.expr | None] = [None] * (len(positional) - len(fn.args.defaults))
    defaults += fn.args.defaults
    pairs = list(zip(positional, defaults, strict=True))[1:]
    pairs += zip(fn.args.kwonlyargs, fn.args.kw_defaults, strict=True)
    return tuple(_def_param(arg, default, where, typed) for arg, default in pairs)


def _refuse_varargs(fn: ast.FunctionDef, where: _Where) -> None:
    for star, node in (("*", fn.args.vararg), ("**", fn.args.kwarg)):
        if node is not None:
            raise where.error(
                f"'{star}{node.arg}' cannot be used: arguments come by name from a JSON object "
                "and must each be declared so they can be checked; name each parameter",
                node.lineno,
            )


def _def_param(arg: ast.arg, default: ast.expr | None, where: _Where, typed: bool) -> Param:
    arg_type = ANY
    if typed and arg.annotation is not None:
        try:
            arg_type = _parse_hint(arg.annotation)
        except _UnsupportedHint:
            raise where.error(
                f"parameter {arg.arg!r} has type hint {ast.unparse(arg.annotation)!r}, which "
                f"cannot be taken from JSON; supported: {_SUPPORTED_HINTS}",
                arg.lineno,
            ) from None
    if default is None:
        return Param(arg.arg, arg_type, required=True)
    known, value = _literal(default)
    if known and value is None:
        # `x: int = None` is how much code spells Optional[int].
        arg_type = optional(arg_type)
    return Param(arg.arg, arg_type, required=False, default=value, has_default=known)


def _literal(node: ast.expr) -> tuple[bool, Any]:
    """(True, value) if ``node`` is a literal that is also a JSON value, else (False, None)."""
    try:
        value = ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return False, None
    return (True, value) if _is_json(value) else (False, None)


def _is_json(value: Any) -> bool:
    if value is None or isinstance(value, bool | int | str):
        return True
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, list):
        return all(_is_json(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _is_json(v) for k, v in value.items())
    return False  # tuples, sets, bytes, complex: not what a JSON body can carry


# Hints are matched by their last dotted component: `typing.List`, `t.List` and `List` alike.
_SCALAR_HINTS = {"int": INT, "float": FLOAT, "str": STR, "bool": BOOL, "Any": ANY, "object": ANY}
_LIST_HINTS = frozenset({"list", "List", "Sequence"})
_DICT_HINTS = frozenset({"dict", "Dict", "Mapping"})


def _parse_hint(node: ast.expr) -> ArgType:
    node = _unstring(node)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
        return _union(list(_flatten_or(node)))
    if isinstance(node, ast.Subscript):
        return _parse_generic(node)
    name = _last_name(node)
    if name in _SCALAR_HINTS:
        return _SCALAR_HINTS[name]
    if name in _LIST_HINTS:
        return list_of(ANY)
    if name in _DICT_HINTS:
        return dict_of(ANY)
    raise _UnsupportedHint


def _parse_generic(node: ast.Subscript) -> ArgType:
    base = _last_name(node.value)
    items = node.slice.elts if isinstance(node.slice, ast.Tuple) else [node.slice]
    if base in _LIST_HINTS and len(items) == 1:
        return list_of(_parse_hint(items[0]))
    if base in _DICT_HINTS and len(items) == 2:
        if _parse_hint(items[0]) != STR:
            raise _UnsupportedHint  # JSON object keys are strings
        return dict_of(_parse_hint(items[1]))
    if base == "Optional" and len(items) == 1:
        return optional(_parse_hint(items[0]))
    if base == "Union":
        return _union(items)
    raise _UnsupportedHint


def _flatten_or(node: ast.expr) -> Iterator[ast.expr]:
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
        yield from _flatten_or(node.left)
        yield from _flatten_or(node.right)
    else:
        yield node


def _union(members: list[ast.expr]) -> ArgType:
    """Only ``X`` with ``None`` is a union JSON can tell apart; ``int | str`` is refused."""
    unstrung = [_unstring(m) for m in members]
    others = [m for m in unstrung if not (isinstance(m, ast.Constant) and m.value is None)]
    if len(others) != 1:
        raise _UnsupportedHint
    inner = _parse_hint(others[0])
    return optional(inner) if len(others) < len(unstrung) else inner


def _unstring(node: ast.expr) -> ast.expr:
    """The expression inside a string annotation (``"list[int]"``), or the node itself."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        try:
            return ast.parse(node.value.strip(), mode="eval").body
        except (SyntaxError, ValueError):
            raise _UnsupportedHint from None
    return node


def _last_name(node: ast.expr) -> str | None:
    """``c`` for ``c``, ``a.b.c``; None for anything that is not a (dotted) name."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    return None


# ---------------------------------------------------------------------------------------------
# Functions written for Mist (mistpy.decorators)


def _mist_decorators(fn: ast.FunctionDef, where: _Where) -> tuple[str | None, ast.Call | None]:
    """The Spark handle named by an ``on_*`` decorator (None: not a Mist function), and the
    ``with_args(...)`` call if any. Other decorators are left alone."""
    handle: str | None = None
    with_args: ast.Call | None = None
    for dec in fn.decorator_list:
        name = _last_name(dec.func if isinstance(dec, ast.Call) else dec)
        if name == "on_streaming_context":
            raise where.error(
                "uses @on_streaming_context: Spark Streaming functions are not supported",
                dec.lineno,
            )
        if name in _MIST_HANDLE_DECORATORS and not isinstance(dec, ast.Call):
            if handle is not None:
                raise where.error("has more than one mistpy @on_* decorator", dec.lineno)
            handle = _MIST_HANDLE_DECORATORS[name]
        elif name == "with_args" and isinstance(dec, ast.Call):
            if with_args is not None:
                raise where.error("has more than one @with_args decorator", dec.lineno)
            with_args = dec
    if with_args is not None and handle is None:
        raise where.error(
            "has @with_args but no mistpy @on_* decorator (such as @on_spark_context) "
            "to say which Spark handle it takes",
            with_args.lineno,
        )
    return handle, with_args


def _mist_signature(
    fn: ast.FunctionDef, handle: str, with_args: ast.Call | None, where: _Where
) -> Signature:
    _first_param(fn, where)  # mistpy passes the handle positionally, so the def needs a slot
    if with_args is None:
        # Mist listed such a function's parameters after the first, untyped.
        return Signature(handle, _def_params(fn, where, typed=False), mist=True)
    params = _with_args_params(with_args, where)
    _check_def_accepts(fn, params, where)
    return Signature(handle, params, mist=True)


def _with_args_params(call: ast.Call, where: _Where) -> tuple[Param, ...]:
    if call.keywords:
        raise where.error("with_args takes only arg(...) and opt_arg(...) calls", call.lineno)
    params: list[Param] = []
    for item in call.args:
        func = _last_name(item.func) if isinstance(item, ast.Call) else None
        if not isinstance(item, ast.Call) or func not in ("arg", "opt_arg"):
            raise where.error(
                f"with_args argument {ast.unparse(item)!r} must be an arg(...) or opt_arg(...) "
                "call written inline, so it can be read without running the file",
                item.lineno,
            )
        param = _mist_arg(item, func == "opt_arg", where)
        if any(p.name == param.name for p in params):
            raise where.error(f"with_args declares {param.name!r} twice", item.lineno)
        params.append(param)
    return tuple(params)


_ARG_PARAMETERS = ("name", "type_hint", "default", "optional")
_OPT_ARG_PARAMETERS = ("name", "type_hint")


def _mist_arg(call: ast.Call, is_opt_arg: bool, where: _Where) -> Param:
    """One ``arg(name, type_hint, default=None, optional=False)`` / ``opt_arg(name, type_hint)``,
    with mistpy's meaning: ``default=None`` is no default; optional means default None."""
    given = _bind_call(call, _OPT_ARG_PARAMETERS if is_opt_arg else _ARG_PARAMETERS, where)
    name_node = given.get("name")
    if not (isinstance(name_node, ast.Constant) and isinstance(name_node.value, str)):
        raise where.error(f"{ast.unparse(call)}: the name must be a string literal", call.lineno)
    name = name_node.value
    arg_type = _mist_arg_type(name, given.get("type_hint"), call, where)
    if is_opt_arg or _literal_flag(given.get("optional"), call, where):
        return Param(name, optional(arg_type), required=False, default=None, has_default=True)
    default_node = given.get("default")
    if default_node is None:
        return Param(name, arg_type, required=True)
    known, default = _literal(default_node)
    if not known:
        # We must pass it ourselves (see Signature.call_kwargs), so its value must be known.
        raise where.error(
            f"argument {name!r} has default {ast.unparse(default_node)!r}: it must be a JSON "
            "literal (number, string, true/false, list, dict)",
            call.lineno,
        )
    if default is None:
        return Param(name, arg_type, required=True)
    return Param(name, arg_type, required=False, default=default, has_default=True)


def _mist_arg_type(name: str, hint: ast.expr | None, call: ast.Call, where: _Where) -> ArgType:
    if hint is None:
        return ANY  # mistpy requires a type_hint, but None and a missing one mean the same
    try:
        return _mist_hint(hint)
    except _UnsupportedHint:
        raise where.error(
            f"argument {name!r} has type_hint {ast.unparse(hint)!r}; "
            f"supported: {_MIST_SUPPORTED_HINTS}",
            call.lineno,
        ) from None


def _bind_call(call: ast.Call, names: tuple[str, ...], where: _Where) -> dict[str, ast.expr]:
    """Positional and keyword arguments of ``call`` by parameter name, as Python would bind them."""
    where_text = ast.unparse(call)
    if len(call.args) > len(names) or any(isinstance(a, ast.Starred) for a in call.args):
        raise where.error(f"{where_text}: unexpected positional arguments", call.lineno)
    given = dict(zip(names, call.args, strict=False))
    for kw in call.keywords:
        if kw.arg is None or kw.arg not in names or kw.arg in given:
            raise where.error(f"{where_text}: unexpected keyword argument", call.lineno)
        given[kw.arg] = kw.value
    return given


def _literal_flag(node: ast.expr | None, call: ast.Call, where: _Where) -> bool:
    if node is None:
        return False
    if isinstance(node, ast.Constant) and isinstance(node.value, bool):
        return node.value
    raise where.error(f"{ast.unparse(call)}: optional must be True or False", call.lineno)


def _mist_hint(node: ast.expr) -> ArgType:
    if isinstance(node, ast.Constant) and node.value is None:
        return ANY  # as Mist did
    if isinstance(node, ast.Call) and _last_name(node.func) == "list_type":
        if len(node.args) != 1 or node.keywords:
            raise _UnsupportedHint
        return list_of(_mist_hint(node.args[0]))
    name = _last_name(node)
    if name in ("int", "float", "str", "bool"):
        return _SCALAR_HINTS[name]
    if name == "list":
        return list_of(ANY)
    if name == "dict":
        return dict_of(ANY)
    raise _UnsupportedHint


def _check_def_accepts(fn: ast.FunctionDef, params: tuple[Param, ...], where: _Where) -> None:
    """Every with_args name must be a parameter of the def, or the call fails in the worker."""
    if fn.args.kwarg is not None:
        return
    accepted = {a.arg for a in _positional(fn)[1:]} | {a.arg for a in fn.args.kwonlyargs}
    for p in params:
        if p.name not in accepted:
            raise where.error(
                f"with_args declares {p.name!r} but the def has no parameter of that name",
                fn.lineno,
            )


# ---------------------------------------------------------------------------------------------
# Checking a job's arguments


@dataclass(frozen=True)
class _Problem:
    field: str
    expected: str
    got: str
    text: str  # the sentence for the error message


class _Problems:
    """Collects problems; counts all, keeps the first _MAX_DETAILS."""

    def __init__(self) -> None:
        self.kept: list[_Problem] = []
        self.count = 0

    def add(self, field: str, expected: str, got: str, text: str | None = None) -> None:
        self.count += 1
        if len(self.kept) < _MAX_DETAILS:
            text = text or f"{field}: expected {expected}, got {got}"
            self.kept.append(_Problem(field, expected, got, text))


def validate_arguments(sig: Signature, arguments: object) -> dict[str, Any]:
    """``arguments`` (the parsed request body) as the function declares them, if they fit
    ``sig``; else one InvalidArguments that lists every problem.

    JSON does not tell 2 from 2.0, so integers given for ``float`` arguments become floats:
    a function that builds a Spark ``double`` column from them must get floats.
    """
    if not isinstance(arguments, dict):
        raise InvalidArguments(
            f"the request body must be a JSON object of arguments, got {_json_type(arguments)}",
            [{"field": "(body)", "expected": "object", "got": _describe_value(arguments)}],
        )
    problems = _Problems()
    by_name = {p.name: p for p in sig.params}
    for key, value in arguments.items():
        param = by_name.get(key)
        if param is None:
            _unknown(sig, str(key), problems)
        else:
            _check(param.type, value, str(key), problems)
    for p in sig.params:
        if p.required and p.name not in arguments:
            expected = _describe_type(p.type)
            problems.add(p.name, expected, "nothing", f"{p.name}: missing ({expected})")
    if problems.count:
        raise _invalid(problems)
    return {k: _as_declared(by_name[k].type, v) for k, v in arguments.items()}


def _as_declared(t: ArgType, value: Any) -> Any:
    """``value`` (already checked against ``t``) with integers made floats where ``t`` says so."""
    if t.kind == "float":
        return float(value)
    if value is None or t.of is None or t.kind not in ("list", "dict", "optional"):
        return value
    if t.kind == "optional":
        return _as_declared(t.of, value)
    if t.kind == "list":
        return [_as_declared(t.of, item) for item in value]
    return {key: _as_declared(t.of, item) for key, item in value.items()}


def _unknown(sig: Signature, key: str, problems: _Problems) -> None:
    names = ", ".join(p.name for p in sig.params)
    expected = f"one of: {names}" if names else "no arguments"
    problems.add(key, expected, key, f"{key}: unknown argument (expected {expected})")


def _invalid(problems: _Problems) -> InvalidArguments:
    texts = [p.text for p in problems.kept[:_MAX_MESSAGE_PROBLEMS]]
    if problems.count > len(texts):
        texts.append(f"and {problems.count - len(texts)} more")
    noun = "invalid argument" if problems.count == 1 else f"{problems.count} invalid arguments"
    details = [{"field": p.field, "expected": p.expected, "got": p.got} for p in problems.kept]
    return InvalidArguments(f"{noun}: " + "; ".join(texts), details)


def _check(
    t: ArgType, value: Any, path: str, problems: _Problems, label: str | None = None
) -> None:
    """Add a problem for each place where ``value`` does not fit ``t``. ``label`` is what to call
    the expected type if the value itself does not fit (an Optional says "... or null")."""
    if t.kind == "any":
        return
    if t.kind == "optional":
        if value is not None:
            assert t.of is not None
            _check(t.of, value, path, problems, label or _describe_type(t))
        return
    if not _fits(t.kind, value):
        expected = label or _describe_type(t)
        if t.kind == "float" and isinstance(value, int | float) and not isinstance(value, bool):
            expected = "finite " + expected  # only NaN, infinities and huge integers fail here
        problems.add(path, expected, _describe_value(value))
        return
    item_type = t.of
    if item_type is None or item_type.kind == "any":
        return
    if t.kind == "list":
        for i, item in enumerate(value):
            _check(item_type, item, f"{path}[{i}]", problems)
    else:
        for key, item in value.items():
            _check(item_type, item, _key_path(path, str(key)), problems)


def _fits(kind: str, value: Any) -> bool:
    """Does ``value`` have the JSON shape of ``kind`` (items unchecked)?"""
    if kind == "int":
        # bool is an int in Python but not in JSON; 1.5 and 2.0 are numbers, not integers.
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "float":
        if isinstance(value, float):
            return math.isfinite(value)  # json.loads lets NaN and Infinity through
        return isinstance(value, int) and not isinstance(value, bool) and _fits_double(value)
    if kind == "str":
        return isinstance(value, str)
    if kind == "bool":
        return isinstance(value, bool)
    if kind == "list":
        return isinstance(value, list)
    return isinstance(value, dict)


def _fits_double(value: int) -> bool:
    """An integer sent for a float must become one (10**400 cannot)."""
    try:
        float(value)
    except OverflowError:
        return False
    return True


_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


def _key_path(path: str, key: str) -> str:
    # `weights.AAPL`, but `weights["BRK.B"]` when the key would make the dotted path ambiguous.
    return f"{path}.{key}" if _IDENTIFIER.match(key) else f"{path}[{json.dumps(key)}]"


def _describe_type(t: ArgType) -> str:
    if t.kind in _JSON_SCALARS:
        return _JSON_SCALARS[t.kind]
    if t.kind == "any":
        return "any value"
    assert t.of is not None
    inner = _describe_type(t.of)
    if t.kind == "optional":
        return f"{inner} or null"
    if t.of.kind == "optional":
        inner = f"({inner})"
    if t.kind == "list":
        return "array" if t.of.kind == "any" else f"array of {inner}"
    return "object" if t.of.kind == "any" else f"object with {inner} values"


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def _describe_value(value: object) -> str:
    """What came, briefly: ``string "abc"``, ``number 1.5``, ``array of 3``, ``object``."""
    kind = _json_type(value)
    if isinstance(value, bool):
        return f"boolean {'true' if value else 'false'}"
    if isinstance(value, str):
        shown = json.dumps(value[:_MAX_SHOWN_CHARS], ensure_ascii=False)
        return f'string {shown[:-1]}…"' if len(value) > _MAX_SHOWN_CHARS else f"string {shown}"
    if isinstance(value, float):
        return f"number {json.dumps(value)}"  # NaN and Infinity spelt as json.loads reads them
    if isinstance(value, int):
        return f"number {_short_int(value)}"
    if isinstance(value, list):
        return f"array of {len(value)}"
    return kind


def _short_int(value: int) -> str:
    try:
        text = str(value)
    except ValueError:  # more digits than Python will print
        return "(very large)"
    return text if len(text) <= _MAX_SHOWN_CHARS else text[:_MAX_SHOWN_CHARS] + "…"
