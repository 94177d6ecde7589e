"""The HTTP protocol of Alcove (WIRE.md), written once for the sync and async clients.

Nothing here does I/O. Each operation is a generator ("op") that yields steps and receives
their outcome:

* a :class:`Request` step is answered with the :class:`httpx.Response` (or, when sending failed,
  a :class:`SandboxConnectionError` / :class:`SandboxTimeoutError` thrown into the generator);
* a :class:`Sleep` step is answered with ``None`` once the time has passed.

The generator's return value is the operation's result. ``client.py`` and ``async_client.py``
each hold a small driver that performs the steps with ``httpx.Client`` or ``httpx.AsyncClient``,
so URL building, bodies, retries, polling, error mapping and decoding cannot drift between them.

Streams (``run``, ``follow_*``, file downloads) are opened by an op that returns the open 2xx
response; the caller then feeds its lines to :func:`collect_run` / :func:`iter_output_events`
(or their async twins) and closes it.
"""

from __future__ import annotations

import inspect
import io
import json
import os
import signal as signal_module
import time
from collections.abc import AsyncIterable, AsyncIterator, Generator, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import quote, urlsplit

import httpx
from pydantic import BaseModel, ValidationError

from .._version import __version__
from ._config import ClientConfig
from .exceptions import (
    AuthenticationError,
    RemoteAPIError,
    SandboxConnectionError,
    SandboxError,
    SandboxException,
    SandboxFailedError,
    SandboxNameConflictError,
    SandboxNotFoundError,
    SandboxNotRoutableError,
    SandboxTimeoutError,
    SnapshotNotFoundError,
)
from .models import (
    CommandResult,
    DirectoryEntry,
    OutputEvent,
    OutputResponse,
    ProcessInfo,
    SandboxInfo,
    SandboxStatus,
    SnapshotInfo,
    SnapshotStatus,
)

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)

USER_AGENT = f"alcove-python-sdk/{__version__}"

DEFAULT_CPUS = 1.0
DEFAULT_MEMORY_MB = 1024
MANAGEMENT_PORT = 9501
"""The in-sandbox daemon's port; it can never be exposed as a user port."""

CREATE_POLL_INTERVAL_SECS = 0.5
STATE_POLL_INTERVAL_SECS = 1.0
SNAPSHOT_POLL_INTERVAL_SECS = 1.0
MAX_WAIT_MS = 30_000
"""Upper bound of the ``wait_ms`` sent with suspend/resume (WIRE.md §2.5)."""
CREATE_GRACE_MS = 5_000

GET_ATTEMPTS = 3
RETRYABLE_GET_STATUSES = frozenset({429, 502, 503, 504})
NOT_READY_CODES = frozenset({"SANDBOX_NOT_READY", "SANDBOX_UNREACHABLE"})
NOT_READY_ATTEMPTS = 12
UPLOAD_CHUNK_BYTES = 64 * 1024

# A tuple, not a set: membership must use equality so raw wire strings match the enum members.
_TERMINAL = (SandboxStatus.TERMINATED, SandboxStatus.FAILED, SandboxStatus.TIMEOUT)

# ---------------------------------------------------------------------------------------------
# Steps


@dataclass(frozen=True)
class Upload:
    """A streamed request body: a binary file-like object or an (async) iterable of bytes."""

    source: Any
    length: int | None


@dataclass(frozen=True)
class Request:
    """One HTTP request to send."""

    method: str
    url: str
    headers: Mapping[str, str] = field(default_factory=dict)
    params: Mapping[str, str] | None = None
    json: Any = None
    content: bytes | None = None
    upload: Upload | None = None
    stream: bool = False
    """Return the response unread (2xx only) and use no read timeout."""
    replayable: bool = True
    """Whether the request may be sent again when the proxy says the sandbox is not ready."""


@dataclass(frozen=True)
class Sleep:
    """Pause before the next step."""

    seconds: float


Step = Request | Sleep
Op = Generator[Step, Any, T]


# ---------------------------------------------------------------------------------------------
# Headers and URLs


def base_headers(cfg: ClientConfig) -> dict[str, str]:
    headers = {"User-Agent": USER_AGENT}
    if cfg.api_key:
        headers["Authorization"] = f"Bearer {cfg.api_key}"
    return headers


def _segment(value: str | int) -> str:
    return quote(str(value), safe="")


