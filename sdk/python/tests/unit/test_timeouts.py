"""Client-side deadlines: no call waits forever on a stopped agent.

The fake transport checks which deadline each kind of call carries and how a timeout is
reported; small real servers on 127.0.0.1 (one silent, one that only sends keep-alives)
check that the deadlines really fire, and that keep-alive comments hold a stream open.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import httpx
import pytest

from alcove.sandbox import AsyncSandbox, AsyncSandboxClient, Sandbox, SandboxClient, SandboxTimeoutError
from alcove.sandbox.models import SandboxInfo
from fakes import FakeServer, info_json, jsonr, sse

SBX = "/v1/namespaces/default/sandboxes/sbx-1"
RUN = "/api/v1/processes/run"


def connect(server: FakeServer, client: SandboxClient) -> Sandbox:
    server.on("GET", SBX, jsonr(200, info_json()))
    sandbox = client.connect("sbx-1")
    server.requests.clear()
    return sandbox


def read_timeout_of(request: httpx.Request) -> float | None:
    return request.extensions["timeout"]["read"]


def test_each_kind_of_call_carries_its_deadline(sleeps: list[float]) -> None:
    server = FakeServer()
    with SandboxClient(timeout=40, stream_idle_timeout=25, transport=httpx.MockTransport(server)) as client:
        sandbox = connect(server, client)
        server.on("POST", RUN, sse({"pid": 7}, {"exit_code": 0}))
        server.on("GET", "/api/v1/processes/7/output/follow", sse({"line": "x", "stream": "stdout"}))
        server.on("GET", "/api/v1/files", httpx.Response(200, content=b"data"))
        server.on("PUT", "/api/v1/files", httpx.Response(204))
        server.on("GET", "/api/v1/processes", jsonr(200, {"processes": []}))
        sandbox.run("true")
        list(sandbox.follow_output(7))
        sandbox.read_file("/tmp/x")
        sandbox.write_file("/tmp/y", iter([b"a", b"b"]))
        sandbox.list_processes()
    deadlines = {(r.method, r.url.path): read_timeout_of(r) for r in server.requests}
    assert deadlines == {
        ("POST", RUN): 25,
        ("GET", "/api/v1/processes/7/output/follow"): 25,
        ("GET", "/api/v1/files"): 40,
        ("PUT", "/api/v1/files"): 40,
        ("GET", "/api/v1/processes"): 40,
    }


def test_a_silent_stream_raises_a_timeout_naming_stream_idle_timeout(client: SandboxClient, server: FakeServer) -> None:
    sandbox = connect(server, client)

    def stalls(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out", request=request)

    server.on("POST", RUN, stalls)
    with pytest.raises(SandboxTimeoutError) as err:
        sandbox.run("true")
    assert err.value.parameter == "stream_idle_timeout"
    assert "stream_idle_timeout" in str(err.value)
    assert isinstance(err.value, TimeoutError)


def test_a_stream_that_stalls_midway_raises_a_timeout(client: SandboxClient, server: FakeServer) -> None:
    sandbox = connect(server, client)

    class Stalls(httpx.SyncByteStream):
        def __iter__(self) -> Iterator[bytes]:
            yield b'data: {"pid": 7}\n\n'
            raise httpx.ReadTimeout("timed out")

    server.on("POST", RUN, httpx.Response(200, headers={"content-type": "text/event-stream"}, stream=Stalls()))
    with pytest.raises(SandboxTimeoutError) as err:
        sandbox.run("sleep", ["1000"])
    assert err.value.parameter == "stream_idle_timeout"


def test_an_unanswered_request_names_timeout(client: SandboxClient, server: FakeServer) -> None:
    sandbox = connect(server, client)

    def stalls(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out", request=request)

    server.on("GET", "/api/v1/processes", stalls)
    with pytest.raises(SandboxTimeoutError) as err:
        sandbox.list_processes()
    assert err.value.parameter == "timeout"
    assert "timeout=" in str(err.value)


# -- real sockets ---------------------------------------------------------------------------------


class TcpServer:
    """Accepts connections on 127.0.0.1 and hands each to ``handler`` in a thread."""

    def __init__(self, handler) -> None:
        self._sock = socket.create_server(("127.0.0.1", 0))
        self.port = self._sock.getsockname()[1]
        self._handler = handler
        self._conns: list[socket.socket] = []
        self._stop = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            self._conns.append(conn)
            threading.Thread(target=self._handler, args=(conn, self._stop), daemon=True).start()

    def close(self) -> None:
        self._stop.set()
        self._sock.close()
        for conn in self._conns:
            conn.close()

    @property
    def info(self) -> SandboxInfo:
        return SandboxInfo.model_validate(info_json(sandbox_url=f"http://127.0.0.1:{self.port}"))


def read_head(conn: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


def never_answers(conn: socket.socket, stop: threading.Event) -> None:
    """A stopped agent: the connection is accepted (by the kernel) and nothing comes back."""
    read_head(conn)
    stop.wait()


def keeps_alive_then_exits(conn: socket.socket, stop: threading.Event) -> None:
    """A healthy agent running a silent command: keep-alive comments, then the exit event."""
    read_head(conn)
    conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n")

    def chunk(data: bytes) -> None:
        conn.sendall(b"%x\r\n%s\r\n" % (len(data), data))

    chunk(b'event: started\ndata: {"pid": 7}\n\n')
    # Ten keep-alives 0.1 s apart: the stream lasts several times the idle bound of the test.
    for _ in range(10):
        time.sleep(0.1)
        chunk(b": keep-alive\n\n")
    chunk(b'event: exit\ndata: {"exit_code": 0}\n\n')
    conn.sendall(b"0\r\n\r\n")


@pytest.fixture
def silent() -> Iterator[TcpServer]:
    server = TcpServer(never_answers)
    yield server
    server.close()


@pytest.fixture
def alive() -> Iterator[TcpServer]:
    server = TcpServer(keeps_alive_then_exits)
    yield server
    server.close()


def test_run_against_a_stopped_agent_times_out(silent: TcpServer) -> None:
    with SandboxClient(api_url=f"http://127.0.0.1:{silent.port}", timeout=0.3, stream_idle_timeout=0.3) as client:
        sandbox = Sandbox(client, silent.info)
        with pytest.raises(SandboxTimeoutError) as err:
            sandbox.run("true")
        assert err.value.parameter == "stream_idle_timeout"
        with pytest.raises(SandboxTimeoutError) as err:
            sandbox.list_processes()
        assert err.value.parameter == "timeout"
        with pytest.raises(SandboxTimeoutError):
            sandbox.read_file("/etc/hostname")


def test_keep_alives_hold_a_silent_stream_open(alive: TcpServer) -> None:
    with SandboxClient(api_url=f"http://127.0.0.1:{alive.port}", stream_idle_timeout=0.5) as client:
        result = Sandbox(client, alive.info).run("sleep", ["1"])
    assert result.exit_code == 0
    assert result.pid == 7


async def test_async_run_against_a_stopped_agent_times_out(silent: TcpServer) -> None:
    async with AsyncSandboxClient(api_url=f"http://127.0.0.1:{silent.port}", stream_idle_timeout=0.3) as client:
        sandbox = AsyncSandbox(client, silent.info)
        with pytest.raises(SandboxTimeoutError) as err:
            await sandbox.run("true")
        assert err.value.parameter == "stream_idle_timeout"


async def test_async_keep_alives_hold_a_silent_stream_open(alive: TcpServer) -> None:
    async with AsyncSandboxClient(api_url=f"http://127.0.0.1:{alive.port}", stream_idle_timeout=0.5) as client:
        result = await AsyncSandbox(client, alive.info).run("sleep", ["1"])
    assert result.exit_code == 0
