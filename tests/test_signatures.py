"""Tests of jobs.signatures: argument schemas read from source, and job arguments checked."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from sparkgate.jobs.errors import InvalidArguments, InvalidArtifact
from sparkgate.jobs.signatures import mist
from sparkgate.jobs.signatures.model import (
    ANY,
    BOOL,
    FLOAT,
    INT,
    STR,
    ArgType,
    Param,
    Signature,
    dict_of,
    list_of,
    optional,
)
from sparkgate.jobs.signatures.reading import inspect_package, inspect_source
from sparkgate.jobs.signatures.validation import validate_arguments

FUNCTIONS = Path(__file__).parent / "functions"
MIST_FILE = FUNCTIONS / "sig_mist_functions.py"

HEADER = """\
import typing
import typing as t
from typing import Any, Dict, List, Mapping, Optional, Sequence, Union
from pyspark.sql import SparkSession
"""


def sig_of(body: str, name: str = "f") -> Signature:
    return inspect_source(HEADER + body, name, "job.py")


def one_param(hint: str) -> Param:
    (param,) = sig_of(f"def f(spark, x: {hint}):\n    pass\n").params
    return param


def artifact_error(source: str, name: str = "f") -> InvalidArtifact:
    with pytest.raises(InvalidArtifact) as info:
        inspect_source(source, name, "job.py")
    return info.value


def arguments_error(sig: Signature, arguments: object) -> InvalidArguments:
    with pytest.raises(InvalidArguments) as info:
        validate_arguments(sig, arguments)
    return info.value


def make_sig(*params: Param, mist: bool = False) -> Signature:
    return Signature("session", params, mist=mist)


def req(name: str, arg_type: ArgType) -> Param:
    return Param(name, arg_type, required=True)


# --- type hints of plain functions ----------------------------------------------------------------

HINTS = [
    ("int", INT),
    ("float", FLOAT),
    ("str", STR),
    ("bool", BOOL),
    ("Any", ANY),
    ("typing.Any", ANY),
    ("object", ANY),
    ("list", list_of(ANY)),
    ("List", list_of(ANY)),
    ("list[int]", list_of(INT)),
    ("List[str]", list_of(STR)),
    ("typing.List[float]", list_of(FLOAT)),
    ("t.List[bool]", list_of(BOOL)),
    ("Sequence[int]", list_of(INT)),
    ("list[list[int]]", list_of(list_of(INT))),
    ("dict", dict_of(ANY)),
    ("Dict", dict_of(ANY)),
    ("dict[str, int]", dict_of(INT)),
    ("Dict[str, float]", dict_of(FLOAT)),
    ("typing.Dict[str, typing.Any]", dict_of(ANY)),
    ("Mapping[str, list[int]]", dict_of(list_of(INT))),
    ("Optional[int]", optional(INT)),
    ("typing.Optional[str]", optional(STR)),
    ("Union[int, None]", optional(INT)),
    ("Union[None, float]", optional(FLOAT)),
    ("int | None", optional(INT)),
    ("None | str", optional(STR)),
    ("Optional[Optional[int]]", optional(INT)),
    ("Optional[int] | None", optional(INT)),
    ("list[Optional[int]]", list_of(optional(INT))),
    ("dict[str, list[int | None]] | None", optional(dict_of(list_of(optional(INT))))),
    ("'int'", INT),
    ("'list[int]'", list_of(INT)),
    ("'Optional[Dict[str, float]]'", optional(dict_of(FLOAT))),
    ("list['int']", list_of(INT)),
    ("Optional['str']", optional(STR)),
]


@pytest.mark.parametrize(("hint", "expected"), HINTS)
def test_supported_hint(hint: str, expected: ArgType) -> None:
    param = one_param(hint)
    assert param == Param("x", expected, required=True)


@pytest.mark.parametrize(("hint", "expected"), HINTS[::5])
def test_future_annotations_make_no_difference(hint: str, expected: ArgType) -> None:
    source = f"from __future__ import annotations\n{HEADER}def f(spark, x: {hint}):\n    pass\n"
    assert inspect_source(source, "f").params[0].type == expected


def test_unannotated_parameter_is_any_and_required() -> None:
    sig = sig_of("def f(spark, x, y: int):\n    pass\n")
    assert sig.params == (req("x", ANY), req("y", INT))


UNSUPPORTED = [
    "MyClass",
    "dict[int, str]",
    "Dict[int, float]",
    "tuple",
    "tuple[int, int]",
    "Union[int, str]",
    "int | str",
    "Optional[None]",
    "None",
    "list[int, str]",
    "typing.Callable[[int], int]",
    "'not valid ('",
    "'MyClass'",
    "Optional",
    "set[int]",
]


@pytest.mark.parametrize("hint", UNSUPPORTED)
def test_unsupported_hint_names_the_parameter_and_hint(hint: str) -> None:
    error = artifact_error(f"def f(spark, n: int, bad: {hint}):\n    pass\n")
    assert "'bad'" in error.message
    assert hint.strip("'") in error.message
    assert "supported: int, float, str, bool" in error.message
    assert error.details == {"file": "job.py", "function": "f", "line": 1}


# --- defaults -------------------------------------------------------------------------------------


def test_literal_defaults_make_arguments_not_required() -> None:
    sig = sig_of(
        "def f(spark, a: int = 3, b: float = -1.5, c: str = 'x', d: bool = True,\n"
        "      e: list[int] = [1, 2], g: dict[str, int] = {'k': 1}, h=None):\n"
        "    pass\n"
    )
    assert sig.params == (
        Param("a", INT, False, 3, True),
        Param("b", FLOAT, False, -1.5, True),
        Param("c", STR, False, "x", True),
        Param("d", BOOL, False, True, True),
        Param("e", list_of(INT), False, [1, 2], True),
        Param("g", dict_of(INT), False, {"k": 1}, True),
        Param("h", optional(ANY), False, None, True),
    )


@pytest.mark.parametrize("default", ["10**6", "make()", "[x for x in 'ab']", "(1, 2)", "b'x'"])
def test_default_that_is_not_a_json_literal_is_left_to_python(default: str) -> None:
    (param,) = sig_of(f"def f(spark, n: int = {default}):\n    pass\n").params
    assert param == Param("n", INT, required=False, default=None, has_default=False)


def test_none_default_makes_the_type_optional_once() -> None:
    sig = sig_of("def f(spark, a: int = None, b: Optional[int] = None):\n    pass\n")
    assert [p.type for p in sig.params] == [optional(INT), optional(INT)]
    assert all(p.has_default and p.default is None for p in sig.params)


def test_optional_without_default_is_still_required() -> None:
    (param,) = sig_of("def f(spark, a: Optional[int]):\n    pass\n").params
    assert param == Param("a", optional(INT), required=True)


def test_keyword_only_parameters_with_and_without_defaults() -> None:
    sig = sig_of("def f(spark, a: int, *, b: str, c: int = 2):\n    pass\n")
    assert sig.params == (req("a", INT), req("b", STR), Param("c", INT, False, 2, True))


def test_defaults_align_with_the_last_positional_parameters() -> None:
    sig = sig_of("def f(spark, a, b, c=1, d=2):\n    pass\n")
    assert [(p.name, p.required, p.default) for p in sig.params] == [
        ("a", True, None),
        ("b", True, None),
        ("c", False, 1),
        ("d", False, 2),
    ]


# --- the Spark handle -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("first", "handle"),
    [
        ("spark", "session"),
        ("spark: SparkSession", "session"),
        ("spark: pyspark.sql.SparkSession", "session"),
        ("spark: 'SparkSession'", "session"),
        ("spark: 'pyspark.sql.session.SparkSession'", "session"),
        ("sc: SparkContext", "context"),
        ("sc: pyspark.SparkContext", "context"),
        ("sc: 'SparkContext'", "context"),
        ("sqlc: SQLContext", "sql_context"),
        ("sqlc: pyspark.sql.SQLContext", "sql_context"),
    ],
)
def test_handle_from_first_parameter(first: str, handle: str) -> None:
    sig = sig_of(f"def f({first}, n: int):\n    pass\n")
    assert sig.handle == handle
    assert sig.mist is False
    assert sig.params == (req("n", INT),)


def test_handle_may_be_positional_only() -> None:
    sig = sig_of("def f(sc: SparkContext, /, n: int):\n    pass\n")
    assert (sig.handle, sig.params) == ("context", (req("n", INT),))


def test_function_with_only_the_handle_has_no_params() -> None:
    assert sig_of("def f(spark):\n    pass\n") == Signature("session", ())


@pytest.mark.parametrize(
    ("params", "arguments"),
    [
        ("", ()),
        ("x: int, y: int = 1", (req("x", INT), Param("y", INT, False, 1, True))),
        ("x, y", (req("x", ANY), req("y", ANY))),
        # An unannotated first parameter is the handle only under a handle's name.
        ("s, n: int", (req("s", ANY), req("n", INT))),
        ("sql_ctx", (req("sql_ctx", ANY),)),
        # A hint decides, whatever the name: a scoring function may well take a session id.
        ("session: str", (req("session", STR),)),
        ("spark: int, n: int", (req("spark", INT), req("n", INT))),
        ("*, spark", (req("spark", ANY),)),
    ],
)
def test_a_function_without_a_spark_handle_is_plain(params: str, arguments: tuple) -> None:
    sig = sig_of(f"def f({params}):\n    pass\n")
    assert sig == Signature(None, arguments)
    assert sig.needs_spark is False


@pytest.mark.parametrize("first", ["spark", "sc", "session", "spark: SparkSession",
                                   "x: 'SparkContext'", "q: pyspark.sql.SQLContext"])
def test_a_function_with_a_spark_handle_needs_spark(first: str) -> None:
    assert sig_of(f"def f({first}, n: int):\n    pass\n").needs_spark is True


def test_plain_function_file_of_the_tests() -> None:
    sig = inspect_source((FUNCTIONS / "plain.py").read_text(), "add", "plain.py")
    assert sig == Signature(None, (req("x", INT), Param("y", INT, False, 1, True)))


def test_a_first_parameter_with_an_unreadable_hint_says_how_a_handle_is_written() -> None:
    error = artifact_error("def f(df: DataFrame, n: int):\n    pass\n")
    assert "'df' has type hint 'DataFrame'" in error.message
    assert "SparkSession, SparkContext or SQLContext" in error.message
    later = artifact_error("def f(spark, df: DataFrame):\n    pass\n")
    assert "'df'" in later.message and "SparkSession" not in later.message


def test_positional_only_arguments_of_a_plain_function_are_refused() -> None:
    error = artifact_error("def f(x, /, y):\n    pass\n")
    assert "'x'" in error.message and "positional-only" in error.message


def test_unknown_decorators_are_ignored() -> None:
    sig = sig_of("import functools\n@functools.cache\ndef f(spark, n: int):\n    pass\n")
    assert sig == Signature("session", (req("n", INT),))


def test_last_top_level_def_wins() -> None:
    sig = sig_of("def f(spark, a: int):\n    pass\ndef f(spark, b: str):\n    pass\n")
    assert sig.params == (req("b", STR),)


# --- errors of inspect_source ---------------------------------------------------------------------


def test_syntax_error_gives_the_line() -> None:
    error = artifact_error("x = 1\n\ndef f(spark:\n    pass\n")
    assert "job.py" in error.message and "line 3" in error.message
    assert error.details == {"file": "job.py", "line": 3}


def test_error_that_only_the_compiler_sees_is_a_syntax_error() -> None:
    error = artifact_error("def f(spark, a, a):\n    pass\n")
    assert "line 1" in error.message and "duplicate argument" in error.message


def test_null_bytes_are_refused() -> None:
    error = artifact_error("def f(spark):\n    pass\n\x00")
    assert "job.py" in error.message


def test_unknown_function_lists_the_top_level_functions() -> None:
    source = (
        "def a(s):\n    pass\nclass K:\n    def m(self): pass\ndef b(s):\n    def inner(): pass\n"
    )
    error = artifact_error(source, "pi")
    assert error.message == "job.py has no top-level function 'pi' (its top-level functions: a, b)"
    assert error.details["functions"] == ["a", "b"]


def test_unknown_function_in_a_file_without_functions() -> None:
    error = artifact_error("x = 1\n", "pi")
    assert "'pi'" in error.message and "top-level functions: none" in error.message


@pytest.mark.parametrize(
    ("source", "what"),
    [
        ("async def f(spark):\n    pass\n", "an async def"),
        ("class f:\n    pass\n", "a class"),
        ("f = lambda spark: 1\n", "a name assigned at line 1"),
        ("def f(spark):\n    pass\nf = wrap(f)\n", "a name assigned at line 3"),
        ("from os import path as f\n", "an imported name"),
    ],
)
def test_name_that_is_not_a_plain_def(source: str, what: str) -> None:
    error = artifact_error(source)
    assert "must be a plain def" in error.message and what in error.message


@pytest.mark.parametrize(
    ("params", "shown"),
    [("spark, *args", "'*args'"), ("spark, n: int, **options", "'**options'")],
)
def test_star_parameters_are_refused(params: str, shown: str) -> None:
    error = artifact_error(f"def f({params}):\n    pass\n")
    assert shown in error.message and "JSON object" in error.message


def test_positional_only_arguments_after_the_handle_are_refused() -> None:
    error = artifact_error("def f(spark, n, /, m):\n    pass\n")
    assert "'n'" in error.message and "positional-only" in error.message


# --- mistpy functions -----------------------------------------------------------------------------

MIST_HEADER = "import mistpy\nfrom mistpy.decorators import *\n"


def mist_sig(decorators: str, def_line: str = "def f(sc, *names, **kwargs):") -> Signature:
    return inspect_source(f"{MIST_HEADER}{decorators}\n{def_line}\n    pass\n", "f")


def test_mistpy_readme_style_function() -> None:
    sig = inspect_source(MIST_FILE.read_text(), "multiply", str(MIST_FILE))
    assert sig == Signature(
        "context",
        (req("nums", list_of(INT)), Param("mult", INT, False, 2, True)),
        mist=True,
    )


@pytest.mark.parametrize(
    ("decorator", "handle"),
    [
        ("@on_spark_context", "context"),
        ("@on_spark_session", "session"),
        ("@on_hive_session", "session"),
        ("@on_sql_context", "sql_context"),
        ("@on_hive_context", "sql_context"),
        ("@mistpy.decorators.on_spark_context", "context"),
        ("@mistpy.decorators.on_hive_context", "sql_context"),
    ],
)
def test_mistpy_handle_decorators(decorator: str, handle: str) -> None:
    sig = mist_sig(f"@with_args(arg('n', int))\n{decorator}")
    assert sig == Signature(handle, (req("n", INT),), mist=True)


def test_mistpy_decorators_in_either_order() -> None:
    outer = mist_sig("@with_args(arg('n', int))\n@on_spark_context")
    inner = mist_sig("@on_spark_context\n@with_args(arg('n', int))")
    assert outer == inner == Signature("context", (req("n", INT),), mist=True)


@pytest.mark.parametrize(
    ("call", "expected"),
    [
        ("arg('n', type_hint=int)", req("n", INT)),
        ("arg('n', int)", req("n", INT)),
        ("arg(name='n', type_hint=float)", req("n", FLOAT)),
        ("mistpy.decorators.arg('n', str)", req("n", STR)),
        ("arg('n', bool)", req("n", BOOL)),
        ("arg('n', list)", req("n", list_of(ANY))),
        ("arg('n', dict)", req("n", dict_of(ANY))),
        ("arg('n', list_type(int))", req("n", list_of(INT))),
        ("arg('n', list_type(list_type(float)))", req("n", list_of(list_of(FLOAT)))),
        ("arg('n', list_type(None))", req("n", list_of(ANY))),
        ("arg('n', None)", req("n", ANY)),
        ("arg('n')", req("n", ANY)),
        ("arg('n', int, default=2)", Param("n", INT, False, 2, True)),
        ("arg('n', int, 2)", Param("n", INT, False, 2, True)),
        ("arg('n', list_type(str), default=['a'])", Param("n", list_of(STR), False, ["a"], True)),
        # mistpy's arg() reads default=None as "no default".
        ("arg('n', int, default=None)", req("n", INT)),
        ("arg('n', int, optional=True)", Param("n", optional(INT), False, None, True)),
        ("arg('n', int, 5, True)", Param("n", optional(INT), False, None, True)),
        ("opt_arg('n', str)", Param("n", optional(STR), False, None, True)),
        (
            "opt_arg('n', type_hint=list_type(int))",
            Param("n", optional(list_of(INT)), False, None, True),
        ),
    ],
)
def test_mistpy_arg_forms(call: str, expected: Param) -> None:
    sig = mist_sig(f"@with_args({call})\n@on_spark_context")
    assert sig.params == (expected,)


def test_mistpy_function_without_with_args_takes_def_parameters_untyped() -> None:
    sig = mist_sig("@on_spark_session", "def f(spark, a: int, b=5, *, c: str = 'x'):")
    assert sig == Signature(
        "session",
        (req("a", ANY), Param("b", ANY, False, 5, True), Param("c", ANY, False, "x", True)),
        mist=True,
    )


def test_mistpy_with_args_names_must_be_parameters_of_the_def() -> None:
    error = artifact_error(
        f"{MIST_HEADER}@with_args(arg('n', int))\n@on_spark_context\ndef f(sc, m):\n    pass\n"
    )
    assert "'n'" in error.message and "no parameter of that name" in error.message


def test_mistpy_streaming_takes_a_streaming_context() -> None:
    sig = sig_of(f"{MIST_HEADER}@on_streaming_context\ndef f(ssc):\n    pass\n")
    assert (sig.handle, sig.mist, sig.streaming) == ("streaming_context", True, True)


def test_mistpy_streaming_is_refused_without_dstreams(monkeypatch) -> None:
    monkeypatch.setattr(mist, "dstreams_available", lambda: False)
    error = artifact_error(f"{MIST_HEADER}@on_streaming_context\ndef f(ssc):\n    pass\n")
    assert "no Spark Streaming" in error.message and "Structured Streaming" in error.message


@pytest.mark.parametrize(
    ("decorators", "message"),
    [
        ("@with_args(arg('n', int))", "no mistpy @on_* decorator"),
        ("@on_spark_context\n@on_spark_session", "more than one mistpy @on_*"),
        (
            "@with_args(arg('n', int))\n@with_args(arg('m', int))\n@on_spark_context",
            "more than one",
        ),
        ("@with_args(N_ARG)\n@on_spark_context", "'N_ARG' must be an arg(...)"),
        ("@with_args(*ARGS)\n@on_spark_context", "must be an arg(...)"),
        ("@with_args(a=arg('n', int))\n@on_spark_context", "only arg(...)"),
        ("@with_args(arg(NAME, int))\n@on_spark_context", "string literal"),
        ("@with_args(arg('n', MyType))\n@on_spark_context", "'n' has type_hint 'MyType'"),
        ("@with_args(arg('n', list_type(MyType)))\n@on_spark_context", "type_hint"),
        ("@with_args(arg('n', int, default=10**6))\n@on_spark_context", "default '10 ** 6'"),
        ("@with_args(arg('n', int, optional=flag))\n@on_spark_context", "True or False"),
        ("@with_args(arg('n', int, colour=1))\n@on_spark_context", "unexpected keyword"),
        ("@with_args(opt_arg('n', int, 3))\n@on_spark_context", "unexpected positional"),
        ("@with_args(arg('n', int), opt_arg('n', str))\n@on_spark_context", "'n' twice"),
    ],
)
def test_mistpy_errors(decorators: str, message: str) -> None:
    error = artifact_error(f"{MIST_HEADER}{decorators}\ndef f(sc, **kw):\n    pass\n")
    assert message in error.message
    assert error.details["file"] == "job.py" and error.details["function"] == "f"


def test_mistpy_function_needs_a_handle_parameter() -> None:
    error = artifact_error(f"{MIST_HEADER}@on_spark_context\ndef f():\n    pass\n")
    assert "first parameter receives the Spark handle" in error.message


# --- Mist's execute format and JSON Schema --------------------------------------------------------

ALL_KINDS = (
    "def f(spark, a: int, b: float, c: str, d: bool, e, g: list[int], h: dict[str, bool],\n"
    "      i: Optional[float], j: int = 3, k: Optional[list[str]] = None, m: int = 10**6):\n"
    "    pass\n"
)


def test_to_mist_execute_exact() -> None:
    assert sig_of(ALL_KINDS).to_mist_execute() == {
        "a": {"type": "MInt"},
        "b": {"type": "MDouble"},
        "c": {"type": "MString"},
        "d": {"type": "MBoolean"},
        "e": {"type": "MAny"},
        "g": {"type": "MList", "args": [{"type": "MInt"}]},
        "h": {"type": "MMap", "args": [{"type": "MString"}, {"type": "MBoolean"}]},
        "i": {"type": "MOption", "args": [{"type": "MDouble"}]},
        "j": {"type": "MOption", "args": [{"type": "MInt"}]},
        "k": {"type": "MOption", "args": [{"type": "MList", "args": [{"type": "MString"}]}]},
        "m": {"type": "MOption", "args": [{"type": "MInt"}]},
    }


def test_to_mist_execute_keeps_declaration_order() -> None:
    assert list(sig_of(ALL_KINDS).to_mist_execute()) == list("abcdeghijkm")


def test_to_mist_execute_of_mist_functions() -> None:
    source = MIST_FILE.read_text()
    assert inspect_source(source, "head").to_mist_execute() == {
        "table": {"type": "MString"},
        "limit": {"type": "MOption", "args": [{"type": "MInt"}]},
        "exact": {"type": "MBoolean"},  # Mist said MInt
    }
    assert inspect_source(source, "add").to_mist_execute() == {
        "a": {"type": "MAny"},
        "b": {"type": "MOption", "args": [{"type": "MAny"}]},
    }


def test_to_json_schema_exact() -> None:
    assert sig_of(ALL_KINDS).to_json_schema() == {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "properties": {
            "a": {"type": "integer"},
            "b": {"type": "number"},
            "c": {"type": "string"},
            "d": {"type": "boolean"},
            "e": {},
            "g": {"type": "array", "items": {"type": "integer"}},
            "h": {"type": "object", "additionalProperties": {"type": "boolean"}},
            "i": {"anyOf": [{"type": "number"}, {"type": "null"}]},
            "j": {"type": "integer", "default": 3},
            "k": {
                "anyOf": [{"type": "array", "items": {"type": "string"}}, {"type": "null"}],
                "default": None,
            },
            "m": {"type": "integer"},
        },
        "required": ["a", "b", "c", "d", "e", "g", "h", "i"],
        "additionalProperties": False,
    }


SCHEMA_SAMPLES: list[dict[str, Any]] = [
    {"a": 1, "b": 2, "c": "x", "d": True, "e": None, "g": [1], "h": {"k": False}, "i": None},
    {"a": 1, "b": 2.5, "c": "", "d": False, "e": [1], "g": [], "h": {}, "i": 1, "k": ["z"]},
    {"a": 1.5, "b": 2, "c": "x", "d": True, "e": 1, "g": [1], "h": {}, "i": None},
    {"a": True, "b": 2, "c": "x", "d": True, "e": 1, "g": [1], "h": {}, "i": None},
    {"a": 1, "b": 2, "c": "x", "d": 1, "e": 1, "g": ["1"], "h": {}, "i": None},
    {"a": 1, "b": 2, "c": "x", "d": True, "e": 1, "g": [1], "h": {"k": 1}, "i": None},
    {"a": 1, "b": 2, "c": "x", "d": True, "e": 1, "g": [1], "h": {}, "i": None, "zz": 1},
    {"a": 1, "b": 2, "c": "x", "d": True, "e": 1, "g": [1], "h": {}},
    {"a": 1, "b": 2, "c": "x", "d": True, "e": 1, "g": [1], "h": {}, "i": "1", "k": None},
]


@pytest.mark.parametrize("sample", SCHEMA_SAMPLES)
def test_json_schema_agrees_with_validate_arguments(sample: dict[str, Any]) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    sig = sig_of(ALL_KINDS)
    validator = jsonschema.Draft202012Validator(sig.to_json_schema())
    validator.check_schema(sig.to_json_schema())
    try:
        validate_arguments(sig, sample)
        ours = True
    except InvalidArguments:
        ours = False
    assert validator.is_valid(sample) == ours


# --- storing signatures ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["multiply", "greet", "head", "add"])
def test_to_dict_from_dict_round_trip_through_json_mist(name: str) -> None:
    sig = inspect_source(MIST_FILE.read_text(), name)
    assert Signature.from_dict(json.loads(json.dumps(sig.to_dict()))) == sig


def test_to_dict_from_dict_round_trip_through_json_plain() -> None:
    sig = sig_of(ALL_KINDS + "def g(sc: SparkContext, w: dict[str, list[int]] = {'a': [1]}): ...")
    for s in (sig, sig_of(ALL_KINDS + "def g(sc: SparkContext): pass\n", "g")):
        stored = json.loads(json.dumps(s.to_dict()))
        assert Signature.from_dict(stored) == s


def test_to_dict_from_dict_round_trip_of_a_plain_function() -> None:
    sig = sig_of("def f(x: int, y: Optional[str] = None):\n    pass\n")
    stored = json.loads(json.dumps(sig.to_dict()))
    assert stored["handle"] is None
    assert Signature.from_dict(stored) == sig


def test_a_signature_stored_before_plain_functions_reads_as_a_spark_function() -> None:
    # The shape stored by every release before plain functions (and before "mist" existed).
    old = {"handle": "session", "params": [{"name": "n", "type": {"kind": "int"},
                                            "required": True}]}
    sig = Signature.from_dict(old)
    assert sig == Signature("session", (req("n", INT),))
    assert sig.needs_spark is True


def test_to_dict_shape() -> None:
    sig = Signature("context", (Param("n", optional(list_of(INT)), False, None, True),), mist=True)
    assert sig.to_dict() == {
        "handle": "context",
        "mist": True,
        "params": [
            {
                "name": "n",
                "type": {"kind": "optional", "of": {"kind": "list", "of": {"kind": "int"}}},
                "required": False,
                "has_default": True,
                "default": None,
            }
        ],
    }


def test_dataclasses_are_frozen_and_checked() -> None:
    sig = Signature("session", [req("n", INT)])  # type: ignore[arg-type]
    assert sig.params == (req("n", INT),)
    with pytest.raises(AttributeError):
        sig.handle = "context"  # type: ignore[misc]
    with pytest.raises(ValueError):
        ArgType("tuple")
    with pytest.raises(ValueError):
        ArgType("list")
    with pytest.raises(ValueError):
        Signature("streaming", ())
    with pytest.raises(ValueError):
        Signature("session", (req("n", INT), req("n", STR)))


# --- call_kwargs ----------------------------------------------------------------------------------


def test_call_kwargs_fills_mist_defaults_and_opt_args() -> None:
    sig = inspect_source(MIST_FILE.read_text(), "head")
    assert sig.call_kwargs({"table": "t", "exact": True}) == {
        "table": "t",
        "exact": True,
        "limit": None,
    }
    scale = inspect_source(MIST_FILE.read_text(), "scale")
    assert scale.call_kwargs({"nums": [1]}) == {"nums": [1], "mult": 3}
    assert scale.call_kwargs({"nums": [1], "mult": 7}) == {"nums": [1], "mult": 7}


def test_call_kwargs_passes_only_what_was_sent_to_plain_functions() -> None:
    sig = sig_of("def f(spark, a: int, b: int = 2, c: Optional[str] = None):\n    pass\n")
    assert sig.call_kwargs({"a": 1}) == {"a": 1}
    assert sig.call_kwargs({"a": 1, "c": "x"}) == {"a": 1, "c": "x"}


def test_call_kwargs_copies_mutable_defaults() -> None:
    sig = make_sig(Param("xs", list_of(INT), False, [1], True), mist=True)
    first = sig.call_kwargs({})
    first["xs"].append(2)
    assert sig.call_kwargs({}) == {"xs": [1]}


def test_call_kwargs_does_not_change_the_arguments() -> None:
    sig = make_sig(Param("n", INT, False, 1, True), mist=True)
    arguments: dict[str, Any] = {}
    assert sig.call_kwargs(arguments) == {"n": 1}
    assert arguments == {}


class FakeRDD:
    def __init__(self, items: list[Any]) -> None:
        self.items = items

    def map(self, fn: Any) -> FakeRDD:
        return FakeRDD([fn(x) for x in self.items])

    def collect(self) -> list[Any]:
        return self.items


class FakeSpark:
    """Stands in for SparkContext/SparkSession: the fixture functions use only this much."""

    app_name = "fake"

    def parallelize(self, items: list[Any]) -> FakeRDD:
        return FakeRDD(list(items))


def load_mist_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("sig_mist_functions", MIST_FILE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    ("name", "arguments", "result"),
    [
        ("multiply", {"nums": [1, 2]}, [2, 4]),
        ("multiply", {"nums": [1, 2], "mult": 10}, [10, 20]),
        ("scale", {"nums": [1, 2]}, [3, 6]),
        ("scale", {"nums": [1], "mult": 5}, [5]),
        ("greet", {"name": "ann"}, {"app": "fake", "text": "hello, ann"}),
        ("greet", {"name": "ann", "greeting": "hi"}, {"app": "fake", "text": "hi, ann"}),
        (
            "head",
            {"table": "t", "exact": False},
            {"table": "t", "limit": None, "exact": False, "app": "fake"},
        ),
        ("add", {"a": 1}, 6),
        ("add", {"a": 1, "b": 2}, 3),
    ],
)
def test_mist_functions_run_with_call_kwargs(
    name: str, arguments: dict[str, Any], result: Any
) -> None:
    sig = inspect_source(MIST_FILE.read_text(), name, str(MIST_FILE))
    fn = getattr(load_mist_module(), name)
    kwargs = sig.call_kwargs(validate_arguments(sig, arguments))
    assert fn(FakeSpark(), **kwargs) == result


@pytest.mark.parametrize(
    ("name", "arguments"),
    [("scale", {"nums": [1]}), ("greet", {"name": "ann"}), ("head", {"table": "t", "exact": True})],
)
def test_mistpy_itself_does_not_fill_these_defaults(name: str, arguments: dict[str, Any]) -> None:
    # Why call_kwargs fills them: called with only what was sent, mistpy's wrappers fail.
    fn = getattr(load_mist_module(), name)
    with pytest.raises(TypeError):
        fn(FakeSpark(), **arguments)


# --- validate_arguments ---------------------------------------------------------------------------

TYPE_CASES: list[tuple[ArgType, list[Any], list[tuple[Any, str]]]] = [
    (
        INT,
        [0, 3, -5, 10**30],
        [
            (True, "boolean true"),
            (1.5, "number 1.5"),
            (2.0, "number 2.0"),
            ("3", 'string "3"'),
            (None, "null"),
            ([], "array of 0"),
        ],
    ),
    (
        FLOAT,
        [1, 1.5, -0.0, 1e300],
        [(True, "boolean true"), ("1.5", 'string "1.5"'), (None, "null"), ({}, "object")],
    ),
    (STR, ["", "x", "ünï"], [(1, "number 1"), (None, "null"), (["a"], "array of 1")]),
    (
        BOOL,
        [True, False],
        [(0, "number 0"), (1, "number 1"), ("true", 'string "true"'), (None, "null")],
    ),
    (list_of(ANY), [[], [1, "a", None]], [({}, "object"), ("abc", 'string "abc"'), (None, "null")]),
    (dict_of(ANY), [{}, {"a": [1]}], [([], "array of 0"), ("x", 'string "x"'), (None, "null")]),
    (optional(INT), [None, 1], [(1.5, "number 1.5"), ("x", 'string "x"')]),
    (ANY, [None, 1, "x", [1, [2]], {"a": {"b": None}}, True], []),
]
EXPECTED_NAMES = {
    INT: "integer",
    FLOAT: "number",
    STR: "string",
    BOOL: "boolean",
    list_of(ANY): "array",
    dict_of(ANY): "object",
    optional(INT): "integer or null",
}


@pytest.mark.parametrize(("arg_type", "value"), [(t, v) for t, good, _ in TYPE_CASES for v in good])
def test_value_accepted(arg_type: ArgType, value: Any) -> None:
    arguments = {"x": value}
    assert validate_arguments(make_sig(req("x", arg_type)), arguments) == arguments


@pytest.mark.parametrize(
    ("arg_type", "value", "got"), [(t, v, g) for t, _, bad in TYPE_CASES for v, g in bad]
)
def test_value_rejected(arg_type: ArgType, value: Any, got: str) -> None:
    error = arguments_error(make_sig(req("x", arg_type)), {"x": value})
    expected = EXPECTED_NAMES[arg_type]
    assert error.details == [{"field": "x", "expected": expected, "got": got}]
    assert error.message == f"invalid argument: x: expected {expected}, got {got}"
    assert error.code == "invalid_arguments" and error.http_status == 400


@pytest.mark.parametrize(
    ("value", "got"),
    [(math.nan, "number NaN"), (math.inf, "number Infinity"), (-math.inf, "number -Infinity")],
)
def test_float_rejects_non_finite_numbers(value: float, got: str) -> None:
    error = arguments_error(make_sig(req("x", FLOAT)), json.loads(json.dumps({"x": value})))
    assert error.details == [{"field": "x", "expected": "finite number", "got": got}]


def test_int_rejects_nan() -> None:
    error = arguments_error(make_sig(req("x", INT)), {"x": math.nan})
    assert error.details == [{"field": "x", "expected": "integer", "got": "number NaN"}]


def test_nested_paths() -> None:
    sig = make_sig(
        req("lines", list_of(STR)),
        req("weights", dict_of(FLOAT)),
        req("matrix", list_of(list_of(INT))),
        req("rows", list_of(dict_of(optional(INT)))),
        req("groups", optional(dict_of(list_of(BOOL)))),
    )
    error = arguments_error(
        sig,
        {
            "lines": ["a", "b", "c", 4],
            "weights": {"AAPL": "high", "BRK.B": 1, "x y": None},
            "matrix": [[1], [2, "3"]],
            "rows": [{"a": 1, "b": None}, {"c": 1.5}],
            "groups": {"g": [True, 0]},
        },
    )
    assert error.details == [
        {"field": "lines[3]", "expected": "string", "got": "number 4"},
        {"field": "weights.AAPL", "expected": "number", "got": 'string "high"'},
        {"field": 'weights["x y"]', "expected": "number", "got": "null"},
        {"field": "matrix[1][1]", "expected": "integer", "got": 'string "3"'},
        {"field": "rows[1].c", "expected": "integer or null", "got": "number 1.5"},
        {"field": "groups.g[1]", "expected": "boolean", "got": "number 0"},
    ]


def test_container_type_names() -> None:
    sig = make_sig(
        req("a", list_of(list_of(INT))),
        req("b", dict_of(STR)),
        req("c", list_of(optional(FLOAT))),
        req("d", optional(list_of(INT))),
    )
    error = arguments_error(sig, {"a": 1, "b": 1, "c": 1, "d": 1})
    assert [d["expected"] for d in error.details] == [
        "array of array of integer",
        "object with string values",
        "array of (number or null)",
        "array of integer or null",
    ]


def test_unknown_argument() -> None:
    sig = make_sig(req("a", INT), Param("b", INT, False, 1, True))
    error = arguments_error(sig, {"a": 1, "bogus": 2})
    assert error.details == [{"field": "bogus", "expected": "one of: a, b", "got": "bogus"}]
    assert error.message == "invalid argument: bogus: unknown argument (expected one of: a, b)"


def test_unknown_argument_to_function_without_arguments() -> None:
    error = arguments_error(make_sig(), {"x": 1})
    assert error.details == [{"field": "x", "expected": "no arguments", "got": "x"}]


def test_missing_required_argument() -> None:
    sig = make_sig(req("a", INT), req("b", optional(STR)), Param("c", INT, False, None, False))
    error = arguments_error(sig, {})
    assert error.details == [
        {"field": "a", "expected": "integer", "got": "nothing"},
        {"field": "b", "expected": "string or null", "got": "nothing"},
    ]
    assert validate_arguments(sig, {"a": 1, "b": None}) == {"a": 1, "b": None}


def test_all_problems_are_reported_together() -> None:
    sig = sig_of("def f(spark, samples: int, name: str, tags: list[str] = []):\n    pass\n")
    error = arguments_error(sig, {"samples": "abc", "tags": ["x", 1], "extra": True})
    assert error.details == [
        {"field": "samples", "expected": "integer", "got": 'string "abc"'},
        {"field": "tags[1]", "expected": "string", "got": "number 1"},
        {"field": "extra", "expected": "one of: samples, name, tags", "got": "extra"},
        {"field": "name", "expected": "string", "got": "nothing"},
    ]
    assert error.message == (
        '4 invalid arguments: samples: expected integer, got string "abc"; '
        "tags[1]: expected string, got number 1; "
        "extra: unknown argument (expected one of: samples, name, tags); "
        "name: missing (string)"
    )


def test_many_problems_are_bounded() -> None:
    error = arguments_error(make_sig(req("xs", list_of(INT))), {"xs": ["a"] * 1000})
    assert len(error.details) == 100
    assert error.details[99]["field"] == "xs[99]"
    assert error.message.startswith("1000 invalid arguments: xs[0]: expected integer")
    assert error.message.endswith("; and 990 more")


@pytest.mark.parametrize(
    ("body", "type_name", "got"),
    [
        ([1, 2, 3], "array", "array of 3"),
        ("abc", "string", 'string "abc"'),
        (None, "null", "null"),
        (1.5, "number", "number 1.5"),
        (True, "boolean", "boolean true"),
    ],
)
def test_body_that_is_not_an_object(body: object, type_name: str, got: str) -> None:
    error = arguments_error(make_sig(req("a", INT)), body)
    assert error.message == f"the request body must be a JSON object of arguments, got {type_name}"
    assert error.details == [{"field": "(body)", "expected": "object", "got": got}]


def test_long_strings_are_cut_in_descriptions() -> None:
    error = arguments_error(make_sig(req("n", INT)), {"n": "y" * 500})
    assert error.details[0]["got"] == 'string "' + "y" * 40 + '…"'


def test_strings_are_quoted_as_json() -> None:
    error = arguments_error(make_sig(req("n", INT)), {"n": 'say "hi"'})
    assert error.details[0]["got"] == 'string "say \\"hi\\""'


def test_valid_arguments_come_back_as_declared() -> None:
    sig = sig_of(ALL_KINDS)
    arguments = {"a": 1, "b": 2, "c": "x", "d": True, "e": {"z": 1}, "g": [1], "h": {}, "i": 1.5}
    returned = validate_arguments(sig, arguments)
    assert returned == {
        "a": 1,
        "b": 2.0,
        "c": "x",
        "d": True,
        "e": {"z": 1},
        "g": [1],
        "h": {},
        "i": 1.5,
    }


def test_integers_for_float_arguments_become_floats_at_any_depth() -> None:
    sig = sig_of(
        "def f(spark, x: float, xs: list[float], m: dict[str, Optional[float]],\n"
        "      n: int = 1, o: Optional[float] = None):\n    pass\n"
    )
    returned = validate_arguments(sig, {"x": 2, "xs": [1, 2.5], "m": {"a": 3, "b": None},
                                         "n": 4, "o": 5})
    assert returned == {"x": 2.0, "xs": [1.0, 2.5], "m": {"a": 3.0, "b": None}, "n": 4, "o": 5.0}
    assert [type(v) for v in (returned["x"], returned["xs"][0], returned["m"]["a"],
                              returned["o"])] == [float] * 4
    assert type(returned["n"]) is int


def test_float_rejects_integers_too_large_for_a_double() -> None:
    # 10**400 is a valid JSON integer, but as a float it would overflow (it was a 500).
    error = arguments_error(make_sig(req("x", FLOAT), req("y", dict_of(FLOAT))),
                            {"x": 10**400, "y": {"a": -(10**400), "b": 10**300}})
    assert [(d["field"], d["expected"]) for d in error.details] == [
        ("x", "finite number"), ("y.a", "finite number")]
    got = error.details[0]["got"]
    assert got.startswith("number 1000000000") and got.endswith("…")
    assert validate_arguments(make_sig(req("x", FLOAT)), {"x": 10**300}) == {"x": 1e300}


# ---------------------------------------------------------------------------------------------
# Functions in package artifacts (module.function; the archive itself is tested in
# test_archives.py)


@pytest.mark.parametrize(("init", "class_name"), [
    ("from .sub.deep import f\n", "pkg.f"),
    ("from pkg.sub.deep import f\n", "pkg.f"),
    ("from .sub import f\n", "pkg.f"),
    ("", "pkg.sub.deep.f"),
    ("", "pkg.sub.f"),
])
def test_package_functions_are_found_through_relative_and_absolute_reexports(init, class_name):
    files = {"pkg/__init__.py": init.encode(),
             "pkg/sub/__init__.py": b"from ..sub.deep import f as f\n",
             "pkg/sub/deep.py": b"def f(spark, n: int = 2):\n    return n\n"}
    sig = inspect_package(files.get, class_name, "p.zip")
    assert [(p.name, p.default) for p in sig.params] == [("n", 2)]


def test_a_package_function_error_names_the_file_inside_the_archive() -> None:
    files = {"pkg/jobs.py": b"def f(spark, x: int | str):\n    return x\n"}
    with pytest.raises(InvalidArtifact) as caught:
        inspect_package(files.get, "pkg.jobs.f", "p.zip")
    assert caught.value.message.startswith("f in p.zip:pkg/jobs.py: parameter 'x'")


def test_a_reexport_loop_ends_in_a_clear_error() -> None:
    files = {"a.py": b"from b import f\n", "b.py": b"from a import f\n"}
    with pytest.raises(InvalidArtifact, match="must be a plain def, but it is an imported name"):
        inspect_package(files.get, "a.f", "p.zip")
