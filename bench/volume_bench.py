"""Persistent volumes: live attach and detach latency, and sequential write and read
throughput (dd of 256 MB, conv=fsync for writes, caches dropped before reads) on a volume,
on the sandbox's writable layer and on the host, side by side in one run.

Usage (as root, after `scripts/setup.sh`):

    .venv/bin/python bench/volume_bench.py [--rounds 20] [--mb 256]
"""

from __future__ import annotations

import argparse
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import AlcoveServer, machine, report, summarize, timed  # noqa: E402


def mb_per_s(dd_output: str) -> float:
    """The rate dd printed (its last line: '..., 1.2 s, 215 MB/s'), in MB/s."""
    m = re.search(r"([\d.]+) ([kMG]?B)/s", dd_output.strip().splitlines()[-1])
    if not m:
        raise RuntimeError(f"no rate in dd output: {dd_output!r}")
    value, unit = float(m.group(1)), m.group(2)
    return value * {"kB": 1e-3, "B": 1e-6, "MB": 1.0, "GB": 1e3}[unit]


def drop_caches() -> None:
    subprocess.run(["sh", "-c", "sync; echo 3 > /proc/sys/vm/drop_caches"], check=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--mb", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3, help="throughput runs per place (median kept)")
    args = parser.parse_args()

    from alcove.sandbox import SandboxClient

    srv = AlcoveServer()
    srv.start()
    latency = []
    throughput: list[tuple[str, float, float]] = []
    try:
        client = SandboxClient(api_url=srv.url)
        client.create_file_system("bench", args.mb * 2 + 64)
        with client.create_and_connect(disk_mb=args.mb * 2 + 1024) as sb:
            attach, detach = [], []
            for _ in range(args.rounds):
                attach.append(timed(lambda: sb.attach_file_system("bench", "/vol")))
                detach.append(timed(lambda: sb.detach_file_system("/vol")))
            latency += [summarize("attach (live)", attach), summarize("detach (live)", detach)]

            sb.attach_file_system("bench", "/vol")

            def in_sandbox(path: str) -> tuple[float, float]:
                w = sb.run("sh", ["-c", f"dd if=/dev/zero of={path}/f bs=1M count={args.mb} conv=fsync 2>&1"])
                drop_caches()
                r = sb.run("sh", ["-c", f"dd if={path}/f of=/dev/null bs=1M 2>&1"])
                sb.run("rm", ["-f", f"{path}/f"])
                return mb_per_s(w.stdout), mb_per_s(r.stdout)

            def on_host() -> tuple[float, float]:
                with tempfile.TemporaryDirectory(dir=srv.data_dir) as host_dir:
                    w = subprocess.run(
                        ["dd", "if=/dev/zero", f"of={host_dir}/f", "bs=1M", f"count={args.mb}", "conv=fsync"],
                        capture_output=True, text=True, check=True,
                    )
                    drop_caches()
                    r = subprocess.run(["dd", f"if={host_dir}/f", "of=/dev/null", "bs=1M"],
                                       capture_output=True, text=True, check=True)
                    return mb_per_s(w.stderr), mb_per_s(r.stderr)

            # Interleaved, so a burst of load from elsewhere on the machine hits every place alike.
            places = {"volume": lambda: in_sandbox("/vol"), "writable layer": lambda: in_sandbox("/root"),
                      "host (data directory)": on_host}
            runs: dict[str, list[tuple[float, float]]] = {name: [] for name in places}
            for _ in range(args.repeats):
                for name, measure in places.items():
                    runs[name].append(measure())
            for name, samples in runs.items():
                throughput.append((name, statistics.median(w for w, _ in samples), statistics.median(r for _, r in samples)))
            sb.detach_file_system("/vol")
        client.delete_file_system("bench")
        client.close()
    finally:
        srv.stop()
        shutil.rmtree(srv.data_dir, ignore_errors=True)
    report("Volume attach/detach latency", latency)
    print(f"\n## Sequential throughput, dd of {args.mb} MB (write with conv=fsync, read after drop_caches), "
          f"median of {args.repeats}\n")
    print("| where | write MB/s | read MB/s |")
    print("|---|---|---|")
    for where, wr, rd in throughput:
        print(f"| {where} | {wr:.0f} | {rd:.0f} |")
    m = machine()
    print(f"\n(machine: {m})")


if __name__ == "__main__":
    main()
