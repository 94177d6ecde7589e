"""Nodes: a server registers itself in its store under a name and subnet and renews a lease with
what its sandboxes use (`GET /nodes`, `alcove node ls`). Draining a node (`alcove node drain`)
makes it start and resume nothing, stop refilling pools, and suspend its named sandboxes; the
state outlives a restart until `alcove node activate`. On a shared PostgreSQL store a second
server is refused a name or subnet a live node holds, and gets it once that lease is gone."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest

from alcove.sandbox import SandboxClient
from framework.cli import run_cli
from framework.cluster import (
    COUNTER,
    node_info,
    nodes_on,
    resume_when_moved,
    sandbox,
    still_counting,
    suspend_into_blob_store,
    terminal_works,
)
from framework.host import firewall_tables, owned_resources, wait_for
from framework.metrics import operations
from framework.postgres import PostgresCluster
from framework.server import AGENT_PATH, AlcoveServer, refused_at_start, retire


# Node `name` as a server lists it.
node = node_info


@pytest.fixture
def named_server():
    name = f"node-{uuid.uuid4().hex[:6]}"
    srv = AlcoveServer(extra_args=["--node-name", name, "--node-label", "zone=lab",
                                   "--node-label", "disk=ssd", "--node-lease-secs", "3"])
    srv.start()
    srv.node_name = name
    yield srv
    retire(srv)


def test_the_server_is_a_node_reporting_its_capacity_and_use(named_server, tmp_path):
    srv = named_server
    me = node(srv, srv.node_name)
    assert me["state"] == "active"
    assert me["labels"] == {"zone": "lab", "disk": "ssd"}
    assert me["subnet"] == srv.subnet
    assert me["address"].startswith("http")
    assert me["capacity"]["cpus"] == os.cpu_count()
    assert me["capacity"]["memory_mb"] > 1000
    assert me["lease_expires_at"] > me["started_at"]
    with SandboxClient(api_url=srv.url) as client:
        sb = client.create(cpus=1.0, memory_mb=1536)
        try:
            # The next renewal (every second with a 3 s lease) reports it.
            assert wait_for(lambda: node(srv, srv.node_name)["running_sandboxes"] == 1, 15)
            used = node(srv, srv.node_name)["used"]
            assert used == {"cpus": 1.0, "memory_mb": 1536}, used
        finally:
            client.delete(sb.sandbox_id)
    assert wait_for(lambda: node(srv, srv.node_name)["running_sandboxes"] == 0, 15)
    # The CLI shows the same.
    out = run_cli(srv.url, "node", "ls", "--json", config=tmp_path / "c.json")
    assert out.returncode == 0, out.stderr
    [listed] = [n for n in json.loads(out.stdout) if n["name"] == srv.node_name]
    assert listed["labels"]["zone"] == "lab"
    table = run_cli(srv.url, "node", "ls", config=tmp_path / "c.json").stdout.decode()
    assert srv.node_name in table and "active" in table


def test_drain_suspends_named_sandboxes_refuses_new_work_and_survives_a_restart(named_server, tmp_path):
    srv = named_server
    cfg = tmp_path / "c.json"
    with SandboxClient(api_url=srv.url) as client:
        named = client.create_and_connect(name="drained")
        named.write_file("/root/kept.txt", b"through the drain")
        proc = named.start_process("sleep", ["600"])
        ephemeral = client.create()

        out = run_cli(srv.url, "node", "drain", srv.node_name, "--json", config=cfg)
        assert out.returncode == 0, out.stderr
        assert json.loads(out.stdout)["state"] == "draining"
        assert wait_for(lambda: client.get("drained").status == "suspended", 60)
        # Ephemeral sandboxes cannot be suspended: they run on until they end.
        assert client.get(ephemeral.sandbox_id).status == "running"

        for method, path in [
            ("POST", "/v1/namespaces/default/sandboxes"),
            ("POST", "/v1/namespaces/default/sandboxes/drained/resume?wait_ms=5000"),
        ]:
            resp = srv.api(method, path, json={} if method == "POST" and path.endswith("sandboxes") else None)
            assert resp.status_code == 503, (path, resp.text)
            assert resp.json()["code"] == "NODE_DRAINING", resp.text
            assert "alcove node activate" in resp.json()["message"]

        # The state is the store's: a restart keeps the node draining.
        srv.stop()
        srv.start()
        assert node(srv, srv.node_name)["state"] == "draining"
        resp = srv.api("POST", "/v1/namespaces/default/sandboxes", json={})
        assert resp.status_code == 503, resp.text

        out = run_cli(srv.url, "node", "activate", srv.node_name, config=cfg)
        assert out.returncode == 0, out.stderr
        assert f"{srv.node_name} active" in out.stdout.decode()
        client.resume("drained")
        again = client.connect("drained")
        assert again.read_file("/root/kept.txt") == b"through the drain"
        assert any(p.pid == proc.pid and p.status == "running" for p in again.list_processes())
        fresh = client.create()
        client.delete(fresh.sandbox_id)
        client.delete("drained")
        client.delete(ephemeral.sandbox_id)

    unknown = run_cli(srv.url, "node", "drain", "no-such-node", config=cfg)
    assert unknown.returncode == 1
    assert b"not found" in unknown.stderr


def test_bad_node_settings_are_refused_at_start():
    for args, expect in [
        (["--node-name", "bad name"], "node name"),
        (["--node-name=-dash"], "node name"),
        (["--node-label", "novalue"], "expected key=value"),
        (["--node-lease-secs", "1"], "--node-lease-secs must be 3 to 600"),
        (["--advertise-url", "10.0.0.1:8900"], "must start with http://"),
        (["--memory-overcommit", "0"], "--memory-overcommit must be 0.1 to 100"),
        (["--cpu-overcommit", "NaN"], "--cpu-overcommit must be 0.1 to 100"),
        (["--node-cpus=-2"], "--node-cpus must be a positive number"),
        (["--node-memory-mb", "0"], "--node-memory-mb must be positive"),
        (["--agent-ready-timeout-secs", "0"], "--agent-ready-timeout-secs must be at least 1"),
    ]:
        log = refused_at_start(args)
        assert expect in log, (args, log)


def test_a_node_on_every_address_must_say_where_the_others_reach_it(tmp_path):
    from framework.server import AGENT_PATH, ALCOVE_BIN

    out = subprocess.run(
        [str(ALCOVE_BIN), "serve", "--listen", "0.0.0.0:0", "--api-key", "k", "--data-dir", str(tmp_path),
         "--agent-path", str(AGENT_PATH), "--database", "postgres://u:p@127.0.0.1:1/db"],
        capture_output=True, text=True, timeout=30,
    )
    assert out.returncode != 0
    assert "--advertise-url" in out.stderr, out.stderr
    assert "p@127" not in out.stderr, "the database password was printed"


@pytest.fixture(scope="module")
def pg():
    with PostgresCluster() as cluster:
        yield cluster


def test_on_a_shared_store_names_and_subnets_are_held_while_a_lease_runs(pg):
    url = pg.create_database("alcove_nodes")
    first = AlcoveServer(extra_args=["--database", url, "--node-name", "n1", "--node-lease-secs", "3"])
    first.start()
    started = []
    try:
        # The same name, while n1's lease runs: refused, naming the holder.
        same_name = AlcoveServer(extra_args=["--database", url, "--node-name", "n1"])
        started.append(same_name)
        with pytest.raises(RuntimeError, match="exited early"):
            same_name.start(timeout=60)
        assert 'node name "n1" is held by a running node at' in same_name.log_path.read_text()
        assert owned_resources(same_name.data_dir).is_empty() and not firewall_tables(same_name.data_dir)

        # Another name on n1's subnet: refused.
        same_subnet = AlcoveServer(extra_args=["--database", url, "--node-name", "n2"])
        same_subnet.subnet = first.subnet
        started.append(same_subnet)
        with pytest.raises(RuntimeError, match="exited early"):
            same_subnet.start(timeout=60)
        assert f"subnet {first.subnet} is used by node \"n1\"" in same_subnet.log_path.read_text()
        assert owned_resources(same_subnet.data_dir).is_empty() and not firewall_tables(same_subnet.data_dir)

        # Its own name and subnet: both nodes are listed, by either.
        second = AlcoveServer(extra_args=["--database", url, "--node-name", "n2", "--node-lease-secs", "3"])
        started.append(second)
        second.start()
        names = {n["name"]: n["state"] for n in second.api("GET", "/nodes").json()["nodes"]}
        assert names == {"n1": "active", "n2": "active"}, names

        # A clean stop gives the lease back at once.
        second.stop()
        assert {n["name"]: n["state"] for n in first.api("GET", "/nodes").json()["nodes"]}["n2"] == "offline"

        # A killed node's lease runs out (it shows offline), then its name is free again: the
        # server starts anew on its data directory and cleans up after the crash.
        first.proc.send_signal(signal.SIGKILL)
        first.proc.wait()
        first.proc = None
        probe = AlcoveServer(extra_args=["--database", url, "--node-name", "n3"])
        started.append(probe)
        probe.start()
        assert wait_for(lambda: node(probe, "n1")["state"] == "offline", 15)
        assert wait_for(lambda: _starts(first), 30), first.log_tail()
        assert node(probe, "n1")["state"] == "active"
    finally:
        for srv in [first, *started]:
            srv.stop()
            shutil.rmtree(srv.data_dir, ignore_errors=True)


def containers(srv: AlcoveServer) -> set[str]:
    """The sandboxes whose containers run on `srv`'s machine (its runc state)."""
    out = subprocess.run(["runc", "--root", str(srv.data_dir / "runc"), "list", "-q"],
                         capture_output=True, text=True, check=True)
    return set(out.stdout.split())


