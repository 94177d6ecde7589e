"""The desktop client: DES, keysyms, PNG, the RFB protocol, and Desktop / AsyncDesktop against a fake VNC server.

No X server is needed here (``test_desktop_vnc.py`` drives a real one): ``rfb_fakes.FakeVncServer``
is a scripted RFB server on 127.0.0.1, reached over a plain socket or, for
``sandbox.connect_desktop()``, through the loopback fake of the proxy's TCP tunnel.
"""

from __future__ import annotations

import json
import shutil
import socket
import struct
import subprocess
import time
import zlib
from collections.abc import Callable, Iterator

import httpx
import pytest

from alcove.sandbox import (
    AsyncDesktop,
    AsyncSandboxClient,
    Desktop,
    SandboxClient,
    SandboxConnectionError,
    SandboxError,
    SandboxTimeoutError,
    _des,
    _keysyms,
    _png,
    _rfb,
)
from alcove.sandbox import async_desktop as async_desktop_module
from alcove.sandbox import desktop as desktop_module
from alcove.sandbox._byte_transport import AsyncSocketTransport, SocketTransport
from alcove.sandbox.async_desktop import open_desktop as aopen_desktop
from alcove.sandbox.desktop import open_desktop
from fakes import FakeServer, info_json, jsonr, sse
from rfb_fakes import FakeVncServer, decode_png, pixel, rgb_at
from ws_fakes import FakeProxy

SBX = "/v1/namespaces/default/sandboxes/sbx-1"
T = 5.0  # seconds: every wait in these tests is bounded


def eventually(condition: Callable[[], bool], timeout: float = T) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


@pytest.fixture
def vnc() -> Iterator[FakeVncServer]:
    server = FakeVncServer()
    yield server
    server.close()


def connect(server: FakeVncServer, password: str | None = None, **options: object) -> Desktop:
    return open_desktop(SocketTransport.connect("127.0.0.1", server.port), password=password, **options)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------
# DES and VNC authentication


@pytest.mark.parametrize(
    ("key", "plain", "cipher"),
    [
        # FIPS 46 worked example, and vectors of NBS Special Publication 500-20.
        ("133457799BBCDFF1", "0123456789ABCDEF", "85E813540F0AB405"),
        ("0E329232EA6D0D73", "8787878787878787", "0000000000000000"),
        ("0101010101010101", "95F8A5E5DD31D900", "8000000000000000"),
        ("8001010101010101", "0000000000000000", "95A8D72813DAA94D"),
        ("7CA110454A1A6E57", "01A1D6D039776742", "690F5B0D9A26939B"),
    ],
)
def test_des_known_answers(key: str, plain: str, cipher: str) -> None:
    assert _des.des_encrypt_block(bytes.fromhex(key), bytes.fromhex(plain)) == bytes.fromhex(cipher)


def test_vnc_authentication_response() -> None:
    # Cross-checked with `openssl enc -des-ecb -nopad -K 0e86ceceeef64e26` (the bit-reversed key).
    assert _des.vnc_key(b"password").hex() == "0e86ceceeef64e26"
    assert _des.vnc_auth_response(b"password", bytes(range(16))).hex() == "b866924125c8eebb9debc1db61c538e2"
    # Only the first 8 bytes count; shorter passwords are padded with zeros.
    challenge = bytes(range(16, 32))
    assert _des.vnc_auth_response(b"passwordLONGER", challenge) == _des.vnc_auth_response(b"password", challenge)
    assert _des.vnc_key(b"ab") == bytes([0x86, 0x46, 0, 0, 0, 0, 0, 0])
    with pytest.raises(ValueError):
        _des.vnc_auth_response(b"x", bytes(15))


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is not installed")
def test_des_matches_openssl() -> None:
    key, block = bytes.fromhex("0e86ceceeef64e26"), bytes(range(8, 16))
    command = ["openssl", "enc", "-des-ecb", "-nopad", "-K", key.hex()]
    run = subprocess.run(command, input=block, capture_output=True)
    if run.returncode != 0:  # OpenSSL 3 keeps DES in its legacy provider
        command += ["-provider", "legacy", "-provider", "default"]
        run = subprocess.run(command, input=block, capture_output=True)
    if run.returncode != 0:
        pytest.skip(f"this openssl has no DES: {run.stderr.decode(errors='replace').strip()}")
    assert _des.des_encrypt_block(key, block) == run.stdout


# ---------------------------------------------------------------------------------------------
# keysyms


