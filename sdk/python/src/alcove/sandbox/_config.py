"""Client configuration: explicit arguments first, then the environment, then defaults.

The environment is read when a client is built (never at import), so a program may set
``ALCOVE_API_URL`` / ``ALCOVE_API_KEY`` after importing the SDK.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass

import httpx

API_URL_ENV = "ALCOVE_API_URL"
API_KEY_ENV = "ALCOVE_API_KEY"

DEFAULT_API_URL = "http://localhost:8900"
DEFAULT_NAMESPACE = "default"
_NAMESPACE = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}")
"""What the server takes as a namespace: an identifier, never a path."""
DEFAULT_TIMEOUT_SECS = 300.0
"""Default per-request timeout, also the deadline for waits (create, suspend, snapshot)."""
DEFAULT_STREAM_IDLE_TIMEOUT_SECS = 120.0
"""Longest silence on a command or output stream (``run``, ``follow_*``) before
:class:`SandboxTimeoutError`. The sandbox's agent sends a keep-alive after 15 s without output,
so a healthy stream is never this quiet: only a stopped or unreachable agent is."""
CONNECT_TIMEOUT_SECS = 10.0
"""Longest wait to open a connection (capped by the request timeout)."""


@dataclass(frozen=True)
class ClientConfig:
    """Resolved settings shared by a client and the sandbox handles it creates."""

    api_url: str
    api_key: str | None
    namespace: str
    timeout_secs: float
    stream_idle_timeout_secs: float | None = DEFAULT_STREAM_IDLE_TIMEOUT_SECS
    """Read-inactivity bound of event streams; None waits forever."""

    @property
    def connect_timeout_secs(self) -> float:
        return min(CONNECT_TIMEOUT_SECS, self.timeout_secs)

    def request_timeout(self) -> httpx.Timeout:
        """Timeouts for ordinary requests."""
        return httpx.Timeout(self.timeout_secs, connect=self.connect_timeout_secs)

    def event_stream_timeout(self) -> httpx.Timeout:
        """Timeouts for event streams (run, follow): the read timeout bounds silence, which the
        agent's keep-alives break every 15 s, so a stream may last as long as its command."""
        return httpx.Timeout(
            connect=self.connect_timeout_secs,
            read=self.stream_idle_timeout_secs,
            write=self.timeout_secs,
            pool=self.timeout_secs,
        )

    def transfer_timeout(self) -> httpx.Timeout:
        """Timeouts for file transfers: each read and write may wait ``timeout_secs`` (a transfer
        as a whole may take longer, as long as bytes keep moving)."""
        return httpx.Timeout(
            connect=self.connect_timeout_secs,
            read=self.timeout_secs,
            write=self.timeout_secs,
            pool=self.timeout_secs,
        )


def _from_env(environ: Mapping[str, str], name: str) -> str | None:
    value = environ.get(name, "").strip()
    return value or None


def resolve_config(
    api_url: str | None = None,
    api_key: str | None = None,
    namespace: str = DEFAULT_NAMESPACE,
    timeout: float = DEFAULT_TIMEOUT_SECS,
    environ: Mapping[str, str] | None = None,
    stream_idle_timeout: float | None = DEFAULT_STREAM_IDLE_TIMEOUT_SECS,
) -> ClientConfig:
    """Build a :class:`ClientConfig`: explicit arguments win over ``ALCOVE_*`` variables."""
    env = os.environ if environ is None else environ
    url = api_url if api_url is not None else (_from_env(env, API_URL_ENV) or DEFAULT_API_URL)
    url = url.strip().rstrip("/")
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"api_url must start with http:// or https://, got {url!r}")
    key = api_key if api_key is not None else _from_env(env, API_KEY_ENV)
    if not isinstance(namespace, str) or not _NAMESPACE.fullmatch(namespace):
        raise ValueError(
            "namespace must be 1-128 letters, digits, '-', '_' and '.', not starting with '.', "
            f"got {namespace!r}"
        )
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0:
        raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}")
    idle = stream_idle_timeout
    if idle is not None and (isinstance(idle, bool) or not isinstance(idle, (int, float)) or idle <= 0):
        raise ValueError(f"stream_idle_timeout must be a positive number of seconds or None, got {idle!r}")
    return ClientConfig(
        api_url=url,
        api_key=key or None,
        namespace=namespace,
        timeout_secs=float(timeout),
        stream_idle_timeout_secs=None if idle is None else float(idle),
    )
