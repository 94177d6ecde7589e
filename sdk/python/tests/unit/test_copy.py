"""Copy of a running sandbox (``POST /sandboxes/{id}/copy?times=N``) against a fake server."""

from __future__ import annotations

import pytest

from alcove.sandbox import (
    CopySandboxResponse,
    RemoteAPIError,
    Sandbox,
    SandboxClient,
    SandboxCopyError,
    SandboxNotFoundError,
)
from fakes import FakeServer, info_json, jsonr

BASE = "/v1/namespaces/default/sandboxes"
COPY = f"{BASE}/sbx-1/copy"


def copied(sandbox_id: str, status: str = "running", **extra: object) -> dict:
    return {"sandbox_id": sandbox_id, "status": status, **extra}


def test_copy_sends_times_in_the_query_and_an_empty_body(server: FakeServer, client: SandboxClient) -> None:
    server.on("POST", COPY, jsonr(200, {"source_sandbox_id": "sbx-1", "sandboxes": [copied("c1"), copied("c2")]}))
    result = client.copy("sbx-1", times=2)
    assert isinstance(result, CopySandboxResponse)
    assert result.source_sandbox_id == "sbx-1"
    assert [c.sandbox_id for c in result.sandboxes] == ["c1", "c2"]
    assert result.failed == []
    post = server.calls("POST", COPY)[0]
    assert post.url.params["times"] == "2"
    assert post.content == b""


def test_a_422_is_a_partial_answer_not_an_error(server: FakeServer, client: SandboxClient) -> None:
    body = {
        "source_sandbox_id": "sbx-1",
        "sandboxes": [copied("c1"), copied("c2", "failed", reason="restore failed", error_details="restore failed")],
    }
    server.on("POST", COPY, jsonr(422, body))
    result = client.copy("sbx-1", times=2)
    assert [c.sandbox_id for c in result.failed] == ["c2"]
    assert result.failed[0].reason == "restore failed"
    assert result.sandboxes[0].running


@pytest.mark.parametrize("times", [0, -1, 17, 1.5, True, "2"])
def test_times_out_of_range_is_refused_before_sending(server: FakeServer, client: SandboxClient, times: object) -> None:
    with pytest.raises(ValueError, match="times"):
        client.copy("sbx-1", times=times)  # type: ignore[arg-type]
    assert server.calls() == []


def test_refusals_map_to_the_usual_errors(server: FakeServer, client: SandboxClient) -> None:
    server.on(
        "POST",
        COPY,
        [
            jsonr(409, {"code": "INVALID_STATE", "message": "cannot copy sandbox sbx-1: it is suspended"}),
            jsonr(404, {"code": "NOT_FOUND", "message": "sandbox not found"}),
        ],
    )
    with pytest.raises(RemoteAPIError) as refused:
        client.copy("sbx-1")
    assert refused.value.status_code == 409
    with pytest.raises(SandboxNotFoundError):
        client.copy("sbx-1")
    assert len(server.calls("POST", COPY)) == 2, "a copy is never sent twice"


def test_handle_copy_returns_handles_of_the_copies(server: FakeServer, client: SandboxClient) -> None:
    server.on("GET", f"{BASE}/sbx-1", jsonr(200, info_json()))
    server.on("POST", COPY, jsonr(200, {"source_sandbox_id": "sbx-1", "sandboxes": [copied("c1"), copied("c2")]}))
    server.on("GET", f"{BASE}/c1", jsonr(200, info_json("c1")))
    server.on("GET", f"{BASE}/c2", jsonr(200, info_json("c2")))
    server.on("DELETE", f"{BASE}/c1", jsonr(200, info_json("c1", status="terminated")))
    sandbox = client.connect("sbx-1")
    copies = sandbox.copy(times=2)
    assert all(isinstance(c, Sandbox) for c in copies)
    assert [c.sandbox_id for c in copies] == ["c1", "c2"]
    with copies[0]:
        pass
    assert len(server.calls("DELETE", f"{BASE}/c1")) == 1, "a copy's handle owns its sandbox"


def test_handle_copy_is_all_or_nothing(server: FakeServer, client: SandboxClient) -> None:
    server.on("GET", f"{BASE}/sbx-1", jsonr(200, info_json()))
    body = {"source_sandbox_id": "sbx-1", "sandboxes": [copied("c1"), copied("c2", "failed", reason="no room")]}
    server.on("POST", COPY, jsonr(422, body))
    server.on("DELETE", f"{BASE}/c1", jsonr(200, info_json("c1", status="terminated")))
    sandbox = client.connect("sbx-1")
    with pytest.raises(SandboxCopyError, match="no room") as failed:
        sandbox.copy(times=2)
    assert failed.value.result.source_sandbox_id == "sbx-1"
    assert len(server.calls("DELETE", f"{BASE}/c1")) == 1, "the copy that ran is deleted"
    assert server.calls("DELETE", f"{BASE}/c2") == []