def _starts(srv: AlcoveServer) -> bool:
    try:
        srv.start(timeout=30)
        return True
    except RuntimeError:
        srv.stop()
        return False


def test_on_a_shared_store_any_node_serves_any_sandbox_by_forwarding_to_its_owner(pg):
    url = pg.create_database("alcove_owners")
    # Not waiting for the nodes to meet: a node that has not counted the other yet relays too.
    with nodes_on(url, ["own-a", "own-b"], meet=False) as (a, b):
        with SandboxClient(api_url=a.url) as on_a, SandboxClient(api_url=b.url) as on_b:
            created = on_a.create_and_connect(name="lives-on-a")
            sid = created.sandbox_id
            assert wait_for(lambda: node(b, "own-a")["running_sandboxes"] == 1, 20)
            assert node(b, "own-b")["running_sandboxes"] == 0

            # Through B: run, files both ways, a terminal (a WebSocket through two servers).
            sandbox = on_b.connect("lives-on-a")
            assert sandbox.run("sh", ["-c", "echo via-b; hostname"]).stdout.startswith("via-b")
            sandbox.write_file("/root/up.bin", bytes(range(256)) * 4096)
            assert sandbox.read_file("/root/up.bin") == bytes(range(256)) * 4096
            terminal_works(sandbox, "via-b")
            # Lifecycle through B acts on A.
            on_b.suspend("lives-on-a")
            assert on_a.get("lives-on-a").status == "suspended"
            on_b.resume("lives-on-a")
            assert on_b.connect("lives-on-a").read_file("/root/up.bin")[:4] == bytes(range(4))

            # A request B relayed once is answered by the owner or refused, never relayed
            # again (no loops): B, asked directly as if relayed (with the cluster's relay
            # token, which only the nodes and the database know), refuses to act on A's sandbox.
            token = pg.psql("alcove_owners", "SELECT value FROM cluster_settings WHERE name = 'relay_token'")
            assert len(token.strip()) == 64, token
            relayed = b.api("POST", f"/v1/namespaces/default/sandboxes/{sid}/suspend",
                            headers={"x-alcove-forwarded-by": "own-a", "x-alcove-relay-token": token.strip()})
            assert relayed.status_code == 421, relayed.text
            assert relayed.json()["code"] == "ON_OTHER_NODE"

            # A draining node places creates asked of it on an active node instead.
            assert on_a.drain_node("own-a").state == "draining"
            placed = on_a.create()
            got = b.api("GET", f"/v1/namespaces/default/sandboxes/{placed.sandbox_id}").json()
            assert got["status"] == "running", got
            assert wait_for(lambda: node(b, "own-b")["running_sandboxes"] == 1, 20)
            on_a.delete(placed.sandbox_id)
            # (The drain suspended A's named sandbox; activated again, it resumes on A.)
            assert wait_for(lambda: on_a.get("lives-on-a").status == "suspended", 30)
            on_a.activate_node("own-a")
            on_b.resume("lives-on-a")

            # A restart of B (its recovery, its sweeps) leaves A's sandbox alone.
            b.stop()
            b.start()
            assert on_a.get("lives-on-a").status == "running"

            # A stopped owner (its lease given back): B says so, before and after B's next
            # renewal has counted it gone.
            a.stop()
            for _ in range(2):
                resp = b.api("POST", f"/v1/namespaces/default/sandboxes/{sid}/suspend")
                assert resp.status_code == 503, resp.text
                assert resp.json()["code"] == "NODE_OFFLINE", resp.text
                assert '"own-a"' in resp.json()["message"]
                time.sleep(1.5)
            a.start()
            on_b.delete("lives-on-a")
            assert on_a.get(sid).status == "terminated"


