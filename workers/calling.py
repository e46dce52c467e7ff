"""Calling a user function as every job calls it: the Spark handle it takes from the engine
(none for a plain function), its checked arguments, its result made JSON, and its error as the
job records it.

A worker's jobs and a local run (``sparkgate run --local``, ``sparkgate.testing``) call through
here, so a function behaves on a laptop exactly as it does deployed.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable
from types import FrameType
from typing import Any

from sparkgate.workers.arguments import ArgumentNotAccepted, python_arguments
from sparkgate.workers.artifacts import LoadedFunction
from sparkgate.workers.engines import Engine
from sparkgate.workers.results import ResultNotSerializable, ResultTooLarge, checked_result

# What the data passed or returned was refused for: the message says where and why, and a
# traceback would show only sparkgate's own frames, none of the function's.
_DATA_ERRORS = (ArgumentNotAccepted, ResultNotSerializable, ResultTooLarge)


def call_function(loaded: LoadedFunction, arguments: dict[str, Any], engine: Engine,
                  max_result_bytes: int, then: Callable[[Any], Any] | None = None) -> Any:
    """The JSON-ready result of ``loaded`` called with ``arguments`` (as ``validate_arguments``
    returned them, made the Python values it declares: ``python_arguments``); raises whatever
    the function raises, or why its arguments or its result cannot be taken.
    The engine gives the Spark handle, to a function that takes one. ``then``: what the
    function's value comes to (a worker's job follows the stream it left running)."""
    signature = loaded.signature
    handles = () if signature.handle is None else (engine.handle(signature.handle),)
    kwargs = python_arguments(signature, signature.call_kwargs(arguments), loaded.fn,
                              loaded.modules)
    value = in_function(loaded.fn, *handles, **kwargs)
    if then is not None:
        value = then(value)
    return checked_result(value, max_result_bytes)


def in_function(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """``fn(*args, **kwargs)``, in a frame of its own: while this frame is on a thread's stack,
    that thread runs the function's code (or what it calls), not sparkgate's (see
    ``running_function``)."""
    return fn(*args, **kwargs)


def running_function(frame: FrameType | None) -> bool:
    """Whether a thread whose innermost frame is ``frame`` is inside a job's function."""
    while frame is not None:
        if frame.f_code is in_function.__code__:
            return True
        frame = frame.f_back
    return False


def describe_error(exc: BaseException) -> str:
    """``Type: message`` then the traceback: what Mist returned as a failed job's result. Data
    refused on the way in or out (``_DATA_ERRORS``) is ``Type: message`` alone."""
    summary = "".join(traceback.format_exception_only(type(exc), exc)).strip()
    if isinstance(exc, _DATA_ERRORS):
        return summary
    trace = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    return f"{summary}\n\n{trace}".rstrip()
