"""Persisted sandbox logs over the raw HTTP API: output and events with levels, filters,
pages, bad queries, suspend/resume, after the sandbox ends; and a sandbox whose agent dies
is marked failed with a reason its logs explain."""

from __future__ import annotations

import json
import os
import signal

from framework.host import agent_pid, wait_until

NS = "/v1/namespaces/default"


def logs(server, sandbox_id: str, **params) -> dict:
    resp = server.api("GET", f"{NS}/sandboxes/{sandbox_id}/logs", params=params)
    assert resp.status_code == 200, resp.text
    return resp.json()


def bodies(page: dict) -> list[str]:
    return [r["body"] for r in page["logs"]]


def attrs(record: dict) -> dict:
    return json.loads(record["logAttributes"])


def wait_for_body(server, sandbox_id: str, text: str, **params) -> dict:
    found: dict = {}

    def present() -> bool:
        page = logs(server, sandbox_id, **params)
        found.update(page=page)
        return text in bodies(page)

    wait_until(present, f"{text!r} in the logs of {sandbox_id}")
    return found["page"]


def test_output_and_events_are_logged_with_levels_and_filters(server, sandbox):
    result = sandbox.run("sh", ["-c", "echo to-stdout; echo to-stderr >&2; exit 2"])
    assert result.exit_code == 2
    sid = sandbox.sandbox_id

    def exited_logged() -> bool:
        return any(attrs(r).get("event") == "process_exited" and attrs(r).get("exit_code") == 2
                   for r in logs(server, sid)["logs"])

    wait_until(exited_logged, "the exit event in the logs")
    page = logs(server, sid)
    by_body = {r["body"]: r for r in page["logs"]}
    out, err = by_body["to-stdout"], by_body["to-stderr"]
    assert (out["level"], attrs(out)["stream"]) == (3, "stdout")
    assert (err["level"], attrs(err)["stream"]) == (4, "stderr")
    pid = attrs(out)["pid"]
    assert attrs(err)["pid"] == pid and attrs(out)["process_id"] == str(pid)
    started = [r for r in page["logs"] if attrs(r).get("event") == "process_started" and attrs(r).get("pid") == pid]
    assert started and attrs(started[0])["command"] == "sh"
    for record in page["logs"]:
        assert record["sandboxId"] == sid and record["namespace"] == "default"
        assert ["sandbox_id", sid] in record["resourceAttributes"]
    assert len({r["uuid"] for r in page["logs"]}) == len(page["logs"])

    # Level filter (by number or name): no stdout at warn.
    warn = logs(server, sid, level=["4"])
    assert "to-stderr" in bodies(warn) and "to-stdout" not in bodies(warn)
    assert bodies(logs(server, sid, level=["warn"])) == bodies(warn)
    assert {r["level"] for r in logs(server, sid, level=["3", "4"])["logs"]} <= {3, 4}

    # Process filter: another process's lines are left out.
    sandbox.run("echo", ["other-process"])
    wait_for_body(server, sid, "other-process")
    only = logs(server, sid, processId=str(pid))
    assert "to-stdout" in bodies(only) and "other-process" not in bodies(only)
    assert all(attrs(r)["pid"] == pid for r in only["logs"])

    # Text filter, case-insensitive.
    found = bodies(logs(server, sid, body="TO-STDOUT"))
    assert "to-stdout" in found and "to-stderr" not in found
    assert all("to-stdout" in b.lower() for b in found)

    listed = server.api("GET", f"{NS}/sandboxes/{sid}/processes").json()["processes"]
    entry = next(p for p in listed if p["processPid"] == str(pid))
    assert entry["processCommand"] == "sh"
    assert entry["logCount"] >= 4  # started, two lines, exited
    assert entry["firstSeen"] <= entry["lastSeen"]


