"""Supervised processes in real sandboxes: an HTTP server whose health endpoint starts failing
is restarted; supervision goes on across suspend/resume and in a memory-snapshot clone; the
stop-everything call ends supervision too; bad settings are 400s naming the field."""

from __future__ import annotations

import json

from framework.host import wait_until

NS = "/v1/namespaces/default"

# Serves /health with 200 until /tmp/sick exists, then 500.
HEALTH_SERVER = """
import http.server, os
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        code = 500 if os.path.exists('/tmp/sick') else 200
        self.send_response(code); self.end_headers(); self.wfile.write(b'ok')
    def log_message(self, *a): pass
print('serving', flush=True)
http.server.HTTPServer(('127.0.0.1', 8080), H).serve_forever()
"""

FLAPPING = {"policy": "always", "initial_backoff_ms": 100, "max_backoff_ms": 200}


def events(server, sandbox_id: str, name: str) -> list[str]:
    resp = server.api("GET", f"{NS}/sandboxes/{sandbox_id}/logs", params={"processId": name})
    assert resp.status_code == 200, resp.text
    return [json.loads(r["logAttributes"]).get("event") for r in resp.json()["logs"]]


def test_a_server_whose_health_check_starts_failing_is_restarted(server, sandbox):
    sandbox.start_process(
        "python3", ["-c", HEALTH_SERVER], name="web", stdin_mode="closed",
        restart={"policy": "on_failure", "max_restarts": 1, "initial_backoff_ms": 100},
        health_check={"type": "http", "port": 8080, "path": "/health", "initial_delay_ms": 300,
                      "interval_ms": 200, "timeout_ms": 500, "failure_threshold": 2},
    )
    wait_until(lambda: sandbox.get_process("web").managed.health_status == "healthy", "healthy")
    first = sandbox.get_process("web")
    assert first.managed.status == "running" and first.managed.restart_count == 0

    sandbox.run("touch", ["/tmp/sick"])
    wait_until(lambda: sandbox.get_process("web").managed.restart_count == 1, "restarted once")
    # Still sick after the restart: with max_restarts 1 the supervisor gives up.
    wait_until(lambda: sandbox.get_process("web").managed.status == "stopped", "given up")
    final = sandbox.get_process("web")
    assert final.pid != first.pid
    assert final.managed.health_status == "unhealthy"
    assert "gave up" in (final.managed.last_error or "")
    seen = events(server, sandbox.sandbox_id, "web")
    assert seen.count("health_check_failed") >= 4, seen
    assert "process_restarted" in seen and "gave_up" in seen


def test_supervision_goes_on_across_suspend_resume_and_in_a_clone(server, client):
    sandbox = client.create_and_connect(name="supervised")
    sid = sandbox.sandbox_id
    clone = None
    try:
        sandbox.start_process("sh", ["-c", "sleep 0.3; exit 1"], name="flap", restart=FLAPPING,
                              stdin_mode="closed")
        wait_until(lambda: sandbox.get_process("flap").managed.restart_count >= 2, "restarting")
        client.suspend("supervised")
        client.resume("supervised")
        sandbox = client.connect("supervised")
        before = sandbox.get_process("flap").managed.restart_count
        wait_until(lambda: sandbox.get_process("flap").managed.restart_count >= before + 2,
                   "still restarting after the resume")

        snap = client.snapshot_and_wait(sid)
        clone = client.create_and_connect(snapshot_id=snap.snapshot_id)
        in_clone = clone.get_process("flap").managed.restart_count
        wait_until(lambda: clone.get_process("flap").managed.restart_count >= in_clone + 2,
                   "restarting in the clone")
        # Independent: stopping it in the clone leaves the source's supervised.
        clone.kill_process("flap")
        wait_until(lambda: clone.get_process("flap").managed.status == "stopped", "stopped in clone")
        now = sandbox.get_process("flap").managed.restart_count
        wait_until(lambda: sandbox.get_process("flap").managed.restart_count > now,
                   "the source keeps restarting")
        client.delete_snapshot(snap.snapshot_id)
    finally:
        if clone is not None:
            client.delete(clone.sandbox_id)
        client.delete(sid)


def test_stopping_everything_ends_supervision_too(server, sandbox):
    sandbox.start_process("sleep", ["600"], name="keeper", restart=FLAPPING, stdin_mode="closed")
    sandbox.stop_all_processes()
    wait_until(lambda: sandbox.get_process("keeper").status != "running", "killed")
    info = sandbox.get_process("keeper")
    assert info.managed.status == "stopped"
    assert sandbox.run("echo", ["usable"]).stdout.strip() == "usable"
    assert sandbox.get_process("keeper").pid == info.pid, "restarted after stop-all"


def test_bad_supervision_settings_name_the_field(server, sandbox):
    base = {"command": "sleep", "args": ["5"]}
    for extra, field in [
        ({"health_check": {"type": "tcp", "port": 0}}, "health_check.port"),
        ({"health_check": {"type": "tcp", "port": 65536}}, "health_check.port"),
        ({"restart": {"initial_backoff_ms": -1}}, "restart.initial_backoff_ms"),
        ({"restart": {"max_restarts": -1}}, "restart.max_restarts"),
        ({"name": "12"}, "name"),
        ({"name": "x" * 256}, "name"),
        ({"name": "two\nlines"}, "name"),
    ]:
        resp = server.api("POST", f"/sandboxes/{sandbox.sandbox_id}/api/v1/processes", json={**base, **extra})
        assert resp.status_code == 400, (extra, resp.text)
        assert field in resp.json()["error"], (extra, resp.json())
    sandbox.start_process("sleep", ["60"], name="dup", stdin_mode="closed")
    resp = server.api("POST", f"/sandboxes/{sandbox.sandbox_id}/api/v1/processes",
                      json={**base, "name": "dup"})
    assert resp.status_code == 409 and resp.json()["code"] == "NAME_TAKEN"
    resp = server.api("POST", f"/sandboxes/{sandbox.sandbox_id}/api/v1/processes/nobody/restart")
    assert resp.status_code == 404
    assert [p.pid for p in sandbox.list_processes() if p.managed and p.managed.name == "dup"]
