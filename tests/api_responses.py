"""Reading the gateway's answers in API tests: the body of a success, the error of a failure."""

from __future__ import annotations

from typing import Any


async def error_of(response, status: int, code: str) -> dict[str, Any]:
    """The ``error`` object of a failed response, after checking the status and the shape."""
    assert response.status == status, await response.text()
    assert response.content_type == "application/json"
    body = await response.json()
    assert list(body) == ["error"]
    assert set(body["error"]) == {"code", "message", "details"}
    assert body["error"]["code"] == code, body
    return body["error"]


async def json_of(response, status: int = 200) -> Any:
    assert response.status == status, await response.text()
    return await response.json()
