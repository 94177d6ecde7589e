"""Web pages of other sites against a server on loopback: a cross-site request (a "simple"
POST, a WebSocket, an image's GET) is refused before it acts, and without API keys so is a
request that names the server by another host (DNS rebinding). The server's own pages, links
followed to it and clients that are not browsers go on working. Real server, real sandboxes."""

from __future__ import annotations

import httpx
import pytest

from alcove.sandbox import SandboxClient
from framework.server import AlcoveServer

EVIL = "https://evil.example"
PROBE = "/tmp/cross-site-was-here"


def raw(srv: AlcoveServer, method: str, path: str, headers: dict[str, str], **kwargs) -> httpx.Response:
    """A request as a browser would send it: the headers given, no JSON content type."""
    return httpx.request(method, f"http://127.0.0.1:{srv.port}{path}", headers=headers, timeout=30, **kwargs)


def refused(resp: httpx.Response) -> str:
    assert resp.status_code == 403, resp.text
    body = resp.json()
    assert body["code"] == "FORBIDDEN", body
    return body["message"]


@pytest.fixture
def victim(client: SandboxClient):
    with client.create_and_connect(name="victim") as sb:
        yield sb


def test_a_cross_site_post_changes_nothing(server: AlcoveServer, client: SandboxClient, victim) -> None:
    message = refused(raw(server, "POST", "/sandboxes/victim/suspend", {"Origin": EVIL}))
    assert "evil.example" in message
    refused(raw(server, "DELETE", "/sandboxes/victim", {"Origin": "null"}))
    # Into the sandbox's API, as a form or `fetch(..., {mode: "no-cors"})` would send it.
    body = f'{{"command": "sh", "args": ["-c", "touch {PROBE}"]}}'
    for path in ("/sandboxes/victim/api/v1/processes", "/sandboxes/victim/api/v1/processes/run"):
        refused(raw(server, "POST", path, {"Origin": EVIL, "Content-Type": "text/plain"}, content=body))
    # A page served by another local server, and one from a sandbox's own exposed port.
    for origin in (f"http://localhost:{server.port + 1}", f"http://8080-victim.sandbox.localhost:{server.port}"):
        refused(raw(server, "POST", "/sandboxes/victim/suspend", {"Origin": origin}))
    assert client.get("victim").status == "running"
    assert victim.run("test", args=["-e", PROBE]).exit_code == 1


def test_a_sandbox_page_cannot_reach_the_api_by_another_spelling_of_its_name(
    server: AlcoveServer, client: SandboxClient, victim
) -> None:
    """A page served from a sandbox's exposed port, calling its own name with a final dot:
    browsers resolve `x.localhost.` like `x.localhost` but count it as another origin. The
    request is ingress traffic of that sandbox, never the control plane."""
    page = f"http://8080-victim.sandbox.localhost:{server.port}"
    for host in (f"8080-victim.sandbox.localhost.:{server.port}", f"8080-victim.SANDBOX.localhost.:{server.port}"):
        headers = {"Host": host, "Origin": page, "Sec-Fetch-Site": "cross-site", "Content-Type": "text/plain"}
        body = f'{{"command": "touch", "args": ["{PROBE}"]}}'
        resp = raw(server, "POST", "/sandboxes/victim/api/v1/processes", headers, content=body)
        assert resp.status_code != 200, resp.text
        assert "pid" not in resp.text, resp.text
        resp = raw(server, "POST", "/sandboxes/victim/suspend", {**headers, "Content-Type": ""})
        assert resp.status_code not in (200, 202), resp.text
    # A page of `localhost.` is not the server's own page at `localhost` either.
    refused(raw(server, "POST", "/sandboxes/victim/suspend", {"Host": f"localhost:{server.port}", "Origin": f"http://localhost.:{server.port}"}))
    assert client.get("victim").status == "running"
    assert victim.run("test", args=["-e", PROBE]).exit_code == 1


