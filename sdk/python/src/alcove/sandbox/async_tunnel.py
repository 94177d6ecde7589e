"""Asynchronous TCP tunnel: a local port that leads to a port inside a sandbox.

The twin of ``tunnel.py`` on asyncio: ``asyncio.start_server`` accepts local connections and
each one is relayed by two tasks over its own WebSocket. The listener, the addresses and the
logging come from :mod:`._tunnel_base`.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from types import TracebackType
from typing import Any

from websockets.exceptions import ConnectionClosed

from . import _websocket as wsp
from ._tunnel_base import RELAY_CHUNK_BYTES, TunnelBase


class AsyncTunnel(TunnelBase):
    """A local TCP listener whose connections are relayed to ``remote_port`` in the sandbox.

    Made by :meth:`AsyncSandbox.create_tunnel`; it listens from the start, on the running event
    loop. Each local connection opens its own WebSocket; when the sandbox refuses it (nothing
    listens on the port) that connection is closed and logged, and the tunnel keeps listening.
    Use it as an async context manager or call :meth:`close`::

        async with await sandbox.create_tunnel(8080) as tunnel:
            reader, writer = await asyncio.open_connection(*tunnel.local_address)
    """

    def _setup(self) -> None:
        self._server: asyncio.Server | None = None
        self._relays: set[asyncio.Task[None]] = set()

    async def _start(self) -> None:
        try:
            self._server = await asyncio.start_server(self._serve, sock=self._listener)
        except BaseException:
            self._listener.close()
            raise

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
        if self._server is None:
            self._listener.close()
        else:
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
                ws = await wsp.aconnect(self._url, self._headers, self._connect_timeout, compression=None)
            except Exception as exc:
                self._refused(exc)
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
                    self._unexpected_text()
                    return
                writer.write(message)
                await writer.drain()
        except (OSError, ConnectionClosed):
            pass
