"""The official `tensorlake==0.5.161` SDK's sandbox handle against a real Alcove server:
processes, files, PTY, tunnels and the agent's errors (docs/protocol/sandbox-api.md)."""

from __future__ import annotations

import hashlib
import signal
import socket
import threading

import httpx
import pytest

tl = pytest.importorskip("tensorlake.sandbox", reason="tensorlake SDK missing")

ODD_DIR = "/tmp/dir with space"
ODD_PATH = f"{ODD_DIR}/ünïcødé ✓.txt"
PROMPT = "sandbox$ "


@pytest.fixture
def tl_client(server):
    return tl.SandboxClient.for_localhost(api_url=server.url)


@pytest.fixture
def sandbox(tl_client):
    with tl_client.create_and_connect() as sb:
        yield sb


class Received:
    """Collects a PTY's output (the official SDK hands it to `on_data` from a reader thread)."""

    def __init__(self) -> None:
        self.data = bytearray()
        self._cond = threading.Condition()

    def __call__(self, chunk: bytes) -> None:
        with self._cond:
            self.data += chunk
            self._cond.notify_all()

    def wait_for(self, needle: bytes, timeout: float = 10) -> None:
        with self._cond:
            found = self._cond.wait_for(lambda: needle in self.data, timeout)
        assert found, f"{needle!r} never arrived; got {bytes(self.data)!r}"


def wait_listening(sandbox, port: int) -> None:
    probe = (
        f"for i in $(seq 400); do (exec 3<>/dev/tcp/127.0.0.1/{port}) 2>/dev/null && exit 0; sleep 0.05; done; exit 1"
    )
    assert sandbox.run("bash", ["-c", probe]).exit_code == 0


def test_processes(sandbox):
    proc = sandbox.start_process(
        "sh", ["-c", 'echo "$A" "$(pwd)"; echo oops >&2; exit 2'], env={"A": "from-env"}, working_dir="/tmp"
    )
    assert proc.pid > 0 and proc.command == "sh"
    events = list(sandbox.follow_output(proc.pid))  # collected until the process exits
    assert sorted((e.stream, e.line) for e in events) == [("stderr", "oops"), ("stdout", "from-env /tmp")]
    info = sandbox.get_process(proc.pid)
    assert (info.status, info.exit_code) == (tl.ProcessStatus.EXITED, 2)
    assert sandbox.get_stdout(proc.pid).lines == ["from-env /tmp"]
    assert sandbox.get_stderr(proc.pid).lines == ["oops"]
    assert sandbox.get_output(proc.pid).line_count == 2
    assert [e.line for e in sandbox.follow_stderr(proc.pid)] == ["oops"]

    cat = sandbox.start_process("cat", stdin_mode=tl.StdinMode.PIPE)
    assert cat.stdin_writable is True
    sandbox.write_stdin(cat.pid, b"hello from stdin\n")
    sandbox.close_stdin(cat.pid)
    assert [e.line for e in sandbox.follow_stdout(cat.pid)] == ["hello from stdin"]
    assert sandbox.get_process(cat.pid).exit_code == 0

    sleeper = sandbox.start_process("sleep", ["1000"])
    listed = {p.pid: p for p in sandbox.list_processes()}
    assert listed[sleeper.pid].status == tl.ProcessStatus.RUNNING
    assert listed[sleeper.pid].args == ["1000"]
    assert listed[proc.pid].exit_code == 2
    assert sandbox.send_signal(sleeper.pid, signal.SIGTERM).success is True
    assert list(sandbox.follow_output(sleeper.pid)) == []
    info = sandbox.get_process(sleeper.pid)
    assert (info.status, info.signal) == (tl.ProcessStatus.SIGNALED, 15)
    sandbox.kill_process(sleeper.pid)
    assert sleeper.pid not in [p.pid for p in sandbox.list_processes()]


def test_many_lines(sandbox):
    proc = sandbox.start_process("python3", ["-c", "for i in range(100000): print(i)"])
    lines = [e.line for e in sandbox.follow_output(proc.pid)]
    assert lines == [str(i) for i in range(100000)]
    assert sandbox.get_output(proc.pid).line_count == 100000


def test_files(sandbox, tmp_path):
    data = bytes(range(256)) * 8
    sandbox.write_file(ODD_PATH, data)
    assert sandbox.read_file(ODD_PATH).value == data
    assert sandbox.run("sha256sum", [ODD_PATH]).stdout.split()[0] == hashlib.sha256(data).hexdigest()
    listing = sandbox.list_directory(ODD_DIR)
    assert listing.path == ODD_DIR
    assert [(e.name, e.is_dir, e.size) for e in listing.entries] == [("ünïcødé ✓.txt", False, len(data))]

    sandbox.write_file("/tmp/a+b c.txt", b"plus")
    assert sandbox.run("cat", ["/tmp/a+b c.txt"]).stdout == "plus"
    sandbox.run("mkdir", ["/tmp/dir with space/sub"])
    assert [e.name for e in sandbox.list_directory(ODD_DIR).entries] == ["sub", "ünïcødé ✓.txt"]

    local = tmp_path / "upload.bin"
    local.write_bytes(b"u" * 3_000_000)
    sandbox.upload_file(local, "/tmp/up/loaded.bin")
    assert sandbox.run("stat", ["-c", "%s", "/tmp/up/loaded.bin"]).stdout.strip() == "3000000"

    sandbox.delete_file(ODD_PATH)
    with pytest.raises(tl.RemoteAPIError) as err:
        sandbox.read_file(ODD_PATH)
    assert (err.value.status_code, err.value.code) == (404, "NOT_FOUND")
    # Kernel files come whole (their sizes say 0 or 4096, not their lengths).
    assert sandbox.read_file("/proc/sys/kernel/ostype").value == b"Linux\n"
    assert sandbox.read_file("/sys/class/net/lo/address").value == b"00:00:00:00:00:00\n"


