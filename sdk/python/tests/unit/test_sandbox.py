"""Sandbox handle: proxy addressing, commands, processes and files against a fake agent."""

from __future__ import annotations

import inspect
import io
import json
import signal
import sys

import httpx
import pytest

from alcove.sandbox import (
    AsyncSandbox,
    OutputBatch,
    OutputEvent,
    ProcessStatus,
    RemoteAPIError,
    Sandbox,
    SandboxClient,
    SandboxConnectionError,
    SandboxError,
    SandboxNotFoundError,
    StdinMode,
)
from alcove.sandbox._protocol import proxy_target
from fakes import FakeServer, info_json, jsonr, sse

SBX = "/v1/namespaces/default/sandboxes/sbx-1"
PROC = {
    "pid": 1002,
    "status": "running",
    "exit_code": None,
    "signal": None,
    "stdin_writable": True,
    "command": "cat",
    "args": [],
    "started_at": 1795711005468,
    "ended_at": None,
}


def connect(server: FakeServer, client: SandboxClient, sandbox_url: str = "http://localhost:8900", **extra) -> Sandbox:
    server.on("GET", SBX, jsonr(200, info_json(sandbox_url=sandbox_url, **extra)))
    sandbox = client.connect("sbx-1")
    server.requests.clear()
    return sandbox


# -- addressing ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sandbox_url", "base", "headers"),
    [
        ("http://localhost:8900", "http://localhost:8900", {"Host": "sbx-1.local"}),
        ("http://127.0.0.1:9443/prefix/", "http://127.0.0.1:9443/prefix", {"Host": "sbx-1.local"}),
        (
            "https://proxy.example.com:8443/ignored",
            "https://proxy.example.com:8443",
            {"X-Tensorlake-Sandbox-Id": "sbx-1"},
        ),
        ("http://[::1]:8900", "http://[::1]:8900", {"X-Tensorlake-Sandbox-Id": "sbx-1"}),
    ],
)
def test_proxy_target(sandbox_url: str, base: str, headers: dict) -> None:
    target = proxy_target(sandbox_url, "sbx-1")
    assert target.base_url == base
    assert dict(target.headers) == headers


def test_localhost_proxy_uses_host_header(server: FakeServer, sleeps: list[float]) -> None:
    client = SandboxClient(api_key="secret", transport=httpx.MockTransport(server))
    sandbox = connect(server, client, "http://localhost:8900")
    server.on("GET", "/api/v1/processes", jsonr(200, {"processes": []}))
    sandbox.list_processes()
    request = server.requests[0]
    assert str(request.url) == "http://localhost:8900/api/v1/processes"
    assert request.headers["host"] == "sbx-1.local"
    assert "x-tensorlake-sandbox-id" not in request.headers
    assert request.headers["authorization"] == "Bearer secret"


def test_remote_proxy_uses_sandbox_id_header(server: FakeServer, client: SandboxClient) -> None:
    sandbox = connect(server, client, "http://proxy.internal:9443/some/path", routing_hint="node-2")
    server.on("GET", "/api/v1/processes", jsonr(200, {"processes": []}))
    sandbox.list_processes()
    request = server.requests[0]
    assert str(request.url) == "http://proxy.internal:9443/api/v1/processes"
    assert request.headers["host"] == "proxy.internal:9443"
    assert request.headers["x-tensorlake-sandbox-id"] == "sbx-1"
    assert request.headers["x-tensorlake-route-hint"] == "node-2"


def test_proxy_not_ready_is_replayed(server: FakeServer, client: SandboxClient, sleeps: list[float]) -> None:
    sandbox = connect(server, client)
    server.on(
        "POST", "/api/v1/processes", [jsonr(503, {"error": "booting", "code": "SANDBOX_NOT_READY"}), jsonr(201, PROC)]
    )
    assert sandbox.start_process("cat").pid == 1002
    assert len(server.requests) == 2 and len(sleeps) == 1


