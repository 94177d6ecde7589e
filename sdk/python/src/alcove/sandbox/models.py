"""Typed models of the objects the Alcove server sends (see docs/protocol/control-plane.md and sandbox-api.md).

Every model ignores nothing and rejects nothing it does not know: unknown fields are kept
(reachable through ``model.model_extra``), so a newer server does not break an older SDK.
Status fields are ``str`` enums spelled exactly as on the wire; a status the SDK does not know
yet is kept as a plain string instead of failing, and both compare equal to the wire string::

    info.status == "running"            # True
    info.status == SandboxStatus.RUNNING  # True

Timestamps arrive as epoch seconds, milliseconds or microseconds, or as ISO-8601 strings; all are
turned into timezone-aware UTC :class:`~datetime.datetime` objects.
"""

from __future__ import annotations

import enum
import re
from datetime import datetime, timezone
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    AliasChoices,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
)

# ---------------------------------------------------------------------------------------------
# Field helpers


def _timestamp_before(value: Any) -> Any:
    """Normalise an epoch number (s, ms, µs or ns) or ISO string before pydantic parses it."""
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise ValueError("a timestamp cannot be a boolean")
    if isinstance(value, str):
        text = value.strip()
        try:
            return _timestamp_before(float(text))
        except ValueError:
            pass
        # Python 3.10's parsers and pydantic accept at most 6 fractional digits.
        return re.sub(r"(\.\d{6})\d+", r"\1", text)
    if isinstance(value, (int, float)):
        seconds = float(value)
        magnitude = abs(seconds)
        if magnitude >= 1e17:
            seconds /= 1e9
        elif magnitude >= 1e14:
            seconds /= 1e6
        elif magnitude >= 1e11:
            seconds /= 1e3
        return datetime.fromtimestamp(seconds, tz=timezone.utc)
    return value


def _timestamp_after(value: datetime | None) -> datetime | None:
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=timezone.utc)
    return value


Timestamp = Annotated[
    datetime | None,
    BeforeValidator(_timestamp_before),
    AfterValidator(_timestamp_after),
]
"""A datetime read from epoch s/ms/µs numbers or ISO-8601 strings (``None`` when absent)."""


def _none_as_empty_list(value: Any) -> Any:
    return [] if value is None else value


class _WireModel(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)


# ---------------------------------------------------------------------------------------------
# Enums (spelled as on the wire)


class SandboxStatus(str, enum.Enum):
    """Sandbox lifecycle status (docs/protocol/control-plane.md, Sandbox status)."""

    PENDING = "pending"
    RUNNING = "running"
    SNAPSHOTTING = "snapshotting"
    SUSPENDING = "suspending"
    SUSPENDED = "suspended"
    TERMINATED = "terminated"
    TIMEOUT = "timeout"
    FAILED = "failed"

    def __str__(self) -> str:
        return self.value


class SnapshotStatus(str, enum.Enum):
    """Snapshot status (docs/protocol/control-plane.md, Snapshots)."""

    IN_PROGRESS = "in_progress"
    LOCAL_READY = "local_ready"
    COMPLETED = "completed"
    FAILED = "failed"
    DELETING = "deleting"
    REPLICATING = "replicating"

    def __str__(self) -> str:
        return self.value


class SnapshotType(str, enum.Enum):
    """What a snapshot captures."""

    MEMORY = "memory"
    FILESYSTEM = "filesystem"

    def __str__(self) -> str:
        return self.value


class ProcessStatus(str, enum.Enum):
    """Status of a process inside a sandbox."""

    RUNNING = "running"
    EXITED = "exited"
    SIGNALED = "signaled"
    OOM_KILLED = "oom_killed"

    def __str__(self) -> str:
        return self.value


class StdinMode(str, enum.Enum):
    """Whether a started process gets a writable stdin pipe."""

    CLOSED = "closed"
    PIPE = "pipe"

    def __str__(self) -> str:
        return self.value


