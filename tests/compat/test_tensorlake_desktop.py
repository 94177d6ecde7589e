"""The official `tensorlake==0.5.161` SDK's desktop handle (its own RFB client over the TCP
tunnel) against an Alcove desktop sandbox: screenshots, mouse, keys, a wrong password."""

from __future__ import annotations

import struct
import time

import pytest

tl = pytest.importorskip("tensorlake.sandbox", reason="tensorlake SDK missing")

DESKTOP = "tensorlake/ubuntu-vnc"


@pytest.fixture
def desktop_sandbox(server):
    client = tl.SandboxClient.for_localhost(api_url=server.url)
    with client.create_and_connect(image=DESKTOP) as sb:
        yield sb


def png_size(png: bytes) -> tuple[int, int]:
    assert png[:8] == b"\x89PNG\r\n\x1a\n", png[:16]
    return struct.unpack(">II", png[16:24])


def wait_for(predicate, what: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.25)
    raise AssertionError(f"{what} within {timeout} s")


def test_the_api_example_drives_the_desktop(desktop_sandbox):
    sb = desktop_sandbox
    with sb.connect_desktop(password="tensorlake") as desktop:
        assert (desktop.width, desktop.height) == (1280, 800)
        before = desktop.screenshot()
        assert png_size(before) == (1280, 800)
        # A terminal whose shell writes the line it reads to a file.
        sb.start_process(
            "xterm",
            ["-title", "typed", "-geometry", "80x10+100+100", "-e",
             "bash", "-c", "read -r line; printf '%s' \"$line\" > /tmp/typed.txt"],
        )

        def has_window() -> bool:
            return sb.run("xdotool", ["search", "--name", "typed"]).stdout.strip() != ""

        wait_for(has_window, "the xterm window appeared")
        # The screen shows the new window.
        wait_for(lambda: desktop.screenshot() != before, "the screenshot changed")
        desktop.move_mouse(300, 150)
        desktop.click()
        location = sb.run("xdotool", ["getmouselocation"]).stdout
        assert "x:300 y:150" in location, location

        def focused() -> bool:
            # A click focuses the window under it; on a loaded machine the first may land
            # before the window manager took the window in, so click again until it has.
            if sb.run("xdotool", ["getwindowfocus", "getwindowname"]).stdout.strip() == "typed":
                return True
            desktop.click(300, 150)
            return False

        wait_for(focused, "the xterm has the keyboard focus")
        desktop.type_text("hello from desktop")
        desktop.press("enter")
        wait_for(
            lambda: sb.run("cat", ["/tmp/typed.txt"]).stdout == "hello from desktop",
            "the typed line reached the xterm's shell",
        )


def test_a_wrong_password_is_refused_and_a_reconnect_finds_the_same_session(desktop_sandbox):
    sb = desktop_sandbox
    with pytest.raises(tl.SandboxError) as refused:
        sb.connect_desktop(password="not-the-password")
    assert "authentication" in str(refused.value).lower()
    sb.start_process("xterm", ["-title", "kept"])
    wait_for(lambda: sb.run("xdotool", ["search", "--name", "kept"]).stdout.strip() != "",
             "the xterm window appeared")
    with sb.connect_desktop(password="tensorlake") as first:
        first.move_mouse(10, 20)
        wait_for(lambda: "x:10 y:20" in sb.run("xdotool", ["getmouselocation"]).stdout,
                 "the pointer moved", timeout=5)
        shot = first.screenshot()
    with sb.connect_desktop(password="tensorlake") as second:
        # Same X session: the window opened before is still on the screen.
        assert sb.run("xdotool", ["search", "--name", "kept"]).stdout.strip()
        again = second.screenshot()
        assert png_size(again) == (1280, 800)
        assert len(again) > 0 and len(shot) > 0