def test_errors(sandbox):
    sandbox.write_file("/tmp/errs/file.txt", b"x")
    cases = [
        (lambda: sandbox.get_process(999999), 404, "NOT_FOUND"),
        (lambda: sandbox.send_signal(sandbox.start_process("sleep", ["100"]).pid, 999), 400, "INVALID_ARGUMENT"),
        (lambda: sandbox.run("no-such-command"), 400, "COMMAND_NOT_FOUND"),
        (lambda: sandbox.read_file("/tmp/errs/missing"), 404, "NOT_FOUND"),
        (lambda: sandbox.delete_file("/tmp/errs/missing"), 404, "NOT_FOUND"),
        (lambda: sandbox.read_file("/tmp/errs"), 400, "IS_DIRECTORY"),
        (lambda: sandbox.list_directory("/tmp/errs/file.txt"), 400, "NOT_A_DIRECTORY"),
        (lambda: sandbox.read_file("tmp/errs/file.txt"), 400, "INVALID_ARGUMENT"),
        (lambda: sandbox.read_file("/tmp/../etc/passwd"), 403, "PATH_TRAVERSAL"),
        (lambda: sandbox.write_file("/tmp/../etc/evil", b"y"), 403, "PATH_TRAVERSAL"),
    ]
    for call, status, code in cases:
        with pytest.raises(tl.RemoteAPIError) as err:
            call()
        assert (err.value.status_code, err.value.code) == (status, code), err.value
        assert isinstance(err.value, tl.SandboxError)


def test_pty(sandbox):
    received = Received()
    exits: list[int] = []
    pty = sandbox.create_pty(
        "bash",
        ["--norc", "--noprofile"],
        env={"PS1": PROMPT},
        rows=40,
        cols=120,
        on_data=received,
        on_exit=exits.append,
    )
    assert pty.connected
    received.wait_for(PROMPT.encode())
    pty.send_input("echo h''i; stty size\n")
    received.wait_for(b"hi\r\n")
    received.wait_for(b"40 120\r\n")
    pty.resize(100, 30)
    pty.send_input("stty size\n")
    received.wait_for(b"30 100\r\n")

    # Detach, let output appear while nobody is attached, reattach: it is delivered.
    pty.send_input("while [ ! -f /tmp/go ]; do sleep 0.05; done; echo $((1000+337)); touch /tmp/printed\n")
    received.wait_for(b"touch /tmp/printed\r\n")
    pty.disconnect()
    assert not pty.connected
    sandbox.write_file("/tmp/go", b"")
    probe = "i=0; while [ ! -f /tmp/printed ]; do i=$((i+1)); [ $i -gt 600 ] && exit 1; sleep 0.05; done"
    assert sandbox.run("sh", ["-c", probe]).exit_code == 0
    later = Received()
    again = sandbox.connect_pty(pty.session_id, pty.token, on_data=later)
    later.wait_for(b"1337\r\n")
    again.send_input("exit 3\n")
    assert again.wait(timeout=10) == 3


def test_pty_wait_kill_and_bad_token(server, sandbox):
    with_exit = sandbox.create_pty("sh", ["-c", "exit 4"])
    assert with_exit.wait(timeout=10) == 4

    pty = sandbox.create_pty("sleep", ["1000"])
    pty.kill()
    # The sync official client cannot read close reasons (websocket-client keeps none), so it
    # reports the server's `1000 session terminated` close as "closed unexpectedly".
    with pytest.raises(tl.SandboxError):
        pty.wait(timeout=10)
    resp = server.api("GET", f"/api/v1/pty/{pty.session_id}", headers={"X-Tensorlake-Sandbox-Id": sandbox.sandbox_id})
    assert resp.status_code == 404

    session = sandbox.create_pty_session("bash").value
    with pytest.raises(tl.SandboxConnectionError, match="403"):
        sandbox.connect_pty(session["session_id"], "wrong-token")
    ok = sandbox.connect_pty(session["session_id"], session["token"])
    ok.send_input("exit 9\n")
    assert ok.wait(timeout=10) == 9


def test_tunnel(sandbox):
    sandbox.write_file("/tmp/www/hello.txt", b"hello via the official tunnel\n")
    sandbox.start_process("python3", ["-m", "http.server", "8000", "--bind", "0.0.0.0"], working_dir="/tmp/www")
    wait_listening(sandbox, 8000)
    with sandbox.create_tunnel(8000, local_port=0) as tunnel, sandbox.create_tunnel(8001, local_port=0) as closed:
        assert tunnel.local_port > 0
        listing = httpx.get(f"http://127.0.0.1:{tunnel.local_port}/", timeout=10)
        assert listing.status_code == 200
        assert "Directory listing" in listing.text and "hello.txt" in listing.text
        got = httpx.get(f"http://127.0.0.1:{tunnel.local_port}/hello.txt", timeout=10)
        assert got.content == b"hello via the official tunnel\n"

        # Nothing listens on 8001: the local connection is closed rather than left hanging.
        conn = socket.create_connection(("127.0.0.1", closed.local_port), timeout=10)
        with conn:
            conn.sendall(b"GET / HTTP/1.0\r\n\r\n")
            try:
                assert conn.recv(1) == b""
            except ConnectionResetError:
                pass
        assert httpx.get(f"http://127.0.0.1:{tunnel.local_port}/hello.txt", timeout=10).status_code == 200
