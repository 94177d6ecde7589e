# desktop.py is generated from this file: after a change, run scripts/generate_sync.py (in sdk/python).
"""Asynchronous control of a sandbox's desktop over VNC: screenshots, mouse and keyboard.

:meth:`AsyncSandbox.connect_desktop` waits until a VNC server accepts connections on its port in
the sandbox, opens the sandbox's TCP-tunnel WebSocket to that port and speaks RFB inside it (no
local port is opened). The protocol lives in :mod:`._rfb`, the actions and checks in
:mod:`._desktop_protocol`, the byte streams in :mod:`._byte_transport`; this class sends, receives
and keeps deadlines. :func:`open_desktop` runs the same client over any other byte stream, e.g. a
TCP connection straight to a VNC server.
"""

from __future__ import annotations

import asyncio  # sync: import threading
import time
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import TYPE_CHECKING

from . import _desktop_protocol as dp
from . import _websocket as wsp
from ._byte_transport import AsyncByteTransport, AsyncWebSocketTransport
from ._rfb import RfbClient
from .exceptions import SandboxError

if TYPE_CHECKING:
    from .async_sandbox import AsyncSandbox

# A module attribute, so that tests can skip the waits.
_sleep = asyncio.sleep  # sync: _sleep = time.sleep


class AsyncDesktop:
    """A VNC session on a sandbox's desktop, from :meth:`AsyncSandbox.connect_desktop`.

    Coordinates are pixels from the top-left corner, within :attr:`width` x :attr:`height`.
    Methods without coordinates act where the pointer is (where this handle last put it; it
    starts at (0, 0)). Calls on one handle run one at a time. Use it as an async context manager,
    or call :meth:`close`, to end the session (the connection in the sandbox closes with it)::

        async with await sandbox.connect_desktop(password="secret") as desktop:
            png = await desktop.screenshot()
            await desktop.click(200, 150)
            await desktop.type_text("hello")
            await desktop.press(["ctrl", "s"])
    """

    def __init__(self, transport: AsyncByteTransport, rfb: RfbClient) -> None:
        self._transport = transport
        self._rfb = rfb
        self._input = dp.DesktopInput(rfb)
        self._lock = asyncio.Lock()  # sync: self._lock = threading.Lock()
        self._closed = False
        self._late_update = False  # a screenshot did not finish: its update may still arrive

    @property
    def width(self) -> int:
        """The screen's width in pixels (it follows the server's resizes)."""
        return self._rfb.width

    @property
    def height(self) -> int:
        """The screen's height in pixels."""
        return self._rfb.height

    def __repr__(self) -> str:
        return f"AsyncDesktop({self.width}x{self.height}, closed={self._closed})"

    async def __aenter__(self) -> AsyncDesktop:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """End the session and close its connection (closing again does nothing)."""
        if self._closed:
            return
        self._closed = True
        try:
            await self._transport.close()
        except Exception:  # already broken: nothing is left to release
            pass

    # -- screen --------------------------------------------------------------------------------

    async def screenshot(self, timeout: float = 5.0) -> bytes:
        """The whole screen as PNG bytes (8-bit RGB), waiting at most ``timeout`` seconds for it.

        Raises :class:`SandboxTimeoutError` when the server has not sent the whole screen in time
        (the session stays usable).
        """
        limit = dp.check_timeout(timeout, "timeout")
        async with self._lock:
            self._require_open()
            deadline = time.monotonic() + limit
            what = "the VNC server did not send the whole screen"
            if self._late_update:
                # The last screenshot did not finish (a timeout): its update may still be on its way.
                # Read it first, so that it is not taken for the screen asked for now.
                await self._drain(deadline, what, limit)
            self._late_update = True  # until the whole screen has been read
            self._rfb.request_screen()
            await self._flush()
            while not self._rfb.screen_complete:
                await self._receive(deadline, what, limit, "timeout")
            self._late_update = False
            # Encoding takes a few tens of milliseconds: off the event loop.  # async only
            return await asyncio.to_thread(dp.screenshot_png, self._rfb)  # sync: return dp.screenshot_png(self._rfb)

    # -- mouse ---------------------------------------------------------------------------------

    async def move_mouse(self, x: int, y: int) -> None:
        """Move the pointer to ``(x, y)`` (buttons held stay held, so press, move, release drags)."""
        await self._act(lambda: self._input.move(x, y))

    async def mouse_press(self, button: str = "left", x: int | None = None, y: int | None = None) -> None:
        """Press and hold ``button`` (``"left"``, ``"middle"`` or ``"right"``), at ``(x, y)`` when given."""
        await self._act(lambda: self._input.button(button, True, x, y))

    async def mouse_release(self, button: str = "left", x: int | None = None, y: int | None = None) -> None:
        """Release ``button``, at ``(x, y)`` when given."""
        await self._act(lambda: self._input.button(button, False, x, y))

    async def click(self, x: int | None = None, y: int | None = None, button: str = "left") -> None:
        """Click ``button`` at ``(x, y)``, or where the pointer is when both are None."""
        await self._act(lambda: self._input.click(x, y, button))

    async def double_click(
        self, x: int | None = None, y: int | None = None, button: str = "left", delay_ms: int = 50
    ) -> None:
        """Two clicks ``delay_ms`` milliseconds apart, at ``(x, y)`` or where the pointer is."""
        delay = dp.check_delay_ms(delay_ms)
        async with self._lock:
            self._require_open()
            await self._send(self._input.click(x, y, button))
            await _sleep(delay)
            await self._send(self._input.click(None, None, button))

    async def left_click(self, x: int | None = None, y: int | None = None) -> None:
        """Click the left button."""
        await self.click(x, y, "left")

    async def middle_click(self, x: int | None = None, y: int | None = None) -> None:
        """Click the middle button."""
        await self.click(x, y, "middle")

    async def right_click(self, x: int | None = None, y: int | None = None) -> None:
        """Click the right button."""
        await self.click(x, y, "right")

    async def scroll(self, steps: int, x: int | None = None, y: int | None = None) -> None:
        """Turn the wheel ``steps`` notches: positive scrolls up, negative down (at ``(x, y)`` when given)."""
        await self._act(lambda: self._input.scroll(steps, x, y))

    async def scroll_up(self, steps: int = 1, x: int | None = None, y: int | None = None) -> None:
        """Scroll up ``steps`` notches."""
        await self.scroll(abs(dp.check_steps(steps)), x, y)

    async def scroll_down(self, steps: int = 1, x: int | None = None, y: int | None = None) -> None:
        """Scroll down ``steps`` notches."""
        await self.scroll(-abs(dp.check_steps(steps)), x, y)

    # -- keyboard ------------------------------------------------------------------------------

    async def key_down(self, key: str) -> None:
        """Press and hold a key: a name such as ``"shift"`` (case-insensitive) or one character."""
        await self._act(lambda: self._input.key(key, True))

    async def key_up(self, key: str) -> None:
        """Release a key."""
        await self._act(lambda: self._input.key(key, False))

    async def press(self, key: str | Sequence[str]) -> None:
        """Press and release a key, or a chord: ``["ctrl", "c"]`` is pressed in order, released in reverse.

        Names: ctrl/control, alt, shift, super/meta/win/cmd, enter/return, tab, esc/escape,
        backspace, delete/del, insert, home, end, pageup/page_up, pagedown/page_down, up, down,
        left, right, space, f1 to f12, capslock, or any single character. Others raise ``ValueError``.
        """
        await self._act(lambda: self._input.chord(key))

    async def type_text(self, text: str) -> None:
        """Type ``text``, any Unicode included; a line break presses Enter and a tab Tab.

        Other control characters raise ``ValueError`` before anything is typed.
        """
        await self._act(lambda: self._input.text(text))

    # -- internals ---------------------------------------------------------------------------

    def _require_open(self) -> None:
        if self._closed:
            raise dp.closed_error()

    async def _act(self, message: Callable[[], bytes]) -> None:
        """Send the messages of one action (built under the lock: they move the tracked pointer)."""
        async with self._lock:
            self._require_open()
            await self._send(message())

    async def _send(self, data: bytes) -> None:
        if not data:
            return
        try:
            await self._transport.send(data)
        except (OSError, EOFError) as exc:  # ConnectionError and TimeoutError are OSErrors
            await self.close()
            raise dp.connection_error(exc) from exc

    async def _flush(self) -> None:
        await self._send(self._rfb.data_to_send())

    async def _receive(self, deadline: float, what: str, limit: float, parameter: str) -> None:
        """Read what the protocol needs next and answer it; a timeout leaves the session usable."""
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise dp.receive_timeout(what, limit, parameter)
        if not await self._read(remaining):
            raise dp.receive_timeout(what, limit, parameter)

    async def _read(self, timeout: float) -> bool:
        """Feed the protocol what it needs next, waiting at most ``timeout``; False when nothing came."""
        try:
            data = await self._transport.recv_exactly(self._rfb.bytes_needed, timeout)
        except TimeoutError:
            return False
        except (OSError, EOFError) as exc:
            await self.close()
            raise dp.connection_error(exc) from exc
        try:
            self._rfb.receive(data)
        except SandboxError:
            await self.close()  # out of step with the server: nothing more can be read
            raise
        await self._flush()
        return True

    async def _drain(self, deadline: float, what: str, limit: float) -> None:
        """Read what the server sent for an earlier request, until it is silent for a moment.

        It is applied to the framebuffer but does not count for the screen asked for next (it may
        be old). A message half-read is finished first.
        """
        while True:
            if self._rfb.between_messages:
                if not await self._read(dp.DRAIN_IDLE_SECS):
                    return
            else:
                await self._receive(deadline, what, limit, "timeout")

    async def _handshake(self, limit: float) -> None:
        deadline = time.monotonic() + limit
        await self._flush()
        while not self._rfb.ready:
            await self._receive(deadline, "the VNC handshake did not finish", limit, "connect_timeout")


