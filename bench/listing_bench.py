"""Directory listing: `list_directory` of a large directory, beside the same listing made
inside the sandbox by a program, in one run.

Usage (as root, after `scripts/setup.sh`):

    .venv/bin/python bench/listing_bench.py [--entries 100000] [--rounds 10]

Starts its own `alcove serve` and one sandbox holding a directory of `--entries` empty files.
Rows: the HTTP request alone (`GET /api/v1/files/list` through the server's proxy, the agent's
and server's work: read the directory, `stat` each entry, encode the JSON), the same plus
Alcove's Python SDK decoding it (`list_directory`), and the baseline: `ls -l` of the directory
run in the sandbox by `run()` (the same `stat` per entry, printed as text), which includes a
`run` round trip of about 2 ms.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import REPO, AlcoveServer, report, summarize  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--entries", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args()

    import httpx

    from alcove.sandbox import SandboxClient

    server = AlcoveServer()
    server.start()
    try:
        client = SandboxClient(api_url=server.url)
        with client.create_and_connect(cpus=1.0, memory_mb=2048) as sb:
            made = sb.run(
                "sh", ["-c", f"mkdir /tmp/many && cd /tmp/many && seq 1 {args.entries} | xargs touch"],
                timeout_secs=300,
            )
            if made.exit_code != 0:
                raise RuntimeError(f"making the directory failed: {made.stderr}")
            url = f"{server.url}/sandboxes/{sb.sandbox_id}/api/v1/files/list"
            raw, sdk, ls = [], [], []
            with httpx.Client(timeout=120) as http:
                for _ in range(args.rounds):
                    start = time.perf_counter()
                    resp = http.get(url, params={"path": "/tmp/many"})
                    raw.append(time.perf_counter() - start)
                    if resp.status_code != 200 or len(resp.json()["entries"]) != args.entries:
                        raise RuntimeError(f"listing failed: {resp.status_code}")
                    start = time.perf_counter()
                    entries = sb.list_directory("/tmp/many")
                    sdk.append(time.perf_counter() - start)
                    if len(entries) != args.entries:
                        raise RuntimeError("the SDK listed the wrong number of entries")
                    start = time.perf_counter()
                    out = sb.run("sh", ["-c", "ls -l /tmp/many | wc -l"])
                    ls.append(time.perf_counter() - start)
                    if int(out.stdout.strip()) != args.entries + 1:
                        raise RuntimeError(f"ls listed {out.stdout!r}")
        report(
            f"Directory listing ({args.entries} entries)",
            [
                summarize("GET /api/v1/files/list (server + agent, JSON not decoded)", raw),
                summarize("list_directory, Alcove's Python SDK (decoded to models)", sdk),
                summarize("baseline: `ls -l | wc -l` in the sandbox through run()", ls),
            ],
            REPO / "bench/results/listing.json",
        )
        client.close()
    finally:
        server.stop()
        shutil.rmtree(server.data_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
