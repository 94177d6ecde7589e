"""Where a cold start's time goes: time to interactive (create + first `run("true")`) split into
its phases, beside raw `runc run` of `true` in the same run.

Usage (as root, after `scripts/setup.sh`):

    .venv/bin/python bench/coldstart_bench.py [--iterations 30]

Starts its own `alcove serve` with the runtime's debug log (every external command it runs is
logged with its duration, and every boot with its total), creates sandboxes one after another
through the Python SDK (each beside one raw `runc run`, interleaved), and splits each TTI into:

* `mkfs.ext4` of the writable layer (0 when a spare formatted ahead of time was taken);
* the loop mount of the layer (`LOOP_CONFIGURE` + `mount(2)`; `mount -o loop` before);
* `runc run --detach` (namespaces, cgroups, mounts, the agent exec'd);
* the rest of the boot (uid range, idmapped and overlay mounts, bundle, waiting for the agent);
* the rest of the request path (API, store, network policy, the SDK's create and first run).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from baseline import runc_run_true  # noqa: E402
from common import REPO, AlcoveServer, report, summarize  # noqa: E402


def phases(log: Path, sandbox_id: str) -> dict[str, float]:
    """Seconds per phase of one sandbox's boot, read from the server's JSON log."""
    out = {"mkfs": 0.0, "mount": 0.0, "runc": 0.0, "boot": 0.0}
    for line in log.read_text(errors="replace").splitlines():
        if sandbox_id not in line:
            continue
        try:
            fields = json.loads(line).get("fields", {})
        except json.JSONDecodeError:
            continue
        argv = fields.get("argv", "")
        if fields.get("message") == "sandbox started":
            out["boot"] = fields["elapsed_ms"] / 1000
        elif argv.startswith("mkfs.ext4"):
            out["mkfs"] = fields["elapsed_ms"] / 1000
        elif fields.get("message") == "loop mount" or argv.startswith("mount -o loop"):
            out["mount"] = fields["elapsed_ms"] / 1000
        elif " run --detach " in argv:
            out["runc"] = fields["elapsed_ms"] / 1000
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--iterations", type=int, default=30)
    args = parser.parse_args()

    from alcove.sandbox import SandboxClient

    images = Path(os.environ.get("ALCOVE_IMAGES_DIR", "/var/lib/alcove/images"))
    os.environ["RUST_LOG"] = "info,alcove_runtime=debug"
    server = AlcoveServer()
    server.start()
    try:
        client = SandboxClient(api_url=server.url)
        with client.create_and_connect() as sb:
            sb.run("true")  # warm-up: page cache, connections

        rows: dict[str, list[float]] = {k: [] for k in ("tti", "mkfs", "mount", "runc", "boot_rest", "request_rest")}
        raw: list[float] = []
        rootfs = images / "debian" / "rootfs"
        for _ in range(args.iterations):
            # Interleaved with the baseline, so that drift of a noisy machine hits both alike,
            # each after a pause, so that neither pays for the kernel's cleanup of the other.
            raw.extend(runc_run_true(rootfs, 1))
            time.sleep(0.1)
            start = time.perf_counter()
            sb = client.create_and_connect()
            sb.run("true")
            tti = time.perf_counter() - start
            client.delete(sb.sandbox_id)
            time.sleep(0.05)  # the log line of the boot is flushed
            p = phases(server.log_path, sb.sandbox_id)
            rows["tti"].append(tti)
            rows["mkfs"].append(p["mkfs"])
            rows["mount"].append(p["mount"])
            rows["runc"].append(p["runc"])
            rows["boot_rest"].append(max(p["boot"] - p["mount"] - p["runc"], 0.0))
            rows["request_rest"].append(max(tti - p["boot"] - p["mkfs"], 0.0))

        report(
            "Cold start: time to interactive and its phases",
            [
                summarize('TTI: create_and_connect + first run("true")', rows["tti"]),
                summarize("  mkfs.ext4 of the writable layer", rows["mkfs"]),
                summarize("  loop mount of the layer", rows["mount"]),
                summarize("  runc run --detach", rows["runc"]),
                summarize("  rest of the boot (ids, idmapped/overlay mounts, bundle, agent ready)", rows["boot_rest"]),
                summarize("  rest of the request path (API, store, policy, SDK, first run)", rows["request_rest"]),
                summarize("baseline: raw `runc run` of true", raw),
            ],
            REPO / "bench/results/coldstart.json",
        )
        ratio = statistics.median(rows["tti"]) / statistics.median(raw)
        print(f"\nTTI p50 / raw `runc run` p50: {ratio:.2f}x (target: at most 2x)")
        client.close()
    finally:
        server.stop()
        shutil.rmtree(server.data_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
