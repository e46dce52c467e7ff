"""The client's errors: one tree under ``SparkgateError``.

- ``ApiError`` and its subclasses: the gateway answered with its error shape
  (``{"error": {"code", "message", "details"}}``); one class per kind of answer, the HTTP
  status, the ``code``, the ``message`` and the ``details`` on each.
- ``ConnectionFailed``: the gateway could not be reached (after the retries).
- ``JobError`` and its subclasses: a job ended badly, or did not end in time; each carries the
  job (``.job``, a ``JobInfo``) as it was last read.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sparkgate_client.models import JobInfo


class SparkgateError(Exception):
    """The root of every error this client raises."""


class ConnectionFailed(SparkgateError):
    """The gateway could not be reached, or the connection broke, and the retries (if the
    request could be retried) did not help. The httpx error is the ``__cause__``."""


class ProtocolError(SparkgateError):
    """An answer that is not what the API documents (a proxy's error page, a wrong URL)."""


class ApiError(SparkgateError):
    """The gateway refused the request: ``status`` (HTTP), ``code`` (``not_found``,
    ``invalid_arguments`` ...), ``message`` (what to fix) and ``details`` (machine-readable:
    an object, a list of ``{"field", "expected", "got"}``, or None)."""

    def __init__(self, message: str, *, status: int, code: str, details: Any = None,
                 retry_after: float | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code
        self.details = details
        #: Seconds the gateway asked to wait before retrying (``Retry-After``), if it said.
        self.retry_after = retry_after

    def __str__(self) -> str:
        return f"{self.status} {self.code}: {self.message}"


class BadRequest(ApiError):
    """400: a malformed request, a bad name or parameter, a missing artifact or context."""


class InvalidArguments(BadRequest):
    """400 ``invalid_arguments``: the job's arguments (or a context's fields) do not fit;
    ``details`` lists each problem as ``{"field", "expected", "got"}``."""


class WrongEngine(BadRequest):
    """400 ``wrong_engine``: a Spark function for a context without Spark."""


class InvalidArtifact(BadRequest):
    """400 ``invalid_artifact``: an upload that is not valid Python, or lacks the function."""


class Unauthorized(ApiError):
    """401 ``unauthenticated``: no API key, or one the gateway does not accept."""


class Forbidden(ApiError):
    """403 ``forbidden``: the key's role (or its functions) does not allow this."""


class NotFound(ApiError):
    """404: no such function, job, context, artifact or worker."""


class Conflict(ApiError):
    """409: it exists, is in use, or has ended (a cancel of an ended job); an
    ``Idempotency-Key`` reused with other arguments."""


class PayloadTooLarge(ApiError):
    """413: a body or an artifact over the gateway's limit."""


class Unavailable(ApiError):
    """503: the gateway's database or Redis cannot be reached; ``retry_after`` says when to
    try again. Raised once the client's own retries have run out."""


class TooManyRequests(Unavailable):
    """429: over a limit (submits per second, jobs queued per context, event streams);
    ``retry_after`` says when to try again. A kind of ``Unavailable``: both mean "later"."""


class ServerError(ApiError):
    """500 (a bug in the gateway) or another 5xx."""


class JobError(SparkgateError):
    """A job did not give a result; ``job`` is the job (``JobInfo``) as last read."""

    def __init__(self, message: str, job: JobInfo) -> None:
        super().__init__(message)
        self.job = job


class JobFailed(JobError):
    """The job ended ``failed``: ``job.error`` holds the error text (type, message,
    traceback), or why sparkgate ended it (timeouts, a lost worker ...)."""


class JobCancelled(JobError):
    """The job ended ``cancelled``."""


class WaitTimeout(JobError, TimeoutError):
    """The job had not ended when the wait ran out; it goes on (cancel it if it should not)."""


_BY_CODE: dict[str, type[ApiError]] = {
    "invalid_arguments": InvalidArguments,
    "wrong_engine": WrongEngine,
    "invalid_artifact": InvalidArtifact,
}
_BY_STATUS: dict[int, type[ApiError]] = {
    400: BadRequest, 401: Unauthorized, 403: Forbidden, 404: NotFound, 409: Conflict,
    413: PayloadTooLarge, 429: TooManyRequests, 503: Unavailable,
}


def error_class(status: int, code: str) -> type[ApiError]:
    """The class for an error answer: by its code where one has its own, else its status."""
    if code in _BY_CODE:
        return _BY_CODE[code]
    if status in _BY_STATUS:
        return _BY_STATUS[status]
    return ServerError if status >= 500 else ApiError
