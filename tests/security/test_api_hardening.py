"""The HTTP API under abuse: slow and idle clients, connection floods, per-client bounds,
strict bodies, errors without host details, file-system refusals as 4xx, and client-side
deadlines against a stopped agent. Real servers, real sandboxes."""

from __future__ import annotations

import contextlib
import json
import resource
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from alcove.sandbox import RemoteAPIError, SandboxClient, SandboxTimeoutError
from framework.host import firewall_table_exists, owned_resources
from framework.server import AlcoveServer

# Short timeouts so the tests see them fire; the per-client bound is low so a test can reach
# it; the compactor is off so a suspended sandbox's dump stays as it was written.
HEADER_TIMEOUT_SECS = 2
IDLE_TIMEOUT_SECS = 5
PER_CLIENT = 8
HARDENED = [
    "--header-read-timeout-secs", str(HEADER_TIMEOUT_SECS),
    "--idle-timeout-secs", str(IDLE_TIMEOUT_SECS),
    "--max-requests-per-client", str(PER_CLIENT),
    "--compress-after-secs", "-1",
]  # fmt: skip

MiB = 1024 * 1024


def raise_fd_limit() -> None:
    """This process opens thousands of sockets: raise its soft limit to the hard one."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


@contextlib.contextmanager
def running_server(extra_args: list[str]) -> Iterator[AlcoveServer]:
    """A server of its own, checked like the module servers of conftest when it stops."""
    raise_fd_limit()
    srv = AlcoveServer(extra_args=extra_args)
    srv.start()
    try:
        yield srv
    finally:
        leaked = srv.live_sandboxes() if srv.proc else []
        for sb in leaked:
            srv.api("DELETE", f"/sandboxes/{sb['id']}")
        srv.stop()
        res = owned_resources(srv.data_dir)
        firewall = firewall_table_exists(srv.data_dir)
        shutil.rmtree(srv.data_dir, ignore_errors=True)
        assert not leaked, f"sandboxes left running: {leaked}"
        assert res.is_empty(), f"host resources left behind: {res}"
        assert not firewall, "firewall table left after shutdown"


@pytest.fixture(scope="module")
def server():
    """This module's server (replaces conftest's): hardened flags set low enough to test."""
    with running_server(HARDENED) as srv:
        yield srv


def connect(srv: AlcoveServer) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", srv.port), timeout=60)
    return sock


def closed_by_server(sock: socket.socket) -> bool:
    """Reads until the server closes the connection (b"" or a reset); False if it answered."""
    try:
        data = sock.recv(4096)
    except ConnectionResetError:
        return True
    return data == b""


def http_get(sock: socket.socket, path: str = "/healthz") -> tuple[int, dict[str, str], bytes]:
    """One HTTP/1.1 GET on an open connection; the answer's status, headers and body."""
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode())
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed before an answer: {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:])}
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        chunk = sock.recv(65536)
        assert chunk, "connection closed inside the body"
        body += chunk
    return status, headers, body


def still_open(sock: socket.socket) -> bool:
    """Whether the server has left the connection open (nothing to read, no FIN, no reset)."""
    sock.setblocking(False)
    try:
        sock.recv(1)
    except BlockingIOError:
        return True
    except ConnectionResetError:
        return False
    finally:
        sock.settimeout(60)
    return False


def open_follow(srv: AlcoveServer, sandbox_id: str, pid: int) -> tuple[socket.socket, bytes]:
    """A connection with a request in flight: a process's output stream through the sandbox proxy,
    its answer started (so the server has taken the request). Returns it and what was read."""
    sock = connect(srv)
    sock.sendall(
        f"GET /api/v1/processes/{pid}/output/follow HTTP/1.1\r\nHost: {sandbox_id}.local\r\n"
        "Accept: text/event-stream\r\n\r\n".encode()
    )
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed before an answer: {data!r}"
        data += chunk
    assert data.startswith(b"HTTP/1.1 200 "), data
    return sock, data


def read_stream_to_end(sock: socket.socket, data: bytes) -> bytes:
    """Reads a chunked answer until its last chunk."""
    while not data.endswith(b"\r\n0\r\n\r\n"):
        chunk = sock.recv(65536)
        assert chunk, f"connection closed inside the stream: {data[-200:]!r}"
        data += chunk
    return data


