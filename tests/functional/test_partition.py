"""Three nodes, each in its own network namespace on a bridge, sharing a PostgreSQL store and an
S3 blob store that listen on the host's side of the bridge. Each node has its own address,
sandbox subnet and firewall table.

- A sandbox on any node is served through any other: commands, files, a PTY, a tunnel and
  ingress.
- A snapshot taken on one node restores on another, from S3, with its processes.
- A named sandbox suspended on a node that then stops resumes through another node, from S3,
  with its memory; the stopped node, started again, keeps nothing of it.
- Partitioned (its link taken down while its sandboxes run), a node freezes its sandboxes
  before the others may declare it lost; they then mark its running sandbox lost and move
  its named suspended sandbox, which resumes on another node with its memory. Healed, the
  node learns it was declared lost, stops what it ran and registers again. A sandbox never
  runs on two nodes, and never runs on the cut-off node once it was declared lost.
"""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from alcove.sandbox import SandboxClient
from framework.cluster import (
    COUNTER,
    NODE_KEY,
    container_status,
    node_info,
    nodes_on,
    resume_when_moved,
    runc,
    sandbox,
    serve_file,
    still_counting,
    suspend_into_blob_store,
    terminal_works,
    tunnel_serves,
)
from framework.host import agent_pid, firewall_table_exists, instance_tag, wait_for
from framework.netns import NodeNetwork
from framework.postgres import PostgresCluster
from framework.s3 import S3Server
from framework.server import AlcoveServer

NAMES = ["part-0", "part-1", "part-2"]


@pytest.fixture(scope="module")
def cluster() -> Iterator[tuple[NodeNetwork, list[AlcoveServer]]]:
    with (
        NodeNetwork(3) as net,
        PostgresCluster(also_on=net.gateway, clients=net.cidr) as pg,
        S3Server(host=net.gateway) as s3,
    ):
        url = pg.create_database("alcove_partition", host=net.gateway)
        args = ["--compress-after-secs", "0", *s3.alcove_args("partition")]
        with nodes_on(url, NAMES, extra_args=args, extra_env=s3.alcove_env(), network=net) as nodes:
            yield net, nodes


def client(srv: AlcoveServer) -> SandboxClient:
    return SandboxClient(api_url=srv.url, api_key=NODE_KEY)


def counter_value(pid: int) -> int | None:
    """What the sandbox's counter last wrote, read from the host through its init's root."""
    try:
        return int(Path(f"/proc/{pid}/root/root/n").read_text())
    except (OSError, ValueError):
        return None


class Watch:
    """Samples, every 50 ms, a container's state on one node and the counter its processes
    write, with the time of each sample."""

    def __init__(self, data_dir: Path, sandbox_id: str) -> None:
        self.pid = agent_pid(data_dir, sandbox_id)
        self.samples: list[tuple[float, str | None, int | None]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(data_dir, sandbox_id), daemon=True)

    def _run(self, data_dir: Path, sandbox_id: str) -> None:
        while not self._stop.is_set():
            self.samples.append(
                (time.monotonic(), container_status(data_dir, sandbox_id), counter_value(self.pid))
            )
            time.sleep(0.05)

    def __enter__(self) -> Watch:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def seen_running(self) -> bool:
        """Whether two samples of the running container showed different counts: the sampler
        can see it run."""
        return len({n for _, status, n in self.samples if status == "running" and n}) > 1

    def first_paused(self) -> float:
        return next(at for at, status, _ in self.samples if status == "paused")

    def counts_after(self, t: float) -> set[int]:
        return {n for at, _, n in self.samples if at > t and n is not None}


