"""Raw requests to a sandbox's agent through the proxy, and its error shape."""

from __future__ import annotations


def agent(server, sandbox, method: str, path: str, **kwargs):
    """A raw request to the sandbox's agent (docs/protocol/sandbox-api.md) through the proxy."""
    headers = {"X-Tensorlake-Sandbox-Id": sandbox.sandbox_id, **kwargs.pop("headers", {})}
    return server.api(method, path, headers=headers, **kwargs)


def assert_error(resp, status: int, code: str) -> None:
    """The agent's error shape: exactly `{"error": <message>, "code": <code>}`."""
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert set(body) == {"error", "code"}, body
    assert body["code"] == code
    assert isinstance(body["error"], str) and body["error"]