def default_connection_cap() -> int:
    """The cap `alcove serve` picks without --max-connections: min(4096, open-files limit - 512),
    its soft limit raised to the hard one (this process's, which the server inherits)."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = 1_048_576
    return min(4096, min(hard, 1_048_576) - 512)


def open_fds(pid: int) -> int:
    return len(list(Path(f"/proc/{pid}/fd").iterdir()))


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS in /proc/<pid>/status")


# -- slow and idle clients ---------------------------------------------------------------------


def test_a_client_sending_headers_byte_by_byte_is_cut_off(server):
    sock = connect(server)
    request = b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-Slow: " + b"a" * 10_000
    sent = 0
    cut_off = False
    # One byte every 0.2 s: the headers would take ~30 min to finish.
    for byte in request:
        try:
            sock.sendall(bytes([byte]))
        except (BrokenPipeError, ConnectionResetError):
            cut_off = True
            break
        sent += 1
        time.sleep(0.2)
    assert cut_off, "the server let a slowloris client trickle its headers"
    assert sent < len(request)


def test_a_client_that_never_finishes_its_headers_is_closed_unanswered(server):
    sock = connect(server)
    sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n")
    assert closed_by_server(sock)


def test_silent_and_idle_keep_alive_connections_are_closed(server):
    silent = connect(server)
    assert closed_by_server(silent), "a connection that never sent anything stayed open"
    kept = connect(server)
    status, headers, _ = http_get(kept)
    assert status == 200
    assert headers.get("connection", "").lower() != "close"
    assert closed_by_server(kept), "an idle keep-alive connection stayed open"


def test_streams_and_upgraded_connections_outlive_the_idle_timeout(server):
    silent_for = IDLE_TIMEOUT_SECS + 3
    with SandboxClient(api_url=server.url) as client, client.create_and_connect() as sandbox:
        # An SSE answer that says nothing for longer than the idle timeout.
        result = sandbox.run("sh", ["-c", f"sleep {silent_for}; echo done"])
        assert (result.exit_code, result.stdout) == (0, "done")
        proc = sandbox.start_process("sh", ["-c", f"sleep {silent_for}; echo followed"])
        assert [e.line for e in sandbox.follow_output(proc.pid)] == ["followed"]
        # A WebSocket (PTY) left silent longer than the idle timeout.
        with sandbox.create_pty("sh") as pty:
            pty.send("echo ready\n")
            pty.read_until("ready", timeout=30)
            time.sleep(silent_for)
            pty.send("echo still-here\n")
            assert b"still-here" in pty.read_until("still-here", timeout=30)
            pty.send("exit\n")
            pty.wait(timeout=30)


# -- per-client bound --------------------------------------------------------------------------


def test_too_many_requests_from_one_client_are_429(server):
    # Requests in flight: headers sent, body announced and never sent, so each waits for it.
    held = []
    for _ in range(PER_CLIENT):
        sock = connect(server)
        sock.sendall(
            b"POST /sandboxes HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
            b"Content-Length: 100\r\n\r\n{"
        )
        held.append(sock)
    # Wait (bounded) until the server has read all of them.
    for _ in range(100):
        resp = httpx.get(f"{server.url}/healthz")
        if resp.status_code == 429:
            break
        time.sleep(0.1)
    assert resp.status_code == 429
    body = resp.json()
    assert body["code"] == "TOO_MANY_REQUESTS"
    assert str(PER_CLIENT) in body["message"]
    assert resp.headers.get("x-request-id")
    for sock in held:
        sock.close()
    for _ in range(50):
        resp = httpx.get(f"{server.url}/healthz")
        if resp.status_code == 200:
            break
        time.sleep(0.1)
    assert resp.status_code == 200, "slots were not freed when the requests ended"
    # None of the held requests created anything.
    assert server.live_sandboxes() == []


def test_the_sdks_ride_out_a_burst_past_the_per_client_limit(server):
    """A burst of calls past the per-client limit is refused unread (429); Alcove's SDK sends
    each again after Retry-After, so every call of the burst succeeds, creates included."""
    import asyncio

    from alcove.sandbox import AsyncSandboxClient

    async def burst():
        async with AsyncSandboxClient(api_url=server.url) as client:
            sandbox = await client.create_and_connect()
            try:
                base = f"{server.url}/sandboxes/{sandbox.sandbox_id}/api/v1/processes/run"
                body = {"command": "sleep", "args": ["0.5"]}
                async with httpx.AsyncClient(timeout=60) as raw:
                    answers = await asyncio.gather(*[raw.post(base, json=body) for _ in range(3 * PER_CLIENT)])
                refused = [a for a in answers if a.status_code == 429]
                assert refused and all(a.json()["code"] == "TOO_MANY_REQUESTS" for a in refused)

                runs = await asyncio.gather(*[sandbox.run("sleep", ["0.5"]) for _ in range(3 * PER_CLIENT)])
                assert [r.exit_code for r in runs] == [0] * (3 * PER_CLIENT)
                made = await asyncio.gather(*[client.create(memory_mb=1024) for _ in range(2 * PER_CLIENT)])
                assert len({m.sandbox_id for m in made}) == 2 * PER_CLIENT
                await asyncio.gather(*[client.delete(m.sandbox_id) for m in made])
            finally:
                await sandbox.terminate()

    asyncio.run(burst())
    assert server.live_sandboxes() == []


# -- connection cap ------------------------------------------------------------------------------


def test_past_the_connection_cap_new_connections_get_a_clear_503():
    """503 is for when no connection can be evicted: every one has a request in flight or is
    upgraded (a PTY WebSocket)."""
    cap = 50
    with running_server(["--max-connections", str(cap)]) as srv, SandboxClient(api_url=srv.url) as client:
        with client.create_and_connect() as sandbox, sandbox.create_pty("sh") as pty:
            pty.send("echo ready\n")
            pty.read_until("ready", timeout=30)
            proc = sandbox.start_process("sleep", ["600"])
            # The client's own keep-alive connections are idle: opening these evicts them.
            held = [open_follow(srv, sandbox.sandbox_id, proc.pid) for _ in range(cap - 1)]
            try:
                refused = connect(srv)
                status, headers, body = http_get(refused)
                assert status == 503
                assert headers.get("connection") == "close"
                error = json.loads(body)
                assert error["code"] == "SERVER_BUSY"
                assert str(cap) in error["message"]
                assert error["request_id"] == headers.get("x-request-id")
                assert closed_by_server(refused)
                # Connections already open are served as before: the PTY, and the streams, which
                # go on to the process's end once two of them make room for the call that ends it.
                pty.send("echo still-here\n")
                assert b"still-here" in pty.read_until("still-here", timeout=30)
                for sock, _ in held[:2]:
                    sock.close()
                for _ in range(100):
                    try:
                        sandbox.kill_process(proc.pid)
                        break
                    except RemoteAPIError as err:
                        assert err.status_code == 503, err
                        time.sleep(0.1)
                else:
                    raise AssertionError("no room for a new connection after two closed")
                for sock, data in held[2:]:
                    assert b"event: eof" in read_stream_to_end(sock, data)
                pty.send("exit\n")
                assert pty.wait(timeout=30) == 0
            finally:
                for sock, _ in held:
                    sock.close()
        # Room again once connections closed.
        for _ in range(50):
            with connect(srv) as sock:
                status, _, _ = http_get(sock)
            if status == 200:
                break
            time.sleep(0.1)
        assert status == 200


def test_at_the_cap_a_new_connection_evicts_the_longest_idle_one():
    cap = 50
    with running_server(["--max-connections", str(cap)]) as srv:
        # Accepted in this order, so held[0] has been idle the longest, then held[1], ...
        held = [connect(srv) for _ in range(cap)]
        newcomers: list[socket.socket] = []
        try:
            for n in range(2):
                # Kept open (idle after its answer, so younger than every held one): the cap
                # stays reached for the next newcomer.
                newcomers.append(connect(srv))
                status, _, _ = http_get(newcomers[-1])
                assert status == 200, "a new connection at the cap was not admitted"
                assert closed_by_server(held[n]), f"held[{n}], the longest idle, was not closed"
            assert all(still_open(sock) for sock in held[2:] + newcomers), "a younger connection was closed"
            # The ones left are served as before.
            status, _, _ = http_get(held[2])
            assert status == 200
            status, _, _ = http_get(newcomers[0])
            assert status == 200
        finally:
            for sock in held + newcomers:
                sock.close()


# -- a flood of connections ---------------------------------------------------------------------


def test_flood_of_idle_and_slowloris_connections(tmp_path):
    """More idle and slowloris connections than the default cap: the longest idle are evicted for
    new ones, so real clients are still served, and the server's descriptors stay bounded."""
    idle_count, slow_count = 10_000, 200
    cap = default_connection_cap()
    assert idle_count + slow_count > cap, "the flood must exceed the default cap"
    flags = [
        # Long enough that the timeouts reclaim nothing while the flood is probed.
        "--header-read-timeout-secs", "600",
        "--idle-timeout-secs", "600",
    ]  # fmt: skip
    with running_server(flags) as srv, SandboxClient(api_url=srv.url) as client:
        with client.create_and_connect() as sandbox:
            assert sandbox.run("true").exit_code == 0
            baseline = rss_bytes(srv.proc.pid)
            idle: list[socket.socket] = []
            slow: list[socket.socket] = []
            try:
                for _ in range(idle_count):
                    idle.append(socket.create_connection(("127.0.0.1", srv.port), timeout=30))
                for _ in range(slow_count):
                    sock = socket.create_connection(("127.0.0.1", srv.port), timeout=30)
                    sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-Slow: aaa")
                    slow.append(sock)
                # While the flood is open, the server keeps answering new clients, the control
                # plane and the sandbox proxy alike, with its default cap.
                assert httpx.get(f"{srv.url}/healthz", timeout=30).status_code == 200
                assert sandbox.run("true").exit_code == 0
                assert sandbox.run("echo", ["busy"]).stdout == "busy"
                assert httpx.get(f"{srv.url}/healthz", timeout=30).status_code == 200
                # It did so by closing the longest idle, and holds no more than its cap allows.
                assert closed_by_server(idle[0]), "the oldest idle connection is still open"
                assert open_fds(srv.proc.pid) < cap + 512
            finally:
                for sock in idle + slow:
                    sock.close()
            # Memory goes back near its baseline once the flood is gone.
            limit = baseline + 64 * MiB
            after = rss_bytes(srv.proc.pid)
            for _ in range(100):
                if after < limit:
                    break
                time.sleep(0.2)
                after = rss_bytes(srv.proc.pid)
            assert after < limit, f"RSS {after // MiB} MiB after the flood, baseline {baseline // MiB} MiB"
            assert sandbox.run("true").exit_code == 0


