"""Warm pools and claims against a fake server: request shapes, decoding and error mapping."""

from __future__ import annotations

import json
from types import MappingProxyType
from typing import Any

import httpx
import pytest

from alcove.sandbox import (
    AsyncSandboxClient,
    ImageNotFoundError,
    NetworkPolicy,
    PoolAtCapacityError,
    PoolContainerState,
    PoolInUseError,
    PoolNotFoundError,
    RemoteAPIError,
    Sandbox,
    SandboxClient,
    SandboxFailedError,
    SandboxNameConflictError,
    SandboxNotFoundError,
    SandboxPoolInfo,
    SandboxStatus,
)
from fakes import API, BAD_NODE_SELECTORS, FakeServer, info_json, jsonr

POOLS = "/v1/namespaces/default/sandbox-pools"
POOL = f"{POOLS}/pool-1"
CLAIM = f"{POOL}/sandboxes"
SBX = "/v1/namespaces/default/sandboxes/sbx-1"


def body_of(request: httpx.Request) -> Any:
    return json.loads(request.content)


def pool_json(containers: list[dict[str, Any]] | None = None, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": "pool-1",
        "namespace": "default",
        "image": "default",
        "resources": {"cpus": 1.0, "memory_mb": 1024, "disk_mb": 10240, "ephemeral_disk_mb": 10240},
        "timeout_secs": 0,
        "entrypoint": [],
        "max_containers": None,
        "warm_containers": 2,
        "network_policy": {"allow_internet_access": True, "allow_out": [], "deny_out": []},
        "created_at": 1_795_711_162_444,
        "updated_at": 1_795_711_162_444,
    }
    if containers is not None:
        body["containers"] = containers
    body.update(extra)
    return body


def container(sandbox_id: str, state: str = "Idle") -> dict[str, Any]:
    return {"id": sandbox_id, "state": state, "sandbox_id": sandbox_id, "executor_id": "local"}


def claimed(status: str = "running", **extra: Any) -> httpx.Response:
    body = {"sandbox_id": "sbx-1", "status": status, "sandbox_url": API, "claim_configuration_applied": True}
    body.update(extra)
    return jsonr(200, body)


def error(status: int, code: str, message: str) -> httpx.Response:
    return jsonr(status, {"message": message, "code": code})


# ---------------------------------------------------------------------------------------------
# Pools


def test_create_pool_sends_the_configuration_and_reads_the_pool_back(
    server: FakeServer, client: SandboxClient
) -> None:
    server.on("POST", POOLS, jsonr(200, {"pool_id": "pool-1", "namespace": "default"}))
    server.on("GET", POOL, jsonr(200, pool_json([container("sbx-a"), container("sbx-b", "Running")])))
    pool = client.create_pool(
        image="ubuntu",
        cpus=2.0,
        memory_mb=2048,
        disk_mb=20480,
        timeout_secs=600,
        entrypoint=["sleep", "infinity"],
        max_containers=4,
        warm_containers=2,
        network=NetworkPolicy(allow_internet_access=False, allow_out=["10.0.0.1"]),
    )
    assert body_of(server.calls("POST", POOLS)[0]) == {
        "image": "ubuntu",
        "resources": {"cpus": 2.0, "memory_mb": 2048, "disk_mb": 20480},
        "timeout_secs": 600,
        "entrypoint": ["sleep", "infinity"],
        "max_containers": 4,
        "warm_containers": 2,
        "network": {"allow_internet_access": False, "allow_out": ["10.0.0.1"], "deny_out": []},
    }
    assert isinstance(pool, SandboxPoolInfo) and pool.pool_id == "pool-1"
    assert pool.max_containers is None and pool.warm_containers == 2
    assert pool.resources.memory_mb == 1024 and pool.network_policy is not None
    assert pool.created_at is not None and pool.created_at.year == 2026
    assert pool.containers is not None
    assert [(c.sandbox_id, c.state) for c in pool.containers] == [
        ("sbx-a", PoolContainerState.IDLE),
        ("sbx-b", PoolContainerState.RUNNING),
    ]
    assert pool.containers[0].state == "Idle"


