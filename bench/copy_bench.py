"""Copy of a running sandbox beside the operations it is made of, in one run on one sandbox
holding `--mb` of memory: `copy(times=1)`, `copy(times=4)`, suspend + resume, and a memory
snapshot + one restore.

Usage (as root, after `scripts/setup.sh`):

    .venv/bin/python bench/copy_bench.py [--iterations 5] [--mb 200]

Each copy is timed from the request to its answer (every copy running); the copies are deleted
between iterations, untimed. Suspend and resume use `wait_ms`; a snapshot is timed until GET
says `completed`, a restore is a blocking create from it until it runs. The target: one
`copy(times=4)` within one dump and two restores (p50 of a snapshot + 2 × p50 of a restore).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import REPO, AlcoveServer, report, summarize  # noqa: E402
from criu_baseline import holder_program  # noqa: E402

NAME = "bench-copy"


def copy(server: AlcoveServer, times: int) -> float:
    start = time.perf_counter()
    resp = server.api("POST", f"/sandboxes/{NAME}/copy?times={times}")
    took = time.perf_counter() - start
    assert resp.status_code == 200, resp.text
    made = resp.json()["sandboxes"]
    assert len(made) == times and all(c["status"] == "running" for c in made), made
    for c in made:
        server.api("DELETE", f"/sandboxes/{c['sandbox_id']}")
    return took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--iterations", type=int, default=5)
    parser.add_argument("--mb", type=int, default=200)
    args = parser.parse_args()

    from alcove.sandbox import SandboxClient

    server = AlcoveServer()
    server.start()
    try:
        client = SandboxClient(api_url=server.url)
        sandbox = client.create_and_connect(name=NAME, memory_mb=2048)
        proc = sandbox.start_process("python3", ["-c", holder_program(args.mb)])
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            rss = sandbox.run("sh", ["-c", f"grep VmRSS /proc/{proc.pid}/status | awk '{{print $2}}'"]).stdout
            if rss and int(rss) >= args.mb * 1024:
                break
            time.sleep(0.2)

        copy1, copy4, suspend, resume, cycle, snapshot, restore, snap_restore = ([] for _ in range(8))
        # Interleaved, so a neighbour's load (other builds on the machine) hits every row alike.
        for _ in range(args.iterations):
            copy1.append(copy(server, 1))
            copy4.append(copy(server, 4))

            start = time.perf_counter()
            resp = server.api("POST", f"/sandboxes/{NAME}/suspend?wait_ms=60000")
            suspend.append(time.perf_counter() - start)
            assert resp.status_code == 200, resp.text
            mid = time.perf_counter()
            resp = server.api("POST", f"/sandboxes/{NAME}/resume?wait_ms=60000")
            resume.append(time.perf_counter() - mid)
            cycle.append(time.perf_counter() - start)
            assert resp.status_code == 200, resp.text

            start = time.perf_counter()
            sid = server.api("POST", f"/sandboxes/{NAME}/snapshot").json()["snapshot_id"]
            while server.api("GET", f"/snapshots/{sid}").json()["status"] != "completed":
                time.sleep(0.005)
            mid = time.perf_counter()
            snapshot.append(mid - start)
            created = server.api("POST", "/sandboxes", json={"snapshot_id": sid}).json()
            restore.append(time.perf_counter() - mid)
            snap_restore.append(time.perf_counter() - start)
            assert created["status"] == "running", created
            server.api("DELETE", f"/sandboxes/{created['sandbox_id']}")
            server.api("DELETE", f"/snapshots/{sid}")
        client.delete(NAME)
        client.close()
    finally:
        server.stop()
        shutil.rmtree(server.data_dir, ignore_errors=True)

    rows = [
        summarize(f"copy(times=1) ({args.mb} MB)", copy1),
        summarize(f"copy(times=4) ({args.mb} MB)", copy4),
        summarize("suspend + resume", cycle),
        summarize("  suspend", suspend),
        summarize("  resume", resume),
        summarize("memory snapshot + one restore", snap_restore),
        summarize("  memory snapshot", snapshot),
        summarize("  restore into a new sandbox", restore),
    ]
    report(f"Copy, {args.mb} MB", rows, REPO / "bench/results/copy.json")
    p50 = {r["name"]: r["p50_ms"] for r in rows}
    budget = p50["  memory snapshot"] + 2 * p50["  restore into a new sandbox"]
    four = p50[f"copy(times=4) ({args.mb} MB)"]
    verdict = "within" if four <= budget else "over"
    print(f"\ncopy(times=4) p50 {four} ms vs 1 dump + 2 restores {round(budget, 2)} ms: {verdict}")


if __name__ == "__main__":
    main()