# -- strict bodies ------------------------------------------------------------------------------


def post(srv: AlcoveServer, path: str, body: bytes, method: str = "POST") -> httpx.Response:
    return httpx.request(
        method, f"{srv.url}{path}", content=body, headers={"Content-Type": "application/json"}, timeout=60
    )


def test_bodies_that_are_not_objects_are_400_and_create_nothing(server):
    def stored():
        # The live list and the archive: a create that was stored and failed would be archived.
        archived = server.api("GET", "/archived-sandboxes", params={"limit": 1000}).json()["sandboxes"]
        return server.api("GET", "/sandboxes").json()["sandboxes"], archived

    before = stored()
    for body in (b"[]", b'["x"]', b"5", b'"sandbox"', b"null", b"true"):
        for path, method in (
            ("/sandboxes", "POST"),
            ("/v1/namespaces/default/sandboxes", "POST"),
            ("/sandboxes/any-name", "PATCH"),
            ("/sandboxes/any-name/suspend", "POST"),
            ("/sandboxes/any-name/resume", "POST"),
            ("/sandboxes/any-name/snapshot", "POST"),
            ("/secrets/SOME_SECRET", "PUT"),
        ):
            resp = post(server, path, body, method)
            assert resp.status_code == 400, (method, path, body, resp.text)
            error = resp.json()
            assert error["code"] == "INVALID_ARGUMENT"
            assert "JSON object" in error["message"]
    assert stored() == before
    assert server.api("GET", "/secrets").json()["secrets"] == []