def test_a_request_that_may_have_reached_the_sandbox_is_not_sent_twice(
    server: FakeServer, client: SandboxClient, sleeps: list[float]
) -> None:
    """A 502 SANDBOX_UNREACHABLE ("did not answer") may come after the agent took the request: a
    start is not sent again (it could start the process twice); a GET is retried."""
    sandbox = connect(server, client)
    cut = jsonr(502, {"message": "sandbox sbx-1 did not answer", "code": "SANDBOX_UNREACHABLE"})
    server.on("POST", "/api/v1/processes", [cut, jsonr(201, PROC)])
    with pytest.raises(RemoteAPIError) as info:
        sandbox.start_process("cat")
    assert (info.value.status_code, info.value.code) == (502, "SANDBOX_UNREACHABLE")
    assert len(server.requests) == 1 and sleeps == []
    refused = jsonr(503, {"message": "sandbox sbx-1 is not accepting connections", "code": "SANDBOX_UNREACHABLE"})
    server.on("POST", "/api/v1/processes", [refused, jsonr(201, PROC)])
    assert sandbox.start_process("cat").pid == 1002
    server.on("GET", "/api/v1/processes", [cut, jsonr(200, {"processes": []})])
    assert sandbox.list_processes() == []


def test_proxy_sandbox_not_found_code(server: FakeServer, client: SandboxClient) -> None:
    sandbox = connect(server, client)
    server.on("GET", "/api/v1/processes", jsonr(404, {"error": "no sandbox", "code": "SANDBOX_NOT_FOUND"}))
    with pytest.raises(SandboxNotFoundError):
        sandbox.list_processes()


# -- run ------------------------------------------------------------------------------------------


def test_run_streams_events(server: FakeServer, client: SandboxClient) -> None:
    sandbox = connect(server, client)
    server.on(
        "POST",
        "/api/v1/processes/run",
        sse(
            {"pid": 1000, "started_at": 1795711162444},
            {"line": "hello", "timestamp": 1795711162444, "stream": "stdout"},
            "not json at all",
            {"line": "oops", "timestamp": 1795711162444, "stream": "stderr"},
            {"line": "world", "timestamp": 1795711162444, "stream": "stdout"},
            {"exit_code": 0, "signal": None, "oom_killed": False, "reason": "exited"},
            extra=[": keep-alive\n\n", "event: started\n"],
        ),
    )
    result = sandbox.run("echo", ["hi"], env={"A": "1"}, working_dir="/tmp", timeout_secs=10, user="root")
    assert (result.stdout, result.stderr, result.exit_code) == ("hello\nworld", "oops", 0)
    request = server.requests[0]
    assert json.loads(request.content) == {
        "command": "echo",
        "args": ["hi"],
        "env": {"A": "1"},
        "working_dir": "/tmp",
        "timeout": 10,
        "user": "root",
        "batch_output": True,
    }
    assert request.headers["accept"] == "text/event-stream"
    assert request.headers["host"] == "sbx-1.local"
    # Bounded by silence only: the agent sends keep-alives on these streams.
    assert request.extensions["timeout"]["read"] == 120.0


def test_run_minimal_body(server: FakeServer, client: SandboxClient) -> None:
    sandbox = connect(server, client)
    server.on("POST", "/api/v1/processes/run", sse({"exit_code": 1}))
    assert sandbox.run("false").exit_code == 1
    assert json.loads(server.requests[0].content) == {"command": "false", "batch_output": True}


def test_run_reads_output_batches_and_per_line_events_alike(server: FakeServer, client: SandboxClient) -> None:
    sandbox = connect(server, client)
    server.on(
        "POST",
        "/api/v1/processes/run",
        sse(
            {"pid": 7, "started_at": 1},
            {"stream": "stdout", "timestamp": 1, "lines": ["a", "", "b"]},
            {"line": "c", "timestamp": 2, "stream": "stdout"},
            {"stream": "stderr", "timestamp": 2, "lines": ["e1", "e2"]},
            {"stream": "stdout", "timestamp": 3, "lines": ["d"]},
            {"stream": "stdout", "timestamp": 3, "lines": [1, 2]},  # not lines: skipped
            {"exit_code": 0, "reason": "exited"},
        ),
    )
    result = sandbox.run("x")
    assert result.stdout == "a\n\nb\nc\nd"
    assert result.stderr == "e1\ne2"
    assert result.pid == 7


