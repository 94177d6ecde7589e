"""A sweep of the official `tensorlake==0.5.161` SDK's sandbox surface against a real Alcove
server, for what the other compat suites leave out: every create parameter read back and
observed inside the sandbox, pending creates, handle properties, run/start_process options,
updates (ports, flags, network, live resize), suspend/resume without waiting, copies, the
archive's pagination, snapshot types, log filters and backward pages, pool options, file
system mount options, connect variants, the SDK's not-found mapping, and the async client,
sandbox, PTY and tunnel."""

from __future__ import annotations

import asyncio
import time
import warnings

import httpx
import pytest

from framework.host import wait_until

tl = pytest.importorskip("tensorlake.sandbox", reason="tensorlake SDK missing")
models = pytest.importorskip("tensorlake.sandbox.models", reason="tensorlake SDK missing")

B = "/v1/namespaces/default"

# Asks the sandbox's own resolver (a host-side address every sandbox reaches unless its
# network policy says otherwise) for a name: any answer, even an error, means the packet
# went through. Needs no internet access.
RESOLVER_PROBE = r"""
import socket
ns = [l.split()[1] for l in open("/etc/resolv.conf") if l.startswith("nameserver")][0]
q = b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x07example\x03com\x00\x00\x01\x00\x01"
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(2)
s.sendto(q, (ns, 53))
try:
    s.recvfrom(512)
    print("answered")
except OSError:
    print("silent")
"""

WAIT_PORT = "for i in $(seq 200); do (exec 3<>/dev/tcp/127.0.0.1/{port}) 2>/dev/null && exit 0; sleep 0.05; done; exit 1"


@pytest.fixture
def tl_client(server):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return tl.SandboxClient.for_localhost(api_url=server.url)


@pytest.fixture
def sandbox(tl_client):
    with tl_client.create_and_connect() as sb:
        yield sb


def resolver_reachable(sb) -> bool:
    return sb.run("python3", ["-c", RESOLVER_PROBE]).stdout.strip() == "answered"


def resolver_ip(sb) -> str:
    return sb.run("sh", ["-c", "awk '/^nameserver/{print $2; exit}' /etc/resolv.conf"]).stdout.strip()


def delete_snapshot_when_settled(server, snapshot_id: str) -> None:
    """Deletes a snapshot once it is no longer in progress (one in progress cannot be)."""
    wait_until(lambda: server.api("GET", f"{B}/snapshots/{snapshot_id}").json().get("status") != "in_progress",
               f"snapshot {snapshot_id} settled")
    server.api("DELETE", f"{B}/snapshots/{snapshot_id}")


def ingress_get(server, info, port: int, path: str) -> httpx.Response:
    """GET a user port through the server's ingress, as `url_for_port` names it (the name
    `*.sandbox.localhost` need not resolve here: the request goes to the server's port)."""
    url = httpx.URL(info.url_for_port(port))
    return httpx.get(f"http://127.0.0.1:{server.port}{path}", headers={"Host": url.netloc.decode()}, timeout=10)


# ---------------------------------------------------------------------------------------------
# Create parameters, pending creates, handle properties
# ---------------------------------------------------------------------------------------------


def test_create_parameters_are_stored_and_take_effect(tl_client):
    created = tl_client.create(
        cpus=1.0, memory_mb=1024, disk_mb=2048, timeout_secs=600, name="tl-sweep-opts",
        entrypoint=["sleep", "infinity"], auto_resume=False, allow_unauthenticated_access=True,
        exposed_ports=[8080, 3000, 8080], deny_out=["192.168.1.0/24"],
    )
    try:
        assert (created.status, created.name) == (tl.SandboxStatus.RUNNING, "tl-sweep-opts")
        info = tl_client.get("tl-sweep-opts").value
        assert info.sandbox_id == created.sandbox_id
        assert (info.resources.cpus, info.resources.memory_mb, info.resources.disk_mb) == (1.0, 1024, 2048)
        assert (info.timeout_secs, info.entrypoint, info.auto_resume) == (600, ["sleep", "infinity"], False)
        assert info.allow_unauthenticated_access is True
        assert info.exposed_ports == [3000, 8080]
        assert info.network_policy == models.NetworkConfig(deny_out=["192.168.1.0/24"])
        assert info.url_for_port(8080) == f"http://8080-{info.sandbox_id}.sandbox.localhost:{httpx.URL(info.sandbox_url).port}"
        assert info.url_for_port() == info.sandbox_url
        access = tl_client.get_port_access(created.sandbox_id).value
        assert (access.exposed_ports, access.allow_unauthenticated_access) == ([3000, 8080], True)

        sb = tl_client.connect(created.sandbox_id)
        assert "sleep infinity" in sb.run("ps", ["-eo", "args"]).stdout  # the entrypoint runs
        size_mb = int(sb.run("df", ["-m", "--output=size", "/"]).stdout.split()[-1])
        assert 1800 < size_mb <= 2048, size_mb
    finally:
        tl_client.delete(created.sandbox_id)


def test_internet_access_off_and_allow_out_at_create(tl_client):
    with tl_client.create_and_connect(allow_internet_access=False) as sb:
        assert sb.info().network_policy == models.NetworkConfig(allow_internet_access=False)
        assert not resolver_reachable(sb)
    with tl_client.create_and_connect() as probe:
        resolver = resolver_ip(probe)
        assert resolver_reachable(probe)
    with tl_client.create_and_connect(allow_internet_access=False, allow_out=[resolver]) as sb:
        assert sb.info().network_policy.allow_out == [resolver]
        assert resolver_reachable(sb)


def test_pending_create_status_and_ready(server, tl_client):
    pending = tl_client.create(wait=False, name="tl-sweep-pending")
    assert isinstance(pending, tl.PendingSandbox)
    assert (pending.name, pending.state) == ("tl-sweep-pending", tl.SandboxStatus.PENDING)
    assert pending.pending_reason == "scheduling"
    assert pending.status().status in (tl.SandboxStatus.PENDING, tl.SandboxStatus.RUNNING)
    sb = pending.ready(timeout=60, poll_interval=0.2)
    try:
        assert isinstance(sb, tl.Sandbox)
        assert (sb.sandbox_id, sb.name, sb.status) == (pending.sandbox_id, "tl-sweep-pending", tl.SandboxStatus.RUNNING)
        assert sb.run("echo", ["ready"]).stdout == "ready"
        assert sb.trace_id == pending.trace_id
    finally:
        tl_client.delete(pending.sandbox_id)

    # Through the class method the handle owns the sandbox: leaving `with` deletes it.
    owned = tl.Sandbox.create(api_url=server.url, wait=False)
    with owned.ready(timeout=60, poll_interval=0.2) as sb:
        assert sb.status == tl.SandboxStatus.RUNNING
    assert tl_client.get(owned.sandbox_id).value.status == tl.SandboxStatus.TERMINATED
    with pytest.raises(tl.SandboxError):
        tl.Sandbox.create(api_url=server.url, wait=False, pool_id="any")


