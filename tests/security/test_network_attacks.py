"""Attacks on a sandbox's network isolation, each of which once worked:

* sandboxes of two servers on one host reaching each other (each server's firewall saw only its
  own subnet), the other sandbox's agent included: commands and secrets;
* a server restart losing the egress rules of the sandboxes it adopted;
* a policy change, a resume and a memory-snapshot restore letting packets out before the
  policy was (back) in force;
* packets with a forged source address, forwarded unmasqueraded to the uplink.

The "internet" here is the host's DNS resolver (the first non-loopback `nameserver` of the
host's /etc/resolv.conf): a reply proves that a query left.
"""

from __future__ import annotations

import ipaddress
import socket
import subprocess
import time
from pathlib import Path

import pytest

RESTRICTED = {"allow_internet_access": False, "allow_out": [], "deny_out": []}

# A DNS query for example.com, A record.
QUERY = b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x07example\x03com\x00\x00\x01\x00\x01"


def resolver() -> str:
    """The host's resolver, which must answer from the host (else the checks prove nothing)."""
    for line in Path("/etc/resolv.conf").read_text().splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0] == "nameserver":
            ip = parts[1]
            if ipaddress.ip_address(ip).version == 4 and not ip.startswith("127."):
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                    s.settimeout(3)
                    try:
                        s.sendto(QUERY, (ip, 53))
                        s.recvfrom(512)
                    except OSError:
                        continue
                return ip
    pytest.skip("no IPv4 resolver answering on this host")


ASK_ONCE = """
import socket, sys
s = socket.socket(2, 2); s.settimeout(3)
s.sendto(bytes.fromhex(sys.argv[2]), (sys.argv[1], 53))
try:
    s.recvfrom(512); print("answered")
except OSError:
    print("silent")
"""


def resolver_answers(sandbox, ip: str) -> bool:
    out = sandbox.run("python3", ["-c", ASK_ONCE, ip, QUERY.hex()], timeout_secs=30).stdout.strip()
    assert out in ("answered", "silent"), out
    return out == "answered"


# Sends a query every half millisecond for `secs` seconds on one socket, and appends a line to
# /tmp/answers for every reply: each line is a packet that left the sandbox.
SPAMMER = """
import os, socket, sys, time
ip, query, secs = sys.argv[1], bytes.fromhex(sys.argv[2]), float(sys.argv[3])
s = socket.socket(2, 2); s.setblocking(False)
end = time.time() + secs
with open("/tmp/answers", "a", buffering=1) as out:
    while time.time() < end:
        try:
            s.sendto(query, (ip, 53))
        except OSError:
            pass
        try:
            while True:
                s.recvfrom(512); out.write("reply\\n")
        except OSError:
            pass
        time.sleep(0.0005)
"""


def start_spammer(sandbox, ip: str, secs: float = 300) -> None:
    sandbox.write_file("/tmp/spam.py", SPAMMER.encode())
    sandbox.run("sh", ["-c", f": > /tmp/answers; setsid python3 /tmp/spam.py {ip} {QUERY.hex()} {secs} "
                             "</dev/null >/dev/null 2>&1 &"])
    time.sleep(1)
    assert sandbox.run("sh", ["-c", "pgrep -f 'python3 /tmp/spa[m]' >/dev/null && echo up"]).stdout.strip() == "up"


def answers(sandbox) -> int:
    return int(sandbox.run("sh", ["-c", "wc -l < /tmp/answers"]).stdout.strip() or 0)


