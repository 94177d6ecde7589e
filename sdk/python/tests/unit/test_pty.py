"""PTY sessions: frames, URLs, and real sessions against the loopback fake proxy (ws_fakes)."""

from __future__ import annotations

import asyncio
import json
import struct
import time

import httpx
import pytest

from alcove.sandbox import (
    AsyncPtySession,
    AsyncSandbox,
    AsyncSandboxClient,
    AuthenticationError,
    PtySession,
    RemoteAPIError,
    Sandbox,
    SandboxClient,
    SandboxConnectionError,
    SandboxError,
    SandboxNotFoundError,
    SandboxNotRoutableError,
    SandboxTimeoutError,
)
from alcove.sandbox import _pty_protocol as ptyp
from alcove.sandbox import _websocket as wsp
from alcove.sandbox._config import resolve_config
from alcove.sandbox._protocol import proxy_target
from fakes import FakeServer, info_json, jsonr
from ws_fakes import FakeProxy

SBX = "/v1/namespaces/default/sandboxes/sbx-1"
READY = b"\x02"
T = 5  # seconds: every blocking call in these tests is bounded
FLOOD = b"welcome 1\r\n$ flood 300\r\n" + b"".join(f"<{i}>".encode() for i in range(300))

# ---------------------------------------------------------------------------------------------
# Frames


def test_client_frames() -> None:
    assert ptyp.READY_FRAME == b"\x02"
    assert ptyp.input_frame(b"ls\n") == b"\x00ls\n"
    assert ptyp.input_frame("é") == b"\x00\xc3\xa9"
    assert ptyp.input_frame(bytearray(b"x")) == b"\x00x"
    assert ptyp.resize_frame(120, 40) == b"\x01\x00\x78\x00\x28"
    assert ptyp.resize_frame(65535, 1) == b"\x01\xff\xff\x00\x01"
    with pytest.raises(TypeError):
        ptyp.input_frame(12)  # type: ignore[arg-type]
    for cols, rows in ((0, 24), (80, 65536), (True, 24), (80.0, 24)):
        with pytest.raises(ValueError):
            ptyp.resize_frame(cols, rows)  # type: ignore[arg-type]


def test_server_frames() -> None:
    assert ptyp.decode_frame(b"\x00hello") == ptyp.Output(b"hello")
    assert ptyp.decode_frame(b"\x00") == ptyp.Output(b"")
    assert ptyp.decode_frame(b"\x03" + struct.pack(">i", 7)) == ptyp.Exit(7)
    assert ptyp.decode_frame(b"\x03\xff\xff\xff\xf7") == ptyp.Exit(-9)
    assert ptyp.decode_frame(b"\x03\x00") is None  # truncated exit frame
    assert ptyp.decode_frame("text frames are ignored") is None
    assert ptyp.decode_frame(b"") is None
    assert ptyp.decode_frame(b"\x09junk") is None


def test_exit_code_from_close_reason() -> None:
    assert ptyp.exit_code_from_reason("exit:0") == 0
    assert ptyp.exit_code_from_reason("exit:137") == 137
    assert ptyp.exit_code_from_reason("exit:-1") == -1
    assert ptyp.exit_code_from_reason("exit:what") == -1
    assert ptyp.exit_code_from_reason("session terminated") is None
    assert ptyp.exit_code_from_reason("") is None


def test_state_buffers_output_and_splits_on_the_pattern() -> None:
    state = ptyp.PtyState("s1")
    state.feed(b"\x00abc$ ")
    state.feed("text")
    state.feed(b"\x00def")
    assert state.take_until(b"zzz") is None
    assert state.take_until(b"$ ") == b"abc$ "
    assert state.take() == b"def" and state.take() == b""
    state.feed(b"\x03\x00\x00\x00\x02")
    assert state.exited and state.exit_code == 2
    assert state.closed(1000, "exit:5") is None and state.exit_code == 2  # the frame wins


