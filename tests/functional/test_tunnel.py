"""TCP tunnels (docs/protocol/sandbox-api.md, TCP tunnels): a local port relayed to `python -m http.server` in a
sandbox, concurrent connections, large bodies, and a port where nothing listens."""

from __future__ import annotations

import hashlib
import logging
import os
import socket

import httpx
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect as ws_connect

WEB_ROOT = "/tmp/www"


def wait_listening(sandbox, port: int) -> None:
    """Returns once something accepts connections on `port` in the sandbox (the official SDK's desktop probe)."""
    probe = (
        f"for i in $(seq 400); do (exec 3<>/dev/tcp/127.0.0.1/{port}) 2>/dev/null && exit 0; sleep 0.05; done; exit 1"
    )
    assert sandbox.run("bash", ["-c", probe]).exit_code == 0, f"nothing listens on {port}"


def start_http_server(sandbox, port: int) -> None:
    sandbox.start_process("python3", ["-m", "http.server", str(port), "--bind", "0.0.0.0"], working_dir=WEB_ROOT)
    wait_listening(sandbox, port)


@pytest.fixture
def web(sandbox):
    sandbox.write_file(f"{WEB_ROOT}/hello-tunnel.txt", b"hello through the tunnel\n")
    start_http_server(sandbox, 8000)
    return sandbox


def read_to_eof(conn: socket.socket) -> bytes:
    data = b""
    while chunk := conn.recv(65536):
        data += chunk
    return data


def test_http_server_through_the_tunnel(web):
    with web.create_tunnel(8000) as tunnel:
        assert tunnel.remote_port == 8000
        assert tunnel.local_port > 0
        assert tunnel.local_address == ("127.0.0.1", tunnel.local_port)
        listing = httpx.get(f"http://127.0.0.1:{tunnel.local_port}/", timeout=10)
        assert listing.status_code == 200
        assert "Directory listing for /" in listing.text
        assert "hello-tunnel.txt" in listing.text
        got = httpx.get(f"http://127.0.0.1:{tunnel.local_port}/hello-tunnel.txt", timeout=10)
        assert got.content == b"hello through the tunnel\n"
        # Many frames each way: a large body arrives intact.
        blob = os.urandom(8 * 1024 * 1024 + 17)
        web.write_file(f"{WEB_ROOT}/blob.bin", blob)
        got = httpx.get(f"http://127.0.0.1:{tunnel.local_port}/blob.bin", timeout=30)
        assert got.status_code == 200
        assert hashlib.sha256(got.content).hexdigest() == hashlib.sha256(blob).hexdigest()
    assert tunnel.closed
    with pytest.raises(OSError):
        socket.create_connection(tunnel.local_address, timeout=5).recv(1)


def test_a_chosen_local_port(web):
    from framework.server import free_port

    port = free_port()
    with web.create_tunnel(8000, local_port=port) as tunnel:
        assert tunnel.local_port == port
        assert httpx.get(f"http://127.0.0.1:{port}/hello-tunnel.txt", timeout=10).status_code == 200


def test_two_connections_at_once(web):
    """A is half-way through its request while B is served in full: each connection is relayed
    on its own, and B's answer cannot depend on A finishing."""
    with web.create_tunnel(8000) as tunnel:
        a = socket.create_connection(tunnel.local_address, timeout=10)
        b = socket.create_connection(tunnel.local_address, timeout=10)
        with a, b:
            a.sendall(b"GET /hello-tunnel.txt HTTP/1.0\r\n")
            b.sendall(b"GET / HTTP/1.0\r\n\r\n")
            answer_b = read_to_eof(b)
            assert answer_b.startswith(b"HTTP/1.0 200")
            assert b"hello-tunnel.txt" in answer_b
            a.sendall(b"Host: x\r\n\r\n")
            answer_a = read_to_eof(a)
            assert answer_a.startswith(b"HTTP/1.0 200")
            assert answer_a.endswith(b"\r\n\r\nhello through the tunnel\n")


def test_closed_port_closes_the_connection_and_the_tunnel_lives_on(web, caplog):
    caplog.set_level(logging.WARNING, logger="alcove.sandbox.tunnel")
    with web.create_tunnel(8000) as open_tunnel, web.create_tunnel(8001) as tunnel:
        conn = socket.create_connection(tunnel.local_address, timeout=10)
        with conn:
            conn.sendall(b"GET / HTTP/1.0\r\n\r\n")
            try:
                assert conn.recv(1) == b""  # closed, not hanging (the timeout would raise)
            except ConnectionResetError:
                pass
        assert "CONNECTION_REFUSED" in caplog.text
        # The other tunnel is unaffected ...
        assert httpx.get(f"http://127.0.0.1:{open_tunnel.local_port}/", timeout=10).status_code == 200
        # ... and this one still listens: once a server is up on 8001 it relays to it.
        assert not tunnel.closed
        start_http_server(web, 8001)
        got = httpx.get(f"http://127.0.0.1:{tunnel.local_port}/hello-tunnel.txt", timeout=10)
        assert got.content == b"hello through the tunnel\n"


def test_tunnel_endpoint_errors(server, web):
    base = f"ws://localhost:{server.port}/sandboxes/{web.sandbox_id}/api/v1/tunnels/tcp"
    for query, status, code in (
        ("port=8001", 502, "CONNECTION_REFUSED"),
        ("port=0", 400, "INVALID_ARGUMENT"),
        ("port=x", 400, "INVALID_ARGUMENT"),
        ("", 400, "INVALID_ARGUMENT"),
    ):
        with pytest.raises(InvalidStatus) as refused:
            ws_connect(f"{base}?{query}", open_timeout=10)
        assert refused.value.response.status_code == status, query
        assert code.encode() in refused.value.response.body, query
    # Not an upgrade.
    resp = server.api("GET", "/api/v1/tunnels/tcp?port=8000", headers={"X-Tensorlake-Sandbox-Id": web.sandbox_id})
    assert resp.status_code == 400
    # A raw WebSocket client speaks to the service directly.
    with ws_connect(f"{base}?port=8000", open_timeout=10) as ws:
        ws.send(b"GET /hello-tunnel.txt HTTP/1.0\r\n\r\n")
        answer = b""
        for message in ws:
            assert isinstance(message, bytes)
            answer += message
    assert answer.endswith(b"hello through the tunnel\n")
    assert ws.close_code == 1000
