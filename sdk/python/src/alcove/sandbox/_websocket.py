"""WebSocket addressing for PTY sessions and TCP tunnels, written once for sync and async.

URLs use the proxy's **self-routing** form, ``{sandbox_url}/sandboxes/{sandbox_id}/api/v1/...``
with ``http→ws`` / ``https→wss``: the sandbox is named in the path, so the URL works with any
plain WebSocket client and needs no ``Host`` override (which the ``websockets`` library cannot
replace without sending a second ``Host`` header). As for the official SDKs' sockets, the PTY URL
keeps a path prefix of ``sandbox_url`` while the tunnel URL replaces the whole path (see
docs/protocol/proxy.md, Addressing a sandbox).

This is also the only module that knows the differences between ``websockets`` releases (12 and
later): the header argument is ``additional_headers`` in the new implementations and
``extra_headers`` in the legacy asyncio one, and a refused upgrade raises ``InvalidStatus``
(with the response) or the legacy ``InvalidStatusCode``. Closing reads what still arrives
(:func:`close_draining`), because a receive queue left full would stall the closing handshake.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import socket
import threading
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

import httpx
from websockets.exceptions import ConnectionClosed, InvalidHandshake
from websockets.sync.client import connect as _sync_connect

from ._config import ClientConfig
from ._protocol import USER_AGENT, ProxyTarget, error_from_response
from .exceptions import (
    RemoteAPIError,
    SandboxConnectionError,
    SandboxException,
    SandboxNotFoundError,
    SandboxNotRoutableError,
    SandboxTimeoutError,
)

try:  # websockets >= 13: the new asyncio implementation
    from websockets.asyncio.client import connect as _async_connect
except ImportError:  # pragma: no cover - websockets 12: the legacy asyncio implementation
    from websockets.client import connect as _async_connect  # type: ignore[no-redef]

WS_SCHEMES = {"http": "ws", "https": "wss", "ws": "ws", "wss": "wss"}
CONNECT_TIMEOUT_SECS = 10.0
"""Longest wait for the WebSocket handshake (capped by the client's timeout)."""
CLOSE_TIMEOUT_SECS = 5.0
"""Longest wait for the peer to answer a close frame."""

# ---------------------------------------------------------------------------------------------
# URLs and headers


def _split(sandbox_url: str, sandbox_id: str) -> tuple[str, str, str]:
    parts = urlsplit((sandbox_url or "").strip())
    scheme = WS_SCHEMES.get(parts.scheme)
    if scheme is None or not parts.netloc:
        raise SandboxNotRoutableError(f"sandbox {sandbox_id}: unusable sandbox_url {sandbox_url!r}")
    return scheme, parts.netloc.rpartition("@")[2], parts.path.rstrip("/")


def self_routing_base(sandbox_url: str, sandbox_id: str, *, keep_path: bool = True) -> str:
    """``ws(s)://host[:port][/prefix]/sandboxes/<sandbox_id>``: the sandbox's API, routed by path."""
    if not isinstance(sandbox_id, str) or not sandbox_id:
        raise ValueError(f"sandbox_id must be a non-empty string, got {sandbox_id!r}")
    scheme, netloc, path = _split(sandbox_url, sandbox_id)
    return f"{scheme}://{netloc}{path if keep_path else ''}/sandboxes/{quote(sandbox_id, safe='')}"


def pty_websocket_url(sandbox_url: str, sandbox_id: str, session_id: str, token: str) -> str:
    """The self-routing URL of a PTY session's socket, token in the query (docs/protocol/streaming.md)."""
    base = self_routing_base(sandbox_url, sandbox_id, keep_path=True)
    return f"{base}/api/v1/pty/{quote(session_id, safe='')}/ws?{urlencode({'token': token})}"


def tunnel_websocket_url(sandbox_url: str, sandbox_id: str, remote_port: int) -> str:
    """The self-routing URL of a TCP tunnel to ``remote_port`` (the path is replaced)."""
    base = self_routing_base(sandbox_url, sandbox_id, keep_path=False)
    return f"{base}/api/v1/tunnels/tcp?{urlencode({'port': validate_port(remote_port, 'remote_port')})}"


def websocket_headers(cfg: ClientConfig, target: ProxyTarget, token: str | None = None) -> dict[str, str]:
    """Headers of a WebSocket upgrade: API key, route hint and (for a PTY) ``X-PTY-Token``.

    No ``Host`` / ``X-Tensorlake-Sandbox-Id``: the self-routing URL names the sandbox. The
    ``User-Agent`` is passed separately (see :func:`connect`).
    """
    headers: dict[str, str] = {}
    if cfg.api_key:
        headers["Authorization"] = f"Bearer {cfg.api_key}"
    hint = target.headers.get("X-Tensorlake-Route-Hint")
    if hint:
        headers["X-Tensorlake-Route-Hint"] = hint
    if token is not None:
        headers["X-PTY-Token"] = token
    return headers


def validate_port(port: Any, what: str, *, allow_zero: bool = False) -> int:
    low = 0 if allow_zero else 1
    if isinstance(port, bool) or not isinstance(port, int) or not low <= port <= 65535:
        raise ValueError(f"{what} must be an integer between {low} and 65535, got {port!r}")
    return port


def connect_timeout(cfg: ClientConfig) -> float:
    return min(CONNECT_TIMEOUT_SECS, cfg.timeout_secs)


# ---------------------------------------------------------------------------------------------
# websockets compatibility


def _options(connect: Callable[..., Any], headers: Mapping[str, str], **options: Any) -> dict[str, Any]:
    """Keyword arguments for ``connect`` that this release of websockets accepts."""
    try:
        params = inspect.signature(connect).parameters
    except (TypeError, ValueError):  # pragma: no cover - signature not introspectable
        params = {}
    header_arg = "extra_headers" if "extra_headers" in params and "additional_headers" not in params else None
    kwargs: dict[str, Any] = {header_arg or "additional_headers": dict(headers)}
    for name, value in options.items():
        if name in params:
            kwargs[name] = value
    return kwargs


def _connect_options(open_timeout: float, compression: str | None) -> dict[str, Any]:
    return {
        "open_timeout": open_timeout,
        "close_timeout": CLOSE_TIMEOUT_SECS,
        "compression": compression,
        "max_size": None,
        "user_agent_header": USER_AGENT,
    }


def connect(url: str, headers: Mapping[str, str], open_timeout: float, compression: str | None = "deflate") -> Any:
    """Open a ``websockets.sync`` client connection (raises the library's own exceptions).

    ``legacy=True`` (websockets >= 17) asks for the connection itself, not a context manager.
    """
    options = _connect_options(open_timeout, compression)
    return _sync_connect(url, **_options(_sync_connect, headers, legacy=True, **options))


async def aconnect(
    url: str, headers: Mapping[str, str], open_timeout: float, compression: str | None = "deflate"
) -> Any:
    """The asyncio twin of :func:`connect`."""
    return await _async_connect(url, **_options(_async_connect, headers, **_connect_options(open_timeout, compression)))


def is_open(ws: Any) -> bool:
    """Whether a connection (sync or asyncio) is still open: websockets reads frames in the
    background, so a close by the peer shows here before anyone reads."""
    state = getattr(ws, "state", None)
    return state is None or getattr(state, "name", "OPEN") == "OPEN"


def recv(ws: Any, timeout: float | None) -> Any:
    """The next message of a sync connection; :class:`TimeoutError` when none came within ``timeout``."""
    return ws.recv(timeout)


async def arecv(ws: Any, timeout: float | None) -> Any:
    """The asyncio twin of :func:`recv` (it raises the built-in :class:`TimeoutError` too)."""
    try:
        return await asyncio.wait_for(ws.recv(), timeout)
    except asyncio.TimeoutError:
        raise TimeoutError(f"no message within {timeout}s") from None


def close_draining(ws: Any, on_message: Callable[[Any], None] | None = None) -> ConnectionClosed | None:
    """Close a sync connection while reading what still arrives (handed to ``on_message``).

    The closing handshake needs the peer's close frame, which sits behind any unread messages:
    without reading them, a full receive queue would stall ``close()`` for its whole timeout.
    Returns the ``ConnectionClosed`` that ended the reads (it carries the peer's close frame).
    """
    closer = threading.Thread(target=_quietly, args=(ws.close,), name="alcove-ws-close", daemon=True)
    closer.start()
    ended: ConnectionClosed | None = None
    try:
        while True:
            message = ws.recv(CLOSE_TIMEOUT_SECS)
            if on_message is not None:
                on_message(message)
    except ConnectionClosed as exc:
        ended = exc
    except Exception:  # timed out, or another thread is reading: the closer finishes alone
        pass
    closer.join(CLOSE_TIMEOUT_SECS)
    return ended


async def aclose_draining(ws: Any, on_message: Callable[[Any], None] | None = None) -> ConnectionClosed | None:
    """The asyncio twin of :func:`close_draining`."""
    closing = asyncio.ensure_future(ws.close())
    ended: ConnectionClosed | None = None
    try:
        while True:
            message = await asyncio.wait_for(ws.recv(), CLOSE_TIMEOUT_SECS)
            if on_message is not None:
                on_message(message)
    except ConnectionClosed as exc:
        ended = exc
    except Exception:  # timed out, or another task is reading: the close finishes alone
        pass
    with contextlib.suppress(Exception):
        await closing
    return ended


def _quietly(function: Callable[[], Any]) -> None:
    with contextlib.suppress(Exception):
        function()


def handshake_status(exc: BaseException) -> int | None:
    """The HTTP status of a refused upgrade, or None when the failure was not a refusal."""
    response = getattr(exc, "response", None)
    status = getattr(response, "status_code", None) or getattr(exc, "status_code", None)
    return status if isinstance(status, int) else None


def connect_error(exc: BaseException, what: str, sandbox_id: str) -> SandboxException:
    """Map a failed WebSocket connect to an SDK exception.

    A refused upgrade is mapped like any proxy answer (``SANDBOX_NOT_FOUND`` →
    :class:`SandboxNotFoundError`, 401/403 → :class:`AuthenticationError`, else
    :class:`RemoteAPIError`); a timeout → :class:`SandboxTimeoutError`; anything else →
    :class:`SandboxConnectionError`.
    """
    status = handshake_status(exc)
    if status is not None:
        response = getattr(exc, "response", None)
        body = getattr(response, "body", None) or b""
        error = error_from_response(httpx.Response(status, content=bytes(body)))
        if isinstance(error, RemoteAPIError) and error.code == "SANDBOX_NOT_FOUND":
            return SandboxNotFoundError(sandbox_id, error.message, error.code)
        if isinstance(error, RemoteAPIError):
            error.args = (f"{what}: {error.args[0]}",)
        return error
    if isinstance(exc, TimeoutError):
        return SandboxTimeoutError(f"{what}: timed out opening the WebSocket")
    if isinstance(exc, (OSError, InvalidHandshake, EOFError)):
        return SandboxConnectionError(f"{what}: {exc or type(exc).__name__}")
    return SandboxConnectionError(f"{what}: {type(exc).__name__}: {exc}")


def close_details(exc: BaseException) -> tuple[int | None, str]:
    """``(code, reason)`` of the close frame the server sent, from a ``ConnectionClosed``; 1006
    (abnormal closure) when none came."""
    if hasattr(exc, "rcvd"):  # websockets' own ``code``/``reason`` of it are deprecated
        received = exc.rcvd
        if received is None:
            return 1006, ""
        return getattr(received, "code", None), getattr(received, "reason", "") or ""
    return getattr(exc, "code", None), getattr(exc, "reason", "") or ""


# ---------------------------------------------------------------------------------------------
# Local listeners (tunnels)


def bind_listener(local_host: str, local_port: int) -> socket.socket:
    """Bind and listen on ``local_host:local_port`` (0 = an ephemeral port)."""
    if not isinstance(local_host, str) or not local_host:
        raise ValueError(f"local_host must be a non-empty string, got {local_host!r}")
    validate_port(local_port, "local_port", allow_zero=True)
    family = socket.AF_INET6 if ":" in local_host else socket.AF_INET
    try:
        return socket.create_server((local_host, local_port), family=family)
    except OSError as exc:
        raise SandboxConnectionError(f"binding the tunnel listener on {local_host}:{local_port}: {exc}") from exc