@pytest.mark.parametrize(
    ("key", "keysym"),
    [
        ("ctrl", 0xFFE3),
        ("Control", 0xFFE3),
        ("ALT", 0xFFE9),
        ("shift", 0xFFE1),
        ("super", 0xFFEB),
        ("meta", 0xFFEB),
        ("win", 0xFFEB),
        ("cmd", 0xFFEB),
        ("enter", 0xFF0D),
        ("Return", 0xFF0D),
        ("tab", 0xFF09),
        ("esc", 0xFF1B),
        ("escape", 0xFF1B),
        ("backspace", 0xFF08),
        ("delete", 0xFFFF),
        ("del", 0xFFFF),
        ("insert", 0xFF63),
        ("home", 0xFF50),
        ("end", 0xFF57),
        ("pageup", 0xFF55),
        ("page_up", 0xFF55),
        ("pagedown", 0xFF56),
        ("Page_Down", 0xFF56),
        ("up", 0xFF52),
        ("down", 0xFF54),
        ("left", 0xFF51),
        ("right", 0xFF53),
        ("space", 0x20),
        ("f1", 0xFFBE),
        ("F12", 0xFFC9),
        ("capslock", 0xFFE5),
        ("a", 0x61),
        ("A", 0x41),  # single characters keep their case
        ("é", 0xE9),
        ("€", 0x010020AC),
        ("+", 0x2B),
    ],
)
def test_key_names(key: str, keysym: int) -> None:
    assert _keysyms.key_keysym(key) == keysym


@pytest.mark.parametrize("key", ["", "ctrl+c", "f13", "hyper", "\x07", 3])
def test_unknown_keys_list_the_names(key: object) -> None:
    with pytest.raises(ValueError) as info:
        _keysyms.key_keysym(key)  # type: ignore[arg-type]
    if key not in ("", 3):
        assert "ctrl" in str(info.value) and "page_down" in str(info.value)


def test_text_keysyms() -> None:
    assert _keysyms.text_keysyms("aZ é\u00ff\u0100€😀") == [
        0x61,
        0x5A,
        0x20,
        0xE9,
        0xFF,
        0x01000100,
        0x010020AC,
        0x0101F600,
    ]
    assert _keysyms.text_keysyms("a\nb\tc\r\nd") == [0x61, 0xFF0D, 0x62, 0xFF09, 0x63, 0xFF0D, 0x64]
    for bad in ("ok\x07", "\x1b", "\x7f", "\x85"):
        with pytest.raises(ValueError, match="control character"):
            _keysyms.text_keysyms(bad)


# ---------------------------------------------------------------------------------------------
# PNG


def test_png_round_trip_and_crcs() -> None:
    width, height = 7, 5
    rgb = b"".join(bytes((x * 30, y * 40, x + y)) for y in range(height) for x in range(width))
    png = _png.encode_png(width, height, rgb)
    assert decode_png(png) == (width, height, rgb)
    # IHDR: 8-bit RGB, no interlace.
    assert png[12:16] == b"IHDR" and struct.unpack(">IIBB", png[16:26]) == (7, 5, 8, 2)
    assert zlib.crc32(png[12:29]) == struct.unpack(">I", png[29:33])[0]
    with pytest.raises(ValueError):
        _png.encode_png(width, height, rgb[:-1])
    with pytest.raises(ValueError):
        _png.encode_png(0, 1, b"")


def test_bgrx_to_rgb() -> None:
    pixels = bytes([1, 2, 3, 0, 4, 5, 6, 255])
    assert _png.bgrx_to_rgb(pixels, 2, 1) == bytes([3, 2, 1, 6, 5, 4])
    assert _png.bgrx_to_rgb(memoryview(pixels), 1, 2) == bytes([3, 2, 1, 6, 5, 4])
    with pytest.raises(ValueError):
        _png.bgrx_to_rgb(pixels, 3, 1)