def test_state_close_errors() -> None:
    assert ptyp.PtyState("s").closed(1000, "exit:3") is None
    terminated = ptyp.PtyState("s").closed(1000, "session terminated")
    assert type(terminated) is SandboxError and "terminated" in str(terminated)
    unexpected = ptyp.PtyState("s").closed(1011, "boom")
    assert isinstance(unexpected, SandboxConnectionError) and "1011 boom" in str(unexpected)


def test_body_validation() -> None:
    body = ptyp.pty_body("bash", ["-l"], 120, 40, {"PS1": "$ "}, "/root")
    assert body == {
        "command": "bash",
        "args": ["-l"],
        "env": {"PS1": "$ "},
        "working_dir": "/root",
        "rows": 40,
        "cols": 120,
    }
    assert ptyp.pty_body("sh", None, 80, 24, None, None) == {"command": "sh", "rows": 24, "cols": 80}
    for bad in (dict(cols=0), dict(rows=70000), dict(command=""), dict(args="ls")):
        kwargs = dict(command="bash", args=None, cols=80, rows=24, env=None, working_dir=None) | bad
        with pytest.raises(ValueError):
            ptyp.pty_body(**kwargs)


# ---------------------------------------------------------------------------------------------
# URLs and headers


@pytest.mark.parametrize(
    ("sandbox_url", "expected"),
    [
        ("http://localhost:8900", "ws://localhost:8900/sandboxes/sbx-1/api/v1/pty/s1/ws?token=tok"),
        ("http://localhost:8900/", "ws://localhost:8900/sandboxes/sbx-1/api/v1/pty/s1/ws?token=tok"),
        ("https://alcove.example.com", "wss://alcove.example.com/sandboxes/sbx-1/api/v1/pty/s1/ws?token=tok"),
        ("http://127.0.0.1:9443/prefix/", "ws://127.0.0.1:9443/prefix/sandboxes/sbx-1/api/v1/pty/s1/ws?token=tok"),
        ("https://user:pw@proxy:8443", "wss://proxy:8443/sandboxes/sbx-1/api/v1/pty/s1/ws?token=tok"),
    ],
)
def test_pty_websocket_url_is_self_routing(sandbox_url: str, expected: str) -> None:
    assert wsp.pty_websocket_url(sandbox_url, "sbx-1", "s1", "tok") == expected


def test_pty_websocket_url_escapes() -> None:
    url = wsp.pty_websocket_url("http://localhost:8900", "a/b", "s 1", "t&k=v")
    assert url == "ws://localhost:8900/sandboxes/a%2Fb/api/v1/pty/s%201/ws?token=t%26k%3Dv"
    with pytest.raises(SandboxNotRoutableError):
        wsp.pty_websocket_url("ftp://x", "sbx-1", "s", "t")
    with pytest.raises(SandboxNotRoutableError):
        wsp.pty_websocket_url("", "sbx-1", "s", "t")


def test_websocket_headers() -> None:
    cfg = resolve_config(api_url="http://localhost:8900", api_key="key-1", environ={})
    target = proxy_target("http://localhost:8900", "sbx-1", routing_hint="node-7")
    assert wsp.websocket_headers(cfg, target, "tok") == {
        "Authorization": "Bearer key-1",
        "X-Tensorlake-Route-Hint": "node-7",
        "X-PTY-Token": "tok",
    }
    anonymous = resolve_config(api_url="http://localhost:8900", environ={})
    assert wsp.websocket_headers(anonymous, proxy_target("http://localhost:8900", "sbx-1")) == {}


# ---------------------------------------------------------------------------------------------
# Sync sessions against the fake proxy


def pty_route(proxy: FakeProxy, session_id: str = "s1", token: str = "tok-1", exit_mode: str = "both"):
    """A responder for POST /api/v1/pty that registers the session with the fake proxy."""

    def create(request: httpx.Request) -> httpx.Response:
        proxy.add_session(session_id, token, exit_mode)
        return jsonr(201, {"session_id": session_id, "token": token})

    return create


