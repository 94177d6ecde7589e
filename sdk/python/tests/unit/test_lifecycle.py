"""Control-plane calls of SandboxClient against a fake server."""

from __future__ import annotations

import json
from types import MappingProxyType

import httpx
import pytest

from alcove.sandbox import (
    RemoteAPIError,
    Sandbox,
    SandboxClient,
    SandboxError,
    SandboxFailedError,
    SandboxNotFoundError,
    SandboxNotRoutableError,
    SandboxStatus,
    SandboxTimeoutError,
    SnapshotStatus,
    _protocol,
)
from fakes import BAD_NODE_SELECTORS, FakeServer, info_json, jsonr

BASE = "/v1/namespaces/default/sandboxes"
SBX = f"{BASE}/sbx-1"


def body_of(request: httpx.Request) -> dict:
    return json.loads(request.content)


def test_create_sends_resources_and_waits_for_running(
    server: FakeServer, client: SandboxClient, sleeps: list[float]
) -> None:
    server.on("POST", BASE, jsonr(200, {"sandbox_id": "sbx-1", "status": "pending", "pending_reason": "scheduling"}))
    server.on(
        "GET",
        SBX,
        [
            jsonr(200, info_json(status="pending", sandbox_url=None)),
            jsonr(200, info_json(status="pending", sandbox_url=None)),
            jsonr(200, info_json(name="my-env", secret_names=["K"])),
        ],
    )
    info = client.create(
        name="my-env",
        cpus=2.0,
        memory_mb=4096,
        timeout_secs=1800,
        secret_names=["K"],
        image="ubuntu",
        expose_ports=[8080, 80],
        entrypoint=["/bin/sh", "-c", "sleep inf"],
    )
    assert info.status == SandboxStatus.RUNNING and info.name == "my-env" and info.secret_names == ["K"]
    post = server.calls("POST", BASE)[0]
    assert body_of(post) == {
        "resources": {"cpus": 2.0, "memory_mb": 4096},
        "name": "my-env",
        "image": "ubuntu",
        "timeout_secs": 1800,
        "secret_names": ["K"],
        "exposed_ports": [80, 8080],
        "entrypoint": ["/bin/sh", "-c", "sleep inf"],
    }
    assert "wait" not in body_of(post)
    assert post.headers["content-type"] == "application/json"
    assert post.headers["x-tensorlake-request-timeout-ms"] == "300000"
    assert post.headers["x-tensorlake-request-timeout-grace-ms"] == "5000"
    assert len(server.calls("GET", SBX)) == 3
    assert sleeps == [0.5, 0.5, 0.5]


def test_create_defaults(server: FakeServer, client: SandboxClient) -> None:
    server.on(
        "POST", BASE, jsonr(200, {"sandbox_id": "sbx-1", "status": "running", "sandbox_url": "http://localhost:8900"})
    )
    server.on("GET", SBX, jsonr(200, info_json()))
    client.create()
    assert body_of(server.requests[0]) == {"resources": {"cpus": 1.0, "memory_mb": 1024}}


def test_create_uses_the_info_a_running_answer_carries(server: FakeServer, client: SandboxClient) -> None:
    answer = {"sandbox_id": "sbx-1", "status": "running", "sandbox": info_json(name="from-answer")}
    server.on("POST", BASE, jsonr(200, answer))
    server.on("GET", SBX, jsonr(200, info_json(name="from-get")))
    assert client.create().name == "from-answer"
    assert server.calls("GET", SBX) == []
    # An embedded sandbox that does not run is not trusted: the client asks again.
    server.on("POST", BASE, jsonr(200, {**answer, "sandbox": info_json(status="pending", sandbox_url=None)}))
    assert client.create().name == "from-get"