def test_create_pool_defaults(server: FakeServer, client: SandboxClient) -> None:
    server.on("POST", POOLS, jsonr(200, {"pool_id": "pool-1", "namespace": "default"}))
    server.on("GET", POOL, jsonr(200, pool_json([])))
    client.create_pool()
    assert body_of(server.calls("POST", POOLS)[0]) == {
        "resources": {"cpus": 1.0, "memory_mb": 1024},
        "timeout_secs": 0,
    }


def test_network_as_a_mapping(server: FakeServer, client: SandboxClient) -> None:
    server.on("POST", POOLS, jsonr(200, {"pool_id": "pool-1", "namespace": "default"}))
    server.on("GET", POOL, jsonr(200, pool_json([])))
    client.create_pool(network={"deny_out": ["1.1.1.1/32"]})
    assert body_of(server.calls("POST", POOLS)[0])["network"] == {"deny_out": ["1.1.1.1/32"]}


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"warm_containers": 0}, "warm_containers"),
        ({"warm_containers": 65}, "warm_containers"),
        ({"max_containers": 1001}, "max_containers"),
        ({"max_containers": 1, "warm_containers": 2}, "must not exceed"),
        ({"max_containers": 0}, "max_containers"),
        ({"cpus": 0}, "cpus"),
        ({"memory_mb": 1.5}, "memory_mb"),
        ({"timeout_secs": -1}, "timeout_secs"),
        ({"image": " "}, "image"),
        ({"entrypoint": "sleep"}, "entrypoint"),
        ({"network": {"allow_in": []}}, "network takes only"),
        ({"network": {"allow_internet_access": "no"}}, "allow_internet_access"),
        ({"network": "open"}, "network"),
    ],
)
def test_bad_pool_arguments_are_refused_before_sending(
    server: FakeServer, client: SandboxClient, kwargs: dict[str, Any], match: str
) -> None:
    with pytest.raises(ValueError, match=match):
        client.create_pool(**kwargs)
    assert server.requests == []


def test_get_and_list_pools(server: FakeServer, client: SandboxClient) -> None:
    server.on("GET", POOL, jsonr(200, pool_json([container("sbx-a")])))
    server.on("GET", POOLS, jsonr(200, {"pools": [pool_json(), pool_json(id="pool-2", max_containers=3)]}))
    pool = client.get_pool("pool-1")
    assert pool.containers is not None and [c.sandbox_id for c in pool.containers] == ["sbx-a"]
    pools = client.list_pools()
    assert [p.pool_id for p in pools] == ["pool-1", "pool-2"]
    assert pools[0].containers is None and pools[1].max_containers == 3


def test_update_pool_puts_the_whole_configuration(server: FakeServer, client: SandboxClient) -> None:
    server.on("PUT", POOL, jsonr(200, pool_json(resources={"cpus": 1.0, "memory_mb": 2048, "disk_mb": 10240})))
    pool = client.update_pool("pool-1", memory_mb=2048, warm_containers=2)
    put = server.calls("PUT", POOL)[0]
    # No network: the server keeps the pool's policy.
    assert body_of(put) == {
        "resources": {"cpus": 1.0, "memory_mb": 2048},
        "timeout_secs": 0,
        "warm_containers": 2,
    }
    assert pool.resources.memory_mb == 2048 and pool.containers is None
    client.update_pool("pool-1", network=NetworkPolicy())
    assert body_of(server.calls("PUT", POOL)[1])["network"] == {
        "allow_internet_access": True,
        "allow_out": [],
        "deny_out": [],
    }


