"""What :class:`Tunnel` and :class:`AsyncTunnel` share: the listener, the addresses and the logging.

The relays themselves differ (threads in ``tunnel.py``, asyncio tasks in ``async_tunnel.py``).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from . import _websocket as wsp

logger = logging.getLogger("alcove.sandbox.tunnel")

RELAY_CHUNK_BYTES = 64 * 1024


class TunnelBase:
    """A bound local listener whose connections are to be relayed to ``remote_port`` in the sandbox."""

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
        self._listener = wsp.bind_listener(local_host, local_port)
        self._local_host = local_host
        self._local_port = int(self._listener.getsockname()[1])
        self._closed = False
        self._setup()

    def _setup(self) -> None:
        """Set up the state of the relays (called by ``__init__``, once the listener is bound)."""

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
        """``(local_host, local_port)``, ready for ``socket.create_connection(address)`` or
        ``asyncio.open_connection(*address)``."""
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
            f"{type(self).__name__}({self._local_host}:{self._local_port} -> sandbox port {self._remote_port}, "
            f"closed={self._closed})"
        )

    def _refused(self, exc: BaseException) -> None:
        """Log a connection the sandbox refused (nothing listens on the port); the tunnel keeps listening."""
        error = wsp.connect_error(exc, f"tunnel to sandbox port {self._remote_port}", "")
        logger.warning("tunnel %s: the sandbox refused a connection, closing it: %s", self, error)

    def _unexpected_text(self) -> None:
        logger.warning("tunnel %s: unexpected text frame from the sandbox, closing the connection", self)
