"""Whether a sandbox's cost grows with the number of sandboxes already up: create, delete and
`run("true")` on an empty server, then the same with N idle sandboxes running, in one run.

Usage (as root, after `scripts/setup.sh`; N idle sandboxes need about 1.5 MB of host memory
each plus their agents, and a loop device each):

    .venv/bin/python bench/scale_bench.py [--idle 1000] [--samples 40]

Starts its own `alcove serve` (disk overcommit raised: the idle sandboxes write nothing).
Fills and drains with four requests at a time; measures one request at a time, back to back
and then spaced (`--pause-ms`, 200 by default): back to back, a create or delete also competes
with the background work its predecessor left (a spare layer formatted for the next create, a
deleted sandbox's files and file systems let go on two CPUs), spaced it is measured alone.

Each level is measured in a steady state: before it, the host's dirty pages are written
back (`sync`) and the bench waits until the kernel reports little left to write. Making
1000 sandboxes leaves about 300 MB of fresh file-system metadata (their disks) that the
kernel writes back over the next minute; measured during that, every create waits behind
it. `--no-settle` measures right after the fill instead (and says so in the report).

The baselines, at each level: raw `runc run` of `/bin/true` on the built-in image's root file
system (`runc spec`'s bundle: its own network, PID and mount namespaces and cgroup), twice:

* in the host's mount namespace, which gains a handful of mounts with every sandbox, and runc
  copies and reads the whole table on every call;
* in a private mount namespace made before the fill (a holder process's, entered with
  `nsenter`), which the sandboxes' mounts never reach: as Alcove runs runc. What this one
  gains with 1000 sandboxes up is what the kernel's own work per container costs more.

After the drain the empty server is measured again: how far the two empty levels differ is
the run's own scatter (the host warms, caches fill, kernel objects of the drained sandboxes
linger), against which the growth with N up is read. The ratios printed last compare the N-up
level with each.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from baseline import runc_run_true  # noqa: E402
from common import REPO, AlcoveServer, percentile, report, summarize, timed  # noqa: E402

SMALL = {"cpus": 0.5, "memory_mb": 512, "disk_mb": 1024}
# The built-in image's root file system, for the raw `runc run` baseline.
ROOTFS = Path(os.environ.get("ALCOVE_IMAGES_DIR", "/var/lib/alcove/images")) / "debian" / "rootfs"


def private_mount_namespace() -> subprocess.Popen:
    """A process holding a private copy of the host's mount namespace as it is now: mounts
    made later on the host (the sandboxes') never reach it."""
    holder = subprocess.Popen(["unshare", "--mount", "--propagation", "private", "sleep", "infinity"])
    own = os.readlink("/proc/self/ns/mnt")
    deadline = time.monotonic() + 10
    while os.readlink(f"/proc/{holder.pid}/ns/mnt") == own:  # until it has unshared
        if holder.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError("unshare --mount did not make a mount namespace")
        time.sleep(0.01)
    return holder


def measure(client, samples: int, runs: int, pause_s: float) -> list[list[float]]:
    """Create, delete and run("true") latencies, one request at a time; then creates and
    deletes again with `pause_s` between them (each then measured without the background
    work of the one before: a spare layer formatted, a deleted sandbox's files and file
    systems let go)."""
    made: list[str] = []
    creates = []
    for _ in range(samples):
        creates.append(timed(lambda: made.append(client.create(**SMALL).sandbox_id)))
    deletes = [timed(lambda i=i: client.delete(i)) for i in made]
    with client.create_and_connect(**SMALL) as sb:
        for _ in range(5):
            sb.run("true")
        run = [timed(lambda: sb.run("true")) for _ in range(runs)]
    made.clear()
    spaced_creates, spaced_deletes = [], []
    for _ in range(samples):
        time.sleep(pause_s)
        spaced_creates.append(timed(lambda: made.append(client.create(**SMALL).sandbox_id)))
    for i in made:
        time.sleep(pause_s)
        spaced_deletes.append(timed(lambda i=i: client.delete(i)))
    return [creates, deletes, run, spaced_creates, spaced_deletes]


SETTLED_DIRTY_KB = 16 * 1024  # what `sync` may leave (pages dirtied meanwhile)


def dirty_kb() -> int:
    """Dirty and under-writeback memory of the host, KiB (/proc/meminfo)."""
    total = 0
    for line in Path("/proc/meminfo").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("Dirty", "Writeback"):
            total += int(value.split()[0])
    return total


def settle(timeout_s: float = 180.0) -> float:
    """Writes the host's dirty pages back and waits until little is left; seconds it took."""
    started = time.monotonic()
    os.sync()
    while dirty_kb() > SETTLED_DIRTY_KB and time.monotonic() - started < timeout_s:
        time.sleep(0.5)
    return time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--idle", type=int, default=1000, help="idle sandboxes to hold up")
    parser.add_argument("--samples", type=int, default=40, help="creates and deletes measured at each level")
    parser.add_argument("--runs", type=int, default=100, help='run("true") round trips measured at each level')
    parser.add_argument(
        "--no-settle", action="store_true", help="measure right after the fill, while its writes go to disk"
    )
    parser.add_argument(
        "--pause-ms", type=int, default=200, help="time between the spaced creates and deletes"
    )
    parser.add_argument(
        "--baseline-runs", type=int, default=20, help="raw `runc run` of /bin/true timed at each level (0: none)"
    )
    args = parser.parse_args()

    from alcove.sandbox import SandboxClient

    os.environ.setdefault("ALCOVE_DISK_OVERCOMMIT", "1000")
    holder = private_mount_namespace()
    in_private = ["nsenter", f"--mount=/proc/{holder.pid}/ns/mnt", "--"]
    server = AlcoveServer()
    server.start()
    idle: list[str] = []
    try:
        client = SandboxClient(api_url=server.url, timeout=600)
        with client.create_and_connect(**SMALL) as sb:
            sb.run("true")  # warm-up
        settled = [] if args.no_settle else [settle()]
        empty = measure(client, args.samples, args.runs, args.pause_ms / 1000)
        raw_empty = runc_run_true(ROOTFS, args.baseline_runs)
        private_empty = runc_run_true(ROOTFS, args.baseline_runs, launcher=in_private)

        started = time.monotonic()
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            for sandbox_id in pool.map(lambda _: client.create(**SMALL).sandbox_id, range(args.idle)):
                idle.append(sandbox_id)
        fill_s = time.monotonic() - started
        if not args.no_settle:
            settled.append(settle())
        full = measure(client, args.samples, args.runs, args.pause_ms / 1000)
        raw_full = runc_run_true(ROOTFS, args.baseline_runs)
        private_full = runc_run_true(ROOTFS, args.baseline_runs, launcher=in_private)

        started = time.monotonic()
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            list(pool.map(client.delete, idle))
        drain_s = time.monotonic() - started
        idle.clear()
        if not args.no_settle:
            settled.append(settle())
        again = measure(client, args.samples, args.runs, args.pause_ms / 1000)

        n = args.idle
        when = (
            "measured right after the fill"
            if args.no_settle
            else "each level measured after a sync (" + ", ".join(f"{s:.0f} s" for s in settled) + ")"
        )
        rows = [
            summarize("create (blocking), empty server", empty[0]),
            summarize(f"create (blocking), {n} up", full[0]),
            summarize("delete, empty server", empty[1]),
            summarize(f"delete, {n} up", full[1]),
            summarize('run("true"), empty server', empty[2]),
            summarize(f'run("true"), {n} up', full[2]),
            summarize("create (blocking), empty server again, after the drain", again[0]),
            summarize("delete, empty server again, after the drain", again[1]),
            summarize('run("true"), empty server again, after the drain', again[2]),
        ]
        spaced = f"{args.pause_ms} ms apart"
        for k, what in ((3, "create (blocking)"), (4, "delete")):
            rows += [
                summarize(f"{what}, {spaced}, empty server", empty[k]),
                summarize(f"{what}, {spaced}, {n} up", full[k]),
                summarize(f"{what}, {spaced}, empty server again", again[k]),
            ]
        if raw_empty and raw_full:
            rows += [
                summarize("baseline: raw `runc run` of /bin/true, host mount namespace, empty server", raw_empty),
                summarize(f"baseline: raw `runc run` of /bin/true, host mount namespace, {n} up", raw_full),
                summarize("baseline: raw `runc run` of /bin/true, private mount namespace, empty server", private_empty),
                summarize(f"baseline: raw `runc run` of /bin/true, private mount namespace, {n} up", private_full),
            ]
        report(
            f"Cost with {n} idle sandboxes up (fill {fill_s:.0f} s, drain {drain_s:.0f} s, 4 at a time; {when})",
            rows,
            REPO / "bench/results/scale.json",
        )
        print(f"\nRatio of p50 with {n} up to the empty server (before the fill / after the drain):\n")
        names = ("create", "delete", 'run("true")', f"create, {spaced}", f"delete, {spaced}")
        for name, before, up, after in zip(names, empty, full, again, strict=True):
            mid = percentile(up, 50)
            first, second = mid / percentile(before, 50), mid / percentile(after, 50)
            print(f"* {name}: {first:.2f}× / {second:.2f}×")
        client.close()
    finally:
        # Sandboxes outlive a stopped server: end every one this run made (also the ones a
        # failed fill made but did not hand back) before stopping it.
        cleanup = SandboxClient(api_url=server.url, timeout=600)
        left = [s.sandbox_id for s in cleanup.list()]
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            list(pool.map(cleanup.delete, left))
        cleanup.close()
        server.stop()
        shutil.rmtree(server.data_dir, ignore_errors=True)
        holder.kill()
        holder.wait()


if __name__ == "__main__":
    main()
