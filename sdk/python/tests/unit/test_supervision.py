"""Managed processes (start with name/restart/health_check, restart, addressing by name) and
persisted logs (get_logs, iter_logs, list_log_processes), sync and async, against the fake."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import httpx
import pytest

from alcove.sandbox import (
    AsyncSandboxClient,
    ManagedProcessHealthStatus,
    ManagedProcessInfo,
    ManagedProcessStatus,
    ProcessHealthCheck,
    RemoteAPIError,
    RestartPolicy,
    RestartPolicyConfig,
    SandboxClient,
    SandboxError,
    SandboxLogLevel,
    SandboxLogsResponse,
    SandboxNotFoundError,
)
from fakes import FakeServer, info_json, jsonr

SBX = "/v1/namespaces/default/sandboxes/sbx-1"
MANAGED = {
    "id": "web",
    "name": "web",
    "status": "backing_off",
    "restart_count": 2,
    "restart": {"policy": "on_failure", "max_restarts": 2, "initial_backoff_ms": 50, "max_backoff_ms": 200},
    "health_status": "disabled",
    "consecutive_health_failures": 0,
    "last_exit": {"exit_code": 3, "signal": None, "oom_killed": False, "ended_at": 1795711162444},
    "last_error": None,
    "next_restart_at": 1795711163444,
}
PROC = {
    "pid": 1002,
    "status": "running",
    "exit_code": None,
    "signal": None,
    "stdin_writable": False,
    "command": "sh",
    "args": ["-c", "exit 3"],
    "started_at": 1795711005468,
    "ended_at": None,
    "oom_killed": False,
    "managed": MANAGED,
}
RECORD = {
    "timestamp": 1795711162444,
    "uuid": "0b5e",
    "namespace": "default",
    "application": "",
    "sandboxId": "sbx-1",
    "resourceAttributes": [["host", "h1"]],
    "body": "process exited with code 3",
    "logAttributes": json.dumps({"process_id": "p1", "pid": 1002, "managed_name": "web", "event": "process_exited"}),
    "allocations": [],
    "functionRuns": [],
    "level": 4,
    "retention": 7,
}


def connect(server: FakeServer, client: SandboxClient):
    server.on("GET", SBX, jsonr(200, info_json()))
    sandbox = client.connect("sbx-1")
    server.requests.clear()
    return sandbox


def query(request: httpx.Request) -> list[tuple[str, str]]:
    return list(request.url.params.multi_items())


# -- managed processes --------------------------------------------------------------------------


def test_start_managed_process_sends_name_restart_and_health_check(server: FakeServer, client: SandboxClient) -> None:
    sandbox = connect(server, client)
    server.on("POST", "/api/v1/processes", jsonr(201, PROC))
    proc = sandbox.start_process(
        "sh",
        ["-c", "exit 3"],
        stdin_mode="closed",
        name="web",
        restart=RestartPolicyConfig(policy=RestartPolicy.ON_FAILURE, max_restarts=2, initial_backoff_ms=50),
        health_check={"type": "tcp", "port": 8000},
    )
    assert json.loads(server.requests[-1].content) == {
        "command": "sh",
        "args": ["-c", "exit 3"],
        "stdin_mode": "closed",
        "name": "web",
        "restart": {"policy": "on_failure", "max_restarts": 2, "initial_backoff_ms": 50, "max_backoff_ms": 30000},
        "health_check": {
            "type": "tcp",
            "port": 8000,
            "initial_delay_ms": 5000,
            "interval_ms": 1000,
            "timeout_ms": 500,
            "failure_threshold": 3,
        },
    }
    managed = proc.managed
    assert isinstance(managed, ManagedProcessInfo)
    assert managed.status == ManagedProcessStatus.BACKING_OFF == "backing_off"
    assert managed.restart_count == 2
    assert managed.restart.max_restarts == 2 and managed.restart.policy == "on_failure"
    assert managed.health_status == ManagedProcessHealthStatus.DISABLED
    assert managed.last_exit is not None and managed.last_exit.exit_code == 3
    assert managed.last_exit.ended_at == datetime(2026, 11, 26, 16, 39, 22, 444000, tzinfo=timezone.utc)
    assert managed.next_restart_at is not None and managed.health_check is None


def test_plain_process_has_no_managed_and_sends_none_of_it(server: FakeServer, client: SandboxClient) -> None:
    sandbox = connect(server, client)
    server.on("POST", "/api/v1/processes", jsonr(201, {**PROC, "managed": None}))
    assert sandbox.start_process("sleep", ["9"]).managed is None
    assert set(json.loads(server.requests[-1].content)) == {"command", "args", "stdin_mode"}


def test_managed_info_tolerates_new_fields_and_values(server: FakeServer, client: SandboxClient) -> None:
    sandbox = connect(server, client)
    newer = {**MANAGED, "status": "paused", "stop_grace_ms": 10000, "restart": {"policy": "on_oom", "x": 1}}
    server.on("GET", "/api/v1/processes/1002", jsonr(200, {**PROC, "managed": newer}))
    managed = sandbox.get_process(1002).managed
    assert managed.status == "paused" and managed.model_extra == {"stop_grace_ms": 10000}
    assert managed.restart.policy == "on_oom" and managed.restart.initial_backoff_ms == 500
    # A health check comes back typed.
    checked = {**MANAGED, "health_check": {"type": "http", "port": 80, "path": "/up"}, "health_status": "healthy"}
    server.on("GET", "/api/v1/processes/1002", jsonr(200, {**PROC, "managed": checked}))
    managed = sandbox.get_process(1002).managed
    assert isinstance(managed.health_check, ProcessHealthCheck)
    assert (managed.health_check.path, managed.health_check.interval_ms) == ("/up", 1000)
    assert managed.health_status == "healthy"


@pytest.mark.parametrize(
    "kwargs",
    [
        {"name": ""},
        {"name": "123"},
        {"name": "a/b"},
        {"name": "run"},
        {"name": ".."},
        {"name": 7},
        {"restart": {"policy": "sometimes"}},
        {"restart": {"max_restart": 2}},
        {"restart": {"max_restarts": -1}},
        {"restart": "always"},
        {"health_check": {"port": 80}},
        {"health_check": {"type": "udp", "port": 80}},
        {"health_check": {"type": "tcp", "port": 0}},
        {"health_check": {"type": "tcp", "port": 80, "interval": 5}},
    ],
)
def test_start_checks_managed_arguments_before_sending(server: FakeServer, client: SandboxClient, kwargs) -> None:
    sandbox = connect(server, client)
    with pytest.raises(ValueError):
        sandbox.start_process("sleep", ["9"], **kwargs)
    assert server.requests == []


def test_restart_process_by_pid_and_by_name(server: FakeServer, client: SandboxClient) -> None:
    sandbox = connect(server, client)
    restarted = {**PROC, "pid": 1003, "managed": {**MANAGED, "status": "running", "restart_count": 3}}
    server.on("POST", "/api/v1/processes/1002/restart", jsonr(200, restarted))
    server.on("POST", "/api/v1/processes/my web/restart", jsonr(200, restarted))
    info = sandbox.restart_process(1002)
    assert info.pid == 1003 and info.managed.restart_count == 3
    request = server.requests[-1]
    assert request.content == b"" and request.headers["content-length"] == "0"
    assert sandbox.restart_process("my web").pid == 1003
    assert server.requests[-1].url.raw_path == b"/api/v1/processes/my%20web/restart"


def test_every_process_method_takes_a_percent_encoded_name(server: FakeServer, client: SandboxClient) -> None:
    sandbox = connect(server, client)
    name = "w?b#1/../x"
    # The fake routes on the decoded path: a catch-all answers, the raw paths are checked.
    seen: list[bytes] = []

    def record(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.raw_path)
        if request.url.raw_path.endswith(b"/restart") or request.method == "GET":
            if request.url.raw_path.endswith((b"/stdout", b"/stderr", b"/output")):
                return jsonr(200, {"pid": 1002, "lines": [], "line_count": 0})
            return jsonr(200, PROC)
        return (
            httpx.Response(204)
            if request.method != "POST" or b"signal" not in request.url.raw_path
            else jsonr(200, {"success": True})
        )

    client._http._transport = httpx.MockTransport(record)
    with pytest.raises(ValueError):
        sandbox.start_process("x", name=name)  # a '/' is refused in a new name
    sandbox.get_process(name)
    sandbox.kill_process(name)
    sandbox.send_signal(name, 15)
    sandbox.write_stdin(name, b"x")
    sandbox.close_stdin(name)
    sandbox.get_stdout(name)
    sandbox.get_stderr(name)
    sandbox.get_output(name)
    sandbox.restart_process(name)
    encoded = b"/api/v1/processes/w%3Fb%231%2F..%2Fx"
    assert len(seen) == 9
    assert all(path.startswith(encoded) for path in seen), seen


def test_restart_errors_keep_the_mapping(server: FakeServer, client: SandboxClient) -> None:
    sandbox = connect(server, client)
    server.on("POST", "/api/v1/processes/nope/restart", jsonr(404, {"error": "no such process", "code": "NOT_FOUND"}))
    server.on(
        "POST", "/api/v1/processes/1002/restart", jsonr(400, {"error": "not managed", "code": "INVALID_ARGUMENT"})
    )
    with pytest.raises(RemoteAPIError) as err:
        sandbox.restart_process("nope")
    assert (err.value.status_code, err.value.code) == (404, "NOT_FOUND")
    with pytest.raises(RemoteAPIError) as err:
        sandbox.restart_process(1002)
    assert (err.value.status_code, err.value.code) == (400, "INVALID_ARGUMENT")
    server.on("POST", "/api/v1/processes/1002/restart", jsonr(404, {"message": "gone", "code": "SANDBOX_NOT_FOUND"}))
    with pytest.raises(SandboxNotFoundError):
        sandbox.restart_process(1002)
    with pytest.raises(ValueError):
        sandbox.restart_process(-1)


# -- logs ---------------------------------------------------------------------------------------


def test_get_logs_sends_repeated_filters_and_reads_the_page(server: FakeServer, client: SandboxClient) -> None:
    sandbox = connect(server, client)
    server.on("GET", f"{SBX}/logs", jsonr(200, {"logs": [RECORD], "nextToken": "t2"}))
    page = sandbox.get_logs(
        levels=[SandboxLogLevel.WARN, "error", 3, "WARNING"],
        process_ids=["p1", "p 2"],
        next_token="t1",
        tail=5,
        body="exit ed",
    )
    request = server.requests[-1]
    assert query(request) == [
        ("level", "4"),
        ("level", "5"),
        ("level", "3"),
        ("level", "4"),
        ("processId", "p1"),
        ("processId", "p 2"),
        ("nextToken", "t1"),
        ("tail", "5"),
        ("body", "exit ed"),
    ]
    assert isinstance(page, SandboxLogsResponse) and page.next_token == "t2"
    (record,) = page.logs
    assert record.body == "process exited with code 3" and record.sandbox_id == "sbx-1"
    assert record.level == 4 and record.level_name == SandboxLogLevel.WARN
    assert record.attributes == {"process_id": "p1", "pid": 1002, "managed_name": "web", "event": "process_exited"}
    assert record.log_attributes == RECORD["logAttributes"]
    assert record.resource_attributes == [("host", "h1")] and record.retention == 7
    assert record.time == datetime(2026, 11, 26, 16, 39, 22, 444000, tzinfo=timezone.utc)


def test_get_logs_without_filters_and_the_client_form(server: FakeServer, client: SandboxClient) -> None:
    server.on("GET", "/v1/namespaces/default/sandboxes/my box/logs", jsonr(200, {"logs": [], "nextToken": None}))
    page = client.get_logs("my box", head=10)
    assert page.logs == [] and page.next_token is None
    assert server.requests[-1].url.raw_path == b"/v1/namespaces/default/sandboxes/my%20box/logs?head=10"


def test_logs_are_namespaced_with_the_clients_namespace(server: FakeServer, sleeps) -> None:
    with SandboxClient(namespace="team-a", transport=httpx.MockTransport(server)) as client:
        server.on("GET", "/v1/namespaces/team-a/sandboxes/sbx-1/logs", jsonr(200, {"logs": []}))
        server.on("GET", "/v1/namespaces/team-a/sandboxes/sbx-1/processes", jsonr(200, {"processes": []}))
        assert client.get_logs("sbx-1").logs == []
        assert client.list_log_processes("sbx-1").processes == []


def test_log_records_tolerate_missing_and_extra_fields(server: FakeServer, client: SandboxClient) -> None:
    odd = {"timestamp": 5, "body": "x", "logAttributes": "not json", "level": None, "newField": [1]}
    server.on("GET", f"{SBX}/logs", jsonr(200, {"logs": [odd, {**RECORD, "logAttributes": "[1]", "level": 9}]}))
    first, second = client.get_logs("sbx-1").logs
    assert first.attributes == {} and first.level_name is None and first.model_extra == {"newField": [1]}
    assert second.attributes == {} and second.level_name is None
    server.on("GET", f"{SBX}/logs", jsonr(200, {"logs": [{"body": "no timestamp"}]}))
    with pytest.raises(SandboxError, match="decoding sandbox logs"):
        client.get_logs("sbx-1")


@pytest.mark.parametrize(
    "kwargs",
    [
        {"levels": "info"},
        {"levels": ["loud"]},
        {"levels": [7]},
        {"levels": [True]},
        {"process_ids": "p1"},
        {"process_ids": [""]},
        {"head": 0},
        {"tail": "5"},
        {"head": 1, "tail": 1},
        {"next_token": ""},
        {"body": ""},
    ],
)
def test_get_logs_checks_arguments_before_sending(server: FakeServer, client: SandboxClient, kwargs) -> None:
    with pytest.raises(ValueError):
        client.get_logs("sbx-1", **kwargs)
    assert server.requests == []


def test_log_errors_keep_the_mapping(server: FakeServer, client: SandboxClient) -> None:
    server.on("GET", f"{SBX}/logs", jsonr(404, {"message": "no such sandbox", "code": "NOT_FOUND"}))
    server.on("GET", f"{SBX}/processes", jsonr(404, {"message": "no such sandbox", "code": "NOT_FOUND"}))
    with pytest.raises(SandboxNotFoundError):
        client.get_logs("sbx-1")
    with pytest.raises(SandboxNotFoundError):
        client.list_log_processes("sbx-1")
    server.on("GET", f"{SBX}/logs", jsonr(400, {"message": "bad level", "code": "INVALID_ARGUMENT"}))
    with pytest.raises(RemoteAPIError) as err:
        client.get_logs("sbx-1", levels=["info"])
    assert (err.value.status_code, err.value.code) == (400, "INVALID_ARGUMENT")
    server.on("GET", f"{SBX}/logs", jsonr(501, {"message": "later", "code": "NOT_IMPLEMENTED"}))
    with pytest.raises(RemoteAPIError) as err:
        client.get_logs("sbx-1")
    assert err.value.status_code == 501


def test_iter_logs_follows_next_token(server: FakeServer, client: SandboxClient) -> None:
    sandbox = connect(server, client)
    pages = [
        jsonr(200, {"logs": [{**RECORD, "body": "a"}, {**RECORD, "body": "b"}], "nextToken": "t1"}),
        jsonr(200, {"logs": [{**RECORD, "body": "c"}], "nextToken": "t2"}),
        jsonr(200, {"logs": [], "nextToken": "t3"}),
    ]
    server.on("GET", f"{SBX}/logs", pages)
    bodies = [record.body for record in sandbox.iter_logs(levels=["info"], process_ids=["p1"])]
    assert bodies == ["a", "b", "c"]
    tokens = [dict(query(r)).get("nextToken") for r in server.calls("GET", f"{SBX}/logs")]
    assert tokens == [None, "t1", "t2"]
    assert all(("level", "3") in query(r) and ("processId", "p1") in query(r) for r in server.requests)


def test_iter_logs_stops_on_a_repeated_token(server: FakeServer, client: SandboxClient) -> None:
    server.on("GET", f"{SBX}/logs", jsonr(200, {"logs": [RECORD], "nextToken": "same"}))
    assert len(list(client.iter_logs("sbx-1"))) == 2
    assert len(server.requests) == 2


def test_list_log_processes(server: FakeServer, client: SandboxClient) -> None:
    sandbox = connect(server, client)
    entry = {
        "processId": "p1",
        "processPid": "1002",
        "processCommand": "sh -c exit 3",
        "processManagedId": "web",
        "processManagedName": "web",
        "firstSeen": 1795711162000,
        "lastSeen": 1795711162444,
        "logCount": 4,
    }
    server.on("GET", f"{SBX}/processes", jsonr(200, {"processes": [entry, {"processId": "p2", "processPid": 7}]}))
    first, second = sandbox.list_log_processes().processes
    assert (first.process_id, first.process_pid, first.process_managed_name, first.log_count) == (
        "p1",
        "1002",
        "web",
        4,
    )
    assert (first.first_seen, first.last_seen) == (1795711162000, 1795711162444)
    assert (second.process_pid, second.process_managed_name, second.log_count) == ("7", None, 0)


# -- async ----------------------------------------------------------------------------------------


async def test_async_supervision_and_logs(server: FakeServer, aclient: AsyncSandboxClient) -> None:
    server.on("GET", SBX, jsonr(200, info_json()))
    sandbox = await aclient.connect("sbx-1")
    server.on("POST", "/api/v1/processes", jsonr(201, PROC))
    server.on("POST", "/api/v1/processes/web/restart", jsonr(200, {**PROC, "pid": 1003}))
    first_page = jsonr(200, {"logs": [RECORD], "nextToken": "t1"})
    server.on("GET", f"{SBX}/logs", [first_page, jsonr(200, {"logs": [RECORD], "nextToken": "t1"}), jsonr(200, {})])
    server.on("GET", f"{SBX}/processes", jsonr(200, {"processes": [{"processId": "p1"}]}))
    proc = await sandbox.start_process("sh", ["-c", "exit 3"], name="web", restart={"max_restarts": 2})
    assert proc.managed.name == "web"
    assert json.loads(server.requests[-1].content)["restart"]["max_restarts"] == 2
    assert (await sandbox.restart_process("web")).pid == 1003
    page = await sandbox.get_logs(levels=[SandboxLogLevel.ERROR])
    assert page.logs[0].attributes["event"] == "process_exited"
    assert ("level", "5") in query(server.requests[-1])
    records = [record async for record in sandbox.iter_logs()]
    assert [r.uuid for r in records] == ["0b5e"]
    assert (await sandbox.list_log_processes()).processes[0].process_id == "p1"
    assert (await aclient.list_log_processes("sbx-1")).processes[0].log_count == 0