def test_creates_are_placed_where_there_is_room_and_never_overbook_a_node(pg):
    url = pg.create_database("alcove_placement")
    # Each node promises 2 CPUs x 2 and 3072 MiB: room for three sandboxes of 1 CPU and 1 GiB.
    room = ["--node-cpus", "2", "--node-memory-mb", "3072", "--cpu-overcommit", "2", "--memory-overcommit", "1"]
    body = {"resources": {"cpus": 1.0, "memory_mb": 1024}}
    with nodes_on(url, ["place-a", "place-b"], extra_args=room) as (a, b):
        info = node(a, "place-a")
        assert info["capacity"] == {"cpus": 2.0, "memory_mb": 3072}, info

        # Eight creates at once, four through each node: six fit, two are refused, none twice.
        def create(srv: AlcoveServer):
            return srv.api("POST", "/v1/namespaces/default/sandboxes", json=body)

        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(create, [a, b] * 4))
        made = [r.json()["sandbox_id"] for r in answers if r.status_code == 200]
        refused = [r for r in answers if r.status_code != 200]
        assert len(made) == 6 and len(set(made)) == 6, [r.text for r in answers]
        for r in refused:
            assert r.status_code == 503, r.text
            assert r.json()["code"] == "RESOURCE_EXHAUSTED", r.text
            assert "no node has room" in r.json()["message"]
        live = {s["id"] for s in a.live_sandboxes()}
        assert live == set(made)
        # Three on each node (the renewals report what their sandboxes reserve).
        for name in ("place-a", "place-b"):
            assert wait_for(lambda: node(a, name)["running_sandboxes"] == 3, 20), node(a, name)
            assert node(a, name)["used"] == {"cpus": 3.0, "memory_mb": 3072}

        # A full node: the next create asked of it lands where room was made.
        assert wait_for(lambda: len(containers(a)) + len(containers(b)) == 6, 30)
        on_b = containers(b)
        assert len(on_b) == 3 and on_b <= set(made), on_b
        assert containers(a) == set(made) - on_b
        victim = sorted(on_b)[0]
        assert a.api("DELETE", f"/v1/namespaces/default/sandboxes/{victim}").status_code == 200
        assert wait_for(lambda: node(a, "place-b")["used"]["memory_mb"] == 2048, 20)
        again = create(a)
        assert again.status_code == 200, again.text
        assert wait_for(lambda: again.json()["sandbox_id"] in containers(b), 30)
        assert node(a, "place-a")["running_sandboxes"] == 3

        # Placing reads a create's body under the same 2 MiB bound as a single node: 1.5 MiB
        # is read and placed (refused here only for want of room), 2.5 MiB is too large.
        for size, status, code in ((3 << 19, 503, "RESOURCE_EXHAUSTED"), (5 << 19, 413, "PAYLOAD_TOO_LARGE")):
            padded = {**body, "padding": "p" * size}
            resp = a.api("POST", "/v1/namespaces/default/sandboxes", json=padded)
            assert (resp.status_code, resp.json()["code"]) == (status, code), resp.text[:300]
        assert "2 MiB" in resp.json()["message"]


