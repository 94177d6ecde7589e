"""Sandbox agent: processes (run, start, list, signal, stdin, output, follow)."""

from __future__ import annotations

import os
import signal as signal_module
from collections.abc import Iterable, Mapping
from typing import Any

import httpx
from pydantic import ValidationError

from .._config import ClientConfig
from ..exceptions import SandboxConnectionError, SandboxError
from ..models import (
    OutputResponse,
    ProcessHealthCheck,
    ProcessHealthCheckType,
    ProcessInfo,
    RestartPolicy,
    RestartPolicyConfig,
)
from ._errors import _json, _list, _model
from ._follow_stream import FollowResume
from ._routing import ProxyTarget, _open, _proxied, _proxy_op, _segment
from ._steps import Op, Sleep
from ._validation import _is_int, _is_number, _str_list


def _pid(pid: Any) -> str:
    if _is_int(pid) and pid >= 0:
        return str(pid)
    if isinstance(pid, str) and pid.strip():
        return _segment(pid)
    raise ValueError(f"pid must be a process id or a managed-process name, got {pid!r}")


def _command_fields(command: Any, args: Any, env: Any, working_dir: Any, user: Any) -> dict[str, Any]:
    if not isinstance(command, str) or not command:
        raise ValueError(f"command must be a non-empty string, got {command!r}")
    body: dict[str, Any] = {"command": command}
    if args is not None:
        body["args"] = _str_list(args, "args")
    if env is not None:
        if not isinstance(env, Mapping) or not all(isinstance(k, str) and isinstance(v, str) for k, v in env.items()):
            raise ValueError(f"env must map strings to strings, got {env!r}")
        body["env"] = dict(env)
    if working_dir is not None:
        body["working_dir"] = os.fspath(working_dir)
    if user is not None:
        body["user"] = user
    return body


def run_body(
    command: str,
    args: Iterable[str] | None,
    env: Mapping[str, str] | None,
    working_dir: str | None,
    timeout_secs: float | None,
    user: Any,
) -> dict[str, Any]:
    """Body of ``POST /api/v1/processes/run``; the time limit travels as ``timeout`` (seconds)."""
    body = _command_fields(command, args, env, working_dir, user)
    if timeout_secs is not None:
        if not _is_number(timeout_secs) or timeout_secs <= 0:
            raise ValueError(f"timeout_secs must be a positive number, got {timeout_secs!r}")
        body["timeout"] = timeout_secs
    # Lines in batches (one event per read): much less to decode. Servers that do not know the
    # field ignore it and send one event per line, which is read as well.
    body["batch_output"] = True
    return body


def op_open_run(cfg: ClientConfig, target: ProxyTarget, body: dict[str, Any]) -> Op[httpx.Response]:
    """Open the SSE stream of a run; returns the open 2xx response."""
    req = _proxied(
        cfg,
        target,
        "POST",
        "/api/v1/processes/run",
        json=body,
        headers={"Accept": "text/event-stream"},
        stream=True,
        events=True,
    )
    return (yield from _open(req, target))


