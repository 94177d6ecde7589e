"""A scriptable fake Alcove server for ``httpx.MockTransport`` and response helpers."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import httpx

API = "http://localhost:8900"
NS = f"{API}/v1/namespaces/default"


def info_json(
    sandbox_id: str = "sbx-1",
    status: str = "running",
    name: str | None = None,
    sandbox_url: str | None = API,
    **extra: Any,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": sandbox_id,
        "namespace": "default",
        "status": status,
        "name": name,
        "image": "ubuntu",
        "resources": {"cpus": 1.0, "memory_mb": 1024, "disk_mb": 10240, "ephemeral_disk_mb": 10240},
    }
    if sandbox_url is not None:
        body["sandbox_url"] = sandbox_url
    body.update(extra)
    return body


def jsonr(status: int, body: Any) -> httpx.Response:
    return httpx.Response(status, json=body)


def sse(*events: Any, extra: Iterable[str] = ()) -> httpx.Response:
    """An event-stream response whose events are JSON objects (or raw strings)."""
    chunks = list(extra)
    for event in events:
        data = event if isinstance(event, str) else json.dumps(event)
        chunks.append(f"data: {data}\n\n")
    return httpx.Response(200, headers={"content-type": "text/event-stream"}, content="".join(chunks).encode())


class FakeServer:
    """Routes (method, path) to scripted responses and records every request it receives.

    A responder is a Response, a callable taking the request, or a list of those consumed in
    order (the last one repeats).
    """

    def __init__(self) -> None:
        self.routes: dict[tuple[str, str], Any] = {}
        self.requests: list[httpx.Request] = []

    def on(self, method: str, path: str, responder: Any) -> FakeServer:
        self.routes[(method, path)] = responder
        return self

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        key = (request.method, request.url.path)
        if key not in self.routes:
            return httpx.Response(404, json={"message": f"no route {key}", "code": "NO_ROUTE"})
        responder = self.routes[key]
        if isinstance(responder, list):
            responder = responder.pop(0) if len(responder) > 1 else responder[0]
        if callable(responder) and not isinstance(responder, httpx.Response):
            return responder(request)
        return responder

    def calls(self, method: str | None = None, path: str | None = None) -> list[httpx.Request]:
        return [
            r for r in self.requests if (method is None or r.method == method) and (path is None or r.url.path == path)
        ]


# Node selectors every client-side check refuses (create's and pools' alike).
BAD_NODE_SELECTORS: list[object] = [
    {"zone": 1},
    {"zone": None},
    {"": "b"},
    {1: "b"},
    [("zone", "b")],
    "zone=b",
    {f"k{i}": "v" for i in range(17)},
]
