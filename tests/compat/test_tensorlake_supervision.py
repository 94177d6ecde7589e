"""The official `tensorlake==0.5.161` SDK's supervised processes and persisted logs against a
real Alcove server: start_process(name, restart, health_check), restart_process, kill by name,
get_logs with filters and pages, list_log_processes."""

from __future__ import annotations

import pytest

from framework.host import wait_until

tl = pytest.importorskip("tensorlake.sandbox", reason="tensorlake SDK missing")
models = pytest.importorskip("tensorlake.sandbox.models", reason="tensorlake SDK missing")


@pytest.fixture
def tl_sandbox(server):
    client = tl.SandboxClient.for_localhost(api_url=server.url)
    with client.create_and_connect() as sb:
        yield sb


def test_restart_policy_max_restarts_and_logs(tl_sandbox):
    sb = tl_sandbox
    proc = sb.start_process(
        "sh", ["-c", "echo attempt; echo oops >&2; exit 3"], name="flaky",
        restart=models.RestartPolicyConfig(policy=models.RestartPolicy.ON_FAILURE, max_restarts=2,
                                           initial_backoff_ms=50, max_backoff_ms=100),
    )
    assert proc.managed is not None and proc.managed.name == "flaky"
    wait_until(lambda: sb.get_process("flaky").managed.status == "stopped", "supervisor gave up")
    info = sb.get_process("flaky")
    assert info.managed.restart_count == 2
    assert info.managed.last_exit.exit_code == 3

    def all_logged() -> bool:
        page = sb.get_logs(process_ids=["flaky"])
        return sum(r.body == "attempt" for r in page.logs) == 3

    wait_until(all_logged, "three runs' output in the logs")
    errors = sb.get_logs(levels=[models.SandboxLogLevel.WARN], process_ids=["flaky"])
    texts = [r.body for r in errors.logs]
    assert texts.count("oops") == 3 and "attempt" not in texts
    assert all(r.level == 4 for r in errors.logs)

    first = sb.get_logs(process_ids=["flaky"], head=2)
    assert len(first.logs) == 2 and first.next_token
    rest = sb.get_logs(process_ids=["flaky"], head=1000, next_token=first.next_token)
    whole = sb.get_logs(process_ids=["flaky"])
    assert [r.uuid for r in first.logs + rest.logs] == [r.uuid for r in whole.logs]
    last = sb.get_logs(process_ids=["flaky"], tail=1)
    assert last.logs[0].uuid == whole.logs[-1].uuid

    listed = sb.list_log_processes().processes
    runs = [p for p in listed if p.process_managed_name == "flaky"]
    assert len(runs) == 3 and all(p.process_command == "sh" for p in runs)


def test_restart_and_kill_by_name_with_a_health_check(tl_sandbox):
    sb = tl_sandbox
    proc = sb.start_process(
        "python3", ["-m", "http.server", "8081", "--bind", "127.0.0.1"], name="web",
        restart={"policy": "always", "initial_backoff_ms": 100},
        health_check=models.ProcessHealthCheck(type=models.ProcessHealthCheckType.HTTP, port=8081,
                                               path="/", initial_delay_ms=200, interval_ms=200),
    )
    wait_until(lambda: sb.get_process("web").managed.health_status == "healthy", "healthy")
    again = sb.restart_process("web")
    assert again.pid != proc.pid and again.managed.restart_count == 1
    wait_until(lambda: sb.get_process(proc.pid).status != "running", "the old run stopped")
    sb.kill_process("web")
    wait_until(lambda: sb.get_process("web").status != "running", "stopped")
    assert sb.get_process("web").managed.status == "stopped"
    assert sb.get_process("web").pid == again.pid, "restarted after kill_process"
