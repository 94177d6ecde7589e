"""Images (server-wide): list, get, delete, pull, import, build, and snapshots saved as images.

Pulls and builds block until the image is stored, or, asked with ``Accept: text/event-stream``,
answer an event stream of their progress; :class:`ImageProgressCollector` decodes it into typed
events (:data:`~alcove.sandbox.models.ImageProgressEvent`) and its ``done`` or ``error`` event
into the result. Archives (imports, build contexts) are streamed from open files.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import IO, Any
from urllib.parse import quote

import httpx

from .._config import ClientConfig
from ..exceptions import SandboxConnectionError
from ..models import (
    IMAGE_PROGRESS_EVENTS,
    DeleteImageResult,
    ImageDoneEvent,
    ImageErrorEvent,
    ImageInfo,
    ImageProgressEvent,
)
from ._errors import ErrorBody, _json, _list, _model, api_error, check
from ._files import _remaining_length
from ._routing import _identifier, _lifecycle, namespace_url, snapshots_url
from ._sse import Event, SSEBlocks, decode_block
from ._steps import Op, Request, Upload, _send

EVENT_STREAM_HEADERS = {"Accept": "text/event-stream"}
TAR_CONTENT_TYPE = "application/x-tar"
DEFAULT_DOCKERFILE = "Dockerfile"

# A reference keeps these as they are in the URL path (with the unreserved characters).
_REFERENCE_SAFE = "/:@"


def image_reference(value: Any, what: str = "ref") -> str:
    """A reference or id checked for use in a URL path: not empty, without whitespace or ``.`` /
    ``..`` segments (which a URL would resolve to another route)."""
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{what} must be a non-empty image reference or id, got {value!r}")
    if any(ch.isspace() for ch in value):
        raise ValueError(f"{what} must not contain whitespace, got {value!r}")
    if any(part in (".", "..") for part in value.split("/")):
        raise ValueError(f"{what} must not contain '.' or '..' path segments, got {value!r}")
    return value


def images_url(cfg: ClientConfig, reference: str | None = None, suffix: str = "") -> str:
    """``{B}/images``, ``{B}/images/{ref}`` (the reference percent-encoded but for ``/ : @``) or
    ``{B}/images`` + ``suffix``."""
    url = f"{namespace_url(cfg)}/images"
    if reference is not None:
        url += "/" + quote(image_reference(reference), safe=_REFERENCE_SAFE)
    return url + suffix


def _image_name(value: Any, what: str = "name") -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{what} must be a non-empty image reference (name:tag), got {value!r}")
    if any(ch.isspace() for ch in value):
        raise ValueError(f"{what} must not contain whitespace, got {value!r}")
    return value


def _optional_text(value: Any, what: str, *, secret: bool = False) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        shown = "a value of another type" if secret else repr(value)
        raise ValueError(f"{what} must be a non-empty string, got {shown}")
    return value


# ---------------------------------------------------------------------------------------------
# List, get, delete


def op_list_images(cfg: ClientConfig) -> Op[list[ImageInfo]]:
    resp = yield from _send(_lifecycle(cfg, "GET", images_url(cfg)))
    check(resp, image=True)
    return _list(_json(resp, "image list"), "images", ImageInfo, "image list")


def op_get_image(cfg: ClientConfig, reference: str) -> Op[ImageInfo]:
    resp = yield from _send(_lifecycle(cfg, "GET", images_url(cfg, reference)))
    check(resp, image=True)
    return _model(ImageInfo, _json(resp, "image"), "image")


def op_delete_image(cfg: ClientConfig, reference: str) -> Op[DeleteImageResult]:
    resp = yield from _send(_lifecycle(cfg, "DELETE", images_url(cfg, reference)))
    check(resp, image=True)
    return _model(DeleteImageResult, _json(resp, "image deletion"), "image deletion")


# ---------------------------------------------------------------------------------------------
# Pull


def pull_body(
    reference: Any,
    name: Any = None,
    username: Any = None,
    password: Any = None,
    auth_secret: Any = None,
) -> dict[str, Any]:
    """The JSON body of ``POST {B}/images/pull``, after client-side checks (which never show the
    password)."""
    body: dict[str, Any] = {"reference": _image_name(reference, "reference")}
    if name is not None:
        body["name"] = _image_name(name)
    user = _optional_text(username, "username")
    secret = _optional_text(password, "password", secret=True)
    if (user is None) != (secret is None):
        raise ValueError("username and password go together: pass both, or neither")
    auth = _optional_text(auth_secret, "auth_secret")
    if auth is not None and user is not None:
        raise ValueError("pass username and password, or auth_secret, not both")
    if user is not None:
        body["username"] = user
        body["password"] = secret
    if auth is not None:
        body["auth_secret"] = auth
    return body


def _image_request(cfg: ClientConfig, url: str, *, events: bool, **kwargs: Any) -> Request:
    headers: dict[str, str] = dict(kwargs.pop("headers", {}))
    if events:
        headers.update(EVENT_STREAM_HEADERS)
    return _lifecycle(cfg, "POST", url, headers=headers, stream=events, events=events, replayable=False, **kwargs)


def op_pull_image(cfg: ClientConfig, body: dict[str, Any]) -> Op[ImageInfo]:
    """``POST {B}/images/pull`` without progress: the answer comes when the image is stored."""
    resp = yield from _send(_image_request(cfg, images_url(cfg, suffix="/pull"), json=body, events=False))
    check(resp, image=True)
    return _model(ImageInfo, _json(resp, "pulled image"), "pulled image")


def op_open_pull_image(cfg: ClientConfig, body: dict[str, Any]) -> Op[httpx.Response]:
    """``POST {B}/images/pull`` as an event stream: returns the open 2xx response."""
    resp = yield from _send(_image_request(cfg, images_url(cfg, suffix="/pull"), json=body, events=True))
    check(resp, image=True)
    return resp


# ---------------------------------------------------------------------------------------------
# Import and build (streamed archives)


def _archive_upload(archive: IO[bytes]) -> Upload:
    return Upload(archive, _remaining_length(archive))


def op_import_image(cfg: ClientConfig, archive: IO[bytes], name: str | None) -> Op[ImageInfo]:
    """``POST {B}/images/import``: a ``docker save`` archive or an OCI layout tarball (optionally
    gzipped), streamed from the open file ``archive``."""
    params = {"name": _image_name(name)} if name is not None else None
    req = _image_request(
        cfg,
        images_url(cfg, suffix="/import"),
        params=params,
        upload=_archive_upload(archive),
        headers={"Content-Type": TAR_CONTENT_TYPE},
        events=False,
    )
    resp = yield from _send(req)
    check(resp, image=True)
    return _model(ImageInfo, _json(resp, "imported image"), "imported image")


def build_params(
    name: Any,
    dockerfile: Any = DEFAULT_DOCKERFILE,
    build_args: Mapping[str, str] | None = None,
    no_cache: bool = False,
    allow_internet: bool = True,
) -> list[tuple[str, str]]:
    """The query of ``POST {B}/images/build``: ``build_arg`` once per argument; ``dockerfile``,
    ``no_cache`` and ``allow_internet`` only when they are not the server's defaults."""
    params = [("name", _image_name(name))]
    if dockerfile != DEFAULT_DOCKERFILE:
        params.append(("dockerfile", dockerfile_path(dockerfile)))
    if build_args is not None:
        if not isinstance(build_args, Mapping):
            raise TypeError(f"build_args must map names to values, got {type(build_args).__name__}")
        for key, value in build_args.items():
            if not isinstance(key, str) or not key or "=" in key or any(ch.isspace() for ch in key):
                raise ValueError(f"build argument names are non-empty, without '=' or whitespace, got {key!r}")
            if not isinstance(value, str):
                raise TypeError(f"build argument {key} must be a string, got {type(value).__name__}")
            params.append(("build_arg", f"{key}={value}"))
    if no_cache:
        params.append(("no_cache", "true"))
    if not allow_internet:
        params.append(("allow_internet", "false"))
    return params


