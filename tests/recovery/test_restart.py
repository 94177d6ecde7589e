"""Restarts of `alcove serve`: running sandboxes survive, half-made ones are
cleaned up, and a stopped server leaves nothing behind."""

from __future__ import annotations

import shutil
import threading
import time

import httpx
import pytest

from alcove.sandbox import SandboxClient
from framework.host import owned_resources, settled_resources, wait_for
from framework.server import AlcoveServer


@pytest.fixture
def own_server():
    srv = AlcoveServer()
    srv.start()
    yield srv
    if srv.proc is None:
        srv.start()
    for sb in srv.live_sandboxes():
        srv.api("DELETE", f"/sandboxes/{sb['id']}")
    srv.stop()
    res = owned_resources(srv.data_dir)
    shutil.rmtree(srv.data_dir, ignore_errors=True)
    assert res.is_empty(), f"host resources left behind: {res}"


@pytest.mark.parametrize("how", ["sigterm", "sigkill"])
def test_running_sandbox_survives_a_restart(own_server, how):
    client = SandboxClient(api_url=own_server.url)
    sandbox = client.create_and_connect(name=f"survivor-{how}")
    sandbox.run("sh", ["-c", "echo kept > /root/kept.txt"])
    proc = sandbox.start_process("sleep", ["600"])
    if how == "sigkill":
        own_server.kill()
    else:
        own_server.stop()
    own_server.start()
    info = client.get(f"survivor-{how}")
    assert info.status == "running"
    again = client.connect(f"survivor-{how}")
    assert again.run("cat", ["/root/kept.txt"]).stdout == "kept"
    assert any(p.pid == proc.pid and p.status == "running" for p in again.list_processes())
    client.delete(info.sandbox_id)
    client.close()


def test_sandbox_half_made_during_a_crash_is_cleaned_up(own_server):
    # Start a create and SIGKILL the server while it is in flight.
    def create():
        try:
            httpx.post(f"{own_server.url}/sandboxes", json={}, timeout=30)
        except httpx.HTTPError:
            pass

    t = threading.Thread(target=create)
    t.start()
    time.sleep(0.03)
    own_server.kill()
    t.join()
    own_server.start()
    # The live list and the archive (where a failed one is).
    sandboxes = own_server.api("GET", "/sandboxes").json()["sandboxes"]
    sandboxes += own_server.api("GET", "/archived-sandboxes").json()["sandboxes"]
    # Either the create never got stored, or it ended up running or failed; never stuck pending.
    assert all(s["status"] in ("running", "failed") for s in sandboxes), sandboxes
    for s in sandboxes:
        if s["status"] == "running":
            own_server.api("DELETE", f"/sandboxes/{s['id']}")
    assert settled_resources(own_server.data_dir).is_empty()


def test_leftovers_of_an_unknown_sandbox_are_swept_on_start(own_server):
    client = SandboxClient(api_url=own_server.url)
    info = client.create()
    own_server.kill()
    # Forget the sandbox: the store no longer knows it, the host still has it.
    import sqlite3

    db = sqlite3.connect(own_server.data_dir / "alcove.db")
    db.execute("DELETE FROM sandboxes WHERE id = ?", (info.sandbox_id,))
    db.commit()
    db.close()
    assert not owned_resources(own_server.data_dir).is_empty()
    own_server.start()
    assert settled_resources(own_server.data_dir).is_empty()
    client.close()


def test_files_a_crash_left_in_the_trash_are_removed_on_start_without_following_links(
    own_server, tmp_path
):
    client = SandboxClient(api_url=own_server.url)
    info = client.create()
    client.delete(info.sandbox_id)
    own_server.kill()
    # A removal the crash cut short: a deleted sandbox's tree, with links out of it to a host
    # file and directory (which must survive).
    keep = tmp_path / "host"
    keep.mkdir()
    (keep / "precious.txt").write_text("host data")
    entry = own_server.data_dir / "trash" / f"{info.sandbox_id}.1.0"
    (entry / "upper" / "deep").mkdir(parents=True)
    (entry / "disk.img").write_bytes(b"\0" * 65536)
    (entry / "upper" / "deep" / "to-file").symlink_to(keep / "precious.txt")
    (entry / "upper" / "to-dir").symlink_to(keep)
    own_server.start()
    trash = own_server.data_dir / "trash"
    assert wait_for(lambda: not list(trash.iterdir()), 30), list(trash.iterdir())
    assert (keep / "precious.txt").read_text() == "host data"
    # And the server works as before.
    again = client.create()
    client.delete(again.sandbox_id)
    assert settled_resources(own_server.data_dir).is_empty()
    client.close()


def test_a_crash_right_after_deletes_leaves_no_file_system_or_loop_device_behind(own_server):
    from framework.host import sandbox_loops

    client = SandboxClient(api_url=own_server.url)
    ids = []
    for _ in range(4):
        sid = client.create().sandbox_id
        # Unwritten data in its disk, for the teardown to commit.
        client.connect(sid).write_file("/root/data.bin", b"d" * (4 << 20))
        ids.append(sid)
    assert len([loop for loop in sandbox_loops(own_server.data_dir) if any(i in loop for i in ids)]) == 4
    for sid in ids:
        client.delete(sid)
    # Killed at once: the deleted sandboxes' file systems may still be held, detached, by the
    # server. Its death lets go of them, with nothing left mounted or looped.
    own_server.kill()
    res = owned_resources(own_server.data_dir)
    assert res.mounts == [] and res.loops == [], res
    own_server.start()
    assert settled_resources(own_server.data_dir, timeout=30).is_empty()
    client.close()


def test_logs_survive_a_restart_and_catch_up_on_what_happened_meanwhile(own_server):
    client = SandboxClient(api_url=own_server.url)
    sandbox = client.create_and_connect(name="logged-restart")
    sid = sandbox.sandbox_id
    ns = "/v1/namespaces/default"

    def bodies() -> list[str]:
        resp = own_server.api("GET", f"{ns}/sandboxes/{sid}/logs")
        assert resp.status_code == 200, resp.text
        return [r["body"] for r in resp.json()["logs"]]

    sandbox.run("echo", ["before-restart"])
    wait_for(lambda: "before-restart" in bodies())
    # Prints while the server is down: the agent journals it; the new server collects it.
    sandbox.start_process("sh", ["-c", "sleep 2; echo while-down"], stdin_mode="closed")
    own_server.kill()
    time.sleep(3)
    own_server.start()
    assert wait_for(lambda: "while-down" in bodies()), bodies()
    again = client.connect("logged-restart")
    again.run("echo", ["after-restart"])
    assert wait_for(lambda: "after-restart" in bodies())
    seen = bodies()
    for text in ["before-restart", "while-down", "after-restart"]:
        assert seen.count(text) == 1, (text, seen)
    assert seen.index("before-restart") < seen.index("while-down") < seen.index("after-restart")
    client.delete(sid)
    client.close()
