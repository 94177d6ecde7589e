"""Suspend and resume keep memory, processes and files; names, renames, timeouts."""

from __future__ import annotations

import os
import time

import pytest

from alcove.sandbox import RemoteAPIError, SandboxError

COUNTER = (
    "import time, sys\n"
    "i = 0\n"
    "while True:\n"
    "    i += 1\n"
    "    print(i, flush=True)\n"
    "    time.sleep(0.05)\n"
)
HOLDER = (
    "import time\n"
    "b = bytearray(200 * 1024 * 1024)\n"
    "b[::4096] = b'x' * len(b[::4096])\n"
    "print('holding', flush=True)\n"
    "while True:\n"
    "    time.sleep(1)\n"
)


def last_count(sandbox, pid) -> int:
    lines = sandbox.get_output(pid).lines
    return int(lines[-1]) if lines else 0


def rss_mb(sandbox, pid) -> int:
    out = sandbox.run("sh", ["-c", f"grep VmRSS /proc/{pid}/status | awk '{{print $2}}'"]).stdout
    return int(out) // 1024


def test_suspend_resume_keeps_counter_memory_and_files(client):
    with client.create_and_connect(name="suspendable", memory_mb=1024) as sandbox:
        counter = sandbox.start_process("python", ["-c", COUNTER])
        holder = sandbox.start_process("python", ["-c", HOLDER])
        sandbox.write_file("/root/note.txt", b"kept across suspend")
        deadline = time.monotonic() + 30
        while "holding" not in sandbox.get_output(holder.pid).lines and time.monotonic() < deadline:
            time.sleep(0.1)
        assert rss_mb(sandbox, holder.pid) >= 200
        before = last_count(sandbox, counter.pid)
        assert before > 0

        info = client.suspend("suspendable")
        assert info.status == "suspended"
        assert client.get("suspendable").status == "suspended"

        info = client.resume("suspendable")
        assert info.status == "running"
        again = client.connect("suspendable")
        assert again.sandbox_id == sandbox.sandbox_id
        after_resume = last_count(again, counter.pid)
        # It continues from its count, not from zero.
        assert after_resume >= before
        deadline = time.monotonic() + 10
        while last_count(again, counter.pid) <= after_resume and time.monotonic() < deadline:
            time.sleep(0.1)
        assert last_count(again, counter.pid) > after_resume
        assert rss_mb(again, holder.pid) >= 200
        assert again.read_file("/root/note.txt") == b"kept across suspend"
        procs = {p.pid: p.status for p in again.list_processes()}
        assert procs[counter.pid] == "running" and procs[holder.pid] == "running"


def test_suspend_is_idempotent_and_wait_ms_answers_200_or_202(server, client):
    client.create(name="waiter")
    try:
        base = "/v1/namespaces/default/sandboxes/waiter"
        first = server.api("POST", f"{base}/suspend")  # no wait_ms: answers at once
        assert first.status_code in (200, 202)
        deadline = time.monotonic() + 30
        while client.get("waiter").status != "suspended" and time.monotonic() < deadline:
            time.sleep(0.1)
        assert server.api("POST", f"{base}/suspend?wait_ms=1000").status_code == 200
        assert server.api("POST", f"{base}/resume?wait_ms=30000").status_code == 200
        assert client.get("waiter").status == "running"
        assert server.api("POST", f"{base}/resume?wait_ms=1000").status_code == 200
    finally:
        client.delete("waiter")


def test_a_resume_asked_right_after_a_suspend_is_never_lost(server, client):
    """A suspend answers at once (202), maybe before it has begun: a resume asked right after
    it follows it. It found the sandbox still running, did nothing, and the suspend that came
    after it left the sandbox suspended."""
    client.create(name="bounce")
    try:
        base = "/v1/namespaces/default/sandboxes/bounce"
        for _ in range(3):
            assert server.api("POST", f"{base}/suspend").status_code in (200, 202)
            assert server.api("POST", f"{base}/resume").status_code in (200, 202)
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                status = client.get("bounce").status
                if status in ("running", "suspended"):
                    # Settled only once nothing is under way: look again a moment later.
                    time.sleep(1.0)
                    if client.get("bounce").status == status:
                        break
                time.sleep(0.1)
            assert client.get("bounce").status == "running"
        assert client.connect("bounce").run("echo", ["back"]).stdout.strip() == "back"
    finally:
        client.delete("bounce")


