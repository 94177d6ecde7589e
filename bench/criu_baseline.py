"""Raw CRIU baselines for the checkpoint benchmarks, measured in the same run:

* `criu dump` / `criu restore` of a bare host process holding the same memory;
* `runc checkpoint` / `runc restore` of a plain runc container (pid, mount, ipc,
  uts and network namespaces) running the same program on the same image — the
  equivalent process tree without anything of Alcove around it.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

CRIU = "/usr/local/sbin/criu"


def holder_program(mb: int) -> str:
    return (
        "import time\n"
        f"b = bytearray({mb} * 1024 * 1024)\n"
        "b[::4096] = b'x' * len(b[::4096])\n"
        "open('/dev/null', 'w')\n"
        "while True:\n"
        "    time.sleep(0.05)\n"
    )


def _wait_rss(pid: int, mb: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:") and int(line.split()[1]) >= mb * 1024:
                    return
        except FileNotFoundError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"process {pid} never reached {mb} MB")


def raw_criu(mb: int, iterations: int) -> tuple[list[float], list[float]]:
    """Dump and restore a bare host process; returns (dump s, restore s)."""
    dumps, restores = [], []
    work = Path(tempfile.mkdtemp(prefix="alcove-bench-criu-"))
    proc = subprocess.Popen(
        ["python3", "-c", holder_program(mb)],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    pid = proc.pid
    try:
        _wait_rss(pid, mb)
        for i in range(iterations):
            images = work / f"img{i}"
            images.mkdir()
            start = time.perf_counter()
            subprocess.run([CRIU, "dump", "-t", str(pid), "-D", str(images), "--shell-job",
                            "-o", "dump.log"], check=True)
            dumps.append(time.perf_counter() - start)
            proc.wait()  # reap the dumped (killed) original once
            start = time.perf_counter()
            subprocess.run([CRIU, "restore", "-D", str(images), "--shell-job", "-d",
                            "-o", "restore.log"], check=True)
            restores.append(time.perf_counter() - start)
            # The restored process is not our child; follow it by pid.
            proc = _Adopted(pid)
            shutil.rmtree(images)
    finally:
        subprocess.run(["kill", "-9", str(pid)], stderr=subprocess.DEVNULL)
        shutil.rmtree(work, ignore_errors=True)
    return dumps, restores


class _Adopted:
    """A restored process that is not our child: `wait` polls until it is gone."""

    def __init__(self, pid: int):
        self.pid = pid

    def wait(self, timeout: float = 10.0) -> None:
        # Its pid must be free again before the next restore can take it.
        deadline = time.monotonic() + timeout
        while Path(f"/proc/{self.pid}").exists() and time.monotonic() < deadline:
            time.sleep(0.001)


def raw_runc(rootfs: Path, mb: int, iterations: int) -> tuple[list[float], list[float]]:
    """Checkpoint and restore a plain runc container; returns (dump s, restore s)."""
    dumps, restores = [], []
    work = Path(tempfile.mkdtemp(prefix="alcove-bench-runc-ck-"))
    bundle = work / "bundle"
    bundle.mkdir()
    subprocess.run(["runc", "spec"], cwd=bundle, check=True)
    cfg = json.loads((bundle / "config.json").read_text())
    # The built-in image's rootfs is a symlink into the image store; runc wants the real path.
    cfg["root"] = {"path": str(rootfs.resolve()), "readonly": True}
    cfg["process"]["terminal"] = False
    cfg["process"]["args"] = ["python3", "-c", holder_program(mb)]
    (work / "criu.conf").write_text("network-lock skip\ntcp-close\n")
    cfg["annotations"] = {"org.criu.config": str(work / "criu.conf")}
    (bundle / "config.json").write_text(json.dumps(cfg))
    root = work / "state"
    cid = f"bench-{uuid.uuid4().hex[:10]}"
    runc = ["runc", "--root", str(root)]
    null = subprocess.DEVNULL
    try:
        subprocess.run(runc + ["run", "-d", "--bundle", str(bundle), cid],
                       check=True, stdin=null, stdout=null, stderr=null)
        state = json.loads(subprocess.run(runc + ["state", cid], capture_output=True, text=True, check=True).stdout)
        _wait_rss(state["pid"], mb)
        for i in range(iterations):
            images = work / f"img{i}"
            start = time.perf_counter()
            subprocess.run(runc + ["--criu", CRIU, "checkpoint", "--image-path", str(images),
                                   "--work-path", str(work / f"w{i}"), cid], check=True)
            dumps.append(time.perf_counter() - start)
            start = time.perf_counter()
            subprocess.run(runc + ["--criu", CRIU, "restore", "-d", "--image-path", str(images),
                                   "--work-path", str(work / f"w{i}"), "--bundle", str(bundle), cid],
                           check=True, stdin=null, stdout=null, stderr=null)
            restores.append(time.perf_counter() - start)
            shutil.rmtree(images)
    finally:
        subprocess.run(runc + ["delete", "-f", cid], stderr=null)
        shutil.rmtree(work, ignore_errors=True)
    return dumps, restores
