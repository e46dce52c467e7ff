"""The API's requests and answers, without I/O: what ``Client`` and ``AsyncClient`` send and
how they read what comes back. Both clients build their calls here, so the two cannot drift."""

from __future__ import annotations

import json
import math
import os
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

from sparkgate_client._version import __version__
from sparkgate_client.errors import (
    ApiError,
    JobCancelled,
    JobFailed,
    ProtocolError,
    error_class,
)
from sparkgate_client.models import (
    ENDED,
    Artifact,
    ContextInfo,
    Event,
    FunctionInfo,
    JobInfo,
    JobPage,
)
from sparkgate_client.retry import retry_after_s

API = "/v2/api"
DEFAULT_URL = "http://127.0.0.1:2004"
NEXT_OFFSET = "X-Sparkgate-Next-Offset"
JOB_STATUS = "X-Sparkgate-Job-Status"
#: ``run`` asks the gateway to hold the submit open this long at most; a job still running
#: then is waited for over the event stream (proxies cut requests held longer).
RUN_WAIT_S = 55.0
#: The event stream's keep-alive comes every 15 s: a stream silent longer than this is dead.
STREAM_SILENCE_S = 25.0
#: How long an artifact upload may wait for its answer: the gateway builds the environment of
#: its requirements first (its environment_build_timeout_s, 5 min by default).
UPLOAD_TIMEOUT_S = 900.0
#: How often ``logs(follow=True)`` asks for new lines (workers store them that often).
LOG_POLL_S = 0.5


@dataclass(frozen=True)
class Call:
    """One request. ``idempotent``: whether it may be repeated after its connection broke
    once it may have been sent (default: for GET and PUT only); ``read_timeout_s``
    overrides the client's; ``deadline`` bounds its retries."""

    method: str
    path: str
    params: dict[str, str | list[str]] = field(default_factory=dict)
    json: Any = None
    files: dict[str, tuple[str, bytes]] | None = None
    # Form fields sent with ``files``.
    data: dict[str, str] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    idempotent: bool | None = None
    read_timeout_s: float | None = None
    #: No retry begins after this (``time.monotonic()``): a wait's own deadline.
    deadline: float | None = None

    @property
    def repeatable(self) -> bool:
        return self.idempotent if self.idempotent is not None else self.method in _IDEMPOTENT


_IDEMPOTENT = frozenset({"GET", "HEAD", "PUT"})


def settings(url: str | None, api_key: str | None) -> tuple[str, str | None]:
    """The gateway's URL and API key: given, else ``SPARKGATE_URL`` and ``SPARKGATE_API_KEY``
    (as the ``sparkgate`` command reads them), else the local default and none."""
    url = url or os.environ.get("SPARKGATE_URL") or DEFAULT_URL
    key = api_key if api_key is not None else os.environ.get("SPARKGATE_API_KEY") or None
    return url.rstrip("/"), key


def headers(api_key: str | None, extra: Mapping[str, str] | None) -> dict[str, str]:
    values = {"User-Agent": f"sparkgate-client/{__version__} httpx/{httpx.__version__}"}
    if api_key:
        values["Authorization"] = f"Bearer {api_key}"
    values.update(extra or {})
    return values


def timeout(call: Call, default: httpx.Timeout) -> httpx.Timeout:
    if call.read_timeout_s is None:
        return default
    return httpx.Timeout(connect=default.connect, read=call.read_timeout_s,
                         write=default.write, pool=default.pool)


# ---------------------------------------------------------------------------------------------
# Errors


def api_error(response: httpx.Response) -> ApiError:
    """The typed error for an error answer (its body already read). An answer without the
    API's error shape (a proxy's page) still gets its status's class."""
    status = response.status_code
    retry_after = retry_after_s(response.headers.get("Retry-After"))
    try:
        error = response.json()["error"]
        code, message, details = str(error["code"]), str(error["message"]), error.get("details")
    except (ValueError, KeyError, TypeError):
        code = _CODES.get(status, f"http_{status}")
        message = response.text.strip()[:300] or response.reason_phrase
        details = None
    return error_class(status, code)(message, status=status, code=code, details=details,
                                     retry_after=retry_after)


