"""OCI runtimes side by side: `run` of /bin/true in one minimal bundle over the image's
root file system, with runc (Alcove's runtime), crun and gVisor's runsc (ptrace platform),
iterations interleaved. A runtime that cannot run here is reported with its error.

Usage (as root, after `scripts/setup.sh`; crun and runsc from Debian's packages):

    apt-get install -y crun runsc
    .venv/bin/python bench/runtimes_bench.py [--iterations 20]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import REPO, report, summarize  # noqa: E402

RUNTIMES = {
    "runc": ["runc"],
    "crun": ["crun"],
    "runsc (ptrace)": ["runsc", "--platform=ptrace", "--network=none"],
}


def bundle(root: Path, rootfs: Path) -> Path:
    b = root / "bundle"
    b.mkdir()
    subprocess.run(["runc", "spec"], cwd=b, check=True)
    spec = json.loads((b / "config.json").read_text())
    # The built-in image's rootfs is a symlink into the image store; runc wants the real path.
    spec["root"] = {"path": str(rootfs.resolve()), "readonly": True}
    spec["process"]["terminal"] = False
    spec["process"]["args"] = ["/bin/true"]
    (b / "config.json").write_text(json.dumps(spec))
    return b


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--iterations", type=int, default=20)
    args = parser.parse_args()
    images = Path(os.environ.get("ALCOVE_IMAGES_DIR", "/var/lib/alcove/images"))
    work = Path(tempfile.mkdtemp(prefix="alcove-runtimes-"))
    try:
        b = bundle(work, images / "debian/rootfs")
        samples: dict[str, list[float]] = {name: [] for name in RUNTIMES}
        errors: dict[str, str] = {}
        for i in range(args.iterations):
            for name, argv in RUNTIMES.items():
                if name in errors or shutil.which(argv[0]) is None:
                    errors.setdefault(name, "not installed")
                    continue
                cid = f"bench-{i}-{argv[0]}"
                start = time.perf_counter()
                run = subprocess.run(
                    [*argv, "run", "--bundle", str(b), cid],
                    stdin=subprocess.DEVNULL, capture_output=True, text=True,
                )
                elapsed = time.perf_counter() - start
                subprocess.run([argv[0], "delete", "-f" if argv[0] != "runsc" else "-force", cid],
                               capture_output=True)
                if run.returncode != 0:
                    errors[name] = (run.stderr.strip().splitlines() or ["failed"])[-1][:160]
                    continue
                samples[name].append(elapsed)
        rows = [summarize(f"run true: {name}", s) for name, s in samples.items() if s]
        report("OCI runtimes: run /bin/true", rows, REPO / "bench/results/runtimes.json")
        for name, err in errors.items():
            print(f"- {name}: {err}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
