"""Alcove: Python SDK for the self-hosted Alcove sandbox platform.

The sandbox API lives in :mod:`alcove.sandbox`; its main names are re-exported here::

    from alcove.sandbox import SandboxClient
"""

from ._version import __version__
from .sandbox import (
    AsyncSandbox,
    AsyncSandboxClient,
    Sandbox,
    SandboxClient,
    SandboxError,
    SandboxException,
)

__all__ = [
    "__version__",
    "AsyncSandbox",
    "AsyncSandboxClient",
    "Sandbox",
    "SandboxClient",
    "SandboxError",
    "SandboxException",
]