def test_fields_of_the_wrong_type_are_400_naming_the_field(server):
    cases = [
        ("/sandboxes", "POST", {"resources": {"cpus": "two"}}, "resources.cpus"),
        ("/sandboxes", "POST", {"timeout_secs": "60"}, "timeout_secs"),
        ("/sandboxes", "POST", {"entrypoint": "sleep 1"}, "entrypoint"),
        ("/sandboxes", "POST", {"exposed_ports": [8080, "http"]}, "exposed_ports[1]"),
        ("/sandboxes/any-name", "PATCH", {"auto_resume": "yes"}, "auto_resume"),
        ("/sandboxes/any-name/snapshot", "POST", {"snapshot_type": 1}, "snapshot_type"),
        ("/secrets/SOME_SECRET", "PUT", {"value": 5}, "value"),
    ]
    for path, method, body, field in cases:
        resp = post(server, path, json.dumps(body).encode(), method)
        assert resp.status_code == 400, (path, body, resp.text)
        assert f"`{field}`" in resp.json()["message"], resp.text
    assert server.live_sandboxes() == []


def test_numbers_past_what_the_kernel_and_the_clock_take_are_400_and_create_nothing(server, client):
    """A `timeout_secs` whose deadline overflowed once ended the sandbox at once (and again after
    every resume), and CPUs below the kernel's smallest quota made a sandbox that failed to
    start, or a resize that left an 8 MiB memory limit behind it."""
    for body, field in (
        ({"timeout_secs": 9223372036854775}, "timeout_secs"),
        ({"timeout_secs": 365 * 86400 + 1}, "timeout_secs"),
        ({"resources": {"cpus": 0.001, "memory_mb": 8}}, "resources.cpus"),
        ({"resources": {"cpus": 1e-300, "memory_mb": 1024}}, "resources.cpus"),
    ):
        resp = post(server, "/sandboxes", json.dumps(body).encode())
        assert resp.status_code == 400, (body, resp.text)
        assert field in resp.json()["message"], resp.text
    pool = post(server, "/sandbox-pools", json.dumps({"image": "default", "timeout_secs": 2**53}).encode())
    assert pool.status_code == 400 and "timeout_secs" in pool.json()["message"], pool.text
    assert server.live_sandboxes() == []
    with client.create_and_connect(timeout_secs=365 * 86400) as sandbox:
        assert sandbox.run("true").exit_code == 0
        resized = post(server, f"/sandboxes/{sandbox.sandbox_id}",
                       json.dumps({"resources": {"cpus": 0.001, "memory_mb": 8}}).encode(), "PATCH")
        assert resized.status_code == 400 and "resources.cpus" in resized.json()["message"], resized.text
        limit = sandbox.run("cat", ["/sys/fs/cgroup/memory/memory.limit_in_bytes"]).stdout.strip()
        assert limit == str(1024 << 20), limit
        assert client.get(sandbox.sandbox_id).status.value == "running"


