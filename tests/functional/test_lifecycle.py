"""Create, get, list, delete and bad input, through Alcove's Python SDK and raw HTTP."""

from __future__ import annotations

import os

import pytest

from alcove.sandbox import RemoteAPIError, SandboxNotFoundError
from framework.host import owned_resources, settled_resources


def test_create_and_connect_runs_python_and_terminates_on_exit(server, client):
    with client.create_and_connect(cpus=2.0, memory_mb=2048) as sandbox:
        result = sandbox.run("python", ["-c", "print('hello')"], timeout_secs=30)
        assert result.stdout == "hello"
        assert result.stderr == ""
        assert result.exit_code == 0
        sandbox_id = sandbox.sandbox_id
        info = client.get(sandbox_id)
        assert info.status == "running"
        assert info.resources.cpus == 2.0
        assert info.resources.memory_mb == 2048
        assert info.resources.disk_mb == 10240
        assert info.image == "alcove/debian"
    assert client.get(sandbox_id).status == "terminated"


def test_sandbox_info_has_every_wire_field(server):
    resp = server.api(
        "POST",
        "/v1/namespaces/default/sandboxes",
        json={"resources": {"cpus": 1.0, "memory_mb": 1024}, "exposed_ports": [8080, 80]},
    )
    assert resp.status_code == 200, resp.text
    created = resp.json()
    assert created["status"] == "running"
    assert created["sandbox_url"] == server.url
    info = server.api("GET", f"/v1/namespaces/default/sandboxes/{created['sandbox_id']}").json()
    # A running sandbox's create answer carries what GET answers, so clients skip the GET.
    assert created["sandbox"] == info
    for key in (
        "id", "namespace", "status", "name", "image", "resources", "sandbox_url",
        "secret_names", "timeout_secs", "entrypoint", "network_policy", "exposed_ports",
        "allow_unauthenticated_access", "auto_resume", "created_at", "terminated_at",
    ):
        assert key in info, key
    # The official SDK rejects a body with both `id` and `sandbox_id`.
    assert "sandbox_id" not in info
    assert info["resources"]["ephemeral_disk_mb"] == info["resources"]["disk_mb"]
    assert info["exposed_ports"] == [80, 8080]
    assert info["name"] is None
    # Flat routes serve the same sandbox (namespace `default`).
    flat = server.api("GET", f"/sandboxes/{created['sandbox_id']}").json()
    assert flat["id"] == info["id"]
    assert server.api("DELETE", f"/sandboxes/{created['sandbox_id']}").status_code == 200
    after = server.api("GET", f"/sandboxes/{created['sandbox_id']}").json()
    assert after["status"] == "terminated"
    assert after["terminated_at"] is not None
    assert "sandbox_url" not in after


def test_wait_false_answers_202_pending_then_runs(server, client):
    resp = server.api("POST", "/v1/namespaces/default/sandboxes", json={"wait": False})
    assert resp.status_code == 202, resp.text
    body = resp.json()
    assert body["status"] == "pending"
    assert body["pending_reason"] == "scheduling"
    assert "sandbox" not in body  # only a running sandbox's answer carries its info
    sandbox = client.connect(body["sandbox_id"])  # waits while pending
    try:
        assert sandbox.run("true").exit_code == 0
    finally:
        client.delete(body["sandbox_id"])


def test_list_shows_sandboxes_of_the_namespace(server, client):
    a = client.create()
    b = client.create()
    try:
        ids = {s.sandbox_id for s in client.list()}
        assert {a.sandbox_id, b.sandbox_id} <= ids
        other = server.api("GET", "/v1/namespaces/other/sandboxes").json()
        assert other["sandboxes"] == []
        assert server.api("GET", f"/v1/namespaces/other/sandboxes/{a.sandbox_id}").status_code == 404
    finally:
        client.delete(a.sandbox_id)
        client.delete(b.sandbox_id)


