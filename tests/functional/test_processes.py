"""Background processes through the proxy: start, list, signal, stdin, output and its bounds,
plus the agent's error answers (docs/protocol/sandbox-api.md, Processes and Process I/O), through Alcove's
Python SDK and raw HTTP."""

from __future__ import annotations

import signal

import pytest

from alcove.sandbox import RemoteAPIError, SandboxError, SandboxNotFoundError
from framework.agent import agent, assert_error

BUFFER_BOUND = 16 * 1024 * 1024
"""The agent keeps at most this much output per process (crates/agent/README.md)."""


def wait_for_exit(sandbox, pid: int):
    """Block until the process has exited: a follow stream closes only then (no polling)."""
    for _ in sandbox.follow_stderr(pid):
        pass
    return sandbox.get_process(pid)


def test_start_with_args_env_and_working_dir_then_get_and_list(sandbox):
    script = 'echo "$GREETING" "$(pwd)" "$1"; exit 4'
    proc = sandbox.start_process(
        "sh", ["-c", script, "argv0", "first arg"], env={"GREETING": "hi there"}, working_dir="/tmp"
    )
    assert proc.pid > 0
    assert proc.command == "sh"
    assert proc.args == ["-c", script, "argv0", "first arg"]
    info = wait_for_exit(sandbox, proc.pid)
    assert info.pid == proc.pid
    assert info.status == "exited"
    assert info.exit_code == 4
    assert info.signal is None
    assert info.ended_at is not None and info.ended_at >= info.started_at
    assert sandbox.get_stdout(proc.pid).lines == ["hi there /tmp first arg"]

    other = sandbox.start_process("sleep", ["1000"])
    listed = {p.pid: p for p in sandbox.list_processes()}
    assert listed[proc.pid].status == "exited" and listed[proc.pid].exit_code == 4
    assert listed[other.pid].status == "running"
    assert listed[other.pid].command == "sleep" and listed[other.pid].args == ["1000"]
    assert listed[other.pid].exit_code is None
    sandbox.kill_process(other.pid)


def test_stdin_pipe_round_trip(sandbox):
    proc = sandbox.start_process("cat", stdin_mode="pipe")
    assert proc.stdin_writable is True
    sandbox.write_stdin(proc.pid, b"hello\n")
    sandbox.write_stdin(proc.pid, b"w\xc3\xb6rld\nno newline at end")
    sandbox.close_stdin(proc.pid)
    lines = [event.line for event in sandbox.follow_stdout(proc.pid)]
    assert lines == ["hello", "wörld", "no newline at end"]
    info = sandbox.get_process(proc.pid)
    assert (info.status, info.exit_code, info.stdin_writable) == ("exited", 0, False)
    with pytest.raises(RemoteAPIError) as err:
        sandbox.write_stdin(proc.pid, b"too late")
    assert (err.value.status_code, err.value.code) == (400, "STDIN_NOT_WRITABLE")


def test_the_api_stdin_example_works_as_written(sandbox):
    """Alcove's SDK opens stdin by default (the wire default stays `closed`)."""
    proc = sandbox.start_process("python", ["-c", "import sys; print(sys.stdin.read())"])
    assert proc.stdin_writable is True
    sandbox.write_stdin(proc.pid, b"hello from stdin\n")
    sandbox.close_stdin(proc.pid)
    info = wait_for_exit(sandbox, proc.pid)
    assert (info.status, info.exit_code) == ("exited", 0)
    assert "hello from stdin" in sandbox.get_stdout(proc.pid).lines


def test_stdin_closed_on_request(sandbox, server):
    proc = sandbox.start_process("cat", stdin_mode="closed")
    assert proc.stdin_writable is False
    info = wait_for_exit(sandbox, proc.pid)  # cat reads end of file at once
    assert (info.status, info.exit_code) == ("exited", 0)
    with pytest.raises(RemoteAPIError) as err:
        sandbox.write_stdin(proc.pid, b"x")
    assert err.value.code == "STDIN_NOT_WRITABLE"
    # On the wire, a start without stdin_mode still closes stdin (as other clients expect).
    raw = server.api("POST", f"/sandboxes/{sandbox.sandbox_id}/api/v1/processes", json={"command": "cat"})
    assert raw.status_code == 201, raw.text
    assert raw.json()["stdin_writable"] is False
    assert wait_for_exit(sandbox, raw.json()["pid"]).exit_code == 0


