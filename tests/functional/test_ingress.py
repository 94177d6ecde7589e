"""User-port ingress: `<port>-<id or name>.<ingress domain>` reaches an exposed
port of the sandbox; other ports are refused; API keys apply unless the sandbox
allows unauthenticated access."""

from __future__ import annotations

import shutil
import time

import httpx
import pytest

from framework.server import AlcoveServer


def serve_http(sandbox, port: int) -> None:
    sandbox.start_process("python", ["-m", "http.server", str(port), "--bind", "0.0.0.0"], working_dir="/etc")
    probe = f"exec 3<>/dev/tcp/127.0.0.1/{port}"
    deadline = time.monotonic() + 30
    while sandbox.run("bash", ["-c", probe]).exit_code != 0 and time.monotonic() < deadline:
        time.sleep(0.1)


def via_ingress(server, port: int, ident: str, **kwargs) -> httpx.Response:
    headers = {"Host": f"{port}-{ident}.sandbox.localhost:{server.port}", **kwargs.pop("headers", {})}
    return httpx.get(f"http://127.0.0.1:{server.port}/hostname", headers=headers, timeout=30, **kwargs)


def test_exposed_port_is_reachable_by_id_and_name(server, client):
    with client.create_and_connect(name="web", expose_ports=[8000]) as sandbox:
        serve_http(sandbox, 8000)
        info = client.get("web")
        assert info.exposed_ports == [8000]
        raw = server.api("GET", "/sandboxes/web").json()
        assert raw["ingress_endpoint"] == f"http://sandbox.localhost:{server.port}"
        for ident in (sandbox.sandbox_id, "web"):
            resp = via_ingress(server, 8000, ident)
            assert resp.status_code == 200, resp.text
            assert resp.text.strip() == "web"  # /etc/hostname of the sandbox


def test_a_service_worker_only_under_the_sandboxs_id(server, client):
    """A worker answers its origin's requests in the browser from then on, whatever serves
    the origin: registered under a sandbox's name, it would answer for the next sandbox given
    the name. Its script is refused under a name, and served under the id (never reused)."""
    with client.create_and_connect(name="worker", expose_ports=[8000]) as sandbox:
        serve_http(sandbox, 8000)
        fetching_worker = {"Service-Worker": "script", "Sec-Fetch-Dest": "serviceworker"}
        resp = via_ingress(server, 8000, "worker", headers=fetching_worker)
        assert resp.status_code == 403, resp.text
        assert resp.json()["code"] == "FORBIDDEN" and "sandbox's id" in resp.json()["message"]
        resp = via_ingress(server, 8000, sandbox.sandbox_id, headers=fetching_worker)
        assert resp.status_code == 200 and resp.text.strip() == "worker", resp.text
        assert via_ingress(server, 8000, "worker").status_code == 200


def test_one_sandboxs_page_cannot_send_cookies_to_another(server, client):
    """Every sandbox's ports are one site to a browser, which sends one sandbox's SameSite
    cookies with the requests another sandbox's page makes to it: a hostile page could post
    to another sandbox's app as its user. Such requests are refused when they carry
    credentials; links between sandboxes, uncredentialed calls and a sandbox's own pages pass."""
    with (
        client.create_and_connect(name="victim", expose_ports=[8000]) as victim,
        client.create_and_connect(name="attacker") as attacker,
    ):
        serve_http(victim, 8000)
        page = lambda ident: f"http://3000-{ident}.sandbox.localhost:{server.port}"  # noqa: E731
        cookie = {"Cookie": "session=victim-user"}

        def status(**headers) -> httpx.Response:
            return via_ingress(server, 8000, "victim", headers=headers)

        for initiator in ({"Origin": page("attacker")}, {"Origin": page(attacker.sandbox_id)},
                          {"Referer": page("attacker") + "/x", "Sec-Fetch-Dest": "image"},
                          {"Sec-Fetch-Site": "same-site"}):
            resp = status(**initiator, **cookie)
            assert resp.status_code == 403, (initiator, resp.text)
            assert resp.json()["code"] == "FORBIDDEN"
            resp = status(**initiator, Authorization="Basic dXNlcjpwdw==")
            assert resp.status_code == 403, (initiator, resp.text)
        assert "attacker" in status(Origin=page("attacker"), **cookie).json()["message"]
        # Without credentials there is nothing to forge: the app's CORS decides, as for any site.
        assert status(Origin=page("attacker")).status_code == 200
        # A link from the attacker's page opens the victim's app in a tab.
        navigation = {"Sec-Fetch-Mode": "navigate", "Sec-Fetch-Dest": "document", "Sec-Fetch-Site": "same-site"}
        assert status(Referer=page("attacker") + "/", **navigation, **cookie).status_code == 200
        # The victim's own pages, under its name or its id, at any port.
        for ident in ("victim", "VICTIM", victim.sandbox_id):
            assert status(Origin=page(ident), **cookie).status_code == 200, ident
        # Pages of other sites: their cookies are the browser's to withhold (SameSite).
        assert status(Origin="https://example.com", **cookie).status_code == 200


