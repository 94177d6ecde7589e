"""Several Alcove nodes on one PostgreSQL store, for the cluster tests."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from framework.host import wait_for
from framework.server import AlcoveServer, retire


@contextmanager
def nodes_on(
    url: str,
    names: Sequence[str],
    extra_args: Sequence[str] = (),
    extra_env: dict[str, str] | None = None,
    lease_secs: int = 3,
    meet: bool = True,
) -> Iterator[list[AlcoveServer]]:
    """Nodes `names` (in that order) on database `url`, each with its own data directory and
    subnet; with `meet`, once each has counted the others. Retired (last first) after."""
    servers = [
        AlcoveServer(
            extra_args=["--database", url, "--node-name", name, "--node-lease-secs", str(lease_secs),
                        *extra_args],
            extra_env=extra_env,
        )
        for name in names
    ]
    for srv in servers:
        srv.start()
    try:
        if meet:
            wait_until_met(servers, names, lease_secs)
        yield servers
    finally:
        for srv in reversed(servers):
            retire(srv)


def wait_until_met(servers: Sequence[AlcoveServer], names: Sequence[str], lease_secs: int) -> None:
    """Waits until every node has renewed its lease after the last one joined: from then on each
    knows it shares the store (placement, pool turns, routing and fencing need that)."""
    all_joined_ms = time.time() * 1000
    least = all_joined_ms + lease_secs * 1000

    def renewed() -> bool:
        nodes = {n["name"]: n for n in servers[0].api("GET", "/nodes").json()["nodes"]}
        return all(nodes[name]["lease_expires_at"] > least for name in names)

    assert wait_for(renewed, 15), "the nodes did not all renew their leases"
