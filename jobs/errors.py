"""One error tree for sparkgate.

Domain code raises these; the gateway's error middleware turns each into an HTTP response
with the shape ``{"error": {"code", "message", "details"}}`` and the class's ``http_status``.
"""

from __future__ import annotations

from typing import Any


class SparkgateError(Exception):
    """Root of every error sparkgate raises on purpose."""

    code = "internal"
    http_status = 500

    def __init__(self, message: str, details: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    def to_dict(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message, "details": self.details}}


class BadRequest(SparkgateError):
    """The request itself is malformed (bad JSON, bad query parameter, wrong content type)."""

    code = "bad_request"
    http_status = 400


class InvalidArguments(BadRequest):
    """Job arguments do not fit the function's schema.

    ``details`` is a list of ``{"field", "expected", "got"}`` objects, one per problem.
    """

    code = "invalid_arguments"


class InvalidArtifact(BadRequest):
    """An artifact cannot be used: bad name, bad content, no such function inside it."""

    code = "invalid_artifact"


class EnvironmentBuildFailed(InvalidArtifact):
    """An artifact's requirements could not be installed (jobs/environments.py): the message
    carries the installer's own."""


class WrongEngine(BadRequest):
    """A Spark function sent to a context whose engine has no Spark (see ``jobs.placement``)."""

    code = "wrong_engine"


class NotFound(SparkgateError):
    code = "not_found"
    http_status = 404


class Conflict(SparkgateError):
    """The thing already exists, or is in use."""

    code = "conflict"
    http_status = 409


class IllegalTransition(SparkgateError):
    """A job state change that the state machine does not allow from the job's current state."""

    code = "illegal_transition"
    http_status = 409

    def __init__(self, job_id: str, current: str | None, target: str) -> None:
        super().__init__(
            f"job {job_id} is {current}: it cannot become {target}",
            {"jobId": job_id, "status": current, "target": target},
        )
        self.job_id = job_id
        self.current = current
        self.target = target


class PayloadTooLarge(SparkgateError):
    code = "payload_too_large"
    http_status = 413


class RetryLater(SparkgateError):
    """Refused for now, not for good: the answer carries ``Retry-After: retry_after_s``."""

    def __init__(self, message: str, retry_after_s: int, details: Any = None) -> None:
        super().__init__(message, details)
        self.retry_after_s = retry_after_s


class Unavailable(RetryLater):
    """A dependency (database, Redis) cannot be reached; the client should retry later."""

    code = "unavailable"
    http_status = 503

    def __init__(self, message: str, retry_after_s: int = 5, details: Any = None) -> None:
        super().__init__(message, retry_after_s, details)


class ConfigError(SparkgateError):
    """Settings that cannot be used (unknown key, wrong type): raised at start, not per request."""

    code = "config"


class Unauthenticated(SparkgateError):
    """No credentials, or credentials that are not valid (unknown, revoked, expired key/token)."""

    code = "unauthenticated"
    http_status = 401


class Forbidden(SparkgateError):
    """Valid credentials whose role does not allow this request."""

    code = "forbidden"
    http_status = 403


class CrossSiteRequest(Forbidden):
    """A page of another site asked a browser to change something here."""

    code = "cross_site_request"


class MisdirectedRequest(SparkgateError):
    """A Host name this gateway does not answer: a DNS-rebinding page, or a name to allow."""

    code = "misdirected_request"
    http_status = 421


class UnsupportedMediaType(SparkgateError):
    """A body in a form the gateway does not read (a Content-Encoding other than gzip, deflate)."""

    code = "unsupported_media_type"
    http_status = 415


class TooManyRequests(RetryLater):
    """A limit on how much one client or one context may have at once; retry after a while."""

    code = "too_many_requests"
    http_status = 429

    def __init__(self, message: str, retry_after_s: int = 1, details: Any = None) -> None:
        super().__init__(message, retry_after_s, details)
