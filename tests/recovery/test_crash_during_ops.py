"""SIGKILL of the server in the middle of suspend, resume or snapshot: after a
restart every sandbox is running or suspended (never lost), its state intact,
and no partial snapshot is listed as completed."""

from __future__ import annotations

import shutil
import time

import pytest

from alcove.sandbox import SandboxClient
from framework.host import owned_resources
from framework.server import AlcoveServer

HOLDER = (
    "import time\n"
    "b = bytearray(200 * 1024 * 1024)\n"
    "b[::4096] = b'x' * len(b[::4096])\n"
    "i = 0\n"
    "while True:\n"
    "    i += 1\n"
    "    print(i, flush=True)\n"
    "    time.sleep(0.05)\n"
)

# Kill points after the request was accepted: early in the dump/restore, and later.
DELAYS = [0.02, 0.15, 0.35]


@pytest.fixture
def srv():
    s = AlcoveServer()
    s.start()
    yield s
    if s.proc is None:
        s.start()
    for sb in s.live_sandboxes():
        s.api("DELETE", f"/sandboxes/{sb['id']}")
    for snap in s.api("GET", "/snapshots").json()["snapshots"]:
        s.api("DELETE", f"/snapshots/{snap['id']}")
    s.stop()
    res = owned_resources(s.data_dir)
    shutil.rmtree(s.data_dir, ignore_errors=True)
    assert res.is_empty(), f"host resources left behind: {res}"


def prepare(srv: AlcoveServer, name: str):
    client = SandboxClient(api_url=srv.url)
    sandbox = client.create_and_connect(name=name)
    proc = sandbox.start_process("python", ["-c", HOLDER])
    sandbox.write_file("/root/state.txt", b"intact")
    deadline = time.monotonic() + 30
    while len(sandbox.get_output(proc.pid).lines) < 3 and time.monotonic() < deadline:
        time.sleep(0.1)
    return client, sandbox, proc


def assert_intact(srv: AlcoveServer, name: str, pid: int) -> None:
    client = SandboxClient(api_url=srv.url)
    status = client.get(name).status
    assert status in ("running", "suspended"), status
    if status == "suspended":
        client.resume(name)
    sandbox = client.connect(name)
    assert sandbox.read_file("/root/state.txt") == b"intact"
    procs = {p.pid: p.status for p in sandbox.list_processes()}
    assert procs.get(pid) == "running", procs
    before = int(sandbox.get_output(pid).lines[-1])
    deadline = time.monotonic() + 10
    while int(sandbox.get_output(pid).lines[-1]) <= before and time.monotonic() < deadline:
        time.sleep(0.1)
    assert int(sandbox.get_output(pid).lines[-1]) > before
    client.close()


@pytest.mark.parametrize("delay", DELAYS)
def test_kill_during_suspend(srv, delay):
    client, _, proc = prepare(srv, "crash-suspend")
    assert srv.api("POST", "/sandboxes/crash-suspend/suspend").status_code in (200, 202)
    time.sleep(delay)
    srv.kill()
    srv.start()
    assert_intact(srv, "crash-suspend", proc.pid)
    client.close()


@pytest.mark.parametrize("delay", DELAYS)
def test_kill_during_resume(srv, delay):
    client, _, proc = prepare(srv, "crash-resume")
    client.suspend("crash-resume")
    assert srv.api("POST", "/sandboxes/crash-resume/resume").status_code in (200, 202)
    time.sleep(delay)
    srv.kill()
    srv.start()
    assert_intact(srv, "crash-resume", proc.pid)
    client.close()


@pytest.mark.parametrize("delay", DELAYS)
def test_kill_during_snapshot(srv, delay):
    client, sandbox, proc = prepare(srv, "crash-snap")
    resp = srv.api("POST", "/sandboxes/crash-snap/snapshot")
    assert resp.status_code in (200, 202)
    snapshot_id = resp.json()["snapshot_id"]
    time.sleep(delay)
    srv.kill()
    srv.start()
    snap = srv.api("GET", f"/snapshots/{snapshot_id}").json()
    assert snap["status"] in ("completed", "failed"), snap
    if snap["status"] == "completed":
        restored = client.create_and_connect(snapshot_id=snapshot_id)
        assert restored.read_file("/root/state.txt") == b"intact"
        client.delete(restored.sandbox_id)
    else:
        assert snap["error"]
    assert_intact(srv, "crash-snap", proc.pid)
    client.close()


def test_suspended_sandbox_survives_a_restart(srv):
    client, _, proc = prepare(srv, "parked")
    client.suspend("parked")
    srv.stop()
    srv.start()
    assert client.get("parked").status == "suspended"
    assert_intact(srv, "parked", proc.pid)
    client.close()


def wait_for_pending_copies(srv: AlcoveServer, source_id: str, timeout: float = 60.0) -> None:
    """Returns once a copy of `source_id` is stored `pending` (its restore under way)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        live = srv.api("GET", "/sandboxes").json()["sandboxes"]
        if any(sb["id"] != source_id and sb["status"] == "pending" for sb in live):
            return
        time.sleep(0.01)
    raise AssertionError("no copy was ever pending")


# Kill points: a time into the dump, or once the copies are stored (their restores running) and
# then a little later. A whole copy of three takes about 250 ms here (2 vCPUs), its restores
# about 150 ms of it: a kill 0.3 s into the restores could land after the answer.
COPY_KILLS = [("dump", 0.02), ("dump", 0.35), ("restore", 0.0), ("restore", 0.05)]


@pytest.mark.parametrize(("phase", "delay"), COPY_KILLS)
def test_kill_during_copy(srv, phase, delay):
    """Killed during a copy (dump or restores): after the restart the source is intact, each
    copy is running or failed (none pending), and no dump, layer or slot of a copy is left."""
    import threading

    client, sandbox, proc = prepare(srv, "crash-copy")
    answers: list[object] = []

    def copy() -> None:
        try:
            answers.append(srv.api("POST", "/sandboxes/crash-copy/copy?times=3").status_code)
        except Exception as e:  # the server dies under the request
            answers.append(e)

    request = threading.Thread(target=copy)
    request.start()
    if phase == "restore":
        wait_for_pending_copies(srv, sandbox.sandbox_id)
    time.sleep(delay)
    srv.kill()
    request.join(60)
    srv.start()
    # The kill landed while the copy ran (the request got no answer), not after it.
    assert answers and isinstance(answers[0], Exception), answers
    assert_intact(srv, "crash-copy", proc.pid)
    snapshots = srv.data_dir / "snapshots"
    left = sorted(p.name for p in snapshots.iterdir()) if snapshots.exists() else []
    assert left == [], f"a copy's dump survived the restart: {left}"
    live = srv.api("GET", "/sandboxes").json()["sandboxes"]
    archived = srv.api("GET", "/archived-sandboxes").json()["sandboxes"]
    if phase == "restore":
        assert len(live) - 1 + len(archived) == 3, "every stored copy is accounted for"
    for sb in live:
        assert sb["status"] == "running", sb
        if sb["id"] != sandbox.sandbox_id:
            # A copy that finished before the kill is a whole sandbox.
            copy_client = SandboxClient(api_url=srv.url)
            assert copy_client.connect(sb["id"]).read_file("/root/state.txt") == b"intact"
            copy_client.close()
    for sb in archived:
        assert sb["status"] == "failed" and sb["error_details"], sb
    print(f"{phase}+{delay}: {len(live) - 1} copies adopted, {len(archived)} failed")
    client.close()
