"""Warm pools and claims through the Python SDK against a real server: a pool fills, a claim
hands out a running sandbox with its name, environment and secrets bound, the pool refills,
limits and errors map to the SDK's exceptions, and an update replaces the idle sandboxes.

Idle pool sandboxes are invisible to `GET /sandboxes`, so the leftover check of conftest.py
cannot see them: every test deletes its pools in `finally`."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from alcove.sandbox import (
    AsyncSandboxClient,
    PoolAtCapacityError,
    PoolContainerState,
    PoolInUseError,
    PoolNotFoundError,
    SandboxClient,
    SandboxNameConflictError,
    SandboxPoolInfo,
    SandboxStatus,
)

FILL_TIMEOUT = 90.0
SECRET = "POOL_TEST_TOKEN"
SECRET_VALUE = "s3cr3t-pool-0a1b2c"


def idle_ids(pool: SandboxPoolInfo) -> set[str]:
    return {c.sandbox_id for c in pool.containers or [] if c.state == PoolContainerState.IDLE}


def wait_for_idle(
    client: SandboxClient, pool_id: str, count: int, *, not_in: frozenset[str] | set[str] = frozenset()
) -> SandboxPoolInfo:
    """Poll `get_pool` until it has `count` idle containers, none of them in `not_in`."""
    deadline = time.monotonic() + FILL_TIMEOUT
    while True:
        pool = client.get_pool(pool_id)
        ids = idle_ids(pool)
        if len(ids) == count and not ids & not_in:
            return pool
        assert time.monotonic() < deadline, f"pool {pool_id}: {pool.containers} after {FILL_TIMEOUT}s"
        time.sleep(0.25)


def cleanup(client: SandboxClient, pool_id: str) -> None:
    """Delete the sandboxes claimed from the pool, then the pool (and so its idle sandboxes)."""
    for info in client.list():
        if info.pool_id == pool_id:
            client.delete(info.sandbox_id)
    try:
        client.delete_pool(pool_id)
    except PoolNotFoundError:
        pass


@contextmanager
def pool_of(client: SandboxClient, **kwargs) -> Iterator[SandboxPoolInfo]:
    pool = client.create_pool(**kwargs)
    try:
        yield pool
    finally:
        cleanup(client, pool.pool_id)


@pytest.fixture
def secret(server):
    resp = server.api("PUT", f"/v1/namespaces/default/secrets/{SECRET}", json={"value": SECRET_VALUE})
    assert resp.status_code in (200, 201, 204), resp.text
    yield SECRET
    server.api("DELETE", f"/v1/namespaces/default/secrets/{SECRET}")


def test_fill_claim_bind_refill_and_delete(server, client: SandboxClient, secret: str):
    with pool_of(client, warm_containers=2, cpus=0.5, memory_mb=512) as created:
        assert created.warm_containers == 2 and created.max_containers is None
        assert created.resources.memory_mb == 512
        assert any(p.pool_id == created.pool_id for p in client.list_pools())
        pool = wait_for_idle(client, created.pool_id, 2)
        warm = idle_ids(pool)
        # Idle sandboxes belong to the pool: the sandbox API does not list them.
        assert not warm & {s.sandbox_id for s in client.list()}

        started = time.monotonic()
        info = client.claim(
            created.pool_id, name="pool-claimed", env={"GREETING": "hello pool"}, secret_names=[secret]
        )
        claim_secs = time.monotonic() - started
        assert info.sandbox_id in warm, "a claim with idle sandboxes takes one of them"
        assert claim_secs < 5, f"claiming a warm sandbox took {claim_secs:.1f}s"
        assert info.status == SandboxStatus.RUNNING and info.pool_id == created.pool_id
        assert info.name == "pool-claimed" and info.resources is not None and info.resources.memory_mb == 512

        sandbox = client.connect("pool-claimed")
        assert sandbox.run("sh", ["-c", "echo $GREETING"]).stdout == "hello pool"
        assert sandbox.run("sh", ["-c", f"echo ${secret}"]).stdout == SECRET_VALUE

        listed = {s.sandbox_id: s for s in client.list()}
        assert info.sandbox_id in listed and listed[info.sandbox_id].pool_id == created.pool_id
        assert not (warm - {info.sandbox_id}) & set(listed)

        # The pool refills to two idle sandboxes; the claimed one is Running in it.
        refilled = wait_for_idle(client, created.pool_id, 2, not_in={info.sandbox_id})
        states = {c.sandbox_id: c.state for c in refilled.containers or []}
        assert states[info.sandbox_id] == PoolContainerState.RUNNING
        assert not idle_ids(refilled) & set(s.sandbox_id for s in client.list())

        with pytest.raises(PoolInUseError) as in_use:
            client.delete_pool(created.pool_id)
        assert in_use.value.status_code == 409 and info.sandbox_id in in_use.value.message
        client.delete(info.sandbox_id)
        client.delete_pool(created.pool_id)
        with pytest.raises(PoolNotFoundError):
            client.get_pool(created.pool_id)
        assert all(p.pool_id != created.pool_id for p in client.list_pools())


def test_unknown_pool_is_pool_not_found(client: SandboxClient):
    for call in (client.claim, client.get_pool, client.delete_pool):
        with pytest.raises(PoolNotFoundError) as missing:
            call("pool-0000000000000000")
        assert missing.value.status_code == 404
    with pytest.raises(PoolNotFoundError):
        client.update_pool("pool-0000000000000000")


def test_capacity_and_name_conflicts(client: SandboxClient):
    with pool_of(client, warm_containers=1, max_containers=1, cpus=0.5, memory_mb=512) as pool:
        wait_for_idle(client, pool.pool_id, 1)
        first = client.claim(pool.pool_id, name="pool-cap")
        # The name is checked before the pool's capacity.
        with pytest.raises(SandboxNameConflictError):
            client.claim(pool.pool_id, name="pool-cap")
        with pytest.raises(PoolAtCapacityError) as full:
            client.claim(pool.pool_id)
        assert (full.value.status_code, full.value.code) == (429, "POOL_AT_CAPACITY")
        # Once the claimed sandbox has ended, a claim fits again (starting one if none is idle).
        client.delete(first.sandbox_id)
        second = client.claim(pool.pool_id)
        assert second.status == SandboxStatus.RUNNING and second.sandbox_id != first.sandbox_id
        client.delete(second.sandbox_id)


def test_update_replaces_the_idle_sandboxes(client: SandboxClient):
    with pool_of(client, warm_containers=1, cpus=0.5, memory_mb=512) as pool:
        before = idle_ids(wait_for_idle(client, pool.pool_id, 1))
        updated = client.update_pool(pool.pool_id, cpus=0.5, memory_mb=1024, warm_containers=1)
        assert updated.resources.memory_mb == 1024 and updated.containers is None
        assert updated.pool_id == pool.pool_id
        after = idle_ids(wait_for_idle(client, pool.pool_id, 1, not_in=before))
        info = client.claim(pool.pool_id)
        assert info.sandbox_id in after
        assert info.resources is not None and info.resources.memory_mb == 1024
        client.delete(info.sandbox_id)


async def test_async_claim_and_connect(server):
    async with AsyncSandboxClient(api_url=server.url) as aclient:
        pool = await aclient.create_pool(warm_containers=1, cpus=0.5, memory_mb=512)
        try:
            async with aclient.claim_and_connect(pool.pool_id, env={"WHO": "async"}) as sandbox:
                assert (await sandbox.run("sh", ["-c", "echo $WHO"])).stdout == "async"
                assert (await aclient.get(sandbox.sandbox_id)).pool_id == pool.pool_id
                with pytest.raises(PoolInUseError):
                    await aclient.delete_pool(pool.pool_id)
            await aclient.delete_pool(pool.pool_id)
        finally:
            for info in await aclient.list():
                if info.pool_id == pool.pool_id:
                    await aclient.delete(info.sandbox_id)
            try:
                await aclient.delete_pool(pool.pool_id)
            except PoolNotFoundError:
                pass
