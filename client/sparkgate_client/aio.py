"""``AsyncClient``: sparkgate's API from asyncio code, and ``AsyncJob``, a handle on one job.
The same methods as ``Client`` and ``Job``, awaited; requests and answers are built and read
by the same code (``_protocol``)."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import ssl
import time
from collections.abc import AsyncGenerator, Iterable, Mapping
from types import TracebackType
from typing import Any

import httpx

from sparkgate_client import _protocol as p
from sparkgate_client.client import _left
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


class AsyncClient:
    """A connection (pool) to one sparkgate gateway, for asyncio: see ``Client``. Close it
    (``await client.aclose()``, or ``async with``) when done."""

    def __init__(self, url: str | None = None, *, api_key: str | None = None,
                 timeout: float = 30.0, retry: RetryPolicy | None = None,
                 headers: Mapping[str, str] | None = None, verify: bool | ssl.SSLContext = True,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.url, key = p.settings(url, api_key)
        self.retry = retry or RetryPolicy()
        self._timeout = httpx.Timeout(timeout)
        self._http = httpx.AsyncClient(base_url=self.url, headers=p.headers(key, headers),
                                       timeout=self._timeout, verify=verify,
                                       transport=transport)

    def __repr__(self) -> str:
        return f"AsyncClient({self.url!r})"

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, kind: type[BaseException] | None, error: BaseException | None,
                        traceback: TracebackType | None) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    # -----------------------------------------------------------------------------------------
    # Running functions

    async def run(self, function: str, arguments: Mapping[str, Any] | None = None, /, *,
                  timeout: float | None = None, context: str | None = None,
                  external_id: str | None = None, idempotency_key: str | None = None,
                  start_timeout: float | None = None, perform_timeout: float | None = None,
                  **kwargs: Any) -> Any:
        """Run ``function`` and return its result: see ``Client.run``."""
        deadline = None if timeout is None else time.monotonic() + timeout
        call = p.submit_call(
            function, p.arguments(arguments, kwargs), context=context,
            external_id=external_id, idempotency_key=idempotency_key,
            start_timeout=start_timeout, perform_timeout=perform_timeout,
            wait_s=min(p.RUN_WAIT_S, timeout if timeout is not None else p.RUN_WAIT_S),
            read_timeout_s=self._read_timeout_s(), deadline=deadline)
        answer = p.submitted(await self._send(call))
        info = answer.info
        if info is None or not info.ended:
            info = await self.job(answer.job_id).wait(_left(deadline))
        return p.outcome(info)

    async def submit(self, function: str, arguments: Mapping[str, Any] | None = None, /, *,
                     context: str | None = None, external_id: str | None = None,
                     idempotency_key: str | None = None, start_timeout: float | None = None,
                     perform_timeout: float | None = None, **kwargs: Any) -> AsyncJob:
        """Queue a job and return its handle at once: see ``Client.submit``."""
        call = p.submit_call(
            function, p.arguments(arguments, kwargs), context=context,
            external_id=external_id, idempotency_key=idempotency_key,
            start_timeout=start_timeout, perform_timeout=perform_timeout, wait_s=None,
            read_timeout_s=self._read_timeout_s())
        return self.job(p.submitted(await self._send(call)).job_id)

    # -----------------------------------------------------------------------------------------
    # Jobs

    def job(self, job_id: str) -> AsyncJob:
        """A handle on a job by its id (nothing is read until it is used)."""
        return AsyncJob(self, job_id)

    async def get_job(self, job_id: str) -> JobInfo:
        return p.job_info(await self._send(p.job_call(job_id)))

    async def jobs(self, *, status: str | Iterable[str] | None = None,
                   function: str | None = None, context: str | None = None,
                   external_id: str | None = None, schedule: str | None = None,
                   limit: int = 25, offset: int = 0) -> list[JobInfo]:
        return p.job_list(await self._send(p.jobs_call(
            status=status, function=function, context=context, external_id=external_id,
            schedule=schedule, limit=limit, offset=offset, paginate=False)))

    async def jobs_page(self, *, status: str | Iterable[str] | None = None,
                        function: str | None = None, context: str | None = None,
                        external_id: str | None = None, schedule: str | None = None,
                        limit: int = 25, offset: int = 0) -> JobPage:
        return p.job_page(await self._send(p.jobs_call(
            status=status, function=function, context=context, external_id=external_id,
            schedule=schedule, limit=limit, offset=offset, paginate=True)))

    async def events(self, *, jobs: Iterable[str] | None = None,
                     functions: Iterable[str] | None = None,
                     contexts: Iterable[str] | None = None,
                     with_logs: bool = False) -> AsyncGenerator[Event, None]:
        """Job events as they happen: see ``Client.events``. Endless; ``aclose()`` it (or
        leave the ``async for`` inside ``contextlib.aclosing``) to stop."""
        call = p.events_call(jobs=jobs, functions=functions, contexts=contexts,
                             with_logs=with_logs)
        while True:
            stream = self._stream(call)
            try:
                async for item in stream:
                    if isinstance(item, Event):
                        yield item
            except httpx.TransportError:
                pass  # broken, or silent past its keep-alives: connect again
            finally:
                await stream.aclose()
            await asyncio.sleep(self.retry.backoff(1))

    # -----------------------------------------------------------------------------------------
    # Functions, artifacts, contexts

    async def functions(self) -> list[FunctionInfo]:
        return p.function_list(await self._send(p.Call("GET", p.resource("functions"))))

    async def function(self, name: str) -> FunctionInfo:
        return p.function_info(await self._send(p.Call("GET", p.resource("functions", name))))

    async def deploy_function(self, name: str, artifact: str, class_name: str | None = None,
                              *, default_context: str | None = None,
                              uninspected: bool = False) -> FunctionInfo:
        """Create or replace a function: see ``Client.deploy_function``."""
        definition = p.function_body(name, artifact, class_name, default_context)
        try:
            return p.function_info(await self._send(p.function_call("PUT", definition,
                                                                    uninspected)))
        except NotFound:
            return p.function_info(await self._send(p.function_call("POST", definition,
                                                                    uninspected)))

    async def delete_function(self, name: str) -> FunctionInfo:
        return p.function_info(await self._send(p.Call("DELETE",
                                                       p.resource("functions", name))))

    async def artifacts(self) -> list[str]:
        return p.name_list(await self._send(p.Call("GET", p.resource("artifacts"))))

    async def upload_artifact(self, file: str | os.PathLike[str], content: bytes | None = None,
                              *, replace: bool = False,
                              requirements: Iterable[str] = ()) -> Artifact:
        """Upload an artifact: see ``Client.upload_artifact``."""
        call = await asyncio.to_thread(p.upload_call, file, content, replace, requirements)
        return p.artifact(await self._send(call))

    async def artifact(self, name: str) -> Artifact:
        """An artifact, with its requirements and environment."""
        return p.artifact_info(await self._send(
            p.Call("GET", p.resource("artifacts", name) + "/info")))

    async def delete_artifact(self, name: str) -> None:
        await self._send(p.Call("DELETE", p.resource("artifacts", name)))

    async def deploy(self, file: str | os.PathLike[str], *functions: str,
                     content: bytes | None = None, default_context: str | None = None,
                     requirements: Iterable[str] = ()) -> list[FunctionInfo]:
        """Upload an artifact and create or replace its functions: see ``Client.deploy``."""
        uploaded = await self.upload_artifact(file, content, replace=True,
                                              requirements=requirements)
        return [await self.deploy_function(f, uploaded.name, default_context=default_context)
                for f in functions]

    async def contexts(self) -> list[ContextInfo]:
        return p.context_list(await self._send(p.Call("GET", p.resource("contexts"))))

    async def context(self, name: str) -> ContextInfo:
        return p.context_info(await self._send(p.Call("GET", p.resource("contexts", name))))

    async def save_context(self, name: str, **fields: Any) -> ContextInfo:
        """Create or replace a context: see ``Client.save_context``."""
        return p.context_info(await self._send(p.context_call(name, fields)))

    async def delete_context(self, name: str) -> ContextInfo:
        return p.context_info(await self._send(p.Call("DELETE",
                                                      p.resource("contexts", name))))

    async def workers(self) -> list[dict[str, Any]]:
        return p.object_list(await self._send(p.Call("GET", p.resource("workers"))))

    async def status(self) -> dict[str, Any]:
        return p.json_object(await self._send(p.Call("GET", p.resource("status"))))

    # -----------------------------------------------------------------------------------------
    # Sending

    def _read_timeout_s(self) -> float:
        return self._timeout.read or 30.0

    async def _send(self, call: p.Call, stream: bool = False) -> httpx.Response:
        """See ``Client._send``."""
        attempts = Attempts(self.retry, call.deadline)
        while True:
            request = self._http.build_request(
                call.method, call.path, params=call.params, json=call.json, files=call.files,
                data=call.data,
                headers=call.headers, timeout=p.timeout(call, self._timeout))
            try:
                response = await self._http.send(request, stream=stream)
            except httpx.TransportError as exc:
                delay = attempts.after_error(exc, call.repeatable)
                if delay is None:
                    raise ConnectionFailed(f"{call.method} {self.url}{call.path}: "
                                           f"{type(exc).__name__}: {exc}") from exc
                await asyncio.sleep(delay)
                continue
            if response.is_success:
                return response
            try:
                await response.aread()
            finally:
                await response.aclose()
            error = p.api_error(response)
            delay = attempts.after_status(response.status_code, error.retry_after)
            if delay is None:
                raise error
            await asyncio.sleep(delay)

    async def _stream(self, call: p.Call) -> AsyncGenerator[Event | p.Comment, None]:
        response = await self._send(call, stream=True)
        try:
            parser = p.SSEParser()
            async for line in response.aiter_lines():
                item = parser.feed(line)
                if item is not None:
                    yield item
        finally:
            await response.aclose()


class AsyncJob:
    """A handle on one job, for asyncio: see ``Job``."""

    def __init__(self, client: AsyncClient, job_id: str) -> None:
        self.client = client
        self.id = job_id

    def __repr__(self) -> str:
        return f"AsyncJob({self.id!r})"

    async def info(self) -> JobInfo:
        return await self.client.get_job(self.id)

    async def status(self) -> str:
        return (await self.info()).status

    async def wait(self, timeout: float | None = None) -> JobInfo:
        """The job once it has ended: see ``Job.wait``."""
        deadline = None if timeout is None else time.monotonic() + timeout
        events = self._events(False, deadline)
        try:
            async for event in events:
                if event.ended:
                    return await self.info()
        finally:
            await events.aclose()
        info = await self.info()
        if info.ended:
            return info
        raise WaitTimeout(p.timed_out(info, timeout), info)

    async def result(self, timeout: float | None = None) -> Any:
        """The job's result once it has ended: see ``Job.result``."""
        return p.outcome(await self.wait(timeout))

    async def cancel(self) -> JobInfo:
        return p.job_info(await self.client._send(p.cancel_call(self.id)))

    async def logs(self, follow: bool = False, *, offset: int = 0,
                   poll_s: float = p.LOG_POLL_S) -> AsyncGenerator[str, None]:
        """The job's log records: see ``Job.logs``."""
        ended = False
        while True:
            chunk = p.log_chunk(await self.client._send(p.logs_call(self.id, offset)), offset)
            offset = chunk.next_offset
            for record in chunk.records:
                yield record
            if not follow or chunk.complete or ended:
                return
            if chunk.status is None and (await self.info()).ended:
                ended = True
                continue
            await asyncio.sleep(poll_s)

    def events(self, with_logs: bool = False) -> AsyncGenerator[Event, None]:
        """The job's events until its end event: see ``Job.events``."""
        return self._events(with_logs, None)

    async def _events(self, with_logs: bool,
                      deadline: float | None) -> AsyncGenerator[Event, None]:
        """See ``Job._events``."""
        call = p.events_call(jobs=[self.id], with_logs=with_logs)
        while _left(deadline) != 0.0:
            connection = self._connection(call, deadline)
            try:
                async for event in connection:
                    yield event
                    if event.ended:
                        return
                if _left(deadline) != 0.0:  # the gateway ended it (stopping): again
                    await asyncio.sleep(self.client.retry.backoff(1))
            except httpx.TimeoutException:
                pass
            except (ConnectionFailed, Unavailable):
                if _left(deadline) == 0.0:
                    return  # its retries ran into the deadline
                raise
            except httpx.TransportError:
                # It broke after it was open: connect again (an open that fails is retried,
                # then raised, by _send).
                await asyncio.sleep(self.client.retry.backoff(1))
            finally:
                await connection.aclose()

    async def _connection(self, call: p.Call,
                          deadline: float | None) -> AsyncGenerator[Event, None]:
        """See ``Job._connection``."""
        silence = min(p.STREAM_SILENCE_S, _left(deadline) or p.STREAM_SILENCE_S)
        stream = self.client._stream(
            dataclasses.replace(call, read_timeout_s=silence, deadline=deadline))
        try:
            async for item in stream:
                if isinstance(item, p.Comment):
                    info = await self.info()
                    if info.ended:
                        yield p.end_event(info)
                        return
                elif item.name != "dropped":
                    yield item
                if _left(deadline) == 0.0:
                    return
        finally:
            await stream.aclose()
