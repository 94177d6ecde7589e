"""The steps an op yields and its driver performs, and :func:`_send`, the retrying send every op uses.

A :class:`Request` step is answered with the :class:`httpx.Response` (or a
:class:`SandboxConnectionError` / :class:`SandboxTimeoutError` thrown into the generator); a
:class:`Sleep` step is answered with ``None`` once the time has passed.
"""

from __future__ import annotations

from collections.abc import Generator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import httpx

from ..exceptions import SandboxConnectionError
from ._errors import _error_body

T = TypeVar("T")

GET_ATTEMPTS = 3
RETRYABLE_GET_STATUSES = frozenset({429, 502, 503, 504})
NOT_READY_CODES = frozenset({"SANDBOX_NOT_READY", "SANDBOX_UNREACHABLE"})
"""Codes of a proxy's 503 that means "the request did not reach the sandbox": any request whose
body can be sent again is replayed. (A 502 ``SANDBOX_UNREACHABLE`` may have reached it: only GETs
retry that.)"""
NOT_READY_ATTEMPTS = 12
BUSY_CODES = frozenset({"TOO_MANY_REQUESTS", "SERVER_BUSY"})
"""Codes of an answer that means "refused before anything was done": any request may be sent again."""
BUSY_ATTEMPTS = 10
MAX_RETRY_AFTER_SECS = 4.0
"""Longest ``Retry-After`` honoured before a retry (a longer one is capped)."""


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
    params: Mapping[str, str] | Sequence[tuple[str, str]] | None = None
    """The query: a mapping, or pairs for a key that repeats (``level=3&level=5``)."""
    json: Any = field(default=None, repr=False)
    """A JSON body; left out of the repr (a pull's carries a registry password)."""
    content: bytes | None = field(default=None, repr=False)
    upload: Upload | None = None
    stream: bool = False
    """Return the response unread (2xx only); reads are bounded per read, not as a whole."""
    events: bool = False
    """An event stream (run, follow): the agent sends keep-alives, so ``stream_idle_timeout``
    bounds its silence instead of ``timeout``."""
    replayable: bool = True
    """Whether the request may be sent again when the proxy says the sandbox is not ready."""


@dataclass(frozen=True)
class Sleep:
    """Pause before the next step."""

    seconds: float


Step = Request | Sleep
Op = Generator[Step, Any, T]


def _answered(resp: httpx.Response, statuses: tuple[int, ...], codes: frozenset[str]) -> bool:
    """Whether ``resp`` has one of ``statuses`` and its error body one of ``codes`` (the body is
    read only for those statuses)."""
    return resp.status_code in statuses and _error_body(resp).code in codes


def _is_refused_unread(resp: httpx.Response) -> bool:
    """A 429 ``TOO_MANY_REQUESTS`` or 503 ``SERVER_BUSY``: a burst past the server's per-client or
    connection limit, refused before the request was read (a pool's 429 ``POOL_AT_CAPACITY`` is
    an answer, not this)."""
    return _answered(resp, (429, 503), BUSY_CODES)


def _is_not_ready(resp: httpx.Response) -> bool:
    return _answered(resp, (503,), NOT_READY_CODES)


def _retry_after(resp: httpx.Response) -> float:
    """The answer's ``Retry-After`` in seconds (a whole number; 0 when absent or a date), capped
    at :data:`MAX_RETRY_AFTER_SECS`."""
    value = resp.headers.get("retry-after", "").strip()
    return min(float(value), MAX_RETRY_AFTER_SECS) if value.isascii() and value.isdigit() else 0.0


def _send(req: Request) -> Op[httpx.Response]:
    """Send with the retries of docs/protocol/errors.md (Retrying).

    Any request but a streamed upload is sent again, up to ten times, when the server refused it
    before doing anything (429 ``TOO_MANY_REQUESTS``, 503 ``SERVER_BUSY``: a burst past its
    limits). GETs are retried on connection failures and 429/502/503/504 (``STORE_UNAVAILABLE``,
    ...); any replayable request is replayed while the proxy answers 503
    ``SANDBOX_NOT_READY`` / ``SANDBOX_UNREACHABLE`` (a 502 may have reached the sandbox: a run is
    not sent twice). A retry waits at least what the answer's
    ``Retry-After`` asks (at most 4 s). A request that is not retried returns its answer at once,
    e.g. a POST answered 503 ``NODE_DRAINING`` or ``STORE_UNAVAILABLE``.
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
        if req.upload is None and attempt < BUSY_ATTEMPTS and _is_refused_unread(resp):
            yield Sleep(max(min(0.2 * 2 ** (attempt - 1), 2.0), _retry_after(resp)))
            continue
        if req.replayable and attempt < NOT_READY_ATTEMPTS and _is_not_ready(resp):
            yield Sleep(max(min(0.25 * 2 ** (attempt - 1), 4.0), _retry_after(resp)))
            continue
        if req.method == "GET" and attempt < GET_ATTEMPTS and resp.status_code in RETRYABLE_GET_STATUSES:
            yield Sleep(max(0.2 * 2 ** (attempt - 1), _retry_after(resp)))
            continue
        return resp
