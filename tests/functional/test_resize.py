"""Live resize (PATCH resources): CPU and memory through the cgroups without a restart, the
disk grown online, refusals (a shrinking disk 400, memory below use 409), a suspended
sandbox getting its new limits at resume, and the SDKs' update/wait_for_resource_resize."""

from __future__ import annotations

import time
import uuid

import pytest

MB = 1 << 20
ALLOC_1536 = "x = b'x' * (1536 << 20); print('allocated')"


def patch(server, ident: str, resources: dict):
    return server.api("PATCH", f"/sandboxes/{ident}", json={"resources": resources})


def sh(sandbox, script: str, timeout: int = 120):
    return sandbox.run("sh", ["-c", script], timeout_secs=timeout)


def cgroup_value(sandbox, controller: str, name: str) -> str:
    """A file of the sandbox's own cgroup, as the sandbox sees it."""
    result = sh(sandbox, f"cat /sys/fs/cgroup/{controller}/{name}")
    assert result.exit_code == 0, result.stderr
    return result.stdout.strip()


def host_cgroup_value(sandbox_id: str, controller: str, name: str) -> str:
    """A file of a sandbox's cgroup, read on the host."""
    import glob

    paths = glob.glob(f"/sys/fs/cgroup/{controller}/alcove-*/{sandbox_id}/{name}")
    assert len(paths) == 1, paths
    with open(paths[0]) as f:
        return f.read().strip()


def cpu_stat(sandbox) -> dict[str, int]:
    text = cgroup_value(sandbox, "cpu", "cpu.stat")
    return {k: int(v) for k, v in (line.split() for line in text.splitlines())}


def test_memory_grows_live_so_a_big_allocation_fits(server, client):
    with client.create_and_connect(cpus=1.0, memory_mb=1024) as sandbox:
        before = sandbox.run("python3", ["-c", ALLOC_1536], timeout_secs=60)
        assert before.exit_code != 0, "1.5 GB fit in a 1 GB sandbox"
        resp = patch(server, sandbox.sandbox_id, {"memory_mb": 2048})
        assert resp.status_code == 200, resp.text
        info = resp.json()
        assert info["resources"]["memory_mb"] == 2048
        assert info["resource_resize"]["generation"] == 1
        assert info["resource_resize"]["status"] == "succeeded"
        assert info["resource_resize"]["requested"]["memory_mb"] == 2048
        assert int(cgroup_value(sandbox, "memory", "memory.limit_in_bytes")) == 2048 * MB
        after = sandbox.run("python3", ["-c", ALLOC_1536], timeout_secs=60)
        assert after.exit_code == 0, after.stderr
        assert after.stdout.strip() == "allocated"
        got = server.api("GET", f"/sandboxes/{sandbox.sandbox_id}").json()
        assert got["resource_resize"] == info["resource_resize"]


def test_half_a_cpu_throttles_a_busy_loop(server, client):
    with client.create_and_connect(cpus=1.0, memory_mb=1024) as sandbox:
        resp = patch(server, sandbox.sandbox_id, {"cpus": 0.5})
        assert resp.status_code == 200, resp.text
        assert resp.json()["resources"]["cpus"] == 0.5
        assert int(cgroup_value(sandbox, "cpu", "cpu.cfs_quota_us")) == 50_000
        first = cpu_stat(sandbox)
        started = time.monotonic()
        busy = sh(sandbox, "timeout 3 sh -c 'while :; do :; done'; true", timeout=30)
        wall = time.monotonic() - started
        assert busy.exit_code == 0, busy.stderr
        second = cpu_stat(sandbox)
        # 3 s of a busy loop at half a CPU: about 30 throttled periods of 100 ms.
        assert second["nr_throttled"] - first["nr_throttled"] >= 10, (first, second)
        assert second["throttled_time"] > first["throttled_time"]
        usage_ns = int(cgroup_value(sandbox, "cpuacct", "cpuacct.usage"))
        assert usage_ns / 1e9 < wall, "the sandbox used more CPU time than the wall time"