def test_a_full_node_hands_a_suspended_sandbox_to_a_node_with_room_to_resume_it(pg):
    from framework.s3 import S3Server

    url = pg.create_database("alcove_full_resume")
    B = "/v1/namespaces/default/sandboxes"
    with S3Server() as s3:
        args = ["--node-memory-mb", "2048", "--memory-overcommit", "1", "--compress-after-secs", "0",
                *s3.alcove_args("full")]
        with (
            nodes_on(url, ["full-a", "full-b"], extra_args=args, extra_env=s3.alcove_env()) as (a, b),
            SandboxClient(api_url=a.url) as via_a,
            SandboxClient(api_url=b.url) as via_b,
        ):
            mover = via_b.create_and_connect(name="mover", memory_mb=1024)
            mover.write_file("/root/notes.txt", b"resumed where there was room")
            counter = mover.start_process(
                "sh", ["-c", COUNTER])
            suspend_into_blob_store(via_b, b, "mover")
            # B fills up meanwhile (a suspended sandbox reserves nothing).
            fillers = [via_b.create(memory_mb=1024).sandbox_id for _ in range(2)]
            assert containers(b) == set(fillers)
            assert wait_for(lambda: node(a, "full-b")["used"]["memory_mb"] == 2048, 20)

            # Resumed through A: relayed to B, which has no room, hands it to A and relays the
            # resume back there.
            resp = a.api("POST", f"{B}/mover/resume?wait_ms=120000")
            assert resp.status_code == 200, resp.text
            assert containers(a) == {mover.sandbox_id}
            assert not (b.data_dir / "sandboxes" / mover.sandbox_id).exists()
            again = via_b.connect("mover")
            assert again.read_file("/root/notes.txt") == b"resumed where there was room"
            assert any(p.pid == counter.pid and p.status == "running" for p in again.list_processes())
            assert still_counting(again)

            # Suspended again with both nodes full: no node has room, and it stays put.
            suspend_into_blob_store(via_a, a, "mover")
            fillers += [via_a.create(memory_mb=1024).sandbox_id for _ in range(2)]
            assert wait_for(lambda: node(b, "full-a")["used"]["memory_mb"] == 2048, 20)
            for srv in (a, b):
                refused = srv.api("POST", f"{B}/mover/resume?wait_ms=120000")
                assert refused.status_code == 503, refused.text
                assert refused.json()["code"] == "RESOURCE_EXHAUSTED", refused.text
            assert via_a.get("mover").status == "suspended"
            assert (a.data_dir / "sandboxes" / mover.sandbox_id).exists()
            # Room made on A: it resumes there.
            via_a.delete(fillers.pop())
            assert b.api("POST", f"{B}/mover/resume?wait_ms=120000").status_code == 200
            assert mover.sandbox_id in containers(a)
            for sid in fillers:
                via_a.delete(sid)
            via_a.delete("mover")


def test_one_node_refills_a_pool_and_claims_through_any_node_take_its_warm_sandboxes(pg):
    url = pg.create_database("alcove_pool_nodes")
    base = "/v1/namespaces/default/sandbox-pools"
    with nodes_on(url, ["pool-a", "pool-b"]) as (a, b):
        resp = a.api("POST", base, json={
            "warm_containers": 2, "resources": {"cpus": 0.5, "memory_mb": 512, "disk_mb": 1024}})
        assert resp.status_code == 200, resp.text
        pool_id = resp.json()["pool_id"]

        def members(state: str | None = None) -> list[str]:
            got = b.api("GET", f"{base}/{pool_id}").json()["containers"]
            return [c["sandbox_id"] for c in got if state is None or c["state"] == state]

        assert wait_for(lambda: len(members("Idle")) == 2, 60), members()
        # Both nodes run a refill pass every 3 s; only the one holding the pool's turn refills.
        time.sleep(7)
        warm = members()
        assert len(warm) == 2, warm
        home, other = (a, b) if set(warm) <= containers(a) else (b, a)
        assert set(warm) <= containers(home) and not set(warm) & containers(other)

        # A claim asked of the other node is relayed to the pool's node: it gets a warm sandbox.
        resp = other.api("POST", f"{base}/{pool_id}/sandboxes", json={"name": "claimed-anywhere"})
        assert resp.status_code == 200, resp.text
        claimed = resp.json()["sandbox_id"]
        assert claimed in warm
        assert other.api("GET", "/v1/namespaces/default/sandboxes/claimed-anywhere").json()["id"] == claimed
        assert wait_for(lambda: len(members("Idle")) == 2, 60)
        assert other.api("DELETE", f"/v1/namespaces/default/sandboxes/{claimed}").status_code == 200
        assert a.api("DELETE", f"{base}/{pool_id}").status_code in (200, 204)


def test_two_hundred_creates_at_once_over_three_nodes_never_overbook_and_never_lose_one(pg):
    url = pg.create_database("alcove_crowd")
    # Each node has room for ten sandboxes of 256 MiB: thirty in all.
    room = ["--node-memory-mb", "2560", "--memory-overcommit", "1", "--node-cpus", "1", "--cpu-overcommit", "4"]
    body = {"resources": {"cpus": 0.25, "memory_mb": 256, "disk_mb": 1024}}
    with nodes_on(url, [f"crowd-{i}" for i in range(3)], extra_args=room) as nodes:
        def create(i: int):
            return nodes[i % 3].api("POST", "/v1/namespaces/default/sandboxes", json=body)

        with ThreadPoolExecutor(50) as pool:
            answers = list(pool.map(create, range(200)))
        made = [r.json()["sandbox_id"] for r in answers if r.status_code == 200]
        others = [r for r in answers if r.status_code != 200]
        odd = [(r.status_code, r.text) for r in others if r.status_code != 503][:3]
        assert not odd, odd
        assert len(set(made)) == len(made), "a sandbox was made twice"
        assert {(r.status_code, r.json()["code"]) for r in others} == {(503, "RESOURCE_EXHAUSTED")}
        # Every room was used: a create is refused only once all three nodes are full. (A
        # sandbox that fails to start on a starved machine frees its room for another, so
        # more than thirty may be made; never more than ten live on one node.)
        assert len(made) >= 30, len(made)

        def settled() -> bool:
            return all(nodes[0].api("GET", f"/v1/namespaces/default/sandboxes/{sid}").json()["status"]
                       in ("running", "failed") for sid in made)

        assert wait_for(settled, 120)
        live = {s["id"] for s in nodes[0].live_sandboxes()}
        assert live <= set(made)
        per_node = [containers(srv) for srv in nodes]
        assert all(len(c) <= 10 for c in per_node), [len(c) for c in per_node]
        assert set().union(*per_node) == live
        if len(made) == 30:
            # Nothing failed: ten per node, each node's reported use at its offer.
            assert [len(c) for c in per_node] == [10, 10, 10], [len(c) for c in per_node]
            for i in range(3):
                assert wait_for(lambda: node(nodes[0], f"crowd-{i}")["used"]["memory_mb"] == 2560, 20)


