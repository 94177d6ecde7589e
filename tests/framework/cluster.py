"""Several Alcove nodes on one PostgreSQL store, for the cluster tests."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import httpx

from framework.host import wait_for
from framework.metrics import operations
from framework.netns import NodeNetwork
from framework.server import AlcoveServer, retire

# The API key of nodes that listen beyond loopback.
NODE_KEY = "cluster-test-key"

# A shell loop writing a growing count to /root/n: memory that must survive a move.
COUNTER = "i=0; while true; do i=$((i+1)); echo $i > /root/n; sleep 0.2; done"


def node_info(srv: AlcoveServer, name: str) -> dict:
    """Node `name` as `srv` lists it (`GET /nodes`)."""
    [found] = [n for n in srv.api("GET", "/nodes").json()["nodes"] if n["name"] == name]
    return found


def sandbox(srv: AlcoveServer, ident: str) -> dict:
    """Sandbox `ident`'s record as `srv` answers it."""
    return srv.api("GET", f"/v1/namespaces/default/sandboxes/{ident}").json()


def runc(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """runc on the containers of the node whose data directory is `data_dir`."""
    return subprocess.run(["runc", "--root", str(data_dir / "runc"), *args], capture_output=True, text=True)


def container_status(data_dir: Path, sandbox_id: str) -> str | None:
    """runc's status of a sandbox's container on that node, `None` without one."""
    out = runc(data_dir, "state", sandbox_id)
    return json.loads(out.stdout)["status"] if out.returncode == 0 else None


def suspend_into_blob_store(client, srv: AlcoveServer, ident: str) -> None:
    """Suspends `ident` through `client` and waits until node `srv` has uploaded its dump."""
    before = operations(srv, "blob_upload")
    client.suspend(ident)
    assert wait_for(lambda: operations(srv, "blob_upload") > before, 60), srv.log_tail()


def resume_when_moved(srv: AlcoveServer, ident: str, wait_ms: int | None = None) -> dict:
    """Resumes `ident` through `srv` (waiting up to `wait_ms` for the resume, if given),
    asking again while its stopped node may still be finishing (503 NODE_OFFLINE for a third
    of a lease after the stop); the last answer's JSON, with its `status_code`."""
    answer: dict = {}
    query = "" if wait_ms is None else f"?wait_ms={wait_ms}"

    def asked() -> bool:
        resp = srv.api("POST", f"/v1/namespaces/default/sandboxes/{ident}/resume{query}")
        answer.update(resp.json(), status_code=resp.status_code)
        return resp.status_code != 503

    assert wait_for(asked, 30), answer
    return answer


def terminal_works(sandbox, marker: str) -> None:
    """Opens a PTY in `sandbox`, echoes `marker-42` through bash and exits it (asserting each
    step): a WebSocket end to end, through whatever relays sit between."""
    pty = sandbox.create_pty(command="bash", cols=80, rows=24, env={"PS1": "$ "})
    with pty:
        pty.read_until("$ ", timeout=10)
        pty.send(f"echo {marker}-$((40+2))\n")
        assert f"{marker}-42".encode() in pty.read_until("$ ", timeout=10)
        pty.send("exit 0\n")
        assert pty.wait(timeout=10) == 0


# Waits (20 s at most) until something listens on port 8000 inside the sandbox.
_PORT_8000_OPEN = ("for i in $(seq 400); do (exec 3<>/dev/tcp/127.0.0.1/8000) 2>/dev/null && exit 0; "
                   "sleep 0.05; done; exit 1")


def serve_file(sandbox, content: bytes) -> None:
    """Starts a web server on port 8000 of `sandbox` serving `content` as `/hi.txt`, and waits
    until it listens."""
    sandbox.write_file("/tmp/www/hi.txt", content)
    sandbox.start_process("python3", ["-m", "http.server", "8000", "--bind", "0.0.0.0"], working_dir="/tmp/www")
    assert sandbox.run("bash", ["-c", _PORT_8000_OPEN]).exit_code == 0


def tunnel_serves(sandbox, content: bytes) -> None:
    """Asserts that a tunnel to port 8000 of `sandbox` (see `serve_file`) gets `content`."""
    with sandbox.create_tunnel(8000) as tunnel:
        got = httpx.get(f"http://127.0.0.1:{tunnel.local_port}/hi.txt", timeout=10)
        assert got.content == content


def still_counting(sandbox) -> bool:
    """Whether the sandbox's COUNTER goes on (its process survived)."""
    first = int(sandbox.read_file("/root/n"))
    return wait_for(lambda: int(sandbox.read_file("/root/n")) > first, 10)


@contextmanager
def nodes_on(
    url: str,
    names: Sequence[str],
    extra_args: Sequence[str] = (),
    extra_env: dict[str, str] | None = None,
    lease_secs: int = 3,
    meet: bool = True,
    network: NodeNetwork | None = None,
    images_dirs: Sequence[Path | None] = (),
    node_args: Sequence[Sequence[str]] = (),
    tls_cas: Sequence[Path | None] = (),
    agents: Sequence[Path | None] = (),
) -> Iterator[list[AlcoveServer]]:
    """Nodes `names` (in that order) on database `url`, each with its own data directory and
    subnet; with `meet`, once each has counted the others. Retired (last first) after.

    With `network`, node i runs in that network's namespace i and listens on its address
    (with an API key, as a server listening beyond loopback must). `images_dirs[i]`, when
    given and not `None`, is node i's own image store (else the one all tests share), and
    `node_args[i]` node i's own arguments (its labels, say). `tls_cas[i]`, when given and not
    `None`, says node i serves HTTPS (its `node_args` name the certificate) checked against
    that CA. `agents[i]`, when given and not `None`, is node i's agent binary (another build)."""
    servers = [
        AlcoveServer(
            extra_args=["--database", url, "--node-name", name, "--node-lease-secs", str(lease_secs),
                        *extra_args, *(node_args[i] if i < len(node_args) else ())],
            extra_env=extra_env,
            images_dir=images_dirs[i] if i < len(images_dirs) else None,
            tls_ca=tls_cas[i] if i < len(tls_cas) else None,
            agent=agents[i] if i < len(agents) else None,
            **({} if network is None else {
                "host": network.address(i),
                "launcher": network.enter(i),
                "api_keys": [NODE_KEY],
            }),
        )
        for i, name in enumerate(names)
    ]
    for srv in servers:
        srv.start()
    try:
        if meet:
            wait_until_met(servers, names, lease_secs)
        yield servers
    finally:
        # Every node is retired, even when one left something behind: the first failure is
        # raised once all are stopped, so that no server outlives a failed test.
        failures: list[BaseException] = []
        for srv in reversed(servers):
            try:
                retire(srv)
            except Exception as e:  # noqa: BLE001 (re-raised below)
                failures.append(e)
        if failures:
            raise failures[0]
        if network is not None:
            for i in range(len(servers)):
                left = network.leftovers(i)
                assert not left, f"node {names[i]} left in its network: {left}"


def wait_until_met(servers: Sequence[AlcoveServer], names: Sequence[str], lease_secs: int) -> None:
    """Waits until every node has renewed its lease after the last one joined: from then on each
    knows it shares the store (placement, pool turns, routing and fencing need that)."""
    all_joined_ms = time.time() * 1000
    least = all_joined_ms + lease_secs * 1000

    def renewed() -> bool:
        nodes = {n["name"]: n for n in servers[0].api("GET", "/nodes").json()["nodes"]}
        return all(nodes[name]["lease_expires_at"] > least for name in names)

    assert wait_for(renewed, 15), "the nodes did not all renew their leases"