def test_every_node_serves_the_sandboxes_of_the_others(cluster):
    net, nodes = cluster
    # Each node listens on its own address, in its own network.
    assert len({srv.host for srv in nodes}) == 3
    infos = {n["name"]: n for n in nodes[0].api("GET", "/nodes").json()["nodes"]}
    assert {infos[name]["address"] for name in NAMES} == {
        f"http://{net.address(i)}:{srv.port}" for i, srv in enumerate(nodes)
    }
    # Each has its own firewall table, in its own network, and none in the host's.
    for i, srv in enumerate(nodes):
        tag = instance_tag(srv.data_dir)
        inside = subprocess.run([*net.enter(i), "nft", "list", "tables"], capture_output=True, text=True)
        assert f"alcove_{tag}" in inside.stdout, inside
        assert not firewall_table_exists(srv.data_dir)
    with client(nodes[1]) as via_1, client(nodes[2]) as via_2, client(nodes[0]) as via_0:
        made = via_1.create(name="everywhere", expose_ports=[8000])
        try:
            # Created through node 1, so it runs there (a node places on itself first).
            assert container_status(nodes[1].data_dir, made.sandbox_id) == "running"
            through_2 = via_2.connect(made.sandbox_id)
            through_2.write_file("/root/hello.txt", b"written through node 2")
            through_0 = via_0.connect(made.sandbox_id)
            assert through_0.read_file("/root/hello.txt") == b"written through node 2"
            assert through_0.run("cat", ["/root/hello.txt"]).stdout == "written through node 2"
            terminal_works(through_0, "through")
            # A web server in it, reached through a tunnel of node 2 and ingress of node 0.
            serve_file(through_2, b"served on node 1\n")
            tunnel_serves(through_2, b"served on node 1\n")
            srv = nodes[0]
            for ident in (made.sandbox_id, "everywhere"):
                got = httpx.get(f"{srv.url}/hi.txt", timeout=30, headers={
                    "Host": f"8000-{ident}.sandbox.localhost:{srv.port}",
                    "Authorization": f"Bearer {NODE_KEY}",
                })
                assert (got.status_code, got.content) == (200, b"served on node 1\n"), got.text
        finally:
            via_0.delete(made.sandbox_id)


def test_a_partitioned_node_freezes_is_declared_lost_and_fences_itself_when_healed(cluster):
    net, nodes = cluster
    watcher, cut_off, other = nodes[0], nodes[1], nodes[2]
    with client(cut_off) as via_cut, client(other) as via_other:
        stuck = via_cut.create()
        # As fast as it can: any sampled interval in which it runs after being frozen shows
        # (a run of a few milliseconds between two samples would not).
        busy = "i=0; while true; do i=$((i+1)); echo $i > /root/n; done"
        via_cut.connect(stuck.sandbox_id).start_process("sh", ["-c", busy])
        roamer = via_cut.create_and_connect(name="roamer")
        roamer.write_file("/root/notes.txt", b"packed before the cable was pulled")
        kept = roamer.start_process("sh", ["-c", COUNTER])
        suspend_into_blob_store(via_cut, cut_off, "roamer")

        with Watch(cut_off.data_dir, stuck.sandbox_id) as watch:
            # Seen running first: a loaded node may freeze soon after the cut (its last renewal
            # can be most of a lease old), before a sampler started with the cut saw it run.
            assert wait_for(watch.seen_running, 10), watch.samples
            net.cut(1)
            try:
                # Cut off from the store, the node freezes what it runs.
                assert wait_for(lambda: container_status(cut_off.data_dir, stuck.sandbox_id) == "paused", 20), \
                    cut_off.log_tail()
                # (None if frozen between the counter's truncate and its write.)
                frozen_at = counter_value(watch.pid)
                assert wait_for(lambda: node_info(watcher, "part-1")["lost_at"] is not None, 30), \
                    watcher.log_tail()
                lost = sandbox(watcher, stuck.sandbox_id)
                assert (lost["status"], lost["termination_reason"]) == ("terminated", "lost"), lost

                # The named suspended sandbox moved: it resumes elsewhere from S3, with its memory.
                assert sandbox(other, "roamer")["status"] == "suspended"
                via_other.resume("roamer")
                moved = via_other.connect("roamer")
                assert moved.read_file("/root/notes.txt") == b"packed before the cable was pulled"
                assert any(p.pid == kept.pid and p.status == "running" for p in moved.list_processes())
                assert still_counting(moved)
                runs_on = [srv for srv in (watcher, other)
                           if container_status(srv.data_dir, roamer.sandbox_id) == "running"]
                assert len(runs_on) == 1
                assert container_status(cut_off.data_dir, roamer.sandbox_id) is None
            finally:
                net.heal(1)
            # Healed, it learns it was declared lost: it stops what it ran and registers again.
            assert wait_for(lambda: container_status(cut_off.data_dir, stuck.sandbox_id) is None, 30), \
                cut_off.log_tail()
            assert wait_for(lambda: node_info(watcher, "part-1")["lost_at"] is None, 30), cut_off.log_tail()
        assert node_info(watcher, "part-1")["state"] == "active"
        assert "declared this node lost" in cut_off.log_path.read_text()
        # Once frozen, before it was declared lost, the sandbox did not run on in the cut-off
        # node (as far as 50 ms samples can tell): not while cut off, not when healed, not
        # while it was stopped.
        paused = watch.first_paused()
        assert len({n for at, _, n in watch.samples if at < paused and n}) > 1, "it never ran"
        assert watch.counts_after(paused) <= {frozen_at} - {None}, watch.samples
        assert runc(cut_off.data_dir, "list", "-q").stdout.split() == []
        assert not (cut_off.data_dir / "sandboxes" / roamer.sandbox_id).exists()
        # Through the healed node, the moved sandbox is served where it runs now.
        assert via_cut.connect("roamer").read_file("/root/notes.txt") == b"packed before the cable was pulled"
        # And it takes work again.
        fresh = via_cut.create()
        assert via_cut.connect(fresh.sandbox_id).run("echo", ["back"]).stdout.strip() == "back"
        via_cut.delete(fresh.sandbox_id)
        via_other.delete("roamer")


