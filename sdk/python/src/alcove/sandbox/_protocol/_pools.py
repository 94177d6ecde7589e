"""Warm pools: create, get, list, update and delete a pool, and claim one of its sandboxes.

The routes are ``{B}/sandbox-pools`` (see docs/protocol/openapi.json, tag ``pools``). A claim is
answered like a blocking create; the claimed sandbox is then read back as :func:`op_create` does.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from typing import Any

from .._config import ClientConfig
from ..exceptions import SandboxError
from ..models import NetworkPolicy, SandboxInfo, SandboxPoolInfo
from ._errors import _json, _list, _model, check
from ._file_systems import mounts_body
from ._lifecycle import (
    DEFAULT_CPUS,
    DEFAULT_MEMORY_MB,
    _create_answer,
    _create_headers,
    _node_selector,
    _until_running,
)
from ._routing import _lifecycle, pools_url
from ._steps import Op, _send
from ._validation import _is_int, _is_number, _str_list

MAX_WARM_CONTAINERS = 64
"""Most idle sandboxes one pool keeps started (``warm_containers``; the server's default is 1)."""
MAX_POOL_CONTAINERS = 1000
"""Most sandboxes one pool may have at once, idle and claimed (``max_containers``)."""

NetworkArg = NetworkPolicy | Mapping[str, Any]
"""An outbound policy given to a pool or a claim: a :class:`NetworkPolicy`, or a mapping with
its keys ``allow_internet_access``, ``allow_out`` and ``deny_out`` (each optional)."""

_NETWORK_KEYS = ("allow_internet_access", "allow_out", "deny_out")


def _pool_id(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"pool_id must be a non-empty string, got {value!r}")
    return value


def network_body(network: Any) -> dict[str, Any]:
    """The wire ``network`` object of a :data:`NetworkArg`, after client-side checks."""
    if isinstance(network, NetworkPolicy):
        data: Mapping[str, Any] = network.model_dump(include=set(_NETWORK_KEYS))
    elif isinstance(network, Mapping):
        data = network
    else:
        raise ValueError(f"network must be a NetworkPolicy or a mapping, got {network!r}")
    unknown = set(data) - set(_NETWORK_KEYS)
    if unknown:
        raise ValueError(f"network takes only {', '.join(_NETWORK_KEYS)}, got {sorted(unknown)}")
    body: dict[str, Any] = {}
    if "allow_internet_access" in data:
        if not isinstance(data["allow_internet_access"], bool):
            raise ValueError(f"allow_internet_access must be a bool, got {data['allow_internet_access']!r}")
        body["allow_internet_access"] = data["allow_internet_access"]
    for key in ("allow_out", "deny_out"):
        if key in data and data[key] is not None:
            body[key] = _str_list(data[key], f"network {key}")
    return body


def pool_body(
    *,
    image: str | None,
    cpus: float,
    memory_mb: int,
    disk_mb: int | None,
    timeout_secs: int,
    entrypoint: Iterable[str] | None,
    max_containers: int | None,
    warm_containers: int | None,
    network: NetworkArg | None,
    node_selector: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The JSON body of ``POST`` and ``PUT {B}/sandbox-pools[/{pool}]``, after client-side checks.

    ``network`` ``None`` is left out (on create: the open policy; on update: the current one).
    ``node_selector`` (an Alcove extension, sent only when it has pairs, checked as
    :func:`create_body` checks it) limits the pool's sandboxes to nodes whose labels include every
    pair; left out, any node (on update too: the ``PUT`` replaces it).
    """
    if not _is_number(cpus) or cpus <= 0:
        raise ValueError(f"cpus must be a positive number, got {cpus!r}")
    if not _is_int(memory_mb) or memory_mb <= 0:
        raise ValueError(f"memory_mb must be a positive integer, got {memory_mb!r}")
    if disk_mb is not None and (not _is_int(disk_mb) or disk_mb <= 0):
        raise ValueError(f"disk_mb must be a positive integer, got {disk_mb!r}")
    if not _is_int(timeout_secs) or timeout_secs < 0:
        raise ValueError(f"timeout_secs must be a non-negative integer, got {timeout_secs!r}")
    if image is not None and (not isinstance(image, str) or not image.strip()):
        raise ValueError(f"image must be a non-empty string, got {image!r}")
    if warm_containers is not None and (
        not _is_int(warm_containers) or not 1 <= warm_containers <= MAX_WARM_CONTAINERS
    ):
        raise ValueError(f"warm_containers must be an integer from 1 to {MAX_WARM_CONTAINERS}, got {warm_containers!r}")
    if max_containers is not None and (not _is_int(max_containers) or not 1 <= max_containers <= MAX_POOL_CONTAINERS):
        raise ValueError(f"max_containers must be an integer from 1 to {MAX_POOL_CONTAINERS}, got {max_containers!r}")
    if max_containers is not None and (warm_containers or 1) > max_containers:
        raise ValueError(f"warm_containers ({warm_containers or 1}) must not exceed max_containers ({max_containers})")
    command = _str_list(entrypoint, "entrypoint") if entrypoint is not None else []
    selector = _node_selector(node_selector) if node_selector is not None else {}

    resources: dict[str, Any] = {"cpus": float(cpus), "memory_mb": memory_mb}
    if disk_mb is not None:
        resources["disk_mb"] = disk_mb
    body: dict[str, Any] = {"resources": resources, "timeout_secs": timeout_secs}
    if image is not None:
        body["image"] = image
    if command:
        body["entrypoint"] = command
    if max_containers is not None:
        body["max_containers"] = max_containers
    if warm_containers is not None:
        body["warm_containers"] = warm_containers
    if network is not None:
        body["network"] = network_body(network)
    if selector:
        body["node_selector"] = selector
    return body


def claim_body(
    *,
    name: str | None,
    env: Mapping[str, str] | None,
    secret_names: Iterable[str] | None,
    network: NetworkArg | None,
    file_systems: Iterable[Any] | None,
) -> dict[str, Any]:
    """The JSON body of a claim, ``POST {B}/sandbox-pools/{pool}/sandboxes``: only what is given."""
    body: dict[str, Any] = {}
    if name is not None:
        if not isinstance(name, str) or not name.strip():
            raise ValueError(f"name must be a non-empty string, got {name!r}")
        body["name"] = name
    if env is not None:
        if not isinstance(env, Mapping) or not all(isinstance(k, str) and isinstance(v, str) for k, v in env.items()):
            raise ValueError(f"env must map variable names to string values, got {env!r}")
        if env:
            body["env"] = dict(env)
    if secret_names is not None:
        secrets = _str_list(secret_names, "secret_names")
        if secrets:
            body["secret_names"] = secrets
    if network is not None:
        body["network"] = network_body(network)
    if file_systems is not None:
        if isinstance(file_systems, (str, bytes, Mapping)) or not isinstance(file_systems, Iterable):
            raise ValueError(f"file_systems must be a list, got {file_systems!r}")
        volumes = list(file_systems)
        if volumes:
            body["file_systems"] = mounts_body(volumes)
    return body


def _pool_model(resp: Any) -> SandboxPoolInfo:
    return _model(SandboxPoolInfo, _json(resp, "pool"), "pool")


def op_create_pool(cfg: ClientConfig, body: dict[str, Any]) -> Op[SandboxPoolInfo]:
    """POST the pool (a 404 is an unknown image), then read it back with its containers."""
    resp = yield from _send(_lifecycle(cfg, "POST", pools_url(cfg), json=body, replayable=False))
    check(resp, image=True)
    answer = _json(resp, "create pool answer")
    pool_id = answer.get("pool_id") if isinstance(answer, dict) else None
    if not isinstance(pool_id, str) or not pool_id:
        raise SandboxError("decoding create pool answer: missing field `pool_id`")
    return (yield from op_get_pool(cfg, pool_id))


def op_get_pool(cfg: ClientConfig, pool_id: str) -> Op[SandboxPoolInfo]:
    pool_id = _pool_id(pool_id)
    resp = yield from _send(_lifecycle(cfg, "GET", pools_url(cfg, pool_id)))
    check(resp, pool=True)
    return _pool_model(resp)


def op_list_pools(cfg: ClientConfig) -> Op[list[SandboxPoolInfo]]:
    resp = yield from _send(_lifecycle(cfg, "GET", pools_url(cfg)))
    check(resp)
    return _list(_json(resp, "pool list"), "pools", SandboxPoolInfo, "pool list")


def op_update_pool(cfg: ClientConfig, pool_id: str, body: dict[str, Any]) -> Op[SandboxPoolInfo]:
    pool_id = _pool_id(pool_id)
    resp = yield from _send(_lifecycle(cfg, "PUT", pools_url(cfg, pool_id), json=body))
    check(resp, pool=True)
    return _pool_model(resp)


def op_delete_pool(cfg: ClientConfig, pool_id: str) -> Op[None]:
    pool_id = _pool_id(pool_id)
    resp = yield from _send(_lifecycle(cfg, "DELETE", pools_url(cfg, pool_id)))
    check(resp, pool=True)


def op_claim(cfg: ClientConfig, pool_id: str, body: dict[str, Any]) -> Op[SandboxInfo]:
    """Claim a sandbox of the pool (sent once, never replayed), then read it back, waiting while
    it is pending as :func:`op_create` does."""
    pool_id = _pool_id(pool_id)
    deadline = time.monotonic() + cfg.timeout_secs
    resp = yield from _send(
        _lifecycle(
            cfg,
            "POST",
            pools_url(cfg, pool_id, "/sandboxes"),
            json=body,
            headers=_create_headers(cfg),
            replayable=False,
        )
    )
    return (yield from _until_running(cfg, _create_answer(resp, pool=True), deadline))