def test_copies_that_do_not_fit_on_the_sources_node_are_restored_where_there_is_room(pg):
    from framework.s3 import S3Server

    url = pg.create_database("alcove_copy_place")
    B = "/v1/namespaces/default/sandboxes"
    with S3Server() as s3:
        # Each node promises 2048 MiB: four sandboxes of 512 MiB.
        args = ["--node-memory-mb", "2048", "--memory-overcommit", "1", *s3.alcove_args("copies")]
        with (
            nodes_on(url, ["copy-a", "copy-b"], extra_args=args, extra_env=s3.alcove_env()) as (a, b),
            SandboxClient(api_url=a.url) as via_a,
        ):
            source = via_a.create_and_connect(cpus=0.5, memory_mb=512)
            assert containers(a) == {source.sandbox_id}
            source.write_file("/root/notes.txt", b"copied across machines")
            counter = source.start_process("sh", ["-c", COUNTER])

            # Asked of B, relayed to A: three copies fit beside the source, the fourth is
            # restored on B from the dump A put in the blob store.
            resp = b.api("POST", f"{B}/{source.sandbox_id}/copy?times=4")
            assert resp.status_code == 200, resp.text
            copies = [c["sandbox_id"] for c in resp.json()["sandboxes"]]
            assert len(set(copies)) == 4 and all(c["status"] == "running" for c in resp.json()["sandboxes"])
            assert containers(a) == {source.sandbox_id, *copies[:3]}, containers(a)
            [moved] = set(copies) - containers(a)
            assert containers(b) == {moved}
            assert sandbox(b, moved)["status"] == "running"
            assert wait_for(lambda: node(a, "copy-b")["used"]["memory_mb"] == 512, 20)
            remote = via_a.connect(moved)
            assert remote.read_file("/root/notes.txt") == b"copied across machines"
            assert any(p.pid == counter.pid and p.status == "running" for p in remote.list_processes())
            assert still_counting(remote)
            # Independent: a write in the copy on B does not reach the source.
            remote.write_file("/root/notes.txt", b"changed on b")
            assert source.read_file("/root/notes.txt") == b"copied across machines"
            # The dump served its purpose: it leaves the blob store.
            assert wait_for(lambda: not s3.objects("copies/copies"), 20), s3.objects("copies/copies")

            # Eight more: A is full, B has room for three; the other five fail with the reason.
            resp = a.api("POST", f"{B}/{source.sandbox_id}/copy?times=8")
            assert resp.status_code == 422, resp.text
            got = resp.json()["sandboxes"]
            running = [c["sandbox_id"] for c in got if c["status"] == "running"]
            failed = [c for c in got if c["status"] != "running"]
            assert len(got) == 8 and len(running) == 3, got
            assert set(running) <= containers(b)
            assert all("no node had room" in (c["reason"] or "") for c in failed), failed
            assert wait_for(lambda: node(a, "copy-b")["used"]["memory_mb"] == 2048, 20)
            assert node(a, "copy-a")["used"]["memory_mb"] == 2048

            # Both full: nothing is made, the source is not even frozen for a dump, and the
            # answer says so.
            dumps = operations(a, "copy_dump")
            refused = b.api("POST", f"{B}/{source.sandbox_id}/copy?times=1")
            assert refused.status_code == 503, refused.text
            assert refused.json()["code"] == "RESOURCE_EXHAUSTED", refused.text
            assert operations(a, "copy_dump") == dumps

            # Only the copies are left on the nodes: no dump stays on either disk.
            for srv in (a, b):
                left = [p.name for p in (srv.data_dir / "snapshots").glob("copy-*")]
                assert not left, left
            for sid in [*copies, *running]:
                assert a.api("DELETE", f"{B}/{sid}").status_code == 200
            via_a.delete(source.sandbox_id)