def test_create_and_update_pool_send_a_node_selector_only_when_given(
    server: FakeServer, client: SandboxClient
) -> None:
    server.on("POST", POOLS, jsonr(200, {"pool_id": "pool-1", "namespace": "default"}))
    server.on("GET", POOL, jsonr(200, pool_json([], node_selector={"gpu": "a100"})))
    server.on("PUT", POOL, jsonr(200, pool_json(node_selector={"zone": "b"})))
    pool = client.create_pool(node_selector={"gpu": "a100", "zone": ""})
    assert pool.node_selector == {"gpu": "a100"}
    assert body_of(server.calls("POST", POOLS)[0]) == {
        "resources": {"cpus": 1.0, "memory_mb": 1024},
        "timeout_secs": 0,
        "node_selector": {"gpu": "a100", "zone": ""},
    }
    # Any mapping is copied; None and {} leave it out (the official SDK's body).
    client.create_pool(node_selector=MappingProxyType({"gpu": "a100"}))  # type: ignore[arg-type]
    client.create_pool(node_selector={})
    client.create_pool(node_selector=None)
    assert [body_of(post).get("node_selector") for post in server.calls("POST", POOLS)[1:]] == [
        {"gpu": "a100"},
        None,
        None,
    ]
    # An update replaces the whole configuration: the selector is sent when given, else left out.
    assert client.update_pool("pool-1", node_selector={"zone": "b"}).node_selector == {"zone": "b"}
    client.update_pool("pool-1", memory_mb=2048)
    first, second = server.calls("PUT", POOL)
    assert body_of(first) == {
        "resources": {"cpus": 1.0, "memory_mb": 1024},
        "timeout_secs": 0,
        "node_selector": {"zone": "b"},
    }
    assert "node_selector" not in body_of(second)
    sixteen = {f"k{i}": "v" for i in range(16)}
    client.update_pool("pool-1", node_selector=sixteen)
    assert body_of(server.calls("PUT", POOL)[2])["node_selector"] == sixteen


@pytest.mark.parametrize("call", ["create_pool", "update_pool"])
@pytest.mark.parametrize("selector", BAD_NODE_SELECTORS)
def test_a_bad_pool_node_selector_is_refused_before_sending(
    server: FakeServer, client: SandboxClient, call: str, selector: object
) -> None:
    args = ("pool-1",) if call == "update_pool" else ()
    with pytest.raises(ValueError, match="node_selector"):
        getattr(client, call)(*args, node_selector=selector)
    assert server.requests == []


def test_pool_node_selector_is_read_back_empty_when_absent_or_null(server: FakeServer, client: SandboxClient) -> None:
    assert SandboxPoolInfo.model_validate(pool_json(node_selector={"zone": "b", "gpu": "a100"})).node_selector == {
        "zone": "b",
        "gpu": "a100",
    }
    # Older servers leave it out; null reads as empty too.
    assert SandboxPoolInfo.model_validate(pool_json()).node_selector == {}
    assert SandboxPoolInfo.model_validate(pool_json(node_selector=None)).node_selector == {}
    pools = [pool_json(node_selector={"zone": "b"}), pool_json(id="pool-2"), pool_json(id="pool-3", node_selector=None)]
    server.on("GET", POOLS, jsonr(200, {"pools": pools}))
    assert [p.node_selector for p in client.list_pools()] == [{"zone": "b"}, {}, {}]


def test_delete_pool(server: FakeServer, client: SandboxClient) -> None:
    server.on("DELETE", POOL, httpx.Response(204))
    assert client.delete_pool("pool-1") is None
    assert len(server.calls("DELETE", POOL)) == 1


def test_pool_ids_are_path_segments(server: FakeServer, client: SandboxClient) -> None:
    server.on("GET", f"{POOLS}/a/b", jsonr(200, pool_json([])))  # routed by the decoded path
    client.get_pool("a/b")
    assert server.requests[0].url.raw_path.decode() == f"{POOLS}/a%2Fb"
    with pytest.raises(ValueError, match="pool_id"):
        client.get_pool("")


# ---------------------------------------------------------------------------------------------
# Errors


@pytest.mark.parametrize("call", ["get_pool", "delete_pool", "update_pool", "claim"])
def test_404_on_pool_calls_is_pool_not_found(server: FakeServer, client: SandboxClient, call: str) -> None:
    missing = error(404, "NOT_FOUND", 'pool "pool-1" not found')
    for method, path in (("GET", POOL), ("DELETE", POOL), ("PUT", POOL), ("POST", CLAIM)):
        server.on(method, path, missing)
    with pytest.raises(PoolNotFoundError) as info:
        getattr(client, call)("pool-1")
    assert isinstance(info.value, RemoteAPIError) and not isinstance(info.value, SandboxNotFoundError)
    assert (info.value.status_code, info.value.code) == (404, "NOT_FOUND")
    assert len(server.requests) == 1  # a claim is never sent twice