def test_oversized_bodies_and_wrong_methods_answer_in_the_error_shape(server, client):
    """Bodies past the 2 MiB a route reads whole, and methods a path does not serve, are
    answered as every other error is (axum's own answers were plain text, or empty)."""
    huge = json.dumps({"name": "x", "entrypoint": ["y" * (2 << 20)]}).encode()
    before = server.api("GET", "/sandboxes").json()["sandboxes"]
    for path, method in (
        ("/sandboxes", "POST"),
        ("/sandboxes/any-name", "PATCH"),
        ("/secrets/SOME_SECRET", "PUT"),
        ("/sandbox-pools", "POST"),
        ("/file-systems", "POST"),
    ):
        resp = post(server, path, huge, method)
        assert resp.status_code == 413, (method, path, resp.text)
        assert resp.json()["code"] == "PAYLOAD_TOO_LARGE" and "2 MiB" in resp.json()["message"]
    for method, path in (("POST", "/secrets"), ("PUT", "/sandboxes/any-name"), ("DELETE", "/sandbox-pools")):
        resp = httpx.request(method, f"{server.url}{path}", timeout=30)
        assert resp.status_code == 405, (method, path, resp.text)
        assert resp.json()["code"] == "METHOD_NOT_ALLOWED" and method in resp.json()["message"]
    assert server.api("GET", "/sandboxes").json()["sandboxes"] == before

    with client.create_and_connect() as sandbox:
        base = f"{server.url}/sandboxes/{sandbox.sandbox_id}/api/v1"
        for path in ("/processes/run", "/processes"):
            resp = httpx.post(base + path, content=json.dumps({"command": "echo", "args": ["y" * (2 << 20)]}),
                              headers={"Content-Type": "application/json"}, timeout=30)
            assert resp.status_code == 413, (path, resp.text)
            assert resp.json()["code"] == "PAYLOAD_TOO_LARGE" and "2 MiB" in resp.json()["error"]
        # Under the limit, about 1 MiB of arguments is read and run.
        args = ["-c", 'echo "$#"', "sh"] + ["y" * 120_000] * 8
        assert sandbox.run("sh", args).stdout.strip() == "8"
        # What fits the body but not the kernel is the caller's fault, said as such (was a 500).
        with pytest.raises(RemoteAPIError) as refused:
            sandbox.run("true", ["z"] * 400_000)
        assert refused.value.status_code == 400 and "E2BIG" in str(refused.value)
        assert sandbox.run("echo", ["still answering"]).stdout.strip() == "still answering"


