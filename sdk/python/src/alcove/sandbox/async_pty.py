# pty.py is generated from this file: after a change, run scripts/generate_sync.py (in sdk/python).
"""Asynchronous handle to an interactive terminal (PTY) session in a sandbox.

The frames, the output buffer and the exit rules live in :mod:`._pty_protocol`; the URL and the
``websockets`` calls in :mod:`._websocket`. This class only sends and receives.
"""

from __future__ import annotations

import asyncio  # sync: import threading
from types import TracebackType
from typing import TYPE_CHECKING, Any

from websockets.exceptions import ConnectionClosed

from . import _pty_protocol as ptyp
from . import _websocket as wsp

if TYPE_CHECKING:
    from .async_sandbox import AsyncSandbox


class AsyncPtySession:
    """A terminal session running a command in the sandbox, from :meth:`AsyncSandbox.create_pty`.

    The session lives in the sandbox until its command exits or :meth:`kill`; the socket that
    carries its I/O comes and goes. :meth:`connect` (or ``async with session:``) opens the socket,
    :meth:`close` closes it and leaves the command running, for a later :meth:`connect` or
    ``sandbox.connect_pty(session_id, token)``. Hand :attr:`websocket_url` to any WebSocket
    client to drive the session from elsewhere::

        async with await sandbox.create_pty("bash") as pty:
            await pty.send("echo hi; exit 3\\n")
            print(await pty.read_until("hi\\r\\n", timeout=10))
            print(await pty.wait(timeout=10))  # 3
    """

    def __init__(self, sandbox: AsyncSandbox, session_id: str, token: str) -> None:
        self._sandbox = sandbox
        self._session_id = ptyp.session_field(session_id, "session_id")
        self._token = ptyp.session_field(token, "token")
        self._state = ptyp.PtyState(self._session_id)
        self._ws: Any = None
        self._lock = asyncio.Lock()  # sync: self._lock = threading.Lock()

    @property
    def session_id(self) -> str:
        return self._session_id

    @property
    def token(self) -> str:
        """The secret that opens the session's socket (keep it to reconnect)."""
        return self._token

    @property
    def websocket_url(self) -> str:
        """``ws(s)://…/sandboxes/<id>/api/v1/pty/<session>/ws?token=…``: works with any WebSocket client."""
        info = self._sandbox._info
        return wsp.pty_websocket_url(info.sandbox_url or "", info.sandbox_id, self._session_id, self._token)

    @property
    def exit_code(self) -> int | None:
        """The command's exit code, once this handle has seen it exit; None before."""
        return self._state.exit_code

    @property
    def connected(self) -> bool:
        """Whether the socket is open (also false once the server closed it, before any read;
        what it sent before closing stays readable)."""
        return self._ws is not None and wsp.is_open(self._ws)

    def __repr__(self) -> str:
        return (
            f"AsyncPtySession(session_id={self._session_id!r}, connected={self.connected}, exit_code={self.exit_code})"
        )

    async def __aenter__(self) -> AsyncPtySession:
        return await self.connect()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def connect(self) -> AsyncPtySession:
        """Open the socket and send READY (the server then flushes the output it held back).

        Does nothing when already connected or when the command has exited.
        """
        async with self._lock:
            if self._ws is not None or self._state.exited:
                return self
            client = self._sandbox._client
            url = self.websocket_url
            headers = wsp.websocket_headers(client._config, self._sandbox._target, self._token)
            try:
                ws = await wsp.aconnect(url, headers, wsp.connect_timeout(client._config))
            except Exception as exc:
                raise wsp.connect_error(exc, f"PTY session {self._session_id}", self._sandbox.sandbox_id) from exc
            try:
                await ws.send(ptyp.READY_FRAME)
            except ConnectionClosed as exc:
                self._closed(exc)
                return self
            self._ws = ws
            return self

    async def send(self, data: bytes | str) -> None:
        """Type ``data`` into the terminal (text is encoded as UTF-8)."""
        frame = ptyp.input_frame(data)
        if len(frame) > 1:
            await self._send(frame)

    async def resize(self, cols: int, rows: int) -> None:
        """Change the terminal size."""
        await self._send(ptyp.resize_frame(cols, rows))

    async def read(self, timeout: float | None = None) -> bytes:
        """The output not read yet, waiting for some when there is none; ``b""`` once the command exited.

        Raises :class:`SandboxTimeoutError` when nothing arrives within ``timeout`` seconds.
        """
        deadline = ptyp.deadline_for(timeout)
        while not self._state.buffer and not self._state.exited:
            if not await self._receive(ptyp.remaining(deadline)):
                raise self._state.read_timeout(timeout)
        return self._state.take()

    async def read_until(self, pattern: bytes | str, timeout: float | None = None) -> bytes:
        """Output up to and including the first ``pattern`` (text is matched as UTF-8).

        Output after the pattern stays for the next read. Raises :class:`SandboxTimeoutError`
        when the pattern does not appear within ``timeout`` seconds, and :class:`SandboxError`
        when the command exits first; the output read so far stays readable in both cases.
        """
        needle = ptyp.pattern_bytes(pattern)
        deadline = ptyp.deadline_for(timeout)
        while (found := self._state.take_until(needle)) is None:
            if self._state.exited:
                raise self._state.pattern_missing(needle)
            if not await self._receive(ptyp.remaining(deadline)):
                raise self._state.pattern_timeout(needle, timeout)
        return found

    async def wait(self, timeout: float | None = None) -> int:
        """Wait for the command to exit and return its exit code.

        Output that arrives meanwhile is kept for :meth:`read`. Raises
        :class:`SandboxTimeoutError` when the command is still running after ``timeout`` seconds.
        """
        deadline = ptyp.deadline_for(timeout)
        while self._state.exit_code is None:
            if not await self._receive(ptyp.remaining(deadline)):
                raise self._state.wait_timeout(timeout)
        return self._state.exit_code

    async def close(self) -> None:
        """Close the socket; the command keeps running (reconnect with :meth:`connect`)."""
        async with self._lock:
            ws, self._ws = self._ws, None
        if ws is not None:
            # Output that arrives while closing stays readable; so does an exit reported meanwhile.
            ended = await wsp.aclose_draining(ws, self._state.feed)
            if ended is not None:
                self._state.closed(*wsp.close_details(ended))

    async def kill(self) -> None:
        """End the session: kill its command (a session already gone counts as killed).

        The server then closes the socket with ``session terminated`` (no exit code), so a
        following :meth:`wait` raises :class:`SandboxError`.
        """
        client = self._sandbox._client
        await client._drive(ptyp.op_kill_pty(client._config, self._sandbox._target, self._session_id))

    # -- internals ---------------------------------------------------------------------------

    def _require(self) -> Any:
        ws = self._ws
        if ws is None:
            raise self._state.send_after_exit() if self._state.exited else self._state.not_connected()
        return ws

    async def _send(self, frame: bytes) -> None:
        ws = self._require()
        try:
            await ws.send(frame)
        except ConnectionClosed as exc:
            self._closed(exc)
            raise self._state.send_after_exit() from exc

    async def _receive(self, timeout: float | None) -> bool:
        """Take one message (or the close) from the socket; False when ``timeout`` passed first."""
        ws = self._require()
        try:
            message = await wsp.arecv(ws, timeout)
        except TimeoutError:
            return False
        except ConnectionClosed as exc:
            self._closed(exc)
            return True
        self._state.feed(message)
        if self._state.exited:
            await self.close()
        return True

    def _closed(self, exc: ConnectionClosed) -> None:
        self._ws = None
        error = self._state.closed(*wsp.close_details(exc))
        if error is not None:
            raise error from exc
