"""A scriptable VNC (RFB) server on 127.0.0.1, for the desktop's unit tests.

``FakeVncServer`` speaks the server side of RFC 6143 over real TCP connections, one thread each:
any version banner, security None or VNC authentication (checked with the SDK's own DES, which
``test_desktop.py`` checks against published vectors), a ServerInit, and then it records every
client message and answers each FramebufferUpdateRequest with a screen of known pixels. Knobs
make it interleave other server messages, split the screen into rectangles, resize the screen,
or stall half-way through an update.
"""

from __future__ import annotations

import socket
import struct
import threading
from dataclasses import dataclass, field

from alcove.sandbox._des import vnc_auth_response

CHALLENGE = bytes(range(100, 116))


def pixel(x: int, y: int, generation: int = 0) -> tuple[int, int, int]:
    """The colour of (x, y) on the fake screen: red follows x, green y, blue the screen's generation."""
    return (x * 3) % 256, (y * 5) % 256, (77 + generation) % 256


@dataclass
class Received:
    """What one connection got from the client."""

    version: bytes = b""
    security: int | None = None
    auth_response: bytes = b""
    shared: int | None = None
    messages: list[tuple[int, bytes]] = field(default_factory=list)
    closed: threading.Event = field(default_factory=threading.Event)

    def of_type(self, kind: int) -> list[bytes]:
        return [payload for message_type, payload in self.messages if message_type == kind]

    def pointer_events(self) -> list[tuple[int, int, int]]:
        return [struct.unpack(">BHH", payload) for payload in self.of_type(5)]

    def key_events(self) -> list[tuple[bool, int]]:
        return [(bool(down), keysym) for down, keysym in (struct.unpack(">BxxI", p) for p in self.of_type(4))]


class FakeVncServer:
    """A VNC server; each accepted connection is served by :meth:`_serve` in its own thread."""

    def __init__(
        self,
        *,
        version: bytes = b"RFB 003.008\n",
        security_types: tuple[int, ...] = (1,),
        password: str = "secret",
        width: int = 64,
        height: int = 48,
        name: bytes = b"fake desktop",
        true_colour: bool = True,
        tiles: int = 2,
        noise: bool = True,
        resize_to: tuple[int, int] | None = None,
        failure_reason: bytes = b"bad password",
        changing: bool = False,
    ) -> None:
        self.version = version
        self.security_types = security_types
        self.password = password
        self.width, self.height = width, height
        self.name = name
        self.true_colour = true_colour
        self.tiles = tiles
        self.noise = noise
        self.resize_to = resize_to
        self.failure_reason = failure_reason
        self.changing = changing  # each update shows a new generation of the screen
        self.generation = 0
        self.stall = threading.Event()  # set: the next update stops half-way until `resume` is set
        self.resume = threading.Event()
        self.connections: list[Received] = []
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._sockets: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def close(self) -> None:
        try:
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes the accept() below (closing alone does not)
        except OSError:
            pass
        self._listener.close()
        for sock in self._sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()
        self._thread.join(5)

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            self._sockets.append(conn)
            received = Received()
            with self._lock:
                self.connections.append(received)
            threading.Thread(target=self._serve, args=(conn, received), daemon=True).start()

    # -- one connection ----------------------------------------------------------------------

    def _serve(self, conn: socket.socket, received: Received) -> None:
        try:
            self._handshake(conn, received)
            while True:
                kind, payload = _read_message(conn)
                received.messages.append((kind, payload))
                if kind == 3:
                    self._update(conn)
        except (OSError, EOFError, _Refused):
            pass
        finally:
            received.closed.set()
            conn.close()

    def _handshake(self, conn: socket.socket, received: Received) -> None:
        conn.sendall(self.version)
        received.version = _read(conn, 12)
        minor = int(received.version[8:11])
        if minor == 3:
            chosen = self.security_types[0] if self.security_types else 0
            conn.sendall(struct.pack(">I", chosen))
            if chosen == 0:
                conn.sendall(_string(self.failure_reason))
                raise _Refused
        else:
            conn.sendall(bytes([len(self.security_types), *self.security_types]))
            if not self.security_types:
                conn.sendall(_string(self.failure_reason))
                raise _Refused
            chosen = _read(conn, 1)[0]
        received.security = chosen
        ok = True
        if chosen == 2:
            conn.sendall(CHALLENGE)
            received.auth_response = _read(conn, 16)
            ok = received.auth_response == vnc_auth_response(self.password.encode(), CHALLENGE)
        if chosen == 2 or minor == 8:
            conn.sendall(struct.pack(">I", 0 if ok else 1))
            if not ok:
                if minor == 8:
                    conn.sendall(_string(self.failure_reason))
                raise _Refused
        received.shared = _read(conn, 1)[0]
        # The server's own format: 16 bits per pixel, to check the client asks for its own.
        pixel_format = struct.pack(">BBBBHHHBBBxxx", 16, 16, 0, int(self.true_colour), 31, 63, 31, 11, 5, 0)
        conn.sendall(struct.pack(">HH", self.width, self.height) + pixel_format + _string(self.name))

    def _update(self, conn: socket.socket) -> None:
        if self.noise:
            # Messages a client must read and drop: Bell, clipboard text, colour map entries.
            conn.sendall(b"\x02" + b"\x03\0\0\0" + _string(b"clipboard!") + b"\x01\0" + struct.pack(">HH", 0, 2))
            conn.sendall(bytes(12))
        rectangles: list[bytes] = []
        if self.resize_to is not None:
            self.width, self.height = self.resize_to
            self.resize_to = None
            rectangles.append(struct.pack(">HHHHi", 0, 0, self.width, self.height, -223))
        else:
            for x, y, w, h in _tiles(self.width, self.height, self.tiles):
                rectangles.append(struct.pack(">HHHHi", x, y, w, h, 0) + _pixels(x, y, w, h, self.generation))
            if self.changing:
                self.generation += 1
        data = struct.pack(">BxH", 0, len(rectangles)) + b"".join(rectangles)
        if self.stall.is_set():
            self.stall.clear()
            half = len(data) // 2
            conn.sendall(data[:half])
            self.resume.wait(10)
            self.resume.clear()
            data = data[half:]
        conn.sendall(data)