def test_handle_properties_health_and_daemon_info(tl_client):
    with tl_client.create_and_connect(name="tl-sweep-props") as sb:
        assert sb.trace_id and sb.bind_outcome is None
        assert sb.name == "tl-sweep-props"
        info = sb.info()
        assert (info.sandbox_id, info.namespace, info.status) == (sb.sandbox_id, "default", tl.SandboxStatus.RUNNING)
        assert sb.health().healthy is True
        sb.start_process("sleep", ["100"])
        sb.start_process("true")
        wait_until(lambda: sb.daemon_info().running_processes == 1, "one process running")
        daemon = sb.daemon_info()
        assert daemon.version and daemon.total_processes == 2
        sb.name = "tl-sweep-props2"
        assert sb.name == "tl-sweep-props2"
        assert tl_client.get("tl-sweep-props2").value.sandbox_id == sb.sandbox_id
        ws_url = sb.pty_ws_url("s1", "t")
        assert ws_url.startswith("ws://") and ws_url.endswith("/api/v1/pty/s1/ws")  # the token is not in it
        sandbox_id = sb.sandbox_id
    assert tl_client.get(sandbox_id).value.status == tl.SandboxStatus.TERMINATED


def test_timeout_secs_ends_an_ephemeral_sandbox_and_suspends_a_named_one(tl_client):
    ephemeral = tl_client.create(timeout_secs=2)
    named = tl_client.create(timeout_secs=2, name="tl-sweep-timeout")
    try:
        wait_until(lambda: tl_client.get(ephemeral.sandbox_id).value.status == tl.SandboxStatus.TERMINATED,
                   "the ephemeral sandbox timed out", timeout=30)
        assert tl_client.get(ephemeral.sandbox_id).value.termination_reason == "timeout"
        wait_until(lambda: tl_client.get(named.sandbox_id).value.status == tl.SandboxStatus.SUSPENDED,
                   "the named sandbox was suspended", timeout=30)
    finally:
        tl_client.delete(named.sandbox_id)
        tl_client.delete(ephemeral.sandbox_id)


# ---------------------------------------------------------------------------------------------
# run and start_process options
# ---------------------------------------------------------------------------------------------


def test_run_timeout_signal_user_and_working_dir(sandbox):
    timed = sandbox.run("sleep", ["30"], timeout=1)
    assert (timed.exit_code, timed.reason, timed.timed_out) == (-9, tl.CommandExitReason.TIMED_OUT, True)
    signaled = sandbox.run("sh", ["-c", "kill -TERM $$"])
    assert (signaled.exit_code, signaled.reason) == (-15, tl.CommandExitReason.SIGNALED)
    assert sandbox.run("id", user="nobody").stdout.startswith("uid=65534(nobody)")
    assert sandbox.run("id", ["-u"], user="1000:1000").stdout == "1000"
    assert sandbox.run("id", user=models.ProcessUserSpec(uid=1001, gid=1002)).stdout.startswith("uid=1001 gid=1002")
    assert sandbox.run("id", ["-u"], user={"name": "root"}).stdout == "0"
    assert sandbox.run("pwd", working_dir="/etc").stdout == "/etc"


def test_start_process_output_modes_user_and_names(sandbox):
    quiet_out = sandbox.start_process("sh", ["-c", "echo out; echo err >&2"], stdout_mode=tl.OutputMode.DISCARD)
    quiet_err = sandbox.start_process("sh", ["-c", "echo out; echo err >&2"], stderr_mode=tl.OutputMode.DISCARD)
    as_nobody = sandbox.start_process("id", ["-un"], user="nobody")
    for proc in (quiet_out, quiet_err, as_nobody):
        wait_until(lambda: sandbox.get_process(proc.pid).status == tl.ProcessStatus.EXITED, "exited")
    assert (sandbox.get_stdout(quiet_out.pid).lines, sandbox.get_stderr(quiet_out.pid).lines) == ([], ["err"])
    assert (sandbox.get_stdout(quiet_err.pid).lines, sandbox.get_stderr(quiet_err.pid).lines) == (["out"], [])
    assert sandbox.get_stdout(as_nobody.pid).lines == ["nobody"]

    # A managed process is addressed by its name in every process call.
    cat = sandbox.start_process("cat", name="catty", stdin_mode=tl.StdinMode.PIPE)
    assert cat.managed.name == "catty" and cat.stdin_writable
    sandbox.write_stdin("catty", b"by-name\n")
    sandbox.close_stdin("catty")
    assert [e.line for e in sandbox.follow_stdout("catty")] == ["by-name"]
    assert [e.line for e in sandbox.follow_output("catty")] == ["by-name"]
    assert list(sandbox.follow_stderr("catty")) == []
    assert (sandbox.get_output("catty").lines, sandbox.get_stderr("catty").line_count) == (["by-name"], 0)
    napper = sandbox.start_process("sleep", ["100"], name="napper")
    assert sandbox.get_process("napper").pid == napper.pid
    with pytest.warns(DeprecationWarning):
        assert sandbox.get_process(pid=napper.pid).pid == napper.pid
    assert sandbox.send_signal("napper", 15).success is True
    wait_until(lambda: sandbox.get_process("napper").managed.status == tl.ManagedProcessStatus.STOPPED, "stopped")
    assert sandbox.get_process("napper").status == tl.ProcessStatus.SIGNALED

    unmanaged = sandbox.start_process("sleep", ["100"])
    with pytest.raises(tl.RemoteAPIError) as err:
        sandbox.restart_process(unmanaged.pid)
    assert err.value.status_code == 409
    for bad in ("123", "a/b"):
        with pytest.raises(tl.SandboxError):
            sandbox.start_process("true", name=bad)


