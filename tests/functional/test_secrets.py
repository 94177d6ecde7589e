"""Secrets: set with the CLI, injected as environment variables, stored sealed,
never logged or echoed."""

from __future__ import annotations

import stat
import subprocess
from pathlib import Path

import pytest

from alcove.sandbox import RemoteAPIError, SandboxError
from framework.server import ALCOVE_BIN

VALUE = "sk-alcove-test-0f1e2d3c4b5a"


def cli(server, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(ALCOVE_BIN), "secrets", "--api-url", server.url, *args],
        input=stdin, capture_output=True, text=True, timeout=30,
    )


def test_cli_sets_and_sandboxes_see_the_value(server, client):
    out = cli(server, "set", "OPENAI_API_KEY", stdin=VALUE + "\n")
    assert out.returncode == 0, out.stderr
    listed = cli(server, "list")
    assert listed.stdout.split() == ["OPENAI_API_KEY"]
    assert VALUE not in listed.stdout
    try:
        with client.create_and_connect(secret_names=["OPENAI_API_KEY"]) as sandbox:
            assert sandbox.run("printenv", ["OPENAI_API_KEY"]).stdout == VALUE
            assert client.get(sandbox.sandbox_id).secret_names == ["OPENAI_API_KEY"]
            bundle = Path(server.data_dir) / "sandboxes" / sandbox.sandbox_id / "bundle"
            assert stat.S_IMODE(bundle.stat().st_mode) == 0o700
        # Sealed at rest, never logged.
        assert VALUE.encode() not in (Path(server.data_dir) / "alcove.db").read_bytes()
        wal = Path(server.data_dir) / "alcove.db-wal"
        if wal.exists():
            assert VALUE.encode() not in wal.read_bytes()
        assert VALUE not in server.log_path.read_text(errors="replace")
    finally:
        assert cli(server, "delete", "OPENAI_API_KEY").returncode == 0
    again = cli(server, "delete", "OPENAI_API_KEY")
    assert again.returncode != 0 and "404" in again.stderr


def test_unknown_or_bad_secret_names_are_400(server, client):
    resp = server.api("POST", "/sandboxes", json={"secret_names": ["NOT_SET_ANYWHERE"]})
    assert resp.status_code == 400
    assert "alcove secrets set" in resp.json()["message"]
    with pytest.raises((RemoteAPIError, SandboxError)):
        client.create(secret_names=["NOT_SET_ANYWHERE"])
    bad = server.api("PUT", "/v1/namespaces/default/secrets/1-bad", json={"value": "x"})
    assert bad.status_code == 400
    # The agent's own configuration variables cannot be set as secrets (a secret reaches the
    # agent's environment; this one would move the agent's listening address).
    reserved = server.api("PUT", "/secrets/ALCOVE_AGENT_LISTEN", json={"value": "127.0.0.1:9999"})
    assert reserved.status_code == 400 and "reserved" in reserved.json()["message"], reserved.text
    refused = server.api("POST", "/sandboxes", json={"secret_names": ["ALCOVE_AGENT_LISTEN"]})
    assert refused.status_code == 400 and "reserved" in refused.json()["message"], refused.text
    assert server.api("PUT", "/secrets/EMPTY_BODY", content=b"{}", headers={"content-type": "application/json"}).status_code == 400


def test_secrets_are_per_namespace_and_updates_apply_to_new_sandboxes(server, client):
    assert server.api("PUT", "/v1/namespaces/default/secrets/TOKEN", json={"value": "one"}).status_code == 200
    assert server.api("PUT", "/v1/namespaces/other/secrets/TOKEN", json={"value": "two"}).status_code == 200
    try:
        with client.create_and_connect(secret_names=["TOKEN"]) as first:
            assert first.run("printenv", ["TOKEN"]).stdout == "one"
            server.api("PUT", "/secrets/TOKEN", json={"value": "three"})
            with client.create_and_connect(secret_names=["TOKEN"]) as second:
                assert second.run("printenv", ["TOKEN"]).stdout == "three"
            # A running sandbox keeps the value it started with.
            assert first.run("printenv", ["TOKEN"]).stdout == "one"
        names = server.api("GET", "/v1/namespaces/other/secrets").json()["secrets"]
        assert [s["name"] for s in names] == ["TOKEN"]
        assert "value" not in names[0]
    finally:
        server.api("DELETE", "/secrets/TOKEN")
        server.api("DELETE", "/v1/namespaces/other/secrets/TOKEN")

