"""Alcove sandboxes: create, run, manage processes and files, suspend, snapshot.

``SandboxClient`` / ``AsyncSandboxClient`` manage sandboxes (the control plane);
``Sandbox`` / ``AsyncSandbox`` run work inside one sandbox; ``PtySession`` / ``AsyncPtySession``
drive a terminal in it, ``Tunnel`` / ``AsyncTunnel`` relay a local port to one of its ports and
``Desktop`` / ``AsyncDesktop`` drive its desktop over VNC::

    from alcove.sandbox import SandboxClient

    client = SandboxClient()  # ALCOVE_API_URL (default http://localhost:8900), ALCOVE_API_KEY
    with client.create_and_connect(cpus=1.0, memory_mb=1024) as sandbox:
        print(sandbox.run("echo", ["hello"]).stdout)
"""

from ._config import ClientConfig
from .async_client import AsyncSandboxClient
from .async_desktop import AsyncDesktop
from .async_pty import AsyncPtySession
from .async_sandbox import AsyncSandbox
from .async_tunnel import AsyncTunnel
from .client import SandboxClient
from .desktop import Desktop
from .exceptions import (
    AuthenticationError,
    RemoteAPIError,
    SandboxConnectionError,
    SandboxError,
    SandboxException,
    SandboxFailedError,
    SandboxNameConflictError,
    SandboxNotFoundError,
    SandboxNotRoutableError,
    SandboxTimeoutError,
    SnapshotNotFoundError,
)
from .models import (
    ArchivedSandboxInfo,
    ArchivedSandboxPage,
    CommandResult,
    ContainerResourcesInfo,
    DirectoryEntry,
    GPUResources,
    HealthCheck,
    ManagedProcessExit,
    ManagedProcessHealthStatus,
    ManagedProcessInfo,
    ManagedProcessStatus,
    NetworkPolicy,
    OutputEvent,
    OutputMode,
    OutputResponse,
    ProcessHealthCheck,
    ProcessHealthCheckType,
    ProcessInfo,
    ProcessStatus,
    PtySessionInfo,
    RestartConfig,
    RestartPolicy,
    RestartPolicyConfig,
    SandboxInfo,
    SandboxLogLevel,
    SandboxLogSignal,
    SandboxLogsResponse,
    SandboxMetrics,
    SandboxProcessLogFilter,
    SandboxProcessLogFiltersResponse,
    SandboxStatus,
    SnapshotInfo,
    SnapshotStatus,
    SnapshotType,
    StdinMode,
)
from .pty import PtySession
from .sandbox import Sandbox
from .tunnel import Tunnel

__all__ = [
    "HealthCheck",
    "ManagedProcessExit",
    "ManagedProcessHealthStatus",
    "ManagedProcessInfo",
    "ManagedProcessStatus",
    "ProcessHealthCheck",
    "ProcessHealthCheckType",
    "RestartConfig",
    "RestartPolicy",
    "RestartPolicyConfig",
    "SandboxLogLevel",
    "SandboxLogSignal",
    "SandboxLogsResponse",
    "SandboxProcessLogFilter",
    "SandboxProcessLogFiltersResponse",
    "ArchivedSandboxInfo",
    "ArchivedSandboxPage",
    "AsyncDesktop",
    "AsyncPtySession",
    "AsyncSandbox",
    "AsyncSandboxClient",
    "AsyncTunnel",
    "AuthenticationError",
    "ClientConfig",
    "CommandResult",
    "ContainerResourcesInfo",
    "Desktop",
    "DirectoryEntry",
    "GPUResources",
    "NetworkPolicy",
    "OutputEvent",
    "OutputMode",
    "OutputResponse",
    "ProcessInfo",
    "ProcessStatus",
    "PtySession",
    "PtySessionInfo",
    "RemoteAPIError",
    "Sandbox",
    "SandboxClient",
    "SandboxConnectionError",
    "SandboxError",
    "SandboxException",
    "SandboxFailedError",
    "SandboxInfo",
    "SandboxNameConflictError",
    "SandboxNotFoundError",
    "SandboxNotRoutableError",
    "SandboxStatus",
    "SandboxTimeoutError",
    "SandboxMetrics",
    "SnapshotInfo",
    "SnapshotNotFoundError",
    "SnapshotStatus",
    "SnapshotType",
    "StdinMode",
    "Tunnel",
]
