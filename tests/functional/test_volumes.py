"""Persistent volumes: data outlives sandboxes, live attach and detach, read-only and size
enforcement, exclusive read-write, suspend/resume, bad input, and nothing left on the host."""

from __future__ import annotations

import subprocess
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from alcove.sandbox import RemoteAPIError, SandboxNameConflictError


def volume_mounts(data_dir: Path) -> list[str]:
    """Mounts under the server's volumes directory (host views of volumes)."""
    root = str((data_dir / "volumes").resolve()) + "/"
    with open("/proc/self/mountinfo") as f:
        return [line.split(" ")[4] for line in f if line.split(" ")[4].startswith(root)]


def volume_loops(data_dir: Path) -> list[str]:
    """Loop devices backed by a file under the server's volumes directory."""
    out = subprocess.run(["losetup", "-l", "-n", "-O", "NAME,BACK-FILE"], capture_output=True, text=True)
    root = str((data_dir / "volumes").resolve())
    return [line for line in out.stdout.splitlines() if root in line]


@pytest.fixture
def vol(client, server):
    """A fresh 64 MiB volume, deleted after the test; the host keeps no mount or loop device."""
    name = f"vol-{uuid.uuid4().hex[:8]}"
    client.create_file_system(name, 64)
    yield name
    try:
        client.delete_file_system(name)
    except RemoteAPIError as e:
        assert e.status_code == 404, e
    assert not volume_mounts(server.data_dir), "volume mounted with no sandbox using it"
    assert not volume_loops(server.data_dir), "loop device of a volume left behind"


def status_of(exc: pytest.ExceptionInfo) -> int:
    return exc.value.status_code


def test_data_outlives_a_sandbox(client, vol):
    info = client.get_file_system(vol)
    assert info.size_mb == 64 and info.attachments == []
    with client.create_and_connect(file_systems=[{"file_system_id": vol, "mount_path": "/data"}]) as a:
        assert [m.mount_path for m in a.info().file_systems] == ["/data"]
        a.write_file("/data/hello.txt", b"from A")
        owner = a.run("stat", ["-c", "%u:%g", "/data/hello.txt"]).stdout.strip()
        assert owner == "0:0", "the sandbox's root owns what it writes"
        attached = client.get_file_system(vol).attachments
        assert [(x.sandbox_id, x.mount_path, x.read_only) for x in attached] == [(a.sandbox_id, "/data", False)]
    assert client.get_file_system(vol).attachments == [], "deleting a sandbox releases its mounts"
    with client.create_and_connect() as b:
        b.attach_file_system(vol, "/mnt/again")
        assert b.read_file("/mnt/again/hello.txt") == b"from A"
        b.detach_file_system("/mnt/again")


def test_live_attach_and_detach_keep_processes_running(client, vol):
    with client.create_and_connect() as sb:
        sleeper = sb.start_process("sleep", ["600"])
        info = sb.attach_file_system(vol, "/mnt/live")
        assert [(m.file_system_id, m.mount_path) for m in info.file_systems] == [(vol, "/mnt/live")]
        mounts = sb.run("cat", ["/proc/mounts"]).stdout
        line = next(l for l in mounts.splitlines() if " /mnt/live " in l)
        assert "nosuid" in line and "nodev" in line
        sb.write_file("/mnt/live/f", b"x")
        pids = sb.run("sh", ["-c", f"kill -0 {sleeper.pid} && echo alive"]).stdout
        assert "alive" in pids, "a process started before the attach still runs"
        info = sb.detach_file_system("/mnt/live")
        assert info.file_systems == []
        assert " /mnt/live " not in sb.run("cat", ["/proc/mounts"]).stdout
        assert "alive" in sb.run("sh", ["-c", f"kill -0 {sleeper.pid} && echo alive"]).stdout


