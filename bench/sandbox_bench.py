"""Time-to-interactive and `run("true")` round trip, beside raw `runc run`.

Usage (as root, after `scripts/setup.sh`):

    .venv/bin/python bench/sandbox_bench.py [--iterations 50] [--runs 200]

Starts its own `alcove serve` on a free port with a temporary data dir.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from baseline import runc_run_true  # noqa: E402
from common import REPO, AlcoveServer, report, summarize, timed  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--iterations", type=int, default=50, help="create_and_connect iterations")
    parser.add_argument("--runs", type=int, default=200, help="run('true') round trips")
    args = parser.parse_args()

    from alcove.sandbox import SandboxClient

    images = Path(os.environ.get("ALCOVE_IMAGES_DIR", "/var/lib/alcove/images"))
    server = AlcoveServer()
    server.start()
    try:
        client = SandboxClient(api_url=server.url)
        # Warm-up: page cache, connection pool.
        with client.create_and_connect() as sb:
            sb.run("true")

        tti: list[float] = []
        for _ in range(args.iterations):
            holder: dict = {}

            def create_and_run() -> None:
                sb = client.create_and_connect()
                holder["sb"] = sb
                sb.run("true")

            tti.append(timed(create_and_run))
            client.delete(holder["sb"].sandbox_id)

        with client.create_and_connect() as sb:
            for _ in range(10):
                sb.run("true")
            rt = [timed(lambda: sb.run("true")) for _ in range(args.runs)]

        raw = runc_run_true(images / "debian" / "rootfs", args.iterations)
        rows = [
            summarize("TTI: create_and_connect + first run", tti),
            summarize('run("true") round trip', rt),
            summarize("baseline: raw `runc run` of true", raw),
        ]
        report("Sandbox lifecycle", rows, REPO / "bench/results/sandbox.json")
        client.close()
    finally:
        server.stop()
        shutil.rmtree(server.data_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
