"""Where a function may run: a Spark function (one that takes a Spark handle) only in a context
whose engine gives it Spark; a plain function in any context. Checked when a job is submitted
and when a function's default context is set, so a mismatch is a 400 before any job exists.
"""

from __future__ import annotations

from sparkgate.jobs.contexts import Context
from sparkgate.jobs.errors import WrongEngine
from sparkgate.jobs.signatures.model import Signature

# The engine whose workers hold a SparkSession, from which every Spark handle is made.
SPARK_ENGINE = "spark"
_HANDLE_TYPES = {"session": "SparkSession", "context": "SparkContext",
                 "sql_context": "SQLContext", "streaming_context": "StreamingContext"}


def check_placement(function: str, signature: Signature | None, context: Context,
                    field: str) -> None:
    """Raise WrongEngine if ``function`` cannot run in ``context``. A function stored without
    its signature (``force=true``) is not known to need Spark: its worker finds out."""
    if signature is None or signature.handle is None or context.engine == SPARK_ENGINE:
        return
    raise WrongEngine(
        f"{field}: function {function!r} takes a {_HANDLE_TYPES[signature.handle]}, so it "
        f"needs engine {SPARK_ENGINE!r}, but context {context.name!r} runs on engine "
        f"{context.engine!r}; use a context with engine {SPARK_ENGINE!r}, or drop the Spark "
        "handle to make it a plain function (docs/functions.md)",
        {"field": field, "function": function, "context": context.name,
         "engine": context.engine, "needs": SPARK_ENGINE},
    )