@pytest.fixture
def sandbox(server: FakeServer, proxy: FakeProxy, sleeps: list[float]) -> Sandbox:
    server.on("GET", SBX, jsonr(200, info_json(sandbox_url=proxy.url)))
    server.on("POST", "/api/v1/pty", pty_route(proxy))
    with SandboxClient(api_key="key-1", transport=httpx.MockTransport(server)) as client:
        yield client.connect("sbx-1")


def test_create_pty_posts_the_body_and_returns_an_unconnected_session(
    server: FakeServer, proxy: FakeProxy, sandbox: Sandbox
) -> None:
    pty = sandbox.create_pty("bash", ["-l"], cols=120, rows=40, env={"PS1": "$ "}, working_dir="/root")
    request = server.calls("POST", "/api/v1/pty")[0]
    assert json.loads(request.content) == {
        "command": "bash",
        "args": ["-l"],
        "env": {"PS1": "$ "},
        "working_dir": "/root",
        "rows": 40,
        "cols": 120,
    }
    assert request.headers["host"] == "sbx-1.local" and request.headers["authorization"] == "Bearer key-1"
    assert isinstance(pty, PtySession) and not pty.connected
    assert (pty.session_id, pty.token, pty.exit_code) == ("s1", "tok-1", None)
    assert pty.websocket_url == f"ws://127.0.0.1:{proxy.port}/sandboxes/sbx-1/api/v1/pty/s1/ws?token=tok-1"
    assert proxy.upgrades == []
    with pytest.raises(SandboxError, match="not connected"):
        pty.send("ls\n")
    with pytest.raises(SandboxError, match="not connected"):
        pty.read(timeout=T)
    with pytest.raises(ValueError):
        sandbox.create_pty(cols=0)
    assert len(server.calls("POST", "/api/v1/pty")) == 1


def test_connect_sends_ready_first_then_output_flows(proxy: FakeProxy, sandbox: Sandbox) -> None:
    with sandbox.create_pty("bash") as pty:
        assert pty.connected
        # The server holds output until READY: the banner arrives without sending anything.
        assert pty.read_until("$ ", timeout=T) == b"welcome 1\r\n$ "
        pty.send("echo hi\n")
        assert pty.read_until(b"hi\r\n", timeout=T) == b"echo hi\r\n"
        pty.resize(132, 43)
        assert pty.read_until("]", timeout=T) == b"[132x43]"
    assert not pty.connected
    frames = proxy.sessions["s1"].frames[0]
    assert frames[0] == READY
    assert frames[1:] == [b"\x00echo hi\n", b"\x01\x00\x84\x00\x2b"]


def test_upgrade_is_self_routed_with_token_and_api_key(proxy: FakeProxy, sandbox: Sandbox) -> None:
    with sandbox.create_pty():
        pass
    upgrade = proxy.upgrades[0]
    assert upgrade.path == "/sandboxes/sbx-1/api/v1/pty/s1/ws?token=tok-1"
    assert upgrade.headers["x-pty-token"] == "tok-1"
    assert upgrade.headers["authorization"] == "Bearer key-1"
    assert upgrade.host_values == [f"127.0.0.1:{proxy.port}"]  # no Host override, no second Host
    assert upgrade.headers["user-agent"].startswith("alcove-python-sdk/")


def test_wait_returns_the_code_of_the_exit_frame(proxy: FakeProxy, sandbox: Sandbox) -> None:
    proxy.add_session("s1", "tok-1", exit_mode="frame")
    server_session = proxy.sessions["s1"]
    pty = sandbox.connect_pty("s1", "tok-1")
    assert pty.connected
    pty.send("exit 3\n")
    assert pty.wait(timeout=T) == 3
    assert pty.exit_code == 3 and not pty.connected
    # Output that arrived while waiting stays readable, then b"" marks the end.
    assert pty.read(timeout=T) == b"welcome 1\r\n$ exit 3\r\n"
    assert pty.read(timeout=T) == b""
    assert pty.wait() == 3
    assert server_session.frames[0][0] == READY
    with pytest.raises(SandboxError, match="exited with code 3"):
        pty.send("more")


