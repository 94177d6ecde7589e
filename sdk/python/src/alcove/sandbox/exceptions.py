"""Exceptions raised by the Alcove sandbox SDK.

Every exception the SDK raises on purpose derives from :class:`SandboxException`, so one
``except SandboxException`` catches them all. Bad arguments detected before anything is sent
raise the built-in :class:`ValueError` / :class:`TypeError` instead.

Hierarchy::

    SandboxException
    └── SandboxError
        ├── SandboxResizeError            (a live resize failed or was not seen in time)
        ├── SandboxNotFoundError          (404 on a sandbox-scoped call)
        ├── RemoteAPIError                (any other non-2xx answer)
        │   ├── SandboxNameConflictError  (409 on create or claim: the name is held by a live sandbox)
        │   ├── SnapshotNotFoundError     (404 on a snapshot call)
        │   ├── PoolNotFoundError         (404 on a pool call: no such pool)
        │   ├── PoolInUseError            (409 POOL_IN_USE: sandboxes claimed from the pool still run)
        │   ├── PoolAtCapacityError       (429 POOL_AT_CAPACITY: no idle sandbox, max_containers reached)
        │   ├── AuthenticationError       (401 / 403, but for a sandbox's file and user refusals)
        │   ├── ImageNotFoundError        (404 on an image call: unknown image or reference)
        │   ├── ImageInUseError           (409 IMAGE_IN_USE: a sandbox or snapshot uses the image)
        │   ├── ImageBuildError           (422 BUILD_FAILED: a build step failed)
        │   └── RegistryError             (REGISTRY_ERROR: the registry failed or answered nonsense)
        │       └── RegistryAuthenticationError  (REGISTRY_UNAUTHORIZED: it refused the credentials)
        ├── SandboxConnectionError        (the server could not be reached, or a stream broke)
        ├── SandboxTimeoutError           (a client-side deadline passed; also a TimeoutError)
        ├── SandboxFailedError            (the sandbox failed or ended while we waited on it)
        └── SandboxNotRoutableError       (no sandbox_url: the sandbox cannot be reached)
"""

from __future__ import annotations

from typing import Any


class SandboxException(Exception):
    """Root of every exception raised by the Alcove SDK."""


class SandboxError(SandboxException):
    """An operation on a sandbox, snapshot or process failed."""


class SandboxResizeError(SandboxError):
    """A live resize failed, or its outcome could not be seen in time. ``reason`` is
    ``failed``, ``timeout``, ``superseded`` (a later resize replaced it) or
    ``incompatible_response`` (the server did not describe it); ``info`` is the sandbox as last
    seen, whose ``resources`` are the limits in force. A timeout does not cancel the resize:
    wait for ``generation`` again."""

    def __init__(self, sandbox_id: str, generation: int, reason: str, message: str, info: Any = None):
        super().__init__(f"sandbox {sandbox_id} resize generation {generation}: {message}")
        self.sandbox_id = sandbox_id
        self.generation = generation
        self.reason = reason
        self.info = info


class SandboxNotFoundError(SandboxError):
    """The sandbox (id or name) does not exist, or its name no longer resolves."""

    status_code = 404

    def __init__(self, sandbox_id: str, message: str | None = None, code: str | None = None):
        self.sandbox_id = sandbox_id
        self.message = message or f"sandbox {sandbox_id!r} not found"
        self.code = code
        text = self.message if sandbox_id in self.message else f"sandbox {sandbox_id!r}: {self.message}"
        super().__init__(text)


class RemoteAPIError(SandboxError):
    """The server answered with a non-2xx status.

    ``message`` is the server's own message (the ``message`` or ``error`` field of a JSON body,
    or the whole body when it is plain text); ``code`` is the JSON ``code`` field, when present;
    ``request_id`` is the id under which the server logged a 5xx failure, when it gave one.
    """

    def __init__(self, status_code: int, message: str, code: str | None = None, request_id: str | None = None):
        self.status_code = status_code
        self.message = message
        self.code = code
        self.request_id = request_id
        label = f"status {status_code}, {code}" if code else f"status {status_code}"
        # The server names the request in a 5xx message itself: not twice.
        suffix = f" (request {request_id})" if request_id and request_id not in message else ""
        super().__init__(f"API error ({label}): {message}{suffix}")


