"""Client configuration: explicit arguments first, then the environment, then defaults.

The environment is read when a client is built (never at import), so a program may set
``ALCOVE_API_URL`` / ``ALCOVE_API_KEY`` after importing the SDK.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

import httpx

API_URL_ENV = "ALCOVE_API_URL"
API_KEY_ENV = "ALCOVE_API_KEY"

DEFAULT_API_URL = "http://localhost:8900"
DEFAULT_NAMESPACE = "default"
DEFAULT_TIMEOUT_SECS = 300.0
"""Default per-request timeout, also the deadline for waits (create, suspend, snapshot)."""
CONNECT_TIMEOUT_SECS = 10.0
"""Longest wait to open a connection (capped by the request timeout)."""


@dataclass(frozen=True)
class ClientConfig:
    """Resolved settings shared by a client and the sandbox handles it creates."""

    api_url: str
    api_key: str | None
    namespace: str
    timeout_secs: float

    @property
    def connect_timeout_secs(self) -> float:
        return min(CONNECT_TIMEOUT_SECS, self.timeout_secs)

    def request_timeout(self) -> httpx.Timeout:
        """Timeouts for ordinary requests."""
        return httpx.Timeout(self.timeout_secs, connect=self.connect_timeout_secs)

    def stream_timeout(self) -> httpx.Timeout:
        """Timeouts for long streams (run, follow, file transfers): no read timeout at all."""
        return httpx.Timeout(
            connect=self.connect_timeout_secs,
            read=None,
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
) -> ClientConfig:
    """Build a :class:`ClientConfig`: explicit arguments win over ``ALCOVE_*`` variables."""
    env = os.environ if environ is None else environ
    url = api_url if api_url is not None else (_from_env(env, API_URL_ENV) or DEFAULT_API_URL)
    url = url.strip().rstrip("/")
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"api_url must start with http:// or https://, got {url!r}")
    key = api_key if api_key is not None else _from_env(env, API_KEY_ENV)
    if not isinstance(namespace, str) or not namespace or "/" in namespace:
        raise ValueError(f"namespace must be a non-empty string without '/', got {namespace!r}")
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0:
        raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}")
    return ClientConfig(api_url=url, api_key=key or None, namespace=namespace, timeout_secs=float(timeout))