def test_tcp_health_check_and_always_restart_policy(sandbox):
    sandbox.start_process(
        "python3", ["-m", "http.server", "8082", "--bind", "127.0.0.1"], name="tcpweb",
        health_check=tl.ProcessHealthCheck(type=tl.ProcessHealthCheckType.TCP, port=8082,
                                           initial_delay_ms=200, interval_ms=200),
    )
    wait_until(lambda: sandbox.get_process("tcpweb").managed.health_status == tl.ManagedProcessHealthStatus.HEALTHY,
               "healthy over TCP")
    sandbox.start_process(
        "sleep", ["100"], name="nobody-listens",
        health_check={"type": "tcp", "port": 9999, "initial_delay_ms": 100, "interval_ms": 100,
                      "failure_threshold": 2, "timeout_ms": 100},
    )
    wait_until(lambda: sandbox.get_process("nobody-listens").managed.health_status
               == tl.ManagedProcessHealthStatus.UNHEALTHY, "unhealthy")
    assert sandbox.get_process("nobody-listens").managed.consecutive_health_failures >= 2
    sandbox.start_process(
        "true", name="always",
        restart=tl.RestartPolicyConfig(policy=tl.RestartPolicy.ALWAYS, max_restarts=2,
                                       initial_backoff_ms=50, max_backoff_ms=50),
    )
    wait_until(lambda: sandbox.get_process("always").managed.status == tl.ManagedProcessStatus.STOPPED, "gave up")
    managed = sandbox.get_process("always").managed
    assert (managed.restart_count, managed.last_exit.exit_code) == (2, 0)
    runs = [p for p in sandbox.list_processes() if p.managed and p.managed.name == "always"]
    assert len(runs) == 3


# ---------------------------------------------------------------------------------------------
# Updates: ports, flags, network, live resize
# ---------------------------------------------------------------------------------------------


def test_ports_flags_and_rename_through_update(server, tl_client):
    with tl_client.create_and_connect(exposed_ports=[8000], allow_unauthenticated_access=True) as sb:
        sb.write_file("/tmp/www/i.txt", b"through the ingress")
        sb.start_process("python3", ["-m", "http.server", "8000", "--bind", "0.0.0.0"], working_dir="/tmp/www")
        assert sb.run("bash", ["-c", WAIT_PORT.format(port=8000)]).exit_code == 0
        info = sb.info()
        got = ingress_get(server, info, 8000, "/i.txt")
        assert (got.status_code, got.text) == (200, "through the ingress")

        after = tl_client.unexpose_ports(sb.sandbox_id, [8000]).value
        assert (after.exposed_ports, after.allow_unauthenticated_access) == ([], False)
        assert ingress_get(server, info, 8000, "/i.txt").status_code == 403
        after = tl_client.expose_ports(sb.sandbox_id, [8000, 9000]).value
        assert (after.exposed_ports, after.allow_unauthenticated_access) == ([8000, 9000], False)
        after = tl_client.expose_ports(sb.sandbox_id, [7000], allow_unauthenticated_access=True).value
        assert (after.exposed_ports, after.allow_unauthenticated_access) == ([7000, 8000, 9000], True)
        assert ingress_get(server, info, 8000, "/i.txt").status_code == 200

        updated = sb.update(name="tl-sweep-combo", exposed_ports=[7001], allow_unauthenticated_access=False,
                            auto_resume=False).value
        assert (updated.name, updated.exposed_ports, updated.allow_unauthenticated_access, updated.auto_resume) == (
            "tl-sweep-combo", [7001], False, False)
        again = tl_client.get("tl-sweep-combo").value
        assert (again.exposed_ports, again.auto_resume) == ([7001], False)
        with pytest.raises(tl.SandboxError):
            sb.update(exposed_ports=[9501])


def test_network_policy_update_and_clear(sandbox):
    resolver = resolver_ip(sandbox)
    assert resolver_reachable(sandbox)
    info = sandbox.update(network=tl.NetworkConfig(deny_out=[resolver])).value
    assert info.network_policy == tl.NetworkConfig(deny_out=[resolver])
    assert not resolver_reachable(sandbox)
    info = sandbox.update(network=tl.CLEAR_NETWORK_POLICY).value
    assert info.network_policy == tl.NetworkConfig()
    assert resolver_reachable(sandbox)
    info = sandbox.update(network=tl.NetworkConfig(allow_internet_access=False)).value
    assert info.network_policy.allow_internet_access is False
    assert not resolver_reachable(sandbox)


def test_live_resize_and_waiting_for_a_generation(tl_client):
    with tl_client.create_and_connect(cpus=1.0, memory_mb=1024) as sb:
        first = sb.update(cpus=2.0, memory_mb=2048).value
        assert (first.resources.cpus, first.resources.memory_mb) == (2.0, 2048)
        assert first.resource_resize.status == tl.ResizeStatus.SUCCEEDED
        assert sb.run("nproc").stdout == "2"
        assert "2048" in sb.run("sh", ["-c", "free -m | awk '/Mem/{print $2}'"]).stdout

        admitted = tl_client.update_sandbox(sb.sandbox_id, memory_mb=3072, wait=False).value
        generation = admitted.resource_resize.generation
        assert generation == first.resource_resize.generation + 1
        done = sb.wait_for_resource_resize(generation, timeout=30).value
        assert (done.resources.memory_mb, done.resource_resize.generation) == (3072, generation)
        # Targets that already hold send nothing: the generation stays.
        same = sb.update(cpus=2.0).value
        assert same.resource_resize.generation == generation
        with pytest.raises(tl.SandboxError):
            sb.update(cpus=2.0, name="mixed")


# ---------------------------------------------------------------------------------------------
# Lifecycle: suspend/resume without waiting, copies, the archive
# ---------------------------------------------------------------------------------------------


def test_suspend_and_resume_without_waiting(server, tl_client):
    sb = tl.Sandbox.create(api_url=server.url, name="tl-sweep-life")
    try:
        sb.write_file("/root/kept", b"kept")
        tl_client.suspend("tl-sweep-life", wait=False)
        wait_until(lambda: tl_client.get("tl-sweep-life").value.status == tl.SandboxStatus.SUSPENDED, "suspended")
        suspended = tl.Sandbox.get_or_create("tl-sweep-life", api_url=server.url, resume=False)
        assert (suspended.bind_outcome, suspended.status) == ("attached", tl.SandboxStatus.SUSPENDED)
        tl_client.resume("tl-sweep-life", wait=False)
        wait_until(lambda: tl_client.get("tl-sweep-life").value.status == tl.SandboxStatus.RUNNING, "running")
        assert tl.Sandbox.connect("tl-sweep-life", api_url=server.url).read_file("/root/kept").value == b"kept"

        sb.suspend()
        assert sb.status == tl.SandboxStatus.SUSPENDED
        tl_client.suspend("tl-sweep-life")  # already suspended: nothing to do
        sb.resume()
        assert sb.status == tl.SandboxStatus.RUNNING
        tl_client.resume("tl-sweep-life")  # already running
        assert sb.run("cat", ["/root/kept"]).stdout == "kept"
    finally:
        sb.terminate()
    with tl_client.create_and_connect() as ephemeral:
        with pytest.raises(tl.RemoteAPIError) as err:
            tl_client.suspend(ephemeral.sandbox_id)
        assert err.value.status_code == 400


