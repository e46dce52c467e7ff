"""Arguments typed beyond JSON's own types (dataclasses, TypedDicts, pydantic models, Enums,
Literals, datetimes, dates, Decimals) and results beyond JSON's (pandas, numpy, datetimes,
Decimals, dataclasses, Enums, pydantic models): read from the source, checked with errors that
name the field, built in the worker, and converted back by one rule (docs/functions.md).

The classes live in tests/functions/data_types.py; the last tests run it on a real
`sparkgate serve` (python engine) and with `sparkgate run --local`.
"""

from __future__ import annotations

import dataclasses
import datetime
import decimal
import enum
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from sparkgate.jobs.errors import InvalidArguments, InvalidArtifact
from sparkgate.jobs.signatures.model import (
    FLOAT,
    ArgType,
    Field,
    Signature,
    dict_of,
    enum_of,
    list_of,
    optional,
)
from sparkgate.jobs.signatures.reading import inspect_package, inspect_source
from sparkgate.jobs.signatures.validation import validate_arguments
from sparkgate.workers.calling import describe_error
from sparkgate.workers.results import ResultNotSerializable, to_json_value
from tests.conftest import FUNCTIONS_DIR
from tests.server_process import Server, running_server
from tests.zips import make_zip

pydantic = pytest.importorskip("pydantic")  # the pydantic model of data_types.py needs it

SOURCE = (FUNCTIONS_DIR / "data_types.py").read_text()

GOOD = {
    "point": {"x": 1},
    "items": [{"name": "a", "price": "1.10"}, {"name": "b", "price": 2, "note": "n"}],
    "order": {"id": 1, "placed": "2026-01-02T03:04:05Z", "lines": [{"sku": "c", "price": "0.1"}]},
    "colour": "red", "size": 2, "mode": "fast",
    "when": "2026-01-02T03:04:05+01:00", "day": "2026-01-02", "amount": "12.345",
    "weights": [{"a": 1, "b": 2.5}],
    "maybe": {"x": 2, "y": 3, "tags": ["t"]},
}
# What `types` says each argument arrived as: the declared Python type, floats as floats.
GOOD_SEEN = {
    "point": ["Point", 1.0, "float", 0.0, []],
    "items": [["dict", "a", "Decimal('1.10')", None], ["dict", "b", "Decimal('2')", "n"]],
    "order": ["Order", 1, "2026-01-02T03:04:05+00:00", ["Decimal('0.1')"]],
    "colour": "<Colour.RED: 'red'>", "size": "<Size.LARGE: 2>", "mode": "fast",
    "when": "datetime.datetime(2026, 1, 2, 3, 4, 5, "
            "tzinfo=datetime.timezone(datetime.timedelta(seconds=3600)))",
    "day": "datetime.date(2026, 1, 2)", "amount": "Decimal('12.345')",
    "weights": [["float", "float"]],
    "maybe": "Point(x=2.0, y=3.0, tags=['t'])",
}
RESULTS = {
    "frame": [{"n": 1, "x": 0.5, "when": "2026-01-02T00:00:00"},
              {"n": 2, "x": None, "when": None},
              {"n": 3, "x": 2.5, "when": "2026-01-04T00:00:00"}],
    "series": [0.5, None, 2.5],
    "array": [[0, 1, 2], [3, 4, 5]],
    "scalars": [7, 0.25, True],
    "when": "2026-01-02T03:04:05",
    "day": "2026-01-02",
    "amount": 12.5,
    "point": {"x": 1.5, "y": 2.0, "tags": ["a"]},
    "colour": "green",
    "order": {"id": 1, "placed": "2026-01-02T00:00:00", "lines": []},
}


def signature(function: str = "types", source: str = SOURCE) -> Signature:
    return inspect_source(source, function, "data_types.py")


def refusal(arguments: dict[str, Any], function: str = "types") -> InvalidArguments:
    with pytest.raises(InvalidArguments) as caught:
        validate_arguments(signature(function), arguments)
    return caught.value


