"""Requests an HTTP client library will not build: raw bytes that are not UTF-8 in the query
string or in header values, sent straight to the ASGI app (a server such as uvicorn passes
the request target's bytes through as they came)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import anyio
from starlette.testclient import TestClient


@dataclass
class RawResponse:
    status: int
    headers: dict[str, str]


def send_raw(
    client: TestClient,
    method: str,
    path: str,
    query: bytes = b"",
    headers: list[tuple[bytes, bytes]] | None = None,
    body: bytes = b"",
) -> RawResponse:
    """One request through the app's whole middleware stack, on the event loop of the entered
    TestClient that started the app (its portal), as the client's own requests run."""
    scope: dict[str, Any] = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "https",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query,
        "root_path": "",
        "headers": [(b"host", b"testserver"), *(headers or [])],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 443),
    }
    messages = [{"type": "http.request", "body": body, "more_body": False}]
    started: dict[str, Any] = {}

    async def receive() -> dict[str, Any]:
        if messages:
            return messages.pop()
        await anyio.sleep_forever()
        raise AssertionError("unreachable")

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            started.update(message)

    portal = client.portal
    assert portal is not None, "enter the TestClient first"
    portal.call(client.app, scope, receive, send)
    return RawResponse(
        started["status"],
        {k.decode("latin-1"): v.decode("latin-1") for k, v in started.get("headers", [])},
    )