def test_snapshot_restore_without_overrides_sends_only_the_snapshot_id(
    server: FakeServer, client: SandboxClient
) -> None:
    server.on("POST", BASE, jsonr(200, {"sandbox_id": "sbx-1", "status": "running"}))
    server.on("GET", SBX, jsonr(200, info_json()))
    client.create(snapshot_id="snap-1")
    client.create(snapshot_id="snap-1", memory_mb=2048)
    client.create(snapshot_id="snap-1", cpus=2)
    client.create(snapshot_id="snap-1", disk_mb=20480)
    first, memory, cpus, disk = server.calls("POST", BASE)
    assert body_of(first) == {"snapshot_id": "snap-1"}
    # Only what is set: the rest is inherited from the snapshot, each size on its own.
    assert body_of(memory) == {"snapshot_id": "snap-1", "resources": {"memory_mb": 2048}}
    assert body_of(cpus) == {"snapshot_id": "snap-1", "resources": {"cpus": 2.0}}
    assert body_of(disk) == {"snapshot_id": "snap-1", "resources": {"disk_mb": 20480}}


def test_create_accepts_a_504_carrying_the_answer(server: FakeServer, client: SandboxClient) -> None:
    server.on("POST", BASE, jsonr(504, {"sandbox_id": "sbx-1", "status": "pending"}))
    server.on("GET", SBX, jsonr(200, info_json()))
    assert client.create().sandbox_id == "sbx-1"


def test_create_failed_answer_raises_with_the_reason(server: FakeServer, client: SandboxClient) -> None:
    server.on(
        "POST",
        BASE,
        jsonr(
            200,
            {
                "sandbox_id": "sbx-1",
                "status": "failed",
                "termination_reason": "image_pull",
                "error_details": "no such image: nope",
            },
        ),
    )
    with pytest.raises(SandboxFailedError, match=r"sbx-1 failed \(image_pull\): no such image: nope") as info:
        client.create(image="nope")
    assert info.value.reason == "image_pull"


def test_create_fails_when_polling_sees_terminated(server: FakeServer, client: SandboxClient) -> None:
    server.on("POST", BASE, jsonr(202, {"sandbox_id": "sbx-1", "status": "pending"}))
    server.on("GET", SBX, jsonr(200, info_json(status="terminated", termination_reason="no_capacity")))
    with pytest.raises(SandboxFailedError, match="no_capacity"):
        client.create()


def test_create_deadline(server: FakeServer, sleeps: list[float], monkeypatch: pytest.MonkeyPatch) -> None:
    clock = iter(range(0, 10_000, 100))
    monkeypatch.setattr(_protocol.time, "monotonic", lambda: float(next(clock)))
    server.on("POST", BASE, jsonr(200, {"sandbox_id": "sbx-1", "status": "pending"}))
    server.on("GET", SBX, jsonr(200, info_json(status="pending", sandbox_url=None)))
    client = SandboxClient(timeout=250, transport=httpx.MockTransport(server))
    with pytest.raises(SandboxTimeoutError, match="still pending after 250s"):
        client.create()


@pytest.mark.parametrize(
    "kwargs",
    [
        {"cpus": 0},
        {"cpus": -1.0},
        {"memory_mb": 0},
        {"memory_mb": 1.5},
        {"timeout_secs": -1},
        {"disk_mb": 0},
        {"secret_names": "ONE"},
        {"expose_ports": [0]},
        {"expose_ports": [9501]},
        {"entrypoint": "sh"},
        {"name": ""},
    ],
)
def test_create_rejects_obviously_bad_input(server: FakeServer, client: SandboxClient, kwargs: dict) -> None:
    with pytest.raises(ValueError):
        client.create(**kwargs)
    assert server.requests == []


def create_body(**kwargs: object) -> dict:
    """``create_body`` with the client's defaults, overridden by ``kwargs``."""
    args: dict = dict(
        name=None,
        cpus=_protocol.DEFAULT_CPUS,
        memory_mb=_protocol.DEFAULT_MEMORY_MB,
        timeout_secs=None,
        image=None,
        snapshot_id=None,
        secret_names=None,
        expose_ports=None,
        allow_unauthenticated_access=False,
        disk_mb=None,
        entrypoint=None,
    )
    args.update(kwargs)
    return _protocol.create_body(**args)


