"""Two nodes on one PostgreSQL store, measured in one run: what relaying a request to the
node a sandbox lives on costs.

* `run("true")` round trips to a sandbox on node A, through A itself and through node B
  (which relays each request to A); and the same on a second pair of nodes that serve HTTPS
  (`--tls-cert`, certificates of a private CA made with `openssl`), where the client speaks
  TLS to the node it asks and B relays to A over TLS;
* a create until `running` (then a delete) asked of the node that runs it, and asked of a
  draining node, which places it on the other node (the placement: reading the nodes, then
  relaying the create, and the room check on the node that stores it).

* a resume of a suspended sandbox holding `--mb` MB of random memory: on its own node from
  the local disk, and on the other node once its own stopped (the other node takes it over
  and downloads its dump from S3: download, digest check, unpack, restore).

Both nodes run on this machine on loopback, so the relay's cost is the extra HTTP hop and the
owner lookup, not a network; S3 is s3s-fs on loopback.

Usage (as root, after `scripts/setup.sh`):

    .venv/bin/python bench/cluster_bench.py [--runs 200] [--creates 30] [--moves 5] [--mb 200]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from blob_bench import random_holder, wait_rss  # noqa: E402
from common import REPO, AlcoveServer, report, summarize, timed  # noqa: E402
from framework.tls import CertificateAuthority  # noqa: E402
from framework.metrics import operations  # noqa: E402
from framework.postgres import PostgresCluster  # noqa: E402
from framework.s3 import S3Server  # noqa: E402


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


def suspend_until_uploaded(server: AlcoveServer, name: str) -> None:
    before = operations(server, "blob_upload")
    resp = server.api("POST", f"/sandboxes/{name}/suspend?wait_ms=60000")
    assert resp.status_code == 200, resp.text
    deadline = time.monotonic() + 120
    while operations(server, "blob_upload") <= before:
        assert time.monotonic() < deadline, "the dump was not uploaded"
        time.sleep(0.02)


def resume_time(server: AlcoveServer, name: str) -> float:
    start = time.perf_counter()
    resp = server.api("POST", f"/sandboxes/{name}/resume?wait_ms=120000")
    elapsed = time.perf_counter() - start
    assert resp.status_code == 200, resp.text
    return elapsed


def moves(pg: PostgresCluster, s3: S3Server, rounds: int, mb: int) -> tuple[list[float], list[float]]:
    """Resume on the sandbox's own node (local disk) vs on the other node after its own
    stopped (from S3), `rounds` times each."""
    from alcove.sandbox import SandboxClient

    url = pg.create_database("bench_moves")
    args = ["--database", url, "--node-lease-secs", "3", "--compress-after-secs", "0",
            *s3.alcove_args("bench-moves")]
    a = AlcoveServer(extra_args=[*args, "--node-name", "move-a"], extra_env=s3.alcove_env())
    b = AlcoveServer(extra_args=[*args, "--node-name", "move-b"], extra_env=s3.alcove_env())
    a.start()
    b.start()
    local, remote = [], []
    try:
        for i in range(rounds):
            name = f"bench-move-{i}"
            with SandboxClient(api_url=b.url) as on_b:
                sandbox = on_b.create_and_connect(name=name, memory_mb=2048)
                proc = sandbox.start_process("python3", ["-c", random_holder(mb)])
                wait_rss(sandbox, proc.pid, mb)
            suspend_until_uploaded(b, name)
            local.append(resume_time(b, name))
            suspend_until_uploaded(b, name)
            b.stop()
            # A stopped node's sandboxes move a third of a lease after the stop.
            time.sleep(1.5)
            remote.append(resume_time(a, name))
            a.api("DELETE", f"/sandboxes/{name}")
            b.start()
    finally:
        for srv in (a, b):
            srv.stop()
            shutil.rmtree(srv.data_dir, ignore_errors=True)
    return local, remote


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--creates", type=int, default=30)
    parser.add_argument("--moves", type=int, default=5)
    parser.add_argument("--mb", type=int, default=200)
    args = parser.parse_args()

    from alcove.sandbox import SandboxClient

    ca_dir = Path(tempfile.mkdtemp(prefix="alcove-bench-ca-"))
    ca = CertificateAuthority(ca_dir)
    with PostgresCluster() as pg:
        url = pg.create_database("bench_cluster")
        tls_url = pg.create_database("bench_cluster_tls")
        a = AlcoveServer(extra_args=["--database", url, "--node-name", "bench-a"])
        b = AlcoveServer(extra_args=["--database", url, "--node-name", "bench-b"])
        ta, tb = (
            AlcoveServer(extra_args=["--database", tls_url, "--node-name", name, *ca.issue(name).args(ca.pem)],
                         tls_ca=ca.pem)
            for name in ("bench-tls-a", "bench-tls-b")
        )
        servers = (a, b, ta, tb)
        for srv in servers:
            srv.start()
        # The clients (not the nodes, started above) trust the private CA.
        system_roots = os.environ.get("SSL_CERT_FILE")
        os.environ["SSL_CERT_FILE"] = str(ca.pem)
        try:
            with (SandboxClient(api_url=a.url) as on_a, SandboxClient(api_url=b.url) as on_b,
                  SandboxClient(api_url=ta.url) as on_ta, SandboxClient(api_url=tb.url) as on_tb):
                on_a.create(name="bench-run")
                on_ta.create(name="bench-run")
                paths = {
                    "direct": on_a.connect("bench-run"),
                    "relayed": on_b.connect("bench-run"),
                    "tls direct": on_ta.connect("bench-run"),
                    "tls relayed": on_tb.connect("bench-run"),
                }
                for _ in range(10):  # warm-up: connections, the owner lookup's pool, TLS sessions
                    for sandbox in paths.values():
                        sandbox.run("true")
                runs: dict[str, list[float]] = {name: [] for name in paths}
                for _ in range(args.runs):
                    for name, sandbox in paths.items():
                        runs[name].append(timed(lambda: sandbox.run("true")))
                run_direct, run_relayed = runs["direct"], runs["relayed"]
                on_a.delete("bench-run")
                on_ta.delete("bench-run")

                create_direct = creates(b, args.creates)
                on_a.drain_node("bench-a")
                create_relayed = creates(a, args.creates)
                on_a.activate_node("bench-a")
        finally:
            if system_roots is None:
                os.environ.pop("SSL_CERT_FILE", None)
            else:
                os.environ["SSL_CERT_FILE"] = system_roots
            for srv in servers:
                srv.stop()
                shutil.rmtree(srv.data_dir, ignore_errors=True)
            shutil.rmtree(ca_dir, ignore_errors=True)
        with S3Server() as s3:
            resume_local, resume_moved = moves(pg, s3, args.moves, args.mb)

    rows = [
        summarize('run("true") through the owner', run_direct),
        summarize('run("true") through another node (relayed)', run_relayed),
        summarize('run("true") through the owner, HTTPS', runs["tls direct"]),
        summarize('run("true") through another node, HTTPS, relayed over TLS', runs["tls relayed"]),
        summarize("create + running, asked of the node that runs it", create_direct),
        summarize("create + running, asked of a draining node (relayed)", create_relayed),
        summarize(f"resume ({args.mb} MB) on its own node, from the local disk", resume_local),
        summarize(f"resume ({args.mb} MB) on another node, its own stopped (from S3)", resume_moved),
    ]
    report("Two nodes on one store: relaying", rows, REPO / "bench/results/cluster.json")


if __name__ == "__main__":
    main()
