"""API keys: every route but /healthz needs `Authorization: Bearer <key>`,
the proxy included; the key is never forwarded into the sandbox."""

from __future__ import annotations

import shutil

import httpx
import pytest

from framework.server import AlcoveServer


@pytest.fixture(scope="module")
def keyed_server():
    srv = AlcoveServer(api_keys=["k-test-1"])
    srv.start()
    yield srv
    for sb in srv.live_sandboxes():
        srv.api("DELETE", f"/sandboxes/{sb['id']}")
    srv.stop()
    shutil.rmtree(srv.data_dir, ignore_errors=True)


def test_requests_without_or_with_a_wrong_key_are_401(keyed_server):
    url = keyed_server.url
    assert httpx.get(f"{url}/healthz").status_code == 200
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "k-test-1"}):
        resp = httpx.get(f"{url}/v1/namespaces/default/sandboxes", headers=headers)
        assert resp.status_code == 401
        assert resp.json()["code"] == "UNAUTHORIZED"
    assert httpx.get(f"{url}/api/v1/health", headers={"Host": "x.local"}).status_code == 401


def test_sdk_with_key_works_and_key_stays_outside(keyed_server):
    from alcove.sandbox import SandboxClient

    with SandboxClient(api_url=keyed_server.url, api_key="k-test-1") as client:
        with client.create_and_connect() as sandbox:
            env = sandbox.run("env").stdout
            assert "k-test-1" not in env
            assert sandbox.run("echo", ["ok"]).stdout == "ok"


def test_open_bind_without_keys_is_refused(tmp_path):
    import subprocess

    from framework.server import AGENT_PATH, ALCOVE_BIN

    out = subprocess.run(
        [str(ALCOVE_BIN), "serve", "--listen", "0.0.0.0:0", "--data-dir", str(tmp_path),
         "--agent-path", str(AGENT_PATH)],
        capture_output=True, text=True, timeout=30,
    )
    assert out.returncode != 0
    assert "api-key" in out.stderr
