"""AsyncSandboxClient / AsyncSandbox: the same protocol driven by httpx.AsyncClient."""

from __future__ import annotations

import json

import httpx
import pytest

from alcove.sandbox import (
    AsyncSandbox,
    AsyncSandboxClient,
    RemoteAPIError,
    SandboxConnectionError,
    SandboxNameConflictError,
    SandboxNotFoundError,
)
from fakes import FakeServer, info_json, jsonr, sse

BASE = "/v1/namespaces/default/sandboxes"
SBX = f"{BASE}/sbx-1"


async def test_create_polls_until_running(server: FakeServer, aclient: AsyncSandboxClient, sleeps: list[float]) -> None:
    server.on("POST", BASE, jsonr(202, {"sandbox_id": "sbx-1", "status": "pending"}))
    server.on("GET", SBX, [jsonr(200, info_json(status="pending", sandbox_url=None)), jsonr(200, info_json())])
    info = await aclient.create(cpus=2.0)
    assert info.status == "running"
    assert json.loads(server.requests[0].content) == {"resources": {"cpus": 2.0, "memory_mb": 1024}}
    assert sleeps == [0.5, 0.5]


async def test_create_and_connect_send_the_node_selector(server: FakeServer, aclient: AsyncSandboxClient) -> None:
    server.on("POST", BASE, jsonr(200, {"sandbox_id": "sbx-1", "status": "running"}))
    server.on("GET", SBX, jsonr(200, info_json(node_selector={"zone": "b"})))
    server.on("DELETE", SBX, httpx.Response(204))
    assert (await aclient.create(node_selector={"zone": "b"})).node_selector == {"zone": "b"}
    async with aclient.create_and_connect(node_selector={"gpu": "a100"}):
        pass
    bodies = [json.loads(request.content) for request in server.calls("POST", BASE)]
    assert [body["node_selector"] for body in bodies] == [{"zone": "b"}, {"gpu": "a100"}]
    with pytest.raises(ValueError, match="node_selector"):
        await aclient.create(node_selector={"zone": 1})  # type: ignore[dict-item]
    assert len(server.calls("POST", BASE)) == 2


async def test_errors_map_the_same_way(server: FakeServer, aclient: AsyncSandboxClient) -> None:
    server.on("POST", BASE, jsonr(409, {"message": "taken", "code": "NAME_TAKEN"}))
    server.on("GET", SBX, jsonr(404, {"message": "gone", "code": "NOT_FOUND"}))
    with pytest.raises(SandboxNameConflictError):
        await aclient.create(name="x")
    with pytest.raises(SandboxNotFoundError):
        await aclient.get("sbx-1")
    with pytest.raises(ValueError):
        await aclient.create(cpus=0)


async def test_suspend_202_then_poll(server: FakeServer, aclient: AsyncSandboxClient, sleeps: list[float]) -> None:
    server.on("POST", f"{SBX}/suspend", httpx.Response(202))
    server.on("GET", SBX, [jsonr(200, info_json(status="suspending")), jsonr(200, info_json(status="suspended"))])
    assert (await aclient.suspend("sbx-1")).status == "suspended"
    assert sleeps == [1.0]


async def test_create_and_connect_as_async_context_manager(server: FakeServer, aclient: AsyncSandboxClient) -> None:
    server.on("POST", BASE, jsonr(200, {"sandbox_id": "sbx-1", "status": "running"}))
    server.on("GET", SBX, jsonr(200, info_json()))
    server.on("DELETE", SBX, httpx.Response(204))
    async with aclient.create_and_connect() as sandbox:
        assert isinstance(sandbox, AsyncSandbox) and sandbox.sandbox_id == "sbx-1"
    assert len(server.calls("DELETE", SBX)) == 1
    sandbox = await aclient.create_and_connect()
    async with sandbox:
        pass
    assert len(server.calls("DELETE", SBX)) == 2


async def connect(
    server: FakeServer, aclient: AsyncSandboxClient, sandbox_url: str = "http://localhost:8900"
) -> AsyncSandbox:
    server.on("GET", SBX, jsonr(200, info_json(sandbox_url=sandbox_url)))
    sandbox = await aclient.connect("sbx-1")
    server.requests.clear()
    return sandbox


