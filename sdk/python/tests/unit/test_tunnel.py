"""TCP tunnels: URLs, and real relays through the loopback fake proxy to a TCP echo server."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Callable

import httpx
import pytest

from alcove.sandbox import (
    AsyncSandbox,
    AsyncSandboxClient,
    AsyncTunnel,
    RemoteAPIError,
    Sandbox,
    SandboxClient,
    SandboxConnectionError,
    SandboxNotFoundError,
    SandboxNotRoutableError,
    SandboxTimeoutError,
    Tunnel,
)
from alcove.sandbox import _websocket as wsp
from fakes import FakeServer, info_json, jsonr
from ws_fakes import EchoServer, FakeProxy, free_port

SBX = "/v1/namespaces/default/sandboxes/sbx-1"
T = 5  # seconds: every blocking call in these tests is bounded


def eventually(condition: Callable[[], bool], timeout: float = T) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def recv_exactly(sock: socket.socket, size: int) -> bytes:
    data = bytearray()
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            break
        data += chunk
    return bytes(data)


# ---------------------------------------------------------------------------------------------
# URLs


@pytest.mark.parametrize(
    ("sandbox_url", "expected"),
    [
        ("http://localhost:8900", "ws://localhost:8900/sandboxes/sbx-1/api/v1/tunnels/tcp?port=5432"),
        ("https://alcove.example.com/", "wss://alcove.example.com/sandboxes/sbx-1/api/v1/tunnels/tcp?port=5432"),
        # The tunnel path replaces any prefix of the base (docs/protocol/proxy.md).
        ("http://localhost:9443/prefix/", "ws://localhost:9443/sandboxes/sbx-1/api/v1/tunnels/tcp?port=5432"),
    ],
)
def test_tunnel_url_is_self_routing(sandbox_url: str, expected: str) -> None:
    assert wsp.tunnel_websocket_url(sandbox_url, "sbx-1", 5432) == expected


def test_tunnel_url_validation() -> None:
    for port in (0, 65536, True, "80", None):
        with pytest.raises(ValueError, match="remote_port"):
            wsp.tunnel_websocket_url("http://localhost:8900", "sbx-1", port)  # type: ignore[arg-type]
    with pytest.raises(SandboxNotRoutableError):
        wsp.tunnel_websocket_url("localhost:8900", "sbx-1", 80)


# ---------------------------------------------------------------------------------------------
# Sync tunnels


@pytest.fixture
def sandbox(server: FakeServer, proxy: FakeProxy, sleeps: list[float]) -> Sandbox:
    server.on("GET", SBX, jsonr(200, info_json(sandbox_url=proxy.url)))
    with SandboxClient(api_key="key-1", transport=httpx.MockTransport(server)) as client:
        yield client.connect("sbx-1")


def test_relays_two_concurrent_connections_both_ways(proxy: FakeProxy, echo: EchoServer, sandbox: Sandbox) -> None:
    with sandbox.create_tunnel(echo.port) as tunnel:
        assert isinstance(tunnel, Tunnel) and tunnel.remote_port == echo.port
        assert tunnel.local_host == "127.0.0.1" and tunnel.local_port > 0
        assert tunnel.local_address == ("127.0.0.1", tunnel.local_port)
        assert (
            tunnel.websocket_url == f"ws://127.0.0.1:{proxy.port}/sandboxes/sbx-1/api/v1/tunnels/tcp?port={echo.port}"
        )
        first = socket.create_connection(tunnel.local_address, timeout=T)
        second = socket.create_connection(tunnel.local_address, timeout=T)
        big = os.urandom(300_000)
        first.sendall(b"one")
        second.sendall(b"two")
        assert recv_exactly(second, 3) == b"two"
        assert recv_exactly(first, 3) == b"one"
        second.sendall(big)
        first.sendall(b"still one")
        assert recv_exactly(first, 9) == b"still one"
        assert recv_exactly(second, len(big)) == big
        assert eventually(lambda: proxy.tunnels_opened == 2 and echo.opened == 2)
        # Closing one local connection closes its connection in the sandbox, not the other one.
        first.close()
        assert eventually(lambda: proxy.tunnels_closed == 1 and echo.closed == 1)
        second.sendall(b"after")
        assert recv_exactly(second, 5) == b"after"
        second.close()
        assert eventually(lambda: proxy.tunnels_closed == 2 and echo.closed == 2)
    assert tunnel.closed
    upgrade = proxy.upgrades[0]
    assert upgrade.path == f"/sandboxes/sbx-1/api/v1/tunnels/tcp?port={echo.port}"
    assert upgrade.headers["authorization"] == "Bearer key-1" and "x-pty-token" not in upgrade.headers
    assert upgrade.host_values == [f"127.0.0.1:{proxy.port}"]


def test_close_stops_listening_and_ends_open_connections(proxy: FakeProxy, echo: EchoServer, sandbox: Sandbox) -> None:
    tunnel = sandbox.create_tunnel(echo.port)
    conn = socket.create_connection(tunnel.local_address, timeout=T)
    conn.sendall(b"ping")
    assert recv_exactly(conn, 4) == b"ping"
    tunnel.close()
    tunnel.close()
    assert tunnel.closed
    assert conn.recv(10) == b""  # the relayed connection was closed
    conn.close()
    assert eventually(lambda: proxy.tunnels_closed == 1 and echo.closed == 1)
    with pytest.raises(OSError):
        socket.create_connection(tunnel.local_address, timeout=T)


def test_a_refused_port_closes_the_local_connection_and_keeps_listening(
    proxy: FakeProxy, sandbox: Sandbox, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="alcove.sandbox.tunnel")
    port = free_port()
    with sandbox.create_tunnel(port) as tunnel:
        for _ in range(2):
            conn = socket.create_connection(tunnel.local_address, timeout=T)
            try:
                assert conn.recv(10) == b""
            except ConnectionResetError:
                pass
            conn.close()
        assert not tunnel.closed
    assert proxy.tunnels_opened == 0
    refusals = [r for r in caplog.records if "refused" in r.getMessage()]
    assert len(refusals) == 2 and "502" in refusals[0].getMessage()


def test_explicit_local_port_and_bind_errors(echo: EchoServer, sandbox: Sandbox) -> None:
    port = free_port()
    with sandbox.create_tunnel(echo.port, local_port=port) as tunnel:
        assert tunnel.local_port == port
        with pytest.raises(SandboxConnectionError, match="binding"):
            sandbox.create_tunnel(echo.port, local_port=port)
        conn = socket.create_connection(("127.0.0.1", port), timeout=T)
        conn.sendall(b"x")
        assert recv_exactly(conn, 1) == b"x"
        conn.close()
    with pytest.raises(ValueError):
        sandbox.create_tunnel(echo.port, local_port=70000)
    with pytest.raises(ValueError):
        sandbox.create_tunnel(0)


# ---------------------------------------------------------------------------------------------
# Async tunnels


@pytest.fixture
async def asandbox(server: FakeServer, proxy: FakeProxy, sleeps: list[float]) -> AsyncSandbox:
    server.on("GET", SBX, jsonr(200, info_json(sandbox_url=proxy.url)))
    async with AsyncSandboxClient(api_key="key-1", transport=httpx.MockTransport(server)) as client:
        yield await client.connect("sbx-1")


async def test_async_relays_two_concurrent_connections(
    proxy: FakeProxy, echo: EchoServer, asandbox: AsyncSandbox
) -> None:
    async with await asandbox.create_tunnel(echo.port) as tunnel:
        assert isinstance(tunnel, AsyncTunnel) and tunnel.local_port > 0
        (r1, w1), (r2, w2) = await asyncio.gather(
            asyncio.open_connection(*tunnel.local_address), asyncio.open_connection(*tunnel.local_address)
        )
        big = os.urandom(200_000)
        w1.write(b"one")
        w2.write(big)
        await asyncio.gather(w1.drain(), w2.drain())
        one, echoed = await asyncio.wait_for(asyncio.gather(r1.readexactly(3), r2.readexactly(len(big))), T)
        assert one == b"one" and echoed == big
        w1.close()
        await w1.wait_closed()
        await asyncio.to_thread(eventually, lambda: proxy.tunnels_closed == 1 and echo.closed == 1)
        assert proxy.tunnels_closed == 1
        w2.write(b"two")
        assert await asyncio.wait_for(r2.readexactly(3), T) == b"two"
    assert tunnel.closed
    # Closing the tunnel ended the connection that was still open.
    assert await asyncio.wait_for(r2.read(), T) == b""
    w2.close()
    assert await asyncio.to_thread(eventually, lambda: proxy.tunnels_closed == 2 and echo.closed == 2)
    assert proxy.upgrades[0].headers["authorization"] == "Bearer key-1"
    with pytest.raises(OSError):
        await asyncio.open_connection(*tunnel.local_address)


async def test_async_refused_port_keeps_listening(
    proxy: FakeProxy, asandbox: AsyncSandbox, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="alcove.sandbox.tunnel")
    tunnel = await asandbox.create_tunnel(free_port(), local_port=0)
    try:
        for _ in range(2):
            reader, writer = await asyncio.open_connection(*tunnel.local_address)
            try:
                assert await asyncio.wait_for(reader.read(), T) == b""
            except ConnectionResetError:
                pass
            writer.close()
        assert not tunnel.closed
    finally:
        await tunnel.close()
    assert tunnel.closed and proxy.tunnels_opened == 0
    assert len([r for r in caplog.records if "refused" in r.getMessage()]) == 2


# ---------------------------------------------------------------------------------------------
# websockets compatibility


def test_connect_options_follow_the_installed_websockets() -> None:
    def new_style(uri, *, additional_headers=None, open_timeout=10, legacy=None, **kwargs):  # noqa: ANN001
        pass

    def legacy_style(uri, *, extra_headers=None, open_timeout=10):  # noqa: ANN001
        pass

    options = wsp._options(new_style, {"A": "1"}, open_timeout=3, legacy=True, max_queue=None)
    assert options == {"additional_headers": {"A": "1"}, "open_timeout": 3, "legacy": True}
    assert wsp._options(legacy_style, {"A": "1"}, open_timeout=3, legacy=True) == {
        "extra_headers": {"A": "1"},
        "open_timeout": 3,
    }


def test_connect_errors_map_like_http_answers() -> None:
    class Response:
        status_code = 502
        body = b'{"error": "nothing listens on 5432", "code": "BAD_GATEWAY"}'

    class Refused(Exception):  # the shape of websockets.exceptions.InvalidStatus
        response = Response()

    class LegacyRefused(Exception):  # the shape of the legacy InvalidStatusCode
        status_code = 404

    error = wsp.connect_error(Refused(), "tunnel to sandbox port 5432", "sbx-1")
    assert isinstance(error, RemoteAPIError) and error.status_code == 502 and error.code == "BAD_GATEWAY"
    assert str(error).startswith("tunnel to sandbox port 5432: API error (status 502, BAD_GATEWAY)")
    assert wsp.connect_error(LegacyRefused(), "x", "sbx-1").status_code == 404
    Response.body = b'{"message": "gone", "code": "SANDBOX_NOT_FOUND"}'
    Response.status_code = 404
    assert isinstance(wsp.connect_error(Refused(), "x", "sbx-1"), SandboxNotFoundError)
    assert isinstance(wsp.connect_error(TimeoutError(), "x", "sbx-1"), SandboxTimeoutError)
    assert isinstance(wsp.connect_error(ConnectionRefusedError(111, "refused"), "x", "sbx-1"), SandboxConnectionError)