def test_404_naming_an_image_is_image_not_found(server: FakeServer, client: SandboxClient) -> None:
    server.on("POST", POOLS, error(404, "NOT_FOUND", 'image "nope" not found'))
    server.on("PUT", POOL, error(404, "NOT_FOUND", 'image "nope" not found'))
    with pytest.raises(ImageNotFoundError):
        client.create_pool(image="nope")
    with pytest.raises(ImageNotFoundError):
        client.update_pool("pool-1", image="nope")


def test_pool_in_use(server: FakeServer, client: SandboxClient) -> None:
    server.on("DELETE", POOL, error(409, "POOL_IN_USE", "pool pool-1 has claimed sandboxes: sbx-1"))
    with pytest.raises(PoolInUseError) as info:
        client.delete_pool("pool-1")
    assert info.value.status_code == 409 and "sbx-1" in info.value.message


def test_claim_errors(server: FakeServer, client: SandboxClient) -> None:
    server.on(
        "POST",
        CLAIM,
        [
            error(429, "POOL_AT_CAPACITY", "pool pool-1 is at capacity"),
            error(409, "NAME_TAKEN", "name 'job' is taken"),
            error(400, "INVALID_ARGUMENT", "env: '1A' is not a variable name"),
            error(404, "NOT_FOUND", 'file system "v" not found'),
        ],
    )
    with pytest.raises(PoolAtCapacityError) as capacity:
        client.claim("pool-1")
    assert capacity.value.status_code == 429
    with pytest.raises(SandboxNameConflictError):
        client.claim("pool-1", name="job")
    with pytest.raises(RemoteAPIError) as bad:
        client.claim("pool-1", env={"1A": "x"})
    assert bad.value.status_code == 400
    with pytest.raises(RemoteAPIError) as no_volume:
        client.claim("pool-1", file_systems=[{"file_system_id": "v", "mount_path": "/mnt/v"}])
    assert no_volume.value.status_code == 404
    assert not isinstance(no_volume.value, PoolNotFoundError), "an unknown volume is not an unknown pool"
    # 429 is not retried on a POST.
    assert len(server.calls("POST", CLAIM)) == 4


def test_hierarchy() -> None:
    for exc in (PoolNotFoundError, PoolInUseError, PoolAtCapacityError):
        assert issubclass(exc, RemoteAPIError)


# ---------------------------------------------------------------------------------------------
# Claims


def test_claim_sends_the_binding_and_returns_the_sandbox(
    server: FakeServer, client: SandboxClient, sleeps: list[float]
) -> None:
    server.on("POST", CLAIM, claimed())
    server.on("GET", SBX, jsonr(200, info_json(name="job-1", pool_id="pool-1")))
    info = client.claim(
        "pool-1",
        name="job-1",
        env={"GREETING": "hi"},
        secret_names=["API_KEY"],
        network={"allow_internet_access": False},
    )
    post = server.calls("POST", CLAIM)[0]
    assert body_of(post) == {
        "name": "job-1",
        "env": {"GREETING": "hi"},
        "secret_names": ["API_KEY"],
        "network": {"allow_internet_access": False},
    }
    assert post.headers["x-tensorlake-request-timeout-ms"] == "300000"
    assert info.status == SandboxStatus.RUNNING and info.pool_id == "pool-1" and info.name == "job-1"
    assert sleeps == []


def test_claim_without_arguments_sends_an_empty_object(server: FakeServer, client: SandboxClient) -> None:
    server.on("POST", CLAIM, claimed())
    server.on("GET", SBX, jsonr(200, info_json(pool_id="pool-1")))
    client.claim("pool-1", env={}, secret_names=[], file_systems=[])
    assert body_of(server.requests[0]) == {}