# --- reading the classes from the source ------------------------------------------------------

def test_the_file_s_own_classes_become_objects_and_enums() -> None:
    types = {p.name: p.type for p in signature().params}
    point = types["point"]
    assert (point.kind, point.name, point.model) == ("object", "Point", "dataclass")
    assert [(f.name, f.type, f.required) for f in point.fields] == [
        ("x", FLOAT, True), ("y", FLOAT, False), ("tags", list_of(ArgType("str")), False)]
    item = types["items"].of
    assert item is not None and (item.model, [f.required for f in item.fields]) == (
        "typeddict", [True, True, False])  # NotRequired[str]
    order = types["order"]
    assert order.model == "pydantic" and [f.required for f in order.fields] == [True, True, False]
    assert types["colour"] == enum_of(["red", "green"], "Colour")
    assert types["size"] == enum_of([1, 2], "Size")
    assert types["mode"] == enum_of(["fast", "exact"])
    assert [types[n].kind for n in ("when", "day", "amount")] == ["datetime", "date", "decimal"]
    assert types["weights"] == list_of(dict_of(FLOAT))


def test_a_stored_signature_reads_back_the_same_and_old_shapes_still_load() -> None:
    sig = signature()
    assert Signature.from_dict(json.loads(json.dumps(sig.to_dict()))) == sig
    old = {"handle": None, "mist": False, "params": [
        {"name": "x", "type": {"kind": "list", "of": {"kind": "float"}}, "required": True,
         "has_default": False, "default": None}]}
    assert Signature.from_dict(old).to_dict() == old


@pytest.mark.parametrize(("source", "why"), [
    ("class K:\n    a: int\n", "class K is not a dataclass, TypedDict, pydantic BaseModel or Enum"),
    ("from dataclasses import dataclass\n@dataclass\nclass K:\n    a: set[int]\n",
     "field K.a has type hint 'set[int]'"),
    ("from dataclasses import dataclass\n@dataclass\nclass K:\n    child: 'K | None' = None\n",
     "class K contains itself"),
    ("import enum\nclass K(enum.Enum):\n    A = (1, 2)\n", "member K.A's value"),
    # Bases going round (code that cannot run): K's base is not yet defined where K is made.
    ("class K(J):\n    a: int\nclass J(K):\n    b: int\n",
     "class K is not a dataclass, TypedDict, pydantic BaseModel or Enum"),
])
def test_a_class_that_cannot_be_read_says_why(source: str, why: str) -> None:
    with pytest.raises(InvalidArtifact) as caught:
        inspect_source(source + "def f(k: K):\n    pass\n", "f", "job.py")
    assert "parameter 'k' has type hint 'K'" in caught.value.message
    assert why in caught.value.message


def test_class_details_are_read_as_python_reads_them() -> None:
    source = '''
import enum
from dataclasses import dataclass, field
from typing import ClassVar, TypedDict, Required
from pydantic import BaseModel, Field

@dataclass
class Base:
    a: int
    counter: ClassVar[int] = 0

@dataclass(frozen=True)
class Child(Base):
    b: str = "x"
    hidden: int = field(init=False, default=0)

class Partial(TypedDict, total=False):
    k: Required[int]
    opt: str

class M(BaseModel):
    _private: int = 0
    need: int = Field(...)
    has: int = Field(5)

class E(enum.StrEnum):
    ONE = enum.auto()
    TWO = enum.auto()

def f(c: Child, p: Partial, m: M, e: E):
    pass
'''
    types = {p.name: p.type for p in signature("f", source).params}
    assert [(f.name, f.required) for f in types["c"].fields] == [("a", True), ("b", False)]
    assert [(f.name, f.required) for f in types["p"].fields] == [("k", True), ("opt", False)]
    assert [(f.name, f.required) for f in types["m"].fields] == [("need", True), ("has", False)]
    assert types["e"].values == ("one", "two")


# --- classes imported from the package artifact's other modules -----------------------------