def dockerfile_path(value: Any) -> str:
    """The Dockerfile's path inside a build context: relative, inside it, ``/``-separated."""
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"dockerfile must be a non-empty path inside the context, got {value!r}")
    path = value.replace(os.sep, "/")
    parts = [part for part in path.split("/") if part not in ("", ".")]
    if path.startswith("/") or not parts or ".." in parts:
        raise ValueError(f"dockerfile must be a relative path inside the context, got {value!r}")
    return "/".join(parts)


def op_build_image(cfg: ClientConfig, context: IO[bytes], params: list[tuple[str, str]]) -> Op[ImageInfo]:
    """``POST {B}/images/build`` without progress, with the build context tar streamed from ``context``."""
    resp = yield from _send(_build_request(cfg, context, params, events=False))
    check(resp, image=True)
    return _model(ImageInfo, _json(resp, "built image"), "built image")


def op_open_build_image(cfg: ClientConfig, context: IO[bytes], params: list[tuple[str, str]]) -> Op[httpx.Response]:
    """``POST {B}/images/build`` as an event stream: returns the open 2xx response."""
    resp = yield from _send(_build_request(cfg, context, params, events=True))
    check(resp, image=True)
    return resp


def _build_request(cfg: ClientConfig, context: IO[bytes], params: list[tuple[str, str]], *, events: bool) -> Request:
    return _image_request(
        cfg,
        images_url(cfg, suffix="/build"),
        params=params,
        upload=_archive_upload(context),
        headers={"Content-Type": TAR_CONTENT_TYPE},
        events=events,
    )