def test_a_sandbox_starting_commands_nonstop_suspends_and_snapshots_every_time(client):
    """A shell starts each command with vfork and sleeps until the child execs: a freeze in
    that window caught the shell where CRIU cannot stop it, and the dump failed after CRIU's
    10 s seize timeout (about one dump in six with this loop)."""
    loop = "i=0; while :; do /bin/true; i=$((i+1)); echo $i; done"
    with client.create_and_connect(name="forker") as sandbox:
        shell = sandbox.start_process("sh", ["-c", loop], stdin_mode="closed")
        runs = []
        for _ in range(12):
            assert client.suspend("forker").status == "suspended"
            assert client.resume("forker").status == "running"
            # The count it printed last (a line is whole; a file rewritten in place may read empty).
            runs.append(int(sandbox.get_output(shell.pid).lines[-1]))
        snapshots = [client.snapshot_and_wait(sandbox.sandbox_id) for _ in range(3)]
        try:
            assert all(snap.status == "completed" for snap in snapshots), snapshots
        finally:
            for snap in snapshots:
                client.delete_snapshot(snap.snapshot_id)
        assert sandbox.get_process(shell.pid).status == "running"
        assert runs == sorted(runs) and runs[-1] > runs[0], runs  # the loop went on throughout


# A vfork child that never calls exec (it sleeps): its parent waits in the kernel for good.
VFORK_HELD = (
    "import ctypes\n"
    "libc = ctypes.CDLL(None)\n"
    "if libc.vfork() == 0:\n"
    "    libc.pause()\n"
)


def test_a_parent_held_by_its_vfork_child_is_named_and_the_sandbox_runs_on(server, client):
    """CRIU cannot dump a process waiting for a vfork child. When the child never execs, every
    freeze catches the parent there: the suspend and the memory snapshot are refused with the
    parent's pid and name (not after CRIU's 10 s timeout, with a host-side error; a 409
    OPERATION_REFUSED, not a server failure), the sandbox runs on untouched, a disk-only snapshot
    still works, and once the parent is gone the suspend works again. The official SDK, which
    reads the sandbox again on a 409, raises the same reason."""
    with client.create_and_connect(name="vfork-held") as sandbox:
        sandbox.write_file("/root/kept", b"kept")
        held = sandbox.start_process("python3", ["-c", VFORK_HELD])

        def state() -> str:
            stat = sandbox.run("cat", [f"/proc/{held.pid}/stat"]).stdout
            return stat.rsplit(")", 1)[1].split()[0]

        deadline = time.monotonic() + 30
        while state() != "D" and time.monotonic() < deadline:
            time.sleep(0.05)
        assert state() == "D"  # waiting for its child (uninterruptible)

        with pytest.raises(RemoteAPIError) as info:
            client.suspend("vfork-held")
        assert f"process {held.pid} (python3)" in info.value.message, info.value.message
        assert "vfork" in info.value.message
        assert (info.value.status_code, info.value.code) == (409, "OPERATION_REFUSED"), info.value
        assert client.get("vfork-held").status == "running"
        tensorlake_sandbox = pytest.importorskip("tensorlake.sandbox", reason="tensorlake SDK missing")
        official = tensorlake_sandbox.Sandbox.connect("vfork-held", api_url=server.url, api_key=None)
        with pytest.raises(tensorlake_sandbox.SandboxError) as official_info:
            official.suspend()
        assert f"process {held.pid} (python3)" in str(official_info.value), official_info.value
        assert client.get("vfork-held").status == "running"
        with pytest.raises(SandboxError) as info:
            client.snapshot_and_wait(sandbox.sandbox_id)
        assert f"process {held.pid} (python3)" in str(info.value), info.value
        for failed in client.list_snapshots():
            if failed.sandbox_id == sandbox.sandbox_id:
                assert failed.status == "failed", failed
                client.delete_snapshot(failed.snapshot_id)
        disk_only = client.snapshot_and_wait(sandbox.sandbox_id, snapshot_type="filesystem")
        try:
            assert disk_only.status == "completed"
        finally:
            client.delete_snapshot(disk_only.snapshot_id)
        assert sandbox.read_file("/root/kept") == b"kept"
        assert sandbox.get_process(held.pid).status == "running"
        # The sandbox's own log says what failed, at warn level; the disk-only snapshot, that it was taken.
        bodies = {record.body: str(record.level_name) for record in sandbox.iter_logs(levels=["warn", "info"])}
        named = f"process {held.pid} (python3) waits for a vfork child"
        assert any(b.startswith("suspend failed") and named in b for b in bodies), bodies
        assert any(b.startswith("snapshot ") and named in b for b in bodies), bodies
        assert {bodies[b] for b in bodies if named in b} == {"warn"}, bodies
        assert f"filesystem snapshot {disk_only.snapshot_id} taken" in bodies, bodies

        sandbox.kill_process(held.pid)
        assert client.suspend("vfork-held").status == "suspended"
        assert client.resume("vfork-held").status == "running"
        assert sandbox.read_file("/root/kept") == b"kept"


