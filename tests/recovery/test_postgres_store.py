"""The store in PostgreSQL (`alcove serve --database postgres://…`): a sandbox's record lives
in the database, survives a restart of the server on the same database, and the URL's password
never reaches the server's log. An unreachable database stops the server at start, clearly."""

from __future__ import annotations

import shutil

import pytest

from alcove.sandbox import SandboxClient
from framework.host import wait_for
from framework.postgres import PostgresCluster
from framework.server import AlcoveServer, free_port, retire


@pytest.fixture(scope="module")
def pg():
    with PostgresCluster() as cluster:
        yield cluster


@pytest.fixture
def pg_server(pg):
    pg.psql("postgres", "DROP DATABASE IF EXISTS alcove_e2e")
    srv = AlcoveServer(extra_args=["--database", pg.create_database("alcove_e2e")])
    srv.start()
    yield srv
    retire(srv)


def rows(pg: PostgresCluster, sql: str) -> list[list[str]]:
    out = pg.psql("alcove_e2e", sql)
    return [line.split("|") for line in out.splitlines() if line]


def test_a_sandbox_lives_in_postgres_across_a_restart(pg, pg_server):
    client = SandboxClient(api_url=pg_server.url)
    sandbox = client.create_and_connect(name="pg-kept")
    sandbox.run("sh", ["-c", "echo kept > /root/kept.txt"])
    sid = sandbox.sandbox_id

    # The record is in PostgreSQL, and the data directory holds no SQLite store.
    assert rows(pg, "SELECT id, name, status FROM sandboxes") == [[sid, "pg-kept", "running"]]
    assert not (pg_server.data_dir / "alcove.db").exists()

    # A restart on the same database: the sandbox is still there, running, with its files.
    pg_server.stop()
    pg_server.start()
    info = client.get("pg-kept")
    assert (info.sandbox_id, info.status) == (sid, "running")
    again = client.connect("pg-kept")
    assert again.run("cat", ["/root/kept.txt"]).stdout == "kept"

    # A delete ends it in the database: archived, and the name is free again.
    client.delete(sid)
    [[status, archived]] = rows(
        pg, f"SELECT status, archived_at IS NOT NULL FROM sandboxes WHERE id = '{sid}'"
    )
    assert (status, archived) == ("terminated", "t")
    assert pg_server.live_sandboxes() == []
    client.close()

    # Only the redacted address is logged, never the password.
    log = pg_server.log_path.read_text(errors="replace")
    assert pg.password not in log
    assert f"postgres 127.0.0.1:{pg.port}/alcove_e2e" in log


def test_an_unreachable_database_stops_the_server_at_start_naming_the_host(pg):
    port = free_port()  # nothing listens there
    secret = "pw-never-shown-" + pg.password
    srv = AlcoveServer(
        extra_args=["--database", f"postgres://alcove:{secret}@127.0.0.1:{port}/alcove"]
    )
    try:
        with pytest.raises(RuntimeError, match="exited early"):
            srv.start(timeout=60)
        log = srv.log_path.read_text(errors="replace")
        assert f"cannot connect to PostgreSQL at 127.0.0.1:{port}/alcove" in log, log
        assert "refused" in log, log
        assert secret not in log
        assert "panicked" not in log, log
    finally:
        srv.stop()
        shutil.rmtree(srv.data_dir, ignore_errors=True)


def test_a_wrong_password_is_refused_at_start_without_being_logged(pg):
    pg.psql("postgres", "CREATE DATABASE alcove_e2e_refused")
    wrong = "wrong-" + pg.password
    srv = AlcoveServer(extra_args=["--database", pg.url("alcove_e2e_refused", password=wrong)])
    try:
        with pytest.raises(RuntimeError, match="exited early"):
            srv.start(timeout=60)
        log = srv.log_path.read_text(errors="replace")
        assert "password authentication failed" in log, log
        assert f"127.0.0.1:{pg.port}/alcove_e2e_refused" in log, log
        assert wrong not in log
    finally:
        srv.stop()
        shutil.rmtree(srv.data_dir, ignore_errors=True)


def test_a_database_outage_answers_503_with_a_reason_and_heals(pg, pg_server):
    client = SandboxClient(api_url=pg_server.url)
    sandbox = client.create_and_connect(name="pg-outage")
    try:
        pg.pause()
        try:
            resp = pg_server.api("GET", "/v1/namespaces/default/sandboxes")
            assert resp.status_code == 503, resp.text
            body = resp.json()
            assert body["code"] == "STORE_UNAVAILABLE", body
            assert "database cannot be reached" in body["message"], body
            assert resp.headers.get("retry-after") == "2"
            assert pg.password not in resp.text
        finally:
            pg.resume()
        # Back: the pool reconnects, and the sandbox, which ran on, still answers.
        assert wait_for(
            lambda: pg_server.api("GET", "/v1/namespaces/default/sandboxes").status_code == 200, 60
        )
        assert sandbox.run("echo", ["still here"]).stdout.strip() == "still here"
    finally:
        client.delete(sandbox.sandbox_id)
        client.close()
    assert pg.password not in pg_server.log_path.read_text(errors="replace")