def test_screen_conversion_is_fast() -> None:
    # 1280x800: conversion and encoding without per-pixel Python loops (tens of ms, not seconds).
    width, height = 1280, 800
    pixels = bytes(range(256)) * (width * height * 4 // 256)
    started = time.perf_counter()
    png = _png.encode_png(width, height, _png.bgrx_to_rgb(pixels, width, height))
    assert time.perf_counter() - started < 1.0
    assert decode_png(png)[:2] == (width, height)


# ---------------------------------------------------------------------------------------------
# The RFB protocol, sans I/O


def server_init(width: int = 4, height: int = 2, name: bytes = b"vm", true_colour: bool = True) -> bytes:
    pixel_format = _rfb.PixelFormat(32, 24, False, true_colour, 255, 255, 255, 16, 8, 0).pack()
    return struct.pack(">HH", width, height) + pixel_format + struct.pack(">I", len(name)) + name


def feed(client: _rfb.RfbClient, data: bytes) -> bytes:
    """Feed ``data`` in the amounts the client asks for; returns what it queued meanwhile."""
    out = bytearray()
    while data:
        count = client.bytes_needed
        client.receive(data[:count])
        data = data[count:]
        out += client.data_to_send()
    return bytes(out)


SETUP = _rfb.set_pixel_format(_rfb.CLIENT_PIXEL_FORMAT) + _rfb.set_encodings([0, -223])


@pytest.mark.parametrize(
    ("banner", "answer"),
    [
        (b"RFB 003.003\n", b"RFB 003.003\n"),
        (b"RFB 003.005\n", b"RFB 003.003\n"),
        (b"RFB 003.007\n", b"RFB 003.007\n"),
        (b"RFB 003.008\n", b"RFB 003.008\n"),
        (b"RFB 003.889\n", b"RFB 003.008\n"),  # macOS
        (b"RFB 004.001\n", None),
        (b"RFB 003.002\n", None),
        (b"HTTP/1.1 40\n", None),
    ],
)
def test_version_negotiation(banner: bytes, answer: bytes | None) -> None:
    client = _rfb.RfbClient()
    if answer is None:
        with pytest.raises(_rfb.RfbProtocolError):
            client.receive(banner)
        with pytest.raises(_rfb.RfbProtocolError):
            client.bytes_needed  # noqa: B018 - a failed client stays failed
        return
    client.receive(banner)
    assert client.data_to_send() == answer


def test_handshake_3_8_none_then_setup() -> None:
    client = _rfb.RfbClient(shared=False)
    sent = feed(client, b"RFB 003.008\n" + b"\x02\x02\x01" + bytes(4) + server_init(name="écran".encode()))
    assert sent == b"RFB 003.008\n" + b"\x01" + b"\x00" + SETUP  # None chosen, not shared
    assert client.ready and client.server_init is not None
    assert (client.width, client.height, client.server_init.name) == (4, 2, "écran")
    assert client.bytes_needed == 1  # the next server message's type


def test_handshake_3_3_and_3_7_with_none_have_no_security_result() -> None:
    client = _rfb.RfbClient()
    assert feed(client, b"RFB 003.003\n" + struct.pack(">I", 1) + server_init()) == b"RFB 003.003\n\x01" + SETUP
    client = _rfb.RfbClient()
    assert feed(client, b"RFB 003.007\n" + b"\x01\x01" + server_init()) == b"RFB 003.007\n\x01\x01" + SETUP


@pytest.mark.parametrize("version", [b"RFB 003.003\n", b"RFB 003.007\n", b"RFB 003.008\n"])
def test_vnc_authentication(version: bytes) -> None:
    challenge = bytes(range(200, 216))
    offer = struct.pack(">I", 2) if version == b"RFB 003.003\n" else b"\x01\x02"
    client = _rfb.RfbClient(password=b"tensorlake")
    sent = feed(client, version + offer + challenge + bytes(4) + server_init())
    response = _des.vnc_auth_response(b"tensorlake", challenge)
    chosen = b"" if version == b"RFB 003.003\n" else b"\x02"
    assert sent == version + chosen + response + b"\x01" + SETUP
    assert client.ready


def test_authentication_failure_says_so_with_the_reason() -> None:
    client = _rfb.RfbClient(password=b"wrong")
    with pytest.raises(_rfb.RfbProtocolError, match="VNC authentication failed: bad password") as info:
        feed(client, b"RFB 003.008\n\x01\x02" + bytes(16) + struct.pack(">II", 1, 12) + b"bad password")
    assert isinstance(info.value, SandboxError)
    client = _rfb.RfbClient(password=b"wrong")
    with pytest.raises(_rfb.RfbProtocolError, match="^VNC authentication failed$"):
        feed(client, b"RFB 003.007\n\x01\x02" + bytes(16) + struct.pack(">I", 1))


def test_password_needed_but_not_given() -> None:
    for version, offer in ((b"RFB 003.008\n", b"\x01\x02"), (b"RFB 003.003\n", struct.pack(">I", 2))):
        client = _rfb.RfbClient()
        with pytest.raises(_rfb.RfbProtocolError, match="requires password authentication but no password"):
            feed(client, version + offer)


def test_refusals_and_unsupported_security() -> None:
    client = _rfb.RfbClient()
    with pytest.raises(_rfb.RfbProtocolError, match="refused the connection: too many clients"):
        feed(client, b"RFB 003.008\n\x00" + struct.pack(">I", 16) + b"too many clients")
    client = _rfb.RfbClient()
    with pytest.raises(_rfb.RfbProtocolError, match="refused the connection: go away"):
        feed(client, b"RFB 003.003\n" + struct.pack(">II", 0, 7) + b"go away")
    client = _rfb.RfbClient(password=b"x")
    with pytest.raises(_rfb.RfbProtocolError, match=r"unsupported VNC security types .*\[16, 19\]"):
        feed(client, b"RFB 003.008\n\x02\x10\x13")


def test_colour_map_servers_are_refused() -> None:
    client = _rfb.RfbClient()
    with pytest.raises(_rfb.RfbProtocolError, match="true colour"):
        feed(client, b"RFB 003.008\n\x01\x01" + bytes(4) + server_init(true_colour=False))


def ready_client(width: int = 4, height: int = 2) -> _rfb.RfbClient:
    client = _rfb.RfbClient()
    feed(client, b"RFB 003.008\n\x01\x01" + bytes(4) + server_init(width, height))
    return client


def raw(x: int, y: int, width: int, height: int, fill: int) -> bytes:
    return struct.pack(">HHHHi", x, y, width, height, 0) + bytes([fill]) * (width * height * 4)


def test_screen_tracking_and_other_messages() -> None:
    client = ready_client(4, 2)
    client.request_screen()
    assert client.data_to_send() == _rfb.framebuffer_update_request(False, 0, 0, 4, 2)
    assert not client.screen_complete
    bell, cut = b"\x02", b"\x03\0\0\0" + struct.pack(">I", 3) + b"abc"
    colours = b"\x01\0" + struct.pack(">HH", 5, 1) + bytes(6)
    # Two rectangles of one update; the screen is complete only once the update is read whole.
    feed(client, bell + cut + colours + b"\x00\0" + struct.pack(">H", 2) + raw(0, 0, 3, 2, 9))
    assert not client.screen_complete
    feed(client, raw(3, 0, 1, 2, 7))
    assert client.screen_complete
    assert client.framebuffer == bytes([9] * 12 + [7] * 4 + [9] * 12 + [7] * 4)


def test_overlapping_rectangles_do_not_count_twice() -> None:
    client = ready_client(4, 2)
    client.request_screen()
    update = b"\x00\0" + struct.pack(">H", 3) + raw(0, 0, 2, 2, 1) + raw(0, 0, 2, 2, 2) + raw(1, 0, 2, 2, 3)
    feed(client, update)
    assert not client.screen_complete  # column 3 is missing
    feed(client, b"\x00\0" + struct.pack(">H", 1) + raw(3, 0, 1, 2, 4))
    assert client.screen_complete


def test_desktop_size_resizes_and_asks_again() -> None:
    client = ready_client(4, 2)
    client.request_screen()
    client.data_to_send()
    resize = b"\x00\0" + struct.pack(">H", 1) + struct.pack(">HHHHi", 0, 0, 3, 3, -223)
    assert feed(client, resize) == _rfb.framebuffer_update_request(False, 0, 0, 3, 3)
    assert (client.width, client.height) == (3, 3) and not client.screen_complete
    feed(client, b"\x00\0" + struct.pack(">H", 1) + raw(0, 0, 3, 3, 5))
    assert client.screen_complete and client.framebuffer == bytes([5] * 36)


@pytest.mark.parametrize(
    ("update", "match"),
    [
        (struct.pack(">HHHHi", 0, 0, 1, 1, 5), "unsupported VNC rectangle encoding 5"),
        (struct.pack(">HHHHi", 3, 0, 2, 1, 0), "outside the 4x2 screen"),
    ],
)
def test_bad_rectangles(update: bytes, match: str) -> None:
    client = ready_client(4, 2)
    with pytest.raises(_rfb.RfbProtocolError, match=match):
        feed(client, b"\x00\0\0\x01" + update)


def test_unknown_server_message() -> None:
    client = ready_client()
    with pytest.raises(_rfb.RfbProtocolError, match="message type 150"):
        feed(client, b"\x96")


def test_client_messages() -> None:
    assert _rfb.pointer_event(5, 300, 2) == b"\x05\x05\x01\x2c\x00\x02"
    assert _rfb.key_event(0xFFE3, True) == b"\x04\x01\0\0\x00\x00\xff\xe3"
    assert _rfb.set_encodings([0, -223]) == b"\x02\0\0\x02" + b"\0\0\0\0" + b"\xff\xff\xff\x21"
    assert _rfb.CLIENT_PIXEL_FORMAT.pack() == bytes([32, 24, 0, 1, 0, 255, 0, 255, 0, 255, 16, 8, 0, 0, 0, 0])


# ---------------------------------------------------------------------------------------------
# Desktop over a socket, against the fake server


def test_connect_screenshot_and_server_messages(vnc: FakeVncServer) -> None:
    with connect(vnc) as desktop:
        assert isinstance(desktop, Desktop)
        assert (desktop.width, desktop.height) == (64, 48)
        png = desktop.screenshot()
        width, height, rgb = decode_png(png)
        assert (width, height) == (64, 48)
        for x, y in ((0, 0), (31, 23), (32, 24), (63, 47), (10, 40)):
            assert rgb_at(rgb, width, x, y) == pixel(x, y)
        assert desktop.screenshot() == png  # a second request, Bell / clipboard / colour map again
    connection = vnc.connections[0]
    assert connection.version == b"RFB 003.008\n" and connection.security == 1 and connection.shared == 1
    kinds = [kind for kind, _ in connection.messages]
    assert kinds[:2] == [0, 2]
    assert connection.messages[0][1] == b"\0\0\0" + _rfb.CLIENT_PIXEL_FORMAT.pack()
    assert struct.unpack(">xHii", connection.messages[1][1]) == (2, 0, -223)
    assert connection.of_type(3)[0] == struct.pack(">BHHHH", 0, 0, 0, 64, 48)
    assert connection.closed.wait(T)  # closing the desktop closed the connection


@pytest.mark.parametrize("version", [b"RFB 003.003\n", b"RFB 003.007\n", b"RFB 003.008\n"])
def test_password_against_the_fake(version: bytes) -> None:
    server = FakeVncServer(version=version, security_types=(2,), password="tensorlake")
    try:
        with connect(server, password="tensorlake", shared=False) as desktop:
            assert decode_png(desktop.screenshot())[:2] == (64, 48)
        assert server.connections[0].shared == 0
        with pytest.raises(SandboxError, match="authentication failed") as info:
            connect(server, password="wrong")
        if version == b"RFB 003.008\n":
            assert "bad password" in str(info.value)
        assert server.connections[1].closed.wait(T)  # the failed connection was closed
        with pytest.raises(SandboxError, match="no password was given"):
            connect(server)
    finally:
        server.close()


def test_resize_during_a_screenshot() -> None:
    server = FakeVncServer(resize_to=(40, 30), noise=False)
    try:
        with connect(server) as desktop:
            width, height, rgb = decode_png(desktop.screenshot())
            assert (width, height) == (desktop.width, desktop.height) == (40, 30)
            assert rgb_at(rgb, 40, 39, 29) == pixel(39, 29)
    finally:
        server.close()


def test_a_timeout_keeps_the_stream_in_step() -> None:
    vnc = FakeVncServer(changing=True)  # every update shows a new generation of the screen
    try:
        with connect(vnc) as desktop:
            width, _, rgb = decode_png(desktop.screenshot())
            assert rgb_at(rgb, width, 63, 47) == pixel(63, 47, 0)
            vnc.stall.set()  # the server sends half of the next screen, then waits
            with pytest.raises(SandboxTimeoutError, match="did not send the whole screen within 0.3 s") as info:
                desktop.screenshot(timeout=0.3)
            assert info.value.parameter == "timeout"
            vnc.resume.set()
            # The rest of the late update is read first and not taken for the new screenshot,
            # which shows the screen the server sent after it.
            width, _, rgb = decode_png(desktop.screenshot())
            assert [rgb_at(rgb, width, x, y) for x, y in ((0, 0), (63, 47))] == [pixel(0, 0, 2), pixel(63, 47, 2)]
            desktop.click(1, 1)
            width, _, rgb = decode_png(desktop.screenshot())
            assert rgb_at(rgb, width, 10, 10) == pixel(10, 10, 3)
    finally:
        vnc.close()


def test_mouse_and_keyboard_messages(vnc: FakeVncServer, monkeypatch: pytest.MonkeyPatch) -> None:
    pauses: list[float] = []
    monkeypatch.setattr(desktop_module, "_sleep", pauses.append)
    with connect(vnc) as desktop:
        desktop.move_mouse(10, 20)
        desktop.click()
        desktop.click(5, 6, button="right")
        desktop.mouse_press("left", 1, 2)
        desktop.move_mouse(3, 4)  # a drag: the button stays held
        desktop.mouse_release()
        desktop.left_click(7, 8)
        desktop.middle_click()
        desktop.right_click()
        desktop.double_click(9, 9, delay_ms=120)
        desktop.scroll(2)
        desktop.scroll(-1, 0, 0)
        desktop.scroll_up()
        desktop.scroll_down(3)
        desktop.scroll_up(-2)  # the direction comes from the method
        desktop.key_down("shift")
        desktop.key_up("SHIFT")
        desktop.press("enter")
        desktop.press(["ctrl", "alt", "t"])
        desktop.type_text("Hé€\n")
        desktop.screenshot()  # a round trip: every message before it has arrived
    assert pauses == [0.12]
    pointer = vnc.connections[0].pointer_events()
    assert pointer == [
        (0, 10, 20),
        (1, 10, 20),
        (0, 10, 20),
        (4, 5, 6),
        (0, 5, 6),
        (1, 1, 2),
        (1, 3, 4),
        (0, 3, 4),
        (1, 7, 8),
        (0, 7, 8),
        (2, 7, 8),
        (0, 7, 8),
        (4, 7, 8),
        (0, 7, 8),
        (1, 9, 9),
        (0, 9, 9),
        (1, 9, 9),
        (0, 9, 9),
        *[(8, 9, 9), (0, 9, 9)] * 2,
        (0, 0, 0),
        (16, 0, 0),
        (0, 0, 0),
        (8, 0, 0),
        (0, 0, 0),
        *[(16, 0, 0), (0, 0, 0)] * 3,
        *[(8, 0, 0), (0, 0, 0)] * 2,
    ]
    keys = vnc.connections[0].key_events()
    assert keys == [
        (True, 0xFFE1),
        (False, 0xFFE1),
        (True, 0xFF0D),
        (False, 0xFF0D),
        (True, 0xFFE3),
        (True, 0xFFE9),
        (True, 0x74),
        (False, 0x74),
        (False, 0xFFE9),
        (False, 0xFFE3),
        *[(down, keysym) for keysym in (0x48, 0xE9, 0x010020AC, 0xFF0D) for down in (True, False)],
    ]


def test_arguments_are_checked_before_anything_is_sent(vnc: FakeVncServer) -> None:
    with connect(vnc) as desktop:
        bad: list[tuple[Callable[..., object], tuple[object, ...], str]] = [
            (desktop.move_mouse, (64, 0), r"x=64 is outside the 64x48 screen: x must be between 0 and 63"),
            (desktop.move_mouse, (0, -1), r"y=-1 is outside the 64x48 screen"),
            (desktop.move_mouse, (1.5, 2), "x must be an integer"),
            (desktop.move_mouse, (True, 2), "x must be an integer"),
            (desktop.move_mouse, (None, 2), "both x and y"),
            (desktop.click, (3, None), "pass both x and y, or neither"),
            (desktop.click, (1, 1, "back"), "unknown mouse button 'back': use one of left, middle, right"),
            (desktop.mouse_press, ("LEFT",), "unknown mouse button"),
            (desktop.double_click, (1, 1, "left", -5), "delay_ms"),
            (desktop.scroll, (1.0,), "steps must be an integer"),
            (desktop.scroll_up, ("2",), "steps must be an integer"),
            (desktop.key_down, ("hyperkey",), "unknown key 'hyperkey': use one character or one of"),
            (desktop.key_up, ("",), "cannot be empty"),
            (desktop.press, ([],), "at least one key"),
            (desktop.press, (["ctrl", "nope"],), "unknown key 'nope'"),
            (desktop.type_text, ("ab\x00",), "control character"),
            (desktop.type_text, (b"bytes",), "takes a str"),
            (desktop.screenshot, (0,), "timeout must be a positive number"),
            (desktop.screenshot, (-1,), "timeout must be a positive number"),
            (desktop.screenshot, (float("nan"),), "timeout must be a positive number"),
        ]
        for method, args, match in bad:
            with pytest.raises(ValueError, match=match):
                method(*args)
        desktop.screenshot()
    assert [kind for kind, _ in vnc.connections[0].messages] == [0, 2, 3]  # only the setup and the screenshot


def test_a_closed_handle_says_so(vnc: FakeVncServer) -> None:
    desktop = connect(vnc)
    desktop.close()
    desktop.close()  # idempotent
    assert vnc.connections[0].closed.wait(T)
    for method, args in (
        (desktop.screenshot, ()),
        (desktop.move_mouse, (1, 1)),
        (desktop.click, ()),
        (desktop.double_click, ()),
        (desktop.scroll, (1,)),
        (desktop.key_down, ("a",)),
        (desktop.press, ("a",)),
        (desktop.type_text, ("a",)),
    ):
        with pytest.raises(SandboxError, match="the desktop handle is closed"):
            method(*args)  # type: ignore[operator]
    assert (desktop.width, desktop.height) == (64, 48)  # still readable


def test_the_server_going_away_closes_the_handle(vnc: FakeVncServer) -> None:
    desktop = connect(vnc)
    vnc.close()
    with pytest.raises(SandboxConnectionError, match="desktop connection lost"):
        desktop.screenshot(timeout=T)
    with pytest.raises(SandboxError, match="closed"):
        desktop.click()


def test_handshake_timeout_and_bad_options_close_the_transport() -> None:
    # A listener that accepts and never speaks: the handshake waits for a banner that never comes.
    with socket.create_server(("127.0.0.1", 0)) as silent:
        port = silent.getsockname()[1]
        transport = SocketTransport.connect("127.0.0.1", port)
        with pytest.raises(SandboxTimeoutError, match="VNC handshake did not finish within 0.2 s"):
            open_desktop(transport, timeout=0.2)
        assert transport._closed
        for options, match in (({"timeout": 0}, "timeout"), ({"password": 1234}, "password")):
            transport = SocketTransport.connect("127.0.0.1", port)
            with pytest.raises(ValueError, match=match):
                open_desktop(transport, **options)  # type: ignore[arg-type]
            assert transport._closed


# ---------------------------------------------------------------------------------------------
# AsyncDesktop


async def test_async_desktop_against_the_fake(vnc: FakeVncServer, monkeypatch: pytest.MonkeyPatch) -> None:
    pauses: list[float] = []

    async def no_sleep(seconds: float) -> None:
        pauses.append(seconds)

    monkeypatch.setattr(async_desktop_module, "_sleep", no_sleep)
    transport = await AsyncSocketTransport.connect("127.0.0.1", vnc.port)
    async with await aopen_desktop(transport) as desktop:
        assert isinstance(desktop, AsyncDesktop)
        width, height, rgb = decode_png(await desktop.screenshot())
        assert (width, height) == (desktop.width, desktop.height) == (64, 48)
        assert rgb_at(rgb, width, 40, 30) == pixel(40, 30)
        await desktop.double_click(3, 4)
        await desktop.press(["ctrl", "c"])
        await desktop.type_text("ok")
        await desktop.scroll_down(1, 5, 5)
        with pytest.raises(ValueError, match="outside the 64x48 screen"):
            await desktop.click(64, 0)
        vnc.stall.set()
        with pytest.raises(SandboxTimeoutError):
            await desktop.screenshot(timeout=0.2)
        vnc.resume.set()
        assert decode_png(await desktop.screenshot())[:2] == (64, 48)
    assert pauses == [0.05]
    with pytest.raises(SandboxError, match="the desktop handle is closed"):
        await desktop.click()
    await desktop.close()
    connection = vnc.connections[0]
    assert connection.pointer_events()[:4] == [(1, 3, 4), (0, 3, 4), (1, 3, 4), (0, 3, 4)]
    assert [keysym for _, keysym in connection.key_events()] == [0xFFE3, 0x63, 0x63, 0xFFE3, 0x6F, 0x6F, 0x6B, 0x6B]
    assert connection.closed.wait(T)


# ---------------------------------------------------------------------------------------------
# sandbox.connect_desktop(): the probe, then RFB through the sandbox's TCP tunnel


def probe_body(port: int) -> dict[str, object]:
    return {
        "command": "/bin/bash",
        "args": ["-c", f"exec 3<>/dev/tcp/127.0.0.1/{port}"],
        "timeout": 2.0,
        "batch_output": True,
    }


@pytest.fixture
def sandbox_client(server: FakeServer, proxy: FakeProxy, sleeps: list[float]) -> Iterator[SandboxClient]:
    server.on("GET", SBX, jsonr(200, info_json(sandbox_url=proxy.url)))
    with SandboxClient(api_key="key-1", transport=httpx.MockTransport(server)) as client:
        yield client


def test_connect_desktop_probes_then_tunnels(
    server: FakeServer, proxy: FakeProxy, sandbox_client: SandboxClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    pauses: list[float] = []
    monkeypatch.setattr(desktop_module, "_sleep", pauses.append)
    vnc = FakeVncServer(security_types=(2,), password="tensorlake")
    try:
        server.on(
            "POST", "/api/v1/processes/run", [sse({"exit_code": 1}), sse({"exit_code": 1}), sse({"exit_code": 0})]
        )
        sandbox = sandbox_client.connect("sbx-1")
        with sandbox.connect_desktop(port=vnc.port, password="tensorlake") as desktop:
            assert isinstance(desktop, Desktop)
            assert decode_png(desktop.screenshot())[:2] == (64, 48)
            desktop.click(2, 3)
            desktop.screenshot()
        runs = server.calls("POST", "/api/v1/processes/run")
        assert [json.loads(r.content) for r in runs] == [probe_body(vnc.port)] * 3
        assert pauses == [0.25, 0.25]
        upgrade = proxy.upgrades[0]
        assert upgrade.path == f"/sandboxes/sbx-1/api/v1/tunnels/tcp?port={vnc.port}"
        assert upgrade.headers["authorization"] == "Bearer key-1"
        assert vnc.connections[0].pointer_events() == [(1, 2, 3), (0, 2, 3)]
        # Closing the desktop closed the tunnel, and so the connection in the "sandbox".
        assert eventually(lambda: proxy.tunnels_closed == 1)
        assert vnc.connections[0].closed.wait(T)
    finally:
        vnc.close()


def test_connect_desktop_when_nothing_listens(
    server: FakeServer, proxy: FakeProxy, sandbox_client: SandboxClient
) -> None:
    server.on("POST", "/api/v1/processes/run", sse({"exit_code": 1}))
    sandbox = sandbox_client.connect("sbx-1")
    started = time.monotonic()
    with pytest.raises(SandboxTimeoutError) as info:
        sandbox.connect_desktop(connect_timeout=0.6)
    assert "nothing accepted connections on port 5901 in the sandbox within 0.6 s" in str(info.value)
    assert "VNC server" in str(info.value) and info.value.parameter == "connect_timeout"
    assert 0.5 <= time.monotonic() - started < 3
    assert 2 <= len(server.calls("POST", "/api/v1/processes/run")) <= 5  # every 250 ms
    assert proxy.upgrades == []  # no tunnel was opened


def test_connect_desktop_closes_the_tunnel_when_the_handshake_fails(
    server: FakeServer, proxy: FakeProxy, sandbox_client: SandboxClient
) -> None:
    vnc = FakeVncServer(security_types=(2,), password="tensorlake")
    try:
        server.on("POST", "/api/v1/processes/run", sse({"exit_code": 0}))
        sandbox = sandbox_client.connect("sbx-1")
        with pytest.raises(SandboxError, match="VNC authentication failed: bad password"):
            sandbox.connect_desktop(port=vnc.port, password="nope")
        assert eventually(lambda: proxy.tunnels_opened == 1 and proxy.tunnels_closed == 1)
        with pytest.raises(SandboxError, match="no password was given"):
            sandbox.connect_desktop(port=vnc.port)
        assert eventually(lambda: proxy.tunnels_closed == 2)
    finally:
        vnc.close()


def test_connect_desktop_checks_arguments_first(server: FakeServer, sandbox_client: SandboxClient) -> None:
    sandbox = sandbox_client.connect("sbx-1")
    for kwargs, match in (
        ({"port": 0}, "port"),
        ({"port": "5901"}, "port"),
        ({"password": b"bytes"}, "password"),
        ({"shared": 1}, "shared"),
        ({"connect_timeout": 0}, "connect_timeout"),
        ({"connect_timeout": -3}, "connect_timeout"),
    ):
        with pytest.raises(ValueError, match=match):
            sandbox.connect_desktop(**kwargs)  # type: ignore[arg-type]
    assert server.calls("POST", "/api/v1/processes/run") == []


async def test_async_connect_desktop(server: FakeServer, proxy: FakeProxy, sleeps: list[float]) -> None:
    vnc = FakeVncServer()
    try:
        server.on("GET", SBX, jsonr(200, info_json(sandbox_url=proxy.url)))
        server.on("POST", "/api/v1/processes/run", sse({"exit_code": 0}))
        async with AsyncSandboxClient(transport=httpx.MockTransport(server)) as client:
            sandbox = await client.connect("sbx-1")
            async with await sandbox.connect_desktop(port=vnc.port, shared=False) as desktop:
                assert isinstance(desktop, AsyncDesktop)
                assert decode_png(await desktop.screenshot())[:2] == (64, 48)
                await desktop.type_text("x")
                await desktop.screenshot()
        assert vnc.connections[0].shared == 0
        assert vnc.connections[0].key_events() == [(True, 0x78), (False, 0x78)]
        assert eventually(lambda: proxy.tunnels_closed == 1)
    finally:
        vnc.close()
