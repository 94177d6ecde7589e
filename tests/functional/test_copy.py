"""Copy of a running sandbox (`POST /sandboxes/{id}/copy?times=N`): one dump of the source,
restored into new sandboxes that carry its processes, memory and files, share nothing
writable with it or with each other, and outlive it. Refusals make nothing."""

from __future__ import annotations

import time

import pytest

from alcove.sandbox import RemoteAPIError

# Holds a token only in memory and counts; writes both to a file on every tick, so a copy
# whose file is removed shows that the *process* carried the token over.
HOLDER = (
    "import os, time\n"
    "token = os.urandom(8).hex()\n"
    "i = 0\n"
    "while True:\n"
    "    i += 1\n"
    "    with open('/root/state.tmp', 'w') as f:\n"
    "        f.write(f'{token} {i}')\n"
    "    os.replace('/root/state.tmp', '/root/state')\n"
    "    time.sleep(0.05)\n"
)

# The sandbox's own address: a UDP connect sends nothing but picks the source address.
MY_ADDRESS = (
    "import socket\n"
    "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
    "s.connect(('10.255.255.1', 9))\n"
    "print(s.getsockname()[0])\n"
)


def state_of(sandbox) -> tuple[str, int]:
    token, count = sandbox.read_file("/root/state").decode().split()
    return token, int(count)


def wait_state(sandbox, timeout: float = 10.0) -> tuple[str, int]:
    deadline = time.monotonic() + timeout
    while True:
        try:
            return state_of(sandbox)
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def address_of(sandbox) -> str:
    return sandbox.run("python3", ["-c", MY_ADDRESS]).stdout.strip()


def sleeping(sandbox) -> int:
    """How many `sleep` processes run in the sandbox."""
    return int(sandbox.run("sh", ["-c", "pgrep -c -x sleep || true"]).stdout.strip() or 0)


def copy_dumps(server) -> list[str]:
    snapshots = server.data_dir / "snapshots"
    return sorted(p.name for p in snapshots.iterdir()) if snapshots.exists() else []


def all_ids(server) -> set[str]:
    live = server.api("GET", "/sandboxes").json()["sandboxes"]
    archived = server.api("GET", "/archived-sandboxes?limit=1000").json()["sandboxes"]
    return {s["id"] for s in live} | {s["id"] for s in archived}


def test_copies_carry_memory_processes_and_files_and_share_nothing(server, client):
    source = client.create_and_connect(name="copy-src", cpus=1.0, memory_mb=1024)
    try:
        holder = source.start_process("python3", ["-c", HOLDER])
        source.write_file("/root/data.txt", b"before the copy")
        source.run("sh", ["-c", "echo src-tmp > /tmp/mark"])
        token, count_before = wait_state(source)

        started = time.monotonic()
        copies = source.copy(times=3)
        took = time.monotonic() - started
        assert len(copies) == 3
        ids = {c.sandbox_id for c in copies}
        assert len(ids | {source.sandbox_id}) == 4, "every copy has its own id"
        # The source kept running through the dump, its counter still moving.
        assert source.run("echo", ["alive"]).stdout.strip() == "alive"
        assert state_of(source)[0] == token
        assert copy_dumps(server) == [], "the dump is removed once the copies run"

        addresses = {address_of(s) for s in [source, *copies]}
        assert len(addresses) == 4, f"every copy has its own address: {addresses}"

        for c in copies:
            info = client.get(c.sandbox_id)
            assert info.status == "running"
            assert info.name is None, "names are unique: copies get none"
            assert info.resources.cpus == 1.0 and info.resources.memory_mb == 1024
            assert c.read_file("/root/data.txt") == b"before the copy"
            assert c.run("cat", ["/tmp/mark"]).stdout.strip() == "src-tmp"
            procs = {p.pid: p.status for p in c.list_processes()}
            assert procs.get(holder.pid) == "running", procs
            # The process, not just the file, has the token: remove the file, it comes back.
            c.delete_file("/root/state")
            c_token, c_count = wait_state(c)
            assert c_token == token
            assert c_count >= count_before

        a, b, c3 = copies
        # Writes in one copy are seen by no other sandbox, in either direction.
        a.write_file("/root/data.txt", b"written in a")
        a.run("sh", ["-c", "echo a-tmp > /tmp/mark"])
        source.write_file("/root/only-source.txt", b"source")
        for other in (source, b, c3):
            assert other.read_file("/root/data.txt") == b"before the copy"
        for other in (b, c3, source):
            assert other.run("cat", ["/tmp/mark"]).stdout.strip() != "a-tmp"
        for copy in copies:
            assert copy.run("test", ["-e", "/root/only-source.txt"]).exit_code != 0

        # A copy cannot reach the source's processes: killing its holder leaves the source's.
        a.kill_process(holder.pid)
        time.sleep(0.3)
        _, n1 = state_of(source)
        time.sleep(0.3)
        assert state_of(source)[1] > n1

        # Deleting the source leaves the copies running.
        client.delete(source.sandbox_id)
        for copy in (b, c3):
            assert client.get(copy.sandbox_id).status == "running"
            _, m1 = state_of(copy)
            time.sleep(0.3)
            assert state_of(copy)[1] > m1
        print(f"copy(times=3) took {took:.2f}s")
    finally:
        for sb in server.live_sandboxes():
            client.delete(sb["id"])


