"""Functions written for Mist: the Spark handle and the arguments from the ``mistpy``
decorators (``@on_spark_context``, ``@with_args(arg(...), opt_arg(...))``).
"""

from __future__ import annotations

import ast
import functools
import importlib.util
from pathlib import Path

from sparkgate.jobs.signatures.hints import SCALAR_HINTS, UnsupportedHint, last_name, literal
from sparkgate.jobs.signatures.model import (
    ANY,
    ArgType,
    Param,
    Signature,
    dict_of,
    list_of,
    optional,
)
from sparkgate.jobs.signatures.plain import Where, def_params, positional_params, returns_stream

_SUPPORTED_HINTS = "int, float, str, bool, list, dict, list_type(X) or None"

_HANDLE_DECORATORS = {
    "on_spark_context": "context",
    "on_spark_session": "session",
    "on_hive_session": "session",
    "on_sql_context": "sql_context",
    "on_hive_context": "sql_context",
    "on_streaming_context": "streaming_context",
}


def mist_signature(fn: ast.FunctionDef, where: Where) -> Signature | None:
    """What ``fn``'s mistpy decorators declare; None when it has no ``on_*`` decorator, as a
    plain function has not."""
    handle, with_args = _decorators(fn, where)
    if handle is None:
        return None
    if not positional_params(fn):
        # mistpy passes the handle positionally, so the def needs a slot for it.
        raise where.error(
            "has no positional parameter: its first parameter receives the Spark handle "
            "(SparkSession, SparkContext or SQLContext)",
            fn.lineno,
        )
    streaming = handle == "streaming_context" or returns_stream(fn)
    if with_args is None:
        # Mist listed such a function's parameters after the first, untyped.
        return Signature(handle, def_params(fn, where, typed=False, after_handle=True),
                         mist=True, streaming=streaming)
    params = _with_args_params(with_args, where)
    _check_def_accepts(fn, params, where)
    return Signature(handle, params, mist=True, streaming=streaming)


def _decorators(fn: ast.FunctionDef, where: Where) -> tuple[str | None, ast.Call | None]:
    """The Spark handle named by an ``on_*`` decorator (None: not a Mist function), and the
    ``with_args(...)`` call if any. Other decorators are left alone."""
    handle: str | None = None
    with_args: ast.Call | None = None
    for dec in fn.decorator_list:
        name = last_name(dec.func if isinstance(dec, ast.Call) else dec)
        if name == "on_streaming_context" and not dstreams_available():
            raise where.error(
                "uses @on_streaming_context, but the pyspark installed here has no Spark "
                "Streaming (DStreams, the pyspark.streaming package, deprecated since Spark 3.4): "
                "port the function to Structured Streaming (docs/streaming.md)",
                dec.lineno,
            )
        if name in _HANDLE_DECORATORS and not isinstance(dec, ast.Call):
            if handle is not None:
                raise where.error("has more than one mistpy @on_* decorator", dec.lineno)
            handle = _HANDLE_DECORATORS[name]
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


@functools.cache
def dstreams_available() -> bool:
    """Whether the installed pyspark has DStreams (``pyspark.streaming``), found without
    importing pyspark: the gateway reads signatures, and need not load Spark's Python side."""
    spec = importlib.util.find_spec("pyspark")
    locations = spec.submodule_search_locations if spec is not None else None
    return any((Path(folder) / "streaming" / "context.py").is_file()
               for folder in locations or ())


def _with_args_params(call: ast.Call, where: Where) -> tuple[Param, ...]:
    if call.keywords:
        raise where.error("with_args takes only arg(...) and opt_arg(...) calls", call.lineno)
    params: list[Param] = []
    for item in call.args:
        func = last_name(item.func) if isinstance(item, ast.Call) else None
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


def _mist_arg(call: ast.Call, is_opt_arg: bool, where: Where) -> Param:
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
    known, default = literal(default_node)
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


def _mist_arg_type(name: str, hint: ast.expr | None, call: ast.Call, where: Where) -> ArgType:
    if hint is None:
        return ANY  # mistpy requires a type_hint, but None and a missing one mean the same
    try:
        return _mist_hint(hint)
    except UnsupportedHint:
        raise where.error(
            f"argument {name!r} has type_hint {ast.unparse(hint)!r}; "
            f"supported: {_SUPPORTED_HINTS}",
            call.lineno,
        ) from None


def _bind_call(call: ast.Call, names: tuple[str, ...], where: Where) -> dict[str, ast.expr]:
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


def _literal_flag(node: ast.expr | None, call: ast.Call, where: Where) -> bool:
    if node is None:
        return False
    if isinstance(node, ast.Constant) and isinstance(node.value, bool):
        return node.value
    raise where.error(f"{ast.unparse(call)}: optional must be True or False", call.lineno)


def _mist_hint(node: ast.expr) -> ArgType:
    if isinstance(node, ast.Constant) and node.value is None:
        return ANY  # as Mist did
    if isinstance(node, ast.Call) and last_name(node.func) == "list_type":
        if len(node.args) != 1 or node.keywords:
            raise UnsupportedHint
        return list_of(_mist_hint(node.args[0]))
    name = last_name(node)
    if name in ("int", "float", "str", "bool"):
        return SCALAR_HINTS[name]
    if name == "list":
        return list_of(ANY)
    if name == "dict":
        return dict_of(ANY)
    raise UnsupportedHint


def _check_def_accepts(fn: ast.FunctionDef, params: tuple[Param, ...], where: Where) -> None:
    """Every with_args name must be a parameter of the def, or the call fails in the worker."""
    if fn.args.kwarg is not None:
        return
    accepted = {a.arg for a in positional_params(fn)[1:]} | {a.arg for a in fn.args.kwonlyargs}
    for p in params:
        if p.name not in accepted:
            raise where.error(
                f"with_args declares {p.name!r} but the def has no parameter of that name",
                fn.lineno,
            )