# mypkg/models.py's Order, whose fields name models' own class Line and common's Enum, which
# models imports in two ways: each hint is read in the module that writes it.
PACKAGE = {
    "mypkg/__init__.py": b"",
    "mypkg/common.py": b"import enum\n\nclass Colour(enum.Enum):\n"
                       b"    RED = 'red'\n    GREEN = 'green'\n",
    "mypkg/models.py": b"""\
from dataclasses import dataclass
from . import common
from .common import Colour

VERSION = "1"

@dataclass
class Line:
    sku: str
    colour: Colour

@dataclass
class Order:
    id: int
    lines: list[Line]
    tint: common.Colour | None = None
""",
    "mypkg/api/__init__.py": b"from ..models import Order\n",
}
COLOUR = enum_of(["red", "green"], "Colour", "mypkg.common")
LINE = ArgType("object", name="Line", model="dataclass", module="mypkg.models",
               fields=(Field("sku", ArgType("str"), True), Field("colour", COLOUR, True)))
ORDER = ArgType("object", name="Order", model="dataclass", module="mypkg.models",
                fields=(Field("id", ArgType("int"), True), Field("lines", list_of(LINE), True),
                        Field("tint", optional(COLOUR), False)))


def package_signature(imports: str, hint: str, path: str = "mypkg/jobs.py",
                      files: dict[str, bytes] = PACKAGE) -> Signature:
    source = f"{imports}\n\ndef place(order: {hint}):\n    return order\n".encode()
    read = {**files, path: source}.get
    return inspect_package(read, path.removesuffix(".py").replace("/", ".") + ".place", "p.zip")


@pytest.mark.parametrize(("imports", "hint", "path"), [
    ("from mypkg.models import Order", "Order", "mypkg/jobs.py"),
    ("from .models import Order", "Order", "mypkg/jobs.py"),
    ("from .models import Order as Purchase", "Purchase", "mypkg/jobs.py"),
    ("from . import models", "models.Order", "mypkg/jobs.py"),
    ("from . import models", "'models.Order'", "mypkg/jobs.py"),
    ("from mypkg import models as shop", "shop.Order", "mypkg/jobs.py"),
    ("import mypkg.models as m", "m.Order", "mypkg/jobs.py"),
    ("import mypkg.models", "mypkg.models.Order", "mypkg/jobs.py"),
    ("from ..models import Order", "Order", "mypkg/sub/jobs.py"),
    ("from .api import Order", "Order", "mypkg/jobs.py"),  # api/__init__.py imports it in turn
    ("from mypkg.models import Order", "Order", "tool.py"),  # a top-level module of the archive
])
def test_a_class_imported_from_another_module_of_the_package_is_read_there(
        imports: str, hint: str, path: str) -> None:
    (param,) = package_signature(imports, hint, path).params
    assert param.type == ORDER


def test_each_module_is_parsed_once_per_inspection() -> None:
    reads: list[str] = []

    def read(path: str) -> bytes | None:
        reads.append(path)
        return {**PACKAGE, "mypkg/jobs.py": b"from . import models\nfrom .models import Line\n"
                b"def place(a: models.Order, b: Line, c: models.Line):\n    pass\n"}.get(path)

    sig = inspect_package(read, "mypkg.jobs.place", "p.zip")
    assert [p.type for p in sig.params] == [ORDER, LINE, LINE]
    assert reads.count("mypkg/models.py") == 1 and reads.count("mypkg/common.py") == 1


def test_a_package_signature_records_where_each_class_is_and_reads_back() -> None:
    sig = package_signature("from .models import Order", "Order")
    stored = json.loads(json.dumps(sig.to_dict()))
    assert stored["params"][0]["type"]["module"] == "mypkg.models"
    assert Signature.from_dict(stored) == sig
    assert sig.class_modules() == {"mypkg.models", "mypkg.common"}


CIRCLE = {"mypkg/a.py": b"from .b import Order\n", "mypkg/b.py": b"from .a import Order\n"}
RECURSIVE = {
    "mypkg/a.py": b"from dataclasses import dataclass\nfrom . import b\n\n@dataclass\n"
                  b"class A:\n    child: 'b.B | None' = None\n",
    "mypkg/b.py": b"from dataclasses import dataclass\nfrom .a import A\n\n@dataclass\n"
                  b"class B:\n    parent: A\n",
}


