"""Responses and errors: error bodies mapped to exceptions, JSON and model decoding."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx
from pydantic import BaseModel, ValidationError

from .._config import ClientConfig
from ..exceptions import (
    AuthenticationError,
    ImageBuildError,
    ImageInUseError,
    ImageNotFoundError,
    PoolAtCapacityError,
    PoolInUseError,
    PoolNotFoundError,
    RegistryAuthenticationError,
    RegistryError,
    RemoteAPIError,
    SandboxConnectionError,
    SandboxError,
    SandboxException,
    SandboxNameConflictError,
    SandboxNotFoundError,
    SandboxTimeoutError,
    SnapshotNotFoundError,
)

M = TypeVar("M", bound=BaseModel)


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
    """Read an error body: ``{"message","code"}`` (control plane), ``{"error","code"}`` (agent) or text."""
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


# Codes only the image routes answer, whatever the status (docs/images.md).
IMAGE_ERRORS: dict[str, type[RemoteAPIError]] = {
    "IMAGE_IN_USE": ImageInUseError,
    "BUILD_FAILED": ImageBuildError,
    "REGISTRY_ERROR": RegistryError,
    "REGISTRY_UNAUTHORIZED": RegistryAuthenticationError,
}

# 403 codes of a sandbox's agent that refuse what a call asks of the sandbox's files or users,
# not the caller's credentials: plain RemoteAPIError, not AuthenticationError.
SANDBOX_REFUSALS = frozenset({"PATH_TRAVERSAL", "PERMISSION_DENIED"})

# Codes only the pool routes answer, whatever the status (the pool routes of docs/protocol/openapi.json).
POOL_ERRORS: dict[str, type[RemoteAPIError]] = {
    "POOL_IN_USE": PoolInUseError,
    "POOL_AT_CAPACITY": PoolAtCapacityError,
}


# Codes of a 409 to a create or claim that is not about the name (a volume held elsewhere, a
# snapshot's source busy): any other 409 there, a server's own code included, is a held name.
OTHER_CONFLICTS = frozenset({"INVALID_STATE", "FILE_SYSTEM_IN_USE", "OPERATION_REFUSED"})


def error_from_response(
    resp: httpx.Response,
    *,
    sandbox: str | None = None,
    snapshot: bool = False,
    create: bool = False,
    image: bool = False,
    pool: bool = False,
) -> SandboxException:
    """Map a non-2xx response to the right exception.

    ``sandbox`` names the sandbox of a sandbox-scoped call (its 404 becomes
    :class:`SandboxNotFoundError`); ``snapshot`` marks snapshot calls; ``create`` marks create
    and claims (their 409 becomes :class:`SandboxNameConflictError`, unless its code says it is
    about something else than the name); ``image`` marks image calls
    and pool creation (their 404 becomes :class:`ImageNotFoundError`); ``pool`` marks calls on
    one pool (their 404 becomes :class:`PoolNotFoundError`, or :class:`ImageNotFoundError` when
    the server names the image it lacks).
    """
    body = _error_body(resp)
    return api_error(
        resp.status_code, body, sandbox=sandbox, snapshot=snapshot, create=create, image=image, pool=pool
    )


def api_error(
    status: int,
    body: ErrorBody,
    *,
    sandbox: str | None = None,
    snapshot: bool = False,
    create: bool = False,
    image: bool = False,
    pool: bool = False,
) -> SandboxException:
    """The exception of an error answer with this status and body (see :func:`error_from_response`);
    also used for the ``error`` event of an image event stream."""
    if status == 404 and sandbox is not None:
        return SandboxNotFoundError(sandbox, body.message, body.code)
    cls = RemoteAPIError
    if body.code in IMAGE_ERRORS:
        cls = IMAGE_ERRORS[body.code]
    elif body.code in POOL_ERRORS:
        cls = POOL_ERRORS[body.code]
    elif status == 404 and pool and body.message.startswith("image "):
        # An update naming an unknown image is a 404 too; the server's message names the image.
        cls = ImageNotFoundError
    elif status == 404 and pool and not body.message.startswith("file system "):
        # (A claim naming an unknown volume is a 404 too: a plain RemoteAPIError.)
        cls = PoolNotFoundError
    elif status == 404 and snapshot:
        cls = SnapshotNotFoundError
    elif status == 404 and image:
        cls = ImageNotFoundError
    elif status == 409 and create and body.code not in OTHER_CONFLICTS:
        cls = SandboxNameConflictError
    elif status == 401 or (status == 403 and body.code not in SANDBOX_REFUSALS):
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


def transport_error(
    exc: httpx.HTTPError,
    method: str,
    url: str,
    cfg: ClientConfig | None = None,
    *,
    events: bool = False,
) -> SandboxException:
    """Map an httpx failure to :class:`SandboxTimeoutError` or :class:`SandboxConnectionError`.

    A timeout names the client setting to raise: ``stream_idle_timeout`` on an event stream
    (``events``), else ``timeout``.
    """
    if isinstance(exc, (httpx.ReadTimeout, httpx.WriteTimeout, httpx.PoolTimeout)):
        if events:
            idle = f"{cfg.stream_idle_timeout_secs:g}s" if cfg and cfg.stream_idle_timeout_secs else "too long"
            return SandboxTimeoutError(
                f"{method} {url}: the sandbox sent nothing for {idle} (its agent sends a keep-alive every 15s, "
                "so it is stopped or unreachable); raise the client's stream_idle_timeout= to wait longer, "
                "or pass stream_idle_timeout=None to wait forever",
                parameter="stream_idle_timeout",
            )
        limit = f" within {cfg.timeout_secs:g}s" if cfg else ""
        return SandboxTimeoutError(
            f"{method} {url}: timed out, no answer{limit} ({exc or type(exc).__name__}); "
            "raise the client's timeout= to wait longer",
            parameter="timeout",
        )
    return SandboxConnectionError(f"{method} {url}: {exc or type(exc).__name__}")


NOT_IMPLEMENTED = (
    "{feature} is not implemented by the alcove Python SDK yet; where the server serves it, the "
    "official tensorlake SDK (SandboxClient.for_localhost(api_url=...)) can drive it in the meantime"
)