def test_a_nested_interactive_shell_on_a_terminal_is_refused_with_what_to_do(client):
    """CRIU cannot dump a terminal whose foreground job is not its session's leader (here `sh -i`
    typed into the PTY's bash). The suspend says so in words the user can act on, instead of a
    bare "could not be dumped"; once the inner shell is left, the suspend works."""
    with client.create_and_connect(name="nested-shell") as sandbox:
        with sandbox.create_pty("bash") as pty:
            pty.send("export PS1='P> '\n")
            pty.read_until("P> ", timeout=10)
            pty.send("sh -i\n")
            pty.send("echo in''ner\n")  # the quotes keep the echo of the command from matching
            pty.read_until("inner", timeout=10)
            with pytest.raises(RemoteAPIError) as info:
                client.suspend("nested-shell")
            assert "terminal" in info.value.message and "inner shell" in info.value.message, info.value
            assert (info.value.status_code, info.value.code) == (409, "OPERATION_REFUSED"), info.value
            assert client.get("nested-shell").status == "running"
            pty.send("exit\n")
            pty.send("echo ba''ck\n")
            pty.read_until("back", timeout=10)
            assert client.suspend("nested-shell").status == "suspended"
            assert client.resume("nested-shell").status == "running"
        assert sandbox.run("echo", ["alive"]).stdout.strip() == "alive"


def test_ephemeral_sandboxes_cannot_be_suspended(server, client):
    info = client.create()
    try:
        resp = server.api("POST", f"/sandboxes/{info.sandbox_id}/suspend?wait_ms=1000")
        assert resp.status_code == 400
        assert "ephemeral" in resp.json()["message"]
        with pytest.raises((RemoteAPIError, SandboxError)):
            client.suspend(info.sandbox_id)
    finally:
        client.delete(info.sandbox_id)


def test_rename_makes_an_ephemeral_sandbox_suspendable(client):
    info = client.create()
    try:
        renamed = client.update_sandbox(info.sandbox_id, "renamed-env")
        assert renamed.name == "renamed-env"
        assert client.get("renamed-env").sandbox_id == info.sandbox_id
        assert client.suspend("renamed-env").status == "suspended"
        assert client.resume("renamed-env").status == "running"
    finally:
        client.delete(info.sandbox_id)


def test_rename_to_a_taken_name_is_409(server, client):
    a = client.create(name="taken-name")
    b = client.create()
    try:
        resp = server.api("PATCH", f"/sandboxes/{b.sandbox_id}", json={"name": "taken-name"})
        assert resp.status_code == 409
        resp = server.api("PATCH", f"/sandboxes/{b.sandbox_id}", json={"name": "Not A Label"})
        assert resp.status_code == 400
    finally:
        client.delete(a.sandbox_id)
        client.delete(b.sandbox_id)


def test_traffic_to_a_suspended_sandbox_resumes_it(server, client):
    with client.create_and_connect(name="sleepy") as sandbox:
        sandbox.write_file("/root/x", b"1")
        client.suspend("sleepy")
        # A proxied call wakes it (auto_resume defaults to true).
        assert sandbox.read_file("/root/x") == b"1"
        assert client.get("sleepy").status == "running"


def test_named_timeout_suspends_and_suspended_time_does_not_count(client):
    info = client.create(name="timed", timeout_secs=3)
    try:
        deadline = time.monotonic() + 30
        while client.get("timed").status != "suspended" and time.monotonic() < deadline:
            time.sleep(0.2)
        assert client.get("timed").status == "suspended"
        time.sleep(3.5)  # longer than the timeout: suspended time must not count
        client.resume("timed")
        # Its timeout had run out: the resume gives it a whole one again (it was suspended
        # again within a second, under a call like this one).
        assert client.connect("timed").run("sleep", ["1"]).exit_code == 0
        assert client.get("timed").status == "running"
        deadline = time.monotonic() + 30
        while client.get("timed").status != "suspended" and time.monotonic() < deadline:
            time.sleep(0.2)
        assert client.get("timed").status == "suspended"
    finally:
        client.delete(info.sandbox_id)