def test_read_only_is_enforced_and_readers_share(client, vol):
    with client.create_and_connect() as w:
        w.attach_file_system(vol, "/data")
        w.write_file("/data/seed", b"seed")
        w.detach_file_system("/data")
    with client.create_and_connect() as r1, client.create_and_connect() as r2:
        r1.attach_file_system(vol, "/ro", read_only=True)
        r2.attach_file_system(vol, "/ro", read_only=True)
        assert r2.read_file("/ro/seed") == b"seed"
        out = r1.run("sh", ["-c", "touch /ro/new 2>&1; echo rc=$?"]).stdout
        assert "Read-only file system" in out and "rc=1" in out
        out = r1.run("sh", ["-c", "mount -o remount,rw /ro 2>&1; echo rc=$?"]).stdout
        assert "rc=0" not in out, "the sandbox cannot make it writable"
        r2.detach_file_system("/ro")
        with pytest.raises(RemoteAPIError) as e:
            r2.attach_file_system(vol, "/rw")
        assert status_of(e) == 409 and e.value.code == "FILE_SYSTEM_IN_USE", "r1 still reads it"
        r1.detach_file_system("/ro")


def test_a_copy_shares_read_only_volumes_and_is_refused_a_read_write_one(client, server, vol):
    with client.create_and_connect() as source:
        source.attach_file_system(vol, "/data")
        source.write_file("/data/seed", b"seed")
        live = {s["id"] for s in server.live_sandboxes()}
        # Each copy would mount it read-write beside the source: refused, nothing made.
        with pytest.raises(RemoteAPIError) as e:
            client.copy(source.sandbox_id, times=2)
        assert status_of(e) == 409 and e.value.code == "FILE_SYSTEM_IN_USE", e.value
        assert vol in str(e.value) and "/data" in str(e.value)
        assert {s["id"] for s in server.live_sandboxes()} == live
        # Read-only, the copies read it beside the source.
        source.detach_file_system("/data")
        source.attach_file_system(vol, "/data", read_only=True)
        copies = client.copy_and_connect(source.sandbox_id, times=2)
        try:
            for copy in copies:
                assert copy.read_file("/data/seed") == b"seed"
            attached = client.get_file_system(vol).attachments
            assert sorted(a.sandbox_id for a in attached) == sorted(
                [source.sandbox_id] + [c.sandbox_id for c in copies])
            assert all(a.read_only for a in attached), attached
        finally:
            for copy in copies:
                client.delete(copy.sandbox_id)
        source.detach_file_system("/data")


def test_readers_attaching_at_once_share_one_mount_of_the_image(client, server, vol):
    # Each round starts with the volume mounted nowhere, then four sandboxes attach it at the
    # same moment while a fifth lets go of it (which releases host mounts no view uses): the
    # image must be mounted once (one loop device, one ext4 instance), and every reader sees it.
    with client.create_and_connect() as w:
        w.attach_file_system(vol, "/data")
        w.write_file("/data/seed", b"seed")
        w.detach_file_system("/data")
    readers = [client.create_and_connect() for _ in range(5)]
    try:
        for round_ in range(4):
            leaving = readers[round_ % len(readers)]
            leaving.attach_file_system(vol, "/ro", read_only=True)
            joining = [r for r in readers if r is not leaving]
            with ThreadPoolExecutor(len(readers)) as pool:
                done = [pool.submit(r.attach_file_system, vol, "/ro", read_only=True) for r in joining]
                done.append(pool.submit(leaving.detach_file_system, "/ro"))
                for f in done:
                    f.result()
            loops = volume_loops(server.data_dir)
            assert len(loops) == 1, f"round {round_}: the image is on {loops}"
            for r in joining:
                assert r.read_file("/ro/seed") == b"seed", f"round {round_}: {r.sandbox_id} lost the volume"
            for r in joining:
                r.detach_file_system("/ro")
            assert not volume_loops(server.data_dir), "the last reader gone, the image stays mounted"
    finally:
        for r in readers:
            r.terminate()


