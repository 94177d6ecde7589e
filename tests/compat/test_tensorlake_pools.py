"""Warm pools through the official `tensorlake==0.5.161` SDK, unchanged: create, get, list,
update and delete pools, claim from them (also as `create_and_connect(pool_id=…)`), and its
pool errors."""

from __future__ import annotations

import time

import pytest

tensorlake_sandbox = pytest.importorskip("tensorlake.sandbox", reason="tensorlake SDK missing")


@pytest.fixture
def tl_client(server):
    return tensorlake_sandbox.SandboxClient.for_localhost(api_url=server.url)


def wait_idle(tl_client, pool_id: str, count: int) -> list[str]:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        containers = tl_client.get_pool(pool_id).containers or []
        idle = [c.sandbox_id for c in containers if c.state == "Idle"]
        if len(idle) >= count:
            return idle
        time.sleep(0.2)
    raise AssertionError(f"pool {pool_id} did not fill")


def test_pool_lifecycle_and_claims(tl_client):
    pool_id = tl_client.create_pool(image="default", cpus=0.5, memory_mb=512, disk_mb=1024, warm_containers=1, max_containers=3).pool_id
    claimed: list[str] = []
    try:
        info = tl_client.get_pool(pool_id)
        assert info.pool_id == pool_id
        assert info.resources.memory_mb == 512
        assert info.warm_containers == 1
        assert pool_id in [p.pool_id for p in tl_client.list_pools()]
        (warm,) = wait_idle(tl_client, pool_id, 1)

        answer = tl_client.claim(pool_id)
        assert answer.sandbox_id == warm
        assert answer.status == "running"
        claimed.append(answer.sandbox_id)

        with tl_client.create_and_connect(pool_id=pool_id) as sandbox:
            claimed.append(sandbox.sandbox_id)
            result = sandbox.run("sh", ["-c", "echo pooled"])
            assert result.stdout.strip() == "pooled"

            with pytest.raises(tensorlake_sandbox.PoolInUseError):
                tl_client.delete_pool(pool_id)

        updated = tl_client.update_pool(pool_id, image="default", cpus=0.5, memory_mb=768, disk_mb=1024, warm_containers=1)
        assert updated.resources.memory_mb == 768
        tl_client.delete(claimed[0])
        tl_client.delete_pool(pool_id)
        with pytest.raises(tensorlake_sandbox.PoolNotFoundError):
            tl_client.get_pool(pool_id)
    finally:
        for sandbox_id in claimed:
            tl_client.delete(sandbox_id)
        try:
            tl_client.delete_pool(pool_id)
        except tensorlake_sandbox.SandboxError:
            pass
