"""The gateway's HTTP API as the command line calls it: JSON in, JSON out, a refusal as the
gateway's own message.

The standard library's client is enough for a handful of calls per command, and keeps the
commands free of dependencies the server does not need.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from email.message import Message
from typing import Any

DEFAULT_URL = "http://127.0.0.1:2004"


class RemoteError(Exception):
    """The gateway refused (``status`` 4xx), failed (5xx) or could not be reached (None)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status

    @property
    def refused(self) -> bool:
        return self.status is not None and 400 <= self.status < 500


@dataclass(frozen=True)
class Answer:
    """A successful answer: its status, headers and body as bytes."""

    status: int
    headers: Message
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")

    def json(self) -> Any:
        return json.loads(self.body or b"null")


#: How long an upload may wait for its answer: the gateway builds the environment of an
#: artifact's requirements before it answers (environment_build_timeout_s, 5 min by default).
UPLOAD_TIMEOUT_S = 900.0


@dataclass(frozen=True)
class Remote:
    url: str = DEFAULT_URL
    api_key: str | None = None
    timeout_s: float = 30.0

    def call(self, method: str, path: str, body: Any = None,
             headers: Mapping[str, str] | None = None) -> Any:
        """The answer's JSON; raises RemoteError with the gateway's message."""
        data = None if body is None else json.dumps(body).encode()
        content_type = None if body is None else "application/json"
        return self.request(method, path, data, content_type, headers).json()

    def request(self, method: str, path: str, data: bytes | None = None,
                content_type: str | None = None,
                headers: Mapping[str, str] | None = None,
                timeout_s: float | None = None) -> Answer:
        """Any answer (text, a file); raises RemoteError with the gateway's message.
        ``timeout_s``: how long the gateway may stay silent (default: the Remote's)."""
        try:
            with urllib.request.urlopen(self._request(method, path, data, content_type, headers),
                                        timeout=timeout_s or self.timeout_s) as response:
                return Answer(response.status, response.headers, response.read())
        except urllib.error.HTTPError as exc:
            raise RemoteError(_message(exc), exc.code) from None
        except (urllib.error.URLError, OSError) as exc:
            raise self._unreachable(exc) from None

    def upload(self, name: str, content: bytes, replace: bool,
               requirements: Sequence[str] = ()) -> Answer:
        """``POST /v2/api/artifacts`` (multipart/form-data, the file in ``file``, its Python
        requirements, if any, in ``requirements``)."""
        boundary = uuid.uuid4().hex
        parts = [f"--{boundary}\r\n".encode(),
                 f'Content-Disposition: form-data; name="file"; filename="{name}"\r\n'.encode(),
                 b"Content-Type: application/octet-stream\r\n\r\n", content]
        if requirements:
            parts += [f"\r\n--{boundary}\r\n".encode(),
                      b'Content-Disposition: form-data; name="requirements"\r\n\r\n',
                      "\n".join(requirements).encode()]
        data = b"".join([*parts, f"\r\n--{boundary}--\r\n".encode()])
        path = "/v2/api/artifacts" + ("?force=true" if replace else "")
        return self.request("POST", path, data, f"multipart/form-data; boundary={boundary}",
                            timeout_s=max(self.timeout_s, UPLOAD_TIMEOUT_S))

    @contextmanager
    def stream(self, path: str, read_timeout_s: float) -> Iterator[Iterator[str]]:
        """The lines of a long answer (Server-Sent Events) as they come, without their line
        ends; a read silent for ``read_timeout_s`` raises RemoteError."""
        request = self._request("GET", path, None, None, {"Accept": "text/event-stream"})
        try:
            response = urllib.request.urlopen(request, timeout=read_timeout_s)
        except urllib.error.HTTPError as exc:
            raise RemoteError(_message(exc), exc.code) from None
        except (urllib.error.URLError, OSError) as exc:
            raise self._unreachable(exc) from None
        with response:
            yield _lines(response, self)

    def _request(self, method: str, path: str, data: bytes | None, content_type: str | None,
                 headers: Mapping[str, str] | None) -> urllib.request.Request:
        sent = {"Accept": "application/json", **(headers or {})}
        if content_type:
            sent["Content-Type"] = content_type
        if self.api_key:
            sent["Authorization"] = f"Bearer {self.api_key}"
        return urllib.request.Request(self.url.rstrip("/") + path, data=data, headers=sent,
                                      method=method)

    def _unreachable(self, exc: Exception) -> RemoteError:
        reason = getattr(exc, "reason", exc)
        return RemoteError(f"cannot reach sparkgate at {self.url}: {reason}")


def _lines(response: Any, remote: Remote) -> Iterator[str]:
    try:
        for raw in response:
            yield raw.decode("utf-8", "replace").rstrip("\r\n")
    except OSError as exc:  # a timeout or a broken connection
        raise remote._unreachable(exc) from None


def _message(exc: urllib.error.HTTPError) -> str:
    text = exc.read().decode("utf-8", "replace")
    try:
        return str(json.loads(text)["error"]["message"])
    except (ValueError, KeyError, TypeError):
        return f"{exc.code} {exc.reason}: {text[:300]}".strip()
