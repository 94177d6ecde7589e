"""Attacks on API keys in a cluster: the relay middleware (`forward_to_owner`,
crates/server/src/proxy/owner.rs) runs before the API-key check, and some of what it does for a
request it has not authenticated yet changes the store or answers for a sandbox:

* a resume (or traffic to a sandbox that wakes on it) asked of a draining node hands the node's
  suspended sandbox to another node (`hand_over_when_unable`);
* the same asked of any node for a suspended sandbox whose node stopped moves it to the node
  asked (`take_over_suspended`);
* any request naming a sandbox whose node is offline is answered `503 NODE_OFFLINE` with the
  sandbox's id and node, where a request without a key must learn nothing
  (docs/protocol/proxy.md: "an anonymous request neither wakes a sandbox nor learns which ones
  exist").

Each of them is answered 401 in the end, but only after the move. Without a key (or with a wrong
one) none of this may happen."""

from __future__ import annotations

import time

import httpx
import pytest

from alcove.sandbox import SandboxClient
from framework.cluster import node_info, wait_until_met
from framework.host import wait_for
from framework.metrics import operations
from framework.postgres import PostgresCluster
from framework.server import AlcoveServer, retire

KEY = "k-attacks"
B = "/v1/namespaces/default/sandboxes"
# No key, and a wrong one: both must be refused before anything happens.
ANONYMOUS = ({}, {"Authorization": "Bearer not-the-key"})


@pytest.fixture(scope="module")
def pg():
    with PostgresCluster() as cluster:
        yield cluster


def keyed_nodes(url: str, names: list[str], blobs) -> list[AlcoveServer]:
    servers = [
        AlcoveServer(
            api_keys=[KEY],
            extra_args=["--database", url, "--node-name", name, "--node-lease-secs", "3",
                        "--blob-store", f"file://{blobs}", "--compress-after-secs", "0"],
        )
        for name in names
    ]
    for srv in servers:
        srv.start()
    wait_until_met(servers, names, 3)
    return servers


def owner(pg: PostgresCluster, db: str, name: str) -> str:
    return pg.psql(db, f"SELECT node FROM sandboxes WHERE name = '{name}' AND status <> 'terminated'")


def suspend_into_blobs(client: SandboxClient, srv: AlcoveServer, name: str) -> None:
    before = operations(srv, "blob_upload")
    client.suspend(name)
    assert wait_for(lambda: operations(srv, "blob_upload") > before, 60), srv.log_tail()


def anonymous_attempts(srv: AlcoveServer, name: str) -> list[httpx.Response]:
    """A resume and waking traffic for `name`, each without a key and with a wrong one."""
    out = []
    for headers in ANONYMOUS:
        out.append(httpx.post(f"{srv.url}{B}/{name}/resume", headers=headers, timeout=90))
        out.append(httpx.get(f"{srv.url}/api/v1/processes", timeout=90,
                             headers={**headers, "X-Tensorlake-Sandbox-Id": name}))
    return out


def test_a_request_without_the_key_cannot_hand_over_a_draining_nodes_sandbox(pg, tmp_path):
    db = "alcove_attack_drain"
    url = pg.create_database(db)
    a, b = keyed_nodes(url, ["atk-drain-a", "atk-drain-b"], tmp_path)
    try:
        with SandboxClient(api_url=a.url, api_key=KEY) as via_a:
            via_a.create_and_connect(name="asleep")
            suspend_into_blobs(via_a, a, "asleep")
            assert a.api("POST", "/nodes/atk-drain-a/drain").status_code == 200
            assert wait_for(lambda: node_info(b, "atk-drain-a")["state"] == "draining", 15)
            assert owner(pg, db, "asleep") == "atk-drain-a"

            for resp in anonymous_attempts(a, "asleep"):
                assert resp.status_code == 401, resp.text
            # Refused, and nothing moved: the operator's drain decides where it goes.
            assert owner(pg, db, "asleep") == "atk-drain-a", "handed over by a request without a key"
            # With the key, the same resume hands it over: the refusal above was the key's.
            via_a.resume("asleep")
            assert owner(pg, db, "asleep") == "atk-drain-b"

            assert a.api("POST", "/nodes/atk-drain-a/activate").status_code == 200
            via_a.delete("asleep")
    finally:
        retire(b)
        retire(a)


def test_a_request_without_the_key_cannot_move_a_stopped_nodes_sandbox_or_learn_it(pg, tmp_path):
    db = "alcove_attack_stopped"
    url = pg.create_database(db)
    a, b = keyed_nodes(url, ["atk-stop-a", "atk-stop-b"], tmp_path)
    try:
        with SandboxClient(api_url=b.url, api_key=KEY) as via_b:
            via_b.create_and_connect(name="asleep")
            suspend_into_blobs(via_b, b, "asleep")
            live = via_b.create_and_connect(name="awake").sandbox_id
        b.stop()
        assert wait_for(lambda: node_info(a, "atk-stop-b")["state"] == "offline", 30)
        # Past the grace after a stop (a third of the lease) in which a take-over waits.
        time.sleep(2)

        for resp in anonymous_attempts(a, "asleep"):
            assert resp.status_code == 401, resp.text
        assert owner(pg, db, "asleep") == "atk-stop-b", "moved by a request without a key"

        # A sandbox of the offline node answers as a missing one does: no id, no node, no 503.
        for headers in ANONYMOUS:
            for resp in (
                httpx.get(f"{a.url}{B}/awake/logs", headers=headers, timeout=30),
                httpx.post(f"{a.url}{B}/awake/suspend", headers=headers, timeout=30),
                httpx.get(f"{a.url}/api/v1/processes", timeout=30,
                          headers={**headers, "X-Tensorlake-Sandbox-Id": "awake"}),
            ):
                assert resp.status_code == 401, resp.text
                assert live not in resp.text and "atk-stop-b" not in resp.text, resp.text
        # With the key, a resume moves it here: the refusals above were the key's.
        with SandboxClient(api_url=a.url, api_key=KEY) as via_a:
            via_a.resume("asleep")
        assert owner(pg, db, "asleep") == "atk-stop-a"
    finally:
        # (retire starts a stopped node again and deletes what it still holds.)
        retire(b)
        retire(a)
