"""What :class:`Desktop` and :class:`AsyncDesktop` share: argument checks, the pointer, input messages, errors.

Nothing here does I/O. :class:`DesktopInput` turns each mouse or keyboard action into the RFB
messages that perform it (after checking its arguments against the current screen size), and
tracks where the pointer is and which buttons are held, so that ``click()`` without coordinates
clicks where the pointer is. The two desktop classes send those bytes and keep deadlines.

How a desktop is reached in a sandbox (the official SDK's way, so its servers work unchanged):
``run`` probes the port from inside (:data:`PROBE_COMMAND`, :func:`probe_args`) until something
accepts connections, then the RFB stream goes through the sandbox's TCP-tunnel WebSocket.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from . import _keysyms as keys
from . import _png as png
from . import _rfb as rfb
from ._protocol._validation import _is_int, _is_number
from .exceptions import SandboxConnectionError, SandboxError, SandboxTimeoutError

DEFAULT_PORT = 5901
PROBE_COMMAND = "/bin/bash"
PROBE_TIMEOUT_SECS = 2.0
"""How long one probe may take in the sandbox (``run``'s timeout)."""
PROBE_INTERVAL_SECS = 0.25

DRAIN_IDLE_SECS = 0.05
"""After a screenshot timed out, the next one first reads what arrives until the server is silent this long."""

BUTTONS = {"left": 1, "middle": 2, "right": 4}
"""Mouse buttons and their bits in an RFB PointerEvent's button mask."""
WHEEL_UP = 8
WHEEL_DOWN = 16


def probe_args(port: int) -> list[str]:
    """Arguments of :data:`PROBE_COMMAND` that exit 0 when something accepts connections on ``port``."""
    return ["-c", f"exec 3<>/dev/tcp/127.0.0.1/{port}"]


# -- argument checks -----------------------------------------------------------------------------


def check_timeout(value: Any, what: str) -> float:
    """A positive number of seconds."""
    if not _is_number(value) or not value > 0 or value != value or value == float("inf"):
        raise ValueError(f"{what} must be a positive number of seconds, got {value!r}")
    return float(value)


def check_password(password: Any) -> bytes | None:
    """The password's bytes (VNC uses the first 8), or None."""
    if password is None:
        return None
    if not isinstance(password, str):
        raise ValueError(f"password must be a str or None, got {type(password).__name__}")
    return password.encode("utf-8")


def check_shared(shared: Any) -> bool:
    if not isinstance(shared, bool):
        raise ValueError(f"shared must be True or False, got {shared!r}")
    return shared


def check_steps(steps: Any) -> int:
    """A number of wheel notches (positive up, negative down)."""
    if not _is_int(steps):
        raise ValueError(f"steps must be an integer (positive scrolls up, negative down), got {steps!r}")
    return int(steps)


def check_delay_ms(delay_ms: Any) -> float:
    """A delay in milliseconds (0 or more), as seconds."""
    if not _is_number(delay_ms) or not 0 <= delay_ms <= 60_000:
        raise ValueError(f"delay_ms must be a number of milliseconds between 0 and 60000, got {delay_ms!r}")
    return float(delay_ms) / 1000


# -- errors --------------------------------------------------------------------------------------


def closed_error() -> SandboxError:
    return SandboxError("the desktop handle is closed: open a new one with sandbox.connect_desktop()")


def port_closed_error(port: int, timeout: float) -> SandboxTimeoutError:
    return SandboxTimeoutError(
        f"nothing accepted connections on port {port} in the sandbox within {timeout:g} s: "
        "is a VNC server running? (raise connect_timeout= to wait longer)",
        parameter="connect_timeout",
    )


def receive_timeout(what: str, timeout: float, parameter: str) -> SandboxTimeoutError:
    return SandboxTimeoutError(f"{what} within {timeout:g} s (raise {parameter}= to wait longer)", parameter)


def connection_error(exc: BaseException) -> SandboxConnectionError:
    return SandboxConnectionError(f"desktop connection lost: {exc or type(exc).__name__}")


def screenshot_png(client: rfb.RfbClient) -> bytes:
    """The client's framebuffer as an 8-bit RGB PNG."""
    return png.encode_png(client.width, client.height, png.bgrx_to_rgb(client.framebuffer, client.width, client.height))


# -- input ---------------------------------------------------------------------------------------


class DesktopInput:
    """The pointer and keyboard of one desktop connection, as RFB messages."""

    def __init__(self, client: rfb.RfbClient) -> None:
        self._client = client
        # Where the server last saw the pointer from us; it starts in the corner as far as we know.
        self._x = 0
        self._y = 0
        self._buttons = 0

    def _point(self, x: Any, y: Any) -> tuple[int, int]:
        width, height = self._client.width, self._client.height
        if x is None and y is None:
            # The screen may have shrunk since the pointer was put there.
            return min(self._x, width - 1), min(self._y, height - 1)
        if x is None or y is None:
            raise ValueError(f"pass both x and y, or neither (got x={x!r}, y={y!r})")
        for name, value, size in (("x", x, width), ("y", y, height)):
            if not _is_int(value):
                raise ValueError(f"{name} must be an integer, got {value!r}")
            if not 0 <= value < size:
                raise ValueError(
                    f"{name}={value} is outside the {width}x{height} screen: {name} must be between 0 and {size - 1}"
                )
        return x, y

    def _button(self, button: Any) -> int:
        mask = BUTTONS.get(button) if isinstance(button, str) else None
        if mask is None:
            raise ValueError(f"unknown mouse button {button!r}: use one of {', '.join(BUTTONS)}")
        return mask

    def _pointer(self, buttons: int, x: int, y: int) -> bytes:
        self._x, self._y, self._buttons = x, y, buttons
        return rfb.pointer_event(buttons, x, y)

    def move(self, x: Any, y: Any) -> bytes:
        """Move the pointer (held buttons stay held: a drag)."""
        if x is None or y is None:
            raise ValueError(f"move_mouse needs both x and y, got x={x!r}, y={y!r}")
        return self._pointer(self._buttons, *self._point(x, y))

    def button(self, button: Any, down: bool, x: Any = None, y: Any = None) -> bytes:
        """Press or release ``button``, at ``(x, y)`` when given (the pointer moves there first)."""
        mask = self._button(button)
        px, py = self._point(x, y)
        buttons = self._buttons | mask if down else self._buttons & ~mask
        return self._pointer(buttons, px, py)

    def click(self, x: Any, y: Any, button: Any) -> bytes:
        """Press and release ``button`` at ``(x, y)``, or where the pointer is."""
        mask = self._button(button)
        px, py = self._point(x, y)
        held = self._buttons & ~mask
        return self._pointer(held | mask, px, py) + self._pointer(held, px, py)

    def scroll(self, steps: Any, x: Any, y: Any) -> bytes:
        """Turn the wheel ``steps`` notches: positive up (button 4), negative down (button 5)."""
        steps = check_steps(steps)
        px, py = self._point(x, y)
        wheel = WHEEL_UP if steps > 0 else WHEEL_DOWN
        held = self._buttons
        # Each notch is a press and a release of the wheel's button, as X delivers wheels.
        messages = [self._pointer(held, px, py)] if x is not None else []
        for _ in range(abs(steps)):
            messages.append(self._pointer(held | wheel, px, py))
            messages.append(self._pointer(held, px, py))
        return b"".join(messages)

    def key(self, key: Any, down: bool) -> bytes:
        return rfb.key_event(keys.key_keysym(key), down)

    def chord(self, names: str | Sequence[str]) -> bytes:
        """Press the keys in order and release them in reverse (``["ctrl", "c"]`` copies)."""
        keysyms = keys.chord_keysyms(names)
        return b"".join(rfb.key_event(keysym, True) for keysym in keysyms) + b"".join(
            rfb.key_event(keysym, False) for keysym in reversed(keysyms)
        )

    def text(self, text: Any) -> bytes:
        """Press and release the key of each character (checked whole before anything is sent)."""
        return b"".join(
            rfb.key_event(keysym, True) + rfb.key_event(keysym, False) for keysym in keys.text_keysyms(text)
        )
