"""Kernel limits a sandbox could exhaust for others: per-user counts (inotify,
POSIX message queues), the host's open-file table and pids, and the disk under
the data directory. One sandbox hits its own ceiling; a second sandbox and the
host (root and an unprivileged user) carry on."""

from __future__ import annotations

import ctypes
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from alcove.sandbox import SandboxClient
from framework.agent import wait_for_line
from framework.host import as_nobody, settled_resources, small_ext4
from framework.server import AlcoveServer

INOTIFY_HOG = r"""
import ctypes, os, sys, time
libc = ctypes.CDLL(None, use_errno=True)
fds = []
while True:
    fd = libc.inotify_init1(0)
    if fd < 0:
        break
    fds.append(fd)
err = ctypes.get_errno()
uids = 0
# More instances under other uids of the sandbox, each capped on its own.
for uid in (1000, 1001, 1002):
    r, w = os.pipe()
    if os.fork() == 0:
        os.setuid(uid)
        n = 0
        while libc.inotify_init1(0) >= 0:
            n += 1
        os.write(w, str(n).encode())
        time.sleep(600)
    uids += int(os.read(r, 32) or b"0")
print(len(fds), err, uids, flush=True)
time.sleep(600)
"""

INOTIFY_ONE = "import ctypes; l=ctypes.CDLL(None, use_errno=True); fd=l.inotify_init1(0); print(fd, ctypes.get_errno())"


def host_inotify_ok() -> bool:
    libc = ctypes.CDLL(None, use_errno=True)
    fd = libc.inotify_init1(0)
    if fd >= 0:
        os.close(fd)
    return fd >= 0


def test_inotify_exhaustion_stays_in_the_sandbox(client):
    with client.create_and_connect() as hog, client.create_and_connect() as other:
        proc = hog.start_process("python3", ["-c", INOTIFY_HOG])
        out = wait_for_line(hog, proc.pid)
        count, errno, more = (int(x) for x in out.split())
        # The hog ran into its own per-user ceiling (EMFILE), not the host's.
        assert errno == 24, out
        assert 0 < count <= 1024, out
        assert more > 0, out
        # Everyone else still gets inotify instances.
        fd, err = other.run("python3", ["-c", INOTIFY_ONE]).stdout.split()
        assert int(fd) >= 0, (fd, err)
        assert host_inotify_ok()
        nobody = as_nobody(["python3", "-c", INOTIFY_ONE])
        assert int(nobody.stdout.split()[0]) >= 0, nobody


MQ_OPEN = (
    "import ctypes; l=ctypes.CDLL('librt.so.1', use_errno=True);"
    "q=l.mq_open(b'/alcove-test', 0o102, 0o600, None); print(q, ctypes.get_errno())"
)


def test_posix_message_queues_cannot_drain_the_host(client):
    with client.create_and_connect() as sb:
        q, errno = sb.run("python3", ["-c", MQ_OPEN]).stdout.split()
        # ENOSYS: the kernel would charge the queue to host root (see docs/security.md).
        assert (int(q), int(errno)) == (-1, 38)
        # System V message queues are per sandbox and stay available.
        sysv = sb.run("python3", ["-c", "import ctypes; print(ctypes.CDLL(None).msgget(0, 0o1600))"])
        assert int(sysv.stdout) >= 0, sysv
    host = subprocess.run(["python3", "-c", MQ_OPEN], capture_output=True, text=True)
    q, _ = host.stdout.split()
    assert int(q) >= 0, host
    ctypes.CDLL("librt.so.1").mq_unlink(b"/alcove-test")


FILE_HOG = r"""
import os, sys
n = 0
kids = []
for _ in range(int(sys.argv[1])):
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        opened = 0
        try:
            while True:
                os.open("/dev/null", os.O_RDONLY)
                opened += 1
        except OSError as e:
            os.write(w, f"{opened} {e.errno}\n".encode())
        import time; time.sleep(600)
    os.close(w)
    kids.append(r)
errors = set()
for r in kids:
    got = os.read(r, 64).split()
    if got:
        n += int(got[0]); errors.add(int(got[1]))
print(n, sorted(errors), flush=True)
"""