@pytest.mark.parametrize(("imports", "hint", "files", "why"), [
    ("from .a import Order", "Order", CIRCLE, "defined in the artifact"),
    ("from .a import A", "A", RECURSIVE, "class A contains itself"),
    # A real dataclass, of an installed package: the gateway does not read installed code.
    ("from sparkgate.jobs.signatures.model import ArgType", "ArgType", PACKAGE,
     "defined in the artifact"),
    ("from mypkg.missing import Order", "Order", PACKAGE, "defined in the artifact"),
    ("from .models import Nothing", "Nothing", PACKAGE, "defined in the artifact"),
])
def test_a_class_that_cannot_be_followed_is_refused_naming_the_parameter(
        imports: str, hint: str, files: dict[str, bytes], why: str) -> None:
    with pytest.raises(InvalidArtifact) as caught:
        package_signature(imports, hint, files=files)
    assert caught.value.message.startswith(
        f"place in p.zip:mypkg/jobs.py: parameter 'order' has type hint {hint!r}, which cannot "
        "be taken from JSON")
    assert why in caught.value.message


@pytest.mark.parametrize(("imports", "hint"), [
    ("from models import Order", "Order"), ("import models", "models.Order")])
def test_a_single_file_s_imported_classes_are_refused(imports: str, hint: str) -> None:
    source = f"{imports}\n\ndef place(order: {hint}):\n    return order\n"
    with pytest.raises(InvalidArtifact) as caught:
        inspect_source(source, "place", "job.py")
    assert caught.value.message.startswith(f"place in job.py: parameter 'order' has type hint "
                                           f"{hint!r}, which cannot be taken from JSON")
    assert ("Enum defined in the artifact: in the function's file, or imported there from "
            "another module of the same package artifact;") in caught.value.message


# --- checking: 400s that name the field ------------------------------------------------------

def test_good_arguments_pass_with_floats_as_floats_at_any_depth() -> None:
    checked = validate_arguments(signature(), GOOD)
    assert checked["point"] == {"x": 1.0} and isinstance(checked["point"]["x"], float)
    assert [type(v) for v in checked["weights"][0].values()] == [float, float]
    assert checked["amount"] == "12.345"  # a decimal is kept as sent: exact


@pytest.mark.parametrize(("change", "problem"), [
    ({"point": {"x": "a"}}, 'point.x: expected number, got string "a"'),
    ({"point": {"y": 1}}, "point.x: missing (number)"),
    ({"point": {"x": 1, "z": 2}}, "point.z: unknown field of Point (expected one of: x, y, tags)"),
    ({"items": [{"name": "a", "price": "1"}, {"name": "b", "price": "x"}]},
     'items[1].price: expected decimal (number or numeric string), got string "x"'),
    ({"items": [{"name": "a"}]}, "items[0].price: missing (decimal (number or numeric string))"),
    ({"order": {"id": 1, "placed": "yesterday"}},
     'order.placed: expected ISO 8601 date-time string, got string "yesterday"'),
    ({"colour": "blue"}, 'colour: expected one of "red", "green", got string "blue"'),
    ({"size": True}, "size: expected one of 1, 2, got boolean true"),
    ({"mode": "slow"}, 'mode: expected one of "fast", "exact", got string "slow"'),
    ({"when": 5}, "when: expected ISO 8601 date-time string, got number 5"),
    ({"day": "2026-13-01"}, 'day: expected ISO 8601 date string, got string "2026-13-01"'),
    ({"amount": "NaN"}, 'amount: expected decimal (number or numeric string), got string "NaN"'),
    ({"weights": [{"a": "x"}]}, 'weights[0].a: expected number, got string "x"'),
    ({"maybe": {"x": None}}, "maybe.x: expected number, got null"),
])
def test_a_bad_value_is_refused_naming_its_field(change: dict[str, Any], problem: str) -> None:
    error = refusal({**GOOD, **change})
    assert error.message == f"invalid argument: {problem}"


