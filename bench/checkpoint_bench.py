"""Suspend/resume and snapshot/restore of a sandbox holding 200 MB, beside raw
CRIU (bare process) and raw runc+CRIU (equivalent container) in the same run.

Usage (as root, after `scripts/setup.sh`):

    .venv/bin/python bench/checkpoint_bench.py [--iterations 10] [--mb 200]

Each operation is timed from the HTTP request to the answer that says it is done
(suspend/resume with `wait_ms`; a snapshot until GET says `completed`; a restore
is a blocking create from the snapshot until it is running). Snapshots are also timed
as a user waits for them: `snapshot_and_wait` of Alcove's Python SDK and, if installed,
of the official `tensorlake` SDK.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import REPO, AlcoveServer, report, summarize  # noqa: E402
from criu_baseline import holder_program, raw_criu, raw_runc  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--iterations", type=int, default=10)
    parser.add_argument("--mb", type=int, default=200)
    args = parser.parse_args()

    from alcove.sandbox import SandboxClient

    images = Path(os.environ.get("ALCOVE_IMAGES_DIR", "/var/lib/alcove/images"))
    server = AlcoveServer()
    server.start()
    try:
        client = SandboxClient(api_url=server.url)
        sandbox = client.create_and_connect(name="bench-ck", memory_mb=2048)
        proc = sandbox.start_process("python3", ["-c", holder_program(args.mb)])
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            rss = sandbox.run("sh", ["-c", f"grep VmRSS /proc/{proc.pid}/status | awk '{{print $2}}'"]).stdout
            if rss and int(rss) >= args.mb * 1024:
                break
            time.sleep(0.2)

        suspend, resume, snapshot, restore = [], [], [], []
        for _ in range(args.iterations):
            start = time.perf_counter()
            resp = server.api("POST", "/sandboxes/bench-ck/suspend?wait_ms=60000")
            suspend.append(time.perf_counter() - start)
            assert resp.status_code == 200, resp.text
            start = time.perf_counter()
            resp = server.api("POST", "/sandboxes/bench-ck/resume?wait_ms=60000")
            resume.append(time.perf_counter() - start)
            assert resp.status_code == 200, resp.text

        for _ in range(args.iterations):
            start = time.perf_counter()
            sid = server.api("POST", "/sandboxes/bench-ck/snapshot").json()["snapshot_id"]
            while server.api("GET", f"/snapshots/{sid}").json()["status"] != "completed":
                time.sleep(0.005)
            snapshot.append(time.perf_counter() - start)
            start = time.perf_counter()
            created = server.api("POST", "/sandboxes", json={"snapshot_id": sid}).json()
            restore.append(time.perf_counter() - start)
            assert created["status"] == "running", created
            server.api("DELETE", f"/sandboxes/{created['sandbox_id']}")
            server.api("DELETE", f"/snapshots/{sid}")
        # What a user waits for through an SDK, which polls once a second where the server
        # does not wait for the end itself (the official SDK's snapshot_and_wait).
        sdk_snapshot, official_snapshot = [], []
        official = official_client(server.url)
        for _ in range(args.iterations):
            start = time.perf_counter()
            snap = client.snapshot_and_wait("bench-ck")
            sdk_snapshot.append(time.perf_counter() - start)
            client.delete_snapshot(snap.snapshot_id)
            if official is not None:
                start = time.perf_counter()
                snap = official.snapshot_and_wait(sandbox.sandbox_id)
                official_snapshot.append(time.perf_counter() - start)
                client.delete_snapshot(snap.snapshot_id)
        client.delete("bench-ck")
        client.close()
    finally:
        server.stop()
        shutil.rmtree(server.data_dir, ignore_errors=True)

    cold = cold_resume(args.mb, max(3, args.iterations // 3))
    criu_dump, criu_restore = raw_criu(args.mb, args.iterations)
    runc_dump, runc_restore = raw_runc(images / "debian" / "rootfs", args.mb, args.iterations)
    rows = [
        summarize(f"suspend ({args.mb} MB)", suspend),
        summarize("baseline: raw `runc checkpoint`", runc_dump),
        summarize("baseline: raw `criu dump` (bare process)", criu_dump),
        summarize(f"resume ({args.mb} MB)", resume),
        summarize("baseline: raw `runc restore`", runc_restore),
        summarize("baseline: raw `criu restore` (bare process)", criu_restore),
        summarize(f"resume from packed (zstd) dump ({args.mb} MB)", cold),
        summarize("memory snapshot (sandbox keeps running)", snapshot),
        summarize("memory snapshot, `snapshot_and_wait` of Alcove's Python SDK", sdk_snapshot),
        *([summarize("memory snapshot, `snapshot_and_wait` of the official SDK", official_snapshot)]
          if official_snapshot else []),
        summarize("restore snapshot into a new sandbox", restore),
    ]
    report(f"Checkpoint/restore, {args.mb} MB", rows, REPO / "bench/results/checkpoint.json")


def official_client(url: str):
    """The official `tensorlake` SDK's client, if it is installed."""
    try:
        import tensorlake.sandbox as tl
    except ImportError:
        return None
    return tl.SandboxClient.for_localhost(api_url=url)


def cold_resume(mb: int, iterations: int) -> list[float]:
    """Resume after the compactor packed the dump (`--compress-after-secs 0`)."""
    from alcove.sandbox import SandboxClient

    server = AlcoveServer(extra_args=["--compress-after-secs", "0"])
    server.start()
    samples = []
    try:
        client = SandboxClient(api_url=server.url)
        sandbox = client.create_and_connect(name="bench-cold", memory_mb=2048)
        sandbox.start_process("python3", ["-c", holder_program(mb)])
        time.sleep(3)
        sdir = server.data_dir / "sandboxes" / sandbox.sandbox_id
        for _ in range(iterations):
            assert server.api("POST", "/sandboxes/bench-cold/suspend?wait_ms=60000").status_code == 200
            deadline = time.monotonic() + 60
            while not (sdir / "checkpoint.tar.zst").exists() and time.monotonic() < deadline:
                time.sleep(0.05)
            time.sleep(0.2)  # let the layer's archive land too
            start = time.perf_counter()
            assert server.api("POST", "/sandboxes/bench-cold/resume?wait_ms=60000").status_code == 200
            samples.append(time.perf_counter() - start)
        client.delete("bench-cold")
        client.close()
    finally:
        server.stop()
        shutil.rmtree(server.data_dir, ignore_errors=True)
    return samples


if __name__ == "__main__":
    main()
