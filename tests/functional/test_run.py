"""`run` through the proxy: args, env, working dir, user, timeouts, exit codes."""

from __future__ import annotations

import httpx
import pytest


@pytest.fixture(scope="module")
def sandbox(server):
    from alcove.sandbox import SandboxClient

    client = SandboxClient(api_url=server.url)
    sb = client.create_and_connect()
    yield sb
    client.delete(sb.sandbox_id)
    client.close()


@pytest.fixture(autouse=True)
def no_leftovers():
    """The module-wide sandbox lives across tests; the check runs at module end."""
    yield


def test_env_working_dir_and_args(sandbox):
    result = sandbox.run(
        "sh",
        ["-c", 'echo "$GREETING" "$(pwd)" "$1"', "argv0", "first arg"],
        env={"GREETING": "hi there"},
        working_dir="/tmp",
    )
    assert result.stdout == "hi there /tmp first arg"


def test_exit_codes_and_stderr(sandbox):
    result = sandbox.run("sh", ["-c", "echo out; echo err >&2; exit 7"])
    assert result.exit_code == 7
    assert result.stdout == "out"
    assert result.stderr == "err"


def test_timeout_kills_the_whole_tree(sandbox):
    result = sandbox.run(
        "sh", ["-c", "sleep 1000 & setsid sleep 1001 & sleep 1002"], timeout_secs=1
    )
    assert result.exit_code != 0
    left = sandbox.run("sh", ["-c", "ps -eo args | grep -c '^sleep 100[012]' || true"])
    assert left.stdout.strip() == "0"


def test_user_switch(sandbox):
    assert sandbox.run("id", ["-u"], user="nobody").stdout.strip() == "65534"
    assert sandbox.run("id", ["-u"]).stdout.strip() == "0"
    assert sandbox.run("id", ["-u"], user="65535").stdout.strip() == "65535"


def test_ids_the_sandbox_does_not_have_are_400(server, sandbox):
    """A sandbox maps uids and gids 0-65535: another id cannot be taken (it was a 500 after the
    kernel's EINVAL), for run, a started process and a terminal alike."""
    from alcove.sandbox import RemoteAPIError

    for user in ("65536", "0:70000", "4294967295"):
        with pytest.raises(RemoteAPIError) as refused:
            sandbox.run("id", user=user)
        assert refused.value.status_code == 400, (user, refused.value)
        assert "does not exist in this sandbox" in str(refused.value) and "0-65535" in str(refused.value)
    base = f"{server.url}/sandboxes/{sandbox.sandbox_id}/api/v1"
    for path in ("/processes", "/pty"):
        resp = httpx.post(base + path, json={"command": "id", "user": {"uid": 70000}}, timeout=30)
        assert resp.status_code == 400, (path, resp.text)
        assert "uid 70000 does not exist" in resp.json()["error"], resp.text


def test_unknown_command_is_an_error(sandbox):
    from alcove.sandbox import SandboxError

    with pytest.raises(SandboxError):
        sandbox.run("definitely-not-a-command")


def test_strings_the_kernel_cannot_take_are_refused_naming_the_field(sandbox):
    """A variable name with `=` would set another variable than the one asked for, and a
    NUL byte would cut a string short: each is a 400 that names the field, not a 500."""
    from alcove.sandbox import RemoteAPIError

    cases = [
        (dict(env={"A=B": "c"}), "env"),
        (dict(env={"": "c"}), "env"),
        (dict(env={"A": "c\0d"}), "env"),
        (dict(args=["fine", "b\0ad"]), "args[1]"),
        (dict(working_dir="/tmp\0x"), "working_dir"),
    ]
    for kwargs, field in cases:
        with pytest.raises(RemoteAPIError) as err:
            sandbox.run("echo", **kwargs)
        assert (err.value.status_code, err.value.code) == (400, "INVALID_ARGUMENT"), kwargs
        assert field in str(err.value), (field, str(err.value))
    with pytest.raises(RemoteAPIError) as err:
        sandbox.start_process("ec\0ho")
    assert (err.value.status_code, err.value.code) == (400, "INVALID_ARGUMENT")
    assert "command" in str(err.value)
    assert sandbox.run("printenv", ["A"], env={"A": "c=d"}).stdout == "c=d"


def test_many_lines_arrive_complete(sandbox):
    result = sandbox.run("python", ["-c", "for i in range(200000): print(i)"], timeout_secs=120)
    lines = result.stdout.split("\n")
    assert len(lines) == 200000
    assert lines[0] == "0" and lines[-1] == "199999"


def test_a_line_longer_than_the_agent_keeps_whole_comes_back_exact(sandbox):
    # The agent cuts lines over 1 MiB into pieces (at character boundaries) and marks them; the
    # SDK puts them back together. 2-byte characters after an odd prefix: a cut at exactly
    # 1 MiB would fall inside one. Two such lines, on stdout and stderr, then a short one each.
    program = (
        "import sys\n"
        "sys.stdout.write('x' + 'é' * 1_500_000 + '\\nshort\\n')\n"
        "sys.stderr.write('{\"k\": \"' + 'y' * 2_500_000 + '\"}')\n"
    )
    result = sandbox.run("python3", ["-c", program])
    assert result.exit_code == 0
    assert result.stdout == "x" + "é" * 1_500_000 + "\nshort"
    assert result.stderr == '{"k": "' + "y" * 2_500_000 + '"}'
    # A follower sees the pieces, marked; joined where marked, they are the lines.
    proc = sandbox.start_process("python3", ["-c", program])
    events = list(sandbox.follow_stdout(proc.pid))
    assert [e.continued for e in events] == [True, True, False, False]
    assert "".join(e.line for e in events[:3]) == "x" + "é" * 1_500_000
    assert max(len(e.line.encode()) for e in events) <= 1024 * 1024
    captured = sandbox.get_stderr(proc.pid)
    assert captured.continued == [0, 1]
    assert "".join(captured.lines) == '{"k": "' + "y" * 2_500_000 + '"}'


def test_files_written_by_run_persist_between_calls(sandbox):
    sandbox.run("sh", ["-c", "echo state > /root/state.txt"])
    assert sandbox.run("cat", ["/root/state.txt"]).stdout == "state"


def test_python_and_tools_of_the_default_image(sandbox):
    for cmd, args in [("git", ["--version"]), ("curl", ["--version"]), ("pip", ["--version"]), ("ip", ["-V"]), ("ps", ["--version"])]:
        assert sandbox.run(cmd, args).exit_code == 0, cmd
