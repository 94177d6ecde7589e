"""The PTY protocol (docs/protocol/streaming.md), written once for :class:`PtySession` and :class:`AsyncPtySession`.

Nothing here does I/O. It holds the HTTP operations (create, kill), the binary frames of the
session's WebSocket, and :class:`PtyState`, the output buffer and exit code that both session
classes feed with what they receive.

Frames are binary; the first byte is the opcode:

* client → server: ``0x00`` + bytes = input; ``0x01`` + cols (u16 BE) + rows (u16 BE) = resize;
  ``0x02`` = READY, sent once right after connecting (the server holds output back until then);
* server → client: ``0x00`` + bytes = output; ``0x03`` + exit code (i32 BE) = exit.

After the exit the server closes with code 1000 and reason ``exit:<code>`` (some servers send
only that close frame, without the ``0x03`` frame). Text frames are ignored.
"""

from __future__ import annotations

import os
import struct
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ._config import ClientConfig
from ._protocol import (
    Op,
    ProxyTarget,
    _command_fields,
    _json,
    _model,
    _proxied,
    _proxy_check,
    _proxy_op,
    _segment,
    _send,
    error_from_response,
)
from .exceptions import SandboxConnectionError, SandboxError, SandboxException, SandboxTimeoutError
from .models import PtySessionInfo

OP_DATA = 0x00
"""Input (client → server) or output (server → client)."""
OP_RESIZE = 0x01
OP_READY = 0x02
OP_EXIT = 0x03

READY_FRAME = bytes([OP_READY])
EXIT_REASON_PREFIX = "exit:"
TERMINATED_REASON = "session terminated"
_SIZE_MAX = 0xFFFF
_TAIL_BYTES = 200
"""How much of the unread output an error message quotes."""

# ---------------------------------------------------------------------------------------------
# HTTP: create and kill


def _size(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= _SIZE_MAX:
        raise ValueError(f"{what} must be an integer between 1 and {_SIZE_MAX}, got {value!r}")
    return value


def pty_body(
    command: str,
    args: Any,
    cols: int,
    rows: int,
    env: Mapping[str, str] | None,
    working_dir: str | os.PathLike[str] | None,
) -> dict[str, Any]:
    """Body of ``POST /api/v1/pty``, after client-side checks."""
    body = _command_fields(command, args, env, working_dir, None)
    body["rows"] = _size(rows, "rows")
    body["cols"] = _size(cols, "cols")
    return body


def op_create_pty(cfg: ClientConfig, target: ProxyTarget, body: dict[str, Any]) -> Op[PtySessionInfo]:
    resp = yield from _proxy_op(cfg, target, "POST", "/api/v1/pty", json=body)
    return _model(PtySessionInfo, _json(resp, "PTY session"), "PTY session")


def op_kill_pty(cfg: ClientConfig, target: ProxyTarget, session_id: str) -> Op[None]:
    """``DELETE /api/v1/pty/{id}``; a session that is already gone (404 from the agent) counts as killed."""
    resp = yield from _send(_proxied(cfg, target, "DELETE", f"/api/v1/pty/{_segment(session_id)}"))
    if resp.status_code == 404:
        error = error_from_response(resp)
        if getattr(error, "code", None) != "SANDBOX_NOT_FOUND":
            return
    _proxy_check(resp, target)


def session_field(value: Any, what: str) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"{what} must be a non-empty string, got {value!r}")
    return value


# ---------------------------------------------------------------------------------------------
# Frames


def input_frame(data: bytes | bytearray | memoryview | str) -> bytes:
    """An input frame; text is encoded as UTF-8."""
    if isinstance(data, str):
        payload = data.encode("utf-8")
    elif isinstance(data, (bytes, bytearray, memoryview)):
        payload = bytes(data)
    else:
        raise TypeError(f"PTY input must be bytes or str, got {type(data).__name__}")
    return bytes([OP_DATA]) + payload


def resize_frame(cols: int, rows: int) -> bytes:
    """A resize frame: opcode, then cols and rows as big-endian u16."""
    return struct.pack(">BHH", OP_RESIZE, _size(cols, "cols"), _size(rows, "rows"))


@dataclass(frozen=True)
class Output:
    """An output frame's bytes."""

    data: bytes


@dataclass(frozen=True)
class Exit:
    """An exit frame's code."""

    code: int


def decode_frame(message: bytes | bytearray | memoryview | str) -> Output | Exit | None:
    """Decode one server message; None for text frames, empty or unknown frames."""
    if isinstance(message, str) or not message:
        return None
    data = bytes(message)
    if data[0] == OP_DATA:
        return Output(data[1:])
    if data[0] == OP_EXIT and len(data) >= 5:
        return Exit(struct.unpack(">i", data[1:5])[0])
    return None


