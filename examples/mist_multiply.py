"""A function written for Hydrosphere Mist, with mistpy's decorators, running unchanged.

Mist declared the arguments with ``@with_args(arg(...))`` and the Spark handle with
``@on_spark_context``; sparkgate reads those declarations as the argument schema and passes
every argument by keyword.

Example call (sync)::

    curl -X POST 'http://127.0.0.1:2004/v2/api/functions/mist_multiply/jobs?force=true' \\
         -H 'Content-Type: application/json' -d '{"numbers": [1, 2, 3], "multiplier": 3}'

    → {"result": [3, 6, 9]}
"""

from mistpy.decorators import *


@with_args(
    arg("numbers", type_hint=list_type(int)),
    arg("multiplier", type_hint=int, default=2),
)
@on_spark_context
def mist_multiply(sc, numbers, multiplier):
    """Multiply every number by ``multiplier`` (default 2) on the cluster, keeping the order.

    Example: ``mist_multiply(sc, numbers=[1, 2, 3], multiplier=2)`` → ``{"result": [2, 4, 6]}``.
    """
    return {"result": sc.parallelize(numbers).map(lambda x: x * multiplier).collect()}