def wait_status(server, sid: str, status: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.api("GET", f"/sandboxes/{sid}").json()["status"] == status:
            return
        time.sleep(0.1)
    raise AssertionError(f"{sid} not {status}")


def clean_up(server, client, sandboxes: list[str], snapshot: str | None) -> None:
    for sid in sandboxes:
        server.api("DELETE", f"/sandboxes/{sid}")
    if snapshot:
        client.delete_snapshot(snapshot)


def sandbox_ip(sandbox) -> str:
    return sandbox.run("sh", ["-c", "ip -4 -o addr show eth0 | awk '{print $4}' | cut -d/ -f1"]).stdout.strip()


def test_sandboxes_of_two_servers_on_one_host_cannot_reach_each_other(server, client):
    """No packet passes between the sandboxes of two servers on one host: not to the other's
    agent (which runs any command and shows the secrets), not to a user port, not a ping."""
    from alcove.sandbox import SandboxClient
    from framework.server import AlcoveServer, retire

    other = AlcoveServer()
    other.start()
    try:
        assert other.api("PUT", "/v1/namespaces/victim/secrets/RT_SECRET",
                         json={"value": "rt-secret-value"}).status_code == 200
        with SandboxClient(api_url=other.url, namespace="victim") as victims, \
                victims.create_and_connect(secret_names=["RT_SECRET"]) as victim, \
                client.create_and_connect() as attacker:
            target = sandbox_ip(victim)
            victim.start_process("python3", ["-m", "http.server", "8000", "--bind", "0.0.0.0"])
            time.sleep(1)
            probe = ("import socket,sys; s=socket.socket(); s.settimeout(2); "
                     "sys.exit(s.connect_ex((sys.argv[1], int(sys.argv[2]))))")
            for port in ("9501", "8000"):
                assert attacker.run("python3", ["-c", probe, target, port]).exit_code != 0, \
                    f"a sandbox of another server reached {target}:{port}"
            stolen = attacker.run("sh", ["-c",
                f"curl -s -m 5 -X POST -H 'Content-Type: application/json' "
                f"http://{target}:9501/api/v1/processes/run "
                "-d '{\"command\":\"sh\",\"args\":[\"-c\",\"env\"]}'"]).stdout
            assert "rt-secret-value" not in stolen
            assert attacker.run("ping", ["-c", "1", "-W", "2", target]).exit_code != 0
    finally:
        retire(other)


def test_a_policy_survives_a_server_restart():
    """A sandbox adopted after a restart of the server is still under its policy."""
    from alcove.sandbox import SandboxClient
    from framework.server import AlcoveServer, retire

    ip = resolver()
    srv = AlcoveServer()
    srv.start()
    try:
        created = srv.api("POST", "/sandboxes", json={"network": RESTRICTED}).json()
        sid = created["sandbox_id"]
        with SandboxClient(api_url=srv.url) as c:
            assert not resolver_answers(c.connect(sid), ip)
        srv.stop()
        srv.start()
        info = srv.api("GET", f"/sandboxes/{sid}").json()
        assert info["status"] == "running"
        assert info["network_policy"]["allow_internet_access"] is False
        with SandboxClient(api_url=srv.url) as c:
            assert not resolver_answers(c.connect(sid), ip), \
                "after a restart the sandbox reaches the internet its policy denies"
    finally:
        retire(srv)


def test_no_packet_leaves_while_a_policy_is_changed(server, client):
    """A policy replaced by another restricted one is replaced in one step: a sender at 2 kHz
    gets nothing out while ten PATCHes go by."""
    ip = resolver()
    created = server.api("POST", "/sandboxes", json={"network": RESTRICTED}).json()
    sid = created["sandbox_id"]
    try:
        sandbox = client.connect(sid)
        start_spammer(sandbox, ip, secs=120)
        time.sleep(1)
        assert answers(sandbox) == 0, "restricted from the start"
        for i in range(10):
            policy = dict(RESTRICTED, allow_out=[f"192.0.2.{200 + i % 2}"])
            assert server.api("PATCH", f"/sandboxes/{sid}", json={"network": policy}).status_code == 200
        time.sleep(1)
        assert answers(sandbox) == 0, "packets left while the policy was being replaced"
    finally:
        server.api("DELETE", f"/sandboxes/{sid}")


def test_no_packet_leaves_before_the_policy_is_back_after_a_resume(server, client):
    """The policy is in force before CRIU restores a process: a sender running through three
    suspends and resumes gets nothing out."""
    ip = resolver()
    created = server.api("POST", "/sandboxes", json={"name": "rt-net-resume", "network": RESTRICTED}).json()
    sid = created["sandbox_id"]
    try:
        sandbox = client.connect(sid)
        start_spammer(sandbox, ip, secs=300)
        for _ in range(3):
            client.suspend(sid)
            wait_status(server, sid, "suspended")
            client.resume(sid)
            wait_status(server, sid, "running")
        time.sleep(1)
        assert answers(client.connect(sid)) == 0, "packets left while the sandbox was resuming"
    finally:
        server.api("DELETE", f"/sandboxes/{sid}")


def test_no_packet_leaves_before_the_policy_is_in_force_on_a_memory_restore(server, client):
    ip = resolver()
    created = server.api("POST", "/sandboxes", json={"network": RESTRICTED}).json()
    sid = created["sandbox_id"]
    copies = []
    snap = None
    try:
        sandbox = client.connect(sid)
        start_spammer(sandbox, ip, secs=300)
        snap = client.snapshot_and_wait(sid, "memory").snapshot_id
        for _ in range(3):
            made = server.api("POST", "/sandboxes", json={"snapshot_id": snap, "network": RESTRICTED}).json()
            copies.append(made["sandbox_id"])
            wait_status(server, made["sandbox_id"], "running")
        time.sleep(1)
        leaked = {c: answers(client.connect(c)) for c in copies}
        assert all(n == 0 for n in leaked.values()), f"packets left from restored copies: {leaked}"
    finally:
        clean_up(server, client, [*copies, sid], snap)


FORGE = """
import socket, struct, sys
def csum(b):
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b)); s = (s >> 16) + (s & 0xffff); s += s >> 16
    return ~s & 0xffff
src, dst, data = sys.argv[1], sys.argv[2], sys.argv[3].encode()
udp = struct.pack("!HHHH", 4444, 53, 8 + len(data), 0) + data
ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 1, 0, 64, 17, 0,
                 socket.inet_aton(src), socket.inet_aton(dst))
ip = ip[:10] + struct.pack("!H", csum(ip)) + ip[12:]
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
for _ in range(5):
    s.sendto(ip + udp, (dst, 0))
"""


def test_a_sandbox_cannot_send_packets_with_a_forged_source(sandbox):
    """A packet whose source is not the sandbox's own address is dropped; the same packet
    with its own source leaves (masqueraded), which shows the capture sees such packets."""
    ip = resolver()
    route = subprocess.run(["ip", "-4", "route", "get", ip], capture_output=True, text=True,
                           check=True).stdout.split()
    uplink = route[route.index("dev") + 1]
    marker = f"alcove-forged-{time.time_ns()}"
    forged = "198.51.100.77"
    sniffer = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0003))  # ETH_P_ALL: outgoing frames too
    sniffer.bind((uplink, 0))
    sniffer.settimeout(0.2)
    try:
        sandbox.run("python3", ["-c", FORGE, sandbox_ip(sandbox), ip, marker])
        sandbox.run("python3", ["-c", FORGE, forged, ip, marker])
        seen = []
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            try:
                frame = sniffer.recv(65535)
            except socket.timeout:
                continue
            if marker.encode() in frame and frame[12:14] == b"\x08\x00":
                seen.append(socket.inet_ntoa(frame[14 + 12:14 + 16]))
        assert seen, f"the capture on {uplink} saw not even the packets with the sandbox's own source"
        assert forged not in seen, f"forged-source packets left through {uplink}: {seen}"
    finally:
        sniffer.close()


@pytest.mark.parametrize("kind", ["memory", "filesystem"])
def test_a_restore_that_names_no_policy_keeps_its_sources(server, client, kind):
    """A snapshot of a sandbox kept from the internet restored without `network` came back
    open; it now gets its source's policy, and a policy named at the restore wins."""
    ip = resolver()
    sid = server.api("POST", "/sandboxes", json={"network": RESTRICTED}).json()["sandbox_id"]
    made = []
    snap = None
    try:
        snap = client.snapshot_and_wait(sid, kind).snapshot_id
        kept = client.create_and_connect(snapshot_id=snap)
        made.append(kept.sandbox_id)
        assert client.get(kept.sandbox_id).network_policy.allow_internet_access is False
        assert not resolver_answers(kept, ip), "the restored sandbox reached the internet"
        opened = server.api("POST", "/sandboxes", json={
            "snapshot_id": snap, "network": {"allow_internet_access": True}}).json()["sandbox_id"]
        made.append(opened)
        wait_status(server, opened, "running")
        assert resolver_answers(client.connect(opened), ip), "a policy named at the restore wins"
    finally:
        clean_up(server, client, [*made, sid], snap)