def _managed_name(name: Any) -> str:
    """A managed-process name, checked as the agent does: not empty, not all digits (a pid),
    without ``/``, not ``run``, ``.`` or ``..``."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"name must be a non-empty string, got {name!r}")
    if name.isascii() and name.isdigit():
        raise ValueError(f"name must not be all digits (it would read as a pid), got {name!r}")
    if "/" in name or name in ("run", ".", ".."):
        raise ValueError(f"name must not contain '/' nor be 'run', '.' or '..', got {name!r}")
    return name


def _config_body(value: Any, model: type[RestartPolicyConfig | ProcessHealthCheck], what: str) -> dict[str, Any]:
    """The JSON of a restart or health-check config given as its model or a mapping (unknown keys
    and known ones of the wrong type are refused here; the server checks the rest)."""
    if isinstance(value, model):
        data = value.model_dump(mode="json", exclude_none=True)
        extra = set(value.model_extra or {})
    elif isinstance(value, Mapping):
        extra = {key for key in value if key not in model.model_fields}
        if not extra:
            try:
                data = model.model_validate(dict(value)).model_dump(mode="json", exclude_none=True)
            except ValidationError as exc:
                raise ValueError(f"invalid {what}: {exc}") from exc
    else:
        raise ValueError(f"{what} must be a {model.__name__} or a dict, got {value!r}")
    if extra:
        raise ValueError(f"{what} has unknown fields {sorted(extra)}; known: {sorted(model.model_fields)}")
    for key, item in data.items():
        if key not in ("policy", "type", "path") and item is not None:
            if not _is_int(item) or item < 0:
                raise ValueError(f"{what}.{key} must be a non-negative integer, got {item!r}")
    return data


def restart_body(restart: Any) -> dict[str, Any]:
    """The ``restart`` field of a start body."""
    data = _config_body(restart, RestartPolicyConfig, "restart")
    allowed = [policy.value for policy in RestartPolicy]
    if data.get("policy") not in allowed:
        raise ValueError(f"restart.policy must be one of {', '.join(allowed)}, got {data.get('policy')!r}")
    return data


def health_check_body(health_check: Any) -> dict[str, Any]:
    """The ``health_check`` field of a start body."""
    data = _config_body(health_check, ProcessHealthCheck, "health_check")
    allowed = [kind.value for kind in ProcessHealthCheckType]
    if data.get("type") not in allowed:
        raise ValueError(f"health_check.type must be one of {', '.join(allowed)}, got {data.get('type')!r}")
    if not 1 <= data["port"] <= 65535:
        raise ValueError(f"health_check.port must be between 1 and 65535, got {data['port']!r}")
    return data


def start_body(
    command: str,
    args: Iterable[str] | None,
    env: Mapping[str, str] | None,
    working_dir: str | None,
    stdin_mode: str | None,
    stdout_mode: str | None,
    stderr_mode: str | None,
    user: Any,
    name: str | None = None,
    restart: Any = None,
    health_check: Any = None,
) -> dict[str, Any]:
    """Body of ``POST /api/v1/processes``; ``name``, ``restart`` or ``health_check`` make the
    process a managed one (the defaults of a config left out are the server's)."""
    body = _command_fields(command, args, env, working_dir, user)
    for key, value, allowed in (
        ("stdin_mode", stdin_mode, ("closed", "pipe")),
        ("stdout_mode", stdout_mode, ("capture", "discard")),
        ("stderr_mode", stderr_mode, ("capture", "discard")),
    ):
        if value is not None:
            if str(value) not in allowed:
                raise ValueError(f"{key} must be one of {', '.join(allowed)}, got {value!r}")
            body[key] = str(value)
    if name is not None:
        body["name"] = _managed_name(name)
    if restart is not None:
        body["restart"] = restart_body(restart)
    if health_check is not None:
        body["health_check"] = health_check_body(health_check)
    return body


def op_start_process(cfg: ClientConfig, target: ProxyTarget, body: dict[str, Any]) -> Op[ProcessInfo]:
    resp = yield from _proxy_op(cfg, target, "POST", "/api/v1/processes", json=body, replayable=True)
    return _model(ProcessInfo, _json(resp, "process"), "process")


def op_restart_process(cfg: ClientConfig, target: ProxyTarget, process: int | str) -> Op[ProcessInfo]:
    """``POST /api/v1/processes/{p}/restart``: restart a managed process (by pid or name)."""
    resp = yield from _proxy_op(cfg, target, "POST", f"/api/v1/processes/{_pid(process)}/restart", content=b"")
    return _model(ProcessInfo, _json(resp, "process"), "process")


def op_list_processes(cfg: ClientConfig, target: ProxyTarget) -> Op[list[ProcessInfo]]:
    resp = yield from _proxy_op(cfg, target, "GET", "/api/v1/processes")
    return _list(_json(resp, "process list"), "processes", ProcessInfo, "process list")


def op_get_process(cfg: ClientConfig, target: ProxyTarget, pid: int | str) -> Op[ProcessInfo]:
    resp = yield from _proxy_op(cfg, target, "GET", f"/api/v1/processes/{_pid(pid)}")
    return _model(ProcessInfo, _json(resp, "process"), "process")


def op_kill_process(cfg: ClientConfig, target: ProxyTarget, pid: int | str) -> Op[None]:
    yield from _proxy_op(cfg, target, "DELETE", f"/api/v1/processes/{_pid(pid)}")


def op_stop_all_processes(cfg: ClientConfig, target: ProxyTarget) -> Op[int]:
    """``DELETE /api/v1/processes``: kill every process but the agent and the image's services."""
    resp = yield from _proxy_op(cfg, target, "DELETE", "/api/v1/processes")
    data = _json(resp, "stop-all answer")
    killed = data.get("killed") if isinstance(data, dict) else None
    if not _is_int(killed):
        raise SandboxError(f"the agent answered stop-all without a count: {data!r}")
    return int(killed)


# Signal numbers as the sandbox (Linux, x86-64) reads them. A `signal.Signals` member carries
# the number of the machine the client runs on (SIGUSR1 is 30 on macOS, where Linux reads 30 as
# SIGPWR), so members are sent by name through this table; a plain int is sent as it is.
LINUX_SIGNALS = {
    "SIGHUP": 1, "SIGINT": 2, "SIGQUIT": 3, "SIGILL": 4, "SIGTRAP": 5, "SIGABRT": 6, "SIGIOT": 6,
    "SIGBUS": 7, "SIGFPE": 8, "SIGKILL": 9, "SIGUSR1": 10, "SIGSEGV": 11, "SIGUSR2": 12,
    "SIGPIPE": 13, "SIGALRM": 14, "SIGTERM": 15, "SIGSTKFLT": 16, "SIGCHLD": 17, "SIGCLD": 17,
    "SIGCONT": 18, "SIGSTOP": 19, "SIGTSTP": 20, "SIGTTIN": 21, "SIGTTOU": 22, "SIGURG": 23,
    "SIGXCPU": 24, "SIGXFSZ": 25, "SIGVTALRM": 26, "SIGPROF": 27, "SIGWINCH": 28, "SIGIO": 29,
    "SIGPOLL": 29, "SIGPWR": 30, "SIGSYS": 31, "SIGRTMIN": 34, "SIGRTMAX": 64,
}


def linux_signal(signal: int | signal_module.Signals) -> int:
    """The number the sandbox reads for ``signal``: a ``signal.Signals`` member by its name, an int
    as it is."""
    if isinstance(signal, bool) or not isinstance(signal, (int, signal_module.Signals)) or int(signal) <= 0:
        raise ValueError(f"signal must be a positive int or signal.Signals, got {signal!r}")
    if isinstance(signal, signal_module.Signals):
        if signal.name not in LINUX_SIGNALS:
            raise ValueError(f"{signal.name} has no Linux equivalent; send its Linux number instead")
        return LINUX_SIGNALS[signal.name]
    return int(signal)


def op_send_signal(cfg: ClientConfig, target: ProxyTarget, pid: int | str, signal: int) -> Op[None]:
    number = linux_signal(signal)
    yield from _proxy_op(cfg, target, "POST", f"/api/v1/processes/{_pid(pid)}/signal", json={"signal": number})


def op_write_stdin(cfg: ClientConfig, target: ProxyTarget, pid: int | str, data: bytes) -> Op[None]:
    if isinstance(data, str):
        raise TypeError("write_stdin takes bytes; encode text first (e.g. text.encode())")
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"write_stdin takes bytes, got {type(data).__name__}")
    yield from _proxy_op(cfg, target, "POST", f"/api/v1/processes/{_pid(pid)}/stdin", content=bytes(data))