def test_read_write_is_exclusive_and_delete_waits_for_detach(client, vol):
    with client.create_and_connect() as a, client.create_and_connect() as b:
        a.attach_file_system(vol, "/data")
        for ro in (False, True):
            with pytest.raises(RemoteAPIError) as e:
                b.attach_file_system(vol, "/data", read_only=ro)
            assert status_of(e) == 409
        with pytest.raises(RemoteAPIError) as e:
            client.delete_file_system(vol)
        assert status_of(e) == 409
        a.detach_file_system("/data")
        b.attach_file_system(vol, "/data")
        b.detach_file_system("/data")
    client.delete_file_system(vol)
    with pytest.raises(RemoteAPIError) as e:
        client.get_file_system(vol)
    assert status_of(e) == 404


def test_size_is_enforced(client, vol):
    with client.create_and_connect() as sb:
        sb.attach_file_system(vol, "/data")
        out = sb.run("sh", ["-c", "dd if=/dev/zero of=/data/big bs=1M count=100 2>&1; echo rc=$?"]).stdout
        assert "No space left on device" in out and "rc=1" in out
        sb.run("rm", ["-f", "/data/big"])
        sb.detach_file_system("/data")


def test_detach_with_open_files_is_refused_and_leaves_it_mounted(client, vol):
    with client.create_and_connect() as sb:
        sb.attach_file_system(vol, "/data")
        holder = sb.start_process("sh", ["-c", "exec 3>/data/held; sleep 600"])
        time.sleep(0.5)
        with pytest.raises(RemoteAPIError) as e:
            sb.detach_file_system("/data")
        assert status_of(e) == 409
        assert " /data " in sb.run("cat", ["/proc/mounts"]).stdout
        sb.kill_process(holder.pid)
        time.sleep(0.5)
        sb.detach_file_system("/data")


def test_suspend_resume_keeps_the_volume_and_an_open_file(client, vol):
    with client.create_and_connect(name=f"susp-{vol}") as sb:
        sb.attach_file_system(vol, "/data")
        writer = sb.start_process(
            "python3",
            ["-c", "import time\nf=open('/data/log','a')\nwhile True:\n  f.write('x\\n'); f.flush(); time.sleep(0.1)\n"],
        )
        time.sleep(1)
        client.suspend(sb.sandbox_id)
        info = client.resume(sb.sandbox_id)
        assert [m.mount_path for m in info.file_systems] == ["/data"]
        again = client.connect(sb.sandbox_id)
        n1 = len(again.read_file("/data/log"))
        time.sleep(1)
        n2 = len(again.read_file("/data/log"))
        assert n2 > n1 > 0, "the process holding a file on the volume kept writing after resume"
        again.kill_process(writer.pid)
        time.sleep(0.5)
        again.detach_file_system("/data")


@pytest.mark.parametrize(
    "path", ["/", "/proc", "/proc/x", "/sys/x", "/dev", "/dev/shm", "relative", "/a/../etc", "/a/./b", "/a//b", "/.alcove"]
)
def test_bad_mount_paths_are_400(client, vol, path):
    with client.create_and_connect() as sb:
        with pytest.raises((RemoteAPIError, ValueError)) as e:
            sb.attach_file_system(vol, path)
        if isinstance(e.value, RemoteAPIError):
            assert e.value.status_code == 400
        assert sb.info().file_systems == []
    assert client.get_file_system(vol).attachments == []


def test_bad_volumes_and_sizes(client, server):
    for size in (0, -5, 10**9):
        r = server.api("POST", "/v1/namespaces/default/file-systems", json={"name": "sized", "size_mb": size})
        assert r.status_code == 400, r.text
    for name in ("Bad_Name", "-x", "", "a" * 64, "../x"):
        r = server.api("POST", "/v1/namespaces/default/file-systems", json={"name": name, "size_mb": 8})
        assert r.status_code == 400, (name, r.text)
    assert client.list_file_systems() == []
    assert not (server.data_dir / "volumes").exists() or not list((server.data_dir / "volumes").iterdir())
    with client.create_and_connect() as sb:
        with pytest.raises(RemoteAPIError) as e:
            sb.attach_file_system("no-such-volume", "/data")
        assert e.value.status_code == 404
        r = server.api(
            "POST",
            f"/v1/namespaces/default/sandboxes/{sb.sandbox_id}/file_systems",
            json={"file_system_id": "x", "mount_path": "/d", "snapshot_id": "s", "read_only": True},
        )
        assert r.status_code == 400
    r = server.api(
        "POST",
        "/v1/namespaces/default/sandboxes",
        json={"file_systems": [{"file_system_id": "no-such-volume", "mount_path": "/d"}]},
    )
    assert r.status_code == 404, r.text
    assert server.live_sandboxes() == []


