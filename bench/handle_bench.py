"""The sandbox handle: `run("true")` round trip, file transfer, and output streaming, beside
what the host does alone.

Usage (as root, after `scripts/setup.sh`, and `npm ci` in sdk/typescript for the TypeScript rows):

    .venv/bin/python bench/handle_bench.py [--runs 300] [--file-mib 256] [--file-iterations 5]
                                           [--lines 1000000] [--line-iterations 3]
                                           [--sections latency,files,streaming] [--no-ts]

Starts its own `alcove serve` on a free port with a temporary data dir, and measures in one
sandbox, in one run:

* `run("true")` round trip (p50/p95 over `--runs` calls, after a warm-up), and `write_file` of
  4 KiB over an existing file beside the host writing, fsyncing and renaming the same alone;
* `write_file` of a `--file-mib` MiB local file (streamed from the open file, and from bytes in
  memory) and a streamed `read_file_stream` of it (chunks counted and dropped), each
  `--file-iterations` times, beside a local `cp` of the same file on the host (and `cp` followed by an fsync, since the sandbox's
  PUT fsyncs), in MiB/s;
* a process printing `--lines` lines consumed through `run` and through `start_process` +
  `follow_output`, with Alcove's Python SDK (sync and async) and TypeScript SDK
  (`bench/handle_bench_ts.mjs`, a node process per sample, against `--ts-sdk`), beside the same
  program read through a pipe on the host, and the run and follow streams read raw (httpx,
  nothing decoded: what the server delivers; the follow stream also with `?batch=true`, as the
  SDKs ask for it). In lines/s and in % of the pipe. Rates count the lines that
  arrived: `run` holds a fast process back, a follow stream does not, and once it lags more than
  the 16 MiB output buffer behind, the oldest lines are dropped from under it (the lines received
  are printed and kept in the JSON). Samples of all clients are interleaved, so that a slow phase
  of the machine hits each alike.

Prints markdown tables and writes `bench/results/handle.json`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

import httpx

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


FOLLOW_GATE = "/tmp/go"


def count_events(chunks: Iterable[bytes]) -> int:
    """How many events (blank lines) the chunks of an SSE body hold."""
    events, last = 0, b""
    for chunk in chunks:
        events += (last + chunk[:1]).count(b"\n\n") + chunk.count(b"\n\n")
        last = chunk[-1:]
    return events


def count_batched_lines(chunks: Iterable[bytes]) -> int:
    """How many lines the `output_batch` events of an SSE body hold: one per non-empty `lines`
    array, and one per `","` separator but the one after each event's stream (right for lines
    without escaped quotes, such as these)."""
    lines, carry = 0, b""
    patterns = ((b'"lines":["', 1), (b'","', 1), (b'","timestamp":', -1))
    for chunk in chunks:
        joined = carry + chunk
        # What lies wholly in the carry was counted with the chunk before.
        lines += sum(sign * (joined.count(p) - carry.count(p)) for p, sign in patterns)
        carry = joined[-15:]
    return lines


class StreamingBench:
    """Output streaming samples of every client against one sandbox (see the module docstring)."""

    def __init__(self, sb, server_url: str, n: int, ts_sdk: Path | None, node: str) -> None:
        from alcove.sandbox import AsyncSandboxClient
        from alcove.sandbox._protocol import target_for

        self.sb, self.n, self.ts_sdk, self.node, self.server_url = sb, n, ts_sdk, node, server_url
        self.program = lines_program(n)
        # For the follow streams the process prints `ready`, then waits until the follower is
        # attached (it creates the gate on seeing `ready`) before printing its n lines.
        self.gated = lines_program(n, gate=FOLLOW_GATE)
        self.loop = asyncio.new_event_loop()
        self.aclient = AsyncSandboxClient(api_url=server_url)
        self.asb = self.loop.run_until_complete(self.aclient.connect(sb.sandbox_id))
        self.target = target_for(sb.info())

    def close(self) -> None:
        self.loop.run_until_complete(self.aclient.close())
        self.loop.close()

    # Each sample returns (seconds, lines received).

    def python_run(self) -> tuple[float, int]:
        start = time.perf_counter()
        result = self.sb.run("python3", self.program)
        return time.perf_counter() - start, len(result.stdout.split("\n"))

    def python_async_run(self) -> tuple[float, int]:
        async def sample() -> tuple[float, int]:
            start = time.perf_counter()
            result = await self.asb.run("python3", self.program)
            return time.perf_counter() - start, len(result.stdout.split("\n"))

        return self.loop.run_until_complete(sample())

    def python_follow(self) -> tuple[float, int]:
        proc = self.sb.start_process("python3", self.gated)
        received, start = 0, 0.0
        for event in self.sb.follow_output(proc.pid):
            if not start:
                assert event.line == "ready", event
                self.sb.write_file(FOLLOW_GATE, b"")
                start = time.perf_counter()
            else:
                received += 1
        elapsed = time.perf_counter() - start
        self.sb.delete_file(FOLLOW_GATE)
        self.sb.kill_process(proc.pid)  # removes it (it has exited): frees its output buffer
        return elapsed, received

    def python_follow_batches(self) -> tuple[float, int]:
        """`follow_output_batches`: one object per read, its lines a list (no object per line)."""
        proc = self.sb.start_process("python3", self.gated)
        received, start = 0, 0.0
        for batch in self.sb.follow_output_batches(proc.pid):
            if not start:
                assert batch.lines[0] == "ready", batch
                self.sb.write_file(FOLLOW_GATE, b"")
                start = time.perf_counter()
                received += len(batch.lines) - 1
            else:
                received += len(batch.lines)
        elapsed = time.perf_counter() - start
        self.sb.delete_file(FOLLOW_GATE)
        self.sb.kill_process(proc.pid)
        return elapsed, received

    def python_async_follow(self) -> tuple[float, int]:
        async def sample() -> tuple[float, int]:
            proc = await self.asb.start_process("python3", self.gated)
            received, start = 0, 0.0
            async for event in self.asb.follow_output(proc.pid):
                if not start:
                    assert event.line == "ready", event
                    await self.asb.write_file(FOLLOW_GATE, b"")
                    start = time.perf_counter()
                else:
                    received += 1
            elapsed = time.perf_counter() - start
            await self.asb.delete_file(FOLLOW_GATE)
            await self.asb.kill_process(proc.pid)
            return elapsed, received

        return self.loop.run_until_complete(sample())

    def typescript(self, mode: str) -> tuple[float, int]:
        assert self.ts_sdk is not None
        program = self.gated if mode.startswith("follow") else self.program
        # fmt: off
        command = [
            self.node, str(REPO / "bench/handle_bench_ts.mjs"), "--api-url", self.server_url,
            "--sandbox", self.sb.sandbox_id, "--mode", mode, "--program", json.dumps(program),
            "--gate", FOLLOW_GATE, "--sdk", str(self.ts_sdk),
        ]
        # fmt: on
        out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
        sample = json.loads(out.strip().splitlines()[-1])
        return sample["seconds"], sample["lines"]

    def raw_run(self) -> tuple[float, int]:
        """The run stream read with httpx and nothing decoded: events counted by their blank line."""
        body = {"command": "python3", "args": self.program}
        with httpx.Client(timeout=None) as http:
            start = time.perf_counter()
            with http.stream("POST", self._agent_url("run"), json=body, headers=self._agent_headers()) as response:
                events = count_events(response.iter_raw())
            elapsed = time.perf_counter() - start
        return elapsed, events - 2  # started and exit

    def raw_follow(self, batch: bool = False) -> tuple[float, int]:
        """The follow stream read with httpx and nothing decoded, timed from the gate on; with
        `batch`, asking for `output_batch` events as Alcove's SDKs do."""
        proc = self.sb.start_process("python3", self.gated)
        timing: list[float] = []

        def chunks(response: httpx.Response) -> Iterator[bytes]:
            for chunk in response.iter_raw():
                if not timing:  # the `ready` line: let the process go
                    self.sb.write_file(FOLLOW_GATE, b"")
                    timing.append(time.perf_counter())
                yield chunk

        with httpx.Client(timeout=None) as http:
            url = self._agent_url(f"{proc.pid}/output/follow") + ("?batch=true" if batch else "")
            with http.stream("GET", url, headers=self._agent_headers()) as resp:
                received = count_batched_lines(chunks(resp)) - 1 if batch else count_events(chunks(resp)) - 2
            elapsed = time.perf_counter() - timing[0]
        self.sb.delete_file(FOLLOW_GATE)
        self.sb.kill_process(proc.pid)
        return elapsed, received  # without ready (and eof)

    def _agent_url(self, path: str) -> str:
        return f"{self.target.base_url}/api/v1/processes/{path}"

    def _agent_headers(self) -> dict[str, str]:
        return {**self.target.headers, "Accept": "text/event-stream"}

    def host_pipe(self) -> tuple[float, int]:
        start = time.perf_counter()
        out = subprocess.run([sys.executable, *self.program], capture_output=True, check=True).stdout
        elapsed = time.perf_counter() - start
        assert out.count(b"\n") == self.n
        return elapsed, self.n

    def measure(self, iterations: int) -> list[dict]:
        kinds = [
            ("run: Python SDK, sync", self.python_run),
            ("run: Python SDK, async", self.python_async_run),
            ("run: TypeScript SDK", lambda: self.typescript("run")),
            ("follow_output: Python SDK, sync", self.python_follow),
            ("follow_output: Python SDK, async", self.python_async_follow),
            ("followOutput: TypeScript SDK", lambda: self.typescript("follow")),
            ("follow_output_batches: Python SDK, sync", self.python_follow_batches),
            ("followOutputBatches: TypeScript SDK", lambda: self.typescript("follow-batches")),
            ("reference: run stream read raw (httpx, nothing decoded)", self.raw_run),
            ("reference: follow stream read raw (httpx, nothing decoded)", self.raw_follow),
            ("reference: follow stream read raw, batches (?batch=true)", lambda: self.raw_follow(batch=True)),
            ("baseline: same program through a pipe on the host", self.host_pipe),
        ]
        if self.ts_sdk is None:
            kinds = [kind for kind in kinds if "TypeScript" not in kind[0]]
        for _, sample in kinds:
            sample()  # warm-up
        samples: dict[str, list[tuple[float, int]]] = {name: [] for name, _ in kinds}
        for _ in range(iterations):
            for name, sample in kinds:  # interleaved
                samples[name].append(sample())
        rows = []
        for name, got in samples.items():
            row = throughput(
                f"{name} ({self.n:,} lines)", [s for s, _ in got], [float(lines) for _, lines in got], "lines/s"
            )
            row["lines_received"] = [lines for _, lines in got]
            rows.append(row)
        pipe = rows[-1]["rate_p50"]
        for row in rows:
            row["pct_of_pipe"] = round(100 * row["rate_p50"] / pipe, 1)
        return rows