class SandboxNameConflictError(RemoteAPIError):
    """Create (or a claim) was refused with 409: the requested name is held by a live sandbox."""


class SnapshotNotFoundError(RemoteAPIError):
    """The snapshot does not exist (404 on a snapshot call)."""


class PoolNotFoundError(RemoteAPIError):
    """The sandbox pool does not exist in the namespace (404 on a pool call)."""


class PoolInUseError(RemoteAPIError):
    """The pool cannot be deleted: sandboxes claimed from it have not ended (409 ``POOL_IN_USE``;
    ``message`` names them). Delete them first."""


class PoolAtCapacityError(RemoteAPIError):
    """A claim found no idle sandbox in the pool, and the pool already has ``max_containers``
    sandboxes (429 ``POOL_AT_CAPACITY``). Retry once a claimed sandbox has ended."""


class AuthenticationError(RemoteAPIError):
    """The server refused the API key (401) or the caller's rights (403). A sandbox refusing a
    file or user (403 ``PATH_TRAVERSAL`` or ``PERMISSION_DENIED``) is a plain :class:`RemoteAPIError`.

    Set ``ALCOVE_API_KEY`` or pass ``api_key=`` to the client.
    """


class ImageNotFoundError(RemoteAPIError):
    """The image, or the reference to pull, does not exist (404 on an image call)."""


class ImageInUseError(RemoteAPIError):
    """The image cannot be deleted: a sandbox (running, suspended or pending) or a snapshot uses
    it (409 ``IMAGE_IN_USE``; ``get_image`` lists them in ``used_by``)."""


class ImageBuildError(RemoteAPIError):
    """A build step failed (422 ``BUILD_FAILED``): ``message`` has the step's exit code and output."""


class RegistryError(RemoteAPIError):
    """A pull failed on the registry's side (``REGISTRY_ERROR``, 502): it could not be reached or
    answered something unusable."""


class RegistryAuthenticationError(RegistryError):
    """The registry refused the pull's credentials, or asked for some (``REGISTRY_UNAUTHORIZED``;
    ``status_code`` is the registry's own 401 or 403 and ``message`` its message). Unlike
    :class:`AuthenticationError`, the Alcove server accepted the API key."""


class SandboxConnectionError(SandboxError):
    """The server could not be reached, or a response stream ended early."""


class SandboxTimeoutError(SandboxError, TimeoutError):
    """A client-side deadline passed.

    ``parameter`` names the setting to raise to wait longer, when one applies: the client's
    ``timeout`` (requests and waits) or ``stream_idle_timeout`` (silence on ``run`` / ``follow_*``
    streams). It is also a built-in :class:`TimeoutError`.
    """

    def __init__(self, message: str, parameter: str | None = None):
        self.parameter = parameter
        super().__init__(message)


class SandboxFailedError(SandboxError):
    """The sandbox failed or ended while the client was waiting on it."""

    def __init__(self, sandbox_id: str, status: str, reason: str | None, message: str):
        self.sandbox_id = sandbox_id
        self.status = status
        self.reason = reason
        super().__init__(message)


class SandboxCopyError(SandboxError):
    """Some copies of a sandbox failed. ``result`` lists every copy made (each with ``status``
    and ``reason``); :meth:`AsyncSandbox.copy` has deleted the copies that ran."""

    def __init__(self, source_sandbox_id: str, result: Any, message: str):
        self.source_sandbox_id = source_sandbox_id
        self.result = result
        super().__init__(message)


class SandboxNotRoutableError(SandboxError):
    """The server gave no ``sandbox_url`` for the sandbox, so its processes and files cannot be reached."""


__all__ = [
    "SandboxCopyError",
    "AuthenticationError",
    "ImageBuildError",
    "ImageInUseError",
    "ImageNotFoundError",
    "PoolAtCapacityError",
    "PoolInUseError",
    "PoolNotFoundError",
    "RegistryAuthenticationError",
    "RegistryError",
    "RemoteAPIError",
    "SandboxConnectionError",
    "SandboxError",
    "SandboxException",
    "SandboxFailedError",
    "SandboxNameConflictError",
    "SandboxNotFoundError",
    "SandboxNotRoutableError",
    "SandboxTimeoutError",
    "SnapshotNotFoundError",
]