def test_pages_go_forward_with_head_and_backward_with_tail(server, sandbox):
    sandbox.run("seq", ["1", "25"])
    sid = sandbox.sandbox_id
    wait_for_body(server, sid, "25")
    numbers = [str(n) for n in range(1, 26)]
    only_lines = {"level": ["3"], "body": ""}

    seen: list[str] = []
    token = None
    pages = 0
    while True:
        params = dict(only_lines, head="10")
        if token:
            params["nextToken"] = token
        page = logs(server, sid, **params)
        seen += [b for b in bodies(page) if b.isdigit()]
        pages += 1
        token = page["nextToken"]
        if not token:
            break
        assert pages < 10, "pagination does not end"
    assert seen == numbers

    last = logs(server, sid, tail="3", level=["3"])
    assert len(last["logs"]) == 3 and last["nextToken"]
    back = logs(server, sid, tail="3", level=["3"], nextToken=last["nextToken"])
    all_info = bodies(logs(server, sid, level=["3"]))
    assert bodies(back) + bodies(last) == all_info[-6:]


def test_bad_log_queries_are_400s_that_name_the_parameter(server, sandbox):
    sid = sandbox.sandbox_id
    for params, field in [
        ({"head": "5", "tail": "5"}, "head"),
        ({"head": "0"}, "head"),
        ({"tail": "-1"}, "tail"),
        ({"head": "10001"}, "head"),
        ({"level": "9"}, "level"),
        ({"level": "loud"}, "level"),
        ({"nextToken": "not-a-token"}, "nextToken"),
        ({"nextToken": "f12", "tail": "3"}, "nextToken"),
    ]:
        resp = server.api("GET", f"{NS}/sandboxes/{sid}/logs", params=params)
        assert resp.status_code == 400, (params, resp.text)
        body = resp.json()
        assert body["code"] == "INVALID_ARGUMENT" and field in body["message"], (params, body)
    for path in ["logs", "processes"]:
        resp = server.api("GET", f"{NS}/sandboxes/00000000-0000-4000-8000-000000000000/{path}")
        assert resp.status_code == 404, resp.text


def test_logs_survive_suspend_resume_and_outlive_the_sandbox(server, client):
    sandbox = client.create_and_connect(name="logged")
    sid = sandbox.sandbox_id
    try:
        sandbox.run("echo", ["before-suspend"])
        wait_for_body(server, sid, "before-suspend")
        client.suspend("logged")
        client.resume("logged")
        sandbox = client.connect("logged")
        sandbox.run("echo", ["after-resume"])
        page = wait_for_body(server, sid, "after-resume")
        texts = bodies(page)
        assert texts.index("before-suspend") < texts.index("after-resume")
        assert texts.count("before-suspend") == 1, "a record was stored twice"
        server_events = [r["body"] for r in page["logs"] if attrs(r)["source"] == "server"]
        assert any(b.startswith("sandbox suspended") for b in server_events), server_events
        assert "sandbox resumed" in server_events
    finally:
        client.delete(sid)
    # Ended and archived: still readable, with how it ended.
    page = wait_for_body(server, sid, "sandbox ended (deleted)")
    assert "before-suspend" in bodies(page) and "after-resume" in bodies(page)


def test_a_sandbox_whose_agent_dies_is_failed_with_a_reason_and_freed(server, client):
    sandbox = client.create_and_connect()
    sid = sandbox.sandbox_id
    sandbox.run("echo", ["last-words"])
    wait_for_body(server, sid, "last-words")
    # The agent is the sandbox's PID 1: only the host can kill it.
    os.kill(agent_pid(server.data_dir, sid), signal.SIGKILL)

    def failed() -> bool:
        return server.api("GET", f"/sandboxes/{sid}").json()["status"] == "failed"

    wait_until(failed, "the crashed sandbox marked failed")
    info = server.api("GET", f"/sandboxes/{sid}").json()
    assert info["termination_reason"] == "crashed"
    assert "agent" in (info.get("error_details") or "")
    archived = server.api("GET", f"/archived-sandboxes/{sid}")
    assert archived.status_code == 200 and archived.json()["status"] == "failed"
    fatal = logs(server, sid, level=["6"])
    assert any("agent (PID 1) exited" in b for b in bodies(fatal)), bodies(fatal)
    assert "last-words" in bodies(logs(server, sid))
    assert sid not in [s["id"] for s in server.live_sandboxes()]