def test_wait_reads_the_code_from_the_close_reason(proxy: FakeProxy, sandbox: Sandbox) -> None:
    proxy.add_session("s1", "tok-1", exit_mode="reason")
    with sandbox.connect_pty("s1", "tok-1") as pty:
        pty.send("exit 42\n")
        assert pty.wait(timeout=T) == 42
        assert pty.read_until("exit 42", timeout=T).endswith(b"exit 42")
    assert pty.exit_code == 42


def test_read_returns_empty_at_exit(proxy: FakeProxy, sandbox: Sandbox) -> None:
    with sandbox.create_pty() as pty:
        assert pty.read_until("$ ", timeout=T)
        pty.send("exit 0\n")
        chunks = []
        while chunk := pty.read(timeout=T):
            chunks.append(chunk)
        assert b"".join(chunks) == b"exit 0\r\n"
        assert pty.exit_code == 0


def test_read_until_timeout_keeps_the_output(sandbox: Sandbox) -> None:
    with sandbox.create_pty() as pty:
        with pytest.raises(SandboxTimeoutError, match="'never' did not appear within 0.2s"):
            pty.read_until("never", timeout=0.2)
        assert pty.read(timeout=T) == b"welcome 1\r\n$ "
        with pytest.raises(SandboxTimeoutError, match="no output"):
            pty.read(timeout=0.1)
        with pytest.raises(SandboxTimeoutError, match="did not exit"):
            pty.wait(timeout=0.1)
        with pytest.raises(ValueError):
            pty.read_until("", timeout=T)
        with pytest.raises(ValueError):
            pty.read(timeout=-1)


def test_read_until_raises_when_the_command_exits_first(sandbox: Sandbox) -> None:
    with sandbox.create_pty() as pty:
        pty.send("exit 1\n")
        with pytest.raises(SandboxError, match="exited with code 1 before b'never' appeared"):
            pty.read_until(b"never", timeout=T)
        assert pty.read() == b"welcome 1\r\n$ exit 1\r\n"


def test_close_leaves_the_session_for_reconnect(server: FakeServer, proxy: FakeProxy, sandbox: Sandbox) -> None:
    pty = sandbox.create_pty()
    pty.connect()
    assert pty.connect() is pty  # already connected: nothing happens
    assert pty.read_until("$ ", timeout=T) == b"welcome 1\r\n$ "
    pty.close()
    pty.close()
    assert not pty.connected and pty.exit_code is None
    # Reconnect the same handle, then through the sandbox with the id and token.
    with pty:
        assert pty.read_until("$ ", timeout=T) == b"welcome 2\r\n$ "
    again = sandbox.connect_pty(pty.session_id, pty.token)
    assert again.read_until("$ ", timeout=T) == b"welcome 3\r\n$ "
    again.send("exit 0\n")
    assert again.wait(timeout=T) == 0
    frames = proxy.sessions["s1"].frames
    assert len(frames) == 3 and all(connection[0] == READY for connection in frames)
    assert server.calls("DELETE") == []


def test_close_with_unread_output_is_prompt_and_keeps_it(proxy: FakeProxy, sandbox: Sandbox) -> None:
    pty = sandbox.create_pty().connect()
    pty.send("flood 300\n")
    time.sleep(0.3)  # far more frames arrive than the socket's receive queue holds
    started = time.monotonic()
    pty.close()
    assert time.monotonic() - started < 2
    # What arrived before the close stays readable (frames racing the close frame may be dropped).
    output = pty.read(timeout=T)
    assert b"<0>" in output and FLOOD.startswith(output)