def test_create_body_carries_a_node_selector_only_when_it_has_pairs() -> None:
    assert create_body(node_selector={"zone": "b", "gpu": "a100"}) == {
        "resources": {"cpus": 1.0, "memory_mb": 1024},
        "node_selector": {"zone": "b", "gpu": "a100"},
    }
    # A restore keeps it too: the selector travels next to the snapshot id.
    assert create_body(snapshot_id="snap-1", node_selector={"zone": "b"}) == {
        "snapshot_id": "snap-1",
        "node_selector": {"zone": "b"},
    }
    # Any mapping is copied; an empty value is a value.
    selector = MappingProxyType({"zone": ""})
    body = create_body(node_selector=selector)
    assert body["node_selector"] == {"zone": ""} and type(body["node_selector"]) is dict
    for absent in (None, {}):
        assert "node_selector" not in create_body(node_selector=absent)
    assert "node_selector" not in create_body()
    sixteen = {f"k{i}": "v" for i in range(16)}
    assert create_body(node_selector=sixteen)["node_selector"] == sixteen


@pytest.mark.parametrize("selector", BAD_NODE_SELECTORS)
def test_create_rejects_a_bad_node_selector_before_sending(
    server: FakeServer, client: SandboxClient, selector: object
) -> None:
    with pytest.raises(ValueError, match="node_selector"):
        client.create(node_selector=selector)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="node_selector"):
        create_body(node_selector=selector)
    assert server.requests == []


def test_create_and_connect_send_the_node_selector(server: FakeServer, client: SandboxClient) -> None:
    server.on("POST", BASE, jsonr(200, {"sandbox_id": "sbx-1", "status": "running"}))
    server.on("GET", SBX, jsonr(200, info_json(node_selector={"zone": "b"})))
    server.on("DELETE", SBX, httpx.Response(204))
    assert client.create(node_selector={"zone": "b"}).node_selector == {"zone": "b"}
    with client.create_and_connect(node_selector={"zone": "b"}, snapshot_id="snap-1"):
        pass
    first, second = server.calls("POST", BASE)
    assert body_of(first)["node_selector"] == {"zone": "b"}
    assert body_of(second) == {"snapshot_id": "snap-1", "node_selector": {"zone": "b"}}


def test_a_node_selector_nobody_matches_is_a_503(server: FakeServer, client: SandboxClient) -> None:
    message = "no live active node whose labels match node_selector (zone=b) has room"
    server.on("POST", BASE, jsonr(503, {"message": message, "code": "RESOURCE_EXHAUSTED"}))
    with pytest.raises(RemoteAPIError) as info:
        client.create(node_selector={"zone": "b"})
    assert info.value.status_code == 503 and info.value.code == "RESOURCE_EXHAUSTED"
    assert len(server.calls("POST", BASE)) == 1


def test_create_and_connect_deletes_on_exit(server: FakeServer, client: SandboxClient) -> None:
    server.on("POST", BASE, jsonr(200, {"sandbox_id": "sbx-1", "status": "running"}))
    server.on("GET", SBX, jsonr(200, info_json()))
    server.on("DELETE", SBX, httpx.Response(204))
    with client.create_and_connect() as sandbox:
        assert isinstance(sandbox, Sandbox) and sandbox.sandbox_id == "sbx-1"
        assert server.calls("DELETE") == []
    assert len(server.calls("DELETE", SBX)) == 1


def test_connect_by_name_uses_the_uuid_and_does_not_delete(server: FakeServer, client: SandboxClient) -> None:
    server.on("GET", f"{BASE}/my-env", jsonr(200, info_json(sandbox_id="0b3c-uuid", name="my-env")))
    with client.connect("my-env") as sandbox:
        assert sandbox.sandbox_id == "0b3c-uuid"
        assert sandbox.name == "my-env"
    assert server.calls("DELETE") == []


def test_connect_without_sandbox_url_is_not_routable(server: FakeServer, client: SandboxClient) -> None:
    server.on("GET", SBX, jsonr(200, info_json(status="suspended", sandbox_url=None)))
    with pytest.raises(SandboxNotRoutableError):
        client.connect("sbx-1")


def test_connect_waits_while_pending(server: FakeServer, client: SandboxClient) -> None:
    server.on("GET", SBX, [jsonr(200, info_json(status="pending", sandbox_url=None)), jsonr(200, info_json())])
    assert client.connect("sbx-1").sandbox_id == "sbx-1"