def test_undecodable_paths_and_path_like_namespaces_are_400_and_create_nothing(server, client):
    with client.create_and_connect() as sandbox:
        for path in (
            "/snapshots/%ff",
            f"/sandboxes/{sandbox.sandbox_id}/api/v1/processes/%ff",
            "/v1/namespaces/..%2F..%2Fx/sandboxes",
            "/v1/namespaces/a%20b/sandboxes",
            "/v1/namespaces/%2E%2E/secrets",
            # Cut at the encoded `/` after decoding, this once passed as namespace "a".
            "/v1/namespaces/a%2f%0a%00%2f..%2fx/secrets",
        ):
            resp = httpx.get(f"{server.url}{path}", timeout=30)
            assert resp.status_code == 400, (path, resp.text)
            assert resp.json()["code"] == "INVALID_ARGUMENT", path
        stored = post(server, "/v1/namespaces/a%2f%0a%00%2f..%2fx/secrets/FOO", b'{"value": "v"}', "PUT")
        assert stored.status_code == 400 and "invalid namespace" in stored.json()["message"], stored.text
        made = post(server, "/v1/namespaces/..%2F..%2Fx/sandboxes", json.dumps({"name": "ns-escape"}).encode())
        assert made.status_code == 400 and "invalid namespace" in made.json()["message"]
        # No sandbox was made in any namespace: the host holds only this test's one.
        assert sorted(p.name for p in (Path(server.data_dir) / "sandboxes").iterdir()) == [sandbox.sandbox_id]
        ok = httpx.get(f"{server.url}/v1/namespaces/team_a.1/sandboxes", timeout=30)
        assert ok.status_code == 200 and ok.json()["sandboxes"] == []


def test_unknown_fields_are_still_accepted(server):
    resp = post(server, "/sandboxes", json.dumps({"some_future_field": {"x": 1}, "wait": False}).encode())
    assert resp.status_code == 202, resp.text
    server.api("DELETE", f"/sandboxes/{resp.json()['sandbox_id']}")


# -- errors without host details ------------------------------------------------------------------


def test_every_answer_carries_a_request_id(server):
    for method, path in (("GET", "/healthz"), ("GET", "/sandboxes"), ("GET", "/sandboxes/nope"), ("GET", "/nope")):
        resp = httpx.request(method, f"{server.url}{path}")
        assert len(resp.headers.get("x-request-id", "")) >= 16, (path, resp.headers)


def host_details(text: str, data_dir: Path) -> list[str]:
    markers = [str(data_dir), "/var/lib/alcove", "runc", "criu ", "--root", "/usr/local/sbin"]
    return [m for m in markers if m in text]


