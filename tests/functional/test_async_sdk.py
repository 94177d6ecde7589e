"""The async SDK (`AsyncSandboxClient` / `AsyncSandbox`) against a real server: a smaller
mirror of the sync suites (run, processes, follow, files, PTY, tunnel)."""

from __future__ import annotations

import asyncio
import hashlib
import signal

import httpx
import pytest

from alcove.sandbox import AsyncSandbox, AsyncSandboxClient, RemoteAPIError

pytestmark = pytest.mark.asyncio

PROMPT = "sandbox$ "


@pytest.fixture
async def aclient(server):
    async with AsyncSandboxClient(api_url=server.url) as client:
        yield client


async def test_create_and_connect_run_and_terminate(server, aclient):
    async with aclient.create_and_connect() as sandbox:
        assert isinstance(sandbox, AsyncSandbox)
        result = await sandbox.run(
            "sh", ["-c", 'echo "$X" "$(pwd)"; echo err >&2; exit 3'], env={"X": "a"}, working_dir="/tmp"
        )
        assert (result.stdout, result.stderr, result.exit_code) == ("a /tmp", "err", 3)
        sandbox_id = sandbox.sandbox_id
        # Two commands at once on one client.
        both = await asyncio.gather(sandbox.run("echo", ["one"]), sandbox.run("echo", ["two"]))
        assert [r.stdout for r in both] == ["one", "two"]
        with pytest.raises(RemoteAPIError) as err:
            await sandbox.run("no-such-command")
        assert (err.value.status_code, err.value.code) == (400, "COMMAND_NOT_FOUND")
    assert (await aclient.get(sandbox_id)).status == "terminated"


async def test_processes_and_live_follow(aclient):
    async with aclient.create_and_connect() as sandbox:
        script = (
            "echo first; echo to-stderr >&2; i=0; while [ ! -f /tmp/go ]; do i=$((i+1));"
            " if [ $i -gt 1200 ]; then echo gave-up; exit 1; fi; sleep 0.05; done; echo second"
        )
        proc = await sandbox.start_process("sh", ["-c", script])
        seen = []
        async for event in sandbox.follow_output(proc.pid):
            seen.append((event.stream, event.line))
            if event.line == "first":
                await sandbox.write_file("/tmp/go", b"")  # only now can the process go on
        assert [line for stream, line in seen if stream == "stdout"] == ["first", "second"]
        assert [line for stream, line in seen if stream == "stderr"] == ["to-stderr"]
        info = await sandbox.get_process(proc.pid)
        assert (info.status, info.exit_code) == ("exited", 0)
        assert (await sandbox.get_stdout(proc.pid)).lines == ["first", "second"]

        cat = await sandbox.start_process("cat", stdin_mode="pipe")
        await sandbox.write_stdin(cat.pid, b"piped\n")
        await sandbox.close_stdin(cat.pid)
        assert [e.line async for e in sandbox.follow_stdout(cat.pid)] == ["piped"]

        sleeper = await sandbox.start_process("sleep", ["1000"])
        assert sleeper.pid in [p.pid for p in await sandbox.list_processes()]
        await sandbox.send_signal(sleeper.pid, signal.SIGTERM)
        assert [e async for e in sandbox.follow_output(sleeper.pid)] == []
        info = await sandbox.get_process(sleeper.pid)
        assert (info.status, info.signal) == ("signaled", 15)
        await sandbox.kill_process(sleeper.pid)
        with pytest.raises(RemoteAPIError) as err:
            await sandbox.get_process(sleeper.pid)
        assert err.value.status_code == 404


async def test_files(aclient):
    async with aclient.create_and_connect() as sandbox:
        path = "/tmp/dir with space/ünïcødé ✓.bin"
        data = bytes(range(256)) * 16
        await sandbox.write_file(path, data)
        assert await sandbox.read_file(path) == data
        assert [(e.name, e.is_dir, e.size) for e in await sandbox.list_directory("/tmp/dir with space")] == [
            ("ünïcødé ✓.bin", False, len(data))
        ]

        async def chunks():
            for i in range(8):
                yield bytes([i]) * 300_000

        sha = hashlib.sha256(b"".join(bytes([i]) * 300_000 for i in range(8))).hexdigest()
        await sandbox.write_file("/tmp/streamed.bin", chunks())
        streamed = hashlib.sha256()
        async for chunk in sandbox.read_file_stream("/tmp/streamed.bin"):
            streamed.update(chunk)
        assert streamed.hexdigest() == sha
        assert (await sandbox.run("sha256sum", ["/tmp/streamed.bin"])).stdout.split()[0] == sha

        await sandbox.delete_file(path)
        with pytest.raises(RemoteAPIError) as err:
            await sandbox.read_file(path)
        assert (err.value.status_code, err.value.code) == (404, "NOT_FOUND")
        with pytest.raises(RemoteAPIError) as err:
            await sandbox.read_file("/tmp/../etc/passwd")
        assert (err.value.status_code, err.value.code) == (403, "PATH_TRAVERSAL")


async def test_pty_round_trip_and_reconnect(aclient):
    async with aclient.create_and_connect() as sandbox:
        pty = await sandbox.create_pty("bash", ["--norc", "--noprofile"], env={"PS1": PROMPT}, cols=90, rows=20)
        async with pty:
            await pty.read_until(PROMPT, timeout=10)
            await pty.send("echo h''i; stty size\n")
            out = await pty.read_until(PROMPT, timeout=10)
            assert b"hi\r\n" in out and b"20 90\r\n" in out
            await pty.resize(cols=70, rows=10)
            await pty.send("stty size\n")
            await pty.read_until("10 70\r\n", timeout=10)
        assert not pty.connected
        again = await sandbox.connect_pty(pty.session_id, pty.token)
        await again.send("exit 3\n")
        assert await again.wait(timeout=10) == 3


async def test_tunnel(aclient):
    async with aclient.create_and_connect() as sandbox:
        await sandbox.write_file("/tmp/www/index.txt", b"async tunnel\n")
        await sandbox.start_process("python3", ["-m", "http.server", "8000"], working_dir="/tmp/www")
        probe = (
            "for i in $(seq 400); do (exec 3<>/dev/tcp/127.0.0.1/8000) 2>/dev/null && exit 0; sleep 0.05; done; exit 1"
        )
        assert (await sandbox.run("bash", ["-c", probe])).exit_code == 0
        async with await sandbox.create_tunnel(8000) as tunnel:
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{tunnel.local_port}", timeout=10) as http:
                listing, text = await asyncio.gather(http.get("/"), http.get("/index.txt"))
            assert listing.status_code == 200 and "index.txt" in listing.text
            assert text.content == b"async tunnel\n"
            reader, writer = await asyncio.open_connection(*tunnel.local_address)
            writer.write(b"GET /index.txt HTTP/1.0\r\n\r\n")
            answer = await asyncio.wait_for(reader.read(), timeout=10)  # to end of file
            writer.close()
            assert answer.startswith(b"HTTP/1.0 200") and answer.endswith(b"async tunnel\n")
