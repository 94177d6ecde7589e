"""Terminals (docs/protocol/sandbox-api.md, PTY sessions) through the proxy: I/O, resize, exit codes,
reattaching, a plain WebSocket client on `websocket_url`, kill, and a wrong token."""

from __future__ import annotations

import struct

import pytest
from websockets.exceptions import ConnectionClosedOK, InvalidStatus
from websockets.sync.client import connect as ws_connect

from alcove.sandbox import AuthenticationError, RemoteAPIError, SandboxError, SandboxTimeoutError
from framework.agent import agent

PROMPT = "sandbox$ "
# `--norc` keeps the tests independent of the image's rc files; the SDK reference's example below runs a
# plain `bash` to prove the image honours a PS1 given in the environment.
BASH = ("bash", ["--norc", "--noprofile"])


def test_sdk_reference_example_prompt_from_env(sandbox):
    """The PTY example of Tensorlake's SDK reference: plain `bash` with `env={"PS1": "sandbox$ "}` shows that prompt."""
    pty = sandbox.create_pty(command="bash", cols=120, rows=40, env={"PS1": PROMPT})
    with pty:
        pty.read_until(PROMPT, timeout=10)
        pty.send("echo $((6*7))\n")
        assert b"42" in pty.read_until(PROMPT, timeout=10)
        pty.send("exit 0\n")
        assert pty.wait(timeout=10) == 0


def test_echo_resize_and_exit_code(sandbox):
    pty = sandbox.create_pty(BASH[0], BASH[1], cols=120, rows=40, env={"PS1": PROMPT})
    assert not pty.connected
    with pty:
        assert pty.connected
        pty.read_until(PROMPT, timeout=10)
        # The terminal echoes the typed line (`h''i`); `hi` only appears in the output.
        pty.send("echo h''i\n")
        assert pty.read_until("hi\r\n", timeout=10).endswith(b"hi\r\n")
        pty.read_until(PROMPT, timeout=10)
        pty.send("stty size; echo $TERM\n")
        out = pty.read_until(PROMPT, timeout=10)
        assert b"40 120\r\n" in out
        assert b"xterm-256color" in out
        pty.resize(cols=100, rows=30)
        pty.send("stty size\n")
        pty.read_until("30 100\r\n", timeout=10)
        pty.send("exit 3\n")
        assert pty.wait(timeout=10) == 3
        assert pty.exit_code == 3
        pty.read()  # whatever was left; from now on only b""
        assert pty.read(timeout=1) == b""
    with pytest.raises(SandboxError):
        pty.send("too late\n")


def test_exit_by_signal_reports_128_plus_signal(sandbox):
    with sandbox.create_pty("sh", ["-c", "echo ready; kill -TERM $$"]) as pty:
        assert pty.wait(timeout=10) == 128 + 15
        assert b"ready" in pty.read()


def test_reconnect_receives_output_produced_while_detached(sandbox):
    pty = sandbox.create_pty(BASH[0], BASH[1], env={"PS1": PROMPT}, cols=200)  # the typed line fits
    pty.connect()
    pty.read_until(PROMPT, timeout=10)
    # Prints only after /tmp/go exists, which the test creates once detached.
    pty.send("while [ ! -f /tmp/go ]; do sleep 0.05; done; echo $((1000+337)); touch /tmp/printed\n")
    pty.read_until("touch /tmp/printed\r\n", timeout=10)  # the echo of the typed line
    pty.close()
    assert not pty.connected
    sandbox.write_file("/tmp/go", b"")
    # Blocks until the shell has printed, while no client is attached.
    waited = sandbox.run(
        "sh", ["-c", "i=0; while [ ! -f /tmp/printed ]; do i=$((i+1)); [ $i -gt 600 ] && exit 1; sleep 0.05; done"]
    )
    assert waited.exit_code == 0
    again = sandbox.connect_pty(pty.session_id, pty.token)
    assert again.connected
    assert again.read_until("1337\r\n", timeout=10).endswith(b"1337\r\n")
    again.send("exit 0\n")
    assert again.wait(timeout=10) == 0


def test_output_before_the_first_connect_is_held_up_to_1_mib(sandbox):
    """~2.7 MB printed before anyone attached: the newest 1 MiB is delivered after READY."""
    pty = sandbox.create_pty("sh", ["-c", "seq 1 400000; touch /tmp/printed; exec cat"])
    waited = sandbox.run(
        "sh", ["-c", "i=0; while [ ! -f /tmp/printed ]; do i=$((i+1)); [ $i -gt 600 ] && exit 1; sleep 0.05; done"]
    )
    assert waited.exit_code == 0
    with pty:
        held = pty.read_until("\r\n400000\r\n", timeout=10)
        pty.kill()
    # Whole lines after the first (possibly cut) one: the newest ones, without holes.
    numbers = [int(n) for n in held.split(b"\r\n")[1:-1]]
    assert numbers == list(range(numbers[0], 400001))
    assert numbers[0] > 1000, "the oldest output should have been dropped"
    # 1 MiB held by the agent, plus what was still in the terminal when the client attached.
    assert 1024 * 1024 - 16 <= len(held) <= 1024 * 1024 + 64 * 1024


