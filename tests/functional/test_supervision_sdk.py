"""Supervised ("managed") processes and persisted sandbox logs through the Python SDK, against a
real server: restart policy and its limit, restart and kill by name, logs by level and process.

Run only these with:

    cd tests && ../.venv/bin/python -m pytest functional/test_supervision_sdk.py -v
"""

from __future__ import annotations

import time

import pytest

from alcove.sandbox import ProcessInfo, RemoteAPIError, SandboxNotFoundError

FAST_RESTARTS = {"policy": "on_failure", "max_restarts": 2, "initial_backoff_ms": 50, "max_backoff_ms": 100}


def eventually(what: str, check, timeout: float = 30.0):
    """Poll ``check`` until it returns something truthy (the condition, not the time, is tested)."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {timeout:g}s")
        time.sleep(0.1)


def start_managed(sandbox, *args, **kwargs) -> ProcessInfo:
    proc = sandbox.start_process(*args, **kwargs)
    assert proc.managed is not None, "a process started with supervision fields must be managed"
    return proc


def test_on_failure_restarts_up_to_max_restarts_then_logs_tell(sandbox):
    proc = start_managed(
        sandbox, "sh", ["-c", "echo attempt; exit 3"], stdin_mode="closed", name="flaky", restart=FAST_RESTARTS
    )
    assert proc.managed.name == "flaky" and proc.managed.restart.max_restarts == 2

    def stopped():
        info = sandbox.get_process("flaky")
        return info if info.managed.status == "stopped" else None

    info = eventually("the supervisor gives up", stopped)
    assert info.managed.restart_count == 2
    assert info.managed.last_exit is not None and info.managed.last_exit.exit_code == 3
    assert info.status == "exited" and info.exit_code == 3
    assert info.managed.next_restart_at is None

    # The persisted logs: the process is listed, its stdout is there once per run, and its exit
    # shows as an event at a level above info.
    def listed():
        found = sandbox.list_log_processes().processes
        return [p for p in found if p.process_managed_name == "flaky"]

    entries = eventually("the log lists the managed process", listed)
    ids = [entry.process_id for entry in entries]
    assert all(entry.log_count > 0 for entry in entries)

    def three_attempts():
        records = list(sandbox.iter_logs(levels=["info"], process_ids=ids))
        lines = [r for r in records if r.body == "attempt"]
        return records if len(lines) >= 3 else None

    info_records = eventually("three runs in the log", three_attempts)
    assert all(r.level == 3 for r in info_records)
    assert all(r.attributes.get("managed_name") == "flaky" for r in info_records if r.body == "attempt")
    assert [r.attributes.get("stream") for r in info_records if r.body == "attempt"] == ["stdout"] * 3

    def exit_events():
        page = sandbox.get_logs(levels=["warn", "error"], process_ids=ids)
        events = [r for r in page.logs if r.attributes.get("event") in ("process_exited", "gave_up")]
        return (page, events) if events else None

    page, events = eventually("exit events in the log", exit_events)
    assert all(r.level in (4, 5) for r in page.logs), [r.level for r in page.logs]
    assert not any(r.body == "attempt" for r in page.logs)
    exits = [r for r in events if r.attributes.get("event") == "process_exited"]
    assert all("3" in r.body or r.attributes.get("exit_code") == 3 for r in exits), [r.body for r in exits]

    # Another process's records are not in this one's.
    other = sandbox.start_process("sh", ["-c", "echo elsewhere"], stdin_mode="closed")
    for _ in sandbox.follow_output(other.pid):
        pass
    assert not any(r.body == "elsewhere" for r in sandbox.iter_logs(process_ids=ids))


def test_a_users_restart_of_a_process_given_up_on_gives_it_its_whole_budget_again(sandbox):
    """The policy's restarts count against max_restarts; a user's restart_process starts the
    count afresh (it found the budget spent and the next failure gave up at once)."""
    proc = start_managed(
        sandbox, "sh", ["-c", "echo attempt; exit 3"], stdin_mode="closed", name="spent", restart=FAST_RESTARTS
    )

    def stopped():
        info = sandbox.get_process("spent")
        return info if info.managed.status == "stopped" else None

    assert eventually("the supervisor gives up", stopped).managed.restart_count == 2
    restarted = sandbox.restart_process("spent")
    assert restarted.pid != proc.pid
    # Two restarts of the policy again, then it gives up: 1 by the user + 2 + the first 2.
    info = eventually("the supervisor gives up again", lambda: (i := stopped()) and i.managed.restart_count >= 5 and i)
    assert info.managed.restart_count == 5, info.managed
    assert info.managed.last_error == "gave up after 2 restarts"


def test_restart_by_name_gives_a_new_pid_and_kill_by_name_ends_supervision(sandbox):
    restart = {"policy": "always", "initial_backoff_ms": 50, "max_backoff_ms": 100}
    first = start_managed(sandbox, "sleep", ["1000"], stdin_mode="closed", name="sleeper", restart=restart)
    restarted = sandbox.restart_process("sleeper")
    assert restarted.pid != first.pid
    assert restarted.managed.name == "sleeper"
    assert sandbox.get_process("sleeper").pid == restarted.pid

    sandbox.kill_process("sleeper")

    def ended():
        try:
            info = sandbox.get_process("sleeper")
        except (SandboxNotFoundError, RemoteAPIError) as exc:
            if isinstance(exc, RemoteAPIError) and exc.status_code != 404:
                raise
            return "gone"
        return info if info.managed.status == "stopped" and info.status != "running" else None

    ended_info = eventually("the supervision stops", ended)
    if ended_info != "gone":
        assert ended_info.pid == restarted.pid  # not started again
    running = [
        p for p in sandbox.list_processes() if p.managed and p.managed.name == "sleeper" and p.status == "running"
    ]
    assert running == []
