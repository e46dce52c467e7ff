"""The gateway's HTTP API as the command line calls it: JSON in, JSON out, a refusal as the
gateway's own message.

The standard library's client is enough for a handful of calls per command, and keeps the
commands free of dependencies the server does not need.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import dataclass
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
class Remote:
    url: str = DEFAULT_URL
    api_key: str | None = None
    timeout_s: float = 30.0

    def call(self, method: str, path: str, body: Any = None) -> Any:
        """The answer's JSON; raises RemoteError with the gateway's message."""
        headers = {"Accept": "application/json"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        request = urllib.request.Request(self.url.rstrip("/") + path, data=data,
                                         headers=headers, method=method)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                return json.loads(response.read() or b"null")
        except urllib.error.HTTPError as exc:
            raise RemoteError(_message(exc), exc.code) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise RemoteError(f"cannot reach sparkgate at {self.url}: {reason}") from None


def _message(exc: urllib.error.HTTPError) -> str:
    text = exc.read().decode("utf-8", "replace")
    try:
        return str(json.loads(text)["error"]["message"])
    except (ValueError, KeyError, TypeError):
        return f"{exc.code} {exc.reason}: {text[:300]}".strip()