class OutputMode(str, enum.Enum):
    """Whether a started process's stdout/stderr is captured or discarded."""

    CAPTURE = "capture"
    DISCARD = "discard"

    def __str__(self) -> str:
        return self.value


# A status field holds the enum member when the wire value is known, else the raw string
# (so a status added by a newer server is not a validation error).
SandboxStatusValue = Annotated[SandboxStatus | str, Field(union_mode="left_to_right")]
SnapshotStatusValue = Annotated[SnapshotStatus | str, Field(union_mode="left_to_right")]
SnapshotTypeValue = Annotated[SnapshotType | str, Field(union_mode="left_to_right")]
ProcessStatusValue = Annotated[ProcessStatus | str, Field(union_mode="left_to_right")]


# ---------------------------------------------------------------------------------------------
# Control-plane objects


class GPUResources(_WireModel):
    """GPUs attached to a sandbox."""

    count: int
    model: str


class ContainerResourcesInfo(_WireModel):
    """Resources allocated to a sandbox."""

    cpus: float
    memory_mb: int
    disk_mb: int | None = None
    ephemeral_disk_mb: int | None = None
    gpus: Annotated[list[GPUResources], BeforeValidator(_none_as_empty_list)] = Field(
        default_factory=list, validation_alias=AliasChoices("gpus", "gpu_configs")
    )


class NetworkPolicy(_WireModel):
    """Outbound network rules of a sandbox (the ``network_policy`` response field)."""

    allow_internet_access: bool = True
    allow_out: Annotated[list[str], BeforeValidator(_none_as_empty_list)] = Field(default_factory=list)
    deny_out: Annotated[list[str], BeforeValidator(_none_as_empty_list)] = Field(default_factory=list)


class SandboxInfo(_WireModel):
    """A sandbox as described by the control plane.

    Returned by ``create()``, ``get()``, ``list()``, ``update_sandbox()``, ``suspend()``,
    ``resume()``, ``expose_ports()`` and ``unexpose_ports()``.
    """

    sandbox_id: str = Field(validation_alias=AliasChoices("sandbox_id", "id"))
    name: str | None = None
    namespace: str | None = None
    status: SandboxStatusValue
    image: str | None = None
    resources: ContainerResourcesInfo | None = None
    secret_names: Annotated[list[str], BeforeValidator(_none_as_empty_list)] = Field(default_factory=list)
    timeout_secs: int | None = None
    exposed_ports: Annotated[list[int], BeforeValidator(_none_as_empty_list)] = Field(default_factory=list)
    allow_unauthenticated_access: bool = False
    entrypoint: Annotated[list[str], BeforeValidator(_none_as_empty_list)] = Field(default_factory=list)
    created_at: Timestamp = None
    terminated_at: Timestamp = None
    sandbox_url: str | None = None
    ingress_endpoint: str | None = None
    routing_hint: str | None = None
    pending_reason: str | None = None
    termination_reason: str | None = None
    outcome: Any = None
    error_details: Any = None
    network_policy: NetworkPolicy | None = None
    pool_id: str | None = None
    auto_resume: bool = True
    runtime: str | None = None
    resource_resize: Any = None
    file_systems: Annotated[list[Any], BeforeValidator(_none_as_empty_list)] = Field(default_factory=list)

    def url_for_port(self, port: int) -> str | None:
        """The public URL of an exposed user port, when the server gave an ``ingress_endpoint``.

        Port 9501 (the in-sandbox agent) maps to ``sandbox_url``.
        """
        if port == 9501:
            return self.sandbox_url
        if not self.ingress_endpoint:
            return None
        scheme, sep, rest = self.ingress_endpoint.partition("://")
        if not sep:
            scheme, rest = "http", self.ingress_endpoint
        return f"{scheme}://{port}-{self.sandbox_id}.{rest.rstrip('/')}"


