"""The agent under a fork bomb: p50 of `list_processes`, `health`-like file reads and
`run("echo")` in an idle sandbox, then in a sandbox whose task limit a fork bomb keeps full,
in one run.

Usage (as root, after `scripts/setup.sh`):

    .venv/bin/python bench/abuse_bench.py [--calls 50]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import REPO, AlcoveServer, report, summarize, timed  # noqa: E402

BOMB = "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n"
# Allocates until the OOM killer ends it; supervised with policy always, it starts again.
MEMORY_BOMB = "a = []\nwhile True:\n    a.append(bytearray(1 << 20))\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=50)
    args = parser.parse_args()

    from alcove.sandbox import RemoteAPIError, SandboxClient

    srv = AlcoveServer()
    srv.start()
    rows = []
    try:
        client = SandboxClient(api_url=srv.url)
        with client.create_and_connect(memory_mb=1024) as sb:
            sb.write_file("/tmp/probe.txt", b"probe")

            def measure(label: str) -> None:
                rows.append(summarize(f"list_processes ({label})",
                                      [timed(sb.list_processes) for _ in range(args.calls)]))
                rows.append(summarize(f"read_file ({label})",
                                      [timed(lambda: sb.read_file("/tmp/probe.txt")) for _ in range(args.calls)]))
                def run_echo() -> None:
                    try:
                        sb.run("echo", ["x"])
                    except RemoteAPIError as e:  # PROCESS_LIMIT: the answer is what is timed
                        assert e.code == "PROCESS_LIMIT", e

                rows.append(summarize(f"run('echo') ({label})",
                                      [timed(run_echo) for _ in range(args.calls // 5)]))

            measure("idle sandbox")
            bomb = sb.start_process("python3", ["-c", BOMB], stdin_mode="closed")
            limit = sb.metrics().pids_limit or 0
            deadline = time.monotonic() + 60
            while sb.metrics().pids < limit - 128 and time.monotonic() < deadline:
                time.sleep(0.2)
            tasks = sb.metrics().pids
            measure(f"fork bomb, {tasks} of {limit} tasks")
            rows.append(summarize("kill_process(bomb) (fork bomb)", [timed(lambda: sb.kill_process(bomb.pid))]))
            rows.append(summarize("stop_all_processes() (after the fork bomb)", [timed(sb.stop_all_processes)]))
            deadline = time.monotonic() + 60
            while sb.metrics().pids > 64 and time.monotonic() < deadline:
                time.sleep(0.2)

            sb.start_process("python3", ["-c", MEMORY_BOMB], name="membomb", stdin_mode="closed",
                             restart={"policy": "always", "initial_backoff_ms": 10, "max_backoff_ms": 10})
            deadline = time.monotonic() + 60
            while sb.get_process("membomb").managed.restart_count < 2 and time.monotonic() < deadline:
                time.sleep(0.2)
            measure("memory bomb, OOM-killed and restarted")
            sb.kill_process("membomb")
        report("The agent under a fork bomb", rows, REPO / "bench/results/abuse.json")
    finally:
        srv.stop()
        shutil.rmtree(srv.data_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