def test_names_resolve_conflict_and_free_up(server, client):
    first = client.create(name="named-env")
    try:
        assert client.get("named-env").sandbox_id == first.sandbox_id
        sandbox = client.connect("named-env")
        assert sandbox.sandbox_id == first.sandbox_id
        assert sandbox.name == "named-env"
        assert sandbox.run("hostname").stdout == "named-env"
        with pytest.raises(RemoteAPIError) as err:
            client.create(name="named-env")
        assert err.value.status_code == 409
    finally:
        client.delete("named-env")
    with pytest.raises(SandboxNotFoundError):
        client.get("named-env")
    second = client.create(name="named-env")
    assert second.sandbox_id != first.sandbox_id
    client.delete(second.sandbox_id)


def test_delete_is_idempotent_and_unknown_ids_are_404(server, client):
    info = client.create()
    client.delete(info.sandbox_id)
    client.delete(info.sandbox_id)
    with pytest.raises(SandboxNotFoundError):
        client.get("00000000-0000-4000-8000-000000000000")
    resp = server.api("DELETE", "/v1/namespaces/default/sandboxes/no-such-name")
    assert resp.status_code == 404
    assert resp.json()["code"] == "NOT_FOUND"


def test_a_deleted_sandbox_leaves_its_place_at_once_and_the_trash_soon_after(server, client):
    from framework.host import sandbox_loops, wait_for

    with client.create_and_connect() as sandbox:
        sandbox.write_file("/root/big.bin", b"x" * (8 << 20))
        sid = sandbox.sandbox_id
        assert (server.data_dir / "sandboxes" / sid).is_dir()
        assert [loop for loop in sandbox_loops(server.data_dir) if sid in loop], "its disk is on a loop device"
        client.delete(sid)
    # Nothing of it where it was, nor mounted anywhere, nor its cgroups or runc's state of it,
    # when the delete answers ...
    assert not (server.data_dir / "sandboxes" / sid).exists()
    res = owned_resources(server.data_dir)
    assert not [m for m in res.mounts if sid in m], res
    assert not [c for c in res.cgroups if c.endswith("/" + sid)], res
    assert sid not in res.containers, res
    # ... and its files, moved out of the way, are removed in the background, its detached
    # file systems torn down first: no loop device is left on its disk image.
    trash = server.data_dir / "trash"
    assert wait_for(lambda: not [n for n in os.listdir(trash) if n.startswith(sid)], 30), os.listdir(trash)
    assert not [loop for loop in sandbox_loops(server.data_dir) if sid in loop]


def test_a_delete_whose_client_hangs_up_still_removes_everything(server, client):
    """A client that sends a delete and hangs up at once (a killed script, a timeout) must not
    leave a sandbox marked terminated whose container, mounts and cgroups stay up."""
    import socket
    import time
    from urllib.parse import urlparse

    from framework.host import wait_for

    where = urlparse(server.url)
    reached = 0
    # The server notices the hang-up at its next wait; the store's update (the first) is
    # about a millisecond in: hang up around it.
    for step in range(16):
        sid = client.create().sandbox_id
        with socket.create_connection((where.hostname, where.port)) as conn:
            conn.sendall(f"DELETE /sandboxes/{sid} HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\n\r\n".encode())
            time.sleep(step * 0.0002)
        # The delete either never reached the server (the sandbox runs on) or ran to its end.
        time.sleep(0.3)
        if client.get(sid).status == "terminated":
            reached += 1
        else:
            client.delete(sid)

        def gone() -> bool:
            res = owned_resources(server.data_dir)
            return not (
                [m for m in res.mounts if sid in m]
                or [c for c in res.cgroups if c.endswith("/" + sid)]
                or sid in res.containers
                or sid in res.sandbox_dirs
            )

        assert wait_for(gone, 10), owned_resources(server.data_dir)
    assert reached, "no hung-up delete reached the server"


def stored_ids(server) -> set[str]:
    """Every sandbox the server keeps: the live list and the archive (a failed create would be there)."""
    live = {s["id"] for s in server.api("GET", "/sandboxes").json()["sandboxes"]}
    archived = server.api("GET", "/archived-sandboxes", params={"limit": 1000}).json()["sandboxes"]
    return live | {s["id"] for s in archived}


