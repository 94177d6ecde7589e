"""Node loss and fencing, on two real nodes sharing a PostgreSQL store and an S3 blob store.

- A named suspended sandbox of a node that stopped cleanly resumes through another node,
  which takes it over and resumes it from S3 with its memory (asked to resume, or, for one
  that wakes on traffic, on traffic); running sandboxes of the stopped node stay where they
  are, and the node keeps them when it starts again.

- A draining node's suspended sandboxes move at once: a resume asked of any node (the
  draining one included), or traffic for one that wakes on traffic, hands it to an active
  node, which resumes it from S3 with its memory, before the draining node ever stops.
- A node killed with its sandboxes is declared lost once its lease has run out: its running
  sandboxes are marked lost, and its named suspended sandbox (in S3) moves to the surviving
  node and resumes there with its memory intact; another, deleted there before it resumes,
  leaves no files and no dump in S3. Started again, the lost node registers anew and sweeps
  what it had of all three.
- A node that stalls past its lease (SIGSTOP: it cannot freeze anything) is declared lost;
  when it runs again it learns so, stops the sandbox the cluster marked lost, and registers
  again: the sandbox never runs on after the cluster declared it lost.
- An outage of the store freezes every node's sandboxes (no node may be sure of its lease)
  and thaws them once it is over, with no node declared lost."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from alcove.sandbox import SandboxClient
from framework.cluster import (
    COUNTER,
    container_status,
    node_info,
    nodes_on,
    resume_when_moved,
    runc,
    sandbox,
    still_counting,
    suspend_into_blob_store,
)
from framework.host import agent_pid, wait_for
from framework.metrics import operations
from framework.postgres import PostgresCluster
from framework.s3 import S3Server
from framework.server import AlcoveServer


@pytest.fixture(scope="module")
def pg():
    with PostgresCluster() as cluster:
        yield cluster


@pytest.fixture(scope="module")
def s3():
    with S3Server() as server:
        yield server


@contextmanager
def two_nodes(pg: PostgresCluster, s3: S3Server, name: str) -> Iterator[tuple[AlcoveServer, AlcoveServer]]:
    """Nodes `<name>-a` and `<name>-b` on a new database and the S3 store, once they have met;
    retired after."""
    url = pg.create_database(f"alcove_{name}")
    args = ["--compress-after-secs", "0", *s3.alcove_args("loss")]
    with nodes_on(url, [f"{name}-a", f"{name}-b"], extra_args=args, extra_env=s3.alcove_env()) as (a, b):
        yield a, b


def kill_with_sandboxes(srv: AlcoveServer) -> None:
    """The machine dies: the server and every sandbox process, at once."""
    srv.kill()
    for sid in runc(srv.data_dir, "list", "-q").stdout.split():
        runc(srv.data_dir, "kill", sid, "KILL")


def test_a_killed_node_is_declared_lost_and_its_suspended_sandbox_resumes_elsewhere(pg, s3):
    with (
        two_nodes(pg, s3, "loss") as (a, b),
        SandboxClient(api_url=a.url) as via_a,
        SandboxClient(api_url=b.url) as via_b,
    ):
        movable = via_b.create_and_connect(name="movable")
        movable_id = movable.sandbox_id
        movable.write_file("/root/notes.txt", b"moved with its node gone")
        counter = movable.start_process(
            "sh", ["-c", COUNTER])
        doomed = via_b.create()
        parting = via_b.create_and_connect(name="parting")
        parting.write_file("/root/notes.txt", b"deleted before it ever resumed")
        suspend_into_blob_store(via_b, b, "movable")
        suspend_into_blob_store(via_b, b, "parting")
        parting_blobs = f"loss/sandboxes/{parting.sandbox_id}"
        assert s3.objects(parting_blobs), "the dump was not uploaded"

        kill_with_sandboxes(b)
        # Lease 3 s, declared lost a third of a lease after it ran out.
        assert wait_for(lambda: node_info(a, "loss-b")["lost_at"] is not None, 30), a.log_tail()
        assert node_info(a, "loss-b")["state"] == "offline"
        lost = sandbox(a, doomed.sandbox_id)
        assert (lost["status"], lost["termination_reason"]) == ("terminated", "lost"), lost
        assert '"loss-b"' in lost["error_details"], lost

        # The suspended one is A's now: it resumes there from S3, memory and files intact.
        assert sandbox(a, "movable")["status"] == "suspended"
        via_a.resume("movable")
        again = via_a.connect("movable")
        assert again.read_file("/root/notes.txt") == b"moved with its node gone"
        assert any(p.pid == counter.pid and p.status == "running" for p in again.list_processes())
        assert still_counting(again)
        assert wait_for(lambda: node_info(a, "loss-a")["running_sandboxes"] == 1, 15)
        assert container_status(a.data_dir, movable_id) == "running"

        # A suspended sandbox that moved is deleted where it moved, before it ever ran there:
        # A holds no slot or files of it, and its dump goes from the blob store.
        assert sandbox(a, "parting")["status"] == "suspended"
        via_a.delete("parting")
        ended = sandbox(a, parting.sandbox_id)
        assert (ended["status"], ended["termination_reason"]) == ("terminated", "deleted"), ended
        assert not (a.data_dir / "sandboxes" / parting.sandbox_id).exists()
        assert container_status(a.data_dir, parting.sandbox_id) is None
        assert wait_for(lambda: not s3.objects(parting_blobs), 30), s3.objects(parting_blobs)

        # B comes back: it registers anew and sweeps what it had of the three sandboxes.
        b.start(timeout=90)
        back = node_info(a, "loss-b")
        assert (back["state"], back["lost_at"]) == ("active", None), back
        for sid in (movable_id, doomed.sandbox_id, parting.sandbox_id):
            assert not (b.data_dir / "sandboxes" / sid).exists(), sid
        assert runc(b.data_dir, "list", "-q").stdout.split() == []
        # Through B, the moved sandbox is served by A.
        assert via_b.connect("movable").run("cat", ["/root/notes.txt"]).stdout == "moved with its node gone"
        via_a.delete("movable")


def test_a_suspended_sandbox_of_a_stopped_node_resumes_through_another_with_its_memory(pg, s3):
    with (
        two_nodes(pg, s3, "stop") as (a, b),
        SandboxClient(api_url=a.url) as via_a,
        SandboxClient(api_url=b.url) as via_b,
    ):
        traveller = via_b.create_and_connect(name="traveller")
        traveller.write_file("/root/notes.txt", b"suspended on b, resumed on a")
        counter = traveller.start_process(
            "sh", ["-c", COUNTER])
        stays = via_b.create()
        sleeper = via_b.create_and_connect(name="sleeper")
        sleeper.write_file("/root/dream.txt", b"woken on another node")
        suspend_into_blob_store(via_b, b, "sleeper")
        suspend_into_blob_store(via_b, b, "traveller")
        b.stop()

        # Asked of A, the resume moves it: it runs on A from S3, memory and files intact.
        answer = resume_when_moved(a, "traveller")
        assert answer["status_code"] in (200, 202), answer
        again = via_a.connect("traveller")
        assert again.read_file("/root/notes.txt") == b"suspended on b, resumed on a"
        assert any(p.pid == counter.pid and p.status == "running" for p in again.list_processes())
        assert still_counting(again)
        assert container_status(a.data_dir, traveller.sandbox_id) == "running"
        # Traffic wakes a sandbox that wakes on traffic (auto_resume) the same way.
        woken = via_a.connect("sleeper")
        answer: dict = {}

        def read_through_a() -> bool:
            try:
                answer["text"] = woken.read_file("/root/dream.txt")
                return True
            except Exception as e:  # 503 NODE_OFFLINE until a third of a lease after the stop
                answer["error"] = repr(e)
                return False

        assert wait_for(read_through_a, 30), answer
        assert answer["text"] == b"woken on another node"
        assert container_status(a.data_dir, sleeper.sandbox_id) == "running"
        # A running sandbox of the stopped node never moves: it still runs there.
        refused = a.api("POST", f"/v1/namespaces/default/sandboxes/{stays.sandbox_id}/resume")
        assert (refused.status_code, refused.json()["code"]) == (503, "NODE_OFFLINE"), refused.text
        assert container_status(b.data_dir, stays.sandbox_id) == "running"

        # B comes back: it keeps its running sandbox, sweeps its copy of the moved one, and
        # relays to A for it.
        b.start()
        assert container_status(b.data_dir, stays.sandbox_id) == "running"
        assert container_status(b.data_dir, traveller.sandbox_id) is None
        assert not (b.data_dir / "sandboxes" / traveller.sandbox_id).exists()
        assert via_b.connect("traveller").read_file("/root/notes.txt") == b"suspended on b, resumed on a"
        assert sandbox(b, stays.sandbox_id)["status"] == "running"
        via_a.delete("traveller")
        via_a.delete("sleeper")
        via_b.delete(stays.sandbox_id)


def test_a_draining_nodes_suspended_sandboxes_resume_at_once_on_another_node(pg, s3):
    with (
        two_nodes(pg, s3, "drain") as (a, b),
        SandboxClient(api_url=a.url) as via_a,
        SandboxClient(api_url=b.url) as via_b,
    ):
        mover = via_b.create_and_connect(name="mover")
        mover.write_file("/root/notes.txt", b"moved off a draining node")
        counter = mover.start_process("sh", ["-c", COUNTER])
        dreamer = via_b.create_and_connect(name="dreamer")
        dreamer.write_file("/root/dream.txt", b"woken by traffic on another node")
        early = via_b.create_and_connect(name="early")
        early.write_file("/root/early.txt", b"resumed before its upload")
        uploads = operations(b, "blob_upload")

        # The drain suspends the named sandboxes; their dumps go to S3 in the background.
        assert via_a.drain_node("drain-b").state == "draining"
        names = ("mover", "dreamer", "early")
        assert wait_for(lambda: all(sandbox(a, n)["status"] == "suspended" for n in names), 60), b.log_tail()
        # A resume asked at once, while the dumps are still being uploaded, waits for its own
        # upload and moves the sandbox, rather than answering NODE_DRAINING.
        uploaded_before = operations(b, "blob_upload") - uploads
        resp = a.api("POST", "/v1/namespaces/default/sandboxes/early/resume")
        assert resp.status_code in (200, 202), resp.text
        assert via_a.connect("early").read_file("/root/early.txt") == b"resumed before its upload"
        assert container_status(a.data_dir, early.sandbox_id) == "running"
        if uploaded_before < len(names):
            assert "waited for the upload of the suspended sandbox" in b.log_tail(400), b.log_tail()
        assert wait_for(lambda: operations(b, "blob_upload") >= uploads + 3, 60), b.log_tail()

        # Asked of the draining node itself, the resume hands the sandbox to A, which
        # resumes it from S3 with its memory and files; B keeps nothing of it.
        resp = b.api("POST", "/v1/namespaces/default/sandboxes/mover/resume")
        assert resp.status_code in (200, 202), resp.text
        again = via_a.connect("mover")
        assert again.read_file("/root/notes.txt") == b"moved off a draining node"
        assert any(p.pid == counter.pid and p.status == "running" for p in again.list_processes())
        assert still_counting(again)
        assert container_status(a.data_dir, mover.sandbox_id) == "running"
        assert container_status(b.data_dir, mover.sandbox_id) is None
        assert not (b.data_dir / "sandboxes" / mover.sandbox_id).exists()
        assert "is draining" in b.log_tail(400), b.log_tail()

        # Traffic asked of A goes to B, its node, which hands the sandbox back to A to wake.
        woken = via_a.connect("dreamer")
        assert woken.read_file("/root/dream.txt") == b"woken by traffic on another node"
        assert container_status(a.data_dir, dreamer.sandbox_id) == "running"
        assert node_info(a, "drain-b")["state"] == "draining"

        via_a.activate_node("drain-b")
        for name in names:
            via_a.delete(name)


def test_a_stalled_node_declared_lost_stops_its_sandbox_when_it_runs_again(pg, s3):
    with two_nodes(pg, s3, "fence") as (a, b), SandboxClient(api_url=b.url) as via_b:
        stalled = via_b.create()
        pid = agent_pid(b.data_dir, stalled.sandbox_id)
        b.proc.send_signal(signal.SIGSTOP)
        try:
            assert wait_for(lambda: node_info(a, "fence-b")["lost_at"] is not None, 30), a.log_tail()
            assert sandbox(a, stalled.sandbox_id)["termination_reason"] == "lost"
            # A stalled server freezes nothing: the sandbox's processes still run here.
            assert Path(f"/proc/{pid}").exists()
        finally:
            b.proc.send_signal(signal.SIGCONT)
        # Running again, B learns it was declared lost: it stops the sandbox and registers anew.
        assert wait_for(lambda: not Path(f"/proc/{pid}").exists(), 30), b.log_tail()
        assert wait_for(lambda: node_info(a, "fence-b")["lost_at"] is None, 30), b.log_tail()
        assert node_info(a, "fence-b")["state"] == "active"
        assert "declared this node lost" in b.log_path.read_text()
        assert sandbox(b, stalled.sandbox_id)["status"] == "terminated"
        # And it serves again.
        fresh = via_b.create()
        assert via_b.connect(fresh.sandbox_id).run("echo", ["back"]).stdout.strip() == "back"
        via_b.delete(fresh.sandbox_id)


def test_a_store_outage_freezes_every_nodes_sandboxes_until_it_is_over(pg, s3):
    with (
        two_nodes(pg, s3, "outage") as (a, b),
        SandboxClient(api_url=a.url) as via_a,
        SandboxClient(api_url=b.url) as via_b,
    ):
        # The nodes have met: each knows a peer could take its sandboxes over (a node alone
        # never freezes them).
        on_a, on_b = via_a.create(), via_b.create()
        pg.pause()
        try:
            # Two thirds of a lease without a renewal: no node can be sure of its lease.
            for srv, sb in ((a, on_a), (b, on_b)):
                assert wait_for(lambda: container_status(srv.data_dir, sb.sandbox_id) == "paused", 20), \
                    srv.log_tail()
            resp = a.api("POST", "/v1/namespaces/default/sandboxes", json={})
            assert resp.status_code == 503, resp.text
            assert resp.json()["code"] in ("NODE_FENCED", "STORE_UNAVAILABLE"), resp.text
        finally:
            pg.resume()
        for srv, sb in ((a, on_a), (b, on_b)):
            assert wait_for(lambda: container_status(srv.data_dir, sb.sandbox_id) == "running", 30), \
                srv.log_tail()
        # Longer than a lease and its grace: after an outage nobody declares the others lost.
        time.sleep(6)
        for name in ("outage-a", "outage-b"):
            info = node_info(a, name)
            assert (info["state"], info["lost_at"]) == ("active", None), info
        assert via_b.connect(on_a.sandbox_id).run("echo", ["thawed"]).stdout.strip() == "thawed"
        assert sandbox(a, on_b.sandbox_id)["status"] == "running"
