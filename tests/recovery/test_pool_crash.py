"""SIGKILL of the server around claims: a sandbox caught half-claimed is ended (what the claim
had bound may be incomplete, so it is never handed out again), claimed sandboxes stay claimed,
the pool refills to its warm count after the restart, and nothing is left on the host once the
pool is deleted."""

from __future__ import annotations

import shutil
import sqlite3
import threading
import time

import pytest

from framework.host import owned_resources
from framework.server import AlcoveServer

B = "/v1/namespaces/default"
SMALL = {"cpus": 0.5, "memory_mb": 512, "disk_mb": 1024}


@pytest.fixture
def srv():
    s = AlcoveServer()
    s.start()
    yield s
    if s.proc is None:
        s.start()
    for pool in s.api("GET", f"{B}/sandbox-pools").json()["pools"]:
        for c in s.api("GET", f"{B}/sandbox-pools/{pool['id']}").json()["containers"]:
            if c["state"] == "Running":
                s.api("DELETE", f"{B}/sandboxes/{c['sandbox_id']}")
        assert s.api("DELETE", f"{B}/sandbox-pools/{pool['id']}").status_code == 204
    for sb in s.live_sandboxes():
        s.api("DELETE", f"{B}/sandboxes/{sb['id']}")
    s.stop()
    res = owned_resources(s.data_dir)
    shutil.rmtree(s.data_dir, ignore_errors=True)
    assert res.is_empty(), f"host resources left behind: {res}"


def containers(srv: AlcoveServer, pool_id: str) -> dict[str, str]:
    return {c["sandbox_id"]: c["state"] for c in srv.api("GET", f"{B}/sandbox-pools/{pool_id}").json()["containers"]}


def wait_idle(srv: AlcoveServer, pool_id: str, count: int, timeout: float = 60) -> list[str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        idle = [i for i, s in containers(srv, pool_id).items() if s == "Idle"]
        if len(idle) >= count:
            return idle
        time.sleep(0.2)
    raise AssertionError(f"pool {pool_id} did not refill to {count}: {containers(srv, pool_id)}")


def new_pool(srv: AlcoveServer, warm: int) -> str:
    resp = srv.api("POST", f"{B}/sandbox-pools", json={"resources": SMALL, "warm_containers": warm})
    assert resp.status_code == 200, resp.text
    return resp.json()["pool_id"]


def test_a_sandbox_left_claiming_by_a_crash_is_ended_and_the_pool_refills(srv):
    pool_id = new_pool(srv, 2)
    victim, keeper = wait_idle(srv, pool_id, 2)[:2]
    srv.kill()
    # The state a crash between taking a sandbox and recording its claim leaves.
    with sqlite3.connect(srv.data_dir / "alcove.db") as db:
        db.execute("UPDATE sandboxes SET pool_state = 'claiming' WHERE id = ?", (victim,))
    srv.start()
    ended = srv.api("GET", f"{B}/archived-sandboxes/{victim}")
    assert ended.status_code == 200, ended.text
    assert ended.json()["termination_reason"] == "claim_failed"
    idle = wait_idle(srv, pool_id, 2)
    assert keeper in idle, "an idle sandbox was not kept across the restart"
    assert victim not in idle


def test_kill_during_claims_leaves_every_sandbox_claimed_or_ended(srv):
    pool_id = new_pool(srv, 3)
    wait_idle(srv, pool_id, 3)
    answers: list[int] = []

    def claim() -> None:
        try:
            answers.append(srv.api("POST", f"{B}/sandbox-pools/{pool_id}/sandboxes").status_code)
        except Exception:  # the server died under the request
            answers.append(-1)

    threads = [threading.Thread(target=claim) for _ in range(3)]
    for t in threads:
        t.start()
    time.sleep(0.005)
    srv.kill()
    for t in threads:
        t.join()
    srv.start()
    listed = {s["id"] for s in srv.live_sandboxes()}
    members = containers(srv, pool_id)
    # Every claimed container is a listed, running sandbox; nothing is half-way.
    for sandbox_id, state in members.items():
        if state == "Running":
            assert sandbox_id in listed
    assert {i for i, s in members.items() if s == "Running"} == listed
    # The pool refills to its warm count (within no max) after the restart.
    wait_idle(srv, pool_id, 3)