def test_copy_a_running_sandbox(tl_client):
    with tl_client.create_and_connect(name="tl-sweep-copy") as sb:
        sb.write_file("/root/state", b"copied")
        copies = sb.copy(times=2).value
        try:
            assert copies.source_sandbox_id == sb.sandbox_id
            assert [c.status for c in copies.sandboxes] == ["running", "running"]
            assert len({c.sandbox_id for c in copies.sandboxes} | {sb.sandbox_id}) == 3
            for copy in copies.sandboxes:
                assert copy.sandbox_url and copy.name is None
                assert tl_client.connect(copy.sandbox_id).read_file("/root/state").value == b"copied"
        finally:
            for copy in copies.sandboxes:
                tl_client.delete(copy.sandbox_id)
        by_name = tl_client.copy("tl-sweep-copy", request_timeout=120).value
        tl_client.delete(by_name.sandboxes[0].sandbox_id)
        assert by_name.source_sandbox_id == sb.sandbox_id
        with pytest.raises(tl.RemoteAPIError) as err:
            tl_client.copy(sb.sandbox_id, times=17)
        assert err.value.status_code == 400
        sb.suspend()
        with pytest.raises(tl.RemoteAPIError) as err:
            sb.copy()
        assert err.value.status_code == 409
        sb.resume()


def test_archived_sandboxes_pages_forward_and_backward(tl_client):
    ended = []
    for _ in range(5):
        ended.append(tl_client.create().sandbox_id)
        tl_client.delete(ended[-1])
    everything = tl_client.list_archived(limit=1000)
    assert set(ended) <= {s.sandbox_id for s in everything.sandboxes}
    pages = [tl_client.list_archived(limit=2)]
    while pages[-1].next_cursor:
        assert len(pages) < 50, "archive pages do not end"
        pages.append(tl_client.list_archived(limit=2, cursor=pages[-1].next_cursor))
    seen = [s.sandbox_id for page in pages for s in page.sandboxes]
    assert len(seen) == len(set(seen)) == len(everything.sandboxes)
    assert all(len(page.sandboxes) <= 2 for page in pages)
    assert pages[0].prev_cursor is None
    back = tl_client.list_archived(limit=2, cursor=pages[-1].prev_cursor, direction="backward")
    assert [s.sandbox_id for s in back.sandboxes] == [s.sandbox_id for s in pages[-2].sandboxes]

    archived = tl_client.get_archived(ended[0]).value
    assert (archived.sandbox_id, archived.status, archived.termination_reason) == (
        ended[0], tl.SandboxStatus.TERMINATED, "deleted")
    assert archived.archived_at >= archived.created_at
    with pytest.raises(tl.SandboxNotFoundError):
        tl_client.get_archived("00000000-0000-0000-0000-000000000000")


# ---------------------------------------------------------------------------------------------
# Snapshots, logs
# ---------------------------------------------------------------------------------------------


def test_snapshot_types_listing_and_class_methods(server, tl_client):
    made: list[str] = []
    try:
        with tl_client.create_and_connect(name="tl-sweep-snap") as sb:
            sb.write_file("/root/f.txt", b"in the snapshot")
            created = tl_client.snapshot(sb.sandbox_id, snapshot_type=tl.SnapshotType.FILESYSTEM)
            made.append(created.snapshot_id)
            wait_until(lambda: tl_client.get_snapshot(created.snapshot_id).status == tl.SnapshotStatus.COMPLETED,
                       "the snapshot completed")
            info = tl_client.get_snapshot(created.snapshot_id).value
            assert (info.sandbox_id, info.snapshot_type, info.namespace) == (
                sb.sandbox_id, tl.SnapshotType.FILESYSTEM, "default")
            assert info.size_bytes and info.created_at
            memory = tl_client.snapshot_and_wait(sb.sandbox_id, snapshot_type=tl.SnapshotType.MEMORY,
                                                 wait_until=tl.SnapshotWaitCondition.COMPLETED).value
            made.append(memory.snapshot_id)
            assert (memory.status, memory.snapshot_type) == (tl.SnapshotStatus.COMPLETED, tl.SnapshotType.MEMORY)
            checkpoint = sb.checkpoint(checkpoint_type=tl.CheckpointType.FILESYSTEM, wait_until="completed")
            made.append(checkpoint.snapshot_id)
            assert checkpoint.snapshot_type == tl.SnapshotType.FILESYSTEM
            assert sb.checkpoint(wait=False) is None
            wait_until(lambda: len(list(sb.list_snapshots())) == 4, "the fourth snapshot listed")
            ids = [s.snapshot_id for s in tl_client.list_sandbox_snapshots(sb.sandbox_id)]
            made = ids
            assert [s.snapshot_id for s in tl_client.list_sandbox_snapshots("tl-sweep-snap")] == ids
            assert set(ids) <= {s.snapshot_id for s in tl_client.list_snapshots()}
            assert tl.Sandbox.get_snapshot(created.snapshot_id, api_url=server.url).snapshot_id == created.snapshot_id
            assert sb.sandbox_id in [s.sandbox_id for s in tl.Sandbox.list(api_url=server.url)]
            sandbox_id = sb.sandbox_id
        # A filesystem snapshot restores with other resources.
        with tl_client.create_and_connect(snapshot_id=created.snapshot_id, cpus=2.0, memory_mb=2048) as restored:
            assert restored.read_file("/root/f.txt").value == b"in the snapshot"
            assert (restored.info().resources.cpus, restored.info().resources.memory_mb) == (2.0, 2048)
        tl.Sandbox.delete_snapshot(created.snapshot_id, api_url=server.url)
        with pytest.raises(tl.RemoteAPIError) as err:
            tl_client.get_snapshot(created.snapshot_id)
        assert err.value.status_code == 404
        assert created.snapshot_id not in [s.snapshot_id for s in tl_client.list_sandbox_snapshots(sandbox_id)]
    finally:
        for snapshot_id in made:
            delete_snapshot_when_settled(server, snapshot_id)


