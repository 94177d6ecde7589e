"""What a server instance owns on the host, to prove that nothing is left behind.

Every host-wide name carries the instance tag: the first four hex digits of the
SHA-256 of the data directory's canonical path (see `alcove_runtime::node::instance_tag`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path


def instance_tag(data_dir: Path) -> str:
    return hashlib.sha256(str(data_dir.resolve()).encode()).hexdigest()[:4]


@dataclass
class HostResources:
    netns: list[str] = field(default_factory=list)
    veths: list[str] = field(default_factory=list)
    cgroups: list[str] = field(default_factory=list)
    mounts: list[str] = field(default_factory=list)
    sandbox_dirs: list[str] = field(default_factory=list)
    containers: list[str] = field(default_factory=list)
    uid_ranges: list[str] = field(default_factory=list)
    # Files of deleted sandboxes the server has not finished removing.
    trash: list[str] = field(default_factory=list)
    # Loop devices still backed by a sandbox's disk image (here or in the trash).
    loops: list[str] = field(default_factory=list)

    def is_empty(self) -> bool:
        return not any(
            (
                self.netns,
                self.veths,
                self.cgroups,
                self.mounts,
                self.sandbox_dirs,
                self.containers,
                self.uid_ranges,
                self.trash,
                self.loops,
            )
        )


def _listdir(path: str | Path) -> list[str]:
    try:
        return sorted(os.listdir(path))
    except FileNotFoundError:
        return []


def mounts_under(data_dir: Path) -> list[str]:
    """Every mount point under `data_dir`: sandboxes' mounts, and the server's own tmpfs of
    agent builds (`agent-run`), which a server leaves mounted only while sandboxes run."""
    root = str(data_dir.resolve())
    found = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            mount_point = line.split(" ")[4].replace("\\040", " ")
            if mount_point.startswith(root + "/"):
                found.append(mount_point)
    return found


def owned_resources(data_dir: Path) -> HostResources:
    """Everything on the host that belongs to the server using `data_dir`."""
    tag = instance_tag(data_dir)
    res = HostResources()
    res.netns = [n for n in _listdir("/var/run/netns") if n.startswith(f"alcove-{tag}-")]
    res.veths = [n for n in _listdir("/sys/class/net") if n.startswith(f"av{tag}")]
    for controller in _listdir("/sys/fs/cgroup"):
        parent = Path("/sys/fs/cgroup") / controller / f"alcove-{tag}"
        res.cgroups += [f"{controller}/{c}" for c in _listdir(parent) if (parent / c).is_dir()]
    sandboxes = str((data_dir / "sandboxes").resolve())
    res.mounts = [m for m in mounts_under(data_dir) if m.startswith(sandboxes + "/")]
    res.sandbox_dirs = _listdir(data_dir / "sandboxes")
    res.containers = _listdir(data_dir / "runc")
    res.uid_ranges = held_uid_ranges(tag)
    res.trash = _listdir(data_dir / "trash")
    res.loops = sandbox_loops(data_dir)
    return res


def sandbox_loops(data_dir: Path) -> list[str]:
    """Loop devices whose backing file is a sandbox's disk image under `data_dir` (in its
    sandbox's directory or the trash, deleted or not), as `loopN: path`."""
    roots = tuple(str((data_dir / d).resolve()) + "/" for d in ("sandboxes", "trash"))
    found = []
    for name in _listdir("/sys/block"):
        try:
            backing = (Path("/sys/block") / name / "loop" / "backing_file").read_text().strip()
        except OSError:
            continue  # not a loop device, or one with no file
        if backing.startswith(roots):
            found.append(f"{name}: {backing}")
    return found


def firewall_tables(data_dir: Path) -> list[str]:
    """The firewall (nftables) tables of the server using `data_dir`. Not part of
    `owned_resources`: a running server holds its table even with no sandbox; a stopped one
    must have removed it (`retire` checks)."""
    tag = instance_tag(data_dir)
    tables = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True).stdout.split()
    return [t for t in tables if t == f"alcove_{tag}"]


