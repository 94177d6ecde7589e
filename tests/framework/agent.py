"""Raw requests to a sandbox's agent through the proxy, and its error shape."""

from __future__ import annotations

import time


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


def wait_for_line(sandbox, pid: int, timeout: float = 60.0) -> str:
    """The first line the process `pid` prints (it keeps running after)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        lines = sandbox.get_stdout(pid).lines
        if lines:
            return lines[0]
        time.sleep(0.1)
    raise AssertionError(f"process {pid} printed nothing within {timeout} s")