def test_a_node_selector_keeps_sandboxes_copies_and_pools_on_nodes_with_those_labels(pg):
    from framework.s3 import S3Server

    url = pg.create_database("alcove_selector")
    B = "/v1/namespaces/default/sandboxes"
    with S3Server() as s3:
        # Each node promises 2048 MiB: two sandboxes of 1 GiB. Only B has zone=b.
        args = ["--node-memory-mb", "2048", "--memory-overcommit", "1", *s3.alcove_args("selector")]
        labels = [["--node-label", "zone=a"], ["--node-label", "zone=b", "--node-label", "gpu=yes"]]
        with (
            nodes_on(url, ["sel-a", "sel-b"], extra_args=args, extra_env=s3.alcove_env(),
                     node_args=labels) as (a, b),
            SandboxClient(api_url=a.url) as via_a,
        ):
            body = {"resources": {"cpus": 1.0, "memory_mb": 1024}, "node_selector": {"zone": "b"}}
            # Asked of A, which has room but not the label: placed on B.
            made = a.api("POST", B, json=body)
            assert made.status_code == 200, made.text
            sid = made.json()["sandbox_id"]
            assert containers(b) == {sid} and not containers(a)
            assert sandbox(a, sid)["node_selector"] == {"zone": "b"}
            source = via_a.connect(sid)
            source.write_file("/root/notes.txt", b"stays on zone b")

            # Labels no node has, and labels that are not labels: refused, nothing made.
            for bad, status, code, says in [
                ({"zone": "c"}, 503, "RESOURCE_EXHAUSTED", "zone=c"),
                ({"zone": "b", "gpu": "no"}, 503, "RESOURCE_EXHAUSTED", "gpu=no"),
                ({"bad key": "x"}, 400, "INVALID_ARGUMENT", "node_selector"),
                ({"zone": 7}, 400, "INVALID_ARGUMENT", "node_selector"),
            ]:
                for srv in (a, b):
                    resp = srv.api("POST", B, json={**body, "node_selector": bad})
                    assert resp.status_code == status, resp.text
                    assert resp.json()["code"] == code, resp.text
                    assert says in resp.json()["message"], resp.text
            assert containers(b) == {sid} and not containers(a)
            assert {s["id"] for s in a.live_sandboxes()} == {sid}

            # Two copies asked of A: the one that fits beside the source is made on B; A has
            # room for the other but not the label, so it fails with the reason.
            resp = a.api("POST", f"{B}/{sid}/copy?times=2")
            assert resp.status_code == 422, resp.text
            got = resp.json()["sandboxes"]
            [copy] = [c["sandbox_id"] for c in got if c["status"] == "running"]
            [failed] = [c for c in got if c["status"] != "running"]
            assert "no node had room" in (failed["reason"] or ""), failed
            assert containers(b) == {sid, copy} and not containers(a)
            assert sandbox(a, copy)["node_selector"] == {"zone": "b"}
            assert via_a.connect(copy).read_file("/root/notes.txt") == b"stays on zone b"

            # B is full now: a copy is refused before the source is dumped, naming the labels.
            refused = a.api("POST", f"{B}/{sid}/copy?times=1")
            assert refused.status_code == 503, refused.text
            assert "zone=b" in refused.json()["message"], refused.text
            # A sandbox without a selector still goes to A.
            free = a.api("POST", B, json={"resources": {"cpus": 1.0, "memory_mb": 1024}})
            assert free.status_code == 200, free.text
            assert containers(a) == {free.json()["sandbox_id"]}
            for s in (free.json()["sandbox_id"], copy, sid):
                assert a.api("DELETE", f"{B}/{s}").status_code == 200

            # A pool's selector: its warm sandboxes start only on B, and a claim asked of A
            # is relayed there; the claimed sandbox keeps the selector.
            P = "/v1/namespaces/default/sandbox-pools"
            small = {"cpus": 0.5, "memory_mb": 512, "disk_mb": 1024}
            for bad in ({"bad key": "x"}, {"zone": 7}):
                resp = a.api("POST", P, json={"resources": small, "node_selector": bad})
                assert resp.status_code == 400 and "node_selector" in resp.text, resp.text
            resp = a.api("POST", P, json={"warm_containers": 1, "resources": small,
                                          "node_selector": {"gpu": "yes"}})
            assert resp.status_code == 200, resp.text
            pool_id = resp.json()["pool_id"]
            assert a.api("GET", f"{P}/{pool_id}").json()["node_selector"] == {"gpu": "yes"}

            def idle() -> list[str]:
                got = a.api("GET", f"{P}/{pool_id}").json()["containers"]
                return [c["sandbox_id"] for c in got if c["state"] == "Idle"]

            assert wait_for(lambda: len(idle()) == 1, 60), (idle(), a.log_tail(), b.log_tail())
            [warm] = idle()
            assert containers(b) == {warm} and not containers(a)
            claimed = a.api("POST", f"{P}/{pool_id}/sandboxes", json={"name": "pooled-on-b"})
            assert claimed.status_code == 200, claimed.text
            assert claimed.json()["sandbox_id"] == warm
            assert sandbox(a, "pooled-on-b")["node_selector"] == {"gpu": "yes"}
            assert wait_for(lambda: len(idle()) == 1 and idle()[0] != warm, 60), idle()
            assert not containers(a)

            # A pool of labels no node has: nothing starts, and a claim is refused naming them.
            resp = a.api("POST", P, json={"warm_containers": 1, "resources": small,
                                          "node_selector": {"zone": "c"}})
            assert resp.status_code == 200, resp.text
            nowhere = resp.json()["pool_id"]
            for srv in (a, b):
                refused = srv.api("POST", f"{P}/{nowhere}/sandboxes", json={})
                assert refused.status_code == 503, refused.text
                assert "zone=c" in refused.json()["message"], refused.text
            assert not a.api("GET", f"{P}/{nowhere}").json()["containers"]
            assert a.api("DELETE", f"{P}/{nowhere}").status_code in (200, 204)

            assert a.api("DELETE", f"{B}/pooled-on-b").status_code == 200
            assert a.api("DELETE", f"{P}/{pool_id}").status_code in (200, 204)
            assert wait_for(lambda: not containers(a) and not containers(b), 30), (
                containers(a), containers(b))


def test_a_pool_is_refilled_on_a_node_with_room_once_its_node_is_full(pg):
    url = pg.create_database("alcove_pool_room")
    base = "/v1/namespaces/default/sandbox-pools"
    # Each node promises 1024 MiB: two sandboxes of 512 MiB.
    room = ["--node-memory-mb", "1024", "--memory-overcommit", "1"]
    with nodes_on(url, ["fill-a", "fill-b"], extra_args=room) as (a, b):
        resp = a.api("POST", base, json={
            "warm_containers": 1, "resources": {"cpus": 0.5, "memory_mb": 512, "disk_mb": 1024}})
        assert resp.status_code == 200, resp.text
        pool_id = resp.json()["pool_id"]

        def idle() -> list[str]:
            got = a.api("GET", f"{base}/{pool_id}").json()["containers"]
            return [c["sandbox_id"] for c in got if c["state"] == "Idle"]

        assert wait_for(lambda: len(idle()) == 1, 60), idle()
        [warm] = idle()
        home, other = (a, b) if warm in containers(a) else (b, a)
        # The pool's node fills up: a sandbox of its own beside the warm one.
        filler = home.api("POST", "/v1/namespaces/default/sandboxes",
                          json={"resources": {"cpus": 0.5, "memory_mb": 512}})
        assert filler.status_code == 200, filler.text
        assert filler.json()["sandbox_id"] in containers(home)

        # The claim takes the warm sandbox; its node has no room for another, so the next
        # warm sandbox starts on the other node, and claims follow it there.
        resp = other.api("POST", f"{base}/{pool_id}/sandboxes", json={})
        assert resp.status_code == 200, resp.text
        assert resp.json()["sandbox_id"] == warm
        assert wait_for(lambda: len(idle()) == 1 and idle()[0] in containers(other), 60), (
            idle(), containers(other), home.log_tail())
        [refilled] = idle()
        resp = home.api("POST", f"{base}/{pool_id}/sandboxes", json={})
        assert resp.status_code == 200, resp.text
        assert resp.json()["sandbox_id"] == refilled
        for sid in (warm, refilled, filler.json()["sandbox_id"]):
            assert a.api("DELETE", f"/v1/namespaces/default/sandboxes/{sid}").status_code == 200
        assert a.api("DELETE", f"{base}/{pool_id}").status_code in (200, 204)
        # Deleted through one node, the pool is drained on both.
        assert wait_for(lambda: not containers(a) and not containers(b), 30), (
            containers(a), containers(b), a.log_tail(), b.log_tail())


