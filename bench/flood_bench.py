"""The API under a flood of idle connections: p50 of `/healthz` and of `run("true")` with
no flood, then with N idle TCP connections held open against the same server, in one run.

Usage (as root, after `scripts/setup.sh`):

    .venv/bin/python bench/flood_bench.py [--idle 10000] [--runs 200]

The idle connections come from this process (its open-file limit is raised to the hard
limit first); the server is started with a connection cap above N.
"""

from __future__ import annotations

import argparse
import resource
import shutil
import socket
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import REPO, AlcoveServer, report, summarize, timed  # noqa: E402


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--idle", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=200)
    args = parser.parse_args()

    import httpx

    from alcove.sandbox import SandboxClient

    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    server = AlcoveServer(extra_args=["--max-connections", str(args.idle + 1000)])
    server.start()
    rows = []
    idle: list[socket.socket] = []
    try:
        http = httpx.Client(base_url=server.url, timeout=30)
        client = SandboxClient(api_url=server.url)
        with client.create_and_connect() as sb:
            sb.run("true")
            for phase in ("quiet", f"{args.idle} idle connections"):
                if phase != "quiet":
                    for _ in range(args.idle):
                        s = socket.create_connection(("127.0.0.1", server.port))
                        idle.append(s)
                health = [timed(lambda: http.get("/healthz").raise_for_status()) for _ in range(args.runs)]
                runs = [timed(lambda: sb.run("true")) for _ in range(args.runs)]
                rows.append(summarize(f"/healthz ({phase})", health))
                rows.append(summarize(f"run('true') ({phase})", runs))
                if server.proc is not None:
                    print(f"server RSS with {phase}: {rss_mb(server.proc.pid):.1f} MB")
            for s in idle:
                s.close()
            idle.clear()
        report("The API under idle connections", rows, REPO / "bench/results/flood.json")
    finally:
        for s in idle:
            s.close()
        server.stop()
        shutil.rmtree(server.data_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
