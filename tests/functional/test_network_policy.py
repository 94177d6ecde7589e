"""Outbound network policies: off, allow-listed, deny-listed, changed live.

The destination is the machine's own apt mirror (read from its configuration,
one request per check); `curl --resolve` pins its address so that DNS plays no
part in the result."""

from __future__ import annotations

import pytest

from framework.network import mirror, reaches


def test_internet_is_on_by_default(client):
    host, ip = mirror()
    with client.create_and_connect() as sandbox:
        assert reaches(sandbox, host, ip), "outbound NAT must work by default"


def test_policies_through_the_api(server, client):
    host, ip = mirror()
    cases = [
        ({"allow_internet_access": False}, False),
        ({"allow_internet_access": False, "allow_out": [ip]}, True),
        ({"allow_internet_access": False, "allow_out": [f"{ip}/32"], "deny_out": [ip]}, False),
        ({"allow_internet_access": True, "deny_out": [f"{ip}/32"]}, False),
        ({"allow_internet_access": False, "allow_out": [host]}, True),
    ]
    for network, expected in cases:
        created = server.api("POST", "/sandboxes", json={"network": network}).json()
        sid = created["sandbox_id"]
        try:
            assert created["status"] == "running", created
            info = server.api("GET", f"/sandboxes/{sid}").json()
            assert info["network_policy"]["allow_internet_access"] == network["allow_internet_access"]
            sandbox = client.connect(sid)
            assert reaches(sandbox, host, ip) is expected, network
        finally:
            server.api("DELETE", f"/sandboxes/{sid}")


def test_policy_changes_live_and_survives_suspend(server, client):
    host, ip = mirror()
    info = client.create(name="netlive")
    try:
        sandbox = client.connect("netlive")
        assert reaches(sandbox, host, ip)
        assert server.api("PATCH", "/sandboxes/netlive", json={"network": {"allow_internet_access": False}}).status_code == 200
        assert not reaches(sandbox, host, ip)
        client.suspend("netlive")
        client.resume("netlive")
        assert not reaches(client.connect("netlive"), host, ip), "policy kept across suspend/resume"
        assert server.api("PATCH", "/sandboxes/netlive", json={"network": None}).status_code == 200
        assert reaches(client.connect("netlive"), host, ip)
    finally:
        client.delete(info.sandbox_id)


@pytest.mark.parametrize(
    "network",
    [
        {"allow_internet_access": False, "allow_out": ["::1"]},
        {"deny_out": ["10.0.0.0/99"]},
        {"allow_out": ["no such host!"]},
        {"allow_out": ["name.invalid"]},
    ],
)
def test_bad_policies_are_400(server, network):
    resp = server.api("POST", "/sandboxes", json={"network": network})
    assert resp.status_code == 400, resp.text
    assert "network" in resp.json()["message"]


def test_official_sdk_allow_internet_access_false(server):
    tensorlake_sandbox = pytest.importorskip("tensorlake.sandbox")
    host, ip = mirror()
    tl = tensorlake_sandbox.SandboxClient.for_localhost(api_url=server.url)
    with tl.create_and_connect(allow_internet_access=False) as sandbox:
        out = sandbox.run(
            "curl",
            ["-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "5",
             "--resolve", f"{host}:80:{ip}", f"http://{host}/"],
        ).stdout.strip()
        assert out in ("", "000")
