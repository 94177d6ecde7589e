"""`GET /metrics` scrape time with no sandbox, then with N running sandboxes (each scrape
reads every sandbox's cgroups and layer), and `GET /healthz` beside it, in one run.

Usage (as root, after `scripts/setup.sh`):

    .venv/bin/python bench/metrics_bench.py [--sandboxes 100] [--scrapes 50]
"""

from __future__ import annotations

import argparse
import shutil
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import REPO, AlcoveServer, report, summarize, timed  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sandboxes", type=int, default=100)
    parser.add_argument("--scrapes", type=int, default=50)
    args = parser.parse_args()

    from alcove.sandbox import SandboxClient

    srv = AlcoveServer(extra_args=["--disk-overcommit", "1000"])
    srv.start()
    rows = []
    try:
        http = httpx.Client(base_url=srv.url, timeout=60)

        def scrape() -> None:
            r = http.get("/metrics")
            r.raise_for_status()

        def measure(label: str) -> None:
            scrape()  # warm-up
            rows.append(summarize(f"GET /metrics ({label})", [timed(scrape) for _ in range(args.scrapes)]))
            rows.append(summarize(f"GET /healthz ({label})",
                                  [timed(lambda: http.get("/healthz").raise_for_status()) for _ in range(args.scrapes)]))

        measure("no sandbox")
        client = SandboxClient(api_url=srv.url)
        with ThreadPoolExecutor(max_workers=8) as pool:
            ids = list(pool.map(lambda _: client.create().sandbox_id, range(args.sandboxes)))
        text = http.get("/metrics").text
        series = sum(1 for line in text.splitlines() if line.startswith("alcove_sandbox_memory_bytes{"))
        assert series == args.sandboxes, f"{series} sandboxes in the scrape, expected {args.sandboxes}"
        measure(f"{args.sandboxes} running sandboxes")
        print(f"scrape size with {args.sandboxes} sandboxes: {len(text) / 1024:.0f} KiB")
        with ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(client.delete, ids))
        report("Metrics scrape", rows, REPO / "bench/results/metrics.json")
    finally:
        srv.stop()
        shutil.rmtree(srv.data_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
