"""Nodes against a fake server: server-level routes (not under a namespace), decoding, error
mapping, name checks, and the 503s a draining node or an unreachable store answer."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import httpx
import pytest

from alcove.sandbox import (
    AsyncSandboxClient,
    NodeInfo,
    NodeResources,
    NodeState,
    RemoteAPIError,
    SandboxClient,
    SandboxError,
    SandboxNotFoundError,
)
from alcove.sandbox import _protocol as proto
from fakes import FakeServer, jsonr

NODES = "/nodes"
NODE = f"{NODES}/node-a"
DRAIN = f"{NODE}/drain"
ACTIVATE = f"{NODE}/activate"
SANDBOXES = "/v1/namespaces/default/sandboxes"
SBX = f"{SANDBOXES}/sbx-1"


def node_json(name: str = "node-a", state: str = "active", **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": name,
        "address": "http://10.0.0.5:8900",
        "state": state,
        "labels": {"zone": "eu-1", "disk": "ssd"},
        "subnet": "10.200.0.0/16",
        "capacity": {"cpus": 16.0, "memory_mb": 65536},
        "used": {"cpus": 2.5, "memory_mb": 4096},
        "running_sandboxes": 3,
        "suspended_sandboxes": 1,
        "version": "0.1.0",
        "started_at": 1_795_711_162_444,
        "lease_expires_at": 1_795_711_177_444,
    }
    body.update(extra)
    return body


def error(status: int, code: str, message: str, **headers: str) -> httpx.Response:
    return httpx.Response(status, json={"message": message, "code": code}, headers=headers)


# ---------------------------------------------------------------------------------------------
# Routes and decoding


def test_list_nodes_is_a_server_route_and_decodes_every_field(server: FakeServer, client: SandboxClient) -> None:
    server.on("GET", NODES, jsonr(200, {"nodes": [node_json(), node_json("node-b", "draining", labels={})]}))
    nodes = client.list_nodes()
    assert [(r.method, r.url.path) for r in server.requests] == [("GET", "/nodes")]
    assert str(server.requests[0].url) == "http://localhost:8900/nodes"
    assert [n.name for n in nodes] == ["node-a", "node-b"]
    a, b = nodes
    assert isinstance(a, NodeInfo) and isinstance(a.capacity, NodeResources)
    assert a.state == NodeState.ACTIVE and a.state == "active"
    assert b.state == NodeState.DRAINING and b.labels == {}
    assert a.address == "http://10.0.0.5:8900" and a.subnet == "10.200.0.0/16" and a.version == "0.1.0"
    assert a.labels == {"zone": "eu-1", "disk": "ssd"}
    assert (a.capacity.cpus, a.capacity.memory_mb) == (16.0, 65536)
    assert (a.used.cpus, a.used.memory_mb) == (2.5, 4096)
    assert (a.running_sandboxes, a.suspended_sandboxes) == (3, 1)
    assert a.started_at == datetime.fromtimestamp(1_795_711_162.444, tz=timezone.utc)
    assert a.lease_expires_at is not None and a.lease_expires_at > a.started_at
    assert a.lost_at is None  # older servers do not send it


def test_a_lost_node_says_when(server: FakeServer, client: SandboxClient) -> None:
    server.on("GET", NODES, jsonr(200, {"nodes": [node_json(state="offline", lost_at=1_795_711_180_000)]}))
    (node,) = client.list_nodes()
    assert node.state == NodeState.OFFLINE
    assert node.lost_at == datetime.fromtimestamp(1_795_711_180, tz=timezone.utc)


def test_an_empty_list_and_an_unknown_state(server: FakeServer, client: SandboxClient) -> None:
    server.on("GET", NODES, [jsonr(200, {"nodes": []}), jsonr(200, {"nodes": [node_json(state="retiring")]})])
    assert client.list_nodes() == []
    (node,) = client.list_nodes()
    assert node.state == "retiring"  # a state a newer server may add is kept as a string


def test_the_namespace_plays_no_part(server: FakeServer, sleeps: list[float]) -> None:
    server.on("GET", "/prefix/nodes", jsonr(200, {"nodes": [node_json()]}))
    transport = httpx.MockTransport(server)
    with SandboxClient(api_url="http://localhost:8900/prefix/", namespace="team-a", transport=transport) as c:
        assert [n.name for n in c.list_nodes()] == ["node-a"]
    assert str(server.requests[0].url) == "http://localhost:8900/prefix/nodes"


@pytest.mark.parametrize(
    ("call", "path", "state"), [("drain_node", DRAIN, "draining"), ("activate_node", ACTIVATE, "active")]
)
def test_drain_and_activate_post_to_the_node(
    server: FakeServer, client: SandboxClient, call: str, path: str, state: str
) -> None:
    server.on("POST", path, jsonr(200, node_json(state=state)))
    node = getattr(client, call)("node-a")
    assert [(r.method, r.url.path) for r in server.requests] == [("POST", path)]
    assert server.requests[0].content == b""
    assert isinstance(node, NodeInfo) and node.name == "node-a" and node.state == state


def test_the_api_key_is_sent(server: FakeServer, sleeps: list[float]) -> None:
    server.on("GET", NODES, jsonr(200, {"nodes": []}))
    with SandboxClient(api_key="secret", transport=httpx.MockTransport(server)) as c:
        c.list_nodes()
    assert server.requests[0].headers["authorization"] == "Bearer secret"


def test_node_names_are_one_path_segment(server: FakeServer, client: SandboxClient) -> None:
    server.on("POST", f"{NODES}/a/b/drain", jsonr(200, node_json("a/b")))  # routed by the decoded path
    client.drain_node("a/b")
    assert server.requests[0].url.raw_path.decode() == f"{NODES}/a%2Fb/drain"


@pytest.mark.parametrize("name", ["", "   ", None, 7, ".", ".."])
@pytest.mark.parametrize("call", ["drain_node", "activate_node"])
def test_bad_names_are_refused_before_sending(server: FakeServer, client: SandboxClient, call: str, name: Any) -> None:
    with pytest.raises(ValueError, match="name"):
        getattr(client, call)(name)
    assert server.requests == []


def test_a_malformed_node_is_a_sandbox_error(server: FakeServer, client: SandboxClient) -> None:
    server.on("GET", NODES, jsonr(200, {"nodes": [{"name": "node-a"}]}))
    server.on("POST", DRAIN, httpx.Response(200, text="not json"))
    with pytest.raises(SandboxError, match="decoding node list"):
        client.list_nodes()
    with pytest.raises(SandboxError, match="decoding node"):
        client.drain_node("node-a")


# ---------------------------------------------------------------------------------------------
# Errors


@pytest.mark.parametrize("call", ["drain_node", "activate_node"])
def test_an_unknown_node_is_a_404_remote_api_error(server: FakeServer, client: SandboxClient, call: str) -> None:
    missing = error(404, "NOT_FOUND", "node node-a not found")
    server.on("POST", DRAIN, missing)
    server.on("POST", ACTIVATE, missing)
    with pytest.raises(RemoteAPIError) as info:
        getattr(client, call)("node-a")
    assert not isinstance(info.value, SandboxNotFoundError)
    assert (info.value.status_code, info.value.code, info.value.message) == (404, "NOT_FOUND", "node node-a not found")
    assert len(server.requests) == 1


def test_create_on_a_draining_node_is_node_draining(server: FakeServer, client: SandboxClient) -> None:
    server.on("POST", SANDBOXES, error(503, "NODE_DRAINING", "node node-a is draining"))
    server.on("POST", f"{SBX}/resume", error(503, "NODE_DRAINING", "node node-a is draining"))
    with pytest.raises(RemoteAPIError) as created:
        client.create(name="job")
    assert (created.value.status_code, created.value.code) == (503, "NODE_DRAINING")
    with pytest.raises(RemoteAPIError) as resumed:
        client.resume("sbx-1")
    assert (resumed.value.status_code, resumed.value.code) == (503, "NODE_DRAINING")
    assert not isinstance(resumed.value, SandboxNotFoundError)
    # Neither is sent again: a drain lasts until an operator activates the node.
    assert len(server.requests) == 2


def test_store_unavailable_is_retried_on_gets_after_retry_after(
    server: FakeServer, client: SandboxClient, sleeps: list[float]
) -> None:
    down = error(503, "STORE_UNAVAILABLE", "the database cannot be reached", **{"Retry-After": "2"})
    server.on("GET", NODES, [down, jsonr(200, {"nodes": [node_json()]})])
    assert [n.name for n in client.list_nodes()] == ["node-a"]
    assert len(server.calls("GET", NODES)) == 2
    assert sleeps == [2.0]  # Retry-After, not the 0.2 s back-off


def test_store_unavailable_surfaces_after_the_last_get(
    server: FakeServer, client: SandboxClient, sleeps: list[float]
) -> None:
    server.on("GET", NODES, error(503, "STORE_UNAVAILABLE", "the database cannot be reached", **{"Retry-After": "2"}))
    with pytest.raises(RemoteAPIError) as info:
        client.list_nodes()
    assert (info.value.status_code, info.value.code) == (503, "STORE_UNAVAILABLE")
    assert len(server.requests) == proto.GET_ATTEMPTS
    assert sleeps == [2.0, 2.0]


def test_store_unavailable_is_not_retried_on_posts(
    server: FakeServer, client: SandboxClient, sleeps: list[float]
) -> None:
    server.on("POST", DRAIN, error(503, "STORE_UNAVAILABLE", "the database cannot be reached", **{"Retry-After": "2"}))
    with pytest.raises(RemoteAPIError) as info:
        client.drain_node("node-a")
    assert (info.value.status_code, info.value.code) == (503, "STORE_UNAVAILABLE")
    assert len(server.requests) == 1 and sleeps == []


@pytest.mark.parametrize(
    ("header", "expected"),
    [("1", [1.0]), ("60", [proto.MAX_RETRY_AFTER_SECS]), ("0", [0.2]), ("soon", [0.2]), (None, [0.2])],
)
def test_retry_after_lengthens_the_back_off_within_a_cap(
    server: FakeServer, client: SandboxClient, sleeps: list[float], header: str | None, expected: list[float]
) -> None:
    headers = {"Retry-After": header} if header is not None else {}
    server.on("GET", NODES, [error(503, "SERVER_BUSY", "busy", **headers), jsonr(200, {"nodes": []})])
    client.list_nodes()
    assert sleeps == expected


# ---------------------------------------------------------------------------------------------
# Async


async def test_async_nodes(server: FakeServer, aclient: AsyncSandboxClient) -> None:
    server.on("GET", NODES, jsonr(200, {"nodes": [node_json()]}))
    server.on("POST", DRAIN, jsonr(200, node_json(state="draining")))
    server.on("POST", ACTIVATE, error(404, "NOT_FOUND", "node node-a not found"))
    assert [n.name for n in await aclient.list_nodes()] == ["node-a"]
    assert (await aclient.drain_node("node-a")).state == NodeState.DRAINING
    with pytest.raises(RemoteAPIError) as info:
        await aclient.activate_node("node-a")
    assert info.value.status_code == 404
    with pytest.raises(ValueError):
        await aclient.drain_node("")
    assert [(r.method, r.url.path) for r in server.requests] == [("GET", NODES), ("POST", DRAIN), ("POST", ACTIVATE)]
