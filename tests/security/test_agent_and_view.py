"""The agent cannot be stopped, traced or read from inside its sandbox (also after
a suspend and resume), root in a sandbox is an unprivileged host id of its own,
and a sandbox sees its own machine: its memory, CPUs, uptime and load, and no
other sandbox's ids or the host's paths."""

from __future__ import annotations

import time

import pytest

from framework.host import agent_pid, host_ids

ATTACKS = r"""
import ctypes, os, signal, sys
libc = ctypes.CDLL(None, use_errno=True)
out = {}
out["ptrace_attach"] = (libc.ptrace(16, 1, 0, 0), ctypes.get_errno())
out["ptrace_seize"] = (libc.ptrace(0x4206, 1, 0, 0), ctypes.get_errno())
for name in ("mem", "environ", "maps"):
    try:
        open(f"/proc/1/{name}", "rb").read(1)
        out[name] = "read"
    except OSError as e:
        out[name] = e.errno
# The agent's open sockets and files (its listener, clients' connections).
for fd in ("0", "3"):
    try:
        os.readlink(f"/proc/1/fd/{fd}")
        out["fd"] = "resolved"
    except OSError as e:
        out["fd"] = e.errno
try:
    os.open("/proc/1/fd/3", os.O_RDONLY)
    out["fd_open"] = "opened"
except OSError as e:
    out["fd_open"] = e.errno
try:
    os.listdir("/proc/1/root/")
    out["root"] = "listed"
except OSError as e:
    out["root"] = e.errno
class iovec(ctypes.Structure):
    _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]
buf = ctypes.create_string_buffer(8)
local = iovec(ctypes.cast(buf, ctypes.c_void_p), 8)
remote = iovec(0x400000, 8)
out["vm_read"] = (libc.process_vm_readv(1, ctypes.byref(local), 1, ctypes.byref(remote), 1, 0), ctypes.get_errno())
for sig in (signal.SIGSTOP, signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGKILL):
    os.kill(1, sig)
print(out)
"""


def assert_untouchable(sandbox) -> None:
    result = sandbox.run("python3", ["-c", ATTACKS])
    out = eval(result.stdout)  # noqa: S307 - our own script's repr of a dict
    assert out["ptrace_attach"] == (-1, 1), out  # EPERM
    assert out["ptrace_seize"] == (-1, 1), out
    for name in ("mem", "environ", "maps", "fd", "fd_open", "root"):
        assert out[name] in (1, 13), (name, out)  # EPERM / EACCES
    assert out["vm_read"][0] == -1, out
    # SIGSTOP, SIGTERM, SIGKILL ... sent from inside: the agent keeps serving.
    time.sleep(0.2)
    assert sandbox.run("echo", ["still serving"]).stdout == "still serving"


def test_agent_is_untouchable_from_inside(client):
    with client.create_and_connect(name="untouchable") as sb:
        assert_untouchable(sb)
        # After a suspend/resume the restored agent is just as protected, and a
        # second suspend (a dump of a restored agent) works.
        client.suspend("untouchable")
        client.resume("untouchable")
        again = client.connect("untouchable")
        assert_untouchable(again)
        client.suspend("untouchable")
        client.resume("untouchable")
        assert client.connect("untouchable").run("true").exit_code == 0


CALL_AGENT = """
import json, sys, urllib.request
own = sys.argv[1]
out = {}
for name, host in (("loopback", "127.0.0.1"), ("own address", own)):
    req = urllib.request.Request(
        f"http://{host}:9501/api/v1/processes/run", method="POST",
        data=json.dumps({"command": "id", "args": ["-u"]}).encode(),
        headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            out[name] = [resp.status, resp.read().decode()]
    except urllib.error.HTTPError as e:
        out[name] = [e.code, e.read().decode()]
print(json.dumps(out))
"""


def test_a_process_of_the_sandbox_cannot_use_the_agent(client):
    """The agent runs any command as any user: a process of the sandbox that reached it would
    make any user its root. It answers the host only, also after a suspend and resume."""
    import json

    with client.create_and_connect(name="agent-host-only") as sb:
        for round in ("fresh", "resumed"):
            own = sb.run("sh", ["-c", "ip -4 -o addr show eth0 | awk '{print $4}' | cut -d/ -f1"]).stdout.strip()
            assert own, round
            out = json.loads(sb.run("python3", ["-c", CALL_AGENT, own], user="nobody").stdout)
            for where, (status, body) in out.items():
                assert status == 403, (round, where, status, body)
                assert json.loads(body)["code"] == "PERMISSION_DENIED", body
                assert "answers the host only" in body, body
            # The host still gets answers.
            assert sb.run("id", ["-u"]).stdout.strip() == "0"
            client.suspend("agent-host-only")
            client.resume("agent-host-only")
            sb = client.connect("agent-host-only")