def test_copies_have_their_own_layer_on_the_host(server, client):
    with client.create_and_connect() as source:
        source.write_file("/root/f", b"x")
        result = client.copy(source.sandbox_id, times=2)
        try:
            assert result.source_sandbox_id == source.sandbox_id
            assert [c.status for c in result.sandboxes] == ["running", "running"]
            assert all(c.sandbox_url and c.name is None and c.reason is None for c in result.sandboxes)
            dirs = [server.data_dir / "sandboxes" / i for i in [source.sandbox_id, *(c.sandbox_id for c in result.sandboxes)]]
            images = [d / "disk.img" for d in dirs]
            inodes = {p.stat().st_ino for p in images if p.exists()}
            assert len(inodes) == len(dirs), f"each sandbox has its own layer file: {images}"
        finally:
            for c in result.sandboxes:
                client.delete(c.sandbox_id)


def test_refusals_make_nothing(server, client):
    source = client.create_and_connect(name="copy-refused")
    try:
        before = all_ids(server)
        for times, why in [("0", "times"), ("17", "times"), ("abc", "times"), ("-1", "times")]:
            resp = server.api("POST", f"/sandboxes/{source.sandbox_id}/copy?times={times}")
            assert resp.status_code == 400, (times, resp.text)
            body = resp.json()
            assert body["code"] == "INVALID_ARGUMENT" and why in body["message"], body
        resp = server.api("POST", "/sandboxes/00000000-0000-4000-8000-000000000000/copy?times=1")
        assert resp.status_code == 404 and resp.json()["code"] == "NOT_FOUND"
        resp = server.api("POST", "/sandboxes/no-such-name/copy?times=1")
        assert resp.status_code == 404
        client.suspend("copy-refused")
        resp = server.api("POST", "/sandboxes/copy-refused/copy?times=2")
        assert resp.status_code == 409, resp.text
        assert resp.json()["code"] == "INVALID_STATE" and "suspended" in resp.json()["message"]
        with pytest.raises(RemoteAPIError) as refused:
            client.copy("copy-refused", times=1)
        assert refused.value.status_code == 409
        assert all_ids(server) == before, "a refused copy stores no sandbox"
        assert copy_dumps(server) == []
        # Resumed, it copies (by name too), and the namespaced route is the same one.
        client.resume("copy-refused")
        resp = server.api("POST", "/v1/namespaces/default/sandboxes/copy-refused/copy?times=1")
        assert resp.status_code == 200, resp.text
        made = resp.json()["sandboxes"]
        assert len(made) == 1 and made[0]["status"] == "running"
        client.delete(made[0]["sandbox_id"])
    finally:
        client.delete("copy-refused")


def test_copy_through_the_official_sdk(server):
    tensorlake_sandbox = pytest.importorskip("tensorlake.sandbox", reason="tensorlake SDK missing")
    tl = tensorlake_sandbox.SandboxClient.for_localhost(api_url=server.url)
    with tl.create_and_connect() as source:
        source.run("sh", ["-c", "echo official > /root/o.txt"])
        proc = source.start_process("sleep", ["600"])
        answer = source.copy(times=2)
        result = getattr(answer, "value", answer)
        try:
            assert result.source_sandbox_id == source.sandbox_id
            assert len(result.sandboxes) == 2
            assert {c.status for c in result.sandboxes} == {"running"}
            for made in result.sandboxes:
                copy = tl.connect(made.sandbox_id)
                assert copy.run("cat", ["/root/o.txt"]).stdout.strip() == "official"
                assert any(p.pid == proc.pid for p in copy.list_processes())
        finally:
            for made in result.sandboxes:
                tl.delete(made.sandbox_id)


