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


def test_a_restore_inherits_each_size_it_is_not_given(server, client):
    """The SDK sends only the sizes asked for: a filesystem snapshot of a 2 GiB sandbox restored
    with a bigger disk keeps its memory (it once came back with the 1 GiB default), and a memory
    snapshot restored with its own memory size is not refused for a CPU count nobody asked for."""
    with client.create_and_connect(memory_mb=2048) as source:
        source.write_file("/root/kept.txt", b"kept")
        fs_snap = client.snapshot_and_wait(source.sandbox_id, snapshot_type="filesystem")
        memory_snap = client.snapshot_and_wait(source.sandbox_id)
    try:
        # A bigger disk is given (grown before it is mounted), with the files; a smaller one is refused.
        with client.create_and_connect(snapshot_id=fs_snap.snapshot_id, disk_mb=12288) as bigger:
            info = client.get(bigger.sandbox_id)
            assert (info.resources.memory_mb, info.resources.disk_mb) == (2048, 12288), info.resources
            assert bigger.read_file("/root/kept.txt") == b"kept"
            size_kb = int(bigger.run("sh", ["-c", "df -k --output=size / | tail -1"]).stdout)
            assert size_kb > 11 * 1024 * 1024, size_kb
        live = {s["id"] for s in server.live_sandboxes()}
        smaller = server.api("POST", "/sandboxes",
                             json={"snapshot_id": fs_snap.snapshot_id, "resources": {"disk_mb": 4096}})
        assert smaller.status_code == 400 and "only grows" in smaller.json()["message"], smaller.text
        # What a restore cannot honour is refused, not dropped: another image (even one that does
        # not exist, which was once a silent 200), or an entrypoint for restored processes.
        for snap, body, field in (
            (fs_snap, {"image": "no-such-image"}, "image"),
            (fs_snap, {"image": "alcove/desktop"}, "image"),
            (memory_snap, {"image": "no-such-image"}, "image"),
            (memory_snap, {"entrypoint": ["sleep", "1"]}, "entrypoint"),
        ):
            refused = server.api("POST", "/sandboxes", json={"snapshot_id": snap.snapshot_id, **body})
            assert refused.status_code == 400 and field in refused.json()["message"], (body, refused.text)
        # Its own image, by another of its names, is no change.
        with client.create_and_connect(snapshot_id=fs_snap.snapshot_id, image="alcove/debian") as own:
            assert own.read_file("/root/kept.txt") == b"kept"
        assert {s["id"] for s in server.live_sandboxes()} == live
        with client.create_and_connect(snapshot_id=memory_snap.snapshot_id, memory_mb=2048) as same:
            assert client.get(same.sandbox_id).resources.memory_mb == 2048
    finally:
        client.delete_snapshot(fs_snap.snapshot_id)
        client.delete_snapshot(memory_snap.snapshot_id)


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


def test_a_snapshot_request_waits_for_the_end_as_asked(server, client):
    """`wait_ms` bounds how long the request waits for the snapshot: 0 answers 202 at once, a
    long one 200 with the outcome. (Without it the server waits a second, one poll interval
    of the official SDKs.)"""
    sb = client.create(name="snap-wait")
    try:
        at_once = server.api("POST", f"/sandboxes/{sb.sandbox_id}/snapshot", params={"wait_ms": "0"})
        assert at_once.status_code == 202, at_once.text
        assert at_once.json()["status"] == "in_progress"
        waited = server.api("POST", f"/sandboxes/{sb.sandbox_id}/snapshot", params={"wait_ms": "50000"})
        assert waited.status_code == 200, waited.text
        body = waited.json()
        assert body["status"] == "completed"
        info = server.api("GET", f"/snapshots/{body['snapshot_id']}").json()
        assert info["status"] == "completed" and info["size_bytes"] > 0
        default = server.api("POST", f"/sandboxes/{sb.sandbox_id}/snapshot")
        assert (default.status_code, default.json()["status"]) in [(200, "completed"), (202, "in_progress")]
        bad = server.api("POST", f"/sandboxes/{sb.sandbox_id}/snapshot", params={"wait_ms": "soon"})
        assert bad.status_code == 400 and "wait_ms" in bad.json()["message"]
        # Through the SDK the waiting call hands back the whole record.
        snap = client.snapshot_and_wait(sb.sandbox_id)
        assert snap.status == "completed" and snap.size_bytes and snap.size_bytes > 0
        for s in client.list_snapshots():
            if s.sandbox_id == sb.sandbox_id:
                wait_until_deletable = time.monotonic() + 60
                while client.get_snapshot(s.snapshot_id).status == "in_progress" and time.monotonic() < wait_until_deletable:
                    time.sleep(0.1)
                client.delete_snapshot(s.snapshot_id)
    finally:
        client.delete(sb.sandbox_id)
