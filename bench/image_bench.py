"""Image pulls and starts: a cold pull of the Debian test image (~250 MB unpacked, one layer)
from a loopback registry, a warm pull of the same reference (everything `exists`), and the
time to a first command in a sandbox of a pulled busybox image.

The images are the e2e fixtures (tests/framework/image_fixtures.py): the Debian one is built
from the built-in rootfs once and cached under /var/cache/alcove/test-images.

Usage (as root, after `scripts/setup.sh`, once the image routes exist):

    .venv/bin/python bench/image_bench.py [--pulls 5] [--starts 20]
"""

from __future__ import annotations

import argparse
import secrets
import shutil
import sys
import tempfile
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import REPO, AlcoveServer, report, summarize, timed  # noqa: E402
from framework import image_fixtures as fx  # noqa: E402
from framework.images_api import image_path  # noqa: E402
from framework.registry import Registry  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pulls", type=int, default=5)
    parser.add_argument("--starts", type=int, default=20)
    args = parser.parse_args()

    from alcove.sandbox import SandboxClient

    token = secrets.token_hex(4)
    work = Path(tempfile.mkdtemp(prefix="image-bench-"))
    debian = fx.make_debian_layout()
    busybox = fx.make_busybox_layout(work / "busybox")
    rows = []
    with Registry() as reg:
        reg.push(debian.path, debian.tag, f"bench-{token}/debian")
        reg.push(busybox.path, busybox.tag, f"bench-{token}/busybox")
        debian_ref = reg.ref(f"bench-{token}/debian", debian.tag)
        busybox_ref = reg.ref(f"bench-{token}/busybox", busybox.tag)
        srv = AlcoveServer()
        srv.start()
        try:
            http = httpx.Client(base_url=srv.url, timeout=600)

            def do_pull(ref: str) -> None:
                http.post("/images/pull", json={"reference": ref}).raise_for_status()

            def drop(ref: str) -> None:
                http.delete(image_path(ref)).raise_for_status()

            cold, warm = [], []
            for _ in range(args.pulls):
                cold.append(timed(lambda: do_pull(debian_ref)))
                warm.append(timed(lambda: do_pull(debian_ref)))
                drop(debian_ref)
            rows.append(summarize("pull debian (cold, ~90 MB gzip)", cold))
            rows.append(summarize("pull debian (warm: layers exist)", warm))

            do_pull(busybox_ref)
            client = SandboxClient(api_url=srv.url)
            starts = []
            for _ in range(args.starts):
                def start() -> None:
                    with client.create_and_connect(image=busybox_ref) as sb:
                        sb.run("true")

                starts.append(timed(start))
            rows.append(summarize("create + first run (busybox image) + delete", starts))
            drop(busybox_ref)
        finally:
            srv.stop()
            shutil.rmtree(srv.data_dir, ignore_errors=True)
            shutil.rmtree(work, ignore_errors=True)
    report("Images", rows, REPO / "bench" / "results" / "image_bench.json")


if __name__ == "__main__":
    main()