def print_streaming(rows: list[dict]) -> None:
    print("\n## Sandbox handle: output streaming\n")
    print("| benchmark | n | lines received (median) | p50 s | rate (p50) | rate (best) | % of the pipe (p50) |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        received = f"{statistics.median(r['lines_received']):,.0f}"
        print(
            f"| {r['name']} | {r['n']} | {received} | {r['p50_ms'] / 1000:.3f} | {r['rate_p50']:,.0f} lines/s "
            f"| {r['rate_best']:,.0f} lines/s | {r['pct_of_pipe']:.0f} % |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=300, help="run('true') round trips (after 20 warm-ups)")
    parser.add_argument("--file-mib", type=int, default=256, help="size of the transferred file, MiB")
    parser.add_argument("--file-iterations", type=int, default=5, help="timed transfers each way")
    parser.add_argument("--lines", type=int, default=1_000_000, help="lines printed by the streaming process")
    parser.add_argument("--line-iterations", type=int, default=3, help="timed streams of each kind")
    parser.add_argument(
        "--sections", default="latency,files,streaming", help="comma-separated: latency, files, streaming"
    )
    parser.add_argument(
        "--ts-sdk",
        type=Path,
        default=REPO / "sdk/typescript/dist/index.js",
        help="the built TypeScript SDK's entry point (npm ci in sdk/typescript builds it)",
    )
    parser.add_argument("--node", default="node", help="the node executable")
    parser.add_argument("--no-ts", action="store_true", help="leave the TypeScript SDK out")
    parser.add_argument("--out", type=Path, default=REPO / "bench/results/handle.json")
    args = parser.parse_args()
    sections = set(args.sections.split(","))
    if unknown := sections - {"latency", "files", "streaming"}:
        parser.error(f"unknown sections: {sorted(unknown)}")
    ts_sdk = None if args.no_ts else args.ts_sdk.resolve()
    if "streaming" in sections and ts_sdk is not None and not ts_sdk.exists():
        parser.error(f"{ts_sdk} is missing: run `npm ci` in sdk/typescript, or pass --no-ts")

    from alcove.sandbox import SandboxClient

    work = Path(tempfile.mkdtemp(prefix="alcove-handle-bench-"))
    server = AlcoveServer()
    server.start()
    results: dict = {"machine": machine()}
    try:
        client = SandboxClient(api_url=server.url)
        with client.create_and_connect() as sb:
            if "latency" in sections:
                for _ in range(20):
                    sb.run("true")
                rt = [timed(lambda: sb.run("true")) for _ in range(args.runs)]
                results["latency"] = [summarize('run("true") round trip', rt), *small_writes(sb, work, args.runs)]
            if "files" in sections:
                results["files"] = file_transfer(sb, work, args.file_mib, args.file_iterations)
            if "streaming" in sections:
                bench = StreamingBench(sb, server.url, args.lines, ts_sdk, args.node)
                try:
                    results["streaming"] = bench.measure(args.line_iterations)
                finally:
                    bench.close()
        client.close()
    finally:
        server.stop()
        shutil.rmtree(server.data_dir, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)

    if "latency" in results:
        report("Sandbox handle: latency", results["latency"])
    if "files" in results:
        print_throughput("Sandbox handle: file transfer", results["files"])
    if "streaming" in results:
        print_streaming(results["streaming"])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))
    print(f"\n(raw results: {args.out})")