def test_open_files_are_bounded_per_sandbox(client):
    assert int(Path("/proc/sys/fs/file-max").read_text()) >= 2**62, "file-max is raised at start"
    with client.create_and_connect(memory_mb=1024) as hog, client.create_and_connect() as other:
        limit = int(hog.run("sh", ["-c", "ulimit -n"]).stdout)
        hard = int(hog.run("sh", ["-c", "ulimit -Hn"]).stdout)
        assert limit == hard, "every process starts at the hard limit"
        result = hog.run("python3", ["-c", FILE_HOG, "20"], timeout_secs=120)
        opened, errors = result.stdout.split(" ", 1)
        # Each process stops at its RLIMIT_NOFILE (EMFILE), never the host's table (ENFILE).
        assert "23" not in errors, result.stdout
        assert int(opened) > 0
        assert other.run("true").exit_code == 0
        assert as_nobody(["cat", "/etc/hostname"]).returncode == 0


def test_host_pid_max_is_raised():
    assert int(Path("/proc/sys/kernel/pid_max").read_text()) >= 4_194_304


def test_pids_limits_are_admitted_against_pid_max():
    pid_max = int(Path("/proc/sys/kernel/pid_max").read_text())
    # Room for exactly one sandbox at this pids limit.
    per = (pid_max - 65536) // 2 + 1
    srv = AlcoveServer(extra_args=["--pids-limit", str(per)])
    srv.start()
    try:
        with SandboxClient(api_url=srv.url) as c:
            with c.create_and_connect() as first:
                assert first.run("true").exit_code == 0
                resp = srv.api("POST", "/v1/namespaces/default/sandboxes", json={})
                assert resp.status_code == 507, resp.text
                assert "pid" in resp.json()["message"], resp.text
        assert settled_resources(srv.data_dir).is_empty()
    finally:
        srv.stop()
        shutil.rmtree(srv.data_dir, ignore_errors=True)


def test_disk_is_admitted_against_free_space():
    srv = AlcoveServer(extra_args=["--disk-overcommit", "0.01"])
    srv.start()
    try:
        free_mb = shutil.disk_usage(srv.data_dir).free // 2**20
        want = min(1_048_576, int(free_mb * 0.5))
        resp = srv.api(
            "POST",
            "/v1/namespaces/default/sandboxes",
            json={"resources": {"cpus": 1, "memory_mb": 1024, "disk_mb": want}},
        )
        assert resp.status_code == 507, resp.text
        assert "disk" in resp.json()["message"], resp.text
        assert srv.live_sandboxes() == []
        assert settled_resources(srv.data_dir).is_empty()
    finally:
        srv.stop()
        shutil.rmtree(srv.data_dir, ignore_errors=True)


@pytest.fixture
def small_disk():
    """A 1.5 GiB ext4 file system for a server's data directory, unmounted after."""
    with small_ext4(1536, "alcove-fulldisk-") as mnt:
        yield mnt


def fill(path: Path) -> Path:
    """Fills the file system holding `path` (returns the filler to delete)."""
    filler = path / "filler"
    subprocess.run(["fallocate", "-l", "100G", str(filler)], check=False)
    free = shutil.disk_usage(path).free
    if free > 0:
        subprocess.run(["fallocate", "-l", str(free), str(path / "filler2")], check=False)
    return filler


def test_full_host_disk_never_corrupts_store_or_dumps(small_disk):
    srv = AlcoveServer(data_dir=small_disk / "data", extra_args=["--disk-overcommit", "100"])
    srv.start()
    try:
        with SandboxClient(api_url=srv.url) as c:
            sb = c.create_and_connect(name="full-disk", disk_mb=512)
            sb.start_process("python3", ["-c", "b = bytearray(300 * 2**20); import time; time.sleep(600)"])
            sb.write_file("/root/keep.txt", b"kept")
            fill(small_disk)
            # The dump cannot be written: the suspend fails and the sandbox runs on.
            with pytest.raises(Exception):
                c.suspend("full-disk")
            assert c.get("full-disk").status == "running"
            assert sb.run("cat", ["/root/keep.txt"]).stdout == "kept"
            for f in ("filler", "filler2"):
                (small_disk / f).unlink(missing_ok=True)
            c.suspend("full-disk")
            c.resume("full-disk")
            assert c.connect("full-disk").run("cat", ["/root/keep.txt"]).stdout == "kept"
        srv.stop()
        # The store survived: a restart finds the sandbox running.
        srv.start()
        with SandboxClient(api_url=srv.url) as c:
            assert c.get("full-disk").status == "running"
            c.delete("full-disk")
    finally:
        srv.stop()
        for f in ("filler", "filler2"):
            (small_disk / f).unlink(missing_ok=True)