def test_the_json_schema_accepts_and_refuses_as_validation_does() -> None:
    jsonschema = pytest.importorskip("jsonschema")
    schema = signature().to_json_schema()
    validator = jsonschema.Draft202012Validator(schema)
    validator.check_schema(schema)
    assert list(validator.iter_errors(GOOD)) == []
    for change in ({"point": {"x": 1, "z": 2}}, {"colour": "blue"}, {"amount": "1e"},
                   {"items": [{"name": "a"}]}):
        assert list(validator.iter_errors({**GOOD, **change})), change
    assert schema["properties"]["when"] == {"type": "string", "format": "date-time"}
    assert signature().to_mist_execute()["colour"] == {"type": "MString"}


# --- results: one rule ----------------------------------------------------------------------

class Kind(enum.IntEnum):
    A = 1


@dataclasses.dataclass
class Pair:
    left: Any
    right: Any


def test_each_result_type_converts_by_the_rule() -> None:
    frame = pd.DataFrame({"n": [1, 2], "x": [0.5, np.nan], "s": ["a", None]})
    value = {
        "frame": frame, "series": frame["x"], "array": np.array([[1.5, 2.0]]),
        "scalar": np.int32(4), "when": datetime.datetime(2026, 1, 2, 3, 4),
        "amount": decimal.Decimal("2.5"), "pair": Pair(Kind.A, datetime.date(2026, 1, 2)),
        "model": pydantic.create_model("M", v=(decimal.Decimal, ...))(v="1.10"),
    }
    assert to_json_value(value) == {
        "frame": [{"n": 1, "x": 0.5, "s": "a"}, {"n": 2, "x": None, "s": None}],
        "series": [0.5, None], "array": [[1.5, 2.0]], "scalar": 4,
        "when": "2026-01-02T03:04:00", "amount": 2.5,
        "pair": {"left": 1, "right": "2026-01-02"},
        "model": {"v": "1.10"},  # the model's own JSON: pydantic writes Decimals as strings
    }


@pytest.mark.parametrize(("value", "message"), [
    ({"rows": [1, {"b": b"x"}]}, "result.rows[1].b is a builtins.bytes"),
    ({"a.b": [complex(1, 2)]}, 'result["a.b"][0] is a builtins.complex'),
    ({"x": np.array([np.nan])}, "result.x[0] is nan"),
])
def test_anything_else_fails_naming_type_and_place(value: Any, message: str) -> None:
    with pytest.raises(ResultNotSerializable) as caught:
        to_json_value(value)
    assert str(caught.value).startswith(message)
    assert "Traceback" not in describe_error(caught.value)


# --- on a real worker, and with run --local ---------------------------------------------------

@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    workdir = tmp_path_factory.mktemp("data-types")
    overrides = {"SPARKGATE_CONTEXT_ENGINE": "python", "SPARKGATE_DEPLOY_EXAMPLES": "false"}
    with running_server(workdir, overrides) as server:
        for function in ("types", "results", "bad_result", "positive"):
            server.deploy("data_types.py", function, function)
        yield server


def run(server: Server, function: str, arguments: dict[str, Any]) -> dict[str, Any]:
    job_id = server.submit(function, arguments)
    return server.wait_for_job(job_id, {"finished", "failed"})


@pytest.mark.slow
def test_each_argument_type_arrives_as_declared_on_a_worker(server: Server) -> None:
    job = run(server, "types", GOOD)
    assert job["status"] == "finished", job
    assert job["jobResult"] == GOOD_SEEN


@pytest.mark.slow
def test_each_result_type_comes_back_as_json_from_a_worker(server: Server) -> None:
    job = run(server, "results", {})
    assert job["status"] == "finished", job
    assert job["jobResult"] == RESULTS


