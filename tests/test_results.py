"""What a function returns becomes JSON, or the job fails saying exactly why."""

from __future__ import annotations

import datetime
import decimal
import json

import numpy as np
import pytest
from pyspark.sql import Row

from workers.results import ResultNotSerializable, to_json_value


def test_common_python_and_spark_values_convert():
    value = {
        "row": Row(a=1, b=Row(c="x")),
        "np": [np.int64(3), np.float32(0.5), np.array([1, 2, 3]), np.bool_(True)],
        "dec": decimal.Decimal("1.25"),
        "when": datetime.date(2026, 11, 25),
        "tuple": (1, 2),
        3: "int key",
    }
    converted = to_json_value(value)
    assert converted == {
        "row": {"a": 1, "b": {"c": "x"}},
        "np": [3, 0.5, [1, 2, 3], True],
        "dec": 1.25,
        "when": "2026-11-25",
        "tuple": [1, 2],
        "3": "int key",
    }
    json.dumps(converted, allow_nan=False)


@pytest.mark.parametrize(("value", "message"), [
    ({"x": [object()]}, "result.x[0] is a builtins.object"),
    ({"x": float("nan")}, "result.x is nan"),
    ({(1, 2): 1}, "result has a key of type tuple"),
])
def test_unconvertible_values_name_the_place(value, message):
    with pytest.raises(ResultNotSerializable, match=message.replace("[", r"\[").replace(
            "]", r"\]")):
        to_json_value(value)