def test_claim_that_had_to_start_a_failing_sandbox(server: FakeServer, client: SandboxClient) -> None:
    server.on("POST", CLAIM, claimed("failed", termination_reason="startup_failed", error_details="boom"))
    with pytest.raises(SandboxFailedError, match=r"sbx-1 failed \(startup_failed\): boom"):
        client.claim("pool-1")


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"name": ""}, "name"),
        ({"env": {"A": 1}}, "env"),
        ({"env": ["A=1"]}, "env"),
        ({"secret_names": "K"}, "secret_names"),
        ({"file_systems": "v"}, "file_systems"),
    ],
)
def test_bad_claim_arguments(server: FakeServer, client: SandboxClient, kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        client.claim("pool-1", **kwargs)
    assert server.requests == []


def test_claim_and_connect_deletes_the_sandbox_on_exit(server: FakeServer, client: SandboxClient) -> None:
    server.on("POST", CLAIM, claimed())
    server.on("GET", SBX, jsonr(200, info_json(pool_id="pool-1")))
    server.on("DELETE", SBX, httpx.Response(200, json={}))
    with client.claim_and_connect("pool-1", env={"A": "1"}) as sandbox:
        assert isinstance(sandbox, Sandbox) and sandbox.sandbox_id == "sbx-1"
        assert body_of(server.calls("POST", CLAIM)[0]) == {"env": {"A": "1"}}
    assert len(server.calls("DELETE", SBX)) == 1


async def test_async_pools_and_claims(server: FakeServer, aclient: AsyncSandboxClient) -> None:
    server.on("POST", POOLS, jsonr(200, {"pool_id": "pool-1", "namespace": "default"}))
    server.on("GET", POOL, jsonr(200, pool_json([container("sbx-a")])))
    server.on("GET", POOLS, jsonr(200, {"pools": [pool_json()]}))
    server.on("PUT", POOL, jsonr(200, pool_json()))
    server.on("POST", CLAIM, claimed())
    server.on("GET", SBX, jsonr(200, info_json(pool_id="pool-1")))
    server.on("DELETE", SBX, httpx.Response(200, json={}))
    server.on("DELETE", POOL, [error(409, "POOL_IN_USE", "in use"), httpx.Response(204)])
    pool = await aclient.create_pool(warm_containers=1)
    assert pool.pool_id == "pool-1" and pool.containers and pool.containers[0].state == PoolContainerState.IDLE
    assert [p.pool_id for p in await aclient.list_pools()] == ["pool-1"]
    assert (await aclient.update_pool("pool-1", cpus=2.0)).pool_id == "pool-1"
    async with aclient.claim_and_connect("pool-1", name="job") as sandbox:
        assert sandbox.sandbox_id == "sbx-1"
        with pytest.raises(PoolInUseError):
            await aclient.delete_pool("pool-1")
    await aclient.delete_pool("pool-1")
    assert len(server.calls("DELETE", SBX)) == 1
    assert (await aclient.claim("pool-1")).pool_id == "pool-1"


async def test_async_pools_send_the_node_selector(server: FakeServer, aclient: AsyncSandboxClient) -> None:
    server.on("POST", POOLS, jsonr(200, {"pool_id": "pool-1", "namespace": "default"}))
    server.on("GET", POOL, jsonr(200, pool_json([], node_selector={"gpu": "a100"})))
    server.on("PUT", POOL, jsonr(200, pool_json(node_selector={"zone": "b"})))
    assert (await aclient.create_pool(node_selector={"gpu": "a100"})).node_selector == {"gpu": "a100"}
    assert (await aclient.update_pool("pool-1", node_selector={"zone": "b"})).node_selector == {"zone": "b"}
    await aclient.create_pool()
    await aclient.update_pool("pool-1")
    posts = [body_of(request).get("node_selector") for request in server.calls("POST", POOLS)]
    puts = [body_of(request).get("node_selector") for request in server.calls("PUT", POOL)]
    assert posts == [{"gpu": "a100"}, None] and puts == [{"zone": "b"}, None]
    sent = len(server.requests)
    with pytest.raises(ValueError, match="node_selector"):
        await aclient.create_pool(node_selector={"zone": 1})  # type: ignore[dict-item]
    with pytest.raises(ValueError, match="node_selector"):
        await aclient.update_pool("pool-1", node_selector={f"k{i}": "v" for i in range(17)})
    assert len(server.requests) == sent