def test_closing_stdin_ends_a_write_to_a_process_that_does_not_read(sandbox):
    """A write bigger than the pipe blocks while the process does not read; a close must not
    wait behind it (it did for good once the writer's client gave up)."""
    import threading

    proc = sandbox.start_process("sleep", ["300"], stdin_mode="pipe")
    outcome: list[BaseException | None] = []

    def write() -> None:
        try:
            sandbox.write_stdin(proc.pid, b"x" * (1 << 20))
            outcome.append(None)
        except BaseException as e:  # noqa: BLE001 - handed to the test thread
            outcome.append(e)

    writer = threading.Thread(target=write)
    writer.start()
    writer.join(0.5)
    assert writer.is_alive(), "a MiB fits no pipe: the write blocks while nothing reads"
    sandbox.close_stdin(proc.pid)
    writer.join(30)
    assert not writer.is_alive()
    assert isinstance(outcome[0], RemoteAPIError) and outcome[0].code == "STDIN_NOT_WRITABLE", outcome
    info = sandbox.get_process(proc.pid)
    assert (info.status, info.stdin_writable) == ("running", False)
    sandbox.kill_process(proc.pid)


def test_follow_output_is_live(sandbox):
    """The process prints its second line only after the test saw the first one, so a follow
    stream that waited for the exit (or buffered) would never see `second`."""
    script = (
        "echo first; i=0; while [ ! -f /tmp/go ]; do i=$((i+1));"
        " if [ $i -gt 1200 ]; then echo gave-up; exit 1; fi; sleep 0.05; done; echo second"
    )
    proc = sandbox.start_process("sh", ["-c", script])
    seen = []
    for event in sandbox.follow_output(proc.pid):
        seen.append(event.line)
        assert event.stream == "stdout"
        assert event.timestamp is not None
        if event.line == "first":
            sandbox.write_file("/tmp/go", b"")
    assert seen == ["first", "second"]
    assert sandbox.get_process(proc.pid).exit_code == 0


def test_follow_output_batches_hold_what_follow_output_yields(sandbox):
    """The agent sends the lines of one read as one batch: 20,000 lines come in few batches,
    and flattened they are the lines follow_output yields, in order, each stream whole."""
    script = "import sys\nsys.stdout.write(''.join(f'{i}\\n' for i in range(20000)))\nprint('err', file=sys.stderr)"
    proc = sandbox.start_process("python3", ["-c", script])
    wait_for_exit(sandbox, proc.pid)
    batches = list(sandbox.follow_output_batches(proc.pid))
    events = list(sandbox.follow_output(proc.pid))
    assert [(line, b.stream) for b in batches for line in b.lines] == [(e.line, e.stream) for e in events]
    assert [line for b in batches if b.stream == "stdout" for line in b.lines] == [str(i) for i in range(20000)]
    assert [line for b in batches if b.stream == "stderr" for line in b.lines] == ["err"]
    assert len(batches) < 100 and all(b.timestamp is not None for b in batches)


def test_follow_and_get_separate_the_streams(sandbox):
    script = "echo o1; echo e1 >&2; echo o2; echo e2 >&2; echo o3"
    proc = sandbox.start_process("sh", ["-c", script])
    stdout = list(sandbox.follow_stdout(proc.pid))
    stderr = list(sandbox.follow_stderr(proc.pid))
    both = list(sandbox.follow_output(proc.pid))
    assert [e.line for e in stdout] == ["o1", "o2", "o3"]
    assert {e.stream for e in stdout} == {"stdout"}
    assert [e.line for e in stderr] == ["e1", "e2"]
    assert {e.stream for e in stderr} == {"stderr"}
    # Two pipes: the order between them is not defined, the order within each one is.
    assert [e.line for e in both if e.stream == "stdout"] == ["o1", "o2", "o3"]
    assert [e.line for e in both if e.stream == "stderr"] == ["e1", "e2"]
    assert len(both) == 5

    out, err, all_ = sandbox.get_stdout(proc.pid), sandbox.get_stderr(proc.pid), sandbox.get_output(proc.pid)
    assert (out.pid, out.lines, out.line_count) == (proc.pid, ["o1", "o2", "o3"], 3)
    assert (err.lines, err.line_count) == (["e1", "e2"], 2)
    assert sorted(all_.lines) == ["e1", "e2", "o1", "o2", "o3"]
    assert all_.line_count == 5
    assert [line for line in all_.lines if line.startswith("o")] == ["o1", "o2", "o3"]


