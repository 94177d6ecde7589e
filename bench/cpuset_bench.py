"""What a sandbox's cpuset costs the kernel as cpusets multiply (cgroup v1): giving a new
cpuset its CPU (`cpuset.cpus`, as runc does at every start) with `sched_load_balance` set,
as the kernel makes every new cpuset, beside the same with the flag cleared first, as Alcove
makes a sandbox's cpuset. Measured with no sibling cpusets and with `--siblings` of them,
each holding a sleeping process (as each sandbox's cpuset holds its agent), interleaved.

With the flag set, the write makes the kernel rebuild the scheduler domains, which walks
every cpuset on the host; the removal of such a cpuset rebuilds them again, in a kernel
worker (not timed here). Everything is made under a cpuset of its own and removed at the end.

Usage (as root, on a cgroup v1 or hybrid host):

    .venv/bin/python bench/cpuset_bench.py [--siblings 1000] [--samples 30]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import REPO, machine  # noqa: E402

HIERARCHY = Path("/sys/fs/cgroup/cpuset")


def write(path: Path, value: str) -> None:
    path.write_text(value)


def new_cpuset(parent: Path, name: str, balance: bool, cpu: str) -> float:
    """Makes a cpuset, with its flag cleared unless `balance`; seconds its CPU write took."""
    d = parent / name
    d.mkdir()
    if not balance:
        write(d / "cpuset.sched_load_balance", "0")
    write(d / "cpuset.mems", "0")
    start = time.perf_counter()
    write(d / "cpuset.cpus", cpu)
    return time.perf_counter() - start


def measure(parent: Path, samples: int, cpu: str) -> dict[str, float]:
    """Median µs of the CPU write of a new cpuset, flag set and cleared, interleaved."""
    times: dict[str, list[float]] = {"set": [], "cleared": []}
    for i in range(samples):
        for kind in ("set", "cleared"):
            name = f"probe-{kind}-{i}"
            times[kind].append(new_cpuset(parent, name, kind == "set", cpu))
            (parent / name).rmdir()
    return {kind: round(statistics.median(v) * 1e6, 1) for kind, v in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--siblings", type=int, default=1000)
    parser.add_argument("--samples", type=int, default=30)
    args = parser.parse_args()
    if not (HIERARCHY / "cpuset.sched_load_balance").exists():
        sys.exit("no cgroup v1 cpuset hierarchy on this host")
    cpus = (HIERARCHY / "cpuset.effective_cpus").read_text().strip()
    mems = (HIERARCHY / "cpuset.effective_mems").read_text().strip()
    first_cpu = cpus.split(",")[0].split("-")[0]
    parent = HIERARCHY / f"alcove-bench-{os.getpid()}"
    parent.mkdir()
    sleepers: list[subprocess.Popen] = []
    try:
        write(parent / "cpuset.mems", mems)
        write(parent / "cpuset.cpus", cpus)
        rows = {0: measure(parent, args.samples, first_cpu)}
        for i in range(args.siblings):
            new_cpuset(parent, f"sibling-{i}", True, first_cpu)
            sleeper = subprocess.Popen(["sleep", "3600"])
            sleepers.append(sleeper)
            write(parent / f"sibling-{i}" / "cgroup.procs", str(sleeper.pid))
        rows[args.siblings] = measure(parent, args.samples, first_cpu)
    finally:
        for sleeper in sleepers:
            sleeper.kill()
            sleeper.wait()
        time.sleep(0.5)  # the killed sleepers leave their cpusets
        for child in parent.iterdir():
            if child.is_dir():
                child.rmdir()
        parent.rmdir()
    print(f"\n## A new cpuset's CPU write, {args.samples} samples each (median µs)\n")
    print("| sibling cpusets | `sched_load_balance` set (kernel default) | cleared (Alcove) |")
    print("|---|---|---|")
    for n, r in rows.items():
        print(f"| {n} | {r['set']} | {r['cleared']} |")
    out = REPO / "bench/results/cpuset.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"machine": machine(), "results": {str(k): v for k, v in rows.items()}}, indent=2))
    print(f"\n(raw results: {out})")


if __name__ == "__main__":
    main()