def test_root_maps_to_a_distinct_unprivileged_range(server, client):
    with client.create_and_connect() as a, client.create_and_connect() as b:
        maps = []
        for sb in (a, b):
            pid = agent_pid(server.data_dir, sb.sandbox_id)
            uid, gid = host_ids(pid)
            assert uid >= 65536 and gid >= 65536, (uid, gid)
            inside = sb.run("cat", ["/proc/self/uid_map"]).stdout.split()
            assert inside[0] == "0" and int(inside[1]) == uid and inside[2] == "65536"
            assert sb.run("id", ["-u"]).stdout == "0"
            maps.append(uid)
        assert abs(maps[0] - maps[1]) >= 65536, "ranges never overlap"


def test_files_keep_their_owners_across_suspend_and_snapshot(client):
    with client.create_and_connect(name="owners") as sb:
        setup = (
            "useradd -m -u 1234 alice && su alice -c 'echo mine > /home/alice/f' && "
            "touch /root/rootfile && chown 4321:4322 /root/rootfile && "
            "stat -c '%u:%g' /home/alice/f /root/rootfile /usr/bin/passwd && "
            "stat -c %a /usr/bin/passwd"
        )
        before = sb.run("sh", ["-c", setup]).stdout.split()
        assert before[:2] == ["1234:1234", "4321:4322"], before
        assert before[2] == "0:0" and before[3] == "4755", before
        sb.write_file("/root/uploaded", b"x")
        assert sb.run("stat", ["-c", "%u:%g", "/root/uploaded"]).stdout == "0:0"
        check = "stat -c '%u:%g' /home/alice/f /root/rootfile /usr/bin/passwd; su alice -c 'cat /home/alice/f'"
        client.suspend("owners")
        client.resume("owners")
        after = client.connect("owners").run("sh", ["-c", check]).stdout.split()
        assert after == ["1234:1234", "4321:4322", "0:0", "mine"], after
        snap = client.snapshot_and_wait("owners")
        with client.create_and_connect(snapshot_id=snap.snapshot_id) as clone:
            assert clone.run("sh", ["-c", check]).stdout.split() == after
            # The clone runs under a range of its own.
            assert clone.run("cat", ["/proc/self/uid_map"]).stdout != sb.run(
                "cat", ["/proc/self/uid_map"]
            ).stdout
        client.delete_snapshot(snap.snapshot_id)


def test_package_manager_works(client):
    with client.create_and_connect() as sb:
        build = (
            "mkdir -p /tmp/pkg/DEBIAN /tmp/pkg/usr/local/bin && "
            "printf 'Package: alcove-probe\\nVersion: 1.0\\nArchitecture: all\\n"
            "Maintainer: t <t@t>\\nDescription: probe\\n' > /tmp/pkg/DEBIAN/control && "
            "printf '#!/bin/sh\\necho probe-ok\\n' > /tmp/pkg/usr/local/bin/alcove-probe && "
            "chmod 755 /tmp/pkg/usr/local/bin/alcove-probe && "
            "dpkg-deb --root-owner-group --build /tmp/pkg /tmp/probe.deb >/dev/null && "
            "dpkg -i /tmp/probe.deb >/dev/null && alcove-probe && dpkg -s alcove-probe | grep Status"
        )
        result = sb.run("sh", ["-c", build], timeout_secs=120)
        assert result.exit_code == 0, result.stderr
        assert "probe-ok" in result.stdout and "install ok installed" in result.stdout


def test_sandbox_sees_its_own_machine(client):
    with client.create_and_connect(name="own-view", cpus=1.0, memory_mb=1536) as sb:
        def view(s) -> dict:
            script = (
                "import os\n"
                "mem = dict(l.split(':', 1) for l in open('/proc/meminfo'))\n"
                "print(int(mem['MemTotal'].split()[0]) // 1024)\n"
                "print(os.cpu_count())\n"
                "print(open('/proc/cpuinfo').read().count('processor'))\n"
                "print(float(open('/proc/uptime').read().split()[0]))\n"
                "print(len(open('/proc/loadavg').read().split()))\n"
            )
            mem, cpus, cpuinfo, uptime, load = s.run("python3", ["-c", script]).stdout.split()
            return {
                "mem": int(mem),
                "cpus": int(cpus),
                "cpuinfo": int(cpuinfo),
                "uptime": float(uptime),
                "load": int(load),
                "nproc": int(s.run("nproc").stdout),
                "free": int(s.run("sh", ["-c", "free -m | awk '/Mem:/ {print $2}'"]).stdout),
            }

        host_uptime = float(open("/proc/uptime").read().split()[0])
        first = view(sb)
        assert first["mem"] == 1536 and first["free"] == 1536, first
        assert first["cpus"] == first["nproc"] == first["cpuinfo"] == 1, first
        assert first["uptime"] < host_uptime, first
        assert first["load"] == 5, first
        client.suspend("own-view")
        client.resume("own-view")
        again = view(client.connect("own-view"))
        assert (again["mem"], again["cpus"], again["nproc"]) == (1536, 1, 1), again