def test_log_body_filter_levels_and_backward_pages(tl_client):
    with tl_client.create_and_connect() as sb:
        proc = sb.start_process("sh", ["-c", "for i in $(seq 1 20); do echo line-$i; done; echo Needle-A >&2; echo NEEDLE-b"])
        list(sb.follow_output(proc.pid))
        pid = str(proc.pid)

        def whole_logged():
            return any(r.body.startswith(f"process {pid} exited") for r in sb.get_logs(process_ids=[pid]).logs)

        wait_until(whole_logged, "the process's logs")
        whole = tl_client.get_logs(sb.sandbox_id, process_ids=[pid]).value
        assert [r.body for r in whole.logs if r.body.startswith("line-")] == [f"line-{i}" for i in range(1, 21)]
        needles = sb.get_logs(body="needle", process_ids=[pid])
        assert [r.body for r in needles.logs if not r.body.startswith("process ")] == ["Needle-A", "NEEDLE-b"]
        warned = tl_client.get_logs(sb.sandbox_id, body="needle", levels=["warn"]).value
        assert [(r.body, r.level) for r in warned.logs] == [("Needle-A", 4)]
        assert len(sb.get_logs(levels=[tl.SandboxLogLevel.INFO, "warn"], process_ids=[pid]).logs) == len(whole.logs)

        pages = [sb.get_logs(process_ids=[pid], tail=5)]
        while pages[-1].next_token:
            assert len(pages) < 20, "tail pages do not end"
            pages.append(sb.get_logs(process_ids=[pid], tail=5, next_token=pages[-1].next_token))
        assert [r.uuid for page in reversed(pages) for r in page.logs] == [r.uuid for r in whole.logs]
        assert [r.body for r in pages[0].logs][-1].startswith(f"process {pid} exited")

        listed = tl_client.list_log_processes(sb.sandbox_id).value.processes
        entry = next(p for p in listed if p.process_id == pid)
        assert (entry.process_command, entry.log_count) == ("sh", len(whole.logs))
        assert entry.first_seen <= entry.last_seen
        with pytest.raises(tl.RemoteAPIError) as err:
            sb.get_logs(head=1, tail=1)
        assert err.value.status_code == 400


# ---------------------------------------------------------------------------------------------
# Pools and file systems
# ---------------------------------------------------------------------------------------------


def wait_idle(tl_client, pool_id: str) -> None:
    wait_until(lambda: any(c.state == "Idle" for c in tl_client.get_pool(pool_id).containers or []),
               "an idle sandbox in the pool", timeout=60)


def test_pool_options_policy_updates_and_capacity(server, tl_client):
    pool_id = tl_client.create_pool(
        image="default", timeout_secs=900, entrypoint=["sleep", "infinity"], warm_containers=1,
        max_containers=1, network=tl.NetworkConfig(deny_out=["192.0.2.1"]),
    ).pool_id
    claimed = None
    try:
        pool = tl_client.get_pool(pool_id).value
        assert (pool.timeout_secs, pool.entrypoint, pool.max_containers) == (900, ["sleep", "infinity"], 1)
        assert pool.network_policy == tl.NetworkConfig(deny_out=["192.0.2.1"])
        listed = next(p for p in tl_client.list_pools() if p.pool_id == pool_id)
        assert listed.containers is None and listed.network_policy == pool.network_policy
        wait_idle(tl_client, pool_id)
        claimed = tl_client.claim(pool_id)
        info = tl_client.get(claimed.sandbox_id).value
        assert (info.pool_id, info.timeout_secs, info.entrypoint) == (pool_id, 900, ["sleep", "infinity"])
        assert info.network_policy == pool.network_policy
        assert "sleep infinity" in tl_client.connect(claimed.sandbox_id).run("ps", ["-eo", "args"]).stdout
        with pytest.raises(tl.RemoteAPIError) as err:
            tl_client.claim(pool_id)
        assert err.value.status_code == 429

        kept = tl_client.update_pool(pool_id, image="default", memory_mb=2048, warm_containers=1, max_containers=2).value
        assert kept.network_policy == pool.network_policy and kept.resources.memory_mb == 2048
        cleared = tl_client.update_pool(pool_id, image="default", warm_containers=1, max_containers=2,
                                        network=tl.CLEAR_NETWORK_POLICY).value
        assert cleared.network_policy == tl.NetworkConfig()
        assert tl_client.get_pool(pool_id).value.network_policy == tl.NetworkConfig()
        with pytest.raises(tl.RemoteAPIError) as err:
            tl_client.create_pool(image="default", gpus=1)
        assert err.value.status_code == 400
    finally:
        if claimed is not None:
            tl_client.delete(claimed.sandbox_id)
        tl_client.delete_pool(pool_id)


def test_claim_with_file_systems_and_mount_options(server, tl_client):
    assert server.api("POST", f"{B}/file-systems", json={"name": "tl-sweep-vol", "size_mb": 32}).status_code == 200
    pool_id = tl_client.create_pool(image="default", warm_containers=1).pool_id
    claimed = None
    try:
        wait_idle(tl_client, pool_id)
        claimed = tl_client.claim(
            pool_id, file_systems=[tl.FileSystemMount(file_system_id="tl-sweep-vol", mount_path="/mnt/v")])
        sb = tl_client.connect(claimed.sandbox_id)
        assert [(m.file_system_id, m.mount_path, m.read_only) for m in sb.list_file_systems()] == [
            ("tl-sweep-vol", "/mnt/v", False)]
        sb.run("sh", ["-c", "echo written > /mnt/v/f"])
        assert sb.detach_file_system("/mnt/v").value.file_systems == []
        attached = sb.attach_file_system("tl-sweep-vol", "/mnt/w", read_only=True, prefetch=True).value
        assert [(m.mount_path, m.read_only) for m in attached.file_systems] == [("/mnt/w", True)]
        assert sb.run("cat", ["/mnt/w/f"]).stdout == "written"
        assert sb.run("touch", ["/mnt/w/g"]).exit_code != 0
        # Documented (docs/protocol/departures.md): volumes take no snapshot pin and no owner.
        for options in ({"snapshot_id": "s", "read_only": True}, {"owner": "1000:1000"}):
            with pytest.raises(tl.RemoteAPIError) as err:
                sb.attach_file_system("tl-sweep-vol", "/mnt/z", **options)
            assert err.value.status_code == 400
        sb.detach_file_system("/mnt/w")
    finally:
        if claimed is not None:
            tl_client.delete(claimed.sandbox_id)
        tl_client.delete_pool(pool_id)
        assert server.api("DELETE", f"{B}/file-systems/tl-sweep-vol").status_code == 204


# ---------------------------------------------------------------------------------------------
# connect variants and the SDK's error mapping
# ---------------------------------------------------------------------------------------------


def test_connect_variants(server, tl_client):
    with tl_client.create_and_connect(name="tl-sweep-connect") as sb:
        assert tl_client.connect("tl-sweep-connect", proxy_url=server.url).run("echo", ["a"]).stdout == "a"
        assert tl_client.connect(sandbox_id="tl-sweep-connect").run("echo", ["b"]).stdout == "b"
        assert tl_client.connect(sb.sandbox_id, routing_hint="ignored").run("echo", ["c"]).stdout == "c"
        direct = tl.Sandbox("tl-sweep-connect", proxy_url=server.url)
        assert direct.run("echo", ["d"]).stdout == "d"
        with pytest.raises(tl.SandboxError):
            direct.info()  # no lifecycle client on a hand-built handle
        assert tl.Sandbox.connect("tl-sweep-connect", api_url=server.url).sandbox_id == sb.sandbox_id