def _identifier(value: Any, what: str = "identifier") -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{what} must be a non-empty string (a sandbox id or name), got {value!r}")
    return value


def namespace_url(cfg: ClientConfig) -> str:
    return f"{cfg.api_url}/v1/namespaces/{_segment(cfg.namespace)}"


def sandboxes_url(cfg: ClientConfig, identifier: str | None = None, suffix: str = "") -> str:
    url = f"{namespace_url(cfg)}/sandboxes"
    if identifier is not None:
        url += f"/{_segment(identifier)}"
    return url + suffix


def snapshots_url(cfg: ClientConfig, snapshot_id: str | None = None) -> str:
    url = f"{namespace_url(cfg)}/snapshots"
    if snapshot_id is not None:
        url += f"/{_segment(snapshot_id)}"
    return url


def _lifecycle(cfg: ClientConfig, method: str, url: str, **kwargs: Any) -> Request:
    headers = base_headers(cfg)
    headers.update(kwargs.pop("headers", {}))
    return Request(method, url, headers=headers, **kwargs)


@dataclass(frozen=True)
class ProxyTarget:
    """Where and how to reach one sandbox's daemon API through the proxy (WIRE.md §1.5)."""

    sandbox_id: str
    base_url: str
    headers: Mapping[str, str]


def proxy_target(sandbox_url: str, sandbox_id: str, routing_hint: str | None = None) -> ProxyTarget:
    """Address a sandbox through ``sandbox_url``.

    A ``localhost`` / ``127.0.0.1`` proxy keeps the whole URL (path prefix included) and routes by
    ``Host: <sandbox_id>.local``; any other host keeps only ``scheme://host[:port]`` and routes by
    ``X-Tensorlake-Sandbox-Id``.
    """
    parts = urlsplit(sandbox_url.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise SandboxNotRoutableError(f"sandbox {sandbox_id}: unusable sandbox_url {sandbox_url!r}")
    netloc = parts.netloc.rpartition("@")[2]
    if parts.hostname in ("localhost", "127.0.0.1"):
        base = f"{parts.scheme}://{netloc}{parts.path}".rstrip("/")
        headers = {"Host": f"{sandbox_id}.local"}
    else:
        base = f"{parts.scheme}://{netloc}"
        headers = {"X-Tensorlake-Sandbox-Id": sandbox_id}
    if routing_hint:
        headers["X-Tensorlake-Route-Hint"] = routing_hint
    return ProxyTarget(sandbox_id=sandbox_id, base_url=base, headers=headers)


def target_for(info: SandboxInfo) -> ProxyTarget:
    if not info.sandbox_url:
        raise SandboxNotRoutableError(
            f"sandbox {info.sandbox_id} ({info.status}): the server gave no sandbox_url, "
            "so its processes and files cannot be reached"
        )
    return proxy_target(info.sandbox_url, info.sandbox_id, info.routing_hint)


def _proxied(cfg: ClientConfig, target: ProxyTarget, method: str, path: str, **kwargs: Any) -> Request:
    headers = base_headers(cfg)
    headers.update(target.headers)
    headers.update(kwargs.pop("headers", {}))
    return Request(method, target.base_url + path, headers=headers, **kwargs)


# ---------------------------------------------------------------------------------------------
# Responses and errors


def _json_or_none(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return None


@dataclass(frozen=True)
class ErrorBody:
    """What an error response says: the server's message, code and request id."""

    message: str
    code: str | None = None
    request_id: str | None = None


def _error_body(resp: httpx.Response) -> ErrorBody:
    """Read an error body: ``{"message","code"}`` (control plane), ``{"error","code"}`` (daemon) or text."""
    try:
        text = resp.text
    except Exception:  # undecodable body
        text = ""
    body = _json_or_none(text)
    if not isinstance(body, dict):
        return ErrorBody(text.strip() or resp.reason_phrase or f"HTTP {resp.status_code}")
    code = body.get("code") if isinstance(body.get("code"), str) else None
    request_id = body.get("request_id") if isinstance(body.get("request_id"), str) else None
    status = body.get("status")
    if body.get("sandbox_id") and status in ("failed", "terminated"):
        reason = body.get("reason") or body.get("termination_reason")
        message = f"Sandbox {body['sandbox_id']} {status}"
        if reason:
            message += f" ({reason})"
        if body.get("error_details") is not None:
            message += f": {_describe(body['error_details'])}"
        return ErrorBody(message, code, request_id)
    for key in ("message", "error"):
        value = body.get(key)
        if isinstance(value, str) and value:
            return ErrorBody(value, code, request_id)
        if isinstance(value, dict) and isinstance(value.get("message"), str):
            return ErrorBody(value["message"], code, request_id)
    return ErrorBody(text.strip(), code, request_id)


def _describe(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


def error_from_response(
    resp: httpx.Response,
    *,
    sandbox: str | None = None,
    snapshot: bool = False,
    create: bool = False,
) -> SandboxException:
    """Map a non-2xx response to the right exception.

    ``sandbox`` names the sandbox of a sandbox-scoped call (its 404 becomes
    :class:`SandboxNotFoundError`); ``snapshot`` marks snapshot calls; ``create`` marks create
    (its 409 becomes :class:`SandboxNameConflictError`).
    """
    status = resp.status_code
    body = _error_body(resp)
    if status == 404 and sandbox is not None:
        return SandboxNotFoundError(sandbox, body.message, body.code)
    cls = RemoteAPIError
    if status == 404 and snapshot:
        cls = SnapshotNotFoundError
    elif status == 409 and create:
        cls = SandboxNameConflictError
    elif status in (401, 403):
        cls = AuthenticationError
    return cls(status, body.message, body.code, body.request_id)


def check(resp: httpx.Response, **scope: Any) -> None:
    """Raise the mapped exception unless the response is 2xx (see :func:`error_from_response`)."""
    if not resp.is_success:
        raise error_from_response(resp, **scope)


def _json(resp: httpx.Response, what: str) -> Any:
    try:
        return resp.json()
    except ValueError as exc:
        raise SandboxError(f"decoding {what}: the server answered {resp.status_code} without valid JSON") from exc


def _model(model: type[M], data: Any, what: str) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise SandboxError(f"decoding {what}: {exc}") from exc


def _list(data: Any, key: str, model: type[M], what: str) -> list[M]:
    items = data.get(key) if isinstance(data, dict) else data
    if items is None:
        return []
    if not isinstance(items, list):
        raise SandboxError(f"decoding {what}: expected a list under {key!r}")
    return [_model(model, item, what) for item in items]


def transport_error(exc: httpx.HTTPError, method: str, url: str) -> SandboxException:
    """Map an httpx failure to :class:`SandboxTimeoutError` or :class:`SandboxConnectionError`."""
    if isinstance(exc, (httpx.ReadTimeout, httpx.WriteTimeout, httpx.PoolTimeout)):
        return SandboxTimeoutError(f"{method} {url}: timed out ({exc or type(exc).__name__})")
    return SandboxConnectionError(f"{method} {url}: {exc or type(exc).__name__}")


def _is_not_ready(resp: httpx.Response) -> bool:
    if resp.status_code not in (502, 503):
        return False
    return _error_body(resp).code in NOT_READY_CODES


def _send(req: Request) -> Op[httpx.Response]:
    """Send with the retries of WIRE.md §1.6.

    GETs are retried on connection failures and 429/502/503/504; any replayable request is
    replayed while the proxy answers 502/503 ``SANDBOX_NOT_READY`` / ``SANDBOX_UNREACHABLE``.
    """
    attempt = 0
    while True:
        attempt += 1
        try:
            resp = yield req
        except SandboxConnectionError:
            if req.method == "GET" and attempt < GET_ATTEMPTS:
                yield Sleep(0.2 * 2 ** (attempt - 1))
                continue
            raise
        if req.replayable and attempt < NOT_READY_ATTEMPTS and _is_not_ready(resp):
            yield Sleep(min(0.25 * 2 ** (attempt - 1), 4.0))
            continue
        if req.method == "GET" and attempt < GET_ATTEMPTS and resp.status_code in RETRYABLE_GET_STATUSES:
            yield Sleep(0.2 * 2 ** (attempt - 1))
            continue
        return resp


# ---------------------------------------------------------------------------------------------
# Validation


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _str_list(value: Any, what: str) -> list[str]:
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        raise ValueError(f"{what} must be a list of strings, got {value!r}")
    items = list(value)
    if not all(isinstance(item, str) for item in items):
        raise ValueError(f"{what} must be a list of strings, got {value!r}")
    return items


def validate_ports(ports: Any) -> list[int]:
    if _is_int(ports) or isinstance(ports, (str, bytes)) or not isinstance(ports, Iterable):
        raise ValueError(f"ports must be a list of port numbers, got {ports!r}")
    result = []
    for port in ports:
        if not _is_int(port) or not 1 <= port <= 65535:
            raise ValueError(f"ports must be integers between 1 and 65535, got {port!r}")
        if port == MANAGEMENT_PORT:
            raise ValueError(f"port {MANAGEMENT_PORT} is reserved for the sandbox daemon and cannot be exposed")
        result.append(port)
    return sorted(set(result))


# ---------------------------------------------------------------------------------------------
# Control plane: sandboxes


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
) -> dict[str, Any]:
    """The JSON body of ``POST /sandboxes`` (WIRE.md §2.3), after client-side checks."""
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

    body: dict[str, Any] = {}
    if snapshot_id is not None:
        body["snapshot_id"] = snapshot_id
    overrides_resources = float(cpus) != DEFAULT_CPUS or memory_mb != DEFAULT_MEMORY_MB or disk_mb is not None
    if snapshot_id is None or overrides_resources:
        resources: dict[str, Any] = {"cpus": float(cpus), "memory_mb": memory_mb}
        if disk_mb is not None:
            resources["disk_mb"] = disk_mb
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
    return body


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


def _create_answer(resp: httpx.Response) -> dict[str, Any]:
    """The create answer; a 504 carrying the normal JSON counts as an answer (WIRE.md §2.3)."""
    if resp.status_code == 504:
        body = _json_or_none(resp.text)
        if isinstance(body, dict) and body.get("sandbox_id") and (body.get("status") or body.get("state")):
            return body
    check(resp, create=True)
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
    answer = _create_answer(resp)
    sandbox_id = str(answer.get("sandbox_id") or answer.get("id"))
    status = answer.get("status") or answer.get("state")
    if status in (SandboxStatus.FAILED, SandboxStatus.TERMINATED):
        raise _failure(sandbox_id, status, answer)
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


def op_transition(cfg: ClientConfig, identifier: str, verb: str) -> Op[SandboxInfo]:
    """Suspend or resume (WIRE.md §2.5): 200 = done, other 2xx = poll GET, 409 = re-check."""
    identifier = _identifier(identifier)
    target = SandboxStatus.SUSPENDED if verb == "suspend" else SandboxStatus.RUNNING
    deadline = time.monotonic() + cfg.timeout_secs
    wait_ms = max(1, min(MAX_WAIT_MS, int(cfg.timeout_secs * 1000 * 0.75)))
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
    cfg: ClientConfig, identifier: str, ports: Iterable[int], allow_unauthenticated_access: bool
) -> Op[SandboxInfo]:
    wanted = validate_ports(ports)
    current = yield from op_get(cfg, identifier)
    patch = {
        "allow_unauthenticated_access": bool(allow_unauthenticated_access),
        "exposed_ports": sorted(set(current.exposed_ports) | set(wanted)),
    }
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
# Control plane: snapshots


def op_snapshot(cfg: ClientConfig, identifier: str, snapshot_type: str | None) -> Op[SnapshotInfo]:
    """Start a snapshot; the answer is usually ``in_progress``."""
    identifier = _identifier(identifier)
    if snapshot_type is not None and str(snapshot_type) not in ("memory", "filesystem"):
        raise ValueError(f"snapshot_type must be 'memory' or 'filesystem', got {snapshot_type!r}")
    url = sandboxes_url(cfg, identifier, "/snapshot")
    if snapshot_type is None:
        req = _lifecycle(cfg, "POST", url, content=b"", replayable=False)
    else:
        req = _lifecycle(cfg, "POST", url, json={"snapshot_type": str(snapshot_type)}, replayable=False)
    resp = yield from _send(req)
    check(resp, sandbox=identifier)
    body = _json(resp, "snapshot answer")
    if isinstance(body, dict) and not body.get("sandbox_id"):
        body = {**body, "sandbox_id": identifier}
    return _model(SnapshotInfo, body, "snapshot answer")


def op_snapshot_and_wait(cfg: ClientConfig, identifier: str, snapshot_type: str | None) -> Op[SnapshotInfo]:
    """Snapshot, then poll until ``local_ready`` or ``completed`` (``failed`` raises)."""
    deadline = time.monotonic() + cfg.timeout_secs
    started = yield from op_snapshot(cfg, identifier, snapshot_type)
    snapshot = started
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
        yield Sleep(SNAPSHOT_POLL_INTERVAL_SECS)
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


# ---------------------------------------------------------------------------------------------
# Sandbox daemon: processes


def _pid(pid: Any) -> str:
    if _is_int(pid) and pid >= 0:
        return str(pid)
    if isinstance(pid, str) and pid.strip():
        return _segment(pid)
    raise ValueError(f"pid must be a process id or a managed-process name, got {pid!r}")


def _proxy_check(resp: httpx.Response, target: ProxyTarget) -> None:
    if resp.is_success:
        return
    exc = error_from_response(resp)
    if isinstance(exc, RemoteAPIError) and exc.code == "SANDBOX_NOT_FOUND":
        raise SandboxNotFoundError(target.sandbox_id, exc.message, exc.code)
    raise exc


def _proxy_op(cfg: ClientConfig, target: ProxyTarget, method: str, path: str, **kwargs: Any) -> Op[httpx.Response]:
    resp = yield from _send(_proxied(cfg, target, method, path, **kwargs))
    _proxy_check(resp, target)
    return resp


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
    return body


def op_open_run(cfg: ClientConfig, target: ProxyTarget, body: dict[str, Any]) -> Op[httpx.Response]:
    """Open the SSE stream of a run; returns the open 2xx response."""
    req = _proxied(
        cfg, target, "POST", "/api/v1/processes/run", json=body, headers={"Accept": "text/event-stream"}, stream=True
    )
    return (yield from _open(req, target))


def _open(req: Request, target: ProxyTarget) -> Op[httpx.Response]:
    resp = yield from _send(req)
    _proxy_check(resp, target)
    return resp


def check_event_stream(resp: httpx.Response) -> None:
    content_type = resp.headers.get("content-type", "")
    if not content_type.lower().startswith("text/event-stream"):
        raise SandboxError(f"expected an event stream from {resp.request.url.path}, got content-type {content_type!r}")


def op_start_process(
    cfg: ClientConfig,
    target: ProxyTarget,
    command: str,
    args: Iterable[str] | None,
    env: Mapping[str, str] | None,
    working_dir: str | None,
    stdin_mode: str | None,
    stdout_mode: str | None,
    stderr_mode: str | None,
    user: Any,
) -> Op[ProcessInfo]:
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
    resp = yield from _proxy_op(cfg, target, "POST", "/api/v1/processes", json=body, replayable=True)
    return _model(ProcessInfo, _json(resp, "process"), "process")


def op_list_processes(cfg: ClientConfig, target: ProxyTarget) -> Op[list[ProcessInfo]]:
    resp = yield from _proxy_op(cfg, target, "GET", "/api/v1/processes")
    return _list(_json(resp, "process list"), "processes", ProcessInfo, "process list")


def op_get_process(cfg: ClientConfig, target: ProxyTarget, pid: int | str) -> Op[ProcessInfo]:
    resp = yield from _proxy_op(cfg, target, "GET", f"/api/v1/processes/{_pid(pid)}")
    return _model(ProcessInfo, _json(resp, "process"), "process")


def op_kill_process(cfg: ClientConfig, target: ProxyTarget, pid: int | str) -> Op[None]:
    yield from _proxy_op(cfg, target, "DELETE", f"/api/v1/processes/{_pid(pid)}")


def op_send_signal(cfg: ClientConfig, target: ProxyTarget, pid: int | str, signal: int) -> Op[None]:
    if isinstance(signal, bool) or not isinstance(signal, (int, signal_module.Signals)) or int(signal) <= 0:
        raise ValueError(f"signal must be a positive int or signal.Signals, got {signal!r}")
    yield from _proxy_op(cfg, target, "POST", f"/api/v1/processes/{_pid(pid)}/signal", json={"signal": int(signal)})


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


def op_open_follow(cfg: ClientConfig, target: ProxyTarget, pid: int | str, stream: str) -> Op[httpx.Response]:
    req = _proxied(
        cfg,
        target,
        "GET",
        f"/api/v1/processes/{_pid(pid)}/{stream}/follow",
        headers={"Accept": "text/event-stream"},
        stream=True,
    )
    return (yield from _open(req, target))


# ---------------------------------------------------------------------------------------------
# Sandbox daemon: files


def _path(path: Any) -> dict[str, str]:
    value = os.fspath(path) if isinstance(path, os.PathLike) else path
    if not isinstance(value, str) or not value:
        raise ValueError(f"path must be a non-empty string, got {path!r}")
    return {"path": value}


def prepare_upload(data: Any) -> tuple[bytes | None, Upload | None]:
    """Split ``write_file`` data into an in-memory body or a streamed :class:`Upload`."""
    if isinstance(data, (bytes, bytearray, memoryview)):
        return bytes(data), None
    if isinstance(data, str):
        return data.encode("utf-8"), None
    if isinstance(data, io.TextIOBase):
        raise TypeError("write_file needs a binary file: open it with mode 'rb'")
    if hasattr(data, "read"):
        return None, Upload(data, _remaining_length(data))
    if isinstance(data, (Iterable, AsyncIterable)):
        return None, Upload(data, None)
    raise TypeError(f"write_file takes bytes, a binary file or an iterable of bytes, got {type(data).__name__}")


def _remaining_length(stream: Any) -> int | None:
    try:
        position = stream.tell()
        size = os.fstat(stream.fileno()).st_size
        return max(0, size - position)
    except Exception:
        pass
    try:
        position = stream.tell()
        end = stream.seek(0, os.SEEK_END)
        stream.seek(position)
        return max(0, end - position)
    except Exception:
        return None


def _chunk(value: Any) -> bytes:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    raise TypeError(f"write_file data must yield bytes, got {type(value).__name__}")


def iter_upload(source: Any) -> Iterator[bytes]:
    """Chunks of an upload source, for ``httpx.Client``."""
    if hasattr(source, "read"):
        while True:
            chunk = source.read(UPLOAD_CHUNK_BYTES)
            if inspect.isawaitable(chunk):
                raise TypeError("an async file needs AsyncSandbox.write_file")
            if not chunk:
                return
            yield _chunk(chunk)
    if not isinstance(source, Iterable):
        raise TypeError("an async iterable needs AsyncSandbox.write_file")
    for chunk in source:
        yield _chunk(chunk)


async def aiter_upload(source: Any) -> AsyncIterator[bytes]:
    """Chunks of an upload source (sync or async file / iterable), for ``httpx.AsyncClient``."""
    if hasattr(source, "read"):
        while True:
            chunk = source.read(UPLOAD_CHUNK_BYTES)
            if inspect.isawaitable(chunk):
                chunk = await chunk
            if not chunk:
                return
            yield _chunk(chunk)
    elif isinstance(source, AsyncIterable):
        async for chunk in source:
            yield _chunk(chunk)
    else:
        for chunk in source:
            yield _chunk(chunk)


def op_write_file(cfg: ClientConfig, target: ProxyTarget, path: str, data: Any) -> Op[None]:
    params = _path(path)
    content, upload = prepare_upload(data)
    yield from _proxy_op(
        cfg,
        target,
        "PUT",
        "/api/v1/files",
        params=params,
        content=content,
        upload=upload,
        replayable=upload is None,
    )


def op_read_file(cfg: ClientConfig, target: ProxyTarget, path: str) -> Op[bytes]:
    resp = yield from _proxy_op(cfg, target, "GET", "/api/v1/files", params=_path(path))
    return resp.content


def op_open_read_file(cfg: ClientConfig, target: ProxyTarget, path: str) -> Op[httpx.Response]:
    req = _proxied(cfg, target, "GET", "/api/v1/files", params=_path(path), stream=True)
    return (yield from _open(req, target))


def op_list_directory(cfg: ClientConfig, target: ProxyTarget, path: str) -> Op[list[DirectoryEntry]]:
    resp = yield from _proxy_op(cfg, target, "GET", "/api/v1/files/list", params=_path(path))
    return _list(_json(resp, "directory listing"), "entries", DirectoryEntry, "directory listing")


def op_delete_file(cfg: ClientConfig, target: ProxyTarget, path: str) -> Op[None]:
    yield from _proxy_op(cfg, target, "DELETE", "/api/v1/files", params=_path(path))


# ---------------------------------------------------------------------------------------------
# Server-sent events


class SSEDecoder:
    """Line-based SSE decoder yielding the JSON object of each event's data.

    ``event:``, ``id:`` and ``retry:`` lines and ``:`` comments are ignored; data that is not a
    JSON object is skipped. Feed it lines without their line ending, then call :meth:`flush`.
    """

    def __init__(self) -> None:
        self._data: list[str] = []

    def feed(self, line: str) -> list[dict[str, Any]]:
        line = line.rstrip("\r\n")
        if not line:
            return self.flush()
        if line.startswith(":"):
            return []
        name, _, value = line.partition(":")
        if value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._data.append(value)
        return []

    def flush(self) -> list[dict[str, Any]]:
        if not self._data:
            return []
        lines, self._data = self._data, []
        joined = _json_or_none("\n".join(lines))
        if isinstance(joined, dict):
            return [joined]
        # Tolerate servers that forget the blank line between events: one object per data line.
        objects = (_json_or_none(line) for line in lines)
        return [obj for obj in objects if isinstance(obj, dict)]


class RunCollector:
    """Accumulates the events of ``processes/run`` (recognised by shape) into a CommandResult."""

    def __init__(self) -> None:
        self.stdout: list[str] = []
        self.stderr: list[str] = []
        self.pid: int | None = None
        self._exit: dict[str, Any] | None = None

    def add(self, event: dict[str, Any]) -> bool:
        """Take one event; True once the exit event has arrived."""
        line = event.get("line")
        if isinstance(line, str):
            (self.stderr if event.get("stream") == "stderr" else self.stdout).append(line)
            return False
        if event.get("exit_code") is not None or event.get("signal") is not None:
            self._exit = event
            return True
        if _is_int(event.get("pid")) and self.pid is None:
            self.pid = event["pid"]
            return False
        error = event.get("error")
        if isinstance(error, str) and error:
            code = event.get("code")
            raise SandboxError(f"command failed in the sandbox{f' ({code})' if code else ''}: {error}")
        return False

    def result(self) -> CommandResult:
        if self._exit is None:
            raise SandboxConnectionError("command output stream ended without an exit event")
        exit_code = self._exit.get("exit_code")
        signal = self._exit.get("signal")
        if exit_code is None:
            exit_code = -int(signal)
        return CommandResult(
            stdout="\n".join(self.stdout),
            stderr="\n".join(self.stderr),
            exit_code=int(exit_code),
            signal=signal,
            reason=self._exit.get("reason"),
            pid=self.pid,
        )


def collect_run(lines: Iterable[str]) -> CommandResult:
    decoder, collector = SSEDecoder(), RunCollector()
    for line in lines:
        for event in decoder.feed(line):
            if collector.add(event):
                return collector.result()
    for event in decoder.flush():
        if collector.add(event):
            break
    return collector.result()


async def acollect_run(lines: AsyncIterable[str]) -> CommandResult:
    decoder, collector = SSEDecoder(), RunCollector()
    async for line in lines:
        for event in decoder.feed(line):
            if collector.add(event):
                return collector.result()
    for event in decoder.flush():
        if collector.add(event):
            break
    return collector.result()


def output_event(event: dict[str, Any], default_stream: str | None) -> OutputEvent | None:
    """An OutputEvent for a line event, None for anything else (e.g. indexify's ``eof`` ``{}``)."""
    if not isinstance(event.get("line"), str):
        return None
    if event.get("stream") is None and default_stream is not None:
        event = {**event, "stream": default_stream}
    try:
        return OutputEvent.model_validate(event)
    except ValidationError:
        return None


def iter_output_events(lines: Iterable[str], default_stream: str | None) -> Iterator[OutputEvent]:
    decoder = SSEDecoder()
    for line in lines:
        for event in decoder.feed(line):
            if (item := output_event(event, default_stream)) is not None:
                yield item
    for event in decoder.flush():
        if (item := output_event(event, default_stream)) is not None:
            yield item


async def aiter_output_events(lines: AsyncIterable[str], default_stream: str | None) -> AsyncIterator[OutputEvent]:
    decoder = SSEDecoder()
    async for line in lines:
        for event in decoder.feed(line):
            if (item := output_event(event, default_stream)) is not None:
                yield item
    for event in decoder.flush():
        if (item := output_event(event, default_stream)) is not None:
            yield item


FOLLOW_STREAMS = {"output": None, "stdout": "stdout", "stderr": "stderr"}
"""Follow endpoints and the ``stream`` assumed when an event omits it."""

NOT_IMPLEMENTED = (
    "{feature} is not implemented by the alcove Python SDK yet; where the server serves it, the "
    "official tensorlake SDK (SandboxClient.for_localhost(api_url=...)) can drive it in the meantime"
)
