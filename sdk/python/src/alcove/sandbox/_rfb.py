"""The RFB (VNC) client protocol, RFC 6143, sans I/O: what :class:`Desktop` and :class:`AsyncDesktop` speak.

Nothing here reads or writes a socket. :class:`RfbClient` is a state machine fed with the bytes the
server sent, in exactly the amounts it asks for (:attr:`RfbClient.bytes_needed`), and collecting
the bytes to send back (:meth:`RfbClient.data_to_send`). The desktop classes move the bytes over
a transport (the sandbox's TCP-tunnel WebSocket, or a plain socket) and keep deadlines. Because
the state lives here and not in a call stack, a read that times out half-way through a message
loses nothing: the next call carries on where the last one stopped.

What the client does:

* versions 3.3, 3.7 and 3.8 (it answers with the highest it supports, not above the server's);
* security types None (1) and VNC authentication (2, DES in :mod:`._des`);
* after ServerInit, it asks for :data:`CLIENT_PIXEL_FORMAT` (32 bits per pixel, little-endian,
  red at bit 16: the bytes B, G, R, X) and the encodings Raw and DesktopSize, so every update is
  plain pixels in one known layout and the screen may change size;
* it keeps a copy of the framebuffer, and tracks which pixels a screen request has received
  (:meth:`RfbClient.request_screen`, :attr:`RfbClient.screen_complete`);
* it reads and drops SetColourMapEntries, Bell and ServerCutText, so the stream stays in step.

Input events are plain encoders: :func:`pointer_event`, :func:`key_event`.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Generator
from dataclasses import dataclass

from ._des import VNC_CHALLENGE_BYTES, vnc_auth_response
from .exceptions import SandboxError

SECURITY_INVALID = 0
SECURITY_NONE = 1
SECURITY_VNC_AUTH = 2

ENCODING_RAW = 0
ENCODING_DESKTOP_SIZE = -223

# Client → server message types.
MSG_SET_PIXEL_FORMAT = 0
MSG_SET_ENCODINGS = 2
MSG_FRAMEBUFFER_UPDATE_REQUEST = 3
MSG_KEY_EVENT = 4
MSG_POINTER_EVENT = 5

# Server → client message types.
MSG_FRAMEBUFFER_UPDATE = 0
MSG_SET_COLOUR_MAP_ENTRIES = 1
MSG_BELL = 2
MSG_SERVER_CUT_TEXT = 3

BANNER_BYTES = 12
_BANNER = re.compile(rb"RFB (\d{3})\.(\d{3})\n")
_CUT_TEXT_CHUNK = 64 * 1024
"""Clipboard text is read (and dropped) in pieces this big, whatever length the server claims."""
_MAX_REASON_BYTES = 64 * 1024


class RfbProtocolError(SandboxError):
    """The VNC server broke the protocol, refused the connection or the password."""


@dataclass(frozen=True)
class PixelFormat:
    """The PIXEL_FORMAT structure (RFC 6143, 7.4)."""

    bits_per_pixel: int
    depth: int
    big_endian: bool
    true_colour: bool
    red_max: int
    green_max: int
    blue_max: int
    red_shift: int
    green_shift: int
    blue_shift: int

    _STRUCT = struct.Struct(">BBBBHHHBBBxxx")

    def pack(self) -> bytes:
        return self._STRUCT.pack(
            self.bits_per_pixel,
            self.depth,
            int(self.big_endian),
            int(self.true_colour),
            self.red_max,
            self.green_max,
            self.blue_max,
            self.red_shift,
            self.green_shift,
            self.blue_shift,
        )

    @classmethod
    def unpack(cls, data: bytes) -> PixelFormat:
        bpp, depth, big_endian, true_colour, r_max, g_max, b_max, r_shift, g_shift, b_shift = cls._STRUCT.unpack(data)
        return cls(bpp, depth, bool(big_endian), bool(true_colour), r_max, g_max, b_max, r_shift, g_shift, b_shift)


CLIENT_PIXEL_FORMAT = PixelFormat(32, 24, False, True, 255, 255, 255, 16, 8, 0)
"""What the client asks for: each pixel is the bytes B, G, R, X (see :mod:`._png`)."""
BYTES_PER_PIXEL = CLIENT_PIXEL_FORMAT.bits_per_pixel // 8


@dataclass(frozen=True)
class ServerInit:
    """What the server said about its screen when the connection opened."""

    width: int
    height: int
    pixel_format: PixelFormat
    name: str


# -- client → server messages --------------------------------------------------------------------


def set_pixel_format(pixel_format: PixelFormat) -> bytes:
    return struct.pack(">Bxxx", MSG_SET_PIXEL_FORMAT) + pixel_format.pack()


def set_encodings(encodings: list[int]) -> bytes:
    return struct.pack(f">BxH{len(encodings)}i", MSG_SET_ENCODINGS, len(encodings), *encodings)


def framebuffer_update_request(incremental: bool, x: int, y: int, width: int, height: int) -> bytes:
    return struct.pack(">BBHHHH", MSG_FRAMEBUFFER_UPDATE_REQUEST, int(incremental), x, y, width, height)


def key_event(keysym: int, down: bool) -> bytes:
    return struct.pack(">BBxxI", MSG_KEY_EVENT, int(down), keysym)


def pointer_event(button_mask: int, x: int, y: int) -> bytes:
    return struct.pack(">BBHH", MSG_POINTER_EVENT, button_mask, x, y)


# -- the client ---------------------------------------------------------------------------------

_Reader = Generator[int, bytes | bytearray, None]
"""The protocol as a generator: it yields how many bytes it needs next and is sent exactly those."""


class RfbClient:
    """The client side of one RFB connection, from the server's banner on.

    Feed it with :meth:`receive` (exactly :attr:`bytes_needed` bytes each time) and send what
    :meth:`data_to_send` returns after each call. :attr:`ready` turns true once the handshake is
    done (the server's screen is then in :attr:`server_init`, :attr:`width`, :attr:`height`).
    Errors raise :class:`RfbProtocolError`; the connection is unusable after one.
    """

    def __init__(self, password: bytes | None = None, shared: bool = True) -> None:
        self._password = password
        self._shared = shared
        self._outgoing = bytearray()
        self.version: tuple[int, int] | None = None
        self.server_init: ServerInit | None = None
        self.width = 0
        self.height = 0
        self.framebuffer = bytearray()
        """The screen as this client last saw it: ``width * height`` pixels of B, G, R, X bytes."""
        self._coverage: bytearray | None = None  # per pixel, 1 once a screen request received it
        self._uncovered = 0
        self._in_update = False
        self._between_messages = False
        self._failed: RfbProtocolError | None = None
        self._reader: _Reader = self._read()
        self._needed = next(self._reader)

    # -- feeding -----------------------------------------------------------------------------

    @property
    def ready(self) -> bool:
        """Whether the handshake is over (ServerInit received, pixel format and encodings sent)."""
        return self.server_init is not None

    @property
    def bytes_needed(self) -> int:
        """How many bytes :meth:`receive` takes next (always at least 1)."""
        if self._failed is not None:
            raise self._failed
        return self._needed

    def receive(self, data: bytes | bytearray) -> None:
        """Feed exactly :attr:`bytes_needed` bytes from the server."""
        if len(data) != self.bytes_needed:
            raise ValueError(f"expected {self._needed} bytes, got {len(data)}")
        try:
            self._needed = self._reader.send(data)
        except RfbProtocolError as exc:
            self._failed = exc
            raise
        except StopIteration:  # pragma: no cover - the reader loops forever
            self._failed = RfbProtocolError("the VNC protocol reader stopped")
            raise self._failed from None

    def data_to_send(self) -> bytes:
        """The bytes queued for the server since the last call."""
        data = bytes(self._outgoing)
        self._outgoing.clear()
        return data

    # -- screens -----------------------------------------------------------------------------

    def request_screen(self) -> None:
        """Ask for the whole screen (a non-incremental update) and start tracking what arrives."""
        if not self.ready:
            raise RfbProtocolError("the VNC handshake is not finished")
        self._coverage = bytearray(self.width * self.height)
        self._uncovered = self.width * self.height
        self._outgoing += framebuffer_update_request(False, 0, 0, self.width, self.height)

    @property
    def between_messages(self) -> bool:
        """Whether the client waits for the first byte of a server message (none is half-read)."""
        return self._between_messages and self._failed is None

    @property
    def screen_complete(self) -> bool:
        """Whether every pixel arrived since :meth:`request_screen`, and no update is half-read."""
        return self._coverage is not None and self._uncovered == 0 and not self._in_update

    # -- the protocol ------------------------------------------------------------------------

    def _read(self) -> _Reader:
        yield from self._handshake()
        while True:
            self._between_messages = True
            kind = (yield 1)[0]
            self._between_messages = False
            if kind == MSG_FRAMEBUFFER_UPDATE:
                (count,) = struct.unpack(">xH", (yield 3))
                self._in_update = True
                for _ in range(count):
                    yield from self._rectangle()
                self._in_update = False
            elif kind == MSG_SET_COLOUR_MAP_ENTRIES:
                # Only sent for colour-map pixel formats; ours is true colour, so drop it.
                _first, colours = struct.unpack(">xHH", (yield 5))
                if colours:
                    yield colours * 6
            elif kind == MSG_BELL:
                pass
            elif kind == MSG_SERVER_CUT_TEXT:
                (length,) = struct.unpack(">xxxI", (yield 7))
                while length:
                    piece = min(length, _CUT_TEXT_CHUNK)
                    yield piece
                    length -= piece
            else:
                raise RfbProtocolError(f"unsupported VNC server message type {kind}")

    def _handshake(self) -> _Reader:
        banner = yield BANNER_BYTES
        match = _BANNER.fullmatch(banner)
        if match is None:
            raise RfbProtocolError(f"not a VNC server: invalid protocol banner {banner!r}")
        major, minor = int(match[1]), int(match[2])
        if major != 3 or minor < 3:
            raise RfbProtocolError(f"unsupported VNC protocol version {major}.{minor} (3.3 to 3.8 are)")
        # 3.4 to 3.6 were never published: such servers speak 3.3; anything above 3.8 speaks 3.8.
        self.version = (3, 8) if minor >= 8 else (3, 7) if minor == 7 else (3, 3)
        self._outgoing += b"RFB 003.%03d\n" % self.version[1]

        if self.version == (3, 3):
            (chosen,) = struct.unpack(">I", (yield 4))
            if chosen == SECURITY_INVALID:
                raise RfbProtocolError(f"the VNC server refused the connection: {(yield from self._reason())}")
            if chosen not in (SECURITY_NONE, SECURITY_VNC_AUTH):
                raise RfbProtocolError(f"unsupported VNC security type {chosen} (None and VNC authentication are)")
            self._check_password(chosen)
        else:
            count = (yield 1)[0]
            if count == 0:
                raise RfbProtocolError(f"the VNC server refused the connection: {(yield from self._reason())}")
            offered = list((yield count))
            chosen = self._choose_security(offered)
            self._outgoing.append(chosen)

        if chosen == SECURITY_VNC_AUTH:
            challenge = yield VNC_CHALLENGE_BYTES
            self._outgoing += vnc_auth_response(self._check_password(chosen), challenge)
        if chosen == SECURITY_VNC_AUTH or self.version == (3, 8):
            (result,) = struct.unpack(">I", (yield 4))
            if result != 0:
                reason = (yield from self._reason()) if self.version == (3, 8) else ""
                what = "VNC authentication failed" if chosen == SECURITY_VNC_AUTH else "VNC security handshake failed"
                raise RfbProtocolError(f"{what}: {reason}" if reason else what)

        self._outgoing.append(1 if self._shared else 0)  # ClientInit
        width, height, pixel_format, name_length = struct.unpack(">HH16sI", (yield 24))
        name = (yield name_length) if name_length else b""
        server_format = PixelFormat.unpack(pixel_format)
        if not server_format.true_colour:
            raise RfbProtocolError("the VNC server uses a colour-map pixel format; desktop sessions need true colour")
        if width == 0 or height == 0:
            raise RfbProtocolError(f"the VNC server declared an empty screen ({width}x{height})")
        self._resize(width, height)
        self._outgoing += set_pixel_format(CLIENT_PIXEL_FORMAT)
        self._outgoing += set_encodings([ENCODING_RAW, ENCODING_DESKTOP_SIZE])
        self.server_init = ServerInit(width, height, server_format, name.decode("utf-8", "replace"))

    def _choose_security(self, offered: list[int]) -> int:
        if SECURITY_NONE in offered:
            return SECURITY_NONE
        if SECURITY_VNC_AUTH in offered:
            self._check_password(SECURITY_VNC_AUTH)
            return SECURITY_VNC_AUTH
        raise RfbProtocolError(
            f"unsupported VNC security types offered by the server: {offered} (None (1) and VNC authentication (2) are)"
        )

    def _check_password(self, security: int) -> bytes:
        """The password, when ``security`` needs one and there is one (checked before answering)."""
        if security != SECURITY_VNC_AUTH:
            return b""
        if self._password is None:
            raise RfbProtocolError(
                "the VNC server requires password authentication but no password was given: "
                "pass password= to connect_desktop"
            )
        return self._password

    def _reason(self) -> Generator[int, bytes | bytearray, str]:
        (length,) = struct.unpack(">I", (yield 4))
        if not length:
            return ""
        text = yield min(length, _MAX_REASON_BYTES)
        return text.decode("utf-8", "replace")

    def _rectangle(self) -> _Reader:
        x, y, width, height, encoding = struct.unpack(">HHHHi", (yield 12))
        if encoding == ENCODING_DESKTOP_SIZE:
            self._resize(width, height)
            if self._coverage is not None:
                # The pending request was for the old size: ask again for the whole new screen.
                self.request_screen()
            return
        if encoding != ENCODING_RAW:
            raise RfbProtocolError(f"unsupported VNC rectangle encoding {encoding} (only Raw was asked for)")
        if x + width > self.width or y + height > self.height:
            raise RfbProtocolError(
                f"the VNC server sent a rectangle {width}x{height} at ({x}, {y}) outside the "
                f"{self.width}x{self.height} screen"
            )
        if width and height:
            self._paint(x, y, width, height, (yield width * height * BYTES_PER_PIXEL))

    def _resize(self, width: int, height: int) -> None:
        if width == 0 or height == 0:
            raise RfbProtocolError(f"the VNC server resized its screen to nothing ({width}x{height})")
        self.width, self.height = width, height
        self.framebuffer = bytearray(width * height * BYTES_PER_PIXEL)

    def _paint(self, x: int, y: int, width: int, height: int, pixels: bytes | bytearray) -> None:
        """Copy a Raw rectangle into the framebuffer and mark its pixels received (slices, no pixel loop)."""
        screen_width = self.width
        if isinstance(pixels, bytearray) and len(pixels) == len(self.framebuffer):
            # The whole screen in one rectangle (what a full update usually is): adopt it, no copy.
            # (The transports hand over bytearrays they keep no reference to.)
            self.framebuffer = pixels
            if self._coverage is not None:
                self._coverage = bytearray(b"\x01") * len(self._coverage)
                self._uncovered = 0
            return
        row_bytes, screen_row_bytes = width * BYTES_PER_PIXEL, screen_width * BYTES_PER_PIXEL
        coverage = self._coverage
        if x == 0 and width == screen_width:  # whole rows: one copy
            start = y * screen_row_bytes
            self.framebuffer[start : start + len(pixels)] = pixels
            if coverage is not None:
                first, last = y * screen_width, (y + height) * screen_width
                self._uncovered -= coverage.count(0, first, last)
                coverage[first:last] = b"\x01" * (last - first)
            return
        source = memoryview(pixels)
        ones = b"\x01" * width
        for row in range(height):
            start = (y + row) * screen_row_bytes + x * BYTES_PER_PIXEL
            self.framebuffer[start : start + row_bytes] = source[row * row_bytes : (row + 1) * row_bytes]
            if coverage is not None:
                first = (y + row) * screen_width + x
                self._uncovered -= coverage.count(0, first, first + width)
                coverage[first : first + width] = ones