def test_list_get_delete(server: FakeServer, client: SandboxClient) -> None:
    server.on("GET", BASE, jsonr(200, {"sandboxes": [info_json(), info_json(sandbox_id="sbx-2", status="suspended")]}))
    server.on("GET", SBX, jsonr(200, info_json()))
    server.on("DELETE", SBX, jsonr(200, {}))
    assert [s.sandbox_id for s in client.list()] == ["sbx-1", "sbx-2"]
    assert client.get("sbx-1").resources.cpus == 1.0
    assert client.delete("sbx-1") is None
    server.on("GET", BASE, jsonr(200, {"sandboxes": None}))
    assert client.list() == []


ARCHIVE = "/v1/namespaces/default/archived-sandboxes"


def archived_json(sandbox_id: str = "sbx-1", **extra: object) -> dict:
    return info_json(
        sandbox_id,
        status="terminated",
        sandbox_url=None,
        termination_reason="deleted",
        created_at=1_767_225_600_000,
        terminated_at=1_767_225_660_000,
        archived_at=1_767_225_660_000,
        **extra,
    )


def test_list_archived_sends_the_query_and_reads_the_page(server: FakeServer, client: SandboxClient) -> None:
    server.on(
        "GET",
        ARCHIVE,
        jsonr(
            200,
            {"sandboxes": [archived_json(), archived_json("sbx-2")], "prev_cursor": None, "next_cursor": "bmV4dA"},
        ),
    )
    page = client.list_archived(limit=2, cursor="Y3Vy", direction="backward")
    assert [s.sandbox_id for s in page.sandboxes] == ["sbx-1", "sbx-2"]
    assert (page.prev_cursor, page.next_cursor) == (None, "bmV4dA")
    first = page.sandboxes[0]
    assert first.status == SandboxStatus.TERMINATED
    assert first.termination_reason == "deleted"
    assert first.archived_at is not None and first.archived_at.year == 2026
    assert first.terminated_at == first.archived_at
    assert first.resources is not None and first.resources.cpus == 1.0
    params = dict(server.calls("GET", ARCHIVE)[0].url.params)
    assert params == {"limit": "2", "cursor": "Y3Vy", "direction": "backward"}

    # Nothing given: no query at all (the server's defaults).
    client.list_archived()
    assert dict(server.calls("GET", ARCHIVE)[1].url.params) == {}


def test_list_archived_checks_its_arguments_before_sending(server: FakeServer, client: SandboxClient) -> None:
    for kwargs in ({"limit": 0}, {"limit": "10"}, {"limit": True}, {"cursor": ""}, {"direction": "up"}):
        with pytest.raises(ValueError):
            client.list_archived(**kwargs)
    assert server.calls() == []


def test_list_archived_passes_a_400_on(server: FakeServer, client: SandboxClient) -> None:
    error = {"message": "invalid cursor: not a cursor of this server", "code": "INVALID_ARGUMENT"}
    server.on("GET", ARCHIVE, jsonr(400, error))
    with pytest.raises(RemoteAPIError) as err:
        client.list_archived(cursor="x")
    assert err.value.status_code == 400
    assert "cursor" in str(err.value)


def test_get_archived(server: FakeServer, client: SandboxClient) -> None:
    server.on("GET", f"{ARCHIVE}/sbx-1", jsonr(200, archived_json(name="old-env")))
    info = client.get_archived("sbx-1")
    assert (info.sandbox_id, info.name, info.status) == ("sbx-1", "old-env", "terminated")
    assert info.archived_at is not None
    with pytest.raises(SandboxNotFoundError):
        client.get_archived("sbx-404")
    with pytest.raises(ValueError):
        client.get_archived("")


def test_update_sandbox_patches_the_name(server: FakeServer, client: SandboxClient) -> None:
    server.on("PATCH", SBX, jsonr(200, info_json(name="my-env")))
    assert client.update_sandbox("sbx-1", "my-env").name == "my-env"
    assert body_of(server.requests[0]) == {"name": "my-env"}


