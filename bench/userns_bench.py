"""What user namespaces cost: time to interactive, `run("true")` and suspend/resume of
this build beside a baseline build without them, in one run, iterations interleaved.

Usage (as root, after `scripts/setup.sh`):

    BASE=$(bash bench/build_baseline.sh 612cb85)     # the last commit before user namespaces
    .venv/bin/python bench/userns_bench.py --baseline "$BASE" [--iterations 30] [--runs 200]

Each build runs its own `alcove serve` with a temporary data dir.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import REPO, AlcoveServer, report, summarize, timed  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--baseline", type=Path, required=True, help="dir with the baseline's alcove and alcove-agent")
    parser.add_argument("--iterations", type=int, default=30)
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--suspends", type=int, default=10)
    args = parser.parse_args()

    from alcove.sandbox import SandboxClient

    builds = {
        "userns": AlcoveServer(),
        "baseline": AlcoveServer(binary=args.baseline / "alcove", agent=args.baseline / "alcove-agent"),
    }
    samples: dict[str, dict[str, list[float]]] = {k: {"tti": [], "run": [], "suspend": [], "resume": []} for k in builds}
    try:
        clients = {}
        for name, srv in builds.items():
            srv.start()
            clients[name] = SandboxClient(api_url=srv.url)
            with clients[name].create_and_connect() as sb:  # warm-up
                sb.run("true")

        for _ in range(args.iterations):
            for name, c in clients.items():
                holder: dict = {}

                def create_and_run() -> None:
                    holder["sb"] = c.create_and_connect()
                    holder["sb"].run("true")

                samples[name]["tti"].append(timed(create_and_run))
                holder["sb"].terminate()

        for name, c in clients.items():
            with c.create_and_connect() as sb:
                for _ in range(args.runs):
                    samples[name]["run"].append(timed(lambda: sb.run("true")))

        handles = {}
        for name, c in clients.items():
            sb = c.create_and_connect(name=f"bench-{name}")
            sb.run("python3", ["-c", "import os; open('/root/x','wb').write(os.urandom(1 << 20))"])
            handles[name] = sb
        for _ in range(args.suspends):
            for name, c in clients.items():
                samples[name]["suspend"].append(timed(lambda: c.suspend(f"bench-{name}")))
                samples[name]["resume"].append(timed(lambda: c.resume(f"bench-{name}")))
                c.connect(f"bench-{name}").run("true")
        for name, c in clients.items():
            c.delete(f"bench-{name}")

        rows = []
        for metric in ("tti", "run", "suspend", "resume"):
            for name in builds:
                rows.append(summarize(f"{metric} ({name})", samples[name][metric]))
        report("User namespaces: this build vs the baseline", rows, REPO / "bench/results/userns.json")
    finally:
        for srv in builds.values():
            srv.stop()
            shutil.rmtree(srv.data_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
