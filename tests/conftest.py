"""Fixtures of the end-to-end suite: a real server per module, a check after every test
that the test left no sandbox and nothing on the host behind, and one at the end of the
session that no server of the suite left a process or a host resource behind (then the data
directories tests left on disk are removed; they are kept when something was left)."""

from __future__ import annotations

import shutil

import pytest

from framework.host import firewall_table_exists, owned_resources, settled_resources
from framework.server import AlcoveServer, leftovers, remove_temporary_data_dirs


@pytest.fixture(scope="module")
def server():
    srv = AlcoveServer()
    srv.start()
    yield srv
    leaked = srv.live_sandboxes()
    srv.stop()
    assert not leaked, f"sandboxes still running at module end: {leaked}"
    assert not srv.killed_at_stop, f"the server did not stop within its grace: {srv.log_tail()}"
    res = owned_resources(srv.data_dir)
    assert res.is_empty(), f"host resources left behind: {res}"
    assert not firewall_table_exists(srv.data_dir), "firewall table left after shutdown"
    shutil.rmtree(srv.data_dir, ignore_errors=True)


@pytest.fixture(autouse=True)
def no_leftovers(request):
    """After each test using `server`: no live sandbox, nothing on the host."""
    yield
    if "server" not in request.fixturenames:
        return
    srv: AlcoveServer = request.getfixturevalue("server")
    if srv.proc is None:
        return
    leaked = srv.live_sandboxes()
    for sb in leaked:
        srv.api("DELETE", f"/v1/namespaces/default/sandboxes/{sb['id']}")
    # A pool keeps idle sandboxes started (not listed as sandboxes): delete it too.
    pools = srv.api("GET", "/v1/namespaces/default/sandbox-pools").json().get("pools", [])
    for pool in pools:
        srv.api("DELETE", f"/v1/namespaces/default/sandbox-pools/{pool['id']}")
    assert not leaked, f"test left sandboxes running: {[s['id'] for s in leaked]}"
    assert not pools, f"test left pools: {[p['id'] for p in pools]}"
    res = settled_resources(srv.data_dir)
    assert res.is_empty(), f"host resources left behind: {res}"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """A failed test's report carries its server's last warnings (a failed dump's CRIU errors,
    say): CI keeps only the report."""
    outcome = yield
    report = outcome.get_result()
    srv = getattr(item, "funcargs", {}).get("server")
    if report.when == "call" and report.failed and isinstance(srv, AlcoveServer):
        report.sections.append(("server warnings", srv.log_warnings()))


@pytest.fixture
def client(server):
    from alcove.sandbox import SandboxClient

    with SandboxClient(api_url=server.url) as c:
        yield c


@pytest.fixture
def sandbox(client):
    """A fresh default sandbox, deleted after the test (modules may override it)."""
    with client.create_and_connect() as sb:
        yield sb


def pytest_sessionfinish(session, exitstatus):
    """Fails the session when a server of the suite left anything behind once every test
    and fixture is done: a running process (an orphaned helper holding its port, say), a
    network namespace, a cgroup, a mount, a uid range or a firewall table."""
    left = leftovers()
    if not left:
        # Nothing mounted or running under them: the data directories tests left can go.
        remove_temporary_data_dirs()
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    lines = ["servers of this session left behind:", *(f"  {item}" for item in left)]
    if reporter is not None:
        reporter.write_line("\n".join(lines), red=True)
    session.exitstatus = pytest.ExitCode.TESTS_FAILED