def test_no_other_sandbox_ids_or_host_paths_leak(server, client):
    with client.create_and_connect() as a, client.create_and_connect() as b:
        probe = (
            "cat /proc/self/mountinfo; ls /sys/block /sys/class/block 2>&1; "
            "cat /proc/diskstats; find /sys -name backing_file 2>/dev/null; "
            "cat /proc/self/cgroup"
        )
        seen = a.run("sh", ["-c", probe]).stdout
        for secret in (b.sandbox_id, a.sandbox_id, str(server.data_dir), "/var/lib/alcove"):
            assert secret not in seen, (secret, seen)
        assert "backing_file" not in seen
        assert "loop" not in a.run("cat", ["/proc/diskstats"]).stdout
        assert a.run("ls", ["/sys/block"]).stdout == ""


SYS_VIEW_ATTACKS = r"""
import ctypes, json, os
libc = ctypes.CDLL(None, use_errno=True)
out = {}
for path in ("/sys/fs/cgroup", "/sys/fs/cgroup/memory", "/sys/firmware", "/sys/block"):
    try:
        open(os.path.join(path, "planted"), "w").close()
        out[path] = "written"
    except OSError as e:
        out[path] = e.errno
    # Lift the read-only flag or the mask itself.
    rc = libc.mount(None, path.encode(), None, 0x20 | 0x1000, None)  # MS_REMOUNT|MS_BIND
    out[path + ":remount"] = rc if rc != 0 else "remounted"
    rc = libc.umount2(path.encode(), 2)  # MNT_DETACH
    out[path + ":umount"] = rc if rc != 0 else "unmounted"
    out[path + ":list"] = sorted(os.listdir(path))
out["mkdir"] = "made"
try:
    os.mkdir("/sys/fs/cgroup/memory/escape")
except OSError as e:
    out["mkdir"] = e.errno
out["limit"] = open("/sys/fs/cgroup/memory/memory.limit_in_bytes").read().strip()
print(json.dumps(out))
"""


def test_sys_masks_and_cgroups_are_read_only_views_of_its_own(client):
    # Masked /sys directories and /sys/fs/cgroup are read-only binds of directories of
    # the sandbox's own disk and cgroups: nothing in them can be written, lifted or
    # left behind, and the cgroups shown are the sandbox's, not the host's tree.
    import json

    with client.create_and_connect(name="sys-view", memory_mb=1536) as sb:
        out = json.loads(sb.run("python3", ["-c", SYS_VIEW_ATTACKS]).stdout)
        for path in ("/sys/fs/cgroup", "/sys/fs/cgroup/memory", "/sys/firmware", "/sys/block"):
            assert out[path] != "written", (path, out)
            assert out[path + ":remount"] == -1, (path, out)
            assert out[path + ":umount"] == -1, (path, out)
        assert out["mkdir"] != "made", out
        assert out["/sys/firmware:list"] == [] and out["/sys/block:list"] == [], out
        hierarchies = out["/sys/fs/cgroup:list"]
        assert "memory" in hierarchies and not any(h.startswith("alcove") for h in hierarchies), out
        own = out["/sys/fs/cgroup/memory:list"]
        assert "memory.limit_in_bytes" in own, out
        assert not any(name.startswith("alcove") for name in own), out
        assert int(out["limit"]) == 1536 << 20, out
        # Still the same after a suspend and resume, and still not writable.
        client.suspend("sys-view")
        client.resume("sys-view")
        again = json.loads(client.connect("sys-view").run("python3", ["-c", SYS_VIEW_ATTACKS]).stdout)
        assert again["/sys/fs/cgroup"] != "written" and again["/sys/firmware:list"] == [], again
        assert int(again["limit"]) == 1536 << 20, again


@pytest.fixture
def sandbox(client):
    with client.create_and_connect() as sb:
        yield sb
