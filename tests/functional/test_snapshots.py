"""Snapshots: memory and filesystem, restored any number of times, independent."""

from __future__ import annotations

import time

import pytest

from alcove.sandbox import RemoteAPIError, SandboxError

COUNTER = (
    "import time\n"
    "i = 0\n"
    "while True:\n"
    "    i += 1\n"
    "    print(i, flush=True)\n"
    "    time.sleep(0.05)\n"
)


def test_memory_snapshot_restores_twice_independently(server, client):
    with client.create_and_connect(name="source", cpus=1.0, memory_mb=2048) as source:
        counter = source.start_process("python", ["-c", COUNTER])
        source.write_file("/root/data.txt", b"snapshot content")
        time.sleep(0.5)
        snap = client.snapshot_and_wait(source.sandbox_id)
        assert snap.status in ("completed", "local_ready")
        assert snap.sandbox_id == source.sandbox_id
        assert snap.size_bytes and snap.size_bytes > 0
        # The source kept running.
        assert source.run("echo", ["alive"]).stdout == "alive"

        clones = [client.create_and_connect(snapshot_id=snap.snapshot_id) for _ in range(2)]
        try:
            a, b = clones
            assert len({a.sandbox_id, b.sandbox_id, source.sandbox_id}) == 3
            for clone in clones:
                assert clone.read_file("/root/data.txt") == b"snapshot content"
                procs = {p.pid: p for p in clone.list_processes()}
                assert procs[counter.pid].status == "running"
                info = client.get(clone.sandbox_id)
                assert info.resources.memory_mb == 2048
            # Writes of one copy are invisible to the other and to the source.
            a.write_file("/root/data.txt", b"changed in a")
            assert b.read_file("/root/data.txt") == b"snapshot content"
            assert source.read_file("/root/data.txt") == b"snapshot content"
            # Each clone's counter continues independently from the snapshot's count.
            count_b = int(b.get_output(counter.pid).lines[-1])
            assert count_b > 0
        finally:
            for clone in clones:
                client.delete(clone.sandbox_id)
        assert any(s.snapshot_id == snap.snapshot_id for s in client.list_snapshots())
        assert client.get_snapshot(snap.snapshot_id).sandbox_id == source.sandbox_id
        per_sandbox = server.api("GET", f"/sandboxes/{source.sandbox_id}/snapshots").json()
        assert [s["id"] for s in per_sandbox["snapshots"]] == [snap.snapshot_id]
        client.delete_snapshot(snap.snapshot_id)
    with pytest.raises((RemoteAPIError, SandboxError)) as err:
        client.create(snapshot_id=snap.snapshot_id)
    assert "404" in str(err.value) or "not found" in str(err.value).lower()


def test_filesystem_snapshot_boots_fresh_with_new_resources(server, client):
    with client.create_and_connect() as source:
        source.start_process("sleep", ["600"])
        source.write_file("/root/fs.txt", b"files only")
        snap = client.snapshot_and_wait(source.sandbox_id, snapshot_type="filesystem")
        assert client.get_snapshot(snap.snapshot_id).snapshot_type == "filesystem"
    restored = client.create_and_connect(snapshot_id=snap.snapshot_id, cpus=2.0, memory_mb=4096)
    try:
        assert restored.read_file("/root/fs.txt") == b"files only"
        assert not any(p.command == "sleep" for p in restored.list_processes())
        info = client.get(restored.sandbox_id)
        assert info.resources.cpus == 2.0 and info.resources.memory_mb == 4096
    finally:
        client.delete(restored.sandbox_id)
        client.delete_snapshot(snap.snapshot_id)


def test_memory_snapshot_refuses_other_resources(server, client):
    with client.create_and_connect() as source:
        snap = client.snapshot_and_wait(source.sandbox_id)
    try:
        resp = server.api(
            "POST", "/sandboxes",
            json={"snapshot_id": snap.snapshot_id, "resources": {"cpus": 2.0, "memory_mb": 4096}},
        )
        assert resp.status_code == 400
        assert "memory snapshot" in resp.json()["message"]
    finally:
        client.delete_snapshot(snap.snapshot_id)


def test_snapshot_errors(server):
    assert server.api("GET", "/snapshots/00000000-0000-4000-8000-000000000000").status_code == 404
    assert server.api("DELETE", "/snapshots/nope").status_code == 404
    resp = server.api("POST", "/sandboxes/nope/snapshot")
    assert resp.status_code == 404
    resp = server.api("POST", "/sandboxes", json={"snapshot_id": "missing"})
    assert resp.status_code == 404
    assert "snapshot" in resp.json()["message"]