def test_run_signal_only_exit(server: FakeServer, client: SandboxClient) -> None:
    sandbox = connect(server, client)
    server.on("POST", "/api/v1/processes/run", sse({"exit_code": None, "signal": 9, "reason": "timed_out"}))
    result = sandbox.run("sleep", ["100"], timeout_secs=1)
    assert result.exit_code == -9 and result.reason == "timed_out"


def test_run_without_exit_event(server: FakeServer, client: SandboxClient) -> None:
    sandbox = connect(server, client)
    server.on("POST", "/api/v1/processes/run", sse({"line": "partial", "timestamp": 1}))
    with pytest.raises(SandboxConnectionError, match="without an exit event"):
        sandbox.run("echo")


def test_run_reads_to_the_end_after_the_exit_event_but_no_further_events(
    server: FakeServer, client: SandboxClient
) -> None:
    """After the exit event the body is read on to its end (so the connection can be reused), but
    what comes after the exit event is not decoded, and nothing past the next chunk is read."""
    sandbox = connect(server, client)

    def body():
        yield b'data: {"line": "x", "timestamp": 1}\n\n'
        yield b'data: {"exit_code": 0}\n\n'
        yield b'data: {"error": "after the exit", "code": "INTERNAL"}\n\n'
        raise AssertionError("stream read past the chunk after the exit event")

    server.on(
        "POST",
        "/api/v1/processes/run",
        httpx.Response(200, headers={"content-type": "text/event-stream"}, content=body()),
    )
    assert sandbox.run("echo").stdout == "x"


def test_run_keeps_its_result_when_the_stream_fails_after_the_exit_event(
    server: FakeServer, client: SandboxClient
) -> None:
    sandbox = connect(server, client)

    def body():
        yield b'data: {"line": "x", "timestamp": 1}\n\n'
        yield b'data: {"exit_code": 3}\n\n'
        raise httpx.ReadError("connection reset after the exit event")

    server.on(
        "POST",
        "/api/v1/processes/run",
        httpx.Response(200, headers={"content-type": "text/event-stream"}, content=body()),
    )
    result = sandbox.run("echo")
    assert (result.stdout, result.exit_code) == ("x", 3)


def test_run_error_before_streaming(server: FakeServer, client: SandboxClient) -> None:
    sandbox = connect(server, client)
    server.on("POST", "/api/v1/processes/run", jsonr(400, {"error": "command not found: nope", "code": "SPAWN_FAILED"}))
    with pytest.raises(RemoteAPIError, match="command not found: nope") as info:
        sandbox.run("nope")
    assert info.value.code == "SPAWN_FAILED"


def test_run_requires_an_event_stream(server: FakeServer, client: SandboxClient) -> None:
    sandbox = connect(server, client)
    server.on("POST", "/api/v1/processes/run", jsonr(200, {"exit_code": 0}))
    with pytest.raises(SandboxError, match="event stream"):
        sandbox.run("true")


def test_run_validates_input(server: FakeServer, client: SandboxClient) -> None:
    sandbox = connect(server, client)
    for bad in [
        dict(command=""),
        dict(command="ls", args="-la"),
        dict(command="ls", timeout_secs=0),
        dict(command="ls", env={"A": 1}),
    ]:
        with pytest.raises(ValueError):
            sandbox.run(**bad)
    assert server.requests == []


# -- processes ------------------------------------------------------------------------------------


