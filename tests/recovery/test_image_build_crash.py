"""A server SIGKILLed in the middle of a build: after a restart on the same data dir the
image is not listed, the builder sandbox is ended (no container, mount or cgroup of it is
left), and the store's work directory holds nothing of the dead server."""

from __future__ import annotations

import os
import shutil
import threading

from framework.images_api import build, context_tar, get_image, list_images
from framework.server import IMAGES_DIR, AlcoveServer
from framework.host import wait_for


def test_sigkill_during_a_build_leaves_no_image_and_no_builder():
    srv = AlcoveServer()
    srv.start()
    name = f"e2e-crash-{os.urandom(4).hex()}/built:1"
    ctx = context_tar({"Dockerfile": "FROM alcove/debian\nRUN echo started && sleep 600\n"})
    seen: dict[str, object] = {}

    def run() -> None:
        try:
            seen["result"] = build(srv, ctx, name, sse=True, no_cache=True)
        except Exception as exc:  # noqa: BLE001 (the server dies under it)
            seen["error"] = exc

    t = threading.Thread(target=run, daemon=True)
    t.start()
    try:
        # The RUN step runs once a builder sandbox is live.
        assert wait_for(lambda: bool(srv.live_sandboxes()), 120), srv.log_tail()
        (builder,) = srv.live_sandboxes()
        old_pid = srv.proc.pid if srv.proc else 0
        srv.kill()
        t.join(60)
        srv.start()
        assert name not in {n for i in list_images(srv) for n in i["names"]}
        assert get_image(srv, name).status_code == 404
        assert srv.live_sandboxes() == [], "the builder sandbox was ended at start"
        info = srv.api("GET", f"/v1/namespaces/default/sandboxes/{builder['id']}").json()
        assert info["status"] in ("terminated", "failed"), info
        # Nothing of the builder is mounted on the host any more.
        with open("/proc/self/mountinfo") as f:
            assert builder["id"] not in f.read()
        tmp = IMAGES_DIR / "store" / "tmp"
        leftovers = [p for p in (os.listdir(tmp) if tmp.exists() else [])
                     if p.startswith(f"{old_pid}.")]
        assert leftovers == [], leftovers
    finally:
        srv.stop()
        shutil.rmtree(srv.data_dir, ignore_errors=True)