def test_unknown_ids_map_to_the_sdk_not_found_errors(tl_client):
    missing = "tl-sweep-missing"
    for call in (
        lambda: tl_client.get(missing), lambda: tl_client.delete(missing), lambda: tl_client.suspend(missing),
        lambda: tl_client.resume(missing), lambda: tl_client.connect(missing),
        lambda: tl_client.update_sandbox(missing, name="x"), lambda: tl_client.get_logs(missing),
        lambda: tl_client.list_log_processes(missing), lambda: tl_client.copy(missing),
        lambda: tl_client.snapshot(missing), lambda: tl_client.attach_file_system(missing, "v", "/mnt/x"),
        lambda: tl_client.detach_file_system(missing, "/mnt/x"),
        lambda: tl_client.wait_for_resource_resize(missing, 1, timeout=0),
    ):
        with pytest.raises(tl.SandboxNotFoundError):
            call()
    for call in (lambda: tl_client.get_pool("nope"), lambda: tl_client.delete_pool("nope"),
                 lambda: tl_client.update_pool("nope", image="default")):
        with pytest.raises(tl.PoolNotFoundError):
            call()
    for call in (lambda: tl_client.claim("nope"), lambda: tl_client.get_snapshot("nope"),
                 lambda: tl_client.delete_snapshot("nope"), lambda: tl_client.list_sandbox_snapshots(missing)):
        with pytest.raises(tl.RemoteAPIError) as err:
            call()
        assert err.value.status_code == 404


# ---------------------------------------------------------------------------------------------
# The async client and sandbox
# ---------------------------------------------------------------------------------------------


@pytest.fixture
async def aclient(server):
    client = tl.AsyncSandboxClient.for_localhost(api_url=server.url)
    yield client
    await client.close()


async def test_async_processes_files_and_handle(aclient):
    sb = await aclient.create_and_connect(name="tl-sweep-async")
    try:
        assert isinstance(sb, tl.AsyncSandbox)
        result = await sb.run("sh", ["-c", "echo out; echo err >&2; exit 5"])
        assert (result.stdout, result.stderr, result.exit_code, result.reason) == ("out", "err", 5, tl.CommandExitReason.EXITED)
        assert (await sb.run("sleep", ["30"], timeout=1)).timed_out
        proc = await sb.start_process("sh", ["-c", "echo a; echo b >&2"])
        assert sorted((e.stream, e.line) for e in await sb.follow_output(proc.pid)) == [("stderr", "b"), ("stdout", "a")]
        assert [e.line for e in await sb.follow_stdout(proc.pid)] == ["a"]
        assert [e.line for e in await sb.follow_stderr(proc.pid)] == ["b"]
        assert ((await sb.get_stdout(proc.pid)).lines, (await sb.get_stderr(proc.pid)).lines) == (["a"], ["b"])
        assert (await sb.get_output(proc.pid)).line_count == 2
        info = await sb.get_process(proc.pid)
        assert (info.status, info.exit_code) == (tl.ProcessStatus.EXITED, 0)
        cat = await sb.start_process("cat", stdin_mode=tl.StdinMode.PIPE)
        await sb.write_stdin(cat.pid, b"piped\n")
        await sb.close_stdin(cat.pid)
        assert [e.line for e in await sb.follow_stdout(cat.pid)] == ["piped"]
        sleeper = await sb.start_process("sleep", ["100"])
        assert sleeper.pid in [p.pid for p in await sb.list_processes()]
        assert (await sb.send_signal(sleeper.pid, 15)).success
        await sb.kill_process(sleeper.pid)
        managed = await sb.start_process("sleep", ["100"], name="slp")
        again = await sb.restart_process("slp")
        assert again.pid != managed.pid and again.managed.restart_count == 1
        await sb.kill_process("slp")

        await sb.write_file("/tmp/async/a.txt", b"hello")
        assert (await sb.read_file("/tmp/async/a.txt")).value == b"hello"
        listing = await sb.list_directory("/tmp/async")
        assert [(e.name, e.size) for e in listing.entries] == [("a.txt", 5)]
        await sb.delete_file("/tmp/async/a.txt")
        assert (await sb.list_directory("/tmp/async")).entries == []
        assert (await sb.health()).healthy and (await sb.daemon_info()).version
        assert (await sb.info()).name == "tl-sweep-async"
        assert await sb.status() == tl.SandboxStatus.RUNNING
        assert (await aclient.get("tl-sweep-async")).sandbox_id == sb.sandbox_id
        assert sb.sandbox_id in [s.sandbox_id for s in await aclient.list()]
    finally:
        await sb.terminate()
    assert (await aclient.get(sb.sandbox_id)).status == tl.SandboxStatus.TERMINATED


