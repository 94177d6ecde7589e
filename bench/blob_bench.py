"""The blob store and the PostgreSQL store, measured in one run:

* resume of a suspended sandbox holding 200 MB of random memory, from its dump on the local
  disk (packed by the compactor) and from S3 (the local files removed, as on a machine that
  never had them: download, digest check, unpack, restore);
* how long the background upload of that dump to S3 takes after the suspend;
* a memory snapshot until `completed`, without a blob store and with S3 (where `completed`
  includes packing and uploading it);
* create + delete of a sandbox with the store in SQLite and in PostgreSQL.

The S3 server is s3s-fs on loopback (`scripts/setup.sh tools`), so the S3 figures are the
cost of the protocol and of hashing, packing and unpacking, not of a network.

Usage (as root, after `scripts/setup.sh`):

    .venv/bin/python bench/blob_bench.py [--iterations 5] [--mb 200] [--creates 30]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import REPO, AlcoveServer, report, summarize  # noqa: E402
from framework.metrics import operations  # noqa: E402
from framework.postgres import PostgresCluster  # noqa: E402
from framework.s3 import S3Server  # noqa: E402


def random_holder(mb: int) -> str:
    """A process holding `mb` MB of incompressible memory."""
    return (
        "import os, time\n"
        f"b = bytearray(os.urandom({mb} * 1024 * 1024))\n"
        "while True:\n"
        "    time.sleep(0.05)\n"
    )


def wait_rss(sandbox, pid: int, mb: int) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        rss = sandbox.run("sh", ["-c", f"grep VmRSS /proc/{pid}/status | awk '{{print $2}}'"]).stdout
        if rss and int(rss) >= mb * 1024:
            return
        time.sleep(0.2)
    raise RuntimeError("the holder did not reach its size")


def blob_uploads(server) -> float:
    return operations(server, "blob_upload")


def resume_local_vs_s3(s3: S3Server, mb: int, iterations: int) -> tuple[list[float], list[float], list[float]]:
    from alcove.sandbox import SandboxClient

    server = AlcoveServer(extra_args=s3.alcove_args("bench") + ["--compress-after-secs", "0"],
                          extra_env=s3.alcove_env())
    server.start()
    local, remote, upload = [], [], []
    try:
        client = SandboxClient(api_url=server.url)
        sandbox = client.create_and_connect(name="bench-blob", memory_mb=2048)
        proc = sandbox.start_process("python3", ["-c", random_holder(mb)])
        wait_rss(sandbox, proc.pid, mb)
        sdir = server.data_dir / "sandboxes" / sandbox.sandbox_id
        for i in range(2 * iterations):
            before = blob_uploads(server)
            started = time.perf_counter()
            assert server.api("POST", "/sandboxes/bench-blob/suspend?wait_ms=60000").status_code == 200
            deadline = time.monotonic() + 120
            while blob_uploads(server) <= before and time.monotonic() < deadline:
                time.sleep(0.02)
            upload.append(time.perf_counter() - started)
            from_s3 = i % 2 == 1
            if from_s3:
                for name in ("checkpoint.tar.zst", "disk.img.tar.zst", "checkpoint.done"):
                    (sdir / name).unlink()
            start = time.perf_counter()
            resp = server.api("POST", "/sandboxes/bench-blob/resume?wait_ms=120000")
            (remote if from_s3 else local).append(time.perf_counter() - start)
            assert resp.status_code == 200, resp.text
        client.delete("bench-blob")
        client.close()
    finally:
        server.stop()
        shutil.rmtree(server.data_dir, ignore_errors=True)
    return local, remote, upload


def snapshot_times(extra_args: list[str], extra_env: dict, mb: int, iterations: int) -> list[float]:
    from alcove.sandbox import SandboxClient

    server = AlcoveServer(extra_args=extra_args, extra_env=extra_env)
    server.start()
    samples = []
    try:
        client = SandboxClient(api_url=server.url)
        sandbox = client.create_and_connect(name="bench-snap", memory_mb=2048)
        proc = sandbox.start_process("python3", ["-c", random_holder(mb)])
        wait_rss(sandbox, proc.pid, mb)
        for _ in range(iterations):
            start = time.perf_counter()
            sid = server.api("POST", "/sandboxes/bench-snap/snapshot").json()["snapshot_id"]
            while (status := server.api("GET", f"/snapshots/{sid}").json()["status"]) == "in_progress":
                time.sleep(0.005)
            samples.append(time.perf_counter() - start)
            assert status == "completed", status
            server.api("DELETE", f"/snapshots/{sid}")
        client.delete("bench-snap")
        client.close()
    finally:
        server.stop()
        shutil.rmtree(server.data_dir, ignore_errors=True)
    return samples


def create_times(extra_args: list[str], n: int) -> list[float]:
    server = AlcoveServer(extra_args=extra_args)
    server.start()
    samples = []
    try:
        for _ in range(3):  # warm-up: caches, the pool's connections
            sid = server.api("POST", "/sandboxes", json={}).json()["sandbox_id"]
            server.api("DELETE", f"/sandboxes/{sid}")
        for _ in range(n):
            start = time.perf_counter()
            created = server.api("POST", "/sandboxes", json={}).json()
            assert created["status"] == "running", created
            server.api("DELETE", f"/sandboxes/{created['sandbox_id']}")
            samples.append(time.perf_counter() - start)
    finally:
        server.stop()
        shutil.rmtree(server.data_dir, ignore_errors=True)
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--iterations", type=int, default=5)
    parser.add_argument("--mb", type=int, default=200)
    parser.add_argument("--creates", type=int, default=30)
    args = parser.parse_args()

    with S3Server() as s3:
        local, remote, upload = resume_local_vs_s3(s3, args.mb, args.iterations)
        snap_plain = snapshot_times([], {}, args.mb, args.iterations)
        snap_s3 = snapshot_times(s3.alcove_args("bench-snap"), s3.alcove_env(), args.mb, args.iterations)
    sqlite = create_times([], args.creates)
    with PostgresCluster() as pg:
        postgres = create_times(["--database", pg.create_database("bench")], args.creates)
    rows = [
        summarize(f"resume ({args.mb} MB) from the local disk (packed dump)", local),
        summarize(f"resume ({args.mb} MB) from S3 (download, check, unpack)", remote),
        summarize(f"suspend until its dump is in S3 ({args.mb} MB)", upload),
        summarize(f"memory snapshot ({args.mb} MB) until completed, no blob store", snap_plain),
        summarize(f"memory snapshot ({args.mb} MB) until completed, stored in S3", snap_s3),
        summarize("create + delete, store in SQLite", sqlite),
        summarize("create + delete, store in PostgreSQL", postgres),
    ]
    report(f"Blob store and PostgreSQL store, {args.mb} MB", rows, REPO / "bench/results/blob.json")


if __name__ == "__main__":
    main()
