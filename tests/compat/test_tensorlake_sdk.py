"""The official `tensorlake==0.5.161` SDK against a real Alcove server."""

from __future__ import annotations

import pytest

tensorlake_sandbox = pytest.importorskip("tensorlake.sandbox", reason="tensorlake SDK missing")


@pytest.fixture
def tl_client(server):
    return tensorlake_sandbox.SandboxClient.for_localhost(api_url=server.url)


def test_create_and_connect_run(server, tl_client):
    with tl_client.create_and_connect(cpus=2.0, memory_mb=2048) as sandbox:
        result = sandbox.run("python", ["-c", "print('hello')"], timeout=30)
        assert result.stdout.strip() == "hello"
        assert result.exit_code == 0
        sandbox_id = sandbox.sandbox_id
    info = server.api("GET", f"/sandboxes/{sandbox_id}").json()
    assert info["status"] == "terminated"


def test_get_list_and_delete(server, tl_client):
    created = tl_client.create(cpus=1.0, memory_mb=1024)
    sandbox_id = created.sandbox_id
    try:
        info = tl_client.get(sandbox_id)
        assert info.resources.cpus == 1.0
        assert info.resources.memory_mb == 1024
        assert sandbox_id in [s.sandbox_id for s in tl_client.list()]
    finally:
        tl_client.delete(sandbox_id)


def test_env_and_failure_exit_codes(tl_client):
    with tl_client.create_and_connect() as sandbox:
        result = sandbox.run("sh", ["-c", 'echo "$X"; exit 3'], env={"X": "from-env"})
        assert result.stdout.strip() == "from-env"
        assert result.exit_code == 3


def test_named_sandbox_and_duplicate_name(tl_client):
    tl_client.create(name="tl-named")
    try:
        with pytest.raises(Exception) as err:
            tl_client.create(name="tl-named")
        assert "409" in str(err.value) or "already" in str(err.value)
    finally:
        tl_client.delete("tl-named")


def test_get_or_create_converges_and_resumes(server):
    from concurrent.futures import ThreadPoolExecutor

    def bind(_):
        return tensorlake_sandbox.Sandbox.get_or_create("tl-session", api_url=server.url, api_key=None)

    with ThreadPoolExecutor(4) as pool:
        handles = list(pool.map(bind, range(4)))
    try:
        assert len({h.sandbox_id for h in handles}) == 1
        assert sorted(h.bind_outcome for h in handles) == ["attached"] * 3 + ["created"]
        handles[0].write_file("/root/kept.txt", b"kept")
        handles[0].suspend()
        resumed = bind(None)
        assert resumed.bind_outcome == "resumed"
        assert resumed.read_file("/root/kept.txt").value == b"kept"
    finally:
        server.api("DELETE", f"/sandboxes/{handles[0].sandbox_id}")


def test_suspend_resume_keeps_state(server, tl_client):
    tl_client.create(name="tl-susp")
    try:
        sandbox = tl_client.connect("tl-susp")
        sandbox.run("sh", ["-c", "echo kept > /root/kept.txt"])
        proc = sandbox.start_process("sleep", ["600"])
        tl_client.suspend("tl-susp")
        assert server.api("GET", "/sandboxes/tl-susp").json()["status"] == "suspended"
        # connect() works on a suspended sandbox (sandbox_url is present) ...
        tl_client.connect("tl-susp")
        tl_client.resume("tl-susp")
        again = tl_client.connect("tl-susp")
        assert again.run("cat", ["/root/kept.txt"]).stdout.strip() == "kept"
        assert any(p.pid == proc.pid for p in again.list_processes())
    finally:
        tl_client.delete("tl-susp")


def test_snapshot_restore_and_rename(server, tl_client):
    created = tl_client.create()
    sandbox_id = created.sandbox_id
    try:
        renamed = tl_client.update_sandbox(sandbox_id, "tl-renamed")
        assert renamed.name == "tl-renamed"
        source = tl_client.connect("tl-renamed")
        source.run("sh", ["-c", "echo snap > /root/s.txt"])
        snap = tl_client.snapshot_and_wait(sandbox_id)
        assert str(getattr(snap.status, "value", snap.status)) in ("completed", "local_ready")
        restored = tl_client.create_and_connect(snapshot_id=snap.snapshot_id)
        try:
            assert restored.run("cat", ["/root/s.txt"]).stdout.strip() == "snap"
            assert restored.sandbox_id != sandbox_id
        finally:
            tl_client.delete(restored.sandbox_id)
        ids = [s.snapshot_id for s in tl_client.list_snapshots()]
        assert snap.snapshot_id in ids
        tl_client.delete_snapshot(snap.snapshot_id)
    finally:
        tl_client.delete(sandbox_id)


def test_volumes_attach_detach_and_create_with_file_systems(server, tl_client):
    from tensorlake.sandbox.models import FileSystemMount

    r = server.api("POST", "/file-systems", json={"name": "tl-vol", "size_mb": 32})
    assert r.status_code == 200, r.text
    try:
        with tl_client.create_and_connect() as sandbox:
            traced = tl_client.attach_file_system(sandbox.sandbox_id, "tl-vol", "/mnt/tl")
            info = getattr(traced, "value", traced)
            assert [m.mount_path for m in info.file_systems] == ["/mnt/tl"]
            sandbox.run("sh", ["-c", "echo via-tensorlake > /mnt/tl/f"])
            traced = tl_client.detach_file_system(sandbox.sandbox_id, "/mnt/tl")
            info = getattr(traced, "value", traced)
            assert info.file_systems == []
        mounts = [FileSystemMount(file_system_id="tl-vol", mount_path="/mnt/tl", read_only=True)]
        with tl_client.create_and_connect(file_systems=mounts) as sandbox:
            assert sandbox.run("cat", ["/mnt/tl/f"]).stdout.strip() == "via-tensorlake"
            denied = sandbox.run("sh", ["-c", "touch /mnt/tl/g 2>&1; echo rc=$?"]).stdout
            assert "Read-only file system" in denied
            info = server.api("GET", f"/sandboxes/{sandbox.sandbox_id}").json()
            assert info["file_systems"] == [
                {"file_system_id": "tl-vol", "mount_path": "/mnt/tl", "read_only": True}
            ]
    finally:
        assert server.api("DELETE", "/file-systems/tl-vol").status_code == 204