def test_a_copy_taken_while_a_run_streams_comes_up_and_lets_that_run_go(server, client):
    """A copy (like a memory snapshot's restore) gets every connection of the source back
    closed, the stream of a `run` under way included, and the copy's agent ends a run nobody
    reads. Right after the restore CRIU still releases the copy's processes one by one: when
    the agent killed the run's processes at once, one could be gone before its turn and CRIU
    failed the whole restore ("Unable to detach N: No such process"; about one copy in fifty
    beside a busy source, none in 1,500 since the agent waits a second). The race is too
    narrow to hit on demand here; what is checked is the behaviour around it: the copy comes
    up, its unread run is ended, and the source's run goes on untouched."""
    import threading

    # Its shell writes on and on, so that the copy's agent finds the run's stream closed as
    # soon as the shell runs again.
    script = "for i in $(seq 300); do sleep 30 & done; echo spawned; while :; do echo tick; done"
    with client.create_and_connect(name="copy-mid-run") as source:
        outcome = {}

        def stream() -> None:
            outcome["result"] = source.run("sh", ["-c", script])

        runner = threading.Thread(target=stream)
        runner.start()
        deadline = time.monotonic() + 20
        while sleeping(source) < 300:
            assert time.monotonic() < deadline, "the run's processes did not all start"
            time.sleep(0.1)
        out = client.copy("copy-mid-run", times=1)
        try:
            assert [c.status for c in out.sandboxes] == ["running"], out
            for made in out.sandboxes:
                copy = client.connect(made.sandbox_id)
                assert copy.run("echo", ["up"]).stdout.strip() == "up"
                # Nobody reads the copy's run: its processes are ended (after a second's grace).
                deadline = time.monotonic() + 15
                while sleeping(copy) != 0:
                    assert time.monotonic() < deadline, "the copy's unread run outlived its grace"
                    time.sleep(0.2)
        finally:
            for made in out.sandboxes:
                client.delete(made.sandbox_id)
        # The source's run was not disturbed: its processes still sleep, its shell still writes.
        assert sleeping(source) == 300
        source.run("pkill", ["-f", "echo spawned"])
        runner.join(timeout=60)
        lines = outcome["result"].stdout.split()
        assert lines[0] == "spawned" and lines[-1] == "tick" and len(lines) > 100, lines[:3]


def host_memory_limit_mb(sandbox_id: str, group: str = "") -> int:
    """The memory limit of a sandbox's cgroup (or of its `user` child), read on the host."""
    import glob

    paths = glob.glob(f"/sys/fs/cgroup/memory/alcove-*/{sandbox_id}/{group}memory.limit_in_bytes")
    assert len(paths) == 1, paths
    with open(paths[0]) as f:
        return int(f.read()) >> 20


# Allocates (and touches) the given MiB.
ALLOCATE = "import sys\nb = bytearray(int(sys.argv[1]) << 20)\nprint('allocated', flush=True)\n"


def test_a_copy_runs_under_its_own_memory_limit_not_the_restores(server, client):
    # CRIU restores a sandbox under more memory than its limit (every restored task holds
    # its own share of CRIU for a moment, 2 MiB a task allowed): 400 processes make that
    # allowance 864 MiB. Once restored, the copy must be back under its own limit.
    with client.create_and_connect(cpus=1.0, memory_mb=1024) as source:
        source.run("sh", ["-c", "for i in $(seq 400); do sleep 100000 & done"])
        assert sleeping(source) == 400
        (made,) = client.copy(source.sandbox_id, times=1).sandboxes
        assert made.status == "running", made
        copy = client.connect(made.sandbox_id)
        try:
            assert host_memory_limit_mb(made.sandbox_id) == 1024
            assert host_memory_limit_mb(made.sandbox_id, "user/") == 960
            assert sleeping(copy) == 400
            fits = copy.run("python3", ["-c", ALLOCATE, "600"], timeout_secs=60)
            assert fits.exit_code == 0 and fits.stdout.strip() == "allocated", fits
            # Beyond the limit (within the restore's): the kernel refuses it.
            more = copy.run("python3", ["-c", ALLOCATE, "1000"], timeout_secs=60)
            assert more.exit_code != 0 and "allocated" not in more.stdout, more
            assert sleeping(copy) == 400
        finally:
            client.delete(made.sandbox_id)