def test_kill_deletes_the_session(server: FakeServer, sandbox: Sandbox) -> None:
    server.on(
        "DELETE",
        "/api/v1/pty/s1",
        [
            httpx.Response(204),
            jsonr(404, {"error": "no such session", "code": "NOT_FOUND"}),
            jsonr(404, {"message": "sandbox sbx-1 not found", "code": "SANDBOX_NOT_FOUND"}),
        ],
    )
    pty = sandbox.create_pty()
    pty.kill()
    pty.kill()  # already gone: fine
    with pytest.raises(SandboxNotFoundError):
        pty.kill()
    deletes = server.calls("DELETE", "/api/v1/pty/s1")
    assert len(deletes) == 3 and deletes[0].headers["host"] == "sbx-1.local"


def test_a_socket_the_server_closed_is_not_connected_before_any_read(proxy: FakeProxy, sandbox: Sandbox) -> None:
    with sandbox.create_pty() as pty:
        pty.send("terminate\n")
        deadline = time.monotonic() + T
        while pty.connected and time.monotonic() < deadline:
            time.sleep(0.01)
        assert not pty.connected
        assert pty.read_until("$ ", timeout=T) == b"welcome 1\r\n$ "  # what came first stays readable


def test_terminated_and_broken_sessions_raise(proxy: FakeProxy, sandbox: Sandbox) -> None:
    with sandbox.create_pty() as pty:
        pty.send("terminate\n")
        with pytest.raises(SandboxError, match="terminated"):
            pty.wait(timeout=T)
        assert not pty.connected and pty.exit_code is None
    proxy.add_session("s2", "tok-2")
    with sandbox.connect_pty("s2", "tok-2") as pty:
        pty.send("crash\n")
        with pytest.raises(SandboxConnectionError, match="closed unexpectedly"):
            pty.read_until("never", timeout=T)


def test_refused_upgrades_map_to_errors(proxy: FakeProxy, sandbox: Sandbox) -> None:
    proxy.add_session("s1", "tok-1")
    with pytest.raises(AuthenticationError, match="bad PTY token") as info:
        sandbox.connect_pty("s1", "wrong")
    assert info.value.status_code == 403
    with pytest.raises(RemoteAPIError, match="no such PTY session") as info:
        sandbox.connect_pty("nope", "tok")
    assert info.value.status_code == 404
    with pytest.raises(ValueError):
        sandbox.connect_pty("", "tok")


def test_connection_failures_map_to_connection_errors(server: FakeServer, sleeps: list[float]) -> None:
    from ws_fakes import free_port

    server.on("GET", SBX, jsonr(200, info_json(sandbox_url=f"http://127.0.0.1:{free_port()}")))
    with SandboxClient(transport=httpx.MockTransport(server)) as client:
        sandbox = client.connect("sbx-1")
        with pytest.raises(SandboxConnectionError, match="PTY session s1"):
            sandbox.connect_pty("s1", "tok")


# ---------------------------------------------------------------------------------------------
# Async sessions against the fake proxy


@pytest.fixture
async def asandbox(server: FakeServer, proxy: FakeProxy, sleeps: list[float]) -> AsyncSandbox:
    server.on("GET", SBX, jsonr(200, info_json(sandbox_url=proxy.url)))
    server.on("POST", "/api/v1/pty", pty_route(proxy))
    async with AsyncSandboxClient(api_key="key-1", transport=httpx.MockTransport(server)) as client:
        yield await client.connect("sbx-1")


