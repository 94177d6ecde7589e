"""Persistent volumes ("file systems", docs/volumes.md): create, list, get, delete, and mounts
into sandboxes (attach, detach)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from .._config import ClientConfig
from ..models import FileSystemInfo, FileSystemMount, SandboxInfo
from ._errors import _json, _list, _model, check
from ._routing import _identifier, _lifecycle, namespace_url, sandboxes_url
from ._routing import _segment
from ._steps import Op, _send
from ._validation import _is_int


def file_systems_url(cfg: ClientConfig, name: str | None = None) -> str:
    url = f"{namespace_url(cfg)}/file-systems"
    if name is not None:
        url += f"/{_segment(name)}"
    return url


def mount_body(
    file_system_id: str,
    mount_path: str,
    read_only: bool = False,
) -> dict[str, Any]:
    """One ``FileSystemMount`` body, after client-side checks (the server checks the rest)."""
    if not isinstance(file_system_id, str) or not file_system_id.strip():
        raise ValueError(f"file_system_id must be a non-empty string, got {file_system_id!r}")
    if not isinstance(mount_path, str) or not mount_path.startswith("/"):
        raise ValueError(f"mount_path must be an absolute path, got {mount_path!r}")
    return FileSystemMount(file_system_id=file_system_id, mount_path=mount_path, read_only=bool(read_only)).to_wire()


def mounts_body(mounts: Iterable[FileSystemMount | dict[str, Any]]) -> list[dict[str, Any]]:
    """The ``file_systems`` list of a create body: models or dicts with the same fields."""
    out = []
    for m in mounts:
        model = m if isinstance(m, FileSystemMount) else FileSystemMount.model_validate(m)
        out.append(mount_body(model.file_system_id, model.mount_path, model.read_only) | model.to_wire())
    return out


def op_create_file_system(cfg: ClientConfig, name: str, size_mb: int) -> Op[FileSystemInfo]:
    name = _identifier(name, "name")
    if not _is_int(size_mb) or size_mb <= 0:
        raise ValueError(f"size_mb must be a positive integer, got {size_mb!r}")
    resp = yield from _send(
        _lifecycle(cfg, "POST", file_systems_url(cfg), json={"name": name, "size_mb": size_mb})
    )
    check(resp)
    return _model(FileSystemInfo, _json(resp, "file system"), "file system")


def op_list_file_systems(cfg: ClientConfig) -> Op[list[FileSystemInfo]]:
    resp = yield from _send(_lifecycle(cfg, "GET", file_systems_url(cfg)))
    check(resp)
    return _list(_json(resp, "file system list"), "file_systems", FileSystemInfo, "file system list")


def op_get_file_system(cfg: ClientConfig, name: str) -> Op[FileSystemInfo]:
    name = _identifier(name, "name")
    resp = yield from _send(_lifecycle(cfg, "GET", file_systems_url(cfg, name)))
    check(resp)
    return _model(FileSystemInfo, _json(resp, "file system"), "file system")


def op_delete_file_system(cfg: ClientConfig, name: str) -> Op[None]:
    name = _identifier(name, "name")
    resp = yield from _send(_lifecycle(cfg, "DELETE", file_systems_url(cfg, name)))
    check(resp)


def op_attach_file_system(
    cfg: ClientConfig, identifier: str, file_system_id: str, mount_path: str, read_only: bool = False
) -> Op[SandboxInfo]:
    identifier = _identifier(identifier)
    body = mount_body(file_system_id, mount_path, read_only)
    resp = yield from _send(
        _lifecycle(cfg, "POST", sandboxes_url(cfg, identifier, "/file_systems"), json=body)
    )
    # Not scoped to the sandbox: a 404 may name the volume as well.
    check(resp)
    return _model(SandboxInfo, _json(resp, "sandbox"), "sandbox")


def op_detach_file_system(cfg: ClientConfig, identifier: str, mount_path: str) -> Op[SandboxInfo]:
    identifier = _identifier(identifier)
    if not isinstance(mount_path, str) or not mount_path.startswith("/"):
        raise ValueError(f"mount_path must be an absolute path, got {mount_path!r}")
    resp = yield from _send(
        _lifecycle(
            cfg, "DELETE", sandboxes_url(cfg, identifier, "/file_systems"), json={"mount_path": mount_path}
        )
    )
    # Not scoped to the sandbox: a 404 may name the volume as well.
    check(resp)
    return _model(SandboxInfo, _json(resp, "sandbox"), "sandbox")
