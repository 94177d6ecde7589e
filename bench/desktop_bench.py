"""Desktop: time to the first screenshot (create -> PNG bytes) and screenshots of a 1280x800
desktop, through Alcove's Python SDK and the official tensorlake SDK, beside capturing the same
screen inside the sandbox with `xwd` (no network, no PNG: the floor), in one run.

Usage (as root, after `scripts/setup.sh`):

    .venv/bin/python bench/desktop_bench.py [--first 5] [--shots 30]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import REPO, AlcoveServer, report, summarize, timed  # noqa: E402

DESKTOP = "tensorlake/ubuntu-vnc"
XWD_LOOP = """
import subprocess, sys, time, json
out = []
for _ in range(int(sys.argv[1])):
    t = time.perf_counter()
    subprocess.run(["xwd", "-root", "-silent", "-out", "/tmp/shot.xwd"], check=True)
    out.append(time.perf_counter() - t)
print(json.dumps(out))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--first", type=int, default=5, help="desktops created per client")
    parser.add_argument("--shots", type=int, default=30, help="screenshots per client")
    args = parser.parse_args()

    from alcove.sandbox import SandboxClient

    try:
        import tensorlake.sandbox as tl
    except ImportError:
        tl = None

    srv = AlcoveServer()
    srv.start()
    rows = []
    try:
        alcove_client = SandboxClient(api_url=srv.url)
        clients = {"alcove": alcove_client}
        if tl is not None:
            clients["tensorlake"] = tl.SandboxClient.for_localhost(api_url=srv.url)

        first: dict[str, list[float]] = {name: [] for name in clients}
        for _ in range(args.first):
            for name, client in clients.items():
                holder: dict = {}

                def create_and_shoot() -> None:
                    sb = client.create_and_connect(image=DESKTOP)
                    holder["sb"] = sb
                    with sb.connect_desktop(password="tensorlake", connect_timeout=30) as desktop:
                        assert desktop.screenshot()[:4] == b"\x89PNG"

                first[name].append(timed(create_and_shoot))
                alcove_client.delete(holder["sb"].sandbox_id)

        shots: dict[str, list[float]] = {name: [] for name in clients}
        with alcove_client.create_and_connect(image=DESKTOP) as sb:
            # Something on the screen besides the background.
            sb.start_process("xterm", ["-geometry", "120x40+50+50"])
            for name, client in clients.items():
                handle = sb if name == "alcove" else client.connect(sb.sandbox_id)
                with handle.connect_desktop(password="tensorlake", connect_timeout=30) as desktop:
                    assert (desktop.width, desktop.height) == (1280, 800)
                    desktop.screenshot()  # warm-up
                    for _ in range(args.shots):
                        shots[name].append(timed(desktop.screenshot))
            xwd = json.loads(sb.run("python3", ["-c", XWD_LOOP, str(args.shots)]).stdout)

        for name in clients:
            rows.append(summarize(f"create -> first screenshot ({name} SDK)", first[name]))
        for name in clients:
            rows.append(summarize(f"screenshot 1280x800 PNG ({name} SDK)", shots[name]))
        rows.append(summarize("baseline: xwd of the same screen inside the sandbox", xwd))
        report("Desktop", rows, REPO / "bench/results/desktop.json")
    finally:
        srv.stop()
        shutil.rmtree(srv.data_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