def test_suspend_200_is_done(server: FakeServer, client: SandboxClient, sleeps: list[float]) -> None:
    server.on("POST", f"{SBX}/suspend", httpx.Response(200))
    server.on("GET", SBX, jsonr(200, info_json(status="suspended")))
    assert client.suspend("sbx-1").status == "suspended"
    post = server.calls("POST")[0]
    assert post.url.params["wait_ms"] == "30000"
    assert post.content == b"" and post.headers["content-length"] == "0"
    assert sleeps == []


def test_suspend_202_polls_until_suspended(server: FakeServer, client: SandboxClient, sleeps: list[float]) -> None:
    server.on("POST", f"{SBX}/suspend", httpx.Response(202))
    server.on(
        "GET",
        SBX,
        [
            jsonr(200, info_json(status="suspending")),
            jsonr(200, info_json(status="suspending")),
            jsonr(200, info_json(status="suspended")),
        ],
    )
    assert client.suspend("sbx-1").status == SandboxStatus.SUSPENDED
    assert len(server.calls("GET", SBX)) == 3 and sleeps == [1.0, 1.0]


def test_resume_202_polls_until_running(server: FakeServer, client: SandboxClient) -> None:
    server.on("POST", f"{SBX}/resume", httpx.Response(202))
    server.on(
        "GET",
        SBX,
        [
            jsonr(200, info_json(status="suspended")),
            jsonr(200, info_json(status="pending")),
            jsonr(200, info_json(status="running")),
        ],
    )
    assert client.resume("sbx-1").status == "running"


def test_wait_ms_follows_a_short_timeout(server: FakeServer, sleeps: list[float]) -> None:
    server.on("POST", f"{SBX}/resume", httpx.Response(200))
    server.on("GET", SBX, jsonr(200, info_json()))
    SandboxClient(timeout=10, transport=httpx.MockTransport(server)).resume("sbx-1")
    assert server.calls("POST")[0].url.params["wait_ms"] == "7500"


def test_suspend_409_already_there_is_success(server: FakeServer, client: SandboxClient) -> None:
    server.on("POST", f"{SBX}/suspend", jsonr(409, {"message": "already suspended", "code": "INVALID_STATE"}))
    server.on("GET", SBX, jsonr(200, info_json(status="suspended")))
    assert client.suspend("sbx-1").status == "suspended"


def test_suspend_409_otherwise_raises(server: FakeServer, client: SandboxClient) -> None:
    server.on(
        "POST",
        f"{SBX}/suspend",
        jsonr(409, {"message": "ephemeral sandboxes cannot be suspended", "code": "INVALID_STATE"}),
    )
    server.on("GET", SBX, jsonr(200, info_json(status="running")))
    with pytest.raises(RemoteAPIError, match="ephemeral") as info:
        client.suspend("sbx-1")
    assert info.value.status_code == 409


def test_snapshot_and_wait_polls_until_completed(
    server: FakeServer, client: SandboxClient, sleeps: list[float]
) -> None:
    server.on("POST", f"{SBX}/snapshot", jsonr(202, {"snapshot_id": "snap-1", "status": "in_progress"}))
    server.on(
        "GET",
        "/v1/namespaces/default/snapshots/snap-1",
        [
            jsonr(200, {"id": "snap-1", "namespace": "default", "sandbox_id": "sbx-1", "status": "in_progress"}),
            jsonr(
                200,
                {"id": "snap-1", "namespace": "default", "sandbox_id": "sbx-1", "status": "completed", "size_bytes": 5},
            ),
        ],
    )
    snap = client.snapshot_and_wait("sbx-1")
    assert snap.snapshot_id == "snap-1" and snap.status == SnapshotStatus.COMPLETED and snap.size_bytes == 5
    post = server.calls("POST")[0]
    assert post.content == b""
    # The server was asked to wait (75 % of the client's timeout, at most 30 s); once its wait
    # is over, polls come at growing intervals.
    assert post.url.params["wait_ms"] == "30000"
    assert sleeps == [0.05, 0.1]


