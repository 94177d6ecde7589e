"""The sandbox handle: `run("true")` round trip, file transfer, and output streaming, beside
what the host does alone.

Usage (as root, after `scripts/setup.sh`):

    .venv/bin/python bench/handle_bench.py [--runs 300] [--file-mib 256] [--file-iterations 5]
                                           [--lines 1000000] [--line-iterations 3]

Starts its own `alcove serve` on a free port with a temporary data dir, and measures in one
sandbox, in one run:

* `run("true")` round trip (p50/p95 over `--runs` calls, after a warm-up);
* `write_file` of a `--file-mib` MiB local file (streamed from the open file) and a streamed
  `read_file_stream` of it (chunks counted and dropped), each `--file-iterations` times, beside a
  local `cp` of the same file on the host (and `cp` followed by an fsync, since the sandbox's
  PUT fsyncs), in MiB/s;
* a process printing `--lines` lines consumed through `run` and through
  `start_process` + `follow_output`, in lines/s, beside the same program read through a pipe
  on the host. Rates count the lines that arrived: `run` holds a fast process back, a follow
  stream does not, and once it lags more than the 16 MiB output buffer behind, the oldest lines
  are dropped from under it (the lines received are printed and kept in the JSON).

Prints markdown tables and writes `bench/results/handle.json`.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import REPO, AlcoveServer, machine, report, summarize, timed
from files import make_random_file

MiB = 1024 * 1024


def throughput(name: str, samples_s: list[float], amount: float | list[float], unit: str) -> dict:
    """Rates of `amount` units per sample (or `amount[i]` for sample i): median, best and mean."""
    amounts = amount if isinstance(amount, list) else [amount] * len(samples_s)
    rates = [a / s for a, s in zip(amounts, samples_s)]
    row = summarize(name, samples_s)
    row.update(
        {
            "unit": unit,
            "amount": statistics.median(amounts),
            "rate_p50": round(statistics.median(rates), 1),
            "rate_best": round(max(rates), 1),
            "rate_mean": round(statistics.fmean(rates), 1),
        }
    )
    return row


def print_throughput(title: str, rows: list[dict]) -> None:
    print(f"\n## {title}\n")
    print("| benchmark | n | amount (median) | p50 s | rate (p50) | rate (best) | rate (mean) |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        fmt = ",.0f" if r["unit"] == "lines/s" else ",.1f"
        size = f"{r['amount']:,.0f} {r['unit'].split('/')[0]}"
        rates = " | ".join(f"{r[k]:{fmt}} {r['unit']}" for k in ("rate_p50", "rate_best", "rate_mean"))
        print(f"| {r['name']} | {r['n']} | {size} | {r['p50_ms'] / 1000:.3f} | {rates} |")


def lines_program(n: int, gate: str | None = None) -> list[str]:
    """`python3` arguments printing the lines 0..n-1 (after `ready` and waiting for `gate`, if given)."""
    wait = ""
    if gate:
        wait = f"import os, time\nprint('ready', flush=True)\nwhile not os.path.exists({gate!r}): time.sleep(0.005)\n"
    return ["-c", f"import sys\n{wait}sys.stdout.write(''.join(f'{{i}}\\n' for i in range({n})))"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=300, help="run('true') round trips (after 20 warm-ups)")
    parser.add_argument("--file-mib", type=int, default=256, help="size of the transferred file, MiB")
    parser.add_argument("--file-iterations", type=int, default=5, help="timed transfers each way")
    parser.add_argument("--lines", type=int, default=1_000_000, help="lines printed by the streaming process")
    parser.add_argument("--line-iterations", type=int, default=3, help="timed streams each way")
    parser.add_argument("--out", type=Path, default=REPO / "bench/results/handle.json")
    args = parser.parse_args()

    from alcove.sandbox import SandboxClient

    work = Path(tempfile.mkdtemp(prefix="alcove-handle-bench-"))
    server = AlcoveServer()
    server.start()
    try:
        client = SandboxClient(api_url=server.url)
        with client.create_and_connect() as sb:
            # -- run("true") -----------------------------------------------------------------
            for _ in range(20):
                sb.run("true")
            rt = [timed(lambda: sb.run("true")) for _ in range(args.runs)]
            latency = [summarize('run("true") round trip', rt)]

            # -- files -----------------------------------------------------------------------
            size = args.file_mib * MiB
            local = work / "payload.bin"
            digest = make_random_file(local, size)
            remote = "/root/bench/payload.bin"

            def write() -> None:
                with open(local, "rb") as f:
                    sb.write_file(remote, f)

            def read() -> None:
                got = sum(len(chunk) for chunk in sb.read_file_stream(remote, chunk_size=MiB))
                assert got == size, (got, size)

            def cp() -> None:
                subprocess.run(["cp", str(local), str(work / "copy.bin")], check=True)

            def cp_fsync() -> None:
                subprocess.run(["cp", str(local), str(work / "copy.bin")], check=True)
                subprocess.run(["sync", str(work / "copy.bin")], check=True)

            write()  # warm-up, and the file to read back
            remote_digest = sb.run("sha256sum", [remote]).stdout.split()[0]
            assert remote_digest == digest, "the sandbox holds different bytes"
            read()
            cp()
            samples: dict[str, list[float]] = {"write": [], "read": [], "cp": [], "cp_fsync": []}
            for _ in range(args.file_iterations):
                # Interleaved, so that a slow phase of the machine hits every kind alike.
                samples["write"].append(timed(write))
                samples["read"].append(timed(read))
                samples["cp"].append(timed(cp))
                samples["cp_fsync"].append(timed(cp_fsync))
            mib = float(args.file_mib)
            files = [
                throughput(
                    f"write_file {args.file_mib} MiB (from a local file, fsynced)", samples["write"], mib, "MiB/s"
                ),
                throughput(f"read_file_stream {args.file_mib} MiB", samples["read"], mib, "MiB/s"),
                throughput(f"baseline: host `cp` {args.file_mib} MiB", samples["cp"], mib, "MiB/s"),
                throughput(f"baseline: host `cp` + fsync {args.file_mib} MiB", samples["cp_fsync"], mib, "MiB/s"),
            ]
            sb.delete_file(remote)

            # -- output streaming ------------------------------------------------------------
            n = args.lines
            program = lines_program(n)
            # For the follow stream the process prints `ready`, then waits until the follower
            # is attached (it creates /tmp/go on seeing `ready`) before printing its n lines.
            gated = lines_program(n, gate="/tmp/go")
            counts: dict[str, list[int]] = {"run": [], "follow": []}

            def via_run() -> None:
                result = sb.run("python3", program)
                counts["run"].append(len(result.stdout.split("\n")))

            def via_follow() -> float:
                proc = sb.start_process("python3", gated)
                received, start = 0, None
                for event in sb.follow_output(proc.pid):
                    if start is None:
                        assert event.line == "ready", event
                        sb.write_file("/tmp/go", b"")
                        start = time.perf_counter()
                    else:
                        received += 1
                elapsed = time.perf_counter() - start
                counts["follow"].append(received)
                sb.delete_file("/tmp/go")
                sb.kill_process(proc.pid)  # removes it (it has exited): frees its output buffer
                return elapsed

            def on_host() -> None:
                out = subprocess.run([sys.executable, *program], capture_output=True, check=True).stdout
                assert out.count(b"\n") == n

            via_run()
            via_follow()
            stream_samples: dict[str, list[float]] = {"run": [], "follow": [], "host": []}
            counts = {"run": [], "follow": []}
            for _ in range(args.line_iterations):
                stream_samples["run"].append(timed(via_run))
                stream_samples["follow"].append(via_follow())
                stream_samples["host"].append(timed(on_host))
            # Rates count the lines that arrived (see the docstring).
            streaming = [
                throughput(f"run: {n:,} lines", stream_samples["run"], [float(c) for c in counts["run"]], "lines/s"),
                throughput(
                    f"follow_output, attached before the first of {n:,} lines",
                    stream_samples["follow"],
                    [float(c) for c in counts["follow"]],
                    "lines/s",
                ),
                throughput("baseline: same program through a pipe on the host", stream_samples["host"], n, "lines/s"),
            ]
            streaming[0]["lines_received"] = counts["run"]
            streaming[1]["lines_received"] = counts["follow"]

        report("Sandbox handle: latency", latency)
        print_throughput("Sandbox handle: file transfer", files)
        print_throughput("Sandbox handle: output streaming", streaming)
        print(f"\nlines received per stream: run {counts['run']}, follow_output {counts['follow']} (of {n:,})")
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(
            json.dumps({"machine": machine(), "latency": latency, "files": files, "streaming": streaming}, indent=2)
        )
        print(f"\n(raw results: {args.out})")
        client.close()
    finally:
        server.stop()
        shutil.rmtree(server.data_dir, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