async def test_run(server: FakeServer, aclient: AsyncSandboxClient) -> None:
    sandbox = await connect(server, aclient, "http://sandboxes.example:9000")
    server.on(
        "POST",
        "/api/v1/processes/run",
        sse(
            {"line": "out", "timestamp": 1},
            {"line": "err", "timestamp": 1, "stream": "stderr"},
            {"exit_code": None, "signal": 15},
        ),
    )
    result = await sandbox.run("python", ["-c", "print('hello')"], timeout_secs=30)
    assert (result.stdout, result.stderr, result.exit_code) == ("out", "err", -15)
    request = server.requests[0]
    assert request.headers["x-tensorlake-sandbox-id"] == "sbx-1"
    assert json.loads(request.content)["timeout"] == 30


async def test_run_without_exit_event(server: FakeServer, aclient: AsyncSandboxClient) -> None:
    sandbox = await connect(server, aclient)
    server.on("POST", "/api/v1/processes/run", sse({"line": "x", "timestamp": 1}))
    with pytest.raises(SandboxConnectionError):
        await sandbox.run("echo")


async def test_follow_output(server: FakeServer, aclient: AsyncSandboxClient) -> None:
    sandbox = await connect(server, aclient)
    server.on(
        "GET",
        "/api/v1/processes/5/output/follow",
        sse({"line": "a", "timestamp": 1}, {"line": "b", "timestamp": 2}, {}),
    )
    assert [event.line async for event in sandbox.follow_output(5)] == ["a", "b"]
    assert server.requests[0].headers["host"] == "sbx-1.local"
    assert server.requests[0].url.params["batch"] == "true"


async def test_follow_output_reads_batches(server: FakeServer, aclient: AsyncSandboxClient) -> None:
    sandbox = await connect(server, aclient)
    server.on(
        "GET",
        "/api/v1/processes/5/output/follow",
        sse(
            {"stream": "stdout", "timestamp": 1, "lines": ["a", "b"]},
            {"line": "c", "timestamp": 2, "stream": "stderr"},
            {"stream": "stderr", "timestamp": 3, "lines": ["d"]},
            {},
        ),
    )
    events = [event async for event in sandbox.follow_output(5)]
    assert [(e.line, e.stream) for e in events] == [("a", "stdout"), ("b", "stdout"), ("c", "stderr"), ("d", "stderr")]
    batches = [batch async for batch in sandbox.follow_output_batches(5)]
    assert [(b.lines, b.stream) for b in batches] == [(["a", "b"], "stdout"), (["c"], "stderr"), (["d"], "stderr")]


async def test_write_file_streams_async_iterables_and_files(
    server: FakeServer, aclient: AsyncSandboxClient, tmp_path
) -> None:
    sandbox = await connect(server, aclient)
    server.on("PUT", "/api/v1/files", httpx.Response(204))

    async def chunks():
        yield b"async "
        yield b"chunks"

    await sandbox.write_file("/tmp/a", chunks())
    assert server.requests[0].content == b"async chunks"
    local = tmp_path / "f.bin"
    local.write_bytes(b"x" * 100_000)
    with open(local, "rb") as handle:
        await sandbox.write_file("/tmp/b", handle)
    assert server.requests[1].content == b"x" * 100_000
    assert server.requests[1].headers["content-length"] == "100000"


async def test_files_and_processes(server: FakeServer, aclient: AsyncSandboxClient, tmp_path) -> None:
    sandbox = await connect(server, aclient)
    server.on("GET", "/api/v1/files", httpx.Response(200, content=b"payload"))
    server.on("GET", "/api/v1/files/list", jsonr(200, {"path": "/", "entries": [{"name": "etc", "is_dir": True}]}))
    server.on("POST", "/api/v1/processes/9/stdin", httpx.Response(204))
    server.on("GET", "/api/v1/processes/9", jsonr(404, {"error": "no process 9", "code": "NOT_FOUND"}))
    assert await sandbox.read_file("/x") == b"payload"
    assert b"".join([c async for c in sandbox.read_file_stream("/x", chunk_size=3)]) == b"payload"
    assert await sandbox.download_file("/x", tmp_path / "x") == 7
    assert [e.name for e in await sandbox.list_directory("/")] == ["etc"]
    await sandbox.write_stdin(9, b"hi")
    assert server.requests[-1].content == b"hi"
    with pytest.raises(RemoteAPIError, match="no process 9"):
        await sandbox.get_process(9)