def test_sigterm_ends_sleep_as_signaled(sandbox):
    proc = sandbox.start_process("sleep", ["1000"])
    assert sandbox.get_process(proc.pid).status == "running"
    sandbox.send_signal(proc.pid, signal.SIGTERM)
    info = wait_for_exit(sandbox, proc.pid)
    assert info.status == "signaled"
    assert info.signal == 15
    assert info.exit_code is None
    # A signal to a process that has exited is refused.
    with pytest.raises(RemoteAPIError) as err:
        sandbox.send_signal(proc.pid, signal.SIGTERM)
    assert (err.value.status_code, err.value.code) == (409, "PROCESS_EXITED")


def test_signal_reaches_a_handler_in_the_process(sandbox):
    script = "trap 'echo got-usr1; exit 0' USR1; echo armed; while :; do sleep 0.05; done"
    proc = sandbox.start_process("bash", ["-c", script])
    lines = []
    for event in sandbox.follow_stdout(proc.pid):
        lines.append(event.line)
        if event.line == "armed":
            sandbox.send_signal(proc.pid, signal.SIGUSR1)
    assert lines == ["armed", "got-usr1"]
    assert sandbox.get_process(proc.pid).exit_code == 0


def test_kill_process_kills_then_removes(sandbox):
    proc = sandbox.start_process("sh", ["-c", "sleep 1000 & sleep 1001"])
    sandbox.kill_process(proc.pid)
    info = wait_for_exit(sandbox, proc.pid)
    assert (info.status, info.signal) == ("signaled", 9)
    # The whole group dies with it (SIGKILL is delivered asynchronously: wait up to 10 s).
    gone = "for i in $(seq 200); do ps -eo args | grep -q '^sleep 100[01]' || exit 0; sleep 0.05; done; exit 1"
    assert sandbox.run("sh", ["-c", gone]).exit_code == 0
    # DELETE on an exited process removes it from the table.
    sandbox.kill_process(proc.pid)
    assert proc.pid not in [p.pid for p in sandbox.list_processes()]
    with pytest.raises(RemoteAPIError) as err:
        sandbox.get_process(proc.pid)
    assert (err.value.status_code, err.value.code) == (404, "NOT_FOUND")


def test_200000_lines_arrive_complete(sandbox):
    program = "import sys\nsys.stdout.write(''.join(f'{i}\\n' for i in range(200000)))"
    expected = [str(i) for i in range(200000)]
    proc = sandbox.start_process("python3", ["-c", program])
    followed = [event.line for event in sandbox.follow_output(proc.pid)]
    assert followed == expected
    output = sandbox.get_output(proc.pid)
    assert output.line_count == 200000
    assert output.lines == expected
    assert sandbox.run("python3", ["-c", program]).stdout.split("\n") == expected


def test_output_beyond_the_bound_keeps_the_newest_lines(sandbox):
    """25 MB of 100-byte lines: more than the 16 MiB bound, so the oldest are dropped."""
    total = 250_000
    program = f"import sys\nfor i in range({total}): sys.stdout.write(f'{{i:08d}}' + 'x' * 91 + '\\n')"
    proc = sandbox.start_process("python3", ["-c", program])
    assert wait_for_exit(sandbox, proc.pid).exit_code == 0

    kept = sandbox.get_output(proc.pid)
    first_kept = int(kept.lines[0][:8])
    assert first_kept > 0, "the first line should have been dropped"
    assert kept.lines[-1] == f"{total - 1:08d}" + "x" * 91, "the last line must be kept"
    # What is kept is exactly the newest lines, in order, without holes.
    assert [int(line[:8]) for line in kept.lines] == list(range(first_kept, total))
    assert kept.line_count == len(kept.lines) == total - first_kept
    kept_bytes = sum(len(line) for line in kept.lines)
    assert BUFFER_BOUND // 2 < kept_bytes <= BUFFER_BOUND

    # A follow stream opened now replays from the oldest line still kept.
    followed = [event.line for event in sandbox.follow_output(proc.pid)]
    assert followed == kept.lines
    assert sandbox.get_stdout(proc.pid).lines == kept.lines


