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
