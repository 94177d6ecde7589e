"""Control plane: create, get, list, delete, update, suspend/resume, ports, the archive and snapshots."""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from typing import Any

import httpx

from .._config import ClientConfig
from ..exceptions import (
    SandboxError,
    SandboxFailedError,
    SandboxNameConflictError,
    SandboxNotFoundError,
    SandboxNotRoutableError,
    SandboxResizeError,
    SandboxTimeoutError,
)
from ..models import (
    ArchivedSandboxInfo,
    CopySandboxResponse,
    ArchivedSandboxPage,
    SandboxInfo,
    SandboxMetrics,
    SandboxStatus,
    SnapshotInfo,
    SnapshotStatus,
)
from ._errors import _describe, _json, _json_or_none, _list, _model, check, error_from_response
from ._routing import _identifier, _lifecycle, archived_url, sandboxes_url, snapshots_url, target_for
from ._steps import Op, Sleep, _send
from ._validation import _is_int, _is_number, _str_list, validate_ports

DEFAULT_CPUS = 1.0
DEFAULT_MEMORY_MB = 1024

CREATE_POLL_INTERVAL_SECS = 0.5
STATE_POLL_INTERVAL_SECS = 1.0
SNAPSHOT_POLL_INTERVAL_SECS = 1.0
"""A snapshot still in progress once the server's wait is over is polled at growing intervals, up to this."""
SNAPSHOT_FIRST_POLL_SECS = 0.05
MAX_WAIT_MS = 30_000
"""Upper bound of the ``wait_ms`` sent with suspend/resume and snapshots (docs/protocol/control-plane.md)."""
CREATE_GRACE_MS = 5_000
MAX_NODE_SELECTOR_PAIRS = 16
"""Most label pairs one ``node_selector`` may hold (the server's limit)."""

# A tuple, not a set: membership must use equality so raw wire strings match the enum members.
_TERMINAL = (SandboxStatus.TERMINATED, SandboxStatus.FAILED, SandboxStatus.TIMEOUT)


