"""Headers and URLs: the control plane's URLs, and reaching a sandbox's agent through the proxy."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit

import httpx

from ..._version import __version__
from .._config import ClientConfig
from ..exceptions import RemoteAPIError, SandboxNotFoundError, SandboxNotRoutableError
from ..models import SandboxInfo
from ._errors import error_from_response
from ._steps import Op, Request, _send

USER_AGENT = f"alcove-python-sdk/{__version__}"


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


def archived_url(cfg: ClientConfig, sandbox_id: str | None = None) -> str:
    url = f"{namespace_url(cfg)}/archived-sandboxes"
    if sandbox_id is not None:
        url += f"/{_segment(sandbox_id)}"
    return url


def snapshots_url(cfg: ClientConfig, snapshot_id: str | None = None) -> str:
    url = f"{namespace_url(cfg)}/snapshots"
    if snapshot_id is not None:
        url += f"/{_segment(snapshot_id)}"
    return url


def pools_url(cfg: ClientConfig, pool_id: str | None = None, suffix: str = "") -> str:
    url = f"{namespace_url(cfg)}/sandbox-pools"
    if pool_id is not None:
        url += f"/{_segment(pool_id)}"
    return url + suffix


def _lifecycle(cfg: ClientConfig, method: str, url: str, **kwargs: Any) -> Request:
    headers = base_headers(cfg)
    headers.update(kwargs.pop("headers", {}))
    return Request(method, url, headers=headers, **kwargs)


@dataclass(frozen=True)
class ProxyTarget:
    """Where and how to reach one sandbox's agent API through the proxy (docs/protocol/proxy.md)."""

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


def _open(req: Request, target: ProxyTarget) -> Op[httpx.Response]:
    resp = yield from _send(req)
    _proxy_check(resp, target)
    return resp