def test_snapshot_and_wait_reads_a_snapshot_that_ended_within_the_servers_wait(
    server: FakeServer, client: SandboxClient, sleeps: list[float]
) -> None:
    server.on("POST", f"{SBX}/snapshot", jsonr(200, {"snapshot_id": "snap-1", "status": "completed"}))
    done = {"id": "snap-1", "namespace": "default", "sandbox_id": "sbx-1", "status": "completed", "size_bytes": 7}
    server.on("GET", "/v1/namespaces/default/snapshots/snap-1", jsonr(200, done))
    snap = client.snapshot_and_wait("sbx-1")
    assert (snap.status, snap.size_bytes, sleeps) == (SnapshotStatus.COMPLETED, 7, [])
    assert len(server.calls("GET")) == 1
    # A plain snapshot does not wait.
    client.snapshot("sbx-1")
    assert server.calls("POST")[-1].url.params["wait_ms"] == "0"


def test_snapshot_type_is_sent_and_failure_raises(server: FakeServer, client: SandboxClient) -> None:
    server.on("POST", f"{SBX}/snapshot", jsonr(200, {"snapshot_id": "snap-1", "status": "in_progress"}))
    server.on(
        "GET",
        "/v1/namespaces/default/snapshots/snap-1",
        jsonr(
            200,
            {
                "id": "snap-1",
                "namespace": "default",
                "sandbox_id": "sbx-1",
                "status": "failed",
                "error": "criu dump failed",
            },
        ),
    )
    with pytest.raises(SandboxError, match="criu dump failed"):
        client.snapshot_and_wait("sbx-1", snapshot_type="memory")
    assert body_of(server.calls("POST")[0]) == {"snapshot_type": "memory"}
    with pytest.raises(ValueError):
        client.snapshot_and_wait("sbx-1", snapshot_type="disk")


def test_snapshot_list_get_delete(server: FakeServer, client: SandboxClient) -> None:
    snap = {"id": "snap-1", "namespace": "default", "sandbox_id": "sbx-1", "status": "local_ready"}
    server.on("GET", "/v1/namespaces/default/snapshots", jsonr(200, {"snapshots": [snap]}))
    server.on("GET", "/v1/namespaces/default/snapshots/snap-1", jsonr(200, snap))
    server.on("DELETE", "/v1/namespaces/default/snapshots/snap-1", httpx.Response(204))
    assert [s.snapshot_id for s in client.list_snapshots()] == ["snap-1"]
    assert client.get_snapshot("snap-1").status == "local_ready"
    client.delete_snapshot("snap-1")
    assert [r.method for r in server.requests] == ["GET", "GET", "DELETE"]


def test_expose_and_unexpose_ports(server: FakeServer, client: SandboxClient) -> None:
    server.on("GET", SBX, jsonr(200, info_json(exposed_ports=[3000], allow_unauthenticated_access=True)))
    server.on("PATCH", SBX, jsonr(200, info_json(exposed_ports=[3000, 8080])))
    # Without the flag the sandbox keeps its mode: a public sandbox stays public.
    client.expose_ports("sbx-1", [8080])
    assert body_of(server.calls("PATCH")[0]) == {"exposed_ports": [3000, 8080]}
    client.unexpose_ports("sbx-1", [8080])
    assert body_of(server.calls("PATCH")[1]) == {"allow_unauthenticated_access": True, "exposed_ports": [3000]}
    client.unexpose_ports("sbx-1", [3000])
    assert body_of(server.calls("PATCH")[2]) == {"allow_unauthenticated_access": False, "exposed_ports": []}
    client.expose_ports("sbx-1", [8080], allow_unauthenticated_access=False)
    assert body_of(server.calls("PATCH")[3]) == {"allow_unauthenticated_access": False, "exposed_ports": [3000, 8080]}
    with pytest.raises(ValueError, match="9501"):
        client.expose_ports("sbx-1", [9501])


def test_identifiers_are_path_escaped(server: FakeServer, client: SandboxClient) -> None:
    client_get = server.on("GET", f"{BASE}/a b", jsonr(200, info_json()))
    assert client_get is server
    client.get("a b")
    assert server.requests[0].url.raw_path == b"/v1/namespaces/default/sandboxes/a%20b"
    with pytest.raises(ValueError):
        client.get("")
