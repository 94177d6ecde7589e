"""Error mapping: statuses and bodies (JSON control-plane, JSON agent, plain text)."""

from __future__ import annotations

import httpx
import pytest

from alcove.sandbox import (
    AuthenticationError,
    RemoteAPIError,
    SandboxClient,
    SandboxConnectionError,
    SandboxError,
    SandboxException,
    SandboxNameConflictError,
    SandboxNotFoundError,
    SnapshotNotFoundError,
)
from fakes import API, FakeServer, info_json, jsonr

BASE = "/v1/namespaces/default/sandboxes"
SBX = f"{BASE}/sbx-1"


def test_hierarchy() -> None:
    for exc in (SandboxNotFoundError, RemoteAPIError, SandboxConnectionError):
        assert issubclass(exc, SandboxError) and issubclass(exc, SandboxException)
    assert issubclass(SandboxNameConflictError, RemoteAPIError)


@pytest.mark.parametrize("call", ["get", "delete", "suspend", "resume", "connect"])
def test_404_on_sandbox_calls_is_sandbox_not_found(server: FakeServer, client: SandboxClient, call: str) -> None:
    server.on("GET", SBX, jsonr(404, {"message": "sandbox sbx-1 not found", "code": "NOT_FOUND"}))
    server.on("DELETE", SBX, jsonr(404, {"message": "sandbox sbx-1 not found", "code": "NOT_FOUND"}))
    server.on("POST", SBX + "/suspend", jsonr(404, {"message": "sandbox sbx-1 not found", "code": "NOT_FOUND"}))
    server.on("POST", SBX + "/resume", jsonr(404, {"message": "sandbox sbx-1 not found", "code": "NOT_FOUND"}))
    with pytest.raises(SandboxNotFoundError) as info:
        getattr(client, call)("sbx-1")
    assert info.value.sandbox_id == "sbx-1"
    assert "sandbox sbx-1 not found" in str(info.value)


def test_409_on_create_is_name_conflict(server: FakeServer, client: SandboxClient) -> None:
    server.on(
        "POST",
        "/v1/namespaces/default/sandboxes",
        jsonr(409, {"message": "name 'my-env' is taken", "code": "NAME_TAKEN"}),
    )
    with pytest.raises(SandboxNameConflictError) as info:
        client.create(name="my-env")
    assert info.value.status_code == 409
    assert info.value.code == "NAME_TAKEN"
    assert info.value.message == "name 'my-env' is taken"


@pytest.mark.parametrize("code", ["FILE_SYSTEM_IN_USE", "INVALID_STATE", "OPERATION_REFUSED"])
def test_409_on_create_about_something_else_is_not_a_name_conflict(
    server: FakeServer, client: SandboxClient, code: str
) -> None:
    server.on("POST", "/v1/namespaces/default/sandboxes", jsonr(409, {"message": "held", "code": code}))
    with pytest.raises(RemoteAPIError) as info:
        client.create(name="my-env")
    assert not isinstance(info.value, SandboxNameConflictError)
    assert (info.value.status_code, info.value.code) == (409, code)


def test_control_plane_message_body(server: FakeServer, client: SandboxClient) -> None:
    server.on("GET", "/v1/namespaces/default/sandboxes", jsonr(400, {"message": "bad thing", "code": "INVALID"}))
    with pytest.raises(RemoteAPIError) as info:
        client.list()
    assert (info.value.status_code, info.value.message, info.value.code) == (400, "bad thing", "INVALID")
    assert str(info.value) == "API error (status 400, INVALID): bad thing"


def test_request_id_of_a_5xx_is_kept(server: FakeServer, client: SandboxClient) -> None:
    server.on(
        "GET",
        "/v1/namespaces/default/sandboxes",
        jsonr(500, {"message": "internal error", "code": "INTERNAL", "request_id": "req-42"}),
    )
    with pytest.raises(RemoteAPIError) as info:
        client.list()
    assert info.value.request_id == "req-42"
    assert str(info.value) == "API error (status 500, INTERNAL): internal error (request req-42)"


def test_a_request_id_the_message_names_is_not_added_again(server: FakeServer, client: SandboxClient) -> None:
    body = {"message": "suspend failed: busy (request req-7)", "code": "OPERATION_FAILED", "request_id": "req-7"}
    server.on("GET", "/v1/namespaces/default/sandboxes", jsonr(500, body))
    with pytest.raises(RemoteAPIError) as info:
        client.list()
    assert info.value.request_id == "req-7"
    assert str(info.value) == "API error (status 500, OPERATION_FAILED): suspend failed: busy (request req-7)"


def test_agent_error_body(server: FakeServer, client: SandboxClient) -> None:
    server.on("GET", SBX, jsonr(200, info_json()))
    server.on("GET", "/api/v1/processes/77", jsonr(404, {"error": "process 77 not found", "code": "NOT_FOUND"}))
    sandbox = client.connect("sbx-1")
    with pytest.raises(RemoteAPIError) as info:
        sandbox.get_process(77)
    assert not isinstance(info.value, SandboxNotFoundError)
    assert (info.value.status_code, info.value.message, info.value.code) == (404, "process 77 not found", "NOT_FOUND")


