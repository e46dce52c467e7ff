"""A small client for sparkgate's HTTP API: run functions, follow jobs, deploy code.

It needs only httpx: no Spark, no JVM, nothing of the gateway::

    from sparkgate_client import Client

    with Client("http://127.0.0.1:2004", api_key="...") as sparkgate:
        print(sparkgate.run("add", x=1, y=2))
        job = sparkgate.submit("train", rows=1_000_000)
        for line in job.logs(follow=True):
            print(line)

``AsyncClient`` is the same for asyncio. See docs/client.md.
"""

from sparkgate_client._version import __version__
from sparkgate_client.aio import AsyncClient, AsyncJob
from sparkgate_client.client import Client, Job
from sparkgate_client.errors import (
    ApiError,
    BadRequest,
    Conflict,
    ConnectionFailed,
    Forbidden,
    InvalidArguments,
    InvalidArtifact,
    JobCancelled,
    JobError,
    JobFailed,
    NotFound,
    PayloadTooLarge,
    ProtocolError,
    ServerError,
    SparkgateError,
    TooManyRequests,
    Unauthorized,
    Unavailable,
    WaitTimeout,
    WrongEngine,
)
from sparkgate_client.models import (
    Artifact,
    ContextInfo,
    Event,
    FunctionInfo,
    JobInfo,
    JobPage,
)
from sparkgate_client.retry import NO_RETRY, RetryPolicy

__all__ = [
    "NO_RETRY",
    "ApiError",
    "Artifact",
    "AsyncClient",
    "AsyncJob",
    "BadRequest",
    "Client",
    "Conflict",
    "ConnectionFailed",
    "ContextInfo",
    "Event",
    "Forbidden",
    "FunctionInfo",
    "InvalidArguments",
    "InvalidArtifact",
    "Job",
    "JobCancelled",
    "JobError",
    "JobFailed",
    "JobInfo",
    "JobPage",
    "NotFound",
    "PayloadTooLarge",
    "ProtocolError",
    "RetryPolicy",
    "ServerError",
    "SparkgateError",
    "TooManyRequests",
    "Unauthorized",
    "Unavailable",
    "WaitTimeout",
    "WrongEngine",
    "__version__",
]
