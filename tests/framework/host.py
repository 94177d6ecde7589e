"""What a server instance owns on the host, to prove that nothing is left behind.

Every host-wide name carries the instance tag: the first four hex digits of the
SHA-256 of the data directory's canonical path (see `alcove_runtime::node::instance_tag`).
"""

from __future__ import annotations

import hashlib
import os
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

    def is_empty(self) -> bool:
        return not any(
            (self.netns, self.veths, self.cgroups, self.mounts, self.sandbox_dirs, self.containers)
        )


def _listdir(path: str | Path) -> list[str]:
    try:
        return sorted(os.listdir(path))
    except FileNotFoundError:
        return []


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
    with open("/proc/self/mountinfo") as f:
        for line in f:
            mount_point = line.split(" ")[4].replace("\\040", " ")
            if mount_point.startswith(sandboxes + "/"):
                res.mounts.append(mount_point)
    res.sandbox_dirs = _listdir(data_dir / "sandboxes")
    res.containers = _listdir(data_dir / "runc")
    return res


def firewall_table_exists(data_dir: Path) -> bool:
    import subprocess

    tag = instance_tag(data_dir)
    out = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True, check=False)
    return f"alcove_{tag}" in out.stdout