def op_close_stdin(cfg: ClientConfig, target: ProxyTarget, pid: int | str) -> Op[None]:
    yield from _proxy_op(cfg, target, "POST", f"/api/v1/processes/{_pid(pid)}/stdin/close", content=b"")


def op_get_output(cfg: ClientConfig, target: ProxyTarget, pid: int | str, stream: str) -> Op[OutputResponse]:
    resp = yield from _proxy_op(cfg, target, "GET", f"/api/v1/processes/{_pid(pid)}/{stream}")
    return _model(OutputResponse, _json(resp, f"process {stream}"), f"process {stream}")


def op_open_follow(
    cfg: ClientConfig, target: ProxyTarget, pid: int | str, stream: str, last_event_id: str | None = None
) -> Op[httpx.Response]:
    headers = {"Accept": "text/event-stream"}
    if last_event_id is not None:
        headers["Last-Event-ID"] = last_event_id
    req = _proxied(
        cfg,
        target,
        "GET",
        f"/api/v1/processes/{_pid(pid)}/{stream}/follow",
        # Alcove's own: the lines of one read as one output_batch event (servers that do not know
        # it send output events; the decoder reads both).
        params={"batch": "true"},
        headers=headers,
        stream=True,
        events=True,
    )
    return (yield from _open(req, target))


def op_reopen_follow(
    cfg: ClientConfig, target: ProxyTarget, pid: int | str, stream: str, follow: FollowResume
) -> Op[httpx.Response]:
    """Open a follow again after its connection broke or was cut (see :class:`FollowResume`): after
    the pause it asks, while opening fails to connect and the budget lasts. The open's own
    replays (a sandbox not ready while it resumes) come first; any answer that is not a stream
    (the process unknown, the sandbox gone) is raised."""
    while True:
        delay = follow.pause()
        if delay:
            yield Sleep(delay)
        try:
            return (yield from op_open_follow(cfg, target, pid, stream, follow.cursor))
        except SandboxConnectionError:
            if not follow.broke():
                raise


FOLLOW_STREAMS = {"output": None, "stdout": "stdout", "stderr": "stderr"}
"""Follow endpoints and the ``stream`` assumed when an event omits it."""
