"""Functions written for Hydrosphere Mist with mistpy's decorators, as Mist users wrote them.

Fixtures for tests/test_signatures.py: the schema is read from this file's source, and the
functions are also imported and called, to show that sparkgate passes what mistpy expects.
"""

import mistpy.decorators
from mistpy.decorators import (
    arg,
    list_type,
    on_spark_context,
    on_sql_context,
    opt_arg,
    with_args,
)


# The shape of mistpy's README example: a default on the last arg (mistpy fills that one).
@with_args(
    arg("nums", type_hint=list_type(int)),
    arg("mult", type_hint=int, default=2),
)
@on_spark_context
def multiply(sc, nums, mult):
    return sc.parallelize(nums).map(lambda x: x * mult).collect()


# The default is not on the last arg: mistpy's with_args never applies it.
@with_args(
    arg("mult", int, default=3),
    arg("nums", list_type(int)),
)
@on_spark_context
def scale(sc, mult, nums):
    return sc.parallelize(nums).map(lambda x: x * mult).collect()


# opt_arg last: mistpy's OptionalArg drops the None it meant to pass.
@with_args(arg("name", type_hint=str), opt_arg("greeting", str))
@mistpy.decorators.on_spark_session
def greet(spark, name, greeting):
    return {"app": spark.app_name, "text": f"{greeting or 'hello'}, {name}"}


# Decorators in the other order, and optional=True spelt out.
@on_sql_context
@with_args(arg("table", type_hint=str), arg("limit", int, optional=True), arg("exact", bool))
def head(sql_ctx, table, limit, exact):
    return {"table": table, "limit": limit, "exact": exact, "app": sql_ctx.app_name}


# No with_args: Mist took the parameters after the first, untyped.
@on_spark_context
def add(sc, a, b=5):
    return a + b