IDMAP_DIR = Path("/run/alcove/idmap")


def held_uid_ranges(tag: str) -> list[str]:
    """The uid ranges the instance tagged `tag` holds (one file per range, naming its owner)."""
    held = []
    for name in _listdir(IDMAP_DIR):
        try:
            owner = (IDMAP_DIR / name).read_text().split()
        except OSError:
            continue
        if owner and owner[0] == tag:
            held.append(f"{name}: {' '.join(owner)}")
    return held


def firewall_table_exists(data_dir: Path) -> bool:

    tag = instance_tag(data_dir)
    out = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True, check=False)
    return f"alcove_{tag}" in out.stdout


def agent_pid(data_dir: Path, sandbox_id: str) -> int:
    """Host pid of a running sandbox's agent (its container's init), from runc."""

    out = subprocess.run(
        ["runc", "--root", str(data_dir / "runc"), "state", sandbox_id],
        capture_output=True, text=True, check=True,
    ).stdout
    return int(json.loads(out)["pid"])


def host_ids(pid: int) -> tuple[int, int]:
    """(effective uid, effective gid) of a host process, as the host sees them."""
    uid = gid = -1
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Uid:"):
            uid = int(line.split()[2])
        elif line.startswith("Gid:"):
            gid = int(line.split()[2])
    return uid, gid


def as_nobody(argv: list[str], timeout: float = 30) -> subprocess.CompletedProcess[str]:
    """Runs `argv` on the host as user nobody (uid/gid 65534, no groups).

    The program is found and executed by a shell already running as nobody:
    setpriv itself resolves its argument before it drops privileges."""

    return subprocess.run(
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--",
         "/bin/sh", "-c", 'exec "$@"', "sh", *argv],
        capture_output=True, text=True, timeout=timeout, check=False,
    )


def wait_until(predicate, what: str, timeout: float = 30.0) -> None:
    """Polls `predicate` until it holds; fails the test naming `what` after `timeout` seconds."""
    if not wait_for(predicate, timeout):
        raise AssertionError(f"{what}: not within {timeout} s")


def settled_resources(data_dir: Path, timeout: float = 3.0) -> HostResources:
    """`owned_resources` once removals under way are done, for checks on a running server: a
    removed sandbox's host veth goes with its network namespace, which the kernel removes some
    tens of milliseconds after the removal has answered (the server deletes one still there
    after a second). Looks until nothing is left or `timeout` passes; the last look."""
    deadline = time.monotonic() + timeout
    while True:
        res = owned_resources(data_dir)
        if res.is_empty() or time.monotonic() > deadline:
            return res
        time.sleep(0.05)


def wait_for(predicate, timeout: float = 60.0) -> bool:
    """Polls `predicate` every 0.2 s until it holds (True) or `timeout` seconds pass (False)."""

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return False


@contextlib.contextmanager
def small_ext4(size_mb: int, prefix: str):
    """An ext4 file system of `size_mb` on a loop device, with a `data` directory for a
    server's data, unmounted and removed after. Under /tmp itself (mode 0711): sandboxes'
    user namespaces must be able to walk to it."""
    import shutil
    import tempfile

    top = Path(tempfile.mkdtemp(prefix=prefix))
    os.chmod(top, 0o711)
    image, mnt = top / "fs.img", top / "mnt"
    mnt.mkdir()
    with open(image, "wb") as f:
        f.truncate(size_mb * 2**20)
    subprocess.run(["mkfs.ext4", "-q", "-F", "-m", "0", str(image)], check=True)
    subprocess.run(["mount", "-o", "loop", str(image), str(mnt)], check=True)
    try:
        os.chmod(mnt, 0o711)
        (mnt / "data").mkdir()
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)
        shutil.rmtree(top, ignore_errors=True)