# These run after the partition test, which must find its nodes as they started: with node 1
# stopped and started just before it, it failed once in CI (the cut-off node froze its
# sandbox before the watcher had sampled it running twice).
def test_a_snapshot_taken_on_one_node_restores_on_another(cluster):
    _, nodes = cluster
    with client(nodes[0]) as via_0, client(nodes[2]) as via_2:
        source = via_0.create_and_connect()
        try:
            assert container_status(nodes[0].data_dir, source.sandbox_id) == "running"
            source.write_file("/root/kept.txt", b"snapshotted on node 0")
            proc = source.start_process("sleep", ["600"])
            snap = via_0.snapshot_and_wait(source.sandbox_id)
        finally:
            via_0.delete(source.sandbox_id)
        assert not (nodes[2].data_dir / "snapshots" / snap.snapshot_id).exists()
        # Asked of node 2, which has room, the restore runs there from the objects in S3.
        restored = via_2.create_and_connect(snapshot_id=snap.snapshot_id)
        try:
            assert container_status(nodes[2].data_dir, restored.sandbox_id) == "running"
            assert restored.read_file("/root/kept.txt") == b"snapshotted on node 0"
            assert any(p.pid == proc.pid and p.status == "running" for p in restored.list_processes())
        finally:
            via_2.delete(restored.sandbox_id)
        via_2.delete_snapshot(snap.snapshot_id)


def test_a_sandbox_suspended_on_a_stopped_node_resumes_on_another_with_its_memory(cluster):
    _, nodes = cluster
    home, asked = nodes[1], nodes[0]
    with client(home) as via_home, client(asked) as via_asked:
        traveller = via_home.create_and_connect(name="netns-traveller")
        traveller.write_file("/root/notes.txt", b"suspended on node 1")
        counter = traveller.start_process("sh", ["-c", COUNTER])
        suspend_into_blob_store(via_home, home, "netns-traveller")
        home.stop()
        try:
            answer = resume_when_moved(asked, "netns-traveller")
            assert answer["status_code"] in (200, 202), answer
            again = via_asked.connect("netns-traveller")
            assert again.read_file("/root/notes.txt") == b"suspended on node 1"
            assert any(p.pid == counter.pid and p.status == "running" for p in again.list_processes())
            assert still_counting(again)
            assert container_status(asked.data_dir, traveller.sandbox_id) == "running"
        finally:
            home.start()
        assert wait_for(lambda: node_info(asked, "part-1")["state"] == "active", 30)
        assert container_status(home.data_dir, traveller.sandbox_id) is None
        assert not (home.data_dir / "sandboxes" / traveller.sandbox_id).exists()
        via_asked.delete("netns-traveller")
