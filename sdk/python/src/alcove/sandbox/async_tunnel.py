"""Asynchronous TCP tunnel: a local port that leads to a port inside a sandbox (WIRE.md §3.6).

The twin of ``tunnel.py`` on asyncio: ``asyncio.start_server`` accepts local connections and
each one is relayed by two tasks over its own WebSocket.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Mapping
from types import TracebackType
from typing import Any

from websockets.exceptions import ConnectionClosed

from . import _websocket as wsp
from .tunnel import RELAY_CHUNK_BYTES

logger = logging.getLogger("alcove.sandbox.tunnel")


class AsyncTunnel:
    """A local TCP listener whose connections are relayed to ``remote_port`` in the sandbox.

    Made by :meth:`AsyncSandbox.create_tunnel`; it listens from the start, on the running event
    loop. Each local connection opens its own WebSocket; when the sandbox refuses it (nothing
    listens on the port) that connection is closed and logged, and the tunnel keeps listening.
    Use it as an async context manager or call :meth:`close`::

        async with await sandbox.create_tunnel(8080) as tunnel:
            reader, writer = await asyncio.open_connection(*tunnel.local_address)
    """

    def __init__(
        self,
        url: str,
        headers: Mapping[str, str],
        remote_port: int,
        local_port: int = 0,
        local_host: str = "127.0.0.1",
        connect_timeout: float = wsp.CONNECT_TIMEOUT_SECS,
    ) -> None:
        self._url = url
        self._headers = dict(headers)
        self._remote_port = wsp.validate_port(remote_port, "remote_port")
        self._connect_timeout = connect_timeout
        self._listener: socket.socket | None = wsp.bind_listener(local_host, local_port)
        self._local_host = local_host
        self._local_port = int(self._listener.getsockname()[1])
        self._server: asyncio.Server | None = None
        self._relays: set[asyncio.Task[None]] = set()
        self._closed = False

    async def _start(self) -> None:
        listener, self._listener = self._listener, None
        try:
            self._server = await asyncio.start_server(self._serve, sock=listener)
        except BaseException:
            if listener is not None:
                listener.close()
            raise

    @property
    def remote_port(self) -> int:
        """The port inside the sandbox."""
        return self._remote_port

    @property
    def local_host(self) -> str:
        return self._local_host

    @property
    def local_port(self) -> int:
        """The local port (the one picked by the system when 0 was asked for)."""
        return self._local_port

    @property
    def local_address(self) -> tuple[str, int]:
        """``(local_host, local_port)``, ready for ``asyncio.open_connection(*address)``."""
        return (self._local_host, self._local_port)

    @property
    def websocket_url(self) -> str:
        """The WebSocket URL each local connection opens."""
        return self._url

    @property
    def closed(self) -> bool:
        return self._closed

    def __repr__(self) -> str:
        return (
            f"AsyncTunnel({self._local_host}:{self._local_port} -> sandbox port {self._remote_port}, "
            f"closed={self._closed})"
        )

    async def __aenter__(self) -> AsyncTunnel:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Stop listening and close every relayed connection."""
        if self._closed:
            return
        self._closed = True
        if self._listener is not None:
            self._listener.close()
        if self._server is not None:
            self._server.close()
        relays = list(self._relays)
        for task in relays:
            task.cancel()
        await asyncio.gather(*relays, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    # -- internals ---------------------------------------------------------------------------

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if self._closed or task is None:
            writer.close()
            return
        self._relays.add(task)
        try:
            with contextlib.suppress(OSError):
                writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            try:
                ws = await wsp.async_connect(self._url, self._headers, self._connect_timeout, compression=None)
            except Exception as exc:
                error = wsp.connect_error(exc, f"tunnel to sandbox port {self._remote_port}", "")
                logger.warning("tunnel %s: the sandbox refused a connection, closing it: %s", self, error)
                return
            upstream = asyncio.ensure_future(self._local_to_ws(reader, ws))
            try:
                await self._ws_to_local(ws, writer)
            finally:
                upstream.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await upstream
                await wsp.aclose_draining(ws)
        finally:
            self._relays.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _local_to_ws(self, reader: asyncio.StreamReader, ws: Any) -> None:
        try:
            while data := await reader.read(RELAY_CHUNK_BYTES):
                await ws.send(data)
        except ConnectionClosed:
            return
        except OSError:
            pass
        # The local side ended: so does the connection in the sandbox. (When the relay is
        # cancelled instead, _serve closes the socket.)
        with contextlib.suppress(Exception):
            await ws.close()

    async def _ws_to_local(self, ws: Any, writer: asyncio.StreamWriter) -> None:
        try:
            async for message in ws:
                if isinstance(message, str):
                    logger.warning("tunnel %s: unexpected text frame from the sandbox, closing the connection", self)
                    return
                writer.write(message)
                await writer.drain()
        except (OSError, ConnectionClosed):
            pass
