"""Machines for the cluster tests: one network namespace per node on a bridge the test creates,
so each node has its own address, its own firewall table and a link that can be cut.

    with NodeNetwork(3) as net:
        # the host is net.gateway; node i is net.address(i), in namespace net.netns(i)
        net.cut(1)    # node 1's link down: it reaches nothing (store, blobs, peers) and nothing
        net.heal(1)   # reaches it, until its link is up again

A node runs under `nsenter --net`: only its network is its own; mounts, cgroups and processes
are the host's, so the usual leftovers checks still see them.
"""

from __future__ import annotations

import random
import secrets
import subprocess
from pathlib import Path


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check)


class NodeNetwork:
    """`count` namespaces on one bridge, with addresses in a /24 of their own."""

    def __init__(self, count: int) -> None:
        self.count = count
        self.tag = secrets.token_hex(3)
        self.bridge = f"alcbr{self.tag}"
        self.prefix = f"10.254.{random.randint(0, 255)}"
        self.created: list[tuple[str, str]] = []

    @property
    def gateway(self) -> str:
        """The host's address on the bridge: where the store and the blob store listen."""
        return f"{self.prefix}.1"

    @property
    def cidr(self) -> str:
        return f"{self.prefix}.0/24"

    def address(self, i: int) -> str:
        return f"{self.prefix}.{i + 2}"

    def netns(self, i: int) -> str:
        return f"alcn{self.tag}{i}"

    def host_link(self, i: int) -> str:
        return f"alcv{self.tag}{i}"

    def enter(self, i: int) -> list[str]:
        """The argv prefix that runs a command in node `i`'s network."""
        return ["nsenter", f"--net={Path('/run/netns') / self.netns(i)}", "--"]

    def start(self) -> None:
        _ip("link", "add", self.bridge, "type", "bridge")
        self.created.append(("link", self.bridge))
        _ip("addr", "add", f"{self.gateway}/24", "dev", self.bridge)
        _ip("link", "set", self.bridge, "up")
        for i in range(self.count):
            ns, host_end = self.netns(i), self.host_link(i)
            _ip("netns", "add", ns)
            self.created.append(("netns", ns))
            _ip("link", "add", host_end, "type", "veth", "peer", "name", "eth0", "netns", ns)
            _ip("link", "set", host_end, "master", self.bridge, "up")
            _ip("-n", ns, "addr", "add", f"{self.address(i)}/24", "dev", "eth0")
            _ip("-n", ns, "link", "set", "eth0", "up")
            _ip("-n", ns, "link", "set", "lo", "up")
            _ip("-n", ns, "route", "add", "default", "via", self.gateway)

    def cut(self, i: int) -> None:
        """Takes node `i`'s link down: a partition, as a pulled cable would make it."""
        _ip("link", "set", self.host_link(i), "down")

    def heal(self, i: int) -> None:
        _ip("link", "set", self.host_link(i), "up")

    def leftovers(self, i: int) -> list[str]:
        """What a retired node left in its namespace: links other than its own, firewall
        tables."""
        links = _ip("-n", self.netns(i), "-o", "link", "show").stdout.splitlines()
        names = [line.split(":")[1].strip().split("@")[0] for line in links if ":" in line]
        left = [f"link {n}" for n in names if n not in ("lo", "eth0")]
        tables = subprocess.run(
            [*self.enter(i), "nft", "list", "tables"], capture_output=True, text=True, check=False
        ).stdout.split("\n")
        left += [t.strip() for t in tables if "alcove" in t]
        return left

    def stop(self) -> None:
        for kind, name in reversed(self.created):
            if kind == "netns":
                _ip("netns", "del", name, check=False)
            else:
                _ip("link", "del", name, check=False)
        self.created.clear()

    def __enter__(self) -> NodeNetwork:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