async def test_async_lifecycle_updates_copies_snapshots_and_logs(server, aclient):
    pending = await aclient.create(wait=False, name="tl-sweep-alife")
    assert isinstance(pending, tl.AsyncPendingSandbox)
    assert (await pending.status()).sandbox_id == pending.sandbox_id
    sb = await pending.ready(timeout=60, poll_interval=0.2)
    snapshots: list[str] = []
    try:
        assert isinstance(sb, tl.AsyncSandbox) and await sb.status() == tl.SandboxStatus.RUNNING
        assert (await sb.update(exposed_ports=[8000])).exposed_ports == [8000]
        assert (await aclient.expose_ports(sb.sandbox_id, [9000])).exposed_ports == [8000, 9000]
        assert (await aclient.unexpose_ports(sb.sandbox_id, [8000])).exposed_ports == [9000]
        assert (await aclient.get_port_access(sb.sandbox_id)).exposed_ports == [9000]
        resolver = (await sb.run("sh", ["-c", "awk '/^nameserver/{print $2; exit}' /etc/resolv.conf"])).stdout.strip()
        assert (await sb.update(network=tl.NetworkConfig(deny_out=[resolver]))).network_policy.deny_out == [resolver]
        assert (await sb.run("python3", ["-c", RESOLVER_PROBE])).stdout.strip() == "silent"
        assert (await sb.update(network=tl.CLEAR_NETWORK_POLICY)).network_policy == tl.NetworkConfig()
        assert (await sb.run("python3", ["-c", RESOLVER_PROBE])).stdout.strip() == "answered"

        resized = await aclient.update_sandbox(sb.sandbox_id, cpus=2.0, memory_mb=2048)
        assert resized.resource_resize.status == tl.ResizeStatus.SUCCEEDED
        waited = await sb.wait_for_resource_resize(resized.resource_resize.generation, timeout=10)
        assert (waited.resources.cpus, waited.resources.memory_mb) == (2.0, 2048)

        await aclient.suspend(sb.sandbox_id, wait=False)
        await aclient.suspend(sb.sandbox_id)
        assert (await aclient.get(sb.sandbox_id)).status == tl.SandboxStatus.SUSPENDED
        await aclient.resume(sb.sandbox_id, wait=False)
        await aclient.resume(sb.sandbox_id)
        await sb.suspend()
        await sb.resume()
        assert (await sb.run("echo", ["back"])).stdout == "back"

        attached = await tl.AsyncSandbox.get_or_create("tl-sweep-alife", api_url=server.url)
        assert (attached.bind_outcome, attached.sandbox_id) == ("attached", sb.sandbox_id)
        assert (await (await tl.AsyncSandbox.connect("tl-sweep-alife", api_url=server.url)).run("echo", ["c"])).stdout == "c"

        copies = await sb.copy()
        for copy in copies.sandboxes:
            await aclient.delete(copy.sandbox_id)
        assert [c.status for c in copies.sandboxes] == ["running"]

        snap = await aclient.snapshot_and_wait(sb.sandbox_id, snapshot_type=tl.SnapshotType.FILESYSTEM)
        snapshots.append(snap.snapshot_id)
        assert snap.snapshot_type == tl.SnapshotType.FILESYSTEM
        plain = await aclient.snapshot(sb.sandbox_id)
        snapshots.append(plain.snapshot_id)
        checkpoint = await sb.checkpoint()
        snapshots.append(checkpoint.snapshot_id)
        assert (await aclient.get_snapshot(snap.snapshot_id)).sandbox_id == sb.sandbox_id
        listed = [s.snapshot_id for s in await aclient.list_sandbox_snapshots(sb.sandbox_id)]
        assert set(snapshots) <= set(listed)
        assert set(snapshots) <= {s.snapshot_id for s in await sb.list_snapshots()}
        assert set(snapshots) <= {s.snapshot_id for s in await aclient.list_snapshots()}

        logs = await aclient.get_logs(sb.sandbox_id, levels=["info"], head=2)
        assert len(logs.logs) == 2 and logs.next_token
        more = await sb.get_logs(levels=["info"], head=2, next_token=logs.next_token)
        assert not {r.uuid for r in logs.logs} & {r.uuid for r in more.logs}
        assert (await aclient.list_log_processes(sb.sandbox_id)).processes
        assert (await sb.list_log_processes()).processes

        page = await aclient.list_archived(limit=1)
        assert len(page.sandboxes) == 1 and page.next_cursor
        second = await aclient.list_archived(limit=1, cursor=page.next_cursor)
        assert second.sandboxes[0].sandbox_id != page.sandboxes[0].sandbox_id
        assert (await aclient.get_archived(page.sandboxes[0].sandbox_id)).archived_at
    finally:
        for snapshot_id in snapshots:
            delete_snapshot_when_settled(server, snapshot_id)
        await sb.terminate()

    created = await tl.AsyncSandbox.get_or_create("tl-sweep-agoc", api_url=server.url)
    try:
        assert created.bind_outcome == "created"
        await created.suspend()
        resumed = await tl.AsyncSandbox.get_or_create("tl-sweep-agoc", api_url=server.url)
        assert resumed.bind_outcome == "resumed"
        assert (await resumed.run("echo", ["x"])).stdout == "x"
    finally:
        await created.terminate()


async def test_async_pools_and_file_systems(server, aclient):
    assert server.api("POST", f"{B}/file-systems", json={"name": "tl-sweep-avol", "size_mb": 32}).status_code == 200
    pool_id = (await aclient.create_pool(image="default", warm_containers=1, max_containers=3)).pool_id
    claimed: list[str] = []
    try:
        assert (await aclient.get_pool(pool_id)).pool_id == pool_id
        assert pool_id in [p.pool_id for p in await aclient.list_pools()]
        updated = await aclient.update_pool(pool_id, image="default", memory_mb=2048, warm_containers=1, max_containers=3)
        assert updated.resources.memory_mb == 2048
        claim = await aclient.claim(pool_id)
        claimed.append(claim.sandbox_id)
        assert claim.status == tl.SandboxStatus.RUNNING
        async with await aclient.create_and_connect(pool_id=pool_id) as sb:
            claimed.append(sb.sandbox_id)
            assert (await sb.info()).pool_id == pool_id
            attached = await sb.attach_file_system("tl-sweep-avol", "/mnt/a")
            assert [m.mount_path for m in attached.file_systems] == ["/mnt/a"]
            assert [m.file_system_id for m in await sb.list_file_systems()] == ["tl-sweep-avol"]
            await sb.run("sh", ["-c", "echo x > /mnt/a/f"])
            assert (await sb.detach_file_system("/mnt/a")).file_systems == []
            again = await aclient.attach_file_system(sb.sandbox_id, "tl-sweep-avol", "/mnt/b", read_only=True)
            assert again.file_systems[0].read_only is True
            assert (await aclient.detach_file_system(sb.sandbox_id, "/mnt/b")).file_systems == []
            with pytest.raises(tl.PoolInUseError):
                await aclient.delete_pool(pool_id)
        await aclient.delete(claim.sandbox_id)
        await aclient.delete_pool(pool_id)
        with pytest.raises(tl.PoolNotFoundError):
            await aclient.get_pool(pool_id)
    finally:
        for sandbox_id in claimed:
            await aclient.delete(sandbox_id)
        try:
            await aclient.delete_pool(pool_id)
        except tl.SandboxError:
            pass
        assert server.api("DELETE", f"{B}/file-systems/tl-sweep-avol").status_code == 204


async def test_async_pty(aclient):
    async with await aclient.create_and_connect() as sb:
        received = bytearray()
        exits: list[int] = []
        pty = await sb.create_pty("bash", ["--norc", "--noprofile"], env={"PS1": "P$ ", "FOO": "bar"},
                                  working_dir="/etc", rows=30, cols=100, on_data=received.extend,
                                  on_exit=exits.append)
        assert pty.connected

        async def arrived(needle: bytes) -> None:
            for _ in range(100):
                if needle in received:
                    return
                await asyncio.sleep(0.1)
            raise AssertionError(f"{needle!r} never arrived: {bytes(received)!r}")

        await pty.send_input("echo $FOO; pwd; stty size\n")
        await arrived(b"bar\r\n/etc\r\n30 100\r\n")
        await pty.resize(90, 20)
        await pty.send_input("stty size\n")
        await arrived(b"20 90\r\n")
        await pty.disconnect()
        assert not pty.connected
        again = await sb.connect_pty(pty.session_id, pty.token)
        await again.send_input("exit 7\n")
        assert await again.wait(timeout=10) == 7

        killed = await sb.create_pty("sleep", ["1000"])
        await killed.kill()
        with pytest.raises(tl.SandboxError, match="terminated"):
            await killed.wait(timeout=10)
        assert await (await sb.create_pty("sh", ["-c", "kill -9 $$"])).wait(timeout=10) == 137

        session = (await sb.create_pty_session("bash")).value
        with pytest.raises(tl.SandboxConnectionError, match="403"):
            await sb.connect_pty(session["session_id"], "wrong-token")
        ok = await sb.connect_pty(session["session_id"], session["token"])
        await ok.send_input("exit 2\n")
        assert await ok.wait(timeout=10) == 2


