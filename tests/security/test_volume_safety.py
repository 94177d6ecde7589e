"""A sandbox cannot turn a volume against the host, another sandbox, or itself: symlinks it
plants on the mount path are never followed, setuid binaries and device nodes on a volume do
nothing, another sandbox (or namespace) cannot reach a volume it was not given, and the image
and its host mount are root-only."""

from __future__ import annotations

import os
import uuid

import pytest

from alcove.sandbox import RemoteAPIError
from framework.host import as_nobody


@pytest.fixture
def vol(client):
    name = f"sec-{uuid.uuid4().hex[:8]}"
    client.create_file_system(name, 32)
    yield name
    client.delete_file_system(name)


def mounted_at(sb, path: str) -> bool:
    return any(line.split()[1] == path for line in sb.run("cat", ["/proc/mounts"]).stdout.splitlines())


@pytest.mark.parametrize("target", ["/proc", "/etc", "/root"])
def test_a_symlink_at_the_mount_path_is_refused_not_followed(client, vol, target):
    with client.create_and_connect() as sb:
        sb.run("sh", ["-c", f"mkdir -p /mnt && ln -s {target} /mnt/trap"])
        # The device and inode of the target: a mount over it would change them (a count of
        # its entries would not do: /proc's change with every process).
        before = sb.run("stat", ["-c", "%d:%i", target]).stdout
        mounts_before = sb.run("cat", ["/proc/mounts"]).stdout
        with pytest.raises(RemoteAPIError) as e:
            sb.attach_file_system(vol, "/mnt/trap")
        assert e.value.status_code == 409
        assert "symbolic link" in e.value.message
        assert sb.run("cat", ["/proc/mounts"]).stdout == mounts_before, "nothing was mounted anywhere"
        assert sb.run("stat", ["-c", "%d:%i", target]).stdout == before
        assert sb.info().file_systems == []
    assert client.get_file_system(vol).attachments == []


def test_a_symlinked_parent_directory_is_refused(client, vol):
    with client.create_and_connect() as sb:
        sb.run("sh", ["-c", "ln -s /etc /srvlink"])
        with pytest.raises(RemoteAPIError) as e:
            sb.attach_file_system(vol, "/srvlink/vol")
        assert e.value.status_code == 409
        assert sb.run("sh", ["-c", "test -e /etc/vol && echo made || echo absent"]).stdout.strip() == "absent"


def test_a_file_at_the_mount_path_is_refused(client, vol):
    with client.create_and_connect() as sb:
        sb.write_file("/plainfile", b"x")
        with pytest.raises(RemoteAPIError) as e:
            sb.attach_file_system(vol, "/plainfile")
        assert e.value.status_code == 409
        assert sb.read_file("/plainfile") == b"x"


def test_setuid_binaries_and_device_nodes_on_a_volume_do_nothing(client, vol, server):
    with client.create_and_connect() as sb:
        sb.attach_file_system(vol, "/data")
        sb.run("sh", ["-c", "cp /usr/bin/id /data/suid-id && chmod 4755 /data/suid-id"])
        mode = sb.run("stat", ["-c", "%a", "/data/suid-id"]).stdout.strip()
        assert mode == "4755", "the bit is stored"
        uid = sb.run(
            "python3",
            ["-c", "import os; os.setgid(65534); os.setuid(65534); os.execv('/data/suid-id', ['id', '-u'])"],
        ).stdout.strip()
        assert uid == "65534", "nosuid: the setuid bit gives nothing"
        made = sb.run("sh", ["-c", "mknod /data/mem c 1 1 2>&1; echo rc=$?"]).stdout
        if "rc=0" in made:
            read = sb.run("sh", ["-c", "head -c1 /data/mem >/dev/null 2>&1; echo rc=$?"]).stdout
            assert "rc=0" not in read, "nodev: a device node on a volume cannot be opened"
        # The host's own mount of the volume is nosuid,nodev too, and root-only.
        root = (server.data_dir / "volumes").resolve()
        with open("/proc/self/mountinfo") as f:
            host = [line for line in f if line.split(" ")[4].startswith(str(root) + "/")]
        assert host and all("nosuid" in line and "nodev" in line for line in host)
        for key in os.listdir(root):
            assert os.stat(root / key).st_mode & 0o077 == 0
            assert os.stat(root / key / "disk.img").st_mode & 0o077 == 0
            denied = as_nobody(["cat", str(root / key / "disk.img")])
            assert denied.returncode != 0
        sb.detach_file_system("/data")