# How often a node applies the image deletions other nodes recorded (its compactor's period).
IMAGE_SWEEP_SECS = 2


def test_an_image_made_on_one_node_runs_on_another_through_the_blob_store(pg, tmp_path):
    from framework import image_fixtures as fx
    from framework.images_api import import_archive
    from framework.s3 import S3Server

    url = pg.create_database("alcove_shared_images")
    # Node B has an image store of its own, empty (as on another machine). Not a hard-linked
    # copy of the shared one: extra links would show in other tests' images.
    own = tmp_path / "images-b"
    own.mkdir()
    repo = f"localhost/made-on-a-{uuid.uuid4().hex[:8]}"
    name, other = f"{repo}:1", f"{repo}:2"
    first = fx.write_oci_archive(fx.unique_image(tmp_path, "first"), tmp_path / "first.tar")
    second = fx.write_oci_archive(fx.unique_image(tmp_path, "second"), tmp_path / "second.tar")
    with S3Server() as s3, nodes_on(
        url, ["img-a", "img-b"], extra_args=s3.alcove_args("img"), extra_env=s3.alcove_env(),
        images_dirs=[None, own],
    ) as (a, b), SandboxClient(api_url=b.url) as via_b:
        try:
            resp = import_archive(a, first, name)
            assert resp.status_code in (200, 201), resp.text
            image_id = resp.json()["id"]
            assert s3.objects(f"img/images/{image_id.removeprefix('sha256:')}"), "no blob was shared"
            assert b.api("GET", "/images").json()["images"] == [], "B's store is not empty"

            # Asked of B, which has room, the create runs there: B fetches the image from S3.
            with via_b.create_and_connect(image=name) as there:
                assert there.sandbox_id in containers(b)
                assert len(there.read_file("/first.bin")) == 256 * 1024
                assert there.run("/bin/busybox", ["echo", "up"]).stdout.strip() == "up"
            info = b.api("GET", f"/images/{name}")
            assert info.status_code == 200 and info.json()["id"] == image_id, info.text

            # A byte flipped in one of the second image's objects in S3: B refuses it.
            resp = import_archive(a, second, other)
            assert resp.status_code in (200, 201), resp.text
            second_id = resp.json()["id"].removeprefix("sha256:")
            objects = s3.objects(f"img/images/{second_id}")
            victim = max(objects.values(), key=lambda p: p.stat().st_size)
            data = bytearray(victim.read_bytes())
            data[len(data) // 2] ^= 0xFF
            victim.write_bytes(bytes(data))
            refused = b.api("POST", "/v1/namespaces/default/sandboxes", json={"image": other})
            assert refused.json()["code"] == "OPERATION_FAILED", refused.text
            assert other in refused.json()["message"] and "corrupt" in refused.json()["message"], refused.text
            assert b.api("GET", f"/images/{other}").status_code != 200

            # Deleted through A, an image is no longer shared: B cannot fetch it any more.
            assert a.api("DELETE", f"/images/{other}").status_code == 200
            assert wait_for(lambda: not s3.objects(f"img/images/{second_id}"), 20)
            assert b.api("GET", f"/images/{other}").status_code == 404

            # While a sandbox on B runs the image, a delete through A is refused, naming it, and
            # A lists it among the image's users.
            with via_b.create_and_connect(image=name) as keeper:
                refused = a.api("DELETE", f"/images/{name}")
                assert refused.status_code == 409, refused.text
                assert refused.json()["code"] == "IMAGE_IN_USE"
                assert keeper.sandbox_id in refused.json()["message"]
                used_by = a.api("GET", f"/images/{name}").json()["used_by"]
                assert keeper.sandbox_id in used_by["sandboxes"], used_by
                assert keeper.run("/bin/busybox", ["echo", "kept"]).stdout.strip() == "kept"
            # Once it ended, deleted through A, the image B fetched goes from B too.
            assert a.api("DELETE", f"/images/{name}").status_code == 200
            assert a.api("GET", f"/images/{name}").status_code == 404
            assert wait_for(lambda: b.api("GET", f"/images/{name}").status_code == 404,
                            10 * IMAGE_SWEEP_SECS), b.log_tail()
            assert b.api("GET", "/images").json()["images"] == []
        finally:
            a.api("DELETE", f"/images/{name}")
            a.api("DELETE", f"/images/{other}")


# A web server that answers every request with the request's header names, one per line.
ECHO_HEADERS = """
import http.server
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = "\\n".join(k.lower() for k in self.headers.keys()).encode()
        self.send_response(200); self.send_header("Content-Length", str(len(body))); self.end_headers()
        self.wfile.write(body)
http.server.ThreadingHTTPServer(("0.0.0.0", 8000), H).serve_forever()
"""


def test_clients_cannot_forge_a_relay_and_the_relay_token_never_reaches_a_sandbox(pg):
    import httpx

    url = pg.create_database("alcove_relay_token")
    B = "/v1/namespaces/default/sandboxes"
    with nodes_on(url, ["relay-a", "relay-b"]) as (a, b), SandboxClient(api_url=a.url) as via_a:
        sb = via_a.create_and_connect(expose_ports=[8000])
        assert sb.sandbox_id in containers(a)
        sb.start_process("python3", ["-c", ECHO_HEADERS])
        probe = "for i in $(seq 400); do (exec 3<>/dev/tcp/127.0.0.1/8000) 2>/dev/null && exit 0; sleep 0.05; done; exit 1"
        assert sb.run("bash", ["-c", probe]).exit_code == 0

        # Through B, relayed to A: the sandbox sees no relay token and no relay header.
        got = httpx.get(f"{b.url}/", timeout=30, headers={"Host": f"8000-{sb.sandbox_id}.sandbox.localhost:{b.port}"})
        assert got.status_code == 200, got.text
        seen = set(got.text.split())
        assert "host" in seen, seen
        assert not {"x-alcove-relay-token", "x-alcove-forwarded-by"} & seen, seen

        # A client claiming to be a node: its relay headers are dropped, and B relays as usual
        # (trusted, they would make B answer for a sandbox it does not have).
        forged = {"x-alcove-forwarded-by": "relay-a", "x-alcove-relay-token": "guess"}
        resp = b.api("GET", f"{B}/{sb.sandbox_id}/processes", headers=forged)
        assert resp.status_code == 200, resp.text
        assert any(p["processCommand"] == "python3" for p in resp.json()["processes"]), resp.text
        got = httpx.get(f"{b.url}/", timeout=30, headers={
            "Host": f"8000-{sb.sandbox_id}.sandbox.localhost:{b.port}", **forged})
        assert got.status_code == 200, got.text
        assert not {"x-alcove-relay-token", "x-alcove-forwarded-by"} & set(got.text.split())
        # Nor can it make B restore copies from a dump of its choosing.
        resp = b.api("POST", f"{B}/{sb.sandbox_id}/copy?times=1", headers={
            **forged, "x-alcove-copy-dump": str(uuid.uuid4())})
        assert resp.status_code == 200, resp.text
        [copy] = resp.json()["sandboxes"]
        assert copy["sandbox_id"] in containers(a)
        via_a.delete(copy["sandbox_id"])
        via_a.delete(sb.sandbox_id)


def test_dumps_move_between_nodes_running_different_agent_builds(pg, tmp_path):
    """A cluster in the middle of an upgrade: a sandbox suspended on a node with one agent build
    resumes on a node with another, and a memory snapshot taken there restores there, because
    the build that made each dump travels with it through the blob store."""
    from framework.s3 import S3Server

    builds = {}
    for name, extra in (("old", b""), ("new", b"\0a newer build")):
        path = tmp_path / name / "alcove-agent"
        path.parent.mkdir()
        shutil.copyfile(AGENT_PATH, path)
        with open(path, "ab") as f:
            f.write(extra)
        os.chmod(path, 0o755)
        builds[name] = path
    url = pg.create_database("alcove_agent_builds")
    cfg = tmp_path / "c.json"
    with S3Server() as s3:
        with (
            nodes_on(url, ["build-old", "build-new"], extra_args=s3.alcove_args("builds"),
                     extra_env=s3.alcove_env(), agents=[builds["old"], builds["new"]]) as (old, new),
            SandboxClient(api_url=old.url) as client,
        ):
            def drain(node: str, then_activate: str | None = None) -> None:
                assert run_cli(old.url, "node", "drain", node, config=cfg).returncode == 0
                if then_activate:
                    assert run_cli(old.url, "node", "activate", then_activate, config=cfg).returncode == 0

            # Made on the old build (the new node drained meanwhile).
            drain("build-new")
            mover = client.create_and_connect(name="mover")
            assert containers(old) == {mover.sandbox_id}
            mover.write_file("/root/notes.txt", b"made by the old build")
            counter = mover.start_process("sh", ["-c", COUNTER])
            snap = client.snapshot_and_wait("mover")
            old_digest = (old.data_dir / "sandboxes" / mover.sandbox_id / "alcove-agent.sha256").read_text().strip()

            # The old node drained: its named sandbox is suspended into the blob store, and
            # resumes on the new node, whose own build is another.
            drain("build-old", then_activate="build-new")
            assert wait_for(lambda: client.get("mover").status == "suspended", 60)
            resp = resume_when_moved(new, "mover", wait_ms=120000)
            assert resp["status_code"] == 200, resp
            assert containers(new) == {mover.sandbox_id}
            moved = client.connect("mover")
            assert moved.read_file("/root/notes.txt") == b"made by the old build"
            assert any(p.pid == counter.pid and p.status == "running" for p in moved.list_processes())
            assert still_counting(moved)
            new_builds = sorted(os.listdir(new.data_dir / "agents"))
            assert old_digest in new_builds and len(new_builds) == 2, new_builds

            # The snapshot the old build took restores on the new node too.
            restored = client.create_and_connect(snapshot_id=snap.snapshot_id)
            assert restored.sandbox_id in containers(new)
            assert restored.read_file("/root/notes.txt") == b"made by the old build"
            assert still_counting(restored)
            # And a sandbox of the new build still starts there.
            fresh = client.create_and_connect()
            assert fresh.run("true").exit_code == 0
            for sid in (fresh.sandbox_id, restored.sandbox_id, "mover"):
                client.delete(sid)
            client.delete_snapshot(snap.snapshot_id)
            assert run_cli(old.url, "node", "activate", "build-old", config=cfg).returncode == 0
