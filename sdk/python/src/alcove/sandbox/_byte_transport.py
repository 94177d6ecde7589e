"""Byte streams the desktop's RFB client runs over: the sandbox's TCP-tunnel WebSocket, or a socket.

The RFB client (:mod:`._rfb`) needs two things from a transport: send bytes, and receive exactly
``n`` bytes within a timeout. :class:`ByteTransport` / :class:`AsyncByteTransport` say so; the
implementations here are

* :class:`WebSocketTransport` / :class:`AsyncWebSocketTransport`: the tunnel of
  ``/api/v1/tunnels/tcp?port=…`` (docs/protocol/streaming.md), binary frames each way, opened
  with :mod:`._websocket` like :class:`Tunnel`'s, but read in-process: no local listener;
* :class:`SocketTransport` / :class:`AsyncSocketTransport`: a TCP connection straight to a VNC
  server (tests use them against x11vnc; they work with any server the caller can reach).

A receive that times out keeps the bytes that did arrive (they are the start of the next
receive), so a timeout never puts the stream out of step. The end of the stream, or a text frame
on the tunnel, raises :class:`ConnectionError`; a timeout raises the built-in :class:`TimeoutError`.
"""

from __future__ import annotations

import asyncio
import socket
import time
from typing import Any, Protocol

from websockets.exceptions import ConnectionClosed

from . import _websocket as wsp

RECV_CHUNK_BYTES = 1024 * 1024
"""Largest single read of an asyncio stream (a 1280x800 screen is 4 MiB of pixels)."""
READ_AHEAD_BYTES = 64 * 1024
"""How much a socket read may take beyond what was asked for (the next messages' headers)."""
SEND_TIMEOUT_SECS = 30.0
"""Longest wait for a socket to take the bytes of one send."""


class ByteTransport(Protocol):
    """A byte stream for the RFB client (blocking)."""

    def send(self, data: bytes) -> None:
        """Send all of ``data``."""
        ...

    def recv_exactly(self, count: int, timeout: float | None) -> bytes | bytearray:
        """Exactly ``count`` bytes; :class:`TimeoutError` after ``timeout`` s (what arrived is kept)."""
        ...

    def close(self) -> None:
        """Close the stream (idempotent)."""
        ...


class AsyncByteTransport(Protocol):
    """A byte stream for the RFB client (asyncio)."""

    async def send(self, data: bytes) -> None:
        """Send all of ``data``."""
        ...

    async def recv_exactly(self, count: int, timeout: float | None) -> bytes | bytearray:
        """Exactly ``count`` bytes; :class:`TimeoutError` after ``timeout`` s (what arrived is kept)."""
        ...

    async def close(self) -> None:
        """Close the stream (idempotent)."""
        ...


class _Buffer:
    """Bytes received and not consumed yet."""

    def __init__(self) -> None:
        self.data = bytearray()

    def __len__(self) -> int:
        return len(self.data)

    def add(self, chunk: bytes) -> None:
        self.data += chunk

    def take(self, count: int) -> bytearray | None:
        """The first ``count`` bytes (a new bytearray the caller owns), or None while fewer have arrived.

        Nothing is consumed before all ``count`` bytes are there. At most one copy: a screen of
        pixels is megabytes.
        """
        have = len(self.data)
        if have < count:
            return None
        if have == count:
            data, self.data = self.data, bytearray()
            return data
        data = self.data[:count]
        del self.data[:count]  # cheap: bytearray drops a prefix by moving its start
        return data


def _deadline(timeout: float | None) -> float | None:
    return None if timeout is None else time.monotonic() + timeout


def _remaining(deadline: float | None) -> float | None:
    if deadline is None:
        return None
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError("no data from the VNC server in time")
    return left


def _closed_error(exc: ConnectionClosed) -> ConnectionError:
    code, reason = wsp.close_details(exc)
    detail = f" (code {code}{', ' + reason if reason else ''})" if code is not None else ""
    return ConnectionError(f"the desktop tunnel was closed{detail}")


def _binary(message: Any) -> bytes:
    if isinstance(message, str):
        raise ConnectionError("the desktop tunnel sent a text frame; a TCP tunnel carries binary frames only")
    return bytes(message)