def test_another_sandbox_or_namespace_cannot_reach_a_volume(client, vol, server):
    with client.create_and_connect() as a, client.create_and_connect() as b:
        a.attach_file_system(vol, "/data")
        token = uuid.uuid4().hex
        a.write_file("/data/secret", token.encode())
        assert "/data" not in b.run("cat", ["/proc/mounts"]).stdout
        with pytest.raises(RemoteAPIError) as e:
            b.attach_file_system(vol, "/data")
        assert e.value.status_code == 409
        found = b.run("sh", ["-c", f"grep -rl {token} / --exclude-dir=proc --exclude-dir=sys 2>/dev/null | head -1"])
        assert found.stdout.strip() == ""
        r = server.api(
            "POST",
            f"/v1/namespaces/other/sandboxes/{b.sandbox_id}/file_systems",
            json={"file_system_id": vol, "mount_path": "/x"},
        )
        assert r.status_code == 404
        r = server.api("GET", f"/v1/namespaces/other/file-systems/{vol}")
        assert r.status_code == 404
        a.detach_file_system("/data")


def test_detach_never_unmounts_anything_but_the_volume(client, vol):
    with client.create_and_connect() as sb:
        sb.attach_file_system(vol, "/data")
        # The sandbox moves the mount's parent away and puts a directory with another mount
        # point's name in its place; the detach must still find the volume or refuse.
        out = sb.run("sh", ["-c", "mv /data /data-moved 2>&1; echo rc=$?"]).stdout
        assert "rc=0" not in out, "a mount point cannot be renamed"
        sb.detach_file_system("/data")
        assert mounted_at(sb, "/etc/hosts") and mounted_at(sb, "/proc")


def test_a_volume_carried_off_by_renaming_its_parent_is_detached_where_it_went(client, vol):
    """Renaming a directory above a mount point carries the mount along. A detach that looked
    only at the attach path would report success, the server would release the volume, and
    the next sandbox would mount it again: two ext4 instances writing one image."""
    with client.create_and_connect() as a, client.create_and_connect() as b:
        a.attach_file_system(vol, "/a/b")
        a.write_file("/a/b/from-a", b"kept")
        out = a.run("sh", ["-c", "mv /a /x && ln -s /etc /a && echo moved"]).stdout
        assert "moved" in out
        assert mounted_at(a, "/x/b")
        a.detach_file_system("/a/b")
        assert not mounted_at(a, "/x/b"), "the volume is unmounted where the rename took it"
        assert a.run("sh", ["-c", "echo late > /x/b/late 2>&1; ls /x/b"]).stdout.split() == ["late"]
        # Now it is free: one mount, the data as the first sandbox left it.
        b.attach_file_system(vol, "/data")
        assert b.read_file("/data/from-a") == b"kept"
        assert b.run("sh", ["-c", "ls /data"]).stdout.split() == ["from-a", "lost+found"]
        b.detach_file_system("/data")
    assert client.get_file_system(vol).attachments == []


@pytest.mark.parametrize("when", ["attached live", "given at create"])
def test_a_suspend_refuses_a_volume_moved_away_and_takes_it_back_in_place(client, vol, when):
    """A dump keeps a bind mount only where it was made: a volume that a rename carried off
    makes the suspend a 409 that says so (not a CRIU failure), the sandbox runs on, and once
    the directory is renamed back it suspends and resumes with the volume in place."""
    mounts = [{"file_system_id": vol, "mount_path": "/a/b"}] if when == "given at create" else None
    with client.create_and_connect(name=f"moved-{uuid.uuid4().hex[:6]}", file_systems=mounts) as sb:
        if mounts is None:
            sb.attach_file_system(vol, "/a/b")
        sb.write_file("/a/b/kept", b"data")
        assert "moved" in sb.run("sh", ["-c", "mv /a /x && echo moved"]).stdout
        with pytest.raises(RemoteAPIError) as e:
            client.suspend(sb.sandbox_id)
        assert e.value.status_code == 409, e.value
        assert "/x/b" in e.value.message and "rename it back" in e.value.message
        assert client.get(sb.sandbox_id).status == "running"
        assert sb.read_file("/x/b/kept") == b"data"
        sb.run("sh", ["-c", "mv /x /a"])
        client.suspend(sb.sandbox_id)
        assert client.get(sb.sandbox_id).status == "suspended"
        client.resume(sb.sandbox_id)
        assert sb.read_file("/a/b/kept") == b"data"
        assert mounted_at(sb, "/a/b")
        if mounts is None:
            sb.detach_file_system("/a/b")