def test_pinned_cpus_leave_the_scheduler_domains_to_the_root_cpuset(server, client):
    """A sandbox's cpuset (cgroup v1) pins it to ceil(cpus) CPUs with its own load-balance
    flag cleared, so giving it CPUs, and removing it, never makes the kernel rebuild the
    scheduler domains (a walk of every cpuset on the host); the root cpuset keeps balancing
    every CPU. The pinning holds through a resize and a suspend/resume."""
    from pathlib import Path

    root = Path("/sys/fs/cgroup/cpuset/cpuset.sched_load_balance")
    if not root.exists():
        pytest.skip("no cgroup v1 cpuset hierarchy on this host")
    if root.read_text().strip() != "1":
        pytest.skip("the root cpuset does not balance: Alcove leaves the flag alone here")
    with client.create_and_connect(name=f"pinned-{uuid.uuid4().hex[:8]}", cpus=1.0, memory_mb=1024) as sandbox:
        ident = sandbox.sandbox_id

        def pinned() -> tuple[str, str, str]:
            return (
                host_cgroup_value(ident, "cpuset", "cpuset.sched_load_balance"),
                host_cgroup_value(ident, "cpuset", "cpuset.cpus"),
                sandbox.run("nproc").stdout.strip(),
            )

        flag, cpus, nproc = pinned()
        assert flag == "0" and nproc == "1", (flag, cpus, nproc)
        assert cpus and cpus.isdigit(), cpus
        resp = patch(server, ident, {"cpus": 0.5})
        assert resp.status_code == 200, resp.text
        assert pinned()[0::2] == ("0", "1")
        client.suspend(ident)
        client.resume(ident)
        sandbox = client.connect(ident)
        flag, cpus, nproc = pinned()
        assert flag == "0" and nproc == "1" and cpus.isdigit(), (flag, cpus, nproc)
    assert root.read_text().strip() == "1"