def test_a_failed_resume_shows_no_host_paths_or_command_lines(server):
    with SandboxClient(api_url=server.url) as client:
        sandbox = client.create_and_connect(name="breaks-on-resume")
        try:
            client.suspend(sandbox.sandbox_id)
            # Damage the dump so that `runc restore` (CRIU) fails.
            dump = server.data_dir / "sandboxes" / sandbox.sandbox_id / "checkpoint"
            removed = [p for p in dump.glob("*.img") if p.name.startswith(("inventory", "pstree", "core-"))]
            assert removed, f"no CRIU images in {dump}"
            for image in removed:
                image.unlink()
            resp = httpx.post(f"{server.url}/sandboxes/{sandbox.sandbox_id}/resume?wait_ms=120000", timeout=180)
            assert resp.status_code == 500, resp.text
            error = resp.json()
            request_id = resp.headers["x-request-id"]
            assert error["code"] == "OPERATION_FAILED"
            assert error["request_id"] == request_id
            assert error["message"].endswith(f"(request {request_id})")
            assert "resume" in error["message"]
            assert host_details(resp.text, server.data_dir) == []

            info = server.api("GET", f"/sandboxes/{sandbox.sandbox_id}").json()
            assert info["status"] == "suspended"
            assert info["error_details"].startswith("resume failed")
            assert host_details(info["error_details"], server.data_dir) == []
            # (`runtime: "runc"` is part of every record: look at the texts only.)
            listed = server.api("GET", "/sandboxes").json()["sandboxes"]
            listed += server.api("GET", "/archived-sandboxes").json()["sandboxes"]
            for one in listed:
                assert host_details(one.get("error_details") or "", server.data_dir) == []

            # The detail is in the log, under the id the client was given.
            logged = [line for line in server.log_path.read_text().splitlines() if request_id in line]
            assert any("runc" in line or "criu" in line for line in logged), logged[-5:]
        finally:
            client.delete(sandbox.sandbox_id)


# -- file-system refusals ------------------------------------------------------------------------


def test_writes_the_file_system_refuses_are_4xx(server):
    with SandboxClient(api_url=server.url) as client, client.create_and_connect() as sandbox:
        sandbox.write_file("/tmp/plain.txt", b"x")
        cases = [
            ("/proc/version", 403, "PERMISSION_DENIED"),  # a kernel file
            ("/sys/kernel/alcove-test", 403, "PERMISSION_DENIED"),  # a read-only mount
            ("/proc/sys/kernel/hostname", 403, "PERMISSION_DENIED"),  # read-only /proc/sys
            ("/tmp/plain.txt/below", 400, "NOT_A_DIRECTORY"),
            ("/tmp", 400, "IS_DIRECTORY"),
        ]
        for path, status, code in cases:
            with pytest.raises(RemoteAPIError) as err:
                sandbox.write_file(path, b"data")
            assert (err.value.status_code, err.value.code) == (status, code), (path, str(err.value))
        # /dev/null takes the write (it has nothing to sync).
        sandbox.write_file("/dev/null", b"gone")
        assert sandbox.read_file("/tmp/plain.txt") == b"x"


# -- client-side deadlines -------------------------------------------------------------------------


def runc(srv: AlcoveServer, verb: str, sandbox_id: str) -> None:
    subprocess.run(["runc", "--root", str(srv.data_dir / "runc"), verb, sandbox_id], check=True, timeout=60)


def test_a_stopped_agent_makes_calls_time_out_instead_of_hanging(server):
    with SandboxClient(api_url=server.url) as client, client.create_and_connect() as sandbox:
        assert sandbox.run("true").exit_code == 0
        impatient = SandboxClient(api_url=server.url, timeout=5, stream_idle_timeout=5)
        stopped = impatient.connect(sandbox.sandbox_id)
        runc(server, "pause", sandbox.sandbox_id)
        try:
            for kwargs in ({}, {"timeout_secs": 600}):
                with pytest.raises(SandboxTimeoutError) as err:
                    stopped.run("true", **kwargs)
                assert err.value.parameter == "stream_idle_timeout"
                assert "stream_idle_timeout" in str(err.value)
            with pytest.raises(SandboxTimeoutError) as err:
                stopped.list_processes()
            assert err.value.parameter == "timeout"
        finally:
            runc(server, "resume", sandbox.sandbox_id)
            impatient.close()
        assert sandbox.run("echo", ["back"]).stdout == "back"


def test_keep_alive_comments_hold_silent_runs_open_for_both_sdks(server):
    """The agent's keep-alive comment comes after 15 s of silence; a 17 s silent command
    needs it to pass a 20 s idle bound, and the official SDK must skip it."""
    tensorlake_sandbox = pytest.importorskip("tensorlake.sandbox")
    script = ["-c", "sleep 17; echo done"]
    with SandboxClient(api_url=server.url, stream_idle_timeout=20) as client:
        with client.create_and_connect() as sandbox:
            assert sandbox.run("sh", script).stdout == "done"
            tl_client = tensorlake_sandbox.SandboxClient.for_localhost(api_url=server.url)
            official = tl_client.connect(sandbox.sandbox_id)
            result = official.run("sh", script, timeout=60)
            assert (result.exit_code, result.stdout.strip()) == (0, "done")
