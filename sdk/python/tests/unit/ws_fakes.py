"""A real loopback fake of the proxy's WebSocket routes (PTY and TCP tunnels) and a TCP echo server.

``FakeProxy`` is a ``websockets.sync.server`` on 127.0.0.1 serving the self-routing paths
``/sandboxes/<id>/api/v1/pty/<session>/ws`` and ``/sandboxes/<id>/api/v1/tunnels/tcp?port=N``
as docs/protocol/streaming.md describes them. It runs in a thread, so sync and async clients can use it.
"""

from __future__ import annotations

import re
import socket
import socketserver
import struct
import threading
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs, urlsplit

from websockets.exceptions import ConnectionClosed
from websockets.sync.server import serve

ROUTE = re.compile(r"/sandboxes/(?P<sandbox>[^/]+)/api/v1/(?P<rest>.*)")
PTY_ROUTE = re.compile(r"pty/(?P<session>[^/]+)/ws")


@dataclass
class Upgrade:
    """One WebSocket upgrade request the proxy received."""

    path: str
    headers: dict[str, str]
    host_values: list[str]


@dataclass
class FakePty:
    """A PTY session: echoes input as output and ends on ``exit N`` typed into it.

    ``exit_mode``: ``"frame"`` sends the 0x03 frame then closes without a reason, ``"reason"``
    only closes with ``exit:N``, ``"both"`` does both. Typing ``flood N`` sends N output frames
    ``<0>``, ``<1>``, …; ``terminate`` closes with ``session terminated``; ``crash`` closes with 1011.
    """

    token: str
    exit_mode: str = "both"
    frames: list[list[bytes]] = field(default_factory=list)
    """The frames received, per connection."""
    killed: bool = False

    def serve(self, ws: Any) -> None:
        frames: list[bytes] = []
        self.frames.append(frames)
        number = len(self.frames)
        try:
            first = ws.recv(timeout=10)
        except (ConnectionClosed, TimeoutError):
            return
        frames.append(first)
        if first != b"\x02":
            ws.close(1002, "expected READY first")
            return
        # Output was held back until READY; a text frame first, which clients must ignore.
        ws.send("a text frame")
        ws.send(b"\x00" + f"welcome {number}\r\n$ ".encode())
        try:
            for message in ws:
                frames.append(message)
                if isinstance(message, str) or not message:
                    continue
                if message[0] == 0x01:
                    cols, rows = struct.unpack(">HH", message[1:5])
                    ws.send(b"\x00" + f"[{cols}x{rows}]".encode())
                elif message[0] == 0x00:
                    self._input(ws, message[1:])
        except ConnectionClosed:
            pass

    def _input(self, ws: Any, data: bytes) -> None:
        ws.send(b"\x00" + data.replace(b"\n", b"\r\n"))
        text = data.decode(errors="replace")
        if (match := re.search(r"exit (-?\d+)", text)) is not None:
            code = int(match.group(1))
            if self.exit_mode in ("frame", "both"):
                ws.send(b"\x03" + struct.pack(">i", code))
            ws.close(1000, f"exit:{code}" if self.exit_mode in ("reason", "both") else "")
        elif (match := re.search(r"flood (\d+)", text)) is not None:
            for index in range(int(match.group(1))):
                ws.send(b"\x00" + f"<{index}>".encode())
        elif "terminate" in text:
            ws.close(1000, "session terminated")
        elif "crash" in text:
            ws.close(1011, "boom")


def _reject(connection: Any, status: int, body: str) -> Any:
    return connection.protocol.reject(HTTPStatus(status), body)  # (websockets 12 has no connection.respond)


class FakeProxy:
    def __init__(self) -> None:
        self.sessions: dict[str, FakePty] = {}
        self.upgrades: list[Upgrade] = []
        self.tunnels_opened = 0
        self.tunnels_closed = 0
        self._lock = threading.Lock()
        self._inner: dict[int, socket.socket] = {}
        self._server = serve(self._handle, "127.0.0.1", 0, process_request=self._process_request)
        self.port = self._server.socket.getsockname()[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def add_session(self, session_id: str, token: str, exit_mode: str = "both") -> FakePty:
        session = FakePty(token=token, exit_mode=exit_mode)
        self.sessions[session_id] = session
        return session

    def close(self) -> None:
        self._server.shutdown()
        self._thread.join(5)

    def _process_request(self, connection: Any, request: Any) -> Any:
        headers = {name.lower(): value for name, value in request.headers.raw_items()}
        self.upgrades.append(Upgrade(request.path, headers, request.headers.get_all("Host")))
        parts = urlsplit(request.path)
        route = ROUTE.fullmatch(parts.path)
        if route is None:
            return _reject(connection, 404, '{"error": "no route", "code": "NOT_FOUND"}')
        query = parse_qs(parts.query)
        rest = route.group("rest")
        if (pty := PTY_ROUTE.fullmatch(rest)) is not None:
            session = self.sessions.get(pty.group("session"))
            if session is None:
                return _reject(connection, 404, '{"error": "no such PTY session", "code": "NOT_FOUND"}')
            if query.get("token") != [session.token] or headers.get("x-pty-token") != session.token:
                return _reject(connection, 403, '{"error": "bad PTY token", "code": "FORBIDDEN"}')
            return None
        if rest == "tunnels/tcp":
            try:
                self._inner[id(connection)] = socket.create_connection(("127.0.0.1", int(query["port"][0])), timeout=2)
            except OSError:
                return _reject(connection, 502, '{"error": "nothing listens on the port", "code": "BAD_GATEWAY"}')
            return None
        return _reject(connection, 404, '{"error": "no route", "code": "NOT_FOUND"}')

    def _handle(self, ws: Any) -> None:
        parts = urlsplit(ws.request.path)
        rest = ROUTE.fullmatch(parts.path).group("rest")
        if (pty := PTY_ROUTE.fullmatch(rest)) is not None:
            self.sessions[pty.group("session")].serve(ws)
        else:
            self._tunnel(ws, self._inner.pop(id(ws)))

    def _tunnel(self, ws: Any, sock: socket.socket) -> None:
        sock.settimeout(None)
        with self._lock:
            self.tunnels_opened += 1

        def inner_to_ws() -> None:
            try:
                while data := sock.recv(65536):
                    ws.send(data)
            except (OSError, ConnectionClosed):
                pass
            finally:
                ws.close()

        pump = threading.Thread(target=inner_to_ws, daemon=True)
        pump.start()
        try:
            for message in ws:
                if isinstance(message, bytes):
                    sock.sendall(message)
        except (OSError, ConnectionClosed):
            pass
        finally:
            try:
                sock.shutdown(socket.SHUT_WR)
            except OSError:
                pass
            pump.join(5)
            sock.close()
            with self._lock:
                self.tunnels_closed += 1


class _EchoHandler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        server: EchoServer = self.server  # type: ignore[assignment]
        with server.lock:
            server.opened += 1
        try:
            while data := self.request.recv(65536):
                self.request.sendall(data)
        except OSError:
            pass
        finally:
            with server.lock:
                server.closed += 1


class EchoServer(socketserver.ThreadingTCPServer):
    """A TCP echo server on 127.0.0.1 counting the connections it opened and saw end."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _EchoHandler)
        self.lock = threading.Lock()
        self.opened = 0
        self.closed = 0
        self.port = self.server_address[1]
        self._thread = threading.Thread(target=self.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self.shutdown()
        self.server_close()
        self._thread.join(5)


def free_port() -> int:
    """A local port with nothing listening on it (bound then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
