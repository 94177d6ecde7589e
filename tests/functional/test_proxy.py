"""The sandbox proxy: routing by header, Host, and path; errors when unroutable."""

from __future__ import annotations

import httpx


def test_routes_by_header_host_and_path(server, client):
    with client.create_and_connect(name="proxied") as sandbox:
        sid = sandbox.sandbox_id
        by_header = server.api("GET", "/api/v1/health", headers={"X-Tensorlake-Sandbox-Id": sid})
        by_host = server.api("GET", "/api/v1/health", headers={"Host": f"{sid}.local"})
        by_path = httpx.get(f"{server.url}/sandboxes/{sid}/api/v1/health")
        by_name = httpx.get(f"{server.url}/sandboxes/proxied/api/v1/info")
        for resp in (by_header, by_host, by_path):
            assert resp.status_code == 200, resp.text
            assert resp.json() == {"healthy": True}
        assert by_name.status_code == 200
        assert by_name.json()["version"]
        # Query strings survive the path form.
        sandbox.write_file("/tmp/q.txt", b"query ok")
        got = httpx.get(f"{server.url}/sandboxes/{sid}/api/v1/files", params={"path": "/tmp/q.txt"})
        assert got.content == b"query ok"


def test_path_routing_passes_encoded_names_through_as_sent(server, client):
    """The path form (`/sandboxes/{id}/api/v1/…`) forwarded its tail decoded: a process named
    `a b` became an invalid URI (502), `a?b` a query, `%2F` a slash. It now reaches the agent
    as sent, as the header form always did."""
    from urllib.parse import quote

    with client.create_and_connect() as sandbox:
        base = f"{server.url}/sandboxes/{sandbox.sandbox_id}/api/v1/processes"
        for name in ("a b", "a?b", "%2F", "é#1"):
            made = httpx.post(base, json={"command": "sleep", "args": ["600"], "name": name}, timeout=30)
            assert made.status_code in (200, 201), (name, made.text)
            got = httpx.get(f"{base}/{quote(name, safe='')}", timeout=30)
            assert got.status_code == 200, (name, got.text)
            assert got.json()["pid"] == made.json()["pid"], got.text
            sandbox.kill_process(name)


def test_unroutable_requests_get_clear_errors(server):
    resp = server.api("GET", "/api/v1/health")
    assert resp.status_code == 400
    assert "sandbox" in resp.json()["message"]
    resp = server.api("GET", "/api/v1/health", headers={"X-Tensorlake-Sandbox-Id": "nobody"})
    assert resp.status_code == 404
    assert resp.json()["code"] == "NOT_FOUND"


def test_terminated_sandbox_is_not_proxied(server, client):
    info = client.create()
    client.delete(info.sandbox_id)
    resp = server.api("GET", "/api/v1/health", headers={"X-Tensorlake-Sandbox-Id": info.sandbox_id})
    assert resp.status_code == 404
    assert "terminated" in resp.json()["message"]


def test_streaming_is_not_buffered(server, client):
    """The process only finishes after the client has seen its first line, so a
    buffering proxy would deadlock here (until the read timeout fails the test)."""
    import json

    with client.create_and_connect() as sandbox:
        script = "echo first; while [ ! -f /tmp/go ]; do sleep 0.05; done; echo second"
        seen = []
        with httpx.stream(
            "POST",
            f"{server.url}/api/v1/processes/run",
            json={"command": "sh", "args": ["-c", script]},
            headers={"X-Tensorlake-Sandbox-Id": sandbox.sandbox_id, "Accept": "text/event-stream"},
            timeout=httpx.Timeout(10.0),
        ) as resp:
            assert resp.headers["content-type"].startswith("text/event-stream")
            for line in resp.iter_lines():
                if not line.startswith("data:"):
                    continue
                event = json.loads(line[5:])
                if "line" in event:
                    seen.append(event["line"])
                    if event["line"] == "first":
                        sandbox.run("touch", ["/tmp/go"])
                if event.get("exit_code") is not None:
                    break
        assert seen == ["first", "second"]


def test_no_request_after_a_resume_rides_a_connection_of_the_stack_before(server, client):
    """The proxy keeps connections to sandboxes alive. A suspend tears the sandbox's network
    down and the resume builds a new one at the same address; when the sandbox's close of a
    connection is lost in that teardown (here dropped on purpose: the host never hears of the
    close), the connection stays open on the host's side, dead. Requests after the resume were
    sent on such connections and failed with 502 ("did not answer"; the SDKs sent them again
    after a pause); the proxy now never reuses a connection made to an earlier run of the
    sandbox."""
    import re
    import subprocess
    from concurrent.futures import ThreadPoolExecutor

    with client.create_and_connect(name="stale-conns") as sandbox:
        ip = re.search(r"inet (\S+)/", sandbox.run("ip", ["-4", "-o", "addr", "show", "eth0"]).stdout).group(1)
        # Four requests at once leave four connections idle in the proxy's pool.
        with ThreadPoolExecutor(4) as pool:
            slow = list(pool.map(lambda _: sandbox.run("sleep", ["0.5"]).exit_code, range(4)))
        assert slow == [0, 0, 0, 0]
        table = f"alcove_test_stale_{sandbox.sandbox_id[:8]}"
        drop = (
            f"table ip {table} {{\n chain input {{\n  type filter hook input priority -50;\n"
            f"  ip saddr {ip} tcp flags & (fin | rst) != 0 drop\n }}\n}}\n"
        )
        subprocess.run(["nft", "-f", "-"], input=drop, text=True, check=True)
        try:
            client.suspend("stale-conns")
        finally:
            subprocess.run(["nft", "delete", "table", "ip", table], check=True)
        client.resume("stale-conns")
        # Plain HTTP, as any client sends it: the SDKs (Alcove's and the official one) send a
        # run again after a 502, which hid this behind a retry.
        for i in range(4):
            resp = httpx.post(
                f"{server.url}/sandboxes/stale-conns/api/v1/processes/run",
                json={"command": "echo", "args": [f"after resume {i}"]},
                timeout=30,
            )
            assert resp.status_code == 200, resp.text
            assert f"after resume {i}" in resp.text, resp.text
        assert sandbox.run("echo", ["sdk"]).stdout.strip() == "sdk"
        # Nor did the server's own requests (its journal follower) meet a dead connection.
        unreachable = [line for line in server.log_path.read_text().splitlines() if "upstream unreachable" in line]
        assert unreachable == [], unreachable