_CODES = {401: "unauthenticated", 403: "forbidden", 404: "not_found", 429: "too_many_requests",
          503: "unavailable"}


def body(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        raise ProtocolError(f"{response.request.method} {response.request.url}: expected JSON, "
                            f"got {response.text[:200]!r}") from None


# ---------------------------------------------------------------------------------------------
# Submitting


@dataclass(frozen=True)
class Submitted:
    """A submit's answer: the job's id, and the job itself when the answer carried it."""

    job_id: str
    info: JobInfo | None = None


def arguments(given: Mapping[str, Any] | None, more: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(given or {})
    twice = sorted(set(merged) & set(more))
    if twice:
        raise TypeError(f"argument(s) {', '.join(twice)} given both in the mapping and as "
                        "keywords")
    merged.update(more)
    return merged


def duration(seconds: float | None) -> str | None:
    """A duration for the API's query parameters, in milliseconds (``Inf`` for infinity)."""
    if seconds is None:
        return None
    if math.isinf(seconds):
        return "Inf"
    if seconds < 0 or math.isnan(seconds):
        raise ValueError(f"expected a duration of 0 seconds or more, got {seconds}")
    return f"{round(seconds * 1000)}ms"


def submit_call(function: str, args: dict[str, Any], *, context: str | None,
                external_id: str | None, idempotency_key: str | None,
                start_timeout: float | None, perform_timeout: float | None,
                wait_s: float | None, read_timeout_s: float,
                deadline: float | None = None) -> Call:
    """``wait_s``: answer once the job ended, or after that long (``wait=``); None: as soon
    as it is queued. Always with an ``Idempotency-Key``: retries never run it twice."""
    params: dict[str, str | list[str]] = {name: value for name, value in (
        ("context", context), ("externalId", external_id),
        ("startTimeout", duration(start_timeout)),
        ("performTimeout", duration(perform_timeout)), ("wait", duration(wait_s)),
    ) if value is not None}
    key = idempotency_key or uuid.uuid4().hex
    return Call("POST", f"{API}/functions/{segment(function)}/jobs", params, json=args,
                headers={"Idempotency-Key": key}, idempotent=True,
                read_timeout_s=None if wait_s is None else wait_s + read_timeout_s,
                deadline=deadline)


def submitted(response: httpx.Response) -> Submitted:
    """``{"id"}`` (queued), the ended job (``wait=``, 200) or ``{"id", "status", "url"}``
    (``wait=`` ran out, 202)."""
    answer = body(response)
    if isinstance(answer, dict) and "jobId" in answer:
        return Submitted(str(answer["jobId"]), JobInfo.from_json(answer))
    if isinstance(answer, dict) and isinstance(answer.get("id"), str):
        return Submitted(answer["id"])
    raise ProtocolError(f"a submit answered {answer!r}")


def outcome(job: JobInfo) -> Any:
    """An ended job's result, or the error that says why there is none."""
    if job.status == "finished":
        return job.result
    if job.status == "cancelled":
        why = f": {job.error}" if job.error else ""
        raise JobCancelled(f"job {job.id} ({job.function}) was cancelled{why}", job)
    first = (job.error or "no error text").strip().splitlines()[0]
    raise JobFailed(f"job {job.id} ({job.function}) failed: {first}", job)


# ---------------------------------------------------------------------------------------------
# Jobs


def job_call(job_id: str) -> Call:
    return Call("GET", f"{API}/jobs/{segment(job_id)}")


def cancel_call(job_id: str) -> Call:
    # Not repeated after a broken connection (DELETEs never are): a cancel that got through
    # answers 409 the second time.
    return Call("DELETE", f"{API}/jobs/{segment(job_id)}")


def jobs_call(*, status: str | Iterable[str] | None, function: str | None,
              context: str | None, external_id: str | None, schedule: str | None,
              limit: int, offset: int, paginate: bool) -> Call:
    params: dict[str, str | list[str]] = {"limit": str(limit), "offset": str(offset)}
    if status is not None:
        params["status"] = [status] if isinstance(status, str) else list(status)
    for name, value in (("function", function), ("context", context),
                        ("externalId", external_id), ("schedule", schedule)):
        if value is not None:
            params[name] = value
    if paginate:
        params["paginate"] = "true"
    return Call("GET", f"{API}/jobs", params)


def job_list(response: httpx.Response) -> list[JobInfo]:
    answer = body(response)
    if not isinstance(answer, list):
        raise ProtocolError(f"a job listing answered {type(answer).__name__}, not a list")
    return [JobInfo.from_json(job) for job in answer]


def job_page(response: httpx.Response) -> JobPage:
    answer = body(response)
    if not isinstance(answer, dict) or not isinstance(answer.get("jobs"), list):
        raise ProtocolError("a paginated job listing answered no 'jobs'")
    return JobPage([JobInfo.from_json(job) for job in answer["jobs"]],
                   int(answer.get("total", 0)), bool(answer.get("totalExact", True)))


def job_info(response: httpx.Response) -> JobInfo:
    return JobInfo.from_json(body(response))


def timed_out(job: JobInfo, timeout_s: float | None) -> str:
    return f"job {job.id} ({job.function}) has not ended within {timeout_s}s: it is {job.status}"


# ---------------------------------------------------------------------------------------------
# Logs


def logs_call(job_id: str, offset: int) -> Call:
    params: dict[str, str | list[str]] = {"offset": str(offset)} if offset else {}
    return Call("GET", f"{API}/jobs/{segment(job_id)}/logs", params)


@dataclass(frozen=True)
class LogChunk:
    """Records read from ``offset`` on; where to read next; and the job's status as read just
    before its log (None from a gateway that does not say: Mist, older sparkgate)."""

    records: list[str]
    next_offset: int
    status: str | None

    @property
    def complete(self) -> bool:
        return self.status in ENDED


def log_chunk(response: httpx.Response, offset: int) -> LogChunk:
    records = log_records(response.text)
    told = response.headers.get(NEXT_OFFSET)
    if told is None:  # the gateway ignored the offset: the whole log came
        return LogChunk(records[offset:], max(offset, len(records)), None)
    return LogChunk(records, int(told), response.headers.get(JOB_STATUS))


def log_records(text: str) -> list[str]:
    """The log's records: one per line, but a record's continuation lines (a traceback),
    which start with two spaces, stay with it."""
    records: list[str] = []
    for line in text.split("\n"):
        if line.startswith("  ") and records:
            records[-1] += "\n" + line
        elif line:
            records.append(line)
    return records


# ---------------------------------------------------------------------------------------------
# Events (Server-Sent Events)


def events_call(*, jobs: Iterable[str] | None = None, functions: Iterable[str] | None = None,
                contexts: Iterable[str] | None = None, with_logs: bool = False) -> Call:
    params: dict[str, str | list[str]] = {}
    for name, values in (("job", jobs), ("function", functions), ("context", contexts)):
        if values is not None:
            params[name] = [values] if isinstance(values, str) else list(values)
    if with_logs:
        params["withLogs"] = "true"
    return Call("GET", f"{API}/events", params, headers={"Accept": "text/event-stream"},
                read_timeout_s=STREAM_SILENCE_S)


@dataclass(frozen=True)
class Comment:
    """A comment line of the stream: ``connected`` once it is live, ``keep-alive``."""

    text: str


class SSEParser:
    """Server-Sent Events, fed line by line (without their line ends)."""

    def __init__(self) -> None:
        self._name = ""
        self._data: list[str] = []
        self._seq: str | None = None

    def feed(self, line: str) -> Event | Comment | None:
        if not line:
            return self._dispatch()
        if line.startswith(":"):
            return Comment(line[1:].strip())
        name, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if name == "event":
            self._name = value
        elif name == "data":
            self._data.append(value)
        elif name == "id":
            self._seq = value
        return None

    def _dispatch(self) -> Event | None:
        name, data, seq = self._name or "message", "\n".join(self._data), self._seq
        self._name, self._data, self._seq = "", [], None
        if not data:
            return None
        try:
            decoded = json.loads(data)
        except ValueError:
            decoded = {"data": data}
        return Event(name, decoded if isinstance(decoded, dict) else {"data": decoded}, seq)


def end_event(job: JobInfo) -> Event:
    """An ended job's end event, rebuilt from the job (the stream missed it)."""
    data: dict[str, Any] = {"event": job.status, "id": job.id}
    if job.end_time is not None:
        data["time"] = job.end_time
    if job.status == "finished":
        data["result"] = job.result
    elif job.error is not None:
        data["error"] = job.error
    return Event(job.status, data)


# ---------------------------------------------------------------------------------------------
# Functions, artifacts, contexts, workers, status


def function_body(name: str, artifact: str, class_name: str | None,
                  default_context: str | None) -> dict[str, Any]:
    definition = {"name": name, "path": artifact, "className": class_name or name}
    if default_context is not None:
        definition["defaultContext"] = default_context
    return definition


def function_call(method: str, definition: dict[str, Any], uninspected: bool) -> Call:
    params: dict[str, str | list[str]] = {"force": "true"} if uninspected else {}
    # Saving the same definition twice leaves one function: safe to repeat.
    return Call(method, f"{API}/functions", params, json=definition)


def function_info(response: httpx.Response) -> FunctionInfo:
    return FunctionInfo.from_json(body(response))


def function_list(response: httpx.Response) -> list[FunctionInfo]:
    return [FunctionInfo.from_json(f) for f in _list(response, "functions")]


def upload_call(file: str | os.PathLike[str], content: bytes | None, replace: bool,
                requirements: Iterable[str] = ()) -> Call:
    """``file``: a path to read, or (with ``content``) the artifact's name; ``requirements``:
    pip requirement lines its functions need (the gateway builds their environment)."""
    if content is None:
        path = Path(file)
        name, content = path.name, path.read_bytes()
    else:
        name = os.fspath(file)
    params: dict[str, str | list[str]] = {"force": "true"} if replace else {}
    # Without replace, a repeat of an upload that got through is a 409.
    lines = "\n".join(requirements)
    return Call("POST", f"{API}/artifacts", params, files={"file": (name, content)},
                data={"requirements": lines} if lines else None, idempotent=replace,
                read_timeout_s=UPLOAD_TIMEOUT_S)


def artifact(response: httpx.Response) -> Artifact:
    return Artifact(response.text.strip(), response.headers.get("X-Artifact-Sha1", ""))


def artifact_info(response: httpx.Response) -> Artifact:
    info = json_object(response)
    environment = info.get("environment")
    return Artifact(str(info["name"]), str(info["sha1"]),
                    tuple(str(r) for r in info.get("requirements") or ()),
                    environment if isinstance(environment, str) else None)


def context_call(name: str, fields: Mapping[str, Any]) -> Call:
    """Saving a context (``POST`` creates or replaces it): the same body twice is one context,
    so it may be repeated."""
    return Call("POST", resource("contexts"), json=context_body(name, fields), idempotent=True)


def context_body(name: str, fields: Mapping[str, Any]) -> dict[str, Any]:
    """A context's definition: ``fields`` as the API names them (``maxJobs``), or in Python's
    style (``max_jobs``)."""
    return {"name": name, **{_camel(key): value for key, value in fields.items()}}


def context_info(response: httpx.Response) -> ContextInfo:
    return ContextInfo.from_json(body(response))


def context_list(response: httpx.Response) -> list[ContextInfo]:
    return [ContextInfo.from_json(c) for c in _list(response, "contexts")]


def name_list(response: httpx.Response) -> list[str]:
    return [str(name) for name in _list(response, "names")]


def object_list(response: httpx.Response) -> list[dict[str, Any]]:
    return [item for item in _list(response, "objects") if isinstance(item, dict)]


def json_object(response: httpx.Response) -> dict[str, Any]:
    answer = body(response)
    if not isinstance(answer, dict):
        raise ProtocolError(f"expected a JSON object, got {type(answer).__name__}")
    return answer


def _list(response: httpx.Response, what: str) -> list[Any]:
    answer = body(response)
    if not isinstance(answer, list):
        raise ProtocolError(f"expected a list of {what}, got {type(answer).__name__}")
    return answer


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def resource(kind: str, name: str = "") -> str:
    """The path of a collection (``functions``) or of one of its items, by name or id."""
    return f"{API}/{kind}/{segment(name)}" if name else f"{API}/{kind}"


def segment(value: str) -> str:
    """A name or id as one path segment: ``/`` and other reserved characters escaped."""
    return quote(value, safe="")