def test_process_calls(server: FakeServer, client: SandboxClient) -> None:
    sandbox = connect(server, client)
    server.on("POST", "/api/v1/processes", jsonr(201, PROC))
    server.on("GET", "/api/v1/processes", jsonr(200, {"processes": [PROC]}))
    server.on("GET", "/api/v1/processes/1002", jsonr(200, {**PROC, "status": "exited", "exit_code": 0}))
    server.on("DELETE", "/api/v1/processes/1002", httpx.Response(204))
    server.on("POST", "/api/v1/processes/1002/signal", jsonr(200, {"success": True}))
    server.on("POST", "/api/v1/processes/1002/stdin", httpx.Response(204))
    server.on("POST", "/api/v1/processes/1002/stdin/close", httpx.Response(204))
    server.on("GET", "/api/v1/processes/1002/stdout", jsonr(200, {"pid": 1002, "lines": ["a", "b"], "line_count": 2}))
    server.on("GET", "/api/v1/processes/1002/stderr", jsonr(200, {"pid": 1002, "lines": [], "line_count": 0}))
    server.on(
        "GET", "/api/v1/processes/1002/output", jsonr(200, {"pid": 1002, "lines": ["a", "e", "b"], "line_count": 3})
    )

    proc = sandbox.start_process("cat", stdin_mode="pipe", stdout_mode="capture", stderr_mode="discard")
    assert proc.pid == 1002 and proc.status == ProcessStatus.RUNNING
    assert json.loads(server.requests[-1].content) == {
        "command": "cat",
        "stdin_mode": "pipe",
        "stdout_mode": "capture",
        "stderr_mode": "discard",
    }
    assert [p.pid for p in sandbox.list_processes()] == [1002]
    assert sandbox.get_process(1002).exit_code == 0
    sandbox.send_signal(1002, signal.SIGTERM)
    assert json.loads(server.requests[-1].content) == {"signal": 15}
    sandbox.send_signal(1002, 9)
    assert json.loads(server.requests[-1].content) == {"signal": 9}
    sandbox.write_stdin(1002, b"hello\n")
    stdin = server.requests[-1]
    assert stdin.content == b"hello\n" and "content-type" not in stdin.headers
    sandbox.close_stdin(1002)
    assert server.requests[-1].headers["content-length"] == "0"
    assert sandbox.get_stdout(1002).lines == ["a", "b"]
    assert sandbox.get_stderr(1002).line_count == 0
    assert sandbox.get_output(1002).lines == ["a", "e", "b"]
    sandbox.kill_process(1002)
    assert server.requests[-1].method == "DELETE"
    with pytest.raises(ValueError):
        sandbox.start_process("cat", stdin_mode="open")
    with pytest.raises(TypeError):
        sandbox.write_stdin(1002, "text")


def test_stdin_is_a_pipe_by_default(server: FakeServer, client: SandboxClient) -> None:
    # The SDK asks for a pipe explicitly (the server's own default stays "closed"), so that
    # write_stdin / close_stdin work on a process started without stdin_mode.
    sandbox = connect(server, client)
    server.on("POST", "/api/v1/processes", jsonr(200, PROC))
    server.on("POST", "/api/v1/processes/1002/stdin", httpx.Response(204))
    server.on("POST", "/api/v1/processes/1002/stdin/close", httpx.Response(204))
    proc = sandbox.start_process("python", ["-c", "import sys; print(sys.stdin.read())"])
    assert json.loads(server.requests[-1].content) == {
        "command": "python",
        "args": ["-c", "import sys; print(sys.stdin.read())"],
        "stdin_mode": "pipe",
    }
    sandbox.write_stdin(proc.pid, b"hello from stdin\n")
    sandbox.close_stdin(proc.pid)
    assert [r.url.path for r in server.requests[-2:]] == [
        "/api/v1/processes/1002/stdin",
        "/api/v1/processes/1002/stdin/close",
    ]
    assert server.requests[-2].content == b"hello from stdin\n"
    sandbox.start_process("sleep", ["60"], stdin_mode="closed")
    assert json.loads(server.requests[-1].content)["stdin_mode"] == "closed"
    sandbox.start_process("sleep", ["60"], stdin_mode=StdinMode.CLOSED)
    assert json.loads(server.requests[-1].content)["stdin_mode"] == "closed"
    sandbox.start_process("sleep", ["60"], stdin_mode=None)  # the server decides
    assert "stdin_mode" not in json.loads(server.requests[-1].content)
    assert inspect.signature(Sandbox.start_process).parameters["stdin_mode"].default == "pipe"
    assert inspect.signature(AsyncSandbox.start_process).parameters["stdin_mode"].default == "pipe"


def test_follow_output(server: FakeServer, client: SandboxClient) -> None:
    sandbox = connect(server, client)
    server.on(
        "GET",
        "/api/v1/processes/1002/output/follow",
        sse(
            {"line": "one", "timestamp": 1795711162444, "stream": "stdout"},
            {"line": "two", "timestamp": 1795711162444, "stream": "stderr"},
            {},
            extra=["event: output\n"],
        ),
    )
    server.on("GET", "/api/v1/processes/1002/stdout/follow", sse({"line": "only", "timestamp": 1}))
    events = list(sandbox.follow_output(1002))
    assert [(e.line, e.stream) for e in events] == [("one", "stdout"), ("two", "stderr")]
    request = server.requests[0]
    assert request.headers["accept"] == "text/event-stream"
    assert request.url.params["batch"] == "true"  # Alcove's own: output_batch events
    # Bounded by silence only: the agent sends keep-alives on these streams.
    assert request.extensions["timeout"]["read"] == 120.0
    assert [(e.line, e.stream) for e in sandbox.follow_stdout(1002)] == [("only", "stdout")]


