"""Nothing a sandbox writes is usable on the host, and nothing of it is readable by
another host user: setuid binaries and device nodes made inside stay inert, and
disks, dumps, snapshots and their packed archives are root-only.

The attacker here is a host user (`nobody`) who knows a sandbox's id, plus the
sandbox's own root, which plants the files."""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

import pytest

from alcove.sandbox import SandboxClient
from framework.host import as_nobody, owned_resources, wait_for
from framework.server import AlcoveServer


@pytest.fixture(scope="module")
def server():
    # Pack idle dumps and snapshots at once, so the archives are there to attack.
    srv = AlcoveServer(extra_args=["--compress-after-secs", "0"])
    srv.start()
    yield srv
    leaked = srv.live_sandboxes()
    srv.stop()
    assert not leaked, leaked
    assert owned_resources(srv.data_dir).is_empty()
    shutil.rmtree(srv.data_dir, ignore_errors=True)


@pytest.fixture
def client(server):
    with SandboxClient(api_url=server.url) as c:
        yield c


def mount_options(path: Path) -> set[str]:
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields = line.split(" ")
        if fields[4] == str(path):
            return set(fields[5].split(","))
    raise AssertionError(f"{path} is not a mount point")


def test_setuid_binary_and_device_node_are_inert_on_the_host(server, client):
    with client.create_and_connect() as sb:
        made = sb.run(
            "sh",
            [
                "-c",
                "cp /bin/bash /tmp/rb && chmod 4755 /tmp/rb && stat -c %a /tmp/rb;"
                "mknod /tmp/kvm c 10 232 && chmod 666 /tmp/kvm; echo mknod=$?",
            ],
        )
        assert made.stdout.splitlines()[0] == "4755", made.stdout
        sdir = server.data_dir / "sandboxes" / sb.sandbox_id
        rootfs = sdir / "rootfs"
        # Every mount that shows the sandbox's files on the host is nosuid,nodev.
        # (`lower/0` … are the image's layers, one idmapped mount each.)
        for mount in ("rootfs", "layer", "upper", "lower/0"):
            opts = mount_options(sdir / mount)
            assert {"nosuid", "nodev"} <= opts, (mount, opts)
        # The setuid copy of bash does not make nobody root...
        escalate = as_nobody([str(rootfs / "tmp/rb"), "-p", "-c", "id -u"])
        assert escalate.returncode != 0, escalate
        assert escalate.stdout.strip() != "0"
        # ...and nobody cannot even reach the sandbox's files.
        assert as_nobody(["ls", str(sdir)]).returncode != 0
        assert as_nobody(["cat", str(rootfs / "etc/hostname")]).returncode != 0
        assert as_nobody(["ls", str(server.data_dir / "sandboxes")]).returncode != 0
        # A device node, if the kernel let the sandbox make one at all, cannot be
        # opened through the host's view of the sandbox.
        if "mknod=0" in made.stdout:
            assert as_nobody(["sh", "-c", f"exec 3<>{rootfs}/tmp/kvm"]).returncode != 0
            with pytest.raises(OSError):
                os.open(rootfs / "tmp/kvm", os.O_RDWR)
        else:
            assert "mknod=" in made.stdout


def test_root_in_the_sandbox_is_no_one_on_the_host(server, client):
    with client.create_and_connect() as sb:
        sb.run("sh", ["-c", "echo secret > /root/own && chmod 600 /root/own"])
        layer_copy = server.data_dir / "sandboxes" / sb.sandbox_id / "upper/upper/root/own"
        st = layer_copy.stat()
        # Seen through the sandbox's idmapped view, the file belongs to its root,
        # which is an unprivileged host id.
        assert st.st_uid >= 65536 and st.st_gid >= 65536, st
        assert stat.S_IMODE(st.st_mode) == 0o600
        assert as_nobody(["cat", str(layer_copy)]).returncode != 0


def every_file(root: Path) -> list[Path]:
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        # Mounted layers are the sandboxes' own file systems.
        dirnames[:] = [d for d in dirnames if not os.path.ismount(os.path.join(dirpath, d))]
        found += [Path(dirpath) / f for f in filenames]
    return found


def test_disks_dumps_snapshots_and_archives_are_root_only(server, client):
    secret = "s3cret-" + os.urandom(6).hex()
    with client.create_and_connect(name="packed-secrets") as sb:
        sb.run("sh", ["-c", f"echo {secret} > /root/file && chmod 600 /root/file"])
        # The secret also sits in a process's environment, so in the memory dump.
        sb.start_process("sleep", ["600"], env={"TOKEN": secret})
        snap = client.snapshot_and_wait(sb.sandbox_id)
        client.suspend("packed-secrets")
        sdir = server.data_dir / "sandboxes" / sb.sandbox_id
        snapdir = server.data_dir / "snapshots" / snap.snapshot_id
        # Packed: the archives are in place and the raw files gone (in that order).
        assert wait_for(
            lambda: (sdir / "checkpoint.tar.zst").exists()
            and (sdir / "disk.img.tar.zst").exists()
            and (snapdir / "disk.img.tar.zst").exists()
            and (snapdir / "criu.tar.zst").exists()
            and not (sdir / "disk.img").exists()
            and not (snapdir / "disk.img").exists()
            and not (snapdir / "criu").exists()
        ), (list(sdir.iterdir()), list(snapdir.iterdir()))

        data = server.data_dir
        files = every_file(data)
        assert any(f.name == "checkpoint.tar.zst" for f in files)
        for f in files:
            mode = stat.S_IMODE(f.lstat().st_mode)
            assert mode & 0o022 == 0, (f, oct(mode))
            assert not mode & (stat.S_ISUID | stat.S_ISGID), (f, oct(mode))
            if f.suffix in (".zst", ".key", ".db") or f.name == "disk.img":
                assert mode == 0o600, (f, oct(mode))
            # The attack of the finding: nobody reads it.
            assert as_nobody(["head", "-c", "1", str(f)]).returncode != 0, f
        # Directories never let other users list them.
        for dirpath, _, _ in os.walk(data):
            mode = stat.S_IMODE(os.lstat(dirpath).st_mode)
            assert mode & 0o066 == 0, (dirpath, oct(mode))
        client.resume("packed-secrets")
        again = client.connect("packed-secrets")
        assert again.run("cat", ["/root/file"]).stdout.strip() == secret
        client.delete_snapshot(snap.snapshot_id)