class _Refused(Exception):
    pass


def _read(conn: socket.socket, count: int) -> bytes:
    data = bytearray()
    while len(data) < count:
        chunk = conn.recv(count - len(data))
        if not chunk:
            raise EOFError
        data += chunk
    return bytes(data)


def _string(text: bytes) -> bytes:
    return struct.pack(">I", len(text)) + text


def _read_message(conn: socket.socket) -> tuple[int, bytes]:
    """One client message: its type and the bytes after the type."""
    kind = _read(conn, 1)[0]
    fixed = {0: 19, 3: 9, 4: 7, 5: 5}
    if kind in fixed:
        return kind, _read(conn, fixed[kind])
    if kind == 2:  # SetEncodings: a count, then that many 4-byte encodings
        head = _read(conn, 3)
        (count,) = struct.unpack(">xH", head)
        return kind, head + _read(conn, count * 4)
    raise EOFError(f"unexpected client message type {kind}")


def _tiles(width: int, height: int, tiles: int) -> list[tuple[int, int, int, int]]:
    """The screen cut into ``tiles`` x ``tiles`` rectangles (uneven ones included)."""
    xs = [width * i // tiles for i in range(tiles + 1)]
    ys = [height * i // tiles for i in range(tiles + 1)]
    return [(xs[i], ys[j], xs[i + 1] - xs[i], ys[j + 1] - ys[j]) for j in range(tiles) for i in range(tiles)]


def _pixels(x0: int, y0: int, width: int, height: int, generation: int) -> bytes:
    """Raw pixels in the client's format (32 bits, little-endian, red at 16): B, G, R, 0 bytes."""
    out = bytearray()
    for y in range(y0, y0 + height):
        for x in range(x0, x0 + width):
            red, green, blue = pixel(x, y, generation)
            out += bytes((blue, green, red, 0))
    return bytes(out)


def decode_png(data: bytes) -> tuple[int, int, bytes]:
    """``(width, height, rgb)`` of an 8-bit RGB PNG with unfiltered rows, checking every chunk's CRC."""
    import zlib

    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    offset, chunks = 8, []
    while offset < len(data):
        (length,) = struct.unpack(">I", data[offset : offset + 4])
        kind = data[offset + 4 : offset + 8]
        body = data[offset + 8 : offset + 8 + length]
        (crc,) = struct.unpack(">I", data[offset + 8 + length : offset + 12 + length])
        assert crc == zlib.crc32(kind + body), f"bad CRC in {kind!r}"
        chunks.append((kind, body))
        offset += 12 + length
    assert [kind for kind, _ in chunks][0] == b"IHDR" and chunks[-1] == (b"IEND", b"")
    width, height, depth, colour, compression, filtering, interlace = struct.unpack(">IIBBBBB", chunks[0][1])
    assert (depth, colour, compression, filtering, interlace) == (8, 2, 0, 0, 0)
    raw = zlib.decompress(b"".join(body for kind, body in chunks if kind == b"IDAT"))
    stride = 1 + width * 3
    assert len(raw) == stride * height
    rows = [raw[i * stride : (i + 1) * stride] for i in range(height)]
    assert all(row[0] == 0 for row in rows), "the encoder writes filter 0 only"
    return width, height, b"".join(row[1:] for row in rows)


def rgb_at(rgb: bytes, width: int, x: int, y: int) -> tuple[int, int, int]:
    offset = (y * width + x) * 3
    return rgb[offset], rgb[offset + 1], rgb[offset + 2]