def test_follow_output_reads_batches(server: FakeServer, client: SandboxClient) -> None:
    sandbox = connect(server, client)
    server.on(
        "GET",
        "/api/v1/processes/1002/output/follow",
        sse(
            {"stream": "stdout", "timestamp": 1795711162444, "lines": ["one", "two"]},
            {"stream": "stderr", "timestamp": 1795711162445, "lines": ["three"]},
            {"line": "four", "timestamp": 1795711162446, "stream": "stdout"},
            {},
        ),
    )
    server.on("GET", "/api/v1/processes/1002/stderr/follow", sse({"timestamp": 1795711162444, "lines": ["e"]}))
    events = list(sandbox.follow_output(1002))
    assert [(e.line, e.stream, e.timestamp.year) for e in events] == [
        ("one", "stdout", 2026),
        ("two", "stdout", 2026),
        ("three", "stderr", 2026),
        ("four", "stdout", 2026),
    ]
    assert all(isinstance(e, OutputEvent) for e in events)
    assert [(e.line, e.stream) for e in sandbox.follow_stderr(1002)] == [("e", "stderr")]
    batches = list(sandbox.follow_output_batches(1002))
    want = [(["one", "two"], "stdout"), (["three"], "stderr"), (["four"], "stdout")]
    assert [(b.lines, b.stream) for b in batches] == want
    assert all(type(b) is OutputBatch for b in batches)
    assert server.requests[-1].url.path == "/api/v1/processes/1002/output/follow"
    assert server.requests[-1].url.params["batch"] == "true"


def test_follow_error(server: FakeServer, client: SandboxClient) -> None:
    sandbox = connect(server, client)
    server.on("GET", "/api/v1/processes/7/stderr/follow", jsonr(404, {"error": "no process 7", "code": "NOT_FOUND"}))
    with pytest.raises(RemoteAPIError, match="no process 7"):
        list(sandbox.follow_stderr(7))


# -- files ----------------------------------------------------------------------------------------


def test_write_file_bytes(server: FakeServer, client: SandboxClient) -> None:
    sandbox = connect(server, client)
    server.on("PUT", "/api/v1/files", httpx.Response(204))
    sandbox.write_file("/tmp/a b.txt", b"name,score\n")
    request = server.requests[0]
    assert request.url.params["path"] == "/tmp/a b.txt"
    assert b"path=%2Ftmp%2Fa+b.txt" in request.url.raw_path
    assert request.content == b"name,score\n"
    assert "content-type" not in request.headers


def test_write_file_sends_large_bytes_in_slices_with_their_length_and_replays_them(
    server: FakeServer, client: SandboxClient, sleeps: list[float]
) -> None:
    # Sent whole, httpcore's sync writes copy what is left after every partial send.
    sandbox = connect(server, client)
    not_ready = jsonr(503, {"error": "booting", "code": "SANDBOX_NOT_READY"})
    server.on("PUT", "/api/v1/files", [not_ready, httpx.Response(204)])
    payload = bytes(range(256)) * (12 * 1024 + 3)  # 3 MiB and 768 bytes: four slices
    sandbox.write_file("/tmp/big.bin", bytearray(payload))
    sent = server.calls("PUT", "/api/v1/files")
    assert len(sent) == 2, "the 503 was replayed"
    for request in sent:
        assert request.content == payload
        assert request.headers["content-length"] == str(len(payload))
        assert "transfer-encoding" not in request.headers


def test_write_file_streams_a_file_with_its_length(server: FakeServer, client: SandboxClient, tmp_path) -> None:
    sandbox = connect(server, client)
    server.on("PUT", "/api/v1/files", httpx.Response(204))
    payload = bytes(range(256)) * 1000  # 256 000 bytes: several chunks
    local = tmp_path / "big.bin"
    local.write_bytes(payload)
    with open(local, "rb") as handle:
        sandbox.write_file("/workspace/big.bin", handle)
    request = server.requests[0]
    assert request.content == payload
    assert request.headers["content-length"] == str(len(payload))
    assert "transfer-encoding" not in request.headers