def test_memory_below_use_is_409_with_the_figures(server, client):
    with client.create_and_connect(cpus=1.0, memory_mb=2048) as sandbox:
        sandbox.start_process(
            "python3", ["-c", "x = b'x' * (1536 << 20); import time; time.sleep(600)"]
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            used = int(cgroup_value(sandbox, "memory", "memory.usage_in_bytes"))
            if used > 1400 * MB:
                break
            time.sleep(0.2)
        resp = patch(server, sandbox.sandbox_id, {"memory_mb": 1024})
        assert resp.status_code == 409, resp.text
        body = resp.json()
        assert body["code"] == "INVALID_STATE"
        assert "1024 MB" in body["message"] and "uses" in body["message"], body["message"]
        info = server.api("GET", f"/sandboxes/{sandbox.sandbox_id}").json()
        assert info["resources"]["memory_mb"] == 2048
        assert "resource_resize" not in info
        assert int(cgroup_value(sandbox, "memory", "memory.limit_in_bytes")) == 2048 * MB


def df_mb(sandbox) -> int:
    result = sh(sandbox, "df -m --output=size / | tail -1")
    assert result.exit_code == 0, result.stderr
    return int(result.stdout.strip())


def has_sys_resource() -> bool:
    """Whether this host (and so the server it starts) may resize a mounted ext4."""
    with open("/proc/self/status") as f:
        caps = next(line.split()[1] for line in f if line.startswith("CapEff:"))
    return bool(int(caps, 16) & (1 << 24))


def test_disk_grows_online_and_never_shrinks(server, client):
    with client.create_and_connect(disk_mb=1024) as sandbox:
        assert df_mb(sandbox) <= 1024
        resp = patch(server, sandbox.sandbox_id, {"disk_mb": 512})
        assert resp.status_code == 400, resp.text
        assert resp.json()["code"] == "INVALID_ARGUMENT"
        resp = patch(server, sandbox.sandbox_id, {"disk_mb": 2048})
        assert resp.status_code == 200, resp.text
        info = resp.json()
        if not has_sys_resource():
            # No online ext4 resize without CAP_SYS_RESOURCE: a failed generation that says
            # so, and nothing changed.
            assert info["resource_resize"]["status"] == "failed"
            assert "CAP_SYS_RESOURCE" in info["resource_resize"]["error_message"]
            assert info["resources"]["disk_mb"] == 1024
            assert df_mb(sandbox) <= 1024
            pytest.skip("online disk growth needs CAP_SYS_RESOURCE, which this host lacks")
        assert info["resources"]["disk_mb"] == 2048, info
        assert df_mb(sandbox) > 1800
        wrote = sh(sandbox, "dd if=/dev/zero of=/root/big bs=1M count=1300 status=none && echo ok")
        assert wrote.exit_code == 0, wrote.stderr
        assert wrote.stdout.strip() == "ok"


def test_a_suspended_sandbox_gets_its_new_limits_when_it_resumes(server, client):
    with client.create_and_connect(name="resize-later", cpus=1.0, memory_mb=1024, disk_mb=1024) as sandbox:
        sh(sandbox, "echo kept > /root/kept.txt")
        assert client.suspend("resize-later").status == "suspended"
        resp = patch(server, "resize-later", {"cpus": 2.0, "memory_mb": 2048, "disk_mb": 2048})
        assert resp.status_code == 200, resp.text
        # Less memory is refused while suspended (its use is unknown until it runs: a limit
        # below what the dump holds was accepted, and then every resume failed).
        shrink = patch(server, "resize-later", {"cpus": 1.0, "memory_mb": 1024})
        assert shrink.status_code == 409 and "resume it, then shrink" in shrink.json()["message"], shrink.text
        info = resp.json()
        assert info["status"] == "suspended"
        assert info["resources"]["memory_mb"] == 2048
        assert info["resource_resize"]["status"] == "succeeded"
        assert client.resume("resize-later").status == "running"
        again = client.connect("resize-later")
        assert again.read_file("/root/kept.txt") == b"kept\n"
        sid = again.sandbox_id
        assert int(host_cgroup_value(sid, "memory", "memory.limit_in_bytes")) == 2048 * MB
        assert int(host_cgroup_value(sid, "memory", "user/memory.limit_in_bytes")) == 1984 * MB
        assert int(host_cgroup_value(sid, "cpu", "cpu.cfs_quota_us")) == 200_000
        assert df_mb(again) > 1800
        big = again.run("python3", ["-c", ALLOC_1536], timeout_secs=60)
        assert big.exit_code == 0, big.stderr


def test_resize_of_a_missing_sandbox_is_404_and_mixing_fields_is_400(server, client):
    assert patch(server, "no-such-sandbox", {"cpus": 1.0}).status_code == 404
    with client.create_and_connect() as sandbox:
        resp = server.api(
            "PATCH",
            f"/sandboxes/{sandbox.sandbox_id}",
            json={"resources": {"memory_mb": 2048}, "exposed_ports": [8080]},
        )
        assert resp.status_code == 400, resp.text


def test_alcove_sdk_update_and_wait_for_resource_resize(client):
    from alcove.sandbox import SandboxResizeError

    with client.create_and_connect(cpus=1.0, memory_mb=1024) as sandbox:
        info = sandbox.update(memory_mb=2048)
        assert info.resources.memory_mb == 2048
        assert info.resource_resize.status == "succeeded"
        generation = info.resource_resize.generation
        later = client.update(sandbox.sandbox_id, cpus=2.0, wait=False)
        assert later.resource_resize.generation == generation + 1
        done = client.wait_for_resource_resize(sandbox.sandbox_id, later.resource_resize.generation)
        assert done.resources.cpus == 2.0
        with pytest.raises(SandboxResizeError) as err:
            client.wait_for_resource_resize(sandbox.sandbox_id, generation)
        assert err.value.reason == "superseded"


def test_official_sdk_update_and_wait_for_resource_resize(server):
    tensorlake_sandbox = pytest.importorskip("tensorlake.sandbox", reason="tensorlake SDK missing")
    tl = tensorlake_sandbox.SandboxClient.for_localhost(api_url=server.url)
    with tl.create_and_connect(cpus=1.0, memory_mb=1024) as sandbox:
        sandbox_id = sandbox.sandbox_id
        info = sandbox.update(cpus=2.0, memory_mb=2048)
        assert info.resources.cpus == 2.0
        assert info.resources.memory_mb == 2048
        assert info.resource_resize.status == "succeeded"
        pending = tl.update_sandbox(sandbox_id, memory_mb=3072, wait=False)
        generation = pending.resource_resize.generation
        done = tl.wait_for_resource_resize(sandbox_id, generation)
        assert done.resources.memory_mb == 3072
        limit = sandbox.run("cat", ["/sys/fs/cgroup/memory/memory.limit_in_bytes"], timeout=30)
        assert int(limit.stdout.strip()) == 3072 * MB
