"""Nodes (server-wide): the Alcove servers sharing the server's store, and taking one out of
service for maintenance (docs/operations.md, Nodes).

The routes are the server's own, outside any namespace: ``{api_url}/nodes``,
``{api_url}/nodes/{node}/drain`` and ``{api_url}/nodes/{node}/activate`` (see
docs/protocol/openapi.json, tag ``nodes``). Draining and activating set the node's state, so
sending either twice does no harm; like every POST they are not retried on 503 (a 503
``STORE_UNAVAILABLE`` changed nothing: call again).
"""

from __future__ import annotations

from typing import Any

from .._config import ClientConfig
from ..models import NodeInfo
from ._errors import _json, _list, _model, check
from ._routing import _lifecycle, _segment
from ._steps import Op, _send


def node_name(value: Any) -> str:
    """A node name checked for use as a URL path segment: a non-empty string, not ``.`` or ``..``
    (which a URL would resolve to another route)."""
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"name must be a non-empty node name, got {value!r}")
    if value in (".", ".."):
        raise ValueError(f"name must be a node name, not a '.' or '..' path segment, got {value!r}")
    return value


def nodes_url(cfg: ClientConfig, name: str | None = None, suffix: str = "") -> str:
    """``{api_url}/nodes`` or ``{api_url}/nodes/{name}`` + ``suffix``: not under a namespace."""
    url = f"{cfg.api_url}/nodes"
    if name is not None:
        url += f"/{_segment(name)}"
    return url + suffix


def op_list_nodes(cfg: ClientConfig) -> Op[list[NodeInfo]]:
    resp = yield from _send(_lifecycle(cfg, "GET", nodes_url(cfg)))
    check(resp)
    return _list(_json(resp, "node list"), "nodes", NodeInfo, "node list")


def op_drain_node(cfg: ClientConfig, name: str) -> Op[NodeInfo]:
    return (yield from _set_state(cfg, name, "drain"))


def op_activate_node(cfg: ClientConfig, name: str) -> Op[NodeInfo]:
    return (yield from _set_state(cfg, name, "activate"))


def _set_state(cfg: ClientConfig, name: str, verb: str) -> Op[NodeInfo]:
    """``POST {api_url}/nodes/{name}/{verb}``: the node as changed. An unknown node is
    :class:`RemoteAPIError` 404 ``NOT_FOUND``."""
    name = node_name(name)
    resp = yield from _send(_lifecycle(cfg, "POST", nodes_url(cfg, name, f"/{verb}"), content=b""))
    check(resp)
    return _model(NodeInfo, _json(resp, "node"), "node")