async def open_desktop(
    transport: AsyncByteTransport, password: str | None = None, shared: bool = True, timeout: float = 10.0
) -> AsyncDesktop:
    """Run the RFB handshake over an open byte stream to a VNC server and return the desktop.

    :meth:`AsyncSandbox.connect_desktop` runs it over the sandbox's tunnel; any other
    :class:`AsyncByteTransport` works too, e.g. a TCP connection to a VNC server you can reach::

        transport = await AsyncSocketTransport.connect("127.0.0.1", 5900)  # from ._byte_transport
        async with await open_desktop(transport, password="secret") as desktop:
            png = await desktop.screenshot()

    The desktop owns ``transport`` from here: it is closed with the desktop, or at once if the
    handshake fails. ``timeout`` bounds the handshake.
    """
    try:
        client = RfbClient(dp.check_password(password), dp.check_shared(shared))
        limit = dp.check_timeout(timeout, "timeout")
    except BaseException:
        await transport.close()
        raise
    desktop = AsyncDesktop(transport, client)
    try:
        await desktop._handshake(limit)
    except BaseException:
        await desktop.close()
        raise
    return desktop


async def connect_sandbox_desktop(
    sandbox: AsyncSandbox, port: int, password: str | None, shared: bool, connect_timeout: float
) -> AsyncDesktop:
    """What :meth:`AsyncSandbox.connect_desktop` does: probe the port, open the tunnel, handshake."""
    wsp.validate_port(port, "port")
    dp.check_password(password)
    dp.check_shared(shared)
    limit = dp.check_timeout(connect_timeout, "connect_timeout")
    await _wait_for_port(sandbox, port, limit)
    config = sandbox._client._config
    url = wsp.tunnel_websocket_url(sandbox._info.sandbox_url or "", sandbox.sandbox_id, port)
    headers = wsp.websocket_headers(config, sandbox._target)
    try:
        ws = await wsp.aconnect(url, headers, limit, compression=None)
    except Exception as exc:
        raise wsp.connect_error(exc, f"desktop tunnel to sandbox port {port}", sandbox.sandbox_id) from exc
    return await open_desktop(AsyncWebSocketTransport(ws), password, shared, limit)


async def _wait_for_port(sandbox: AsyncSandbox, port: int, limit: float) -> None:
    """Return once something accepts connections on ``port`` in the sandbox; raise after ``limit`` s."""
    deadline = time.monotonic() + limit
    while True:
        result = await sandbox.run(dp.PROBE_COMMAND, dp.probe_args(port), timeout_secs=dp.PROBE_TIMEOUT_SECS)
        if result.exit_code == 0:
            return
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise dp.port_closed_error(port, limit)
        await _sleep(min(dp.PROBE_INTERVAL_SECS, remaining))
