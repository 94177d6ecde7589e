"""Desktop sandboxes (alcove/desktop): the image's services and environment, the VNC server
behind the TCP tunnel, the desktop URL and its noVNC page, and the attacker's side of the
desktop URL (tokens bound to one sandbox, and needed when API keys are configured)."""

from __future__ import annotations

import base64
import json
import os
import shutil
import socket
import struct
import subprocess
import time
from pathlib import Path

import httpx
import pytest
from websockets.sync.client import connect as ws_connect

from framework.host import wait_until
from framework.server import AlcoveServer

DESKTOP = "tensorlake/ubuntu-vnc"


@pytest.fixture(scope="module")
def desktop(server):
    """One desktop sandbox for the module (its X session takes a few seconds to start)."""
    from alcove.sandbox import SandboxClient

    with SandboxClient(api_url=server.url) as client:
        sb = client.create_and_connect(image=DESKTOP)
        try:
            wait_for_vnc(sb)
            yield sb
        finally:
            client.delete(sb.sandbox_id)


@pytest.fixture(autouse=True)
def no_leftovers():
    """The module's desktop outlives single tests; the module-end check still runs."""
    yield


def wait_for_vnc(sb, port: int = 5901, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = sb.run("bash", ["-c", f"exec 3<>/dev/tcp/127.0.0.1/{port}"])
        if r.exit_code == 0:
            return
        time.sleep(0.25)
    raise AssertionError(f"nothing listens on {port} in the desktop sandbox after {timeout} s")


def rfb_version_over(ws) -> bytes:
    """The first message of an RFB server, read through a tunnel WebSocket."""
    data = b""
    deadline = time.monotonic() + 10
    while len(data) < 12 and time.monotonic() < deadline:
        msg = ws.recv(timeout=10)
        assert isinstance(msg, bytes), "the tunnel sends binary frames only"
        data += msg
    return data[:12]


def test_the_image_starts_its_desktop_and_every_process_sees_the_display(desktop):
    # The image's service was started at boot and keeps running.
    services = [p for p in desktop.list_processes() if p.command.endswith("alcove-desktop")]
    assert [p.status for p in services] == ["running"], services
    env = desktop.run("printenv", ["DISPLAY"])
    assert env.stdout.strip() == ":1"
    # X answers on that display: the screen is the image's default size.
    info = desktop.run("bash", ["-c", "xdpyinfo | grep dimensions"])
    assert info.exit_code == 0, info.stderr
    assert "1280x800 pixels" in info.stdout
    # A window opened through the API appears on the desktop.
    desktop.start_process("xterm", ["-title", "alcove-e2e-xterm"], stdin_mode="closed")
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        found = desktop.run("xdotool", ["search", "--name", "alcove-e2e-xterm"])
        if found.exit_code == 0 and found.stdout.strip():
            break
        time.sleep(0.25)
    else:
        raise AssertionError("the xterm window never appeared")


def test_the_browser_runs_as_root_in_the_sandbox(desktop):
    page = "data:text/html,<p id=x>hello-from-chromium</p>"
    r = desktop.run("chromium", ["--headless", "--dump-dom", page], timeout_secs=120)
    assert r.exit_code == 0, r.stderr[-2000:]
    assert "hello-from-chromium" in r.stdout
    desktop.start_process("chromium", ["--new-window", "data:text/html,<title>alcove-chromium</title>hi"],
                          stdin_mode="closed")
    wait_until(lambda: window_exists(desktop, "alcove-chromium"), "chromium's window opened", timeout=60)
    # Out of the way of the tests that type into windows of their own.
    desktop.run("pkill", ["-f", "chromium"])


def test_the_vnc_server_answers_rfb_through_the_tunnel(server, desktop):
    url = server.url.replace("http://", "ws://") + (
        f"/sandboxes/{desktop.sandbox_id}/api/v1/tunnels/tcp?port=5901"
    )
    with ws_connect(url, open_timeout=10) as ws:
        assert rfb_version_over(ws).startswith(b"RFB 003.")


def test_the_desktop_url_serves_novnc_and_relays_rfb(server, desktop):
    r = server.api("POST", f"/v1/namespaces/default/sandboxes/{desktop.sandbox_id}/desktop")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["expires_at"] > time.time() * 1000
    page_url = body["url"]
    assert f"/desktop/{desktop.sandbox_id}?token=" in page_url
    page = httpx.get(page_url, timeout=10)
    assert page.status_code == 200
    assert "text/html" in page.headers["content-type"]
    assert "/desktop/novnc/core/rfb.js" in page.text
    assert page.headers.get("referrer-policy") == "no-referrer"
    # Only the server's own pages (the console) may frame it.
    assert page.headers.get("content-security-policy") == "frame-ancestors 'self'"
    assert page.headers.get("x-frame-options") == "SAMEORIGIN"
    # noVNC's own module is served beside the page.
    rfb_js = httpx.get(server.url + "/desktop/novnc/core/rfb.js", timeout=10)
    assert rfb_js.status_code == 200 and "export default class RFB" in rfb_js.text
    # The page's socket reaches the VNC server.
    socket_url = page_url.replace("http://", "ws://").replace("?token=", "/websockify?token=")
    with ws_connect(socket_url, open_timeout=10) as ws:
        assert rfb_version_over(ws).startswith(b"RFB 003.")


def test_novnc_files_cannot_climb_out_of_their_directory(server):
    for path in ["/desktop/novnc/../../../etc/passwd", "/desktop/novnc/%2e%2e/%2e%2e/etc/passwd"]:
        r = httpx.get(server.url + path, timeout=10)
        assert r.status_code in (400, 404), (path, r.status_code)
        assert "root:x:0:0" not in r.text
    # A file noVNC does not have answers in the error shape, like every other route.
    r = httpx.get(server.url + "/desktop/novnc/core/no-such-file.js", timeout=10)
    assert r.status_code == 404
    assert r.json() == {"message": "no noVNC file at /desktop/novnc/core/no-such-file.js", "code": "NOT_FOUND"}


def test_desktop_url_refuses_bad_bodies_and_unknown_sandboxes(server, desktop):
    base = f"/v1/namespaces/default/sandboxes/{desktop.sandbox_id}/desktop"
    assert server.api("POST", base, json={"port": 0}).status_code == 400
    assert server.api("POST", base, json={"nope": 1}).status_code == 400
    assert server.api("POST", base, json=[1]).status_code == 400
    missing = "/v1/namespaces/default/sandboxes/00000000-0000-4000-8000-000000000000/desktop"
    assert server.api("POST", missing).status_code == 404


def test_with_api_keys_a_desktop_needs_its_own_token():
    """Attacker's view: with keys configured, the page and the socket need a token, a token
    opens only the sandbox it was made for, and a forged one is refused."""
    from alcove.sandbox import SandboxClient

    key = "desktop-e2e-key"
    srv = AlcoveServer(api_keys=[key])
    srv.start()
    try:
        headers = {"Authorization": f"Bearer {key}"}
        with SandboxClient(api_url=srv.url, api_key=key) as client:
            a = client.create_and_connect()
            b = client.create_and_connect()
            try:
                for sb in (a, b):
                    assert sb.run("true").exit_code == 0
                r = httpx.post(f"{srv.url}/v1/namespaces/default/sandboxes/{a.sandbox_id}/desktop",
                               headers=headers, timeout=10)
                assert r.status_code == 200, r.text
                url_a = r.json()["url"]
                token = url_a.split("token=", 1)[1]
                # No key, no token: refused. The desktop-URL route itself needs the key.
                no_key = httpx.post(f"{srv.url}/v1/namespaces/default/sandboxes/{a.sandbox_id}/desktop",
                                    timeout=10)
                assert no_key.status_code == 401
                assert httpx.get(f"{srv.url}/desktop/{a.sandbox_id}", timeout=10).status_code == 401
                # The right token opens the page of its own sandbox only.
                assert httpx.get(url_a, timeout=10).status_code == 200
                other = httpx.get(f"{srv.url}/desktop/{b.sandbox_id}?token={token}", timeout=10)
                assert other.status_code == 401
                expires, sig = token.split(".", 1)
                forged = f"{int(expires) + 1}.{sig}"
                assert httpx.get(f"{srv.url}/desktop/{a.sandbox_id}?token={forged}",
                                 timeout=10).status_code == 401
                # The socket checks the token before anything reaches the sandbox.
                ws_b = f"{srv.url.replace('http://', 'ws://')}/desktop/{b.sandbox_id}/websockify?token={token}"
                with pytest.raises(Exception) as refused:
                    with ws_connect(ws_b, open_timeout=10):
                        pass
                assert "401" in str(refused.value)
                # The token names one port: the same URL with another port, the agent's own
                # among them (its whole API, through the tunnel), is refused, as is a desktop
                # URL asked for the agent's port. (A token was once good for any port.)
                for port in (9501, 5900, 22):
                    moved = f"{url_a}&port={port}".replace("?token=", "/websockify?token=")
                    with pytest.raises(Exception) as other_port:
                        with ws_connect(moved.replace("http://", "ws://"), open_timeout=10):
                            pass
                    assert ("400" if port == 9501 else "401") in str(other_port.value), port
                    assert httpx.get(f"{url_a}&port={port}", timeout=10).status_code in (400, 401)
                agent_port = httpx.post(f"{srv.url}/v1/namespaces/default/sandboxes/{a.sandbox_id}/desktop",
                                        headers=headers, json={"port": 9501}, timeout=10)
                assert agent_port.status_code == 400 and "agent" in agent_port.json()["message"]
                r = httpx.post(f"{srv.url}/v1/namespaces/default/sandboxes/{a.sandbox_id}/desktop",
                               headers=headers, json={"port": 5902}, timeout=10)
                url_5902 = r.json()["url"]
                assert url_5902.endswith("&port=5902")
                assert httpx.get(url_5902, timeout=10).status_code == 200
                assert httpx.get(url_5902.replace("&port=5902", ""), timeout=10).status_code == 401
                # Without a token, a sandbox that exists and one that does not answer alike.
                for ident in (a.sandbox_id, "no-such-sandbox"):
                    missing = httpx.get(f"{srv.url}/desktop/{ident}", timeout=10)
                    assert missing.status_code == 401 and a.sandbox_id not in missing.text
                assert httpx.get(f"{srv.url}/desktop/no-such-sandbox?token={token}", timeout=10).status_code == 401
                bad_port = httpx.get(f"{url_a}&port=abc", timeout=10)
                assert bad_port.status_code == 400 and bad_port.json()["code"] == "INVALID_ARGUMENT"
            finally:
                client.delete(a.sandbox_id)
                client.delete(b.sandbox_id)
    finally:
        srv.stop()


def window_exists(sb, title: str) -> bool:
    r = sb.run("xdotool", ["search", "--name", title])
    return r.exit_code == 0 and bool(r.stdout.strip())


def open_window(sb, title: str) -> None:
    sb.start_process("xterm", ["-title", title], stdin_mode="closed")
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if window_exists(sb, title):
            return
        time.sleep(0.25)
    raise AssertionError(f"the window {title!r} never appeared")


def test_suspend_resume_and_a_memory_restore_keep_the_x_session(server):
    """The X server, its windows and the VNC server live through a suspend/resume and into
    sandboxes restored from a memory snapshot (which do not start the services again)."""
    from alcove.sandbox import SandboxClient

    with SandboxClient(api_url=server.url) as client:
        sb = client.create_and_connect(image=DESKTOP, name="desktop-e2e-suspend")
        try:
            wait_for_vnc(sb)
            open_window(sb, "before-suspend")
            assert client.suspend("desktop-e2e-suspend").status == "suspended"
            assert client.resume("desktop-e2e-suspend").status == "running"
            assert window_exists(sb, "before-suspend")
            wait_for_vnc(sb, timeout=5)
            with sb.connect_desktop(password="tensorlake") as d:
                assert _png_size(d.screenshot()) == (1280, 800)
            snap = client.snapshot_and_wait(sb.sandbox_id)
            clone = client.create_and_connect(snapshot_id=snap.snapshot_id)
            try:
                assert window_exists(clone, "before-suspend")
                wait_for_vnc(clone, timeout=5)
                with clone.connect_desktop(password="tensorlake") as d:
                    assert _png_size(d.screenshot()) == (1280, 800)
                # One desktop service, restored: not a second one started beside it.
                services = [p for p in clone.list_processes() if p.command.endswith("alcove-desktop")]
                assert len(services) == 1, services
                url = server.url.replace("http://", "ws://") + (
                    f"/sandboxes/{clone.sandbox_id}/api/v1/tunnels/tcp?port=5901"
                )
                with ws_connect(url, open_timeout=10) as ws:
                    assert rfb_version_over(ws).startswith(b"RFB 003.")
            finally:
                client.delete(clone.sandbox_id)
                client.delete_snapshot(snap.snapshot_id)
        finally:
            client.delete(sb.sandbox_id)



def test_the_api_example_with_alcove_sdk(desktop):
    with desktop.connect_desktop(password="tensorlake") as d:
        png_bytes = d.screenshot()
        assert _png_size(png_bytes) == (1280, 800)
        d.move_mouse(640, 400)
        d.click()
        d.type_text("hello from desktop")
        assert (d.width, d.height) == (1280, 800)
        assert "x:640 y:400" in desktop.run("xdotool", ["getmouselocation"]).stdout
    url = desktop.desktop_url()
    assert f"/desktop/{desktop.sandbox_id}?token=" in url
    assert httpx.get(url, timeout=10).status_code == 200


def test_typing_unicode_and_chords_into_an_xterm(desktop):
    """A terminal whose shell writes the line it reads to a file; the screen changes when its
    window opens; Unicode is typed; Ctrl+U (a chord) kills what was typed before it."""
    with desktop.connect_desktop(password="tensorlake") as d:
        before = d.screenshot()
        desktop.start_process(
            "xterm",
            ["-title", "typing", "-geometry", "80x10+40+40", "-e", "bash", "-c",
             "read -r line; printf '%s' \"$line\" > /tmp/typed.txt"],
            stdin_mode="closed",
        )
        wait_until(lambda: window_exists(desktop, "typing"), "the xterm window opened")
        wait_until(lambda: d.screenshot() != before, "the screenshot changed")
        d.click(200, 100)

        def focused() -> bool:
            # On a loaded machine the first click may come before the window manager took
            # the window in: click again until the xterm has the keyboard focus.
            name = desktop.run("xdotool", ["getwindowfocus", "getwindowname"]).stdout.strip()
            if name == "typing":
                return True
            d.click(200, 100)
            return False

        wait_until(focused, "the xterm has the keyboard focus")
        d.type_text("junk")
        d.press(["ctrl", "u"])
        d.type_text("héllo € ✓")
        d.press("enter")
        wait_until(lambda: desktop.run("cat", ["/tmp/typed.txt"]).stdout == "héllo € ✓",
                   "the typed line reached the shell")


def test_scrolling_reaches_the_window_under_the_pointer(desktop):
    desktop.start_process(
        "bash", ["-c", "xev -name scroll-target -geometry 400x300+600+300 -event button > /tmp/xev.log"],
        stdin_mode="closed",
    )
    wait_until(lambda: window_exists(desktop, "scroll-target"), "the xev window opened")
    with desktop.connect_desktop(password="tensorlake") as d:
        d.move_mouse(800, 450)
        d.scroll_up(2)
        d.scroll_down(1)

        def buttons() -> list[str]:
            """The buttons of xev's ButtonPress events, in order."""
            pressed, in_press = [], False
            for line in desktop.run("cat", ["/tmp/xev.log"]).stdout.splitlines():
                if line.startswith(("ButtonPress", "ButtonRelease")):
                    in_press = line.startswith("ButtonPress")
                elif in_press and "button " in line:
                    pressed.append(line.split("button ", 1)[1].split(",", 1)[0])
                    in_press = False
            return pressed

        wait_until(lambda: buttons()[:3] == ["4", "4", "5"], "wheel events reached xev")


def test_bad_input_gets_clear_errors_and_leaves_nothing_running(desktop, sandbox):
    from alcove.sandbox import SandboxError

    def running() -> list[int]:
        return sorted(p.pid for p in desktop.list_processes() if p.status == "running")

    before = running()
    with pytest.raises(SandboxError, match="authentication failed"):
        desktop.connect_desktop(password="not-the-password")
    # The default image has no VNC server: the error names the port once the wait is over.
    with pytest.raises(SandboxError, match="port 5901") as nothing:
        sandbox.connect_desktop(connect_timeout=1)
    assert "1 s" in str(nothing.value)
    with desktop.connect_desktop(password="tensorlake") as d:
        with pytest.raises(ValueError, match="1280x800"):
            d.move_mouse(1280, 10)
        with pytest.raises(ValueError, match="enter"):
            d.press("no-such-key")
        with pytest.raises(ValueError):
            d.click(button="sideways")
    with pytest.raises(SandboxError, match="closed"):
        d.screenshot()
    assert running() == before, "a failed or closed desktop left a process behind"


def test_a_secret_sets_the_vnc_password(server):
    """A secret named VNC_PASSWORD replaces the image's default password."""
    from alcove.sandbox import SandboxClient, SandboxError

    r = server.api("PUT", "/v1/namespaces/default/secrets/VNC_PASSWORD", json={"value": "s3cret-vnc"})
    assert r.status_code == 200, r.text
    try:
        with SandboxClient(api_url=server.url) as client:
            with client.create_and_connect(image=DESKTOP, secret_names=["VNC_PASSWORD"]) as sb:
                with pytest.raises(SandboxError, match="authentication failed"):
                    sb.connect_desktop(password="tensorlake", connect_timeout=30)
                with sb.connect_desktop(password="s3cret-vnc") as d:
                    assert _png_size(d.screenshot()) == (1280, 800)
    finally:
        server.api("DELETE", "/v1/namespaces/default/secrets/VNC_PASSWORD")


def test_stop_all_processes_keeps_the_desktop(desktop):
    open_window(desktop, "to-be-stopped")
    assert desktop.stop_all_processes() >= 1
    wait_until(lambda: not window_exists(desktop, "to-be-stopped"), "the xterm was stopped")
    services = [p for p in desktop.list_processes() if p.command.endswith("alcove-desktop")]
    assert [p.status for p in services] == ["running"]
    wait_for_vnc(desktop, timeout=5)
    with desktop.connect_desktop(password="tensorlake") as d:
        assert _png_size(d.screenshot()) == (1280, 800)


def test_an_async_desktop(server, desktop):
    import asyncio

    from alcove.sandbox import AsyncSandboxClient

    async def main() -> tuple[int, int]:
        async with AsyncSandboxClient(api_url=server.url) as client:
            sb = await client.connect(desktop.sandbox_id)
            async with await sb.connect_desktop(password="tensorlake") as d:
                png = await d.screenshot()
                await d.move_mouse(5, 6)
                return _png_size(png)

    assert asyncio.run(main()) == (1280, 800)
    wait_until(lambda: "x:5 y:6" in desktop.run("xdotool", ["getmouselocation"]).stdout, "the pointer moved")


ARTIFACTS = Path(os.environ.get("ALCOVE_TEST_ARTIFACTS", Path(__file__).resolve().parents[2] / "target/test-artifacts"))


class Cdp:
    """Just enough of the Chrome DevTools Protocol to drive one page."""

    def __init__(self, ws):
        self.ws = ws
        self.next_id = 0

    def call(self, method: str, **params):
        self.next_id += 1
        self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv(timeout=30))
            if msg.get("id") == self.next_id:
                assert "error" not in msg, msg
                return msg["result"]

    def evaluate(self, expression: str):
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        return result["result"].get("value")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_the_desktop_page_shows_the_desktop_in_headless_chromium(server, desktop, tmp_path):
    chromium = shutil.which("chromium")
    assert chromium, "chromium is installed by scripts/setup.sh packages"
    r = server.api("POST", f"/v1/namespaces/default/sandboxes/{desktop.sandbox_id}/desktop")
    url = r.json()["url"] + "#password=tensorlake"
    port = free_port()
    browser = subprocess.Popen(
        [chromium, "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
         "--no-first-run", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", f"--user-data-dir={tmp_path / 'profile'}",
         f"--remote-debugging-port={port}", "--window-size=1280,800", "about:blank"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        # Its singleton directory goes in TMPDIR, which it leaves behind: the test's own.
        env={**os.environ, "TMPDIR": str(tmp_path)},
    )
    try:
        deadline = time.monotonic() + 30
        pages = []
        while time.monotonic() < deadline:
            try:
                pages = [t for t in httpx.get(f"http://127.0.0.1:{port}/json/list", timeout=2).json()
                         if t.get("type") == "page"]
                if pages:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        assert pages, "chromium's DevTools never answered"
        with ws_connect(pages[0]["webSocketDebuggerUrl"], max_size=None, open_timeout=10) as ws:
            cdp = Cdp(ws)
            cdp.call("Page.navigate", url=url)
            state = None
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                state = cdp.evaluate("document.body && document.body.dataset.state")
                if state == "connected":
                    break
                time.sleep(0.25)
            assert state == "connected", f"noVNC did not connect: {state}"
            # Let the first framebuffer update land on the canvas.
            stats = None
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline:
                stats = cdp.evaluate(
                    """(() => {
                        const c = document.querySelector('#screen canvas');
                        if (!c) return null;
                        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
                        let lit = 0, n = 0;
                        for (let i = 0; i < d.length; i += 4 * 997) { n++; if (d[i] || d[i + 1] || d[i + 2]) lit++; }
                        return {width: c.width, height: c.height, lit, n};
                    })()"""
                )
                if stats and stats["lit"] > stats["n"] * 0.9:
                    break
                time.sleep(0.25)
            assert stats is not None, "no canvas on the page"
            assert (stats["width"], stats["height"]) == (1280, 800), stats
            assert stats["lit"] > stats["n"] * 0.9, f"the canvas is blank: {stats}"
            shot = base64.b64decode(cdp.call("Page.captureScreenshot", format="png")["data"])
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            (ARTIFACTS / "desktop-novnc.png").write_bytes(shot)
            assert _png_size(shot)[0] > 0
    finally:
        browser.terminate()
        try:
            browser.wait(timeout=10)
        except subprocess.TimeoutExpired:
            browser.kill()


def _png_size(png: bytes) -> tuple[int, int]:
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", png[16:24])
