"""``Client``: sparkgate's API from synchronous code, and ``Job``, a handle on one job."""

from __future__ import annotations

import dataclasses
import os
import ssl
import time
from collections.abc import Generator, Iterable, Mapping
from types import TracebackType
from typing import Any

import httpx

from sparkgate_client import _protocol as p
from sparkgate_client.errors import ConnectionFailed, NotFound, Unavailable, WaitTimeout
from sparkgate_client.models import (
    Artifact,
    ContextInfo,
    Event,
    FunctionInfo,
    JobInfo,
    JobPage,
)
from sparkgate_client.retry import Attempts, RetryPolicy


class Client:
    """A connection (pool) to one sparkgate gateway.

    ``url`` and ``api_key`` default to ``SPARKGATE_URL`` and ``SPARKGATE_API_KEY``, then to
    ``http://127.0.0.1:2004`` and no key. ``timeout`` (seconds) bounds each request (a submit
    that waits for its job gets that much more); ``retry`` says how ``429``, ``503`` and
    failed connections are retried. Close it (or use it in a ``with`` block) when done.
    """

    def __init__(self, url: str | None = None, *, api_key: str | None = None,
                 timeout: float = 30.0, retry: RetryPolicy | None = None,
                 headers: Mapping[str, str] | None = None, verify: bool | ssl.SSLContext = True,
                 transport: httpx.BaseTransport | None = None) -> None:
        self.url, key = p.settings(url, api_key)
        self.retry = retry or RetryPolicy()
        self._timeout = httpx.Timeout(timeout)
        self._http = httpx.Client(base_url=self.url, headers=p.headers(key, headers),
                                  timeout=self._timeout, verify=verify, transport=transport)

    def __repr__(self) -> str:
        return f"Client({self.url!r})"

    def __enter__(self) -> Client:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    # -----------------------------------------------------------------------------------------
    # Running functions

    def run(self, function: str, arguments: Mapping[str, Any] | None = None, /, *,
            timeout: float | None = None, context: str | None = None,
            external_id: str | None = None, idempotency_key: str | None = None,
            start_timeout: float | None = None, perform_timeout: float | None = None,
            **kwargs: Any) -> Any:
        """Run ``function`` and return its result: ``client.run("add", x=1, y=2)``.

        Arguments come as keywords, or as a mapping (for names that are this method's own
        options: ``client.run("f", {"context": 3})``). Raises ``JobFailed`` or
        ``JobCancelled`` (with ``.job``) if the job did not finish, ``WaitTimeout`` if it had
        not ended after ``timeout`` seconds (it goes on), ``InvalidArguments`` (nothing ran)
        if the arguments do not fit. Timeouts are in seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        call = p.submit_call(
            function, p.arguments(arguments, kwargs), context=context,
            external_id=external_id, idempotency_key=idempotency_key,
            start_timeout=start_timeout, perform_timeout=perform_timeout,
            wait_s=min(p.RUN_WAIT_S, timeout if timeout is not None else p.RUN_WAIT_S),
            read_timeout_s=self._read_timeout_s(), deadline=deadline)
        answer = p.submitted(self._send(call))
        info = answer.info
        if info is None or not info.ended:
            info = self.job(answer.job_id).wait(_left(deadline))
        return p.outcome(info)

    def submit(self, function: str, arguments: Mapping[str, Any] | None = None, /, *,
               context: str | None = None, external_id: str | None = None,
               idempotency_key: str | None = None, start_timeout: float | None = None,
               perform_timeout: float | None = None, **kwargs: Any) -> Job:
        """Queue a job of ``function`` and return its handle at once. Sent with an
        ``Idempotency-Key`` (``idempotency_key``, else a new one), kept across retries: a
        submit retried after a ``503`` or a broken connection creates one job."""
        call = p.submit_call(
            function, p.arguments(arguments, kwargs), context=context,
            external_id=external_id, idempotency_key=idempotency_key,
            start_timeout=start_timeout, perform_timeout=perform_timeout, wait_s=None,
            read_timeout_s=self._read_timeout_s())
        return self.job(p.submitted(self._send(call)).job_id)

    # -----------------------------------------------------------------------------------------
    # Jobs

    def job(self, job_id: str) -> Job:
        """A handle on a job by its id (nothing is read until it is used)."""
        return Job(self, job_id)

    def get_job(self, job_id: str) -> JobInfo:
        return p.job_info(self._send(p.job_call(job_id)))

    def jobs(self, *, status: str | Iterable[str] | None = None, function: str | None = None,
             context: str | None = None, external_id: str | None = None,
             schedule: str | None = None, limit: int = 25, offset: int = 0) -> list[JobInfo]:
        """Jobs, newest first, filtered (``status`` may list several); a page of ``limit``
        (at most 1000) after skipping ``offset``."""
        return p.job_list(self._send(p.jobs_call(
            status=status, function=function, context=context, external_id=external_id,
            schedule=schedule, limit=limit, offset=offset, paginate=False)))

    def jobs_page(self, *, status: str | Iterable[str] | None = None,
                  function: str | None = None, context: str | None = None,
                  external_id: str | None = None, schedule: str | None = None,
                  limit: int = 25, offset: int = 0) -> JobPage:
        """As ``jobs``, with how many match in all."""
        return p.job_page(self._send(p.jobs_call(
            status=status, function=function, context=context, external_id=external_id,
            schedule=schedule, limit=limit, offset=offset, paginate=True)))

    def events(self, *, jobs: Iterable[str] | None = None,
               functions: Iterable[str] | None = None, contexts: Iterable[str] | None = None,
               with_logs: bool = False) -> Generator[Event, None, None]:
        """Job events as they happen (``GET /v2/api/events``), of every job the key may see
        or only of these jobs, functions, contexts; ``logs`` events too with ``with_logs``.
        Endless: it reconnects after a broken stream (events in between are missed: the
        stream is live only). Close the iterator to stop."""
        call = p.events_call(jobs=jobs, functions=functions, contexts=contexts,
                             with_logs=with_logs)
        while True:
            stream = self._stream(call)
            try:
                for item in stream:
                    if isinstance(item, Event):
                        yield item
            except httpx.TransportError:
                pass  # broken, or silent past its keep-alives: connect again
            finally:
                stream.close()
            time.sleep(self.retry.backoff(1))

    # -----------------------------------------------------------------------------------------
    # Functions, artifacts, contexts

    def functions(self) -> list[FunctionInfo]:
        return p.function_list(self._send(p.Call("GET", p.resource("functions"))))

    def function(self, name: str) -> FunctionInfo:
        return p.function_info(self._send(p.Call("GET", p.resource("functions", name))))

    def deploy_function(self, name: str, artifact: str, class_name: str | None = None, *,
                        default_context: str | None = None,
                        uninspected: bool = False) -> FunctionInfo:
        """Create the function ``name``, or replace it: ``class_name`` (default: ``name``)
        in the uploaded ``artifact``. ``uninspected`` stores it without reading the
        artifact (no argument schema, as Mist's ``force=true``)."""
        definition = p.function_body(name, artifact, class_name, default_context)
        try:
            return p.function_info(self._send(p.function_call("PUT", definition, uninspected)))
        except NotFound:
            return p.function_info(self._send(p.function_call("POST", definition, uninspected)))

    def delete_function(self, name: str) -> FunctionInfo:
        return p.function_info(self._send(p.Call("DELETE",
                                                 p.resource("functions", name))))

    def artifacts(self) -> list[str]:
        return p.name_list(self._send(p.Call("GET", p.resource("artifacts"))))

    def upload_artifact(self, file: str | os.PathLike[str], content: bytes | None = None, *,
                        replace: bool = False, requirements: Iterable[str] = ()) -> Artifact:
        """Upload a ``.py`` file (or a zip/egg/wheel package): ``file`` is its path, or, with
        ``content``, its name. An existing artifact of that name is a ``Conflict`` unless
        ``replace``. ``requirements``: pip requirement lines (``"scikit-learn==1.5.2"``) its
        functions need; the gateway installs them (``InvalidArtifact`` with pip's message if it
        cannot) and runs the functions' jobs with them."""
        return p.artifact(self._send(p.upload_call(file, content, replace, requirements)))

    def artifact(self, name: str) -> Artifact:
        """An artifact, with its requirements and environment."""
        return p.artifact_info(self._send(p.Call("GET", p.resource("artifacts", name) + "/info")))

    def delete_artifact(self, name: str) -> None:
        self._send(p.Call("DELETE", p.resource("artifacts", name)))

    def deploy(self, file: str | os.PathLike[str], *functions: str,
               content: bytes | None = None, default_context: str | None = None,
               requirements: Iterable[str] = ()) -> list[FunctionInfo]:
        """Upload an artifact (replacing one of that name, with ``requirements``) and create
        or replace each of ``functions``, found in it by that name."""
        uploaded = self.upload_artifact(file, content, replace=True, requirements=requirements)
        return [self.deploy_function(f, uploaded.name, default_context=default_context)
                for f in functions]

    def contexts(self) -> list[ContextInfo]:
        return p.context_list(self._send(p.Call("GET", p.resource("contexts"))))

    def context(self, name: str) -> ContextInfo:
        return p.context_info(self._send(p.Call("GET", p.resource("contexts", name))))

    def save_context(self, name: str, **fields: Any) -> ContextInfo:
        """Create or replace a context (fields left out take the gateway's defaults):
        ``save_context("scoring", engine="python", max_jobs=4)``."""
        return p.context_info(self._send(p.context_call(name, fields)))

    def delete_context(self, name: str) -> ContextInfo:
        return p.context_info(self._send(p.Call("DELETE",
                                                p.resource("contexts", name))))

    def workers(self) -> list[dict[str, Any]]:
        return p.object_list(self._send(p.Call("GET", p.resource("workers"))))

    def status(self) -> dict[str, Any]:
        return p.json_object(self._send(p.Call("GET", p.resource("status"))))

    # -----------------------------------------------------------------------------------------
    # Sending

    def _read_timeout_s(self) -> float:
        return self._timeout.read or 30.0

    def _send(self, call: p.Call, stream: bool = False) -> httpx.Response:
        """The answer to ``call``, retried as the policy says; an error answer is raised as
        its ``ApiError``. A ``stream`` answer is left unread: close it."""
        attempts = Attempts(self.retry, call.deadline)
        while True:
            request = self._http.build_request(
                call.method, call.path, params=call.params, json=call.json, files=call.files,
                data=call.data,
                headers=call.headers, timeout=p.timeout(call, self._timeout))
            try:
                response = self._http.send(request, stream=stream)
            except httpx.TransportError as exc:
                delay = attempts.after_error(exc, call.repeatable)
                if delay is None:
                    raise ConnectionFailed(f"{call.method} {self.url}{call.path}: "
                                           f"{type(exc).__name__}: {exc}") from exc
                time.sleep(delay)
                continue
            if response.is_success:
                return response
            try:
                response.read()
            finally:
                response.close()
            error = p.api_error(response)
            delay = attempts.after_status(response.status_code, error.retry_after)
            if delay is None:
                raise error
            time.sleep(delay)

    def _stream(self, call: p.Call) -> Generator[Event | p.Comment, None, None]:
        """The stream's events and comments until it ends; raises httpx's error if it
        breaks (or stays silent past its read timeout)."""
        response = self._send(call, stream=True)
        try:
            parser = p.SSEParser()
            for line in response.iter_lines():
                item = parser.feed(line)
                if item is not None:
                    yield item
        finally:
            response.close()


class Job:
    """A handle on one job: ``client.submit(...)`` or ``client.job(id)``."""

    def __init__(self, client: Client, job_id: str) -> None:
        self.client = client
        self.id = job_id

    def __repr__(self) -> str:
        return f"Job({self.id!r})"

    def info(self) -> JobInfo:
        """The job as it is now."""
        return self.client.get_job(self.id)

    def status(self) -> str:
        """``queued``, ``started``, ``cancelling``, ``finished``, ``failed`` or ``cancelled``."""
        return self.info().status

    def wait(self, timeout: float | None = None) -> JobInfo:
        """The job once it has ended, however it ended; ``WaitTimeout`` if it has not after
        ``timeout`` seconds (None: no limit). Follows the job's events, so it returns as the
        job ends."""
        deadline = None if timeout is None else time.monotonic() + timeout
        events = self._events(False, deadline)
        try:
            for event in events:
                if event.ended:
                    return self.info()  # the event's result may be truncated; the job's not
        finally:
            events.close()
        info = self.info()
        if info.ended:
            return info
        raise WaitTimeout(p.timed_out(info, timeout), info)

    def result(self, timeout: float | None = None) -> Any:
        """The job's result once it has ended; ``JobFailed``, ``JobCancelled`` or
        ``WaitTimeout`` (each with ``.job``) if there is none."""
        return p.outcome(self.wait(timeout))

    def cancel(self) -> JobInfo:
        """Cancel the job: ``cancelled`` if it was queued, ``cancelling`` while its worker
        stops it. ``Conflict`` if it has already ended."""
        return p.job_info(self.client._send(p.cancel_call(self.id)))

    def logs(self, follow: bool = False, *, offset: int = 0,
             poll_s: float = p.LOG_POLL_S) -> Generator[str, None, None]:
        """The job's log records (``LEVEL time [job id] message``; a traceback's lines stay
        in their record), from record ``offset`` on. With ``follow``, new records come as
        the job writes them, until it has ended and its log is complete."""
        ended = False
        while True:
            chunk = p.log_chunk(self.client._send(p.logs_call(self.id, offset)), offset)
            offset = chunk.next_offset
            yield from chunk.records
            if not follow or chunk.complete or ended:
                return
            if chunk.status is None and self.info().ended:
                ended = True  # an older gateway: one more read is complete
                continue
            time.sleep(poll_s)

    def events(self, with_logs: bool = False) -> Generator[Event, None, None]:
        """The job's events as they happen (``started``, ``progress`` readings, ``logs``
        with ``with_logs``, ...), ending with its end event (``finished``, ``failed``,
        ``cancelled``). For a job that has already ended, only that event."""
        return self._events(with_logs, None)

    def _events(self, with_logs: bool, deadline: float | None) -> Generator[Event, None, None]:
        """Until the job's end event, or until ``deadline``, over as many connections as it
        takes (a broken one is reconnected)."""
        call = p.events_call(jobs=[self.id], with_logs=with_logs)
        while _left(deadline) != 0.0:
            connection = self._connection(call, deadline)
            try:
                for event in connection:
                    yield event
                    if event.ended:
                        return
                if _left(deadline) != 0.0:  # the gateway ended it (stopping): again
                    time.sleep(self.client.retry.backoff(1))
            except httpx.TimeoutException:
                pass  # silent past its keep-alives, or the deadline came: see the loop
            except (ConnectionFailed, Unavailable):
                if _left(deadline) == 0.0:
                    return  # its retries ran into the deadline
                raise
            except httpx.TransportError:
                # It broke after it was open: connect again (an open that fails is retried,
                # then raised, by _send).
                time.sleep(self.client.retry.backoff(1))
            finally:
                connection.close()

    def _connection(self, call: p.Call, deadline: float | None) -> Generator[Event, None, None]:
        """One connection's events, until the stream ends or ``deadline``. Events are live
        only: once the stream is connected, and at each keep-alive, the job is read, so that
        an end that came before (or that the stream lost) is not missed."""
        silence = min(p.STREAM_SILENCE_S, _left(deadline) or p.STREAM_SILENCE_S)
        stream = self.client._stream(
            dataclasses.replace(call, read_timeout_s=silence, deadline=deadline))
        try:
            for item in stream:
                if isinstance(item, p.Comment):
                    info = self.info()
                    if info.ended:
                        yield p.end_event(info)
                        return
                elif item.name != "dropped":
                    yield item
                if _left(deadline) == 0.0:
                    return
        finally:
            stream.close()


def _left(deadline: float | None) -> float | None:
    """Seconds until ``deadline`` (0.0 once past), None for no deadline."""
    return None if deadline is None else max(0.0, deadline - time.monotonic())