def test_a_cross_site_websocket_and_image_get_are_refused(server: AlcoveServer, victim) -> None:
    upgrade = {
        "Connection": "Upgrade",
        "Upgrade": "websocket",
        "Sec-WebSocket-Version": "13",
        "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
    }
    refused(raw(server, "GET", "/sandboxes/victim/api/v1/processes/1/output/ws", {**upgrade, "Origin": EVIL}))
    # `<img src=...>` of another site sends no Origin, but says where it comes from.
    no_cors = {"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "no-cors", "Sec-Fetch-Dest": "image"}
    refused(raw(server, "GET", "/sandboxes/victim/api/v1/processes", no_cors))
    refused(raw(server, "GET", "/sandboxes", {**no_cors, "Sec-Fetch-Site": "same-site"}))
    # A frame of another site's page is no navigation: it could lay itself over a desktop.
    framed = {"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "navigate", "Sec-Fetch-Dest": "iframe"}
    refused(raw(server, "GET", "/desktop/victim", framed))


def test_the_servers_own_pages_and_followed_links_work(server: AlcoveServer, victim) -> None:
    own = {"Origin": f"http://127.0.0.1:{server.port}", "Sec-Fetch-Site": "same-origin", "Content-Type": "application/json"}
    resp = raw(server, "POST", "/sandboxes/victim/api/v1/processes/run", own, content='{"command": "echo", "args": ["own page"]}')
    assert resp.status_code == 200, resp.text
    assert "own page" in resp.text
    own_localhost = {**own, "Origin": f"http://localhost:{server.port}"}
    resp = httpx.get(f"{server.url}/sandboxes/victim", headers=own_localhost, timeout=30)
    assert resp.status_code == 200 and resp.json()["name"] == "victim"
    # A link to the console followed from another site's page, and a URL typed.
    for site in ("cross-site", "none"):
        nav = {"Sec-Fetch-Site": site, "Sec-Fetch-Mode": "navigate", "Sec-Fetch-Dest": "document"}
        resp = raw(server, "GET", "/console/", nav)
        assert resp.status_code == 200, resp.text


def test_a_rebound_host_name_is_refused_without_keys(server: AlcoveServer, victim) -> None:
    message = refused(raw(server, "GET", "/sandboxes", {"Host": f"evil.example:{server.port}"}))
    assert "--allowed-host" in message and "evil.example" in message
    refused(raw(server, "POST", "/sandboxes/victim/suspend", {"Host": "evil.example"}))
    refused(raw(server, "GET", "/sandboxes/victim/api/v1/processes", {"Host": "localhost.evil.example"}))
    # Loopback names and addresses, and `*.localhost`, are this server.
    for host in (f"localhost:{server.port}", f"127.0.0.1:{server.port}", "LOCALHOST.", "console.localhost"):
        resp = raw(server, "GET", "/sandboxes/victim", {"Host": host})
        assert resp.status_code == 200, (host, resp.text)


def test_a_sandbox_by_its_local_name_is_for_clients_not_pages(server: AlcoveServer, victim) -> None:
    """The official SDKs name a sandbox's API by `Host: <sandbox>.local`; a browser never may
    (any machine of the LAN can answer for a `.local` name)."""
    json = {"Content-Type": "application/json"}
    resp = raw(server, "POST", "/api/v1/processes/run", {**json, "Host": "victim.local"}, content='{"command": "true"}')
    assert resp.status_code == 200 and '"exit_code":0' in resp.text, resp.text
    as_page = {**json, "Host": f"victim.local:{server.port}", "Origin": f"http://victim.local:{server.port}"}
    refused(raw(server, "POST", "/api/v1/processes/run", as_page, content='{"command": "true"}'))
    refused(raw(server, "GET", "/api/v1/processes", {"Host": "victim.local", "Sec-Fetch-Site": "same-origin"}))
    # A page at `http://victim.local:<port>` (any machine of the LAN can answer for the name)
    # sends no Sec-Fetch-Site to a non-secure origin and no Origin on a GET; it names a port,
    # and a Referer or a browser's User-Agent.
    page = f"http://victim.local:{server.port}/"
    for headers in (
        {"Host": f"victim.local:{server.port}", "Referer": page},
        {"Host": f"victim.local:{server.port}"},
        {"Host": "victim.local", "Referer": page},
        {"Host": "victim.local", "User-Agent": "Mozilla/5.0 (X11; Linux x86_64) Chrome/156.0"},
    ):
        refused(raw(server, "GET", "/api/v1/files?path=/etc/hostname", headers))
    # websocket-client (the official SDK's terminals) sends the address it dialed as Origin.
    dialed = {**json, "Host": "victim.local", "Origin": f"http://localhost:{server.port}"}
    resp = raw(server, "POST", "/api/v1/processes/run", dialed, content='{"command": "true"}')
    assert resp.status_code == 200 and '"exit_code":0' in resp.text, resp.text
    # ... also through a forwarded port (`ssh -L 18600:localhost:<port>`, `docker -p`).
    forwarded = {**dialed, "Origin": "http://localhost:18600"}
    resp = raw(server, "POST", "/api/v1/processes/run", forwarded, content='{"command": "true"}')
    assert resp.status_code == 200 and '"exit_code":0' in resp.text, resp.text
    # Not with a port on the name, nor with a browser's user agent.
    refused(raw(server, "POST", "/api/v1/processes/run", {**forwarded, "Host": f"victim.local:{server.port}"}))
    refused(raw(server, "POST", "/api/v1/processes/run", {**forwarded, "User-Agent": "Mozilla/5.0"}))


def test_allowed_hosts_and_api_keys() -> None:
    allowed = AlcoveServer(extra_args=["--allowed-host", "alcove.test,other.test"])
    keyed = AlcoveServer(api_keys=["browser-guard-key"])
    allowed.start()
    keyed.start()
    try:
        for host in ("alcove.test", f"other.test:{allowed.port}"):
            assert raw(allowed, "GET", "/sandboxes", {"Host": host}).status_code == 200
        # A page of an allowed host (a proxy in front that names the server so) may call it.
        resp = raw(allowed, "GET", "/sandboxes", {"Host": "alcove.test", "Origin": "https://alcove.test"})
        assert resp.status_code == 200, resp.text
        refused(raw(allowed, "GET", "/sandboxes", {"Host": "evil.example"}))
        # With keys, the key is the guard against a rebound name and against another site's
        # page (a browser sends no key cross-site without a CORS preflight, never granted);
        # without the key, another site's page is refused before the key is asked for.
        auth = {"Authorization": "Bearer browser-guard-key"}
        assert raw(keyed, "GET", "/sandboxes", {**auth, "Host": "alcove.internal"}).status_code == 200
        assert raw(keyed, "GET", "/sandboxes", {"Host": "alcove.internal"}).status_code == 401
        assert raw(keyed, "GET", "/sandboxes", {**auth, "Origin": "http://10.0.0.5:8900"}).status_code == 200
        refused(raw(keyed, "POST", "/sandboxes/x/suspend", {"Origin": EVIL}))
    finally:
        allowed.stop()
        keyed.stop()
