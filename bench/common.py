"""Shared helpers of the benchmarks: percentiles, timing, a server, a report."""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from framework.server import AlcoveServer  # noqa: E402


def percentile(samples: list[float], p: float) -> float:
    ordered = sorted(samples)
    k = (len(ordered) - 1) * p / 100
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def summarize(name: str, samples_s: list[float]) -> dict:
    ms = [s * 1000 for s in samples_s]
    return {
        "name": name,
        "n": len(ms),
        "p50_ms": round(percentile(ms, 50), 2),
        "p95_ms": round(percentile(ms, 95), 2),
        "mean_ms": round(statistics.fmean(ms), 2),
        "min_ms": round(min(ms), 2),
    }


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def machine() -> dict:
    def sh(cmd: str) -> str:
        return subprocess.run(cmd, shell=True, capture_output=True, text=True).stdout.strip()

    return {
        "kernel": platform.release(),
        "cpus": os.cpu_count(),
        "cpu_model": sh("grep -m1 'model name' /proc/cpuinfo | cut -d: -f2").strip(),
        "memory_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "runc": sh("runc --version | head -1"),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }


def report(title: str, rows: list[dict], out: Path | None = None) -> None:
    print(f"\n## {title}\n")
    print("| benchmark | n | p50 ms | p95 ms | mean ms | min ms |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['name']} | {r['n']} | {r['p50_ms']} | {r['p95_ms']} | {r['mean_ms']} | {r['min_ms']} |")
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({"machine": machine(), "results": rows}, indent=2))
        print(f"\n(raw results: {out})")


__all__ = ["AlcoveServer", "REPO", "machine", "percentile", "report", "summarize", "timed"]
