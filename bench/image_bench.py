"""Images, side by side with their baselines in one run:

* pull + unpack of the Debian test image (~90 MB gzip, ~250 MB unpacked, one layer) from a
  loopback registry, cold (nothing stored), against `skopeo copy` into an OCI layout plus
  `umoci unpack` of it (the same bytes fetched and unpacked by the usual tools); and a warm
  pull (every layer stored already);
* time to interactive (create → first `run` result) of a sandbox of that pulled image, against
  the built-in `alcove/debian` (the same files, adopted into the store by setup);
* a Dockerfile build (FROM alcove/debian, RUN, COPY, ENV, WORKDIR) done first with no cache,
  against the same build again with every step cached.

The images are the e2e fixtures (tests/framework/image_fixtures.py): the Debian one is built
from the built-in rootfs once and cached under /var/cache/alcove/test-images.

Usage (as root, after `scripts/setup.sh`):

    .venv/bin/python bench/image_bench.py [--pulls 5] [--starts 20] [--builds 5]
"""

from __future__ import annotations

import argparse
import secrets
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import REPO, AlcoveServer, report, summarize, timed  # noqa: E402
from framework import image_fixtures as fx  # noqa: E402
from framework.images_api import context_tar, image_path  # noqa: E402
from framework.registry import Registry  # noqa: E402

DOCKERFILE = """\
FROM alcove/debian
ENV BENCH=1
WORKDIR /srv/app
COPY app.py /srv/app/app.py
RUN python3 -c "print('built')" > /srv/app/built.txt && mkdir -p /srv/data
"""


def skopeo_umoci(ref: str, work: Path) -> None:
    """The baseline: fetch the image into an OCI layout, then unpack it to a bundle."""
    layout, bundle = work / "layout", work / "bundle"
    work.mkdir(parents=True)
    subprocess.run(["skopeo", "copy", "--quiet", "--src-tls-verify=false",
                    f"docker://{ref}", f"oci:{layout}:bench"], check=True)
    subprocess.run(["umoci", "unpack", "--image", f"{layout}:bench", str(bundle)], check=True,
                   stdout=subprocess.DEVNULL)
    shutil.rmtree(work)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pulls", type=int, default=5)
    parser.add_argument("--starts", type=int, default=20)
    parser.add_argument("--builds", type=int, default=5)
    args = parser.parse_args()

    from alcove.sandbox import SandboxClient

    token = secrets.token_hex(4)
    work = Path(tempfile.mkdtemp(prefix="image-bench-"))
    debian = fx.make_debian_layout()
    rows = []
    with Registry() as reg:
        reg.push(debian.path, debian.tag, f"bench-{token}/debian")
        debian_ref = reg.ref(f"bench-{token}/debian", debian.tag)
        srv = AlcoveServer()
        srv.start()
        try:
            http = httpx.Client(base_url=srv.url, timeout=600)

            def do_pull(ref: str) -> None:
                http.post("/images/pull", json={"reference": ref}).raise_for_status()

            def drop(ref: str) -> None:
                http.delete(image_path(ref)).raise_for_status()

            # --- pulls ------------------------------------------------------------------
            base, cold, warm = [], [], []
            for i in range(args.pulls):
                base.append(timed(lambda: skopeo_umoci(debian_ref, work / f"b{i}")))
                cold.append(timed(lambda: do_pull(debian_ref)))
                warm.append(timed(lambda: do_pull(debian_ref)))
                drop(debian_ref)
            rows.append(summarize("baseline: skopeo copy + umoci unpack (debian, cold)", base))
            rows.append(summarize("alcove pull (debian, cold: fetch, verify, unpack)", cold))
            rows.append(summarize("alcove pull (debian, warm: layers exist)", warm))

            # --- time to interactive ----------------------------------------------------
            do_pull(debian_ref)
            client = SandboxClient(api_url=srv.url)
            for label, image in (("built-in alcove/debian", "alcove/debian"),
                                 ("pulled debian (same files)", debian_ref)):
                samples = []
                for _ in range(args.starts):
                    box: list = []

                    def tti() -> None:
                        sb = client.create_and_connect(image=image)
                        box.append(sb)
                        sb.run("true")

                    samples.append(timed(tti))
                    box[0].terminate()
                rows.append(summarize(f"TTI create → first run: {label}", samples))
            drop(debian_ref)

            # --- builds -----------------------------------------------------------------
            name = f"bench-{token}/built:1"
            ctx = context_tar({"Dockerfile": DOCKERFILE, "app.py": "print('hi')\n"})

            def do_build(no_cache: bool) -> None:
                http.post("/images/build", params={"name": name, "no_cache": str(no_cache).lower()},
                          content=ctx, headers={"Content-Type": "application/x-tar"}
                          ).raise_for_status()

            first, cached = [], []
            for _ in range(args.builds):
                first.append(timed(lambda: do_build(True)))
                cached.append(timed(lambda: do_build(False)))
            rows.append(summarize("build (5 steps, no cache: one RUN in a builder sandbox)", first))
            rows.append(summarize("rebuild (5 steps, every step cached)", cached))
            drop(name)
        except Exception:
            print(srv.log_tail(60), file=sys.stderr)
            raise
        finally:
            srv.stop()
            shutil.rmtree(srv.data_dir, ignore_errors=True)
            shutil.rmtree(work, ignore_errors=True)
    report("Images", rows, REPO / "bench" / "results" / "image_bench.json")


if __name__ == "__main__":
    main()
