"""What one sandbox (or an API client on its own sandbox) could make the host pay beyond the
sandbox's limits: socket buffers kept outside its memory cgroup, the host's connection-tracking
table, and snapshots written to the host's disk without admission. One sandbox stays within
what its limits say; the host keeps the rest."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from alcove.sandbox import RemoteAPIError, SandboxClient, SandboxError
from framework.agent import wait_for_line
from framework.host import small_ext4
from framework.server import AlcoveServer

# Queues data on loopback TCP connections (or UDP sockets) nobody reads, until the kernel
# refuses more or `cap` bytes are queued; prints the bytes queued. Socket buffers are kernel
# memory: they must be charged to the sandbox, not to the host.
SOCKET_HOG = r"""
import socket, sys, time
mode, cap = sys.argv[1], int(sys.argv[2])
BUF = 4 << 20

def queued():
    # Bytes waiting in this sandbox's sockets, as its own /proc/net shows them.
    total = 0
    with open(f"/proc/net/{mode}") as f:
        for line in list(f)[1:]:
            tx, rx = line.split()[4].split(":")
            total += int(tx, 16) + int(rx, 16)
    return total

# At most 400 pairs (over 3 GiB of buffers unheld), the queues read every 25: reading
# /proc/net/tcp after each of thousands of sockets made the fill itself quadratic.
keep = []
if mode == "tcp":
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, BUF)
    ls.bind(("127.0.0.1", 0))
    ls.listen(1024)
    # Held back by the kernel (the group's socket memory is used up), a connect or an
    # accept waits: that is the end of the fill too.
    ls.settimeout(2)
for i in range(400):
    try:
        if mode == "tcp":
            c = socket.socket()
            c.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, BUF)
            c.settimeout(2)
            c.connect(ls.getsockname())
            s, _ = ls.accept()
        else:
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, BUF)
            s.bind(("127.0.0.1", 0))
            c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            c.connect(s.getsockname())
        keep += [c, s]
    except OSError:
        break
    c.setblocking(False)
    for _ in range(200):
        try:
            c.send(b"x" * 60000)
        except OSError:
            break
    if i % 25 == 24 and queued() >= cap:
        break
print(queued(), flush=True)
time.sleep(600)
"""

# Sends one UDP datagram to each of `n` ports of a documentation address (TEST-NET-2, never
# answered): each is a flow the host's connection tracking keeps (masquerade needs it).
FLOW_HOG = r"""
import socket, sys
n = int(sys.argv[1])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.connect(("198.51.100.7", 9))
me = s.getsockname()[0]
sent = 0
for i in range(n):
    if i and i % 60000 == 0:
        s.close()
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.sendto(b"x", ("198.51.100.7", 1024 + i % 60000))
        sent += 1
    except OSError:
        pass
print(me, sent, flush=True)
"""

# Flows one sandbox may keep in the host's connection-tracking table (the table is the
# host's and every sandbox's: when it is full, new connections of all of them are dropped).
MAX_FLOWS_PER_SANDBOX = 65536


@pytest.mark.parametrize("mode", ["tcp", "udp"])
def test_socket_buffers_count_against_the_memory_limit(client, mode):
    """On cgroup v1 socket buffers are charged to a memory cgroup only once its TCP
    accounting is on (`memory.kmem.tcp.limit_in_bytes`); without it a 1 GiB sandbox queued
    1 GiB of TCP data (host `sockstat` TCP mem +260k pages) with 8 MB charged to it, and could
    go on up to the host-wide `tcp_mem` maximum, putting every socket of the host under
    memory pressure."""
    memory_mb = 1024
    limit = memory_mb * 2**20
    with client.create_and_connect(memory_mb=memory_mb) as sb:
        # Stop a little past the limit: enough to show that it is not enforced.
        proc = sb.start_process("python3", ["-c", SOCKET_HOG, mode, str(limit + limit // 8)])
        queued = int(wait_for_line(sb, proc.pid, timeout=120.0))
        sb.kill_process(proc.pid)
        assert queued <= limit, f"{queued >> 20} MiB of {mode} buffers queued by a {memory_mb} MiB sandbox"


def host_flows_from(address: str) -> int:
    needle = f"src={address} "
    with open("/proc/net/nf_conntrack") as f:
        return sum(1 for line in f if needle in line and "dst=198.51.100.7 " in line)


def test_one_sandbox_cannot_fill_the_hosts_connection_tracking(client):
    """Measured: 20000 host conntrack entries in 0.43 s from one sandbox, no cap per sandbox
    (the table holds 262144)."""
    if not Path("/proc/net/nf_conntrack").exists():
        pytest.skip("connection tracking is not loaded")
    with client.create_and_connect() as sb:
        out = sb.run("python3", ["-c", FLOW_HOG, str(MAX_FLOWS_PER_SANDBOX + 5000)]).stdout.split()
        address, sent = out[0], int(out[1])
        assert sent > 0, out
        flows = host_flows_from(address)
        assert flows <= MAX_FLOWS_PER_SANDBOX, f"one sandbox holds {flows} host conntrack entries"


@pytest.fixture
def small_data_disk():
    """A 2 GiB ext4 file system for a server's data directory, unmounted after."""
    with small_ext4(2048, "alcove-snapdisk-") as mnt:
        yield mnt


def test_snapshots_are_admitted_against_free_space(small_data_disk):
    """A snapshot copies every allocated block of the layer (deleted files included) and is
    never checked against free space: snapshots of one sandbox filled the data directory's
    disk, under layers already promised to running sandboxes and the 1 GiB kept for the store
    and dumps."""
    srv = AlcoveServer(data_dir=small_data_disk / "data", extra_args=["--compress-after-secs", "-1"])
    srv.start()
    try:
        with SandboxClient(api_url=srv.url) as c:
            sb = c.create_and_connect(name="snapper", disk_mb=512)
            # 300 MiB written then deleted: the layer still holds the blocks.
            sb.run("bash", ["-c", "head -c 300M /dev/urandom > /root/junk && sync && rm /root/junk"])
            refused = False
            failed = None
            for _ in range(12):
                try:
                    c.snapshot_and_wait("snapper", "filesystem")
                except RemoteAPIError as e:
                    assert e.status_code == 507, e
                    refused = True
                    break
                except SandboxError as e:
                    failed = e  # the copy ran out of disk
                    break
            free_mb = shutil.disk_usage(small_data_disk).free >> 20
            taken = c.list_snapshots()
            for snap in taken:
                c.delete_snapshot(snap.snapshot_id)
            c.delete("snapper")
            assert refused, f"{len(taken)} snapshots kept, then {failed}; {free_mb} MiB left free"
            assert free_mb >= 512, f"snapshots left {free_mb} MiB free under the data directory"
    finally:
        srv.stop()
        shutil.rmtree(srv.data_dir, ignore_errors=True)