def test_discarded_stdout_is_not_captured(sandbox):
    proc = sandbox.start_process("sh", ["-c", "echo out; echo err >&2"], stdout_mode="discard")
    info = wait_for_exit(sandbox, proc.pid)
    assert (info.status, info.exit_code) == ("exited", 0)
    assert sandbox.get_stdout(proc.pid).lines == []
    assert sandbox.get_stderr(proc.pid).lines == ["err"]
    assert sandbox.get_output(proc.pid).lines == ["err"]
    proc = sandbox.start_process("sh", ["-c", "echo out; echo err >&2"], stderr_mode="discard")
    assert [e.line for e in sandbox.follow_output(proc.pid)] == ["out"]


def test_error_answers_have_the_wire_shape(server, sandbox):
    assert_error(agent(server, sandbox, "GET", "/api/v1/processes/999999"), 404, "NOT_FOUND")
    assert_error(agent(server, sandbox, "GET", "/api/v1/processes/999999/stdout"), 404, "NOT_FOUND")
    assert_error(agent(server, sandbox, "DELETE", "/api/v1/processes/999999"), 404, "NOT_FOUND")
    proc = sandbox.start_process("sleep", ["1000"])
    for bad in (0, 65, 999, -1):
        resp = agent(server, sandbox, "POST", f"/api/v1/processes/{proc.pid}/signal", json={"signal": bad})
        assert_error(resp, 400, "INVALID_ARGUMENT")
    assert sandbox.get_process(proc.pid).status == "running"
    resp = agent(server, sandbox, "POST", "/api/v1/processes/run", json={"command": "no-such-command"})
    assert_error(resp, 400, "COMMAND_NOT_FOUND")
    resp = agent(server, sandbox, "POST", "/api/v1/processes", json={"command": "no-such-command"})
    assert_error(resp, 400, "COMMAND_NOT_FOUND")
    resp = agent(server, sandbox, "POST", "/api/v1/processes", json={"command": "true", "working_dir": "/nope"})
    assert_error(resp, 400, "INVALID_WORKING_DIR")
    resp = agent(
        server, sandbox, "POST", "/api/v1/processes", content=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert_error(resp, 400, "INVALID_ARGUMENT")
    sandbox.kill_process(proc.pid)


def test_a_large_body_refused_early_gets_its_answer_not_a_broken_connection(server, sandbox):
    # The agent answers before it reads the body; 32 MiB outgrows every socket buffer on the
    # way, so an answer sent while bytes are still unread would be lost to the reset.
    big = b"x" * (32 * 1024 * 1024)
    assert_error(agent(server, sandbox, "POST", "/api/v1/processes/999999/stdin", content=big), 404, "NOT_FOUND")
    done = sandbox.start_process("true")
    wait_for_exit(sandbox, done.pid)
    resp = agent(server, sandbox, "POST", f"/api/v1/processes/{done.pid}/stdin", content=big)
    assert_error(resp, 400, "STDIN_NOT_WRITABLE")


def test_sdk_raises_typed_errors(sandbox):
    with pytest.raises(RemoteAPIError) as err:
        sandbox.get_process(999999)
    assert (err.value.status_code, err.value.code) == (404, "NOT_FOUND")
    # The sandbox exists: a missing process is not a missing sandbox.
    assert not isinstance(err.value, SandboxNotFoundError)
    assert isinstance(err.value, SandboxError)

    proc = sandbox.start_process("sleep", ["1000"])
    with pytest.raises(RemoteAPIError) as err:
        sandbox.send_signal(proc.pid, 999)
    assert (err.value.status_code, err.value.code) == (400, "INVALID_ARGUMENT")
    with pytest.raises(ValueError):
        sandbox.send_signal(proc.pid, 0)  # refused before anything is sent
    sandbox.kill_process(proc.pid)

    with pytest.raises(RemoteAPIError) as err:
        sandbox.run("no-such-command")
    assert (err.value.status_code, err.value.code) == (400, "COMMAND_NOT_FOUND")
    with pytest.raises(RemoteAPIError) as err:
        sandbox.start_process("no-such-command")
    assert (err.value.status_code, err.value.code) == (400, "COMMAND_NOT_FOUND")
    with pytest.raises(RemoteAPIError) as err:
        list(sandbox.follow_output(999999))
    assert (err.value.status_code, err.value.code) == (404, "NOT_FOUND")
