"""Live resize latency: `PATCH /sandboxes/{id}` with `resources` (memory, CPU) on a running
sandbox, beside raw `runc update` of the same container, in one run.

Usage (as root, after `scripts/setup.sh`):

    .venv/bin/python bench/resize_bench.py [--rounds 30]

Starts its own `alcove serve`. Each round resizes memory 1024 → 2048 MB and back, and CPUs
1.0 → 0.5 and back, each through the API (the answer comes once the limits are in force);
the baseline is `runc update --memory` of the same container, timed alone.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import REPO, AlcoveServer, report, summarize  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=30)
    args = parser.parse_args()

    from alcove.sandbox import SandboxClient

    server = AlcoveServer()
    server.start()
    try:
        client = SandboxClient(api_url=server.url)
        with client.create_and_connect(cpus=1.0, memory_mb=1024) as sb:
            path = f"/v1/namespaces/default/sandboxes/{sb.sandbox_id}"

            def patch(resources: dict) -> float:
                start = time.perf_counter()
                resp = server.api("PATCH", path, json={"resources": resources})
                took = time.perf_counter() - start
                if resp.status_code != 200 or resp.json()["resource_resize"]["status"] != "succeeded":
                    raise RuntimeError(f"resize failed: {resp.text}")
                return took

            memory, cpu, raw = [], [], []
            runc_root = server.data_dir / "runc"
            for _ in range(args.rounds):
                memory.append(patch({"memory_mb": 2048}))
                memory.append(patch({"memory_mb": 1024}))
                cpu.append(patch({"cpus": 0.5}))
                cpu.append(patch({"cpus": 1.0}))
                start = time.perf_counter()
                subprocess.run(
                    ["runc", "--root", str(runc_root), "update", "--memory", str(1024 << 20), sb.sandbox_id],
                    check=True,
                    stdout=subprocess.DEVNULL,
                )
                raw.append(time.perf_counter() - start)
        report(
            "Live resize",
            [
                summarize("PATCH resources: memory (1024 <-> 2048 MB)", memory),
                summarize("PATCH resources: cpus (1.0 <-> 0.5)", cpu),
                summarize("baseline: raw `runc update --memory`", raw),
            ],
            REPO / "bench/results/resize.json",
        )
        client.close()
    finally:
        server.stop()
        shutil.rmtree(server.data_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