def exit_code_from_reason(reason: str | None) -> int | None:
    """The code of an ``exit:<code>`` close reason (``-1`` when unreadable), else None."""
    if not reason or not reason.startswith(EXIT_REASON_PREFIX):
        return None
    try:
        return int(reason[len(EXIT_REASON_PREFIX) :].strip())
    except ValueError:
        return -1


# ---------------------------------------------------------------------------------------------
# Session state


def pattern_bytes(pattern: bytes | bytearray | memoryview | str) -> bytes:
    if isinstance(pattern, str):
        needle = pattern.encode("utf-8")
    elif isinstance(pattern, (bytes, bytearray, memoryview)):
        needle = bytes(pattern)
    else:
        raise TypeError(f"pattern must be bytes or str, got {type(pattern).__name__}")
    if not needle:
        raise ValueError("pattern must not be empty")
    return needle


def deadline_for(timeout: float | None) -> float | None:
    if timeout is None:
        return None
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout < 0:
        raise ValueError(f"timeout must be a non-negative number of seconds or None, got {timeout!r}")
    return time.monotonic() + timeout


def remaining(deadline: float | None) -> float | None:
    return None if deadline is None else max(0.0, deadline - time.monotonic())


class PtyState:
    """Output received but not read yet, and the exit code once known.

    The session classes feed it every message and the close of their socket; reads take from it.
    """

    def __init__(self, session_id: str) -> None:
        self.session_id = session_id
        self.buffer = bytearray()
        self.exit_code: int | None = None

    @property
    def exited(self) -> bool:
        return self.exit_code is not None

    def feed(self, message: bytes | str) -> None:
        """Take one message from the server."""
        frame = decode_frame(message)
        if isinstance(frame, Output):
            self.buffer += frame.data
        elif isinstance(frame, Exit) and self.exit_code is None:
            self.exit_code = frame.code

    def closed(self, code: int | None, reason: str) -> SandboxException | None:
        """Take the close of the socket by the server; returns the error to raise, if any.

        ``exit:<code>`` records the exit code; ``session terminated`` and any other close before
        the exit are errors.
        """
        if self.exit_code is None:
            self.exit_code = exit_code_from_reason(reason)
        if self.exit_code is not None:
            return None
        if reason == TERMINATED_REASON:
            return SandboxError(f"PTY session {self.session_id} terminated")
        detail = f"{code} {reason}".strip() if code is not None else "no close frame"
        return SandboxConnectionError(f"PTY session {self.session_id}: socket closed unexpectedly ({detail})")

    def take(self) -> bytes:
        """All unread output."""
        data = bytes(self.buffer)
        self.buffer.clear()
        return data

    def take_until(self, needle: bytes) -> bytes | None:
        """Unread output up to and including ``needle``, or None while it has not arrived."""
        index = self.buffer.find(needle)
        if index < 0:
            return None
        end = index + len(needle)
        data = bytes(self.buffer[:end])
        del self.buffer[:end]
        return data

    def tail(self) -> str:
        text = bytes(self.buffer[-_TAIL_BYTES:]).decode("utf-8", errors="replace")
        return f"; last output: {text!r}" if text else "; no unread output"

    # -- errors raised by both session classes -------------------------------------------------

    def not_connected(self) -> SandboxError:
        return SandboxError(
            f"PTY session {self.session_id} is not connected: call connect() or use it as a context manager"
        )

    def send_after_exit(self) -> SandboxError:
        return SandboxError(f"PTY session {self.session_id} has exited with code {self.exit_code}")

    def read_timeout(self, timeout: float | None) -> SandboxTimeoutError:
        return SandboxTimeoutError(f"PTY session {self.session_id}: no output within {timeout}s")

    def pattern_timeout(self, needle: bytes, timeout: float | None) -> SandboxTimeoutError:
        return SandboxTimeoutError(
            f"PTY session {self.session_id}: {needle!r} did not appear within {timeout}s{self.tail()}"
            " (the output stays readable with read())"
        )

    def pattern_missing(self, needle: bytes) -> SandboxError:
        return SandboxError(
            f"PTY session {self.session_id} exited with code {self.exit_code} before {needle!r} appeared"
            f"{self.tail()} (the output stays readable with read())"
        )

    def wait_timeout(self, timeout: float | None) -> SandboxTimeoutError:
        return SandboxTimeoutError(f"PTY session {self.session_id} did not exit within {timeout}s")
