"""Baselines measured in the same run: raw `runc run` of `true` on the same image."""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path


def runc_run_true(
    rootfs: Path, iterations: int, runtime: str = "runc", launcher: list[str] | None = None
) -> list[float]:
    """Times `runc run` (or another OCI runtime's, e.g. `crun`) of `/bin/true` in a minimal
    bundle over `rootfs` (read-only), started through `launcher` (say, an `nsenter` into
    another mount namespace) if given."""
    import time

    work = Path(tempfile.mkdtemp(prefix="alcove-bench-runc-"))
    try:
        bundle = work / "bundle"
        bundle.mkdir()
        subprocess.run(["runc", "spec"], cwd=bundle, check=True)  # the same spec for both
        cfg = json.loads((bundle / "config.json").read_text())
        # The built-in image's rootfs is a symlink into the image store; runc wants the real path.
        cfg["root"] = {"path": str(rootfs.resolve()), "readonly": True}
        cfg["process"]["terminal"] = False
        cfg["process"]["args"] = ["/bin/true"]
        (bundle / "config.json").write_text(json.dumps(cfg))
        root = work / "state"
        samples = []
        for _ in range(iterations):
            cid = f"bench-{uuid.uuid4().hex[:12]}"
            start = time.perf_counter()
            subprocess.run(
                [*(launcher or []), runtime, "--root", str(root), "run", "--bundle", str(bundle), cid],
                check=True,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
            )
            samples.append(time.perf_counter() - start)
        return samples
    finally:
        shutil.rmtree(work, ignore_errors=True)
