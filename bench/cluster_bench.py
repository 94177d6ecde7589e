"""Two nodes on one PostgreSQL store, measured in one run: what relaying a request to the
node a sandbox lives on costs.

* `run("true")` round trips to a sandbox on node A, through A itself and through node B
  (which relays each request to A);
* a create until `running` (then a delete) asked of the node that runs it, and asked of a
  draining node, which places it on the other node (the placement: reading the nodes, then
  relaying the create, and the room check on the node that stores it).

Both nodes run on this machine on loopback, so the relay's cost is the extra HTTP hop and the
owner lookup, not a network.

Usage (as root, after `scripts/setup.sh`):

    .venv/bin/python bench/cluster_bench.py [--runs 200] [--creates 30]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import REPO, AlcoveServer, report, summarize, timed  # noqa: E402
from framework.postgres import PostgresCluster  # noqa: E402


def creates(server: AlcoveServer, n: int) -> list[float]:
    samples = []
    for _ in range(n):
        start = time.perf_counter()
        created = server.api("POST", "/sandboxes", json={}).json()
        samples.append(time.perf_counter() - start)
        assert created["status"] == "running", created
        # The delete goes to the node asked too (relayed when the sandbox is elsewhere).
        server.api("DELETE", f"/sandboxes/{created['sandbox_id']}")
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--creates", type=int, default=30)
    args = parser.parse_args()

    from alcove.sandbox import SandboxClient

    with PostgresCluster() as pg:
        url = pg.create_database("bench_cluster")
        a = AlcoveServer(extra_args=["--database", url, "--node-name", "bench-a"])
        b = AlcoveServer(extra_args=["--database", url, "--node-name", "bench-b"])
        a.start()
        b.start()
        try:
            with SandboxClient(api_url=a.url) as on_a, SandboxClient(api_url=b.url) as on_b:
                on_a.create(name="bench-run")
                direct = on_a.connect("bench-run")
                relayed = on_b.connect("bench-run")
                for _ in range(10):  # warm-up: connections, the owner lookup's pool
                    direct.run("true")
                    relayed.run("true")
                run_direct, run_relayed = [], []
                for _ in range(args.runs):
                    run_direct.append(timed(lambda: direct.run("true")))
                    run_relayed.append(timed(lambda: relayed.run("true")))
                on_a.delete("bench-run")

                create_direct = creates(b, args.creates)
                on_a.drain_node("bench-a")
                create_relayed = creates(a, args.creates)
                on_a.activate_node("bench-a")
        finally:
            for srv in (a, b):
                srv.stop()
                shutil.rmtree(srv.data_dir, ignore_errors=True)

    rows = [
        summarize('run("true") through the owner', run_direct),
        summarize('run("true") through another node (relayed)', run_relayed),
        summarize("create + running, asked of the node that runs it", create_direct),
        summarize("create + running, asked of a draining node (relayed)", create_relayed),
    ]
    report("Two nodes on one store: relaying", rows, REPO / "bench/results/cluster.json")


if __name__ == "__main__":
    main()
