"""Isolation: the sandbox sees none of the host, has its own network and
hostname, and the kernel enforces its memory, pids and disk limits."""

from __future__ import annotations

import os
import socket
import subprocess
import time

import pytest


@pytest.fixture
def sandbox(client):
    with client.create_and_connect(cpus=1.0, memory_mb=1024, disk_mb=1024) as sb:
        yield sb


def test_cannot_see_host_processes(sandbox):
    marker = f"alcove-host-marker-{os.getpid()}"
    host = subprocess.Popen(["sleep", "600", marker], stdin=subprocess.DEVNULL)
    try:
        result = sandbox.run("ps", ["-eo", "pid,args"])
        assert marker not in result.stdout
        pids = [int(l.split()[0]) for l in result.stdout.splitlines()[1:]]
        assert 1 in pids
        assert host.pid not in pids or marker not in result.stdout
        assert sandbox.run("cat", ["/proc/1/cmdline"]).stdout.startswith("/.alcove/alcove-agent")
    finally:
        host.kill()


def test_cannot_see_host_files(sandbox, tmp_path):
    secret = tmp_path / "host-secret.txt"
    secret.write_text("top secret")
    assert sandbox.run("cat", [str(secret)]).exit_code != 0
    assert sandbox.run("sh", ["-c", "test -e /var/lib/alcove || echo absent"]).stdout == "absent"
    assert sandbox.run("ls", ["/root"]).exit_code == 0


def test_own_hostname_and_network(sandbox):
    assert sandbox.run("hostname").stdout.startswith("sandbox-")
    assert sandbox.run("hostname").stdout != socket.gethostname()
    links = sandbox.run("ip", ["-o", "link"]).stdout
    names = sorted(l.split(":")[1].strip().split("@")[0] for l in links.splitlines())
    assert names == ["eth0", "lo"]


def test_cannot_reach_the_host_or_other_sandboxes(client, sandbox):
    # The host answers on its gateway address only for connections it opened.
    route = sandbox.run("ip", ["-4", "route", "show", "default"]).stdout.split()
    gateway = route[route.index("via") + 1]
    probe = "import socket,sys; s=socket.socket(); s.settimeout(2); sys.exit(s.connect_ex((sys.argv[1], int(sys.argv[2]))))"
    # Port 22/8900-range on the host gateway: must be unreachable (timeout or refused by drop).
    result = sandbox.run("python", ["-c", probe, gateway, "9"])
    assert result.exit_code != 0
    with client.create_and_connect() as other:
        other_ip = other.run("sh", ["-c", "ip -4 -o addr show eth0 | awk '{print $4}' | cut -d/ -f1"]).stdout
        other.start_process("python", ["-m", "http.server", "8000", "--bind", "0.0.0.0"])
        time.sleep(1)
        assert other.run("python", ["-c", probe, "127.0.0.1", "8000"]).exit_code == 0
        assert sandbox.run("python", ["-c", probe, other_ip, "8000"]).exit_code != 0


def test_memory_limit_oom_kills_the_hog_and_the_sandbox_survives(sandbox):
    hog = "b = bytearray(1536 * 1024 * 1024); b[::4096] = b'x' * len(b[::4096]); print('survived')"
    result = sandbox.run("python", ["-c", hog], timeout_secs=60)
    assert "survived" not in result.stdout
    assert result.exit_code != 0
    assert sandbox.run("echo", ["still here"]).stdout == "still here"


def test_fork_bomb_is_contained(sandbox):
    bomb = "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n"
    sandbox.run("python", ["-c", bomb], timeout_secs=5)
    assert sandbox.run("echo", ["alive"], timeout_secs=30).stdout == "alive"


def test_disk_limit_is_enforced(sandbox):
    result = sandbox.run(
        "sh", ["-c", "dd if=/dev/zero of=/root/big bs=1M count=2048 2>&1; echo rc=$?"], timeout_secs=120
    )
    assert "No space left on device" in result.stdout
    sandbox.run("rm", ["-f", "/root/big"])


def test_no_dangerous_capabilities(sandbox):
    assert sandbox.run("sh", ["-c", "mount -t tmpfs x /mnt"]).exit_code != 0
    assert sandbox.run("sh", ["-c", "echo 1 > /proc/sys/kernel/sysrq"]).exit_code != 0
    assert sandbox.run("sh", ["-c", "ip link add dummy0 type dummy"]).exit_code != 0