class SocketTransport:
    """A connected TCP socket (the caller keeps no other use of it; :meth:`close` closes it)."""

    @classmethod
    def connect(cls, host: str, port: int, timeout: float = 10.0) -> SocketTransport:
        """Connect to ``host:port``."""
        return cls(socket.create_connection((host, port), timeout))

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._buffer = _Buffer()
        self._closed = False
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # input events are tiny
        except OSError:
            pass

    def send(self, data: bytes) -> None:
        self._sock.settimeout(SEND_TIMEOUT_SECS)
        self._sock.sendall(data)

    def recv_exactly(self, count: int, timeout: float | None) -> bytearray:
        deadline = _deadline(timeout)
        buffer = self._buffer.data
        have = len(buffer)
        if have < count:
            # Read straight into the buffer's tail (room for what is missing, or a little read-ahead
            # for small reads), then cut it back to what arrived, even on a timeout: that is kept.
            buffer.extend(bytes(max(count, have + READ_AHEAD_BYTES) - have))
            try:
                with memoryview(buffer) as view:
                    while have < count:
                        self._sock.settimeout(_remaining(deadline))
                        tail = view[have:]
                        try:
                            received = self._sock.recv_into(tail)
                        except TimeoutError:  # socket.timeout
                            raise TimeoutError("no data from the VNC server in time") from None
                        finally:
                            tail.release()
                        if not received:
                            raise ConnectionError("the VNC server closed the connection")
                        have += received
            finally:
                del buffer[have:]
        data = self._buffer.take(count)
        assert data is not None
        return data

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._sock.close()


class WebSocketTransport:
    """The sandbox's TCP tunnel: a ``websockets.sync`` connection carrying the stream in binary frames."""

    def __init__(self, ws: Any) -> None:
        self._ws = ws
        self._buffer = _Buffer()
        self._closed = False

    def send(self, data: bytes) -> None:
        try:
            self._ws.send(data)
        except ConnectionClosed as exc:
            raise _closed_error(exc) from exc

    def recv_exactly(self, count: int, timeout: float | None) -> bytearray:
        deadline = _deadline(timeout)
        while (data := self._buffer.take(count)) is None:
            try:
                message = wsp.recv(self._ws, _remaining(deadline))
            except ConnectionClosed as exc:
                raise _closed_error(exc) from exc
            self._buffer.add(_binary(message))
        return data

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            # Closing the WebSocket closes the connection to the VNC server in the sandbox.
            wsp.close_draining(self._ws)


class AsyncSocketTransport:
    """A TCP connection as an asyncio reader / writer pair."""

    @classmethod
    async def connect(cls, host: str, port: int, timeout: float = 10.0) -> AsyncSocketTransport:
        """Connect to ``host:port``."""
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
        except asyncio.TimeoutError:
            raise TimeoutError(f"connecting to {host}:{port} timed out") from None
        return cls(reader, writer)

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        self._buffer = _Buffer()
        self._closed = False
        sock = writer.get_extra_info("socket")
        if sock is not None:
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass

    async def send(self, data: bytes) -> None:
        self._writer.write(data)
        try:
            await asyncio.wait_for(self._writer.drain(), SEND_TIMEOUT_SECS)
        except asyncio.TimeoutError:
            raise TimeoutError("the VNC server did not take the data in time") from None

    async def recv_exactly(self, count: int, timeout: float | None) -> bytearray:
        deadline = _deadline(timeout)
        while (data := self._buffer.take(count)) is None:
            try:
                # Cancelling StreamReader.read() loses nothing: it takes bytes only when it returns.
                chunk = await asyncio.wait_for(self._reader.read(RECV_CHUNK_BYTES), _remaining(deadline))
            except asyncio.TimeoutError:
                raise TimeoutError("no data from the VNC server in time") from None
            if not chunk:
                raise ConnectionError("the VNC server closed the connection")
            self._buffer.add(chunk)
        return data

    async def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._writer.close()
            try:
                await self._writer.wait_closed()
            except OSError:
                pass


class AsyncWebSocketTransport:
    """The sandbox's TCP tunnel on asyncio (a ``websockets`` asyncio connection)."""

    def __init__(self, ws: Any) -> None:
        self._ws = ws
        self._buffer = _Buffer()
        self._closed = False

    async def send(self, data: bytes) -> None:
        try:
            await self._ws.send(data)
        except ConnectionClosed as exc:
            raise _closed_error(exc) from exc

    async def recv_exactly(self, count: int, timeout: float | None) -> bytearray:
        deadline = _deadline(timeout)
        while (data := self._buffer.take(count)) is None:
            try:
                # websockets documents recv() as safe to cancel: the message stays queued.
                message = await wsp.arecv(self._ws, _remaining(deadline))
            except ConnectionClosed as exc:
                raise _closed_error(exc) from exc
            self._buffer.add(_binary(message))
        return data

    async def close(self) -> None:
        if not self._closed:
            self._closed = True
            await wsp.aclose_draining(self._ws)
