"""Synchronous TCP tunnel: a local port that leads to a port inside a sandbox.

A thread accepts local connections; each one gets its own WebSocket to the sandbox and two
relays (local → socket in a helper thread, socket → local in the connection's thread). The
listener, the addresses and the logging come from :mod:`._tunnel_base`; the URL, the headers and
the ``websockets`` calls from :mod:`._websocket`.
"""

from __future__ import annotations

import errno
import socket
import threading
import time
from types import TracebackType
from typing import Any

from websockets.exceptions import ConnectionClosed

from . import _websocket as wsp
from ._tunnel_base import RELAY_CHUNK_BYTES, TunnelBase, logger

ACCEPT_POLL_SECS = 0.5
"""How often the accept loop checks whether the tunnel was closed."""
ACCEPT_RETRY_SECS = 0.5
"""Pause after the process ran out of file descriptors or buffers."""
CLOSE_JOIN_SECS = 1.0
_RESOURCE_ERRNOS = frozenset(
    getattr(errno, name) for name in ("EMFILE", "ENFILE", "ENOBUFS", "ENOMEM") if hasattr(errno, name)
)


class _Relay:
    """One accepted local connection and the WebSocket that carries it."""

    def __init__(self, local: socket.socket) -> None:
        self.local = local
        self.ws: Any = None
        self.thread: threading.Thread | None = None
        self.closed = False

    def abort(self) -> None:
        """Wake both relays: they then close the WebSocket and the local socket."""
        self.closed = True
        _shutdown(self.local)


def _shutdown(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


class Tunnel(TunnelBase):
    """A local TCP listener whose connections are relayed to ``remote_port`` in the sandbox.

    Made by :meth:`Sandbox.create_tunnel`; it listens from the start. Each local connection
    opens its own WebSocket; when the sandbox refuses it (nothing listens on the port) that
    connection is closed and logged, and the tunnel keeps listening. Use it as a context
    manager or call :meth:`close`::

        with sandbox.create_tunnel(5432) as tunnel:
            conn = psycopg.connect(host=tunnel.local_host, port=tunnel.local_port)
    """

    def _setup(self) -> None:
        self._listener.settimeout(ACCEPT_POLL_SECS)
        self._relays: set[_Relay] = set()
        self._lock = threading.Lock()
        self._accept_thread: threading.Thread | None = None

    def _start(self) -> None:
        self._accept_thread = threading.Thread(
            target=self._accept_loop, name=f"alcove-tunnel-{self._local_port}-{self._remote_port}", daemon=True
        )
        self._accept_thread.start()

    def __enter__(self) -> Tunnel:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        """Stop listening and close every relayed connection."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            relays = list(self._relays)
        _shutdown(self._listener)
        self._listener.close()
        for relay in relays:
            relay.abort()
        deadline = time.monotonic() + CLOSE_JOIN_SECS
        for thread in [self._accept_thread, *(relay.thread for relay in relays)]:
            if thread is not None and thread is not threading.current_thread():
                thread.join(max(0.0, deadline - time.monotonic()))

    # -- internals ---------------------------------------------------------------------------

    def _accept_loop(self) -> None:
        while not self._closed:
            try:
                local, _ = self._listener.accept()
            except TimeoutError:
                continue
            except (ConnectionAbortedError, ConnectionResetError):
                continue
            except OSError as exc:
                if self._closed:
                    return
                if exc.errno in _RESOURCE_ERRNOS:
                    time.sleep(ACCEPT_RETRY_SECS)
                    continue
                logger.error("tunnel %s stopped listening: %s", self, exc)
                self.close()
                return
            relay = _Relay(local)
            with self._lock:
                if self._closed:
                    local.close()
                    return
                self._relays.add(relay)
            relay.thread = threading.Thread(
                target=self._serve, args=(relay,), name=f"alcove-tunnel-relay-{self._remote_port}", daemon=True
            )
            relay.thread.start()

    def _serve(self, relay: _Relay) -> None:
        local = relay.local
        try:
            local.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass
        try:
            try:
                ws = wsp.connect(self._url, self._headers, self._connect_timeout, compression=None)
            except Exception as exc:
                self._refused(exc)
                return
            relay.ws = ws
            upstream = threading.Thread(
                target=self._local_to_ws, args=(relay, ws), name="alcove-tunnel-upstream", daemon=True
            )
            upstream.start()
            try:
                self._ws_to_local(relay, ws)
            finally:
                _shutdown(local)  # wakes the upstream relay if the sandbox side ended first
                wsp.close_draining(ws)
                upstream.join()
        finally:
            local.close()
            with self._lock:
                self._relays.discard(relay)

    def _local_to_ws(self, relay: _Relay, ws: Any) -> None:
        try:
            while not relay.closed:
                data = relay.local.recv(RELAY_CHUNK_BYTES)
                if not data:
                    break
                ws.send(data)
        except (OSError, ConnectionClosed):
            pass
        finally:
            try:
                ws.close()  # the local side ended: so does the connection in the sandbox
            except Exception:
                pass

    def _ws_to_local(self, relay: _Relay, ws: Any) -> None:
        try:
            for message in ws:
                if isinstance(message, str):
                    self._unexpected_text()
                    return
                relay.local.sendall(message)
        except (OSError, ConnectionClosed):
            pass