def test_data_dir_permissions_are_repaired_at_start():
    srv = AlcoveServer()
    data = srv.data_dir
    (data / "sandboxes").mkdir(parents=True)
    (data / "snapshots").mkdir()
    # (Not in snapshots/: what no snapshot row knows there is removed at start.)
    (data / "notes").mkdir()
    loose = data / "notes" / "leftover.bin"
    loose.write_bytes(b"x")
    os.chmod(loose, 0o4755)
    os.chmod(data / "notes", 0o755)
    stray = data / "snapshots" / "stray.bin"
    stray.write_bytes(b"x")
    os.chmod(data / "snapshots", 0o755)
    os.chmod(data, 0o755)
    srv.start()
    try:
        assert stat.S_IMODE(loose.stat().st_mode) == 0o600
        # The operator is told which entries were repaired.
        assert str(loose) in srv.log_warnings(), srv.log_warnings()
        assert stat.S_IMODE((data / "notes").stat().st_mode) == 0o700
        assert stat.S_IMODE((data / "snapshots").stat().st_mode) == 0o700
        assert not stray.exists(), "a file no snapshot knows, as a directory no snapshot knows"
        # Enterable (runc walks to sandboxes' roots from their user namespaces)
        # but not listable.
        assert stat.S_IMODE(data.stat().st_mode) == 0o711
        assert as_nobody(["ls", str(data)]).returncode != 0
    finally:
        srv.stop()
        shutil.rmtree(data, ignore_errors=True)


def test_the_shared_image_cannot_be_changed_through_a_sandbox(server, client):
    from framework.server import IMAGES_DIR

    marker = IMAGES_DIR / "debian/rootfs/usr/bin/true"
    assert marker.exists()
    with client.create_and_connect() as sb:
        # The sandbox deletes what it can of the image: whiteouts in its own layer.
        sb.run("sh", ["-c", "rm -f /usr/bin/true /usr/bin/env; echo gone > /etc/motd"])
        assert sb.run("sh", ["-c", "test -e /usr/bin/true || echo absent"]).stdout == "absent"
        # The built-in image has one layer: lower/0.
        lower = server.data_dir / "sandboxes" / sb.sandbox_id / "lower" / "0"
        # Even host root cannot write through the sandbox's view of the image.
        with pytest.raises(OSError) as err:
            (lower / "usr/bin/alcove-probe").write_bytes(b"x")
        assert err.value.errno == 30  # EROFS
    assert marker.exists(), "the image lost a file"
    assert (IMAGES_DIR / "debian/rootfs/usr/bin/env").exists()
    assert "gone" not in (IMAGES_DIR / "debian/rootfs/etc/motd").read_text()
    with client.create_and_connect() as again:
        assert again.run("true").exit_code == 0


def test_what_the_server_writes_needs_no_repair_at_the_next_start():
    """Every file the server, runc and CRIU write in the data directory is made root-only as it
    is written: a restart after creates, dumps and restores finds nothing to repair (a warning at
    every start would hide one that means something)."""
    srv = AlcoveServer()
    srv.start()
    try:
        with SandboxClient(api_url=srv.url) as client:
            client.create_file_system("tidy-vol", 64)
            # Read-only: the snapshot's restore below mounts it too.
            volume = [{"file_system_id": "tidy-vol", "mount_path": "/mnt/v", "read_only": True}]
            # Suspended across the restart: its dump and the mark that it is complete stay.
            asleep = client.create(name="asleep").sandbox_id
            client.suspend("asleep")
            with client.create_and_connect(name="tidy", file_systems=volume) as sb:
                sb.run("sh", ["-c", "echo kept > /root/file"])
                snap = client.snapshot_and_wait(sb.sandbox_id)
                client.suspend("tidy")
                client.resume("tidy")
                with client.create_and_connect(snapshot_id=snap.snapshot_id) as restored:
                    assert restored.run("cat", ["/root/file"]).stdout.strip() == "kept"
                    srv.stop()
                    logged = srv.log_path.stat().st_size
                    srv.start()
                    with open(srv.log_path, "rb") as log:
                        log.seek(logged)
                        restart = log.read().decode(errors="replace")
                    assert "root-only" not in restart, restart
                    assert restored.run("cat", ["/root/file"]).stdout.strip() == "kept"
                    assert sb.run("sh", ["-c", "mountpoint -q /mnt/v && echo mounted"]).stdout.strip() == "mounted"
            client.delete_snapshot(snap.snapshot_id)
            client.delete(asleep)
            client.delete_file_system("tidy-vol")
        assert not srv.live_sandboxes()
    finally:
        srv.stop()
        assert owned_resources(srv.data_dir).is_empty()
        shutil.rmtree(srv.data_dir, ignore_errors=True)