async def test_async_tunnel(aclient):
    async with await aclient.create_and_connect() as sb:
        await sb.write_file("/tmp/www/t.txt", b"via the async tunnel")
        await sb.start_process("python3", ["-m", "http.server", "8000", "--bind", "127.0.0.1"], working_dir="/tmp/www")
        assert (await sb.run("bash", ["-c", WAIT_PORT.format(port=8000)])).exit_code == 0
        tunnel = await sb.create_tunnel(8000, local_port=0)
        try:
            assert tunnel.local_port > 0 and tunnel.remote_port == 8000 and not tunnel.closed
            assert tunnel.address() == tl.TunnelAddress(host="127.0.0.1", port=tunnel.local_port)
            async with httpx.AsyncClient() as http:
                got = await http.get(f"http://127.0.0.1:{tunnel.local_port}/t.txt", timeout=10)
            assert (got.status_code, got.text) == (200, "via the async tunnel")
        finally:
            await tunnel.close()
        assert tunnel.closed


# ---------------------------------------------------------------------------------------------
# Desktop: the pointer and key methods the desktop suite does not use
# ---------------------------------------------------------------------------------------------


def test_desktop_pointer_buttons_scroll_and_key_chords(tl_client):
    with tl_client.create_and_connect(image="tensorlake/ubuntu-vnc") as sb:
        with sb.connect_desktop(password="tensorlake") as desktop:
            sb.start_process("xterm", ["-title", "chord", "-geometry", "80x10+100+100", "-e", "bash", "-c",
                                       "read -r a; read -r b; printf '%s|%s' \"$a\" \"$b\" > /tmp/typed.txt"])
            wait_until(lambda: sb.run("xdotool", ["search", "--name", "chord"]).stdout.strip() != "", "the xterm")

            def focused() -> bool:
                if sb.run("xdotool", ["getwindowfocus", "getwindowname"]).stdout.strip() == "chord":
                    return True
                desktop.click(300, 150)
                return False

            wait_until(focused, "the xterm has the focus")
            # Ctrl-U is the terminal's kill-line: what was typed before it is gone.
            desktop.type_text("abc")
            desktop.press(["ctrl", "u"])
            desktop.type_text("d")
            desktop.press("enter")
            desktop.type_text("xy")
            desktop.key_down("ctrl")
            desktop.press("u")
            desktop.key_up("ctrl")
            desktop.type_text("Z")  # Ctrl is up again: a plain Z
            desktop.press("enter")
            wait_until(lambda: sb.run("cat", ["/tmp/typed.txt"]).exit_code == 0, "the lines were read")
            assert sb.run("cat", ["/tmp/typed.txt"]).stdout == "d|Z"

            actions = [
                (desktop.left_click, (11, 12)), (desktop.middle_click, (31, 32)),
                (lambda x, y: desktop.double_click(x, y), (41, 42)),
                (lambda x, y: desktop.mouse_press("left", x, y), (51, 52)),
                (lambda x, y: desktop.mouse_release("left", x, y), (61, 62)),
                (lambda x, y: desktop.scroll_up(2, x, y), (71, 72)),
                (lambda x, y: desktop.scroll_down(1, x, y), (81, 82)),
                (lambda x, y: desktop.scroll(3, x, y), (91, 92)),
                (desktop.right_click, (21, 22)),
            ]
            for action, (x, y) in actions:
                action(x, y)
                wait_until(lambda: f"x:{x} y:{y} " in sb.run("xdotool", ["getmouselocation"]).stdout,
                           f"the pointer at {x},{y}", timeout=5)


# ---------------------------------------------------------------------------------------------
# Differences found by the sweep
# ---------------------------------------------------------------------------------------------


def test_update_refuses_auto_resume_off_for_an_ephemeral_sandbox(tl_client):
    with pytest.raises(tl.RemoteAPIError) as err:
        tl_client.create(auto_resume=False)
    assert err.value.status_code == 400
    with tl_client.create_and_connect() as sb:
        try:
            with pytest.raises(tl.RemoteAPIError) as err:
                sb.update(auto_resume=False)
            assert err.value.status_code == 400
        finally:
            assert sb.info().auto_resume is True


def test_a_refused_rename_leaves_the_network_policy_alone(tl_client):
    holder = tl_client.create(name="tl-sweep-holder")
    try:
        with tl_client.create_and_connect() as sb:
            resolver = resolver_ip(sb)
            with pytest.raises(tl.RemoteAPIError) as err:
                sb.update(name="tl-sweep-holder", network=tl.NetworkConfig(deny_out=[resolver]))
            assert err.value.status_code == 409
            assert sb.info().network_policy == tl.NetworkConfig()
            assert resolver_reachable(sb), "the refused update's policy is enforced"
    finally:
        tl_client.delete(holder.sandbox_id)


def test_the_artifact_storage_helpers_fail_clearly(server, monkeypatch):
    """The module-level file-system helpers call the hosted Artifact Storage service, which
    Alcove does not have: a 501 that says where volumes are made, not a bare 404."""
    monkeypatch.setenv("TENSORLAKE_API_URL", server.url)
    monkeypatch.setenv("TENSORLAKE_API_KEY", "unused")
    with pytest.raises(tl.SandboxError) as e:
        tl.list_file_systems()
    assert "501" in str(e.value) and "/file-systems" in str(e.value), str(e.value)


def test_the_create_answer_carries_the_ingress_endpoint(server):
    """`CreateSandboxResponse.ingress_endpoint` is the base of user-port URLs, as in the
    sandbox's info: the SDK's model reads it from the create answer."""
    body = server.api("POST", f"{B}/sandboxes", json={}).json()
    try:
        created = models.CreateSandboxResponse.model_validate(body)
        info = server.api("GET", f"{B}/sandboxes/{created.sandbox_id}").json()
        assert created.ingress_endpoint == info["ingress_endpoint"]
        assert created.ingress_endpoint.startswith("http://")
    finally:
        server.api("DELETE", f"{B}/sandboxes/{body['sandbox_id']}")
