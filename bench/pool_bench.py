"""Warm-pool claims beside cold creates and raw `runc run`, in one run.

Usage (as root, after `scripts/setup.sh`):

    .venv/bin/python bench/pool_bench.py [--iterations 30]

Starts its own `alcove serve` on a free port with a temporary data dir, and a pool of four
warm sandboxes. Each claim is timed with the pool full again (a warm claim, not a cold start):

* claim at the server: one `POST /sandbox-pools/{pool}/sandboxes` over a kept-alive loopback
  connection (the server's answer time, HTTP included);
* claim through the Python SDK: `client.claim(pool_id)` (the claim and the GET of its info);
* claim + first `run("true")`, against create + first `run("true")` (time to interactive);
* a cold blocking create alone, and raw `runc run` of `true` as the baseline.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from baseline import runc_run_true  # noqa: E402
from common import REPO, AlcoveServer, report, summarize, timed  # noqa: E402

B = "/v1/namespaces/default"
SMALL = {"cpus": 0.5, "memory_mb": 512, "disk_mb": 1024}
WARM = 4


def wait_full(http: httpx.Client, pool_id: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pool = http.get(f"{B}/sandbox-pools/{pool_id}").json()
        if sum(c["state"] == "Idle" for c in pool["containers"]) >= WARM:
            return
        time.sleep(0.05)
    raise RuntimeError("the pool did not refill")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--iterations", type=int, default=30)
    args = parser.parse_args()

    from alcove.sandbox import SandboxClient

    images = Path(os.environ.get("ALCOVE_IMAGES_DIR", "/var/lib/alcove/images"))
    server = AlcoveServer()
    server.start()
    http = httpx.Client(base_url=server.url, timeout=120)
    pool_id = None
    try:
        client = SandboxClient(api_url=server.url)
        resp = http.post(f"{B}/sandbox-pools", json={"resources": SMALL, "warm_containers": WARM})
        resp.raise_for_status()
        pool_id = resp.json()["pool_id"]
        with client.create_and_connect(cpus=0.5, memory_mb=512, disk_mb=1024) as sb:
            sb.run("true")  # warm-up: page cache, connections

        def measure(claim_once) -> list[float]:
            samples = []
            for _ in range(args.iterations):
                wait_full(http, pool_id)
                holder: dict = {}
                samples.append(timed(lambda: holder.setdefault("id", claim_once())))
                client.delete(holder["id"])
            return samples

        def claim_http() -> str:
            answer = http.post(f"{B}/sandbox-pools/{pool_id}/sandboxes")
            answer.raise_for_status()
            return answer.json()["sandbox_id"]

        def claim_sdk() -> str:
            return client.claim(pool_id).sandbox_id

        def claim_and_run() -> str:
            info = client.claim(pool_id)
            client.connect(info.sandbox_id).run("true")
            return info.sandbox_id

        at_server = measure(claim_http)
        through_sdk = measure(claim_sdk)
        claim_tti = measure(claim_and_run)

        cold, cold_tti = [], []
        for _ in range(args.iterations):
            holder: dict = {}
            cold.append(
                timed(lambda: holder.setdefault("id", client.create(cpus=0.5, memory_mb=512, disk_mb=1024).sandbox_id))
            )
            client.delete(holder["id"])

            def create_and_run() -> None:
                sb = client.create_and_connect(cpus=0.5, memory_mb=512, disk_mb=1024)
                holder["sb"] = sb
                sb.run("true")

            cold_tti.append(timed(create_and_run))
            client.delete(holder["sb"].sandbox_id)

        raw = runc_run_true(images / "debian" / "rootfs", args.iterations)
        rows = [
            summarize("claim at the server (HTTP, loopback)", at_server),
            summarize("claim through the Python SDK", through_sdk),
            summarize('claim + first run("true")', claim_tti),
            summarize("cold create (blocking)", cold),
            summarize('cold create + first run("true")', cold_tti),
            summarize("baseline: raw `runc run` of true", raw),
        ]
        report("Warm pools: claim vs cold create", rows, REPO / "bench/results/pool.json")
        client.close()
    finally:
        # Sandboxes outlive a stopped server: end the pool's (and any claimed one) first.
        if pool_id is not None:
            for c in http.get(f"{B}/sandbox-pools/{pool_id}").json().get("containers", []):
                http.delete(f"{B}/sandboxes/{c['sandbox_id']}")
            http.delete(f"{B}/sandbox-pools/{pool_id}")
        for sb in http.get(f"{B}/sandboxes").json().get("sandboxes", []):
            http.delete(f"{B}/sandboxes/{sb['id']}")
        http.close()
        server.stop()
        shutil.rmtree(server.data_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