def small_writes(sb, work: Path, runs: int) -> list[dict]:
    """`write_file` of 4 KiB over an existing file (replaced whole, fsynced) beside the host doing
    the same alone: write a temporary file, fsync it, rename it over the old one."""
    data = b"s" * 4096
    remote = "/root/bench/small.txt"
    local = work / "small.txt"
    local.write_bytes(data)

    def host() -> None:
        temp = work / ".small.tmp"
        with open(temp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temp, local)

    sb.write_file(remote, data)
    samples: dict[str, list[float]] = {"write": [], "host": []}
    for _ in range(runs):
        samples["write"].append(timed(lambda: sb.write_file(remote, data)))
        samples["host"].append(timed(host))
    sb.delete_file(remote)
    return [
        summarize("write_file 4 KiB over an existing file (replaced whole, fsynced)", samples["write"]),
        summarize("baseline: host write 4 KiB + fsync + rename", samples["host"]),
    ]


def file_transfer(sb, work: Path, file_mib: int, iterations: int) -> list[dict]:
    """`write_file` and `read_file_stream` of a `file_mib` MiB file beside host `cp` (and + fsync)."""
    size = file_mib * MiB
    local = work / "payload.bin"
    digest = make_random_file(local, size)
    remote = "/root/bench/payload.bin"

    def write() -> None:
        with open(local, "rb") as f:
            sb.write_file(remote, f)

    in_memory = local.read_bytes()

    def write_bytes() -> None:
        sb.write_file(remote, in_memory)

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
    samples: dict[str, list[float]] = {"write": [], "write_bytes": [], "read": [], "cp": [], "cp_fsync": []}
    for _ in range(iterations):
        # Interleaved, so that a slow phase of the machine hits every kind alike.
        samples["write"].append(timed(write))
        samples["write_bytes"].append(timed(write_bytes))
        samples["read"].append(timed(read))
        samples["cp"].append(timed(cp))
        samples["cp_fsync"].append(timed(cp_fsync))
    mib = float(file_mib)
    rows = [
        throughput(f"write_file {file_mib} MiB (from a local file, fsynced)", samples["write"], mib, "MiB/s"),
        throughput(f"write_file {file_mib} MiB (bytes in memory, fsynced)", samples["write_bytes"], mib, "MiB/s"),
        throughput(f"read_file_stream {file_mib} MiB", samples["read"], mib, "MiB/s"),
        throughput(f"baseline: host `cp` {file_mib} MiB", samples["cp"], mib, "MiB/s"),
        throughput(f"baseline: host `cp` + fsync {file_mib} MiB", samples["cp_fsync"], mib, "MiB/s"),
    ]
    sb.delete_file(remote)
    return rows


if __name__ == "__main__":
    main()