# ---------------------------------------------------------------------------------------------
# Snapshots saved as images


def op_save_snapshot_as_image(cfg: ClientConfig, snapshot_id: str, name: str) -> Op[ImageInfo]:
    """``POST {B}/snapshots/{id}/image``: a filesystem snapshot stored as the image ``name``."""
    snapshot_id = _identifier(snapshot_id, "snapshot_id")
    body = {"name": _image_name(name)}
    req = _lifecycle(cfg, "POST", snapshots_url(cfg, snapshot_id) + "/image", json=body, replayable=False)
    resp = yield from _send(req)
    check(resp, snapshot=True, image=True)
    return _model(ImageInfo, _json(resp, "snapshot image"), "snapshot image")


# ---------------------------------------------------------------------------------------------
# Progress event streams


def image_progress_event(data: Event) -> ImageProgressEvent | None:
    """The typed event of one event's JSON object; None for an event this SDK does not know."""
    model = IMAGE_PROGRESS_EVENTS.get(data.get("event")) if isinstance(data.get("event"), str) else None
    if model is None:
        return None
    event: ImageProgressEvent = _model(model, data, f"image progress event {data['event']!r}")  # type: ignore[assignment]
    return event


class ImageProgressCollector:
    """Decodes the event stream of a pull or build into typed events and its result.

    Feed it the body's chunks with :meth:`feed` (each call answers the events it completed, to
    pass on) until :attr:`finished` or the end of the stream, then :meth:`close` (the events of
    an unterminated last block), then :meth:`result`: the image of the ``done`` event, or the
    exception of the ``error`` event raised. Events after either are ignored.
    """

    def __init__(self, what: str) -> None:
        self._what = what
        self._blocks = SSEBlocks()
        self._done: ImageDoneEvent | None = None
        self._error: ImageErrorEvent | None = None

    @property
    def finished(self) -> bool:
        """Whether the ``done`` or ``error`` event arrived (stop reading then)."""
        return self._done is not None or self._error is not None

    def feed(self, chunk: bytes) -> list[ImageProgressEvent]:
        block = self._blocks.feed(chunk)
        return [] if block is None else self._take(block)

    def close(self) -> list[ImageProgressEvent]:
        return [] if self.finished else self._take(self._blocks.close())

    def _take(self, block: bytes) -> list[ImageProgressEvent]:
        events: list[ImageProgressEvent] = []
        for data in decode_block(block):
            if self.finished:
                break
            event = image_progress_event(data)
            if event is None:
                continue
            if isinstance(event, ImageDoneEvent):
                self._done = event
            elif isinstance(event, ImageErrorEvent):
                self._error = event
            events.append(event)
        return events

    def result(self) -> ImageInfo:
        """The stored image; raises the mapped exception of an ``error`` event (with its ``code``),
        or :class:`SandboxConnectionError` when the stream ended without either."""
        if self._error is not None:
            error = self._error
            raise api_error(error.status, ErrorBody(error.message or f"{self._what} failed", error.code), image=True)
        if self._done is None:
            raise SandboxConnectionError(f"the {self._what} event stream ended before its done event")
        return self._done.image