def test_deleting_a_suspended_sandbox_frees_its_name_and_its_files(server, client):
    from framework.host import wait_for

    made = client.create(name="gone-soon")
    client.suspend("gone-soon")
    files = server.data_dir / "sandboxes" / made.sandbox_id
    # Its dump and layer, kept on disk while suspended ...
    assert files.is_dir() and any(files.iterdir())
    client.delete("gone-soon")
    # ... leave their place with the delete, and the trash soon after.
    assert not files.exists()
    trash = server.data_dir / "trash"
    assert wait_for(lambda: not [n for n in os.listdir(trash) if n.startswith(made.sandbox_id)], 30)
    again = client.create(name="gone-soon")
    client.delete(again.sandbox_id)


def test_a_resumed_sandbox_keeps_no_used_dump(server, client):
    from framework.host import wait_for

    with client.create_and_connect(name="dumped-once") as sandbox:
        sandbox.write_file("/root/x", b"1")
        client.suspend("dumped-once")
        files = server.data_dir / "sandboxes" / sandbox.sandbox_id
        assert (files / "checkpoint").is_dir()
        client.resume("dumped-once")
        # The used dump leaves the sandbox's directory with the resume ...
        left = sorted(n for n in os.listdir(files) if n.startswith(("checkpoint", ".used")))
        assert left == [], left
        # ... and the trash soon after.
        trash = server.data_dir / "trash"
        assert wait_for(lambda: not [n for n in os.listdir(trash) if n.startswith(sandbox.sandbox_id)], 30)
        assert sandbox.read_file("/root/x") == b"1"
        # A second suspend and resume start clean.
        client.suspend("dumped-once")
        client.resume("dumped-once")
        assert sandbox.run("cat", ["/root/x"]).stdout == "1"


def test_requests_under_way_finish_before_the_dump(server, client):
    import threading

    with client.create_and_connect(name="draining") as sandbox:
        result = {}

        def long_run():
            result["r"] = sandbox.run("sh", ["-c", "touch /tmp/started; sleep 1; echo finished"])

        t = threading.Thread(target=long_run)
        t.start()
        deadline = time.monotonic() + 10
        while sandbox_file_missing(server, sandbox.sandbox_id, "/tmp/started") and time.monotonic() < deadline:
            time.sleep(0.02)
        client.suspend("draining")
        t.join(30)
        assert result["r"].stdout == "finished"
        assert result["r"].exit_code == 0
        assert client.get("draining").status == "suspended"


def sandbox_file_missing(server, sandbox_id: str, path: str) -> bool:
    resp = server.api(
        "GET", "/api/v1/files", params={"path": path}, headers={"X-Tensorlake-Sandbox-Id": sandbox_id}
    )
    return resp.status_code != 200


def test_get_or_create_converges_racing_callers_and_resumes_the_named_sandbox(client):
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(6) as pool:
        handles = list(pool.map(lambda _: client.get_or_create("session-42", memory_mb=1024), range(6)))
    try:
        assert len({h.sandbox_id for h in handles}) == 1
        assert sorted(h.bind_outcome for h in handles) == ["attached"] * 5 + ["created"]
        sandbox = handles[0]
        sandbox.write_file("/root/state.txt", b"session state")
        holder = sandbox.start_process("sleep", ["600"])

        assert client.get_or_create("session-42").bind_outcome == "attached"
        client.suspend("session-42")
        kept = client.get_or_create("session-42", resume=False)
        assert kept.bind_outcome == "attached" and client.get("session-42").status == "suspended"
        resumed = client.get_or_create("session-42", cpus=4.0)
        assert resumed.bind_outcome == "resumed" and resumed.sandbox_id == sandbox.sandbox_id
        # The same sandbox, memory and all, not a new one with the arguments given.
        assert resumed.read_file("/root/state.txt") == b"session state"
        assert resumed.get_process(holder.pid).status == "running"
        assert client.get("session-42").resources.cpus == 1.0
    finally:
        client.delete(handles[0].sandbox_id)
    fresh = client.get_or_create("session-42")
    try:
        assert fresh.bind_outcome == "created" and fresh.sandbox_id != handles[0].sandbox_id
    finally:
        client.delete(fresh.sandbox_id)

