"""Sandbox agent: files (write, with streamed uploads; read; list; delete)."""

from __future__ import annotations

import inspect
import io
import os
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator
from typing import Any

import httpx

from .._config import ClientConfig
from ..models import DirectoryEntry
from ._errors import _json, _list
from ._routing import ProxyTarget, _open, _proxied, _proxy_op
from ._steps import Op, Upload

UPLOAD_CHUNK_BYTES = 64 * 1024


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


SEND_SLICE_BYTES = 1024 * 1024
"""The sync client sends an in-memory body larger than this in slices of this size."""


def sliced_body(content: bytes | None, headers: dict[str, str]) -> Any:
    """``content`` as the sync client sends it: a large body in slices (with its
    ``Content-Length`` set, so that it is not sent chunked), a small one as it is.

    httpcore's sync socket writes a body with ``buffer = buffer[sent:]`` after every partial send,
    a copy of all that is left each time: a 256 MiB ``write_file`` took 2-3 s instead of 0.4."""
    if content is None or len(content) <= SEND_SLICE_BYTES:
        return content
    headers["Content-Length"] = str(len(content))
    view = memoryview(content)
    return (view[at : at + SEND_SLICE_BYTES] for at in range(0, len(content), SEND_SLICE_BYTES))


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
