"""The desktop client against a real VNC server: x11vnc serving an Xvfb screen on this host.

No sandbox: the RFB client runs over a plain TCP connection to x11vnc (``SocketTransport``), the
same client that ``connect_desktop`` runs over the sandbox's tunnel. What the X server then sees
is read back with ``xdotool`` (pointer), ``xsetroot`` (drawing) and ``xev`` (keys and buttons).
Each test starts its own Xvfb and x11vnc and stops them when it ends.

Needs ``Xvfb`` (xvfb) and ``x11vnc`` (the module is skipped without them), ``xdotool``,
``xsetroot`` (x11-xserver-utils) and ``xev`` (x11-utils) for the tests that use them.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from alcove.sandbox import AsyncDesktop, Desktop, SandboxError
from alcove.sandbox._byte_transport import AsyncSocketTransport, SocketTransport
from alcove.sandbox.async_desktop import open_desktop as aopen_desktop
from alcove.sandbox.desktop import open_desktop
from rfb_fakes import decode_png, rgb_at

if shutil.which("Xvfb") is None or shutil.which("x11vnc") is None:
    pytest.skip(
        "Xvfb and x11vnc are not installed (apt-get install xvfb x11vnc; scripts/setup.sh installs them)",
        allow_module_level=True,
    )

PASSWORD = "tensorlake"
WIDTH, HEIGHT = 1280, 800
T = 10.0  # seconds: every wait here is bounded


def needs(*tools: str) -> None:
    missing = [tool for tool in tools if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"{', '.join(missing)} not installed (xdotool; xsetroot: x11-xserver-utils; xev: x11-utils)")


def eventually(condition: Callable[[], bool], timeout: float = T) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(2)  # x11vnc may take seconds to clean up: it is killed then (nothing is left)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Display:
    """An Xvfb screen; :meth:`run` runs an X client on it."""

    def __init__(self, number: int, workdir: Path) -> None:
        self.number = number
        self.workdir = workdir
        self.env = {**os.environ, "DISPLAY": f":{number}"}

    def run(self, *command: str) -> str:
        return subprocess.run(command, env=self.env, capture_output=True, text=True, timeout=T, check=True).stdout


@pytest.fixture
def display() -> Iterator[Display]:
    """A fresh ``Xvfb -screen 0 1280x800x24`` on a display number it picks itself (-displayfd)."""
    with tempfile.TemporaryDirectory(prefix="alcove-xvfb-") as workdir:
        read_end, write_end = os.pipe()
        xvfb = subprocess.Popen(
            ["Xvfb", "-displayfd", str(write_end), "-screen", "0", f"{WIDTH}x{HEIGHT}x24", "-nolisten", "tcp"],
            pass_fds=(write_end,),
            stdout=subprocess.DEVNULL,
            stderr=open(Path(workdir) / "xvfb.log", "wb"),  # noqa: SIM115 - closed with the directory
        )
        os.close(write_end)
        try:
            # Xvfb writes the display number once it accepts clients.
            with os.fdopen(read_end, "rb") as announcement:
                number = announcement.readline().strip()
            if not number:
                pytest.fail(f"Xvfb did not start: {(Path(workdir) / 'xvfb.log').read_text(errors='replace')}")
            yield Display(int(number), Path(workdir))
        finally:
            stop(xvfb)


def start_x11vnc(display: Display, *auth: str) -> tuple[int, subprocess.Popen[bytes]]:
    port = free_port()
    log = display.workdir / f"x11vnc-{port}.log"
    command = ["x11vnc", "-display", f":{display.number}", "-rfbport", str(port), "-forever", "-shared"]
    command += ["-localhost", "-add_keysyms", *auth]
    process = subprocess.Popen(command, stdout=open(log, "wb"), stderr=subprocess.STDOUT)  # noqa: SIM115

    def listening() -> bool:
        if process.poll() is not None:
            pytest.fail(f"x11vnc exited: {log.read_text(errors='replace')}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
        except OSError:
            return False
        return True

    if not eventually(listening, 20):
        stop(process)
        pytest.fail(f"x11vnc did not listen on {port}: {log.read_text(errors='replace')}")
    return port, process


@pytest.fixture
def vnc(display: Display) -> Iterator[int]:
    """x11vnc with a password (made with ``x11vnc -storepasswd``); yields its port."""
    password_file = display.workdir / "passwd"
    subprocess.run(["x11vnc", "-storepasswd", PASSWORD, str(password_file)], capture_output=True, check=True)
    port, process = start_x11vnc(display, "-rfbauth", str(password_file))
    yield port
    stop(process)


@pytest.fixture
def open_vnc(display: Display) -> Iterator[int]:
    """x11vnc without a password (``-nopw``)."""
    port, process = start_x11vnc(display, "-nopw")
    yield port
    stop(process)


@pytest.fixture
def desktop(vnc: int) -> Iterator[Desktop]:
    with open_desktop(SocketTransport.connect("127.0.0.1", vnc), password=PASSWORD) as session:
        yield session


def test_server_init_and_screenshot(desktop: Desktop) -> None:
    assert (desktop.width, desktop.height) == (WIDTH, HEIGHT)
    width, height, rgb = decode_png(desktop.screenshot())
    assert (width, height) == (WIDTH, HEIGHT)
    assert len(rgb) == WIDTH * HEIGHT * 3


def test_screenshots_show_what_is_drawn(display: Display, desktop: Desktop) -> None:
    needs("xsetroot")
    # Not the middle of the screen: x11vnc draws the pointer into the picture, and it starts there.
    points = ((5, 5), (300, 100), (1279, 799))
    seen: list[tuple[int, int, int]] = []

    def sample() -> list[tuple[int, int, int]]:
        width, _, rgb = decode_png(desktop.screenshot())
        seen[:] = [rgb_at(rgb, width, x, y) for x, y in points]
        return seen

    for name, colour in (("#ff0000", (255, 0, 0)), ("#00ff80", (0, 255, 128)), ("#2040c0", (32, 64, 192))):
        display.run("xsetroot", "-solid", name)
        # x11vnc polls the X screen and sometimes takes about 5 s to notice a change: the first
        # screenshots may predate it (the server's picture, not the client's doing).
        assert eventually(lambda colour=colour: sample() == [colour] * len(points), 20), (
            f"the screen never turned {name}: {seen}"
        )


def test_pointer_moves_reach_the_x_server(display: Display, desktop: Desktop) -> None:
    needs("xdotool")
    for x, y in ((123, 456), (0, 0), (1279, 799)):
        desktop.move_mouse(x, y)
        assert eventually(lambda x=x, y=y: f"x:{x} y:{y} " in display.run("xdotool", "getmouselocation"))


XEV_EVENT = re.compile(r"^(KeyPress|KeyRelease|ButtonPress|ButtonRelease) event")


def xev_events(output: str) -> list[tuple[str, str, str]]:
    """``(event, what, text)`` per key or button event xev printed.

    ``what`` is the keysym's name (``"a"``, ``"eacute"``, ``"Control_L"``) or the button number
    with where it was pressed (``"1@300,200"``, root coordinates); ``text`` is what the key typed.
    """
    events = []
    for block in output.split("\n\n"):
        block = block.strip("\n")
        match = XEV_EVENT.match(block)
        if match is None:
            continue
        kind = match.group(1)
        if kind.startswith("Key"):
            keysym = re.search(r"keysym 0x[0-9a-f]+, (\w+)\)", block)
            typed = re.search(r"XLookupString gives \d+ bytes: (?:\(([0-9a-f ]+)\))?", block)
            assert keysym is not None and typed is not None, block
            text = bytes.fromhex(typed.group(1).replace(" ", "")).decode() if typed.group(1) else ""
            events.append((kind, keysym.group(1), text))
        else:
            button = re.search(r"button (\d+)", block)
            where = re.search(r"root:\((\d+),(\d+)\)", block)
            assert button is not None and where is not None, block
            events.append((kind, f"{button.group(1)}@{where.group(1)},{where.group(2)}", ""))
    return events


MODIFIERS = {"Shift_L", "Shift_R", "Control_L", "Control_R"}


def test_keys_and_buttons_reach_a_window(display: Display, desktop: Desktop) -> None:
    needs("xev")
    log = display.workdir / "xev.log"

    def events() -> list[tuple[str, str, str]]:
        return xev_events(log.read_text(errors="replace"))

    # x11vnc binds keysyms missing from the keymap (é, €) as they are first typed, and a client
    # that reads a key event before the keymap change reaches it sees NoSymbol: bind them
    # first, before xev reads the keymap.
    desktop.type_text("é€")
    time.sleep(0.5)
    # xev's window fills the screen; with no window manager, keys go to the window under the pointer.
    xev = subprocess.Popen(
        ["xev", "-geometry", f"{WIDTH}x{HEIGHT}+0+0", "-event", "keyboard", "-event", "button"],
        env={**display.env, "LC_ALL": "C.UTF-8"},
        stdout=open(log, "wb"),  # noqa: SIM115
        stderr=subprocess.STDOUT,
    )
    try:
        # xev prints its window's id once it is created; give it a moment to be mapped.
        assert eventually(lambda: "Outer window is" in log.read_text(errors="replace"))
        time.sleep(0.5)
        desktop.click(300, 200)
        desktop.right_click()
        desktop.scroll_up(2)
        desktop.scroll_down()
        desktop.type_text("aZé€ 1\n")
        desktop.press(["ctrl", "c"])
        desktop.key_down("shift")
        desktop.press("f5")
        desktop.key_up("shift")
        # x11vnc may hold pointer events back a little while it polls the screen, so buttons and
        # keys are checked each in their own order, not against each other.
        buttons = ["1@300,200", "3@300,200", "4@300,200", "4@300,200", "5@300,200"]
        typed = [
            ("a", "a"),
            ("Z", "Z"),  # x11vnc holds Shift for it
            ("eacute", "é"),
            ("U20AC", "€"),  # a Unicode keysym, bound by -add_keysyms
            ("space", " "),
            ("1", "1"),
            ("Return", "\r"),
            ("c", "\x03"),  # with Control held: ^C
            ("F5", ""),
        ]

        def pressed(kind: str) -> list[tuple[str, str]]:
            got = [(what, text) for event, what, text in events() if event == kind and what not in MODIFIERS]
            if kind == "KeyPress" and ("a", "a") in got:
                # x11vnc may deliver the binding keys typed above late, into xev's window.
                got = got[got.index(("a", "a")) :]
            return got

        assert eventually(lambda: len(pressed("ButtonPress")) >= len(buttons)), pressed("ButtonPress")
        assert eventually(lambda: len(pressed("KeyPress")) >= len(typed)), pressed("KeyPress")
        assert [what for what, _ in pressed("ButtonPress")] == buttons
        assert pressed("KeyPress") == typed
        keys = [(kind, what) for kind, what, _ in events() if kind.startswith("Key")]
        # The chord: pressed in order, released in reverse.
        chord = keys.index(("KeyPress", "Control_L"))
        assert keys[chord : chord + 4] == [
            ("KeyPress", "Control_L"),
            ("KeyPress", "c"),
            ("KeyRelease", "c"),
            ("KeyRelease", "Control_L"),
        ]
        # F5 while Shift was held down by key_down (x11vnc may press Shift again around F5).
        f5 = keys.index(("KeyPress", "F5"))
        assert ("KeyPress", "Shift_L") in keys[chord + 4 : f5]
        assert keys[-1] == ("KeyRelease", "Shift_L")
    finally:
        stop(xev)


def test_wrong_or_missing_password(vnc: int) -> None:
    with pytest.raises(SandboxError, match="authentication failed"):
        open_desktop(SocketTransport.connect("127.0.0.1", vnc), password="wrong")
    with pytest.raises(SandboxError, match="requires password authentication but no password was given"):
        open_desktop(SocketTransport.connect("127.0.0.1", vnc))


def test_server_without_password(open_vnc: int) -> None:
    with open_desktop(SocketTransport.connect("127.0.0.1", open_vnc)) as session:
        assert decode_png(session.screenshot())[:2] == (WIDTH, HEIGHT)
    # A password the server does not ask for is not used.
    with open_desktop(SocketTransport.connect("127.0.0.1", open_vnc), password="unused", shared=False) as session:
        assert (session.width, session.height) == (WIDTH, HEIGHT)


def test_screenshot_time(desktop: Desktop) -> None:
    desktop.screenshot()
    times = []
    for _ in range(20):
        started = time.perf_counter()
        desktop.screenshot()
        times.append(time.perf_counter() - started)
    p50 = statistics.median(times)
    print(f"screenshot {WIDTH}x{HEIGHT} against x11vnc: p50 {p50 * 1000:.1f} ms, max {max(times) * 1000:.1f} ms")
    assert p50 < 1.0  # a generous bound for a loaded 2-core machine; typically about 20 ms


async def test_async_desktop_against_x11vnc(display: Display, vnc: int) -> None:
    needs("xdotool")
    transport = await AsyncSocketTransport.connect("127.0.0.1", vnc)
    async with await aopen_desktop(transport, password=PASSWORD) as session:
        assert isinstance(session, AsyncDesktop)
        assert decode_png(await session.screenshot())[:2] == (WIDTH, HEIGHT)
        await session.move_mouse(77, 88)
        assert eventually(lambda: "x:77 y:88 " in display.run("xdotool", "getmouselocation"))


# ---------------------------------------------------------------------------------------------
# TigerVNC's Xvnc, the server of Alcove's desktop image (images/desktop), when it is installed


@pytest.fixture
def xvnc() -> Iterator[tuple[Display, int]]:
    """``Xvnc`` as images/desktop starts it (VNC authentication, shared), on its own display."""
    if shutil.which("Xvnc") is None or shutil.which("vncpasswd") is None:
        pytest.skip("TigerVNC is not installed (tigervnc-standalone-server, tigervnc-tools)")
    with tempfile.TemporaryDirectory(prefix="alcove-xvnc-") as workdir:
        password_file = Path(workdir) / "passwd"
        made = subprocess.run(["vncpasswd", "-f"], input=f"{PASSWORD}\n".encode(), capture_output=True, check=True)
        password_file.write_bytes(made.stdout)
        port = free_port()
        read_end, write_end = os.pipe()
        command = ["Xvnc", "-displayfd", str(write_end), "-geometry", f"{WIDTH}x{HEIGHT}", "-depth", "24"]
        command += ["-rfbport", str(port), "-localhost", "-SecurityTypes", "VncAuth", "-rfbauth", str(password_file)]
        command += ["-AlwaysShared", "-nolisten", "tcp"]
        server = subprocess.Popen(
            command, pass_fds=(write_end,), stdout=subprocess.DEVNULL, stderr=open(Path(workdir) / "xvnc.log", "wb")
        )
        os.close(write_end)
        try:
            with os.fdopen(read_end, "rb") as announcement:
                number = announcement.readline().strip()
            if not number:
                pytest.fail(f"Xvnc did not start: {(Path(workdir) / 'xvnc.log').read_text(errors='replace')}")
            yield Display(int(number), Path(workdir)), port
        finally:
            stop(server)


def test_xvnc(xvnc: tuple[Display, int]) -> None:
    display, port = xvnc
    with pytest.raises(SandboxError, match="authentication failed"):
        open_desktop(SocketTransport.connect("127.0.0.1", port), password="wrong")
    with open_desktop(SocketTransport.connect("127.0.0.1", port), password=PASSWORD) as session:
        assert (session.width, session.height) == (WIDTH, HEIGHT)
        assert decode_png(session.screenshot())[:2] == (WIDTH, HEIGHT)
        if shutil.which("xsetroot"):
            display.run("xsetroot", "-solid", "#336699")
            # Xvnc is the X server: what it sends is the screen as it is, at once.
            width, _, rgb = decode_png(session.screenshot())
            assert rgb_at(rgb, width, 10, 10) == (0x33, 0x66, 0x99)
        if shutil.which("xdotool"):
            session.move_mouse(21, 34)
            assert eventually(lambda: "x:21 y:34 " in display.run("xdotool", "getmouselocation"))
        times = []
        for _ in range(20):
            started = time.perf_counter()
            session.screenshot()
            times.append(time.perf_counter() - started)
        print(f"screenshot {WIDTH}x{HEIGHT} against Xvnc: p50 {statistics.median(times) * 1000:.1f} ms")