class SandboxMetrics(_WireModel):
    """What a running sandbox uses now against its limits, read from its cgroups and layer."""

    sandbox_id: str
    timestamp: int
    cpu_seconds: float
    cpus: float
    memory_bytes: int
    memory_limit_bytes: int | None
    pids: int
    pids_limit: int | None
    disk_used_bytes: int
    disk_limit_bytes: int


class ArchivedSandboxInfo(SandboxInfo):
    """An ended sandbox kept in the server's archive until its retention (``--archive-ttl``)
    runs out: every field of :class:`SandboxInfo` plus ``archived_at``, when it was archived."""

    archived_at: Timestamp


class ArchivedSandboxPage(_WireModel):
    """One page of archived sandboxes, newest first.

    Pass ``next_cursor`` back as ``cursor`` (direction ``forward``, the default) for the older
    page, ``prev_cursor`` with direction ``backward`` for the newer one; each is ``None`` at its
    end of the archive.
    """

    sandboxes: Annotated[list[ArchivedSandboxInfo], BeforeValidator(_none_as_empty_list)] = Field(
        default_factory=list
    )
    prev_cursor: str | None = None
    next_cursor: str | None = None


class SnapshotInfo(_WireModel):
    """A snapshot of a sandbox (filesystem, or filesystem plus memory)."""

    snapshot_id: str = Field(validation_alias=AliasChoices("snapshot_id", "id"))
    namespace: str | None = None
    sandbox_id: str | None = None
    status: SnapshotStatusValue
    snapshot_type: SnapshotTypeValue | None = None
    size_bytes: int | None = None
    created_at: Timestamp = None
    error: str | None = None
    base_image: str | None = None
    snapshot_uri: str | None = None


# ---------------------------------------------------------------------------------------------
# In-sandbox objects


class CommandResult(_WireModel):
    """Result of :meth:`Sandbox.run`.

    ``stdout`` / ``stderr`` are the captured lines joined with ``"\\n"``. ``exit_code`` is the
    process's exit code, or ``-signal`` when the process was killed by a signal.
    """

    stdout: str = ""
    stderr: str = ""
    exit_code: int
    signal: int | None = None
    reason: str | None = None
    pid: int | None = None


class ProcessInfo(_WireModel):
    """A process inside a sandbox."""

    pid: int
    command: str = ""
    args: Annotated[list[str], BeforeValidator(_none_as_empty_list)] = Field(default_factory=list)
    status: ProcessStatusValue
    exit_code: int | None = None
    signal: int | None = None
    stdin_writable: bool = False
    started_at: Timestamp = None
    ended_at: Timestamp = None
    oom_killed: bool | None = None
    handle: int | None = None
    managed: Any = None


class OutputEvent(_WireModel):
    """One line of process output from a follow stream."""

    line: str
    timestamp: Timestamp = None
    stream: str | None = None


class OutputResponse(_WireModel):
    """All output lines captured so far for a process (``get_stdout`` / ``get_stderr`` / ``get_output``)."""

    pid: int | None = None
    lines: Annotated[list[str], BeforeValidator(_none_as_empty_list)] = Field(default_factory=list)
    line_count: int = 0


class DirectoryEntry(_WireModel):
    """One entry of :meth:`Sandbox.list_directory`."""

    name: str
    is_dir: bool
    size: int | None = None
    modified_at: Timestamp = None


class PtySessionInfo(_WireModel):
    """The answer to ``POST /api/v1/pty``: a PTY session's id and the token that opens its socket."""

    session_id: str
    token: str


__all__ = [
    "CommandResult",
    "ContainerResourcesInfo",
    "DirectoryEntry",
    "GPUResources",
    "NetworkPolicy",
    "OutputEvent",
    "OutputMode",
    "OutputResponse",
    "ProcessInfo",
    "ProcessStatus",
    "PtySessionInfo",
    "SandboxInfo",
    "SandboxStatus",
    "SnapshotInfo",
    "SnapshotStatus",
    "SnapshotType",
    "StdinMode",
    "Timestamp",
]