def test_two_mounts_on_one_path_or_one_inside_another_are_409(client, server, vol):
    other = f"{vol}-b"
    client.create_file_system(other, 16)
    try:
        with client.create_and_connect() as sb:
            sb.attach_file_system(vol, "/data")
            with pytest.raises(RemoteAPIError) as e:
                sb.attach_file_system(other, "/data")
            assert e.value.status_code == 409
            # Inside it, or around it: the later mount hid the other one (or was made on it).
            with pytest.raises(RemoteAPIError) as e:
                sb.attach_file_system(other, "/data/inner")
            assert e.value.status_code == 409 and "inside one another" in str(e.value), e.value
            sb.detach_file_system("/data")
            sb.attach_file_system(other, "/srv/a/b")
            with pytest.raises(RemoteAPIError) as e:
                sb.attach_file_system(vol, "/srv/a")
            assert e.value.status_code == 409 and "inside one another" in str(e.value), e.value
            # A shared prefix of names is not nesting.
            sb.attach_file_system(vol, "/srv/a/bc")
            assert sb.read_file("/proc/self/mountinfo").count(b" /srv/a/b") == 2
            sb.detach_file_system("/srv/a/bc")
            sb.detach_file_system("/srv/a/b")
        # At create, in either order: refused, nothing made.
        live = {s["id"] for s in server.live_sandboxes()}
        for mounts in ([(other, "/a/b"), (vol, "/a")], [(vol, "/a"), (other, "/a/b")]):
            body = {"file_systems": [{"file_system_id": f, "mount_path": p} for f, p in mounts]}
            resp = server.api("POST", "/sandboxes", json=body)
            assert resp.status_code == 409 and "inside one another" in resp.json()["message"], resp.text
        assert {s["id"] for s in server.live_sandboxes()} == live
    finally:
        client.delete_file_system(other)


def test_snapshots_do_not_copy_volumes_and_memory_restores_reattach_them(client, vol):
    with client.create_and_connect(file_systems=[{"file_system_id": vol, "mount_path": "/data"}]) as src:
        src.write_file("/data/at-snapshot", b"v1")
        holder = src.start_process("sh", ["-c", "exec 3</data/at-snapshot; sleep 600"])
        time.sleep(0.5)
        memory = client.snapshot_and_wait(src.sandbox_id, "memory")
        fs_only = client.snapshot_and_wait(src.sandbox_id, "filesystem")
        # The source still holds the volume read-write: the memory restore would need it.
        with pytest.raises(RemoteAPIError) as e:
            client.create(snapshot_id=memory.snapshot_id)
        assert e.value.status_code == 409 and e.value.code == "FILE_SYSTEM_IN_USE"
        assert not isinstance(e.value, SandboxNameConflictError), "a volume held is not a taken name"
        # A filesystem snapshot restores without volumes.
        with client.create_and_connect(snapshot_id=fs_only.snapshot_id) as plain:
            assert plain.info().file_systems == []
            assert " /data " not in plain.run("cat", ["/proc/mounts"]).stdout
        src.write_file("/data/after-snapshot", b"v2")
    with client.create_and_connect(snapshot_id=memory.snapshot_id) as restored:
        assert [m.mount_path for m in restored.info().file_systems] == ["/data"]
        # The volume as it is now, not as it was: snapshots never copy it.
        assert restored.read_file("/data/after-snapshot") == b"v2"
        alive = restored.run("sh", ["-c", f"kill -0 {holder.pid} && echo alive"]).stdout
        assert "alive" in alive, "the process holding a file on the volume was restored"
        restored.kill_process(holder.pid)
        time.sleep(0.5)
        restored.detach_file_system("/data")
    client.delete_snapshot(memory.snapshot_id)
    client.delete_snapshot(fs_only.snapshot_id)