@pytest.mark.parametrize(
    ("body", "status", "needle"),
    [
        ({"resources": {"cpus": -1, "memory_mb": 1024}}, 400, "cpus"),
        ({"resources": {"cpus": 0, "memory_mb": 1024}}, 400, "cpus"),
        ({"resources": {"cpus": 64, "memory_mb": 65536}}, 400, "cpus"),
        ({"resources": {"cpus": 1, "memory_mb": 512}}, 400, "memory_mb"),
        ({"resources": {"cpus": 1, "memory_mb": 9000}}, 400, "memory_mb"),
        ({"resources": {"cpus": 1, "memory_mb": 1024, "disk_mb": 1}}, 400, "disk_mb"),
        ({"image": "no-such-image"}, 404, "no-such-image"),
        ({"name": "Bad_Name"}, 400, "name"),
        ({"name": "-x"}, 400, "name"),
        ({"timeout_secs": -5}, 400, "timeout_secs"),
        ({"exposed_ports": [9501]}, 400, "9501"),
        ({"resources": {"cpus": 1, "memory_mb": 1024, "gpus": [{"count": 1, "model": "H100"}]}}, 400, "GPU"),
        ({"secret_names": ["X"]}, 400, "alcove secrets set"),
        ({"snapshot_id": "snap-1"}, 404, "snapshot"),
        ({"network": {"allow_out": ["::1"]}}, 400, "IPv6"),
        ({"resources": {"cpus": "two"}}, 400, "invalid request body"),
        ({"entrypoint": ["sleep", "inf\u0000"]}, 400, "entrypoint"),
    ],
)
def test_bad_creates_get_clear_errors_and_leave_nothing(server, body, status, needle):
    before = stored_ids(server)
    resp = server.api("POST", "/v1/namespaces/default/sandboxes", json=body)
    assert resp.status_code == status, resp.text
    err = resp.json()
    assert needle.lower() in err["message"].lower()
    assert isinstance(err["code"], str)
    after = stored_ids(server)
    assert after == before, "a rejected create must not store a sandbox"
    assert settled_resources(server.data_dir).is_empty()


def test_malformed_json_is_a_400(server):
    resp = server.api(
        "POST",
        "/v1/namespaces/default/sandboxes",
        content=b"{not json",
        headers={"content-type": "application/json"},
    )
    assert resp.status_code == 400
    assert resp.json()["code"] == "INVALID_ARGUMENT"


def test_ephemeral_timeout_terminates(server, client):
    import time

    info = client.create(timeout_secs=2)
    assert info.timeout_secs == 2
    deadline = time.monotonic() + 20
    status = client.get(info.sandbox_id).status
    while status != "terminated" and time.monotonic() < deadline:
        time.sleep(0.5)
        status = client.get(info.sandbox_id).status
    assert status == "terminated"
    raw = server.api("GET", f"/sandboxes/{info.sandbox_id}").json()
    assert raw["termination_reason"] == "timeout"
    # The record says terminated first (it is written before the node acts, so a
    # crash cannot forget the sandbox); the clean-up follows.
    from framework.host import owned_resources

    while not owned_resources(server.data_dir).is_empty() and time.monotonic() < deadline + 20:
        time.sleep(0.2)


def test_entrypoint_runs_beside_the_agent(server, client):
    with client.create_and_connect(entrypoint=["sleep", "300"]) as sandbox:
        procs = sandbox.list_processes()
        assert any(p.command == "sleep" and p.args == ["300"] for p in procs), procs


def test_patch_network_replaces_or_clears_the_policy(server, client):
    info = client.create()
    try:
        path = f"/sandboxes/{info.sandbox_id}"
        resp = server.api("PATCH", path, json={"network": {"allow_internet_access": False}})
        assert resp.status_code == 200, resp.text
        assert resp.json()["network_policy"]["allow_internet_access"] is False
        resp = server.api("PATCH", path, json={"network": None})
        assert resp.json()["network_policy"] == {"allow_internet_access": True, "allow_out": [], "deny_out": []}
        assert server.api("PATCH", path, json={"network": {"allow_out": "nope"}}).status_code == 400
    finally:
        client.delete(info.sandbox_id)