@pytest.mark.slow
def test_the_gateway_refuses_a_bad_nested_field_with_400(server: Server) -> None:
    response = server.post("/functions/types/jobs",
                           json={**GOOD, "items": [{"name": "a", "price": "x"}]})
    assert response.status_code == 400
    assert response.json()["error"]["details"] == [{
        "field": "items[0].price", "expected": "decimal (number or numeric string)",
        "got": 'string "x"'}]


@pytest.mark.slow
@pytest.mark.parametrize(("function", "arguments", "error"), [
    ("bad_result", {"kind": "bytes"},
     "sparkgate.workers.results.ResultNotSerializable: result.rows[3].blob is a builtins.bytes"),
    ("positive", {"p": {"value": -1}},
     "sparkgate.workers.arguments.ArgumentNotAccepted: argument p: Positive refused it: "
     "ValueError: value must be positive"),
])
def test_data_refused_fails_the_job_without_sparkgate_s_traceback(
        server: Server, function: str, arguments: dict[str, Any], error: str) -> None:
    job = run(server, function, arguments)
    assert job["status"] == "failed"
    [text] = [job["jobResult"]] if isinstance(job["jobResult"], str) else job["jobResult"]
    assert text.startswith(error)
    assert "Traceback" not in text


# PACKAGE on a worker: a function whose Order (with its Line and common's Colour, which the
# function's module never imports) the worker builds from mypkg.models and mypkg.common, of
# the artifact's own version (two versions of the package run side by side).
PLACE = b"""\
from . import models
from .models import Order

def place(order: Order):
    return {
        "module": type(order).__module__,
        "version": models.VERSION,
        "built": [isinstance(order, Order), isinstance(order.lines[0], models.Line),
                  order.lines[0].colour is models.Colour.RED,
                  order.tint is models.Colour.GREEN],
    }
"""


def deploy_version(server: Server, version: str) -> str:
    artifact, function = f"mypkg-{version}.zip", f"mypkg_place_{version}"
    models = PACKAGE["mypkg/models.py"].replace(b'VERSION = "1"', f'VERSION = "{version}"'.encode())
    content = make_zip({**PACKAGE, "mypkg/models.py": models, "mypkg/jobs.py": PLACE})
    upload = server.post("/artifacts", files={"file": (artifact, content)},
                         params={"force": "true"})
    assert upload.status_code == 200, upload.text
    created = server.post("/functions", json={"name": function, "path": artifact,
                                              "className": "mypkg.jobs.place"})
    assert created.status_code == 200, created.text
    return function


@pytest.mark.slow
def test_a_package_function_receives_classes_of_its_sibling_module_on_a_worker(
        server: Server) -> None:
    functions = {version: deploy_version(server, version) for version in ("1", "2")}
    order = {"id": 7, "lines": [{"sku": "b", "colour": "red"}], "tint": "green"}
    for version in ("1", "2", "1"):
        job = run(server, functions[version], {"order": order})
        assert job["status"] == "finished", job
        assert job["jobResult"] == {"module": "mypkg.models", "version": version,
                                    "built": [True] * 4}
    refused = server.post(f"/functions/{functions['1']}/jobs",
                          json={"order": {**order, "lines": [{"sku": "a", "colour": "blue"}]}})
    assert refused.status_code == 400
    assert refused.json()["error"]["details"][0]["field"] == "order.lines[0].colour"


def test_run_local_converts_the_same_way() -> None:
    repo = FUNCTIONS_DIR.parent.parent
    done = subprocess.run(
        [sys.executable, "-P", "-m", "sparkgate", "run", "--local",
         f"{Path('tests/functions/data_types.py')}:types", "--args", json.dumps(GOOD)],
        capture_output=True, text=True, timeout=240, cwd=repo)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == GOOD_SEEN
    results = subprocess.run(
        [sys.executable, "-P", "-m", "sparkgate", "run", "--local",
         "tests/functions/data_types.py:results"],
        capture_output=True, text=True, timeout=240, cwd=repo)
    assert results.returncode == 0, results.stderr
    assert json.loads(results.stdout) == RESULTS