async def test_async_session_end_to_end(server: FakeServer, proxy: FakeProxy, asandbox: AsyncSandbox) -> None:
    pty = await asandbox.create_pty("bash", cols=100, rows=30)
    assert isinstance(pty, AsyncPtySession) and not pty.connected
    assert json.loads(server.calls("POST", "/api/v1/pty")[0].content) == {"command": "bash", "rows": 30, "cols": 100}
    assert pty.websocket_url == f"ws://127.0.0.1:{proxy.port}/sandboxes/sbx-1/api/v1/pty/s1/ws?token=tok-1"
    async with pty:
        assert await pty.read_until("$ ", timeout=T) == b"welcome 1\r\n$ "
        await pty.send(b"echo hi\n")
        assert await pty.read_until("hi\r\n", timeout=T) == b"echo hi\r\n"
        await pty.resize(90, 20)
        assert await pty.read_until("]", timeout=T) == b"[90x20]"
        with pytest.raises(SandboxTimeoutError):
            await pty.read_until("never", timeout=0.2)
        with pytest.raises(SandboxTimeoutError):
            await pty.read(timeout=0.1)
        await pty.send("exit 7\n")
        assert await pty.wait(timeout=T) == 7
        assert await pty.read(timeout=T) == b"exit 7\r\n"
        assert await pty.read() == b""
    assert pty.exit_code == 7 and not pty.connected
    frames = proxy.sessions["s1"].frames[0]
    assert frames[0] == READY and frames[2] == b"\x01\x00\x5a\x00\x14"
    upgrade = proxy.upgrades[0]
    assert upgrade.headers["x-pty-token"] == "tok-1" and upgrade.headers["authorization"] == "Bearer key-1"
    assert upgrade.host_values == [f"127.0.0.1:{proxy.port}"]


async def test_async_exit_from_close_reason_and_reconnect(
    server: FakeServer, proxy: FakeProxy, asandbox: AsyncSandbox
) -> None:
    proxy.add_session("s9", "tok-9", exit_mode="reason")
    pty = await asandbox.connect_pty("s9", "tok-9")
    assert pty.connected
    assert await pty.read_until("$ ", timeout=T) == b"welcome 1\r\n$ "
    await pty.close()
    assert not pty.connected
    with pytest.raises(SandboxError, match="not connected"):
        await pty.send("x")
    async with await asandbox.connect_pty("s9", "tok-9") as again:
        assert await again.read_until("$ ", timeout=T) == b"welcome 2\r\n$ "
        await again.send("exit 5\n")
        with pytest.raises(SandboxError, match="exited with code 5 before"):
            await again.read_until("never", timeout=T)
        assert await again.wait() == 5
    assert [connection[0] for connection in proxy.sessions["s9"].frames] == [READY, READY]


async def test_async_close_with_unread_output_is_prompt_and_keeps_it(asandbox: AsyncSandbox) -> None:
    pty = await (await asandbox.create_pty()).connect()
    await pty.send("flood 300\n")
    await asyncio.sleep(0.3)
    started = time.monotonic()
    await pty.close()
    assert time.monotonic() - started < 2
    output = await pty.read(timeout=T)
    assert b"<0>" in output and FLOOD.startswith(output)


async def test_async_kill_and_errors(server: FakeServer, proxy: FakeProxy, asandbox: AsyncSandbox) -> None:
    server.on("DELETE", "/api/v1/pty/s1", httpx.Response(204))
    pty = await asandbox.create_pty()
    await pty.kill()
    assert len(server.calls("DELETE", "/api/v1/pty/s1")) == 1
    with pytest.raises(AuthenticationError):
        await asandbox.connect_pty("s1", "wrong")
    async with pty:
        await pty.send("terminate\n")
        deadline = time.monotonic() + T
        while pty.connected and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        assert not pty.connected  # closed by the server, before any read
        with pytest.raises(SandboxError, match="terminated"):
            await pty.wait(timeout=T)


def test_close_details_read_the_close_frame_without_deprecated_fields() -> None:
    import warnings

    from websockets.exceptions import ConnectionClosedError, ConnectionClosedOK
    from websockets.frames import Close

    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)  # websockets' own .code/.reason warn
        assert wsp.close_details(ConnectionClosedOK(Close(4404, "gone"), None)) == (4404, "gone")
        assert wsp.close_details(ConnectionClosedError(None, None)) == (1006, "")  # no frame came