def test_write_file_streams_an_iterable_chunked(server: FakeServer, client: SandboxClient) -> None:
    sandbox = connect(server, client)
    server.on("PUT", "/api/v1/files", httpx.Response(204))
    pulled = []

    def chunks():
        for part in (b"abc", b"def"):
            pulled.append(part)
            yield part

    sandbox.write_file("/tmp/x", chunks())
    request = server.requests[0]
    assert request.content == b"abcdef" and pulled == [b"abc", b"def"]
    assert request.headers["transfer-encoding"] == "chunked"
    sandbox.write_file("/tmp/y", io.BytesIO(b"in memory"))
    assert server.requests[1].content == b"in memory"
    assert server.requests[1].headers["content-length"] == "9"
    with pytest.raises(TypeError):
        sandbox.write_file("/tmp/z", io.StringIO("text mode"))


def test_read_list_delete_files(server: FakeServer, client: SandboxClient, tmp_path) -> None:
    sandbox = connect(server, client)
    server.on(
        "GET",
        "/api/v1/files",
        httpx.Response(200, content=b"\x00\x01data", headers={"content-type": "application/octet-stream"}),
    )
    server.on(
        "GET",
        "/api/v1/files/list",
        jsonr(
            200,
            {
                "path": "/tmp",
                "entries": [
                    {"name": "sub", "is_dir": True, "size": None, "modified_at": None},
                    {"name": "a.txt", "is_dir": False, "size": 3, "modified_at": 1795711005478},
                ],
            },
        ),
    )
    server.on("DELETE", "/api/v1/files", httpx.Response(204))
    assert sandbox.read_file("/tmp/a.txt") == b"\x00\x01data"
    assert b"".join(sandbox.read_file_stream("/tmp/a.txt", chunk_size=2)) == b"\x00\x01data"
    target = tmp_path / "copy.bin"
    assert sandbox.download_file("/tmp/a.txt", target) == 6 and target.read_bytes() == b"\x00\x01data"
    entries = sandbox.list_directory("/tmp")
    assert [(e.name, e.is_dir, e.size) for e in entries] == [("sub", True, None), ("a.txt", False, 3)]
    assert entries[1].modified_at.year == 2026
    sandbox.delete_file("/tmp/a.txt")
    assert server.requests[-1].method == "DELETE" and server.requests[-1].url.params["path"] == "/tmp/a.txt"


def test_download_missing_file_creates_nothing(server: FakeServer, client: SandboxClient, tmp_path) -> None:
    sandbox = connect(server, client)
    server.on("GET", "/api/v1/files", jsonr(404, {"error": "no such file", "code": "NOT_FOUND"}))
    with pytest.raises(RemoteAPIError, match="no such file"):
        sandbox.download_file("/nope", tmp_path / "out")
    assert not (tmp_path / "out").exists()


# -- handle ---------------------------------------------------------------------------------------


def test_info_and_terminate(server: FakeServer, client: SandboxClient) -> None:
    sandbox = connect(server, client)
    server.on("GET", SBX, jsonr(200, info_json(name="renamed")))
    server.on("DELETE", SBX, httpx.Response(204))
    assert sandbox.info().name == "renamed" and sandbox.name == "renamed"
    sandbox.terminate()
    assert server.requests[-1].method == "DELETE" and server.requests[-1].url.path == SBX


def test_signal_members_are_sent_with_their_linux_numbers() -> None:
    from alcove.sandbox._protocol._processes import LINUX_SIGNALS, linux_signal

    assert linux_signal(signal.SIGTERM) == 15 and linux_signal(12) == 12
    with pytest.raises(ValueError):
        linux_signal(0)
    # The table is what the sandbox reads; on Linux it agrees with the client's own numbers.
    if sys.platform == "linux":
        for member in signal.Signals:
            assert LINUX_SIGNALS.get(member.name, int(member)) == int(member), member.name
            if member.name in LINUX_SIGNALS:
                assert linux_signal(member) == int(member)