def test_unexposed_ports_are_refused_and_expose_opens_them(server, client):
    with client.create_and_connect(name="closed") as sandbox:
        serve_http(sandbox, 8001)
        resp = via_ingress(server, 8001, "closed")
        assert resp.status_code == 403
        assert "not exposed" in resp.json()["message"]
        client.expose_ports("closed", [8001])
        assert via_ingress(server, 8001, "closed").status_code == 200
        client.unexpose_ports("closed", [8001])
        assert via_ingress(server, 8001, "closed").status_code == 403


@pytest.fixture(scope="module")
def keyed():
    srv = AlcoveServer(api_keys=["ingress-key"])
    srv.start()
    yield srv
    for sb in srv.live_sandboxes():
        srv.api("DELETE", f"/sandboxes/{sb['id']}")
    srv.stop()
    shutil.rmtree(srv.data_dir, ignore_errors=True)


def test_api_keys_apply_unless_unauthenticated_access_is_allowed(keyed):
    from alcove.sandbox import SandboxClient

    with SandboxClient(api_url=keyed.url, api_key="ingress-key") as client:
        with client.create_and_connect(name="private", expose_ports=[8002]) as private:
            serve_http(private, 8002)
            assert via_ingress(keyed, 8002, "private").status_code == 401
            ok = via_ingress(keyed, 8002, "private", headers={"Authorization": "Bearer ingress-key"})
            assert ok.status_code == 200
        with client.create_and_connect(
            name="public", expose_ports=[8003], allow_unauthenticated_access=True
        ) as public:
            serve_http(public, 8003)
            assert via_ingress(keyed, 8003, "public").status_code == 200
            # The management port is never reachable this way.
            assert via_ingress(keyed, 9501, "public").status_code == 403
            # Exposing one more port keeps the sandbox public (the SDK once sent `false`).
            assert client.expose_ports("public", [8004]).allow_unauthenticated_access is True
            assert via_ingress(keyed, 8003, "public").status_code == 200


def test_an_anonymous_request_neither_wakes_a_sandbox_nor_learns_which_exist(keyed):
    """Without a key, a private sandbox answers as a missing one does (401, nothing named), and
    a suspended one stays asleep: the key is checked on the record before anything resumes it.
    (The server once resumed the sandbox, then answered 403 naming its id.)"""
    from alcove.sandbox import SandboxClient

    with SandboxClient(api_url=keyed.url, api_key="ingress-key") as client:
        with client.create_and_connect(name="sleeper") as sandbox:
            client.suspend("sleeper")
            assert client.get("sleeper").status.value == "suspended"
            answers = {}
            for ident in ("sleeper", sandbox.sandbox_id, "no-such-sandbox"):
                for port in (80, 8005):
                    resp = via_ingress(keyed, port, ident)
                    assert resp.status_code == 401, (ident, resp.text)
                    assert sandbox.sandbox_id not in resp.text and "sleeper" not in resp.text
                    answers[(ident, port)] = resp.json()["message"]
            assert len(set(answers.values())) == 1, answers
            assert client.get("sleeper").status.value == "suspended"
            # With the key, an unexposed port is refused without waking it either, naming
            # the sandbox as the request did.
            refused = via_ingress(keyed, 80, "sleeper", headers={"Authorization": "Bearer ingress-key"})
            assert refused.status_code == 403 and "sleeper" in refused.json()["message"]
            assert client.get("sleeper").status.value == "suspended"