def test_plain_text_body(server: FakeServer, client: SandboxClient) -> None:
    server.on("GET", "/v1/namespaces/default/sandboxes", httpx.Response(500, text="internal error (request abc)\n"))
    with pytest.raises(RemoteAPIError) as info:
        client.list()
    assert info.value.message == "internal error (request abc)"
    assert info.value.code is None
    assert str(info.value) == "API error (status 500): internal error (request abc)"


def test_empty_body_uses_reason_phrase(server: FakeServer, client: SandboxClient) -> None:
    server.on("DELETE", "/v1/namespaces/default/snapshots/s1", httpx.Response(418))
    with pytest.raises(RemoteAPIError, match="I'm a teapot"):
        client.delete_snapshot("s1")


def test_snapshot_404(server: FakeServer, client: SandboxClient) -> None:
    server.on(
        "GET", "/v1/namespaces/default/snapshots/s1", jsonr(404, {"message": "no such snapshot", "code": "NOT_FOUND"})
    )
    with pytest.raises(SnapshotNotFoundError):
        client.get_snapshot("s1")


def test_401_is_authentication_error(server: FakeServer, client: SandboxClient) -> None:
    server.on(
        "GET", "/v1/namespaces/default/sandboxes", jsonr(401, {"message": "missing API key", "code": "UNAUTHORIZED"})
    )
    with pytest.raises(AuthenticationError, match="missing API key"):
        client.list()


@pytest.mark.parametrize(
    ("code", "cls"),
    [("UNAUTHORIZED", AuthenticationError), ("INVALID_TOKEN", AuthenticationError), (None, AuthenticationError),
     ("PATH_TRAVERSAL", RemoteAPIError), ("PERMISSION_DENIED", RemoteAPIError)],
)
def test_403_is_authentication_error_but_for_a_sandbox_refusing_a_file_or_user(code, cls) -> None:
    from alcove.sandbox._protocol._errors import error_from_response

    body = {"error": "read-only file system: /x"} | ({"code": code} if code else {})
    err = error_from_response(httpx.Response(403, json=body), sandbox="sbx-1")
    assert type(err) is cls and err.status_code == 403


def test_failed_sandbox_body_is_rewritten(server: FakeServer, client: SandboxClient) -> None:
    body = {
        "sandbox_id": "sbx-9",
        "status": "failed",
        "termination_reason": "no_capacity",
        "error_details": "out of memory",
    }
    server.on("GET", "/v1/namespaces/default/sandboxes", jsonr(500, body))
    with pytest.raises(RemoteAPIError, match=r"Sandbox sbx-9 failed \(no_capacity\): out of memory"):
        client.list()


def test_connection_failure_is_sandbox_connection_error(sleeps: list[float]) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    client = SandboxClient(api_url=API, transport=httpx.MockTransport(refuse))
    with pytest.raises(SandboxConnectionError, match="connection refused"):
        client.get("sbx-1")
    assert len(sleeps) == 2  # GETs are retried: 3 attempts


def test_invalid_json_on_success_is_sandbox_error(server: FakeServer, client: SandboxClient) -> None:
    server.on("GET", SBX, httpx.Response(200, text="not json"))
    with pytest.raises(SandboxError, match="decoding sandbox"):
        client.get("sbx-1")


def test_missing_required_field_is_sandbox_error(server: FakeServer, client: SandboxClient) -> None:
    server.on("GET", SBX, jsonr(200, {"id": "sbx-1"}))
    with pytest.raises(SandboxError, match="status"):
        client.get("sbx-1")


def test_get_is_retried_on_503(server: FakeServer, client: SandboxClient, sleeps: list[float]) -> None:
    server.on("GET", SBX, [jsonr(503, {"message": "busy"}), jsonr(200, info_json())])
    assert client.get("sbx-1").sandbox_id == "sbx-1"
    assert len(server.requests) == 2


def test_any_request_refused_unread_by_a_busy_server_is_sent_again(
    server: FakeServer, client: SandboxClient, sleeps: list[float]
) -> None:
    """429 TOO_MANY_REQUESTS and 503 SERVER_BUSY mean nothing was done: a create (never replayed
    otherwise) is sent again after ``Retry-After``, up to ten attempts."""
    refusals = [
        httpx.Response(429, json={"message": "slow down", "code": "TOO_MANY_REQUESTS"}, headers={"Retry-After": "1"}),
        httpx.Response(503, json={"message": "busy", "code": "SERVER_BUSY"}),
    ]
    created = jsonr(200, {"sandbox_id": "sbx-1", "status": "running", "sandbox": info_json()})
    server.on("POST", BASE, [*refusals, created])
    assert client.create().sandbox_id == "sbx-1"
    assert len(server.calls("POST", BASE)) == 3 and sleeps == [1.0, 0.4]

    server.requests.clear()
    server.on("POST", BASE, jsonr(429, {"message": "slow down", "code": "TOO_MANY_REQUESTS"}))
    with pytest.raises(RemoteAPIError) as refused:
        client.create()
    assert refused.value.status_code == 429 and len(server.calls("POST", BASE)) == 10


def test_a_pool_at_capacity_is_an_answer_not_a_refusal(server: FakeServer, client: SandboxClient) -> None:
    full = jsonr(429, {"message": "pool p1 is full", "code": "POOL_AT_CAPACITY"})
    server.on("POST", "/v1/namespaces/default/sandbox-pools/p1/sandboxes", full)
    with pytest.raises(RemoteAPIError):
        client.claim("p1")
    assert len(server.requests) == 1