def test_a_new_connection_replaces_the_old_one(sandbox):
    first = sandbox.create_pty(BASH[0], BASH[1], env={"PS1": PROMPT}).connect()
    first.read_until(PROMPT, timeout=10)
    second = sandbox.connect_pty(first.session_id, first.token)
    second.send("echo $((6*7))\n")
    second.read_until("42\r\n", timeout=10)
    with pytest.raises(SandboxError) as err:
        first.read_until("never", timeout=10)
    assert not isinstance(err.value, SandboxTimeoutError), err.value
    second.kill()


def test_websocket_url_works_with_a_plain_client(sandbox):
    pty = sandbox.create_pty(BASH[0], BASH[1], env={"PS1": PROMPT})
    # It routes by its path alone: no header is needed.
    assert pty.websocket_url.startswith("ws://")
    assert f"/sandboxes/{sandbox.sandbox_id}/api/v1/pty/{pty.session_id}/ws?token={pty.token}" in pty.websocket_url
    output = b""
    with ws_connect(pty.websocket_url, open_timeout=10) as ws:
        ws.send(b"\x02")  # READY
        ws.send(b"\x00echo pl''ain; exit 5\n")
        exit_code = None
        while exit_code is None:
            frame = ws.recv(timeout=10)
            assert isinstance(frame, bytes)
            if frame[0] == 0x00:
                output += frame[1:]
            elif frame[0] == 0x03:
                (exit_code,) = struct.unpack(">i", frame[1:5])
        assert exit_code == 5
        with pytest.raises(ConnectionClosedOK):
            ws.recv(timeout=10)
        assert ws.close_code == 1000
        assert ws.close_reason == "exit:5"
    # `plain` only appears in what the command printed, not in the echo of `pl''ain`.
    assert b"plain\r\n" in output


def test_kill_ends_the_session(server, sandbox):
    pty = sandbox.create_pty("sleep", ["1000"]).connect()
    info = agent(server, sandbox, "GET", f"/api/v1/pty/{pty.session_id}").json()
    assert info["is_alive"] is True and info["attached"] is True
    assert "token" not in info
    pid = info["pid"]
    assert sandbox.run("ps", ["-o", "args=", "-p", str(pid)]).stdout == "sleep 1000"
    pty.kill()
    with pytest.raises(SandboxError, match="terminated"):
        pty.wait(timeout=10)
    resp = agent(server, sandbox, "GET", f"/api/v1/pty/{pty.session_id}")
    assert resp.status_code == 404 and resp.json()["code"] == "NOT_FOUND"
    # The command dies (SIGKILL is delivered asynchronously, and a zombie does not count).
    gone = f"for i in $(seq 200); do case $(ps -o stat= -p {pid}) in ''|Z*) exit 0;; esac; sleep 0.05; done; exit 1"
    assert sandbox.run("sh", ["-c", gone]).exit_code == 0
    with pytest.raises(RemoteAPIError) as err:
        sandbox.connect_pty(pty.session_id, pty.token)
    assert (err.value.status_code, err.value.code) == (404, "NOT_FOUND")
    pty.kill()  # a session already gone counts as killed


def test_wrong_token_is_refused(sandbox):
    pty = sandbox.create_pty("bash")
    with pytest.raises(AuthenticationError) as err:
        sandbox.connect_pty(pty.session_id, "0" * len(pty.token))
    assert (err.value.status_code, err.value.code) == (403, "INVALID_TOKEN")
    url = pty.websocket_url.replace(pty.token, "wrong")
    with pytest.raises(InvalidStatus) as refused:
        ws_connect(url, open_timeout=10)
    assert refused.value.response.status_code == 403
    # The session is unharmed and still opens with its own token.
    with sandbox.connect_pty(pty.session_id, pty.token) as ok:
        ok.send("exit 7\n")
        assert ok.wait(timeout=10) == 7


def test_bad_sizes_are_refused(server, sandbox):
    for rows, cols in ((0, 80), (24, 1001)):
        resp = agent(server, sandbox, "POST", "/api/v1/pty", json={"command": "bash", "rows": rows, "cols": cols})
        assert resp.status_code == 400, resp.text
        assert resp.json()["code"] == "INVALID_ARGUMENT"
    resp = agent(server, sandbox, "POST", "/api/v1/pty", json={"command": "no-such-command"})
    assert resp.status_code == 400 and resp.json()["code"] == "COMMAND_NOT_FOUND"
    assert agent(server, sandbox, "GET", "/api/v1/pty").json() == {"sessions": []}