def create_body(
    *,
    name: str | None,
    cpus: float,
    memory_mb: int,
    timeout_secs: int | None,
    image: str | None,
    snapshot_id: str | None,
    secret_names: Iterable[str] | None,
    expose_ports: Iterable[int] | None,
    allow_unauthenticated_access: bool,
    disk_mb: int | None,
    entrypoint: Iterable[str] | None,
    pull_image: bool = False,
    file_systems: Iterable[Any] | None = None,
    node_selector: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The JSON body of ``POST /sandboxes`` (docs/protocol/control-plane.md), after client-side checks.

    ``pull_image`` (sent only when true) asks the server to pull ``image`` from its registry first
    when the store does not have it. ``node_selector`` (an Alcove extension, sent only when it has
    pairs) limits the sandbox to nodes whose labels include every pair; the server checks the keys'
    and values' spelling.
    """
    if not _is_number(cpus) or cpus <= 0:
        raise ValueError(f"cpus must be a positive number, got {cpus!r}")
    if not _is_int(memory_mb) or memory_mb <= 0:
        raise ValueError(f"memory_mb must be a positive integer, got {memory_mb!r}")
    if disk_mb is not None and (not _is_int(disk_mb) or disk_mb <= 0):
        raise ValueError(f"disk_mb must be a positive integer, got {disk_mb!r}")
    if timeout_secs is not None and (not _is_int(timeout_secs) or timeout_secs < 0):
        raise ValueError(f"timeout_secs must be a non-negative integer, got {timeout_secs!r}")
    if name is not None and (not isinstance(name, str) or not name.strip()):
        raise ValueError(f"name must be a non-empty string, got {name!r}")
    if image is not None and (not isinstance(image, str) or not image.strip()):
        raise ValueError(f"image must be a non-empty string, got {image!r}")
    if snapshot_id is not None and (not isinstance(snapshot_id, str) or not snapshot_id.strip()):
        raise ValueError(f"snapshot_id must be a non-empty string, got {snapshot_id!r}")
    secrets = _str_list(secret_names, "secret_names") if secret_names is not None else []
    ports = validate_ports(expose_ports) if expose_ports is not None else []
    command = _str_list(entrypoint, "entrypoint") if entrypoint is not None else []
    selector = _node_selector(node_selector) if node_selector is not None else {}

    body: dict[str, Any] = {}
    if snapshot_id is not None:
        body["snapshot_id"] = snapshot_id
    # A restore inherits each size it is not given from the snapshot, one by one: it gets only
    # those set away from the defaults (a default value cannot be told from an absent one), so
    # that `cpus=2` alone keeps the snapshot's memory.
    restore = snapshot_id is not None
    resources: dict[str, Any] = {}
    if not restore or float(cpus) != DEFAULT_CPUS:
        resources["cpus"] = float(cpus)
    if not restore or memory_mb != DEFAULT_MEMORY_MB:
        resources["memory_mb"] = memory_mb
    if disk_mb is not None:
        resources["disk_mb"] = disk_mb
    if resources:
        body["resources"] = resources
    if name is not None:
        body["name"] = name
    if image is not None:
        body["image"] = image
    if timeout_secs is not None:
        body["timeout_secs"] = timeout_secs
    if secrets:
        body["secret_names"] = secrets
    if ports:
        body["exposed_ports"] = ports
    if allow_unauthenticated_access:
        body["allow_unauthenticated_access"] = True
    if command:
        body["entrypoint"] = command
    if pull_image:
        body["pull_image"] = True
    if file_systems:
        from ._file_systems import mounts_body

        body["file_systems"] = mounts_body(file_systems)
    if selector:
        body["node_selector"] = selector
    return body


def _node_selector(value: Any) -> dict[str, str]:
    """A copy of ``node_selector`` after the client-side checks: a mapping of non-empty string keys
    to string values, at most :data:`MAX_NODE_SELECTOR_PAIRS` of them."""
    if not isinstance(value, Mapping):
        raise ValueError(f"node_selector must map node label keys to string values, got {value!r}")
    selector = dict(value)
    for key, label in selector.items():
        if not isinstance(key, str) or not key:
            raise ValueError(f"node_selector keys must be non-empty strings, got {key!r}")
        if not isinstance(label, str):
            raise ValueError(f"node_selector value of {key!r} must be a string, got {label!r}")
    if len(selector) > MAX_NODE_SELECTOR_PAIRS:
        raise ValueError(f"node_selector holds at most {MAX_NODE_SELECTOR_PAIRS} pairs, got {len(selector)}")
    return selector


def _create_headers(cfg: ClientConfig) -> dict[str, str]:
    timeout_ms = int(cfg.timeout_secs * 1000)
    return {
        "x-tensorlake-request-timeout-ms": str(timeout_ms),
        "x-tensorlake-request-timeout-grace-ms": str(min(CREATE_GRACE_MS, timeout_ms // 4)),
    }


def _failure(sandbox_id: str, status: Any, data: Mapping[str, Any]) -> SandboxFailedError:
    reason = data.get("termination_reason") or data.get("reason") or data.get("pending_reason")
    message = f"sandbox {sandbox_id} {status}"
    if reason:
        message += f" ({reason})"
    if data.get("error_details") is not None:
        message += f": {_describe(data['error_details'])}"
    return SandboxFailedError(sandbox_id, str(status), reason, message)


def _info_failure(info: SandboxInfo) -> SandboxFailedError:
    data = dict(info.model_extra or {})
    data.update(termination_reason=info.termination_reason, error_details=info.error_details)
    return _failure(info.sandbox_id, info.status, data)


def _create_answer(resp: httpx.Response, **scope: Any) -> dict[str, Any]:
    """The create (or claim) answer; a 504 carrying the normal JSON counts as an answer, as in the
    official SDK. ``scope`` adds to the error mapping (see :func:`error_from_response`)."""
    if resp.status_code == 504:
        body = _json_or_none(resp.text)
        if isinstance(body, dict) and body.get("sandbox_id") and (body.get("status") or body.get("state")):
            return body
    check(resp, create=True, **scope)
    body = _json(resp, "create answer")
    if not isinstance(body, dict) or not (body.get("sandbox_id") or body.get("id")):
        raise SandboxError("decoding create answer: missing field `sandbox_id`")
    return body


def op_create(cfg: ClientConfig, body: dict[str, Any]) -> Op[SandboxInfo]:
    """Create, then wait until the sandbox runs (POST without ``wait``, then poll GET)."""
    deadline = time.monotonic() + cfg.timeout_secs
    resp = yield from _send(
        _lifecycle(cfg, "POST", sandboxes_url(cfg), json=body, headers=_create_headers(cfg), replayable=False)
    )
    return (yield from _until_running(cfg, _create_answer(resp), deadline))


def _until_running(cfg: ClientConfig, answer: dict[str, Any], deadline: float) -> Op[SandboxInfo]:
    """The sandbox a create or claim answer names, once it runs. A running sandbox's answer
    from Alcove carries its whole info (``sandbox``), which saves the GET."""
    sandbox_id = str(answer.get("sandbox_id") or answer.get("id"))
    status = answer.get("status") or answer.get("state")
    if status in (SandboxStatus.FAILED, SandboxStatus.TERMINATED):
        raise _failure(sandbox_id, status, answer)
    embedded = answer.get("sandbox")
    if status == SandboxStatus.RUNNING and isinstance(embedded, dict):
        info = _model(SandboxInfo, embedded, "sandbox")
        if info.status == SandboxStatus.RUNNING:
            return info
    return (yield from _wait_running(cfg, sandbox_id, deadline, first_delay=status != SandboxStatus.RUNNING))


def _wait_running(cfg: ClientConfig, sandbox_id: str, deadline: float, *, first_delay: bool) -> Op[SandboxInfo]:
    if first_delay:
        yield Sleep(CREATE_POLL_INTERVAL_SECS)
    while True:
        info = yield from op_get(cfg, sandbox_id)
        if info.status == SandboxStatus.RUNNING:
            return info
        if info.status in _TERMINAL:
            raise _info_failure(info)
        if time.monotonic() >= deadline:
            raise SandboxTimeoutError(
                f"sandbox {sandbox_id} is still {info.status} after {cfg.timeout_secs:g}s "
                "(raise the client's timeout= to wait longer)"
            )
        yield Sleep(CREATE_POLL_INTERVAL_SECS)


def op_get(cfg: ClientConfig, identifier: str) -> Op[SandboxInfo]:
    identifier = _identifier(identifier)
    resp = yield from _send(_lifecycle(cfg, "GET", sandboxes_url(cfg, identifier)))
    check(resp, sandbox=identifier)
    return _model(SandboxInfo, _json(resp, "sandbox"), "sandbox")


def op_connect(cfg: ClientConfig, identifier: str) -> Op[SandboxInfo]:
    """GET the sandbox (by id or name), waiting while it is pending, and insist it is routable."""
    info = yield from op_get(cfg, identifier)
    if info.status == SandboxStatus.PENDING:
        info = yield from _wait_running(cfg, info.sandbox_id, time.monotonic() + cfg.timeout_secs, first_delay=True)
    if info.status in _TERMINAL:
        raise SandboxNotRoutableError(f"sandbox {info.sandbox_id} is {info.status} and can no longer be reached")
    target_for(info)
    return info


GET_OR_CREATE_ATTEMPTS = 5
"""How often :func:`op_get_or_create` looks the name up again after a lost create race or a
holder that ended while it looked."""
BIND_POLL_FIRST_SECS = 0.02
"""The first pause of :func:`op_get_or_create` while another caller's sandbox starts or
suspends; it doubles up to :data:`CREATE_POLL_INTERVAL_SECS`."""


def op_get_or_create(
    cfg: ClientConfig, name: str, body: dict[str, Any], *, resume: bool
) -> Op[tuple[SandboxInfo, str]]:
    """The one sandbox named ``name``, made from ``body`` (a create body naming it) if no sandbox
    holds the name, and how it was bound: ``"created"``, ``"attached"`` or ``"resumed"``.

    Concurrent callers converge on one sandbox: the loser of a create race (409) attaches to the
    winner, a caller that finds the sandbox still starting waits until it runs, and a suspended
    (or suspending) one is resumed unless ``resume`` is false.
    """
    deadline = time.monotonic() + cfg.timeout_secs
    for _ in range(GET_OR_CREATE_ATTEMPTS):
        try:
            info = yield from op_get(cfg, name)
        except SandboxNotFoundError:
            try:
                return (yield from op_create(cfg, body)), "created"
            except SandboxNameConflictError:
                continue  # lost the race: attach to the winner
        if info.name != name:
            # A sandbox's id is looked up like a name; the server refuses id-like names.
            raise ValueError(f"name {name!r} is the id of a sandbox, not a name")
        info = yield from _until_settled(cfg, info, deadline)
        if info.status in _TERMINAL:
            continue  # it ended while we looked: the name is free again
        if info.status == SandboxStatus.SUSPENDED and resume:
            return (yield from op_transition(cfg, info.sandbox_id, "resume")), "resumed"
        return info, "attached"
    raise SandboxError(
        f"the name {name!r} stayed held after {GET_OR_CREATE_ATTEMPTS} attempts, "
        "but no sandbox holding it could be attached to"
    )


def _until_settled(cfg: ClientConfig, info: SandboxInfo, deadline: float) -> Op[SandboxInfo]:
    """``info`` once it is no longer starting or suspending, read again at growing intervals."""
    pause = BIND_POLL_FIRST_SECS
    while info.status in (SandboxStatus.PENDING, SandboxStatus.SUSPENDING):
        if time.monotonic() >= deadline:
            raise SandboxTimeoutError(
                f"sandbox {info.sandbox_id} is still {info.status} after {cfg.timeout_secs:g}s "
                "(raise the client's timeout= to wait longer)"
            )
        yield Sleep(pause)
        pause = min(pause * 2, CREATE_POLL_INTERVAL_SECS)
        try:
            info = yield from op_get(cfg, info.sandbox_id)
        except SandboxNotFoundError:
            return info.model_copy(update={"status": SandboxStatus.TERMINATED})
    return info


def op_list(cfg: ClientConfig) -> Op[list[SandboxInfo]]:
    resp = yield from _send(_lifecycle(cfg, "GET", sandboxes_url(cfg)))
    check(resp)
    return _list(_json(resp, "sandbox list"), "sandboxes", SandboxInfo, "sandbox list")


def op_delete(cfg: ClientConfig, identifier: str) -> Op[None]:
    identifier = _identifier(identifier)
    resp = yield from _send(_lifecycle(cfg, "DELETE", sandboxes_url(cfg, identifier)))
    check(resp, sandbox=identifier)


def op_update(cfg: ClientConfig, identifier: str, patch: dict[str, Any]) -> Op[SandboxInfo]:
    identifier = _identifier(identifier)
    resp = yield from _send(_lifecycle(cfg, "PATCH", sandboxes_url(cfg, identifier), json=patch))
    check(resp, sandbox=identifier)
    return _model(SandboxInfo, _json(resp, "sandbox"), "sandbox")


def op_rename(cfg: ClientConfig, identifier: str, name: str) -> Op[SandboxInfo]:
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"name must be a non-empty string, got {name!r}")
    return (yield from op_update(cfg, identifier, {"name": name}))


def _resize_targets(cpus: Any, memory_mb: Any, disk_mb: Any) -> dict[str, Any]:
    body: dict[str, Any] = {}
    if cpus is not None:
        if not _is_number(cpus) or not cpus > 0 or cpus != cpus or cpus == float("inf"):
            raise ValueError(f"cpus must be a positive number, got {cpus!r}")
        body["cpus"] = float(cpus)
    for field, value in (("memory_mb", memory_mb), ("disk_mb", disk_mb)):
        if value is None:
            continue
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if not _is_int(value) or value <= 0:
            raise ValueError(f"{field} must be a positive whole number of MiB, got {value!r}")
        body[field] = value
    if not body:
        raise ValueError("give at least one of cpus, memory_mb and disk_mb")
    return body


def _check_wait(timeout: Any, poll_interval: Any) -> None:
    if not _is_number(timeout) or timeout < 0:
        raise ValueError(f"timeout must be a non-negative number of seconds, got {timeout!r}")
    if not _is_number(poll_interval) or poll_interval <= 0:
        raise ValueError(f"poll_interval must be a positive number of seconds, got {poll_interval!r}")


def op_update_resources(
    cfg: ClientConfig,
    identifier: str,
    cpus: float | None,
    memory_mb: int | None,
    disk_mb: int | None,
    wait: bool,
    timeout: float,
    poll_interval: float,
) -> Op[SandboxInfo]:
    """PATCH ``resources`` (a live resize), then, with ``wait``, poll GET until its generation
    has succeeded (or raise :class:`SandboxResizeError`)."""
    body = _resize_targets(cpus, memory_mb, disk_mb)
    _check_wait(timeout, poll_interval)
    info = yield from op_update(cfg, identifier, {"resources": body})
    if info.resource_resize is None:
        raise SandboxResizeError(
            info.sandbox_id, 0, "incompatible_response", "the server answered without resource_resize", info
        )
    if not wait:
        return info
    return (
        yield from op_wait_for_resource_resize(
            cfg, identifier, info.resource_resize.generation, timeout, poll_interval, _seen=info
        )
    )


def op_wait_for_resource_resize(
    cfg: ClientConfig,
    identifier: str,
    generation: int,
    timeout: float = 300,
    poll_interval: float = 1.0,
    _seen: SandboxInfo | None = None,
) -> Op[SandboxInfo]:
    """Poll GET until resize ``generation`` of the sandbox has succeeded; raise
    :class:`SandboxResizeError` when it failed, was superseded or is still pending at ``timeout``."""
    if not _is_int(generation) or generation < 1:
        raise ValueError(f"generation must be a positive integer, got {generation!r}")
    _check_wait(timeout, poll_interval)
    deadline = time.monotonic() + timeout
    info = _seen if _seen is not None else (yield from op_get(cfg, identifier))
    while True:
        resize = info.resource_resize
        if resize is None or resize.generation < generation:
            raise SandboxResizeError(
                info.sandbox_id, generation, "incompatible_response", "the server does not know this resize", info
            )
        if resize.generation > generation:
            raise SandboxResizeError(
                info.sandbox_id, generation, "superseded", f"generation {resize.generation} replaced it", info
            )
        if resize.status == "succeeded":
            return info
        if resize.status == "failed":
            raise SandboxResizeError(
                info.sandbox_id, generation, "failed", resize.error_message or "the resize failed", info
            )
        if time.monotonic() >= deadline:
            raise SandboxResizeError(
                info.sandbox_id, generation, "timeout", f"still {resize.status} after {timeout:g}s", info
            )
        yield Sleep(poll_interval)
        info = yield from op_get(cfg, identifier)


def op_desktop_url(cfg: ClientConfig, identifier: str, port: int | None = None) -> Op[str]:
    """POST ``/sandboxes/{id}/desktop``: a URL (valid for an hour) of a noVNC page of the sandbox's desktop."""
    identifier = _identifier(identifier)
    body: dict[str, Any] = {}
    if port is not None:
        if not _is_int(port) or not 1 <= port <= 65535:
            raise ValueError(f"port must be an integer between 1 and 65535, got {port!r}")
        body["port"] = port
    resp = yield from _send(_lifecycle(cfg, "POST", sandboxes_url(cfg, identifier, "/desktop"), json=body))
    check(resp, sandbox=identifier)
    data = _json(resp, "desktop URL")
    url = data.get("url") if isinstance(data, dict) else None
    if not isinstance(url, str):
        raise SandboxError(f"the server answered a desktop URL without a url: {_describe(data)}")
    return url


def op_metrics(cfg: ClientConfig, identifier: str) -> Op[SandboxMetrics]:
    """GET ``/sandboxes/{id}/metrics``: a running sandbox's use against its limits."""
    identifier = _identifier(identifier)
    resp = yield from _send(_lifecycle(cfg, "GET", sandboxes_url(cfg, identifier, "/metrics")))
    check(resp, sandbox=identifier)
    return _model(SandboxMetrics, _json(resp, "sandbox metrics"), "sandbox metrics")


def _server_wait_ms(cfg: ClientConfig) -> int:
    """The ``wait_ms`` a waiting call asks of the server: 75 % of the client's timeout (so the
    answer comes before the client gives up), at most ``MAX_WAIT_MS``."""
    return max(1, min(MAX_WAIT_MS, int(cfg.timeout_secs * 1000 * 0.75)))


def op_transition(cfg: ClientConfig, identifier: str, verb: str) -> Op[SandboxInfo]:
    """Suspend or resume (docs/protocol/control-plane.md): 200 = done, other 2xx = poll GET, 409 = re-check."""
    identifier = _identifier(identifier)
    target = SandboxStatus.SUSPENDED if verb == "suspend" else SandboxStatus.RUNNING
    deadline = time.monotonic() + cfg.timeout_secs
    wait_ms = _server_wait_ms(cfg)
    resp = yield from _send(
        _lifecycle(
            cfg, "POST", sandboxes_url(cfg, identifier, f"/{verb}"), params={"wait_ms": str(wait_ms)}, content=b""
        )
    )
    if resp.status_code == 409:
        info = yield from op_get(cfg, identifier)
        if info.status == target:
            return info
        raise error_from_response(resp, sandbox=identifier)
    check(resp, sandbox=identifier)
    while True:
        info = yield from op_get(cfg, identifier)
        if info.status == target:
            return info
        if info.status in _TERMINAL:
            raise _info_failure(info)
        if time.monotonic() >= deadline:
            raise SandboxTimeoutError(
                f"{verb} of sandbox {identifier}: still {info.status} after {cfg.timeout_secs:g}s "
                "(raise the client's timeout= to wait longer)"
            )
        yield Sleep(STATE_POLL_INTERVAL_SECS)


def op_expose_ports(
    cfg: ClientConfig, identifier: str, ports: Iterable[int], allow_unauthenticated_access: bool | None
) -> Op[SandboxInfo]:
    wanted = validate_ports(ports)
    current = yield from op_get(cfg, identifier)
    patch: dict[str, Any] = {"exposed_ports": sorted(set(current.exposed_ports) | set(wanted))}
    # Left out, the sandbox keeps its mode: exposing one more port must not make public ones
    # private again (nor the reverse).
    if allow_unauthenticated_access is not None:
        patch["allow_unauthenticated_access"] = bool(allow_unauthenticated_access)
    return (yield from op_update(cfg, identifier, patch))


def op_unexpose_ports(cfg: ClientConfig, identifier: str, ports: Iterable[int]) -> Op[SandboxInfo]:
    unwanted = set(validate_ports(ports))
    current = yield from op_get(cfg, identifier)
    remaining = sorted(set(current.exposed_ports) - unwanted)
    patch = {
        "allow_unauthenticated_access": current.allow_unauthenticated_access if remaining else False,
        "exposed_ports": remaining,
    }
    return (yield from op_update(cfg, identifier, patch))


# ---------------------------------------------------------------------------------------------
# Archived sandboxes

ARCHIVE_DIRECTIONS = ("forward", "backward")


MAX_COPIES = 16
"""Most copies one copy request may ask for (docs/protocol/control-plane.md, Copy)."""

# Statuses whose body is a copy answer: all ran (200), some failed (422), or, from the
# official service, the wait ran out (504); the last two list what was made.
_COPY_ANSWERS = (200, 422, 504)


def op_copy(cfg: ClientConfig, identifier: str, times: int) -> Op[CopySandboxResponse]:
    """POST ``/sandboxes/{id}/copy?times=N``: the copies as made, failed ones included."""
    identifier = _identifier(identifier)
    if not _is_int(times) or not 1 <= times <= MAX_COPIES:
        raise ValueError(f"times must be an integer from 1 to {MAX_COPIES}, got {times!r}")
    url = sandboxes_url(cfg, identifier, "/copy")
    req = _lifecycle(cfg, "POST", url, params={"times": str(times)}, content=b"", replayable=False)
    resp = yield from _send(req)
    if resp.status_code in _COPY_ANSWERS:
        body = _json_or_none(resp.text)
        if isinstance(body, dict) and "sandboxes" in body:
            return _model(CopySandboxResponse, body, "copy answer")
    check(resp, sandbox=identifier)
    return _model(CopySandboxResponse, _json(resp, "copy answer"), "copy answer")


def archived_params(limit: int | None, cursor: str | None, direction: str | None) -> dict[str, str]:
    """The query of ``GET /archived-sandboxes`` (docs/protocol/control-plane.md), after client-side checks."""
    params: dict[str, str] = {}
    if limit is not None:
        if not _is_int(limit) or limit < 1:
            raise ValueError(f"limit must be a positive integer, got {limit!r}")
        params["limit"] = str(limit)
    if cursor is not None:
        if not isinstance(cursor, str) or not cursor:
            raise ValueError(f"cursor must be a non-empty string (a prev_cursor or next_cursor), got {cursor!r}")
        params["cursor"] = cursor
    if direction is not None:
        if str(direction) not in ARCHIVE_DIRECTIONS:
            raise ValueError(f"direction must be 'forward' or 'backward', got {direction!r}")
        params["direction"] = str(direction)
    return params


def op_list_archived(
    cfg: ClientConfig, limit: int | None, cursor: str | None, direction: str | None
) -> Op[ArchivedSandboxPage]:
    params = archived_params(limit, cursor, direction)
    resp = yield from _send(_lifecycle(cfg, "GET", archived_url(cfg), params=params))
    check(resp)
    return _model(ArchivedSandboxPage, _json(resp, "archived sandbox list"), "archived sandbox list")


def op_get_archived(cfg: ClientConfig, sandbox_id: str) -> Op[ArchivedSandboxInfo]:
    sandbox_id = _identifier(sandbox_id, "sandbox_id")
    resp = yield from _send(_lifecycle(cfg, "GET", archived_url(cfg, sandbox_id)))
    check(resp, sandbox=sandbox_id)
    return _model(ArchivedSandboxInfo, _json(resp, "archived sandbox"), "archived sandbox")


# ---------------------------------------------------------------------------------------------
# Snapshots


def op_snapshot(cfg: ClientConfig, identifier: str, snapshot_type: str | None, wait_ms: int = 0) -> Op[SnapshotInfo]:
    """Start a snapshot; the server waits up to ``wait_ms`` for it to end before it answers (with
    none, the answer is usually ``in_progress``)."""
    identifier = _identifier(identifier)
    if snapshot_type is not None and str(snapshot_type) not in ("memory", "filesystem"):
        raise ValueError(f"snapshot_type must be 'memory' or 'filesystem', got {snapshot_type!r}")
    url = sandboxes_url(cfg, identifier, "/snapshot")
    params = {"wait_ms": str(wait_ms)}
    if snapshot_type is None:
        req = _lifecycle(cfg, "POST", url, params=params, content=b"", replayable=False)
    else:
        req = _lifecycle(cfg, "POST", url, params=params, json={"snapshot_type": str(snapshot_type)}, replayable=False)
    resp = yield from _send(req)
    check(resp, sandbox=identifier)
    body = _json(resp, "snapshot answer")
    if isinstance(body, dict) and not body.get("sandbox_id"):
        body = {**body, "sandbox_id": identifier}
    return _model(SnapshotInfo, body, "snapshot answer")


def op_snapshot_and_wait(cfg: ClientConfig, identifier: str, snapshot_type: str | None) -> Op[SnapshotInfo]:
    """Snapshot, then poll until ``local_ready`` or ``completed`` (``failed`` raises)."""
    deadline = time.monotonic() + cfg.timeout_secs
    wait_ms = _server_wait_ms(cfg)
    started = yield from op_snapshot(cfg, identifier, snapshot_type, wait_ms)
    snapshot = started
    if snapshot.status != SnapshotStatus.IN_PROGRESS:
        # Ended within the server's wait: its whole record (size, error) is one read away.
        snapshot = yield from op_get_snapshot(cfg, started.snapshot_id)
    poll = SNAPSHOT_FIRST_POLL_SECS
    while True:
        if snapshot.status in (SnapshotStatus.COMPLETED, SnapshotStatus.LOCAL_READY):
            return snapshot
        if snapshot.status in (SnapshotStatus.FAILED, SnapshotStatus.DELETING):
            detail = f": {snapshot.error}" if snapshot.error else ""
            raise SandboxError(f"snapshot {snapshot.snapshot_id} of sandbox {identifier} {snapshot.status}{detail}")
        if time.monotonic() >= deadline:
            raise SandboxTimeoutError(
                f"snapshot {snapshot.snapshot_id} is still {snapshot.status} after {cfg.timeout_secs:g}s "
                "(raise the client's timeout= to wait longer)"
            )
        yield Sleep(poll)
        poll = min(poll * 2, SNAPSHOT_POLL_INTERVAL_SECS)
        snapshot = yield from op_get_snapshot(cfg, started.snapshot_id)


def op_get_snapshot(cfg: ClientConfig, snapshot_id: str) -> Op[SnapshotInfo]:
    snapshot_id = _identifier(snapshot_id, "snapshot_id")
    resp = yield from _send(_lifecycle(cfg, "GET", snapshots_url(cfg, snapshot_id)))
    check(resp, snapshot=True)
    return _model(SnapshotInfo, _json(resp, "snapshot"), "snapshot")


def op_list_snapshots(cfg: ClientConfig) -> Op[list[SnapshotInfo]]:
    resp = yield from _send(_lifecycle(cfg, "GET", snapshots_url(cfg)))
    check(resp)
    return _list(_json(resp, "snapshot list"), "snapshots", SnapshotInfo, "snapshot list")


def op_delete_snapshot(cfg: ClientConfig, snapshot_id: str) -> Op[None]:
    snapshot_id = _identifier(snapshot_id, "snapshot_id")
    resp = yield from _send(_lifecycle(cfg, "DELETE", snapshots_url(cfg, snapshot_id)))
    check(resp, snapshot=True)
