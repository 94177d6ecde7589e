"""Metrics: `/metrics` parsed by the Prometheus client's OpenMetrics parser, and
`/sandboxes/{id}/metrics` through the SDK, both read from the kernel's own figures and both
moving when a sandbox does work."""

from __future__ import annotations

import time

import pytest
from prometheus_client.openmetrics.parser import text_string_to_metric_families

MIB = 1 << 20


def scrape(server) -> dict[str, list]:
    """Every sample of a scrape, by family name."""
    r = server.api("GET", "/metrics")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/openmetrics-text")
    families = {f.name: f.samples for f in text_string_to_metric_families(r.text)}
    return families


def sample(families, family: str, name: str | None = None, **labels) -> float:
    for s in families[family]:
        if (name is None or s.name == name) and all(s.labels.get(k) == v for k, v in labels.items()):
            return s.value
    raise AssertionError(f"no {name or family} sample with {labels}: {families.get(family)}")


def test_the_scrape_parses_and_covers_requests_operations_sandboxes_and_the_host(server, sandbox):
    families = scrape(server)
    for family in [
        "alcove_http_requests",
        "alcove_operation_duration_seconds",
        "alcove_sandboxes",
        "alcove_host_cpus",
        "alcove_host_pid_max",
        "alcove_host_memory_total_bytes",
        "alcove_host_disk_free_bytes",
        "alcove_sandbox_cpu_seconds",
        "alcove_sandbox_memory_bytes",
        "alcove_sandbox_memory_limit_bytes",
        "alcove_sandbox_pids",
        "alcove_sandbox_pids_limit",
        "alcove_sandbox_disk_used_bytes",
        "alcove_sandbox_disk_limit_bytes",
    ]:
        assert family in families, f"{family} missing from {sorted(families)}"
    assert sample(families, "alcove_sandboxes", status="running") >= 1
    assert sample(families, "alcove_host_pid_max") >= 4_194_304
    # The create of the fixture's sandbox was timed, and answered requests are counted by route.
    created = sample(families, "alcove_operation_duration_seconds", "alcove_operation_duration_seconds_count",
                     operation="create", outcome="ok")
    assert created >= 1
    assert sample(families, "alcove_http_requests", "alcove_http_requests_total",
                  route="/v1/namespaces/{ns}/sandboxes", method="POST", status="200") >= 1
    # Routes are templates, never raw paths with ids in them.
    routes = {s.labels["route"] for s in families["alcove_http_requests"]}
    assert not any(sandbox.sandbox_id in r for r in routes), routes
    # The sandbox's own series carry its id and limits.
    sid = sandbox.sandbox_id
    limit = sample(families, "alcove_sandbox_memory_limit_bytes", sandbox_id=sid, namespace="default")
    assert limit == sandbox.info().resources.memory_mb * MIB


def test_sandbox_metrics_come_from_the_kernel_and_move_with_work(server, client):
    with client.create_and_connect(cpus=1.0, memory_mb=1024, disk_mb=2048) as sb:
        before = sb.metrics()
        assert before.sandbox_id == sb.sandbox_id
        assert before.cpus == 1.0
        assert before.memory_limit_bytes == 1024 * MIB
        assert before.pids_limit and before.pids >= 1
        # The layer is an ext4 file system of disk_mb (less its own metadata).
        assert 0.9 * 2048 * MIB <= before.disk_limit_bytes <= 2048 * MIB
        # Work: 300 MB held in memory, CPU burnt for about a second, 100 MB written to disk.
        sb.start_process("python3", ["-c", "import time; b = bytearray(300 << 20); b[::4096] = b'x' * len(b[::4096]); time.sleep(600)"],
                         stdin_mode="closed")
        burn = "import time; t = time.time()\nwhile time.time() - t < 1.2: pass"
        assert sb.run("python3", ["-c", burn]).exit_code == 0
        assert sb.run("sh", ["-c", "head -c 104857600 /dev/urandom > /root/blob && sync"]).exit_code == 0

        def moved():
            now = sb.metrics()
            return (now.memory_bytes - before.memory_bytes >= 250 * MIB
                    and now.cpu_seconds - before.cpu_seconds >= 0.5
                    and now.disk_used_bytes - before.disk_used_bytes >= 90 * MIB), now

        deadline = time.monotonic() + 20
        ok, now = moved()
        while not ok and time.monotonic() < deadline:
            time.sleep(0.5)
            ok, now = moved()
        assert ok, f"before {before}, after {now}"
        assert now.pids > before.pids
        # The scrape reads the same figures.
        families = scrape(server)
        scraped = sample(families, "alcove_sandbox_memory_bytes", sandbox_id=sb.sandbox_id)
        assert scraped >= before.memory_bytes + 250 * MIB


def test_metrics_of_a_sandbox_that_is_not_running_are_refused_clearly(server, client):
    from alcove.sandbox import RemoteAPIError, SandboxNotFoundError

    name = "metrics-suspended"
    with client.create_and_connect(name=name) as sb:
        client.suspend(name)
        with pytest.raises(RemoteAPIError) as err:
            sb.metrics()
        assert err.value.status_code == 409
        assert "suspended" in str(err.value)
        client.resume(name)
        assert sb.metrics().pids >= 1
    missing = server.api("GET", "/v1/namespaces/default/sandboxes/00000000-0000-4000-8000-000000000000/metrics")
    assert missing.status_code == 404
    with pytest.raises(SandboxNotFoundError):
        client.metrics("00000000-0000-4000-8000-000000000000")


def test_suspend_and_resume_are_timed(server, client):
    families = scrape(server)

    def count(op: str) -> float:
        try:
            return sample(families, "alcove_operation_duration_seconds", "alcove_operation_duration_seconds_count",
                          operation=op, outcome="ok")
        except AssertionError:
            return 0.0

    suspends, resumes = count("suspend"), count("resume")
    with client.create_and_connect(name="metrics-timed"):
        client.suspend("metrics-timed")
        client.resume("metrics-timed")
    families = scrape(server)
    assert count("suspend") == suspends + 1
    assert count("resume") == resumes + 1
