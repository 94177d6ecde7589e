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
import json
import re
from datetime import datetime, timezone
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    AliasChoices,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    field_validator,
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


def _none_as_empty_dict(value: Any) -> Any:
    return {} if value is None else value


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


class RestartPolicy(str, enum.Enum):
    """When the sandbox's supervisor restarts a managed process after it exits."""

    NEVER = "never"
    ON_FAILURE = "on_failure"
    ALWAYS = "always"

    def __str__(self) -> str:
        return self.value


class ProcessHealthCheckType(str, enum.Enum):
    """How a managed process's health is checked: an HTTP GET or a TCP connect to a local port."""

    HTTP = "http"
    TCP = "tcp"

    def __str__(self) -> str:
        return self.value


class ManagedProcessStatus(str, enum.Enum):
    """The supervisor's status of a managed process."""

    STARTING = "starting"
    RUNNING = "running"
    BACKING_OFF = "backing_off"
    STOPPED = "stopped"

    def __str__(self) -> str:
        return self.value


class ManagedProcessHealthStatus(str, enum.Enum):
    """The latest health of a managed process (``disabled`` without a health check)."""

    DISABLED = "disabled"
    STARTING = "starting"
    HEALTHY = "healthy"
    UNHEALTHY = "unhealthy"

    def __str__(self) -> str:
        return self.value


class SandboxLogLevel(str, enum.Enum):
    """Severity of a persisted log record. The log query sends it as its number (:attr:`number`)."""

    TRACE = "trace"
    DEBUG = "debug"
    INFO = "info"
    WARN = "warn"
    ERROR = "error"
    FATAL = "fatal"

    def __str__(self) -> str:
        return self.value

    @property
    def number(self) -> int:
        """The level's number on the wire: trace 1, debug 2, info 3, warn 4, error 5, fatal 6."""
        return _LOG_LEVEL_NUMBERS[self.value]

    @classmethod
    def from_number(cls, number: int) -> SandboxLogLevel | None:
        """The level of a wire number, or None for a number the SDK does not know."""
        for level in cls:
            if level.number == number:
                return level
        return None


class ImageSource(str, enum.Enum):
    """How an image came into the server's store."""

    BUILTIN = "builtin"
    PULL = "pull"
    IMPORT = "import"
    BUILD = "build"
    SNAPSHOT = "snapshot"

    def __str__(self) -> str:
        return self.value


class LayerStatus(str, enum.Enum):
    """Where one layer blob of a pull is (:class:`LayerProgress`)."""

    WAITING = "waiting"
    EXISTS = "exists"
    DOWNLOADING = "downloading"
    VERIFYING = "verifying"
    UNPACKING = "unpacking"
    DONE = "done"

    def __str__(self) -> str:
        return self.value


class NodeState(str, enum.Enum):
    """Whether a node (an Alcove server sharing the store) takes work: ``active``, ``draining``
    (it serves the sandboxes it has but starts and resumes none, ``drain_node()``) or ``offline``
    (its lease ran out: stopped, or cut off from the store)."""

    ACTIVE = "active"
    DRAINING = "draining"
    OFFLINE = "offline"

    def __str__(self) -> str:
        return self.value


class PoolContainerState(str, enum.Enum):
    """Whether a sandbox of a pool waits for a claim (``Idle``: running, invisible to ``list()``)
    or has been claimed (``Running``: an ordinary sandbox with the pool's ``pool_id``)."""

    IDLE = "Idle"
    RUNNING = "Running"

    def __str__(self) -> str:
        return self.value


_LOG_LEVEL_NUMBERS = {"trace": 1, "debug": 2, "info": 3, "warn": 4, "error": 5, "fatal": 6}


# A status field holds the enum member when the wire value is known, else the raw string
# (so a status added by a newer server is not a validation error).
SandboxStatusValue = Annotated[SandboxStatus | str, Field(union_mode="left_to_right")]
SnapshotStatusValue = Annotated[SnapshotStatus | str, Field(union_mode="left_to_right")]
SnapshotTypeValue = Annotated[SnapshotType | str, Field(union_mode="left_to_right")]
ProcessStatusValue = Annotated[ProcessStatus | str, Field(union_mode="left_to_right")]
RestartPolicyValue = Annotated[RestartPolicy | str, Field(union_mode="left_to_right")]
ProcessHealthCheckTypeValue = Annotated[ProcessHealthCheckType | str, Field(union_mode="left_to_right")]
ManagedProcessStatusValue = Annotated[ManagedProcessStatus | str, Field(union_mode="left_to_right")]
ManagedProcessHealthStatusValue = Annotated[ManagedProcessHealthStatus | str, Field(union_mode="left_to_right")]
ImageSourceValue = Annotated[ImageSource | str, Field(union_mode="left_to_right")]
LayerStatusValue = Annotated[LayerStatus | str, Field(union_mode="left_to_right")]
PoolContainerStateValue = Annotated[PoolContainerState | str, Field(union_mode="left_to_right")]
NodeStateValue = Annotated[NodeState | str, Field(union_mode="left_to_right")]


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


class ResizeResources(_WireModel):
    """The target of a live resize: every dimension, those not asked for at their value then."""

    cpus: float
    memory_mb: int
    disk_mb: int


class SandboxResourceResizeInfo(_WireModel):
    """The latest live resize of a sandbox (``resource_resize``); ``SandboxInfo.resources`` are
    the limits in force. ``status`` is ``pending``, ``succeeded`` or ``failed``."""

    generation: int
    requested: ResizeResources | None = None
    status: str
    error_message: str | None = None


class FileSystemMount(_WireModel):
    """A volume mounted (or to be mounted) into a sandbox at ``mount_path`` (docs/volumes.md).

    ``file_system_id`` is the volume's name. ``read_only`` and ``prefetch`` go on the wire only
    when true; ``snapshot_id`` and ``owner`` are refused by this server (400).
    """

    file_system_id: str
    mount_path: str
    read_only: bool = False
    prefetch: bool | None = None
    snapshot_id: str | None = None
    owner: str | None = None

    def to_wire(self) -> dict[str, Any]:
        """The request body: only what is set."""
        body: dict[str, Any] = {"file_system_id": self.file_system_id, "mount_path": self.mount_path}
        if self.read_only:
            body["read_only"] = True
        if self.prefetch:
            body["prefetch"] = True
        if self.snapshot_id is not None:
            body["snapshot_id"] = self.snapshot_id
        if self.owner is not None:
            body["owner"] = self.owner
        return body


class FileSystemAttachment(_WireModel):
    """Where a volume is mounted: a live sandbox, the path in it, and the mode."""

    sandbox_id: str
    mount_path: str
    read_only: bool = False


class FileSystemInfo(_WireModel):
    """A persistent volume (its id is its name)."""

    id: str
    name: str
    size_mb: int
    used_mb: int | None = None
    created_at: Timestamp = None
    attachments: Annotated[list[FileSystemAttachment], BeforeValidator(_none_as_empty_list)] = Field(
        default_factory=list
    )


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
    resource_resize: SandboxResourceResizeInfo | None = None
    file_systems: Annotated[list[FileSystemMount], BeforeValidator(_none_as_empty_list)] = Field(default_factory=list)
    # Alcove: the labels its node must have (``node_selector`` of its create); empty: any node.
    node_selector: Annotated[dict[str, str], BeforeValidator(_none_as_empty_dict)] = Field(default_factory=dict)

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


class PoolContainerInfo(_WireModel):
    """One sandbox of a pool, as :meth:`SandboxClient.get_pool` lists it: an idle one (running,
    waiting for a claim) or a claimed one that has not ended."""

    id: str
    state: PoolContainerStateValue
    sandbox_id: str
    executor_id: str | None = None


class SandboxPoolInfo(_WireModel):
    """A warm pool: the configuration its sandboxes are started with, and how many it keeps.

    Returned by ``create_pool()``, ``get_pool()``, ``list_pools()`` and ``update_pool()``.
    ``containers`` lists the pool's sandboxes (idle and claimed live ones) when the answer is
    ``get_pool()``'s (and ``create_pool()``'s, which reads the pool back); it is ``None`` in
    ``list_pools()`` and ``update_pool()``. ``max_containers`` is ``None`` when the pool has no
    limit but the host's capacity.
    """

    pool_id: str = Field(validation_alias=AliasChoices("id", "pool_id"))
    namespace: str | None = None
    image: str
    resources: ContainerResourcesInfo
    timeout_secs: int = 0
    entrypoint: Annotated[list[str], BeforeValidator(_none_as_empty_list)] = Field(default_factory=list)
    max_containers: int | None = None
    warm_containers: int
    network_policy: NetworkPolicy | None = None
    containers: list[PoolContainerInfo] | None = None
    created_at: Timestamp = None
    updated_at: Timestamp = None
    # Alcove: the labels its sandboxes' nodes must have (``node_selector`` of its create or
    # update); empty: any node.
    node_selector: Annotated[dict[str, str], BeforeValidator(_none_as_empty_dict)] = Field(default_factory=dict)


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

    sandboxes: Annotated[list[ArchivedSandboxInfo], BeforeValidator(_none_as_empty_list)] = Field(default_factory=list)
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


class CopiedSandbox(_WireModel):
    """One new sandbox of :meth:`AsyncSandboxClient.copy`: ``running``, or ``failed`` with a
    ``reason``. ``status`` stays the server's string (partial answers may carry any)."""

    sandbox_id: str
    status: str
    reason: str | None = None
    sandbox_url: str | None = None
    routing_hint: str | None = None
    ingress_endpoint: str | None = None
    name: str | None = None
    termination_reason: str | None = None
    error_details: Any | None = None

    @property
    def running(self) -> bool:
        """Whether this copy runs."""
        return self.status == SandboxStatus.RUNNING.value


class CopySandboxResponse(_WireModel):
    """What a copy made: the source's id and one entry per copy asked for."""

    source_sandbox_id: str
    sandboxes: Annotated[list[CopiedSandbox], BeforeValidator(_none_as_empty_list)] = Field(default_factory=list)

    @property
    def failed(self) -> list[CopiedSandbox]:
        """The copies that did not come up."""
        return [c for c in self.sandboxes if not c.running]


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


class RestartPolicyConfig(_WireModel):
    """Restart policy and back-off of a managed process (``start_process(restart=...)``).

    ``max_restarts`` None means no limit; the delay before the n-th restart grows from
    ``initial_backoff_ms`` and is capped at ``max_backoff_ms``. Both count from the last
    start by the user or the end of a run that stayed up 60 s. Also the ``restart`` field of
    :class:`ManagedProcessInfo`, the policy in force.
    """

    policy: RestartPolicyValue = RestartPolicy.ON_FAILURE
    max_restarts: int | None = None
    initial_backoff_ms: int = 500
    max_backoff_ms: int = 30_000


class ProcessHealthCheck(_WireModel):
    """A local health check of a managed process (``start_process(health_check=...)``).

    ``type`` ``"http"`` GETs ``path`` (default ``/``) on ``port`` inside the sandbox and wants a
    2xx; ``"tcp"`` wants a connection to be accepted. ``failure_threshold`` failures in a row
    make the process unhealthy.
    """

    type: ProcessHealthCheckTypeValue
    port: int
    path: str | None = None
    initial_delay_ms: int = 5_000
    interval_ms: int = 1_000
    timeout_ms: int = 500
    failure_threshold: int = 3


RestartConfig = RestartPolicyConfig
"""Another name of :class:`RestartPolicyConfig`."""
HealthCheck = ProcessHealthCheck
"""Another name of :class:`ProcessHealthCheck`."""


class ManagedProcessExit(_WireModel):
    """How a previous run of a managed process ended."""

    exit_code: int | None = None
    signal: int | None = None
    oom_killed: bool = False
    ended_at: Timestamp = None


class ManagedProcessInfo(_WireModel):
    """The supervisor's view of a managed process (the ``managed`` field of :class:`ProcessInfo`).

    ``id`` is stable across restarts: the name when one was given, else an id of the agent's
    (a process without a name is addressed by its current pid only). ``restart_count`` counts
    the restarts so far; ``status`` ``stopped`` means it will not be started again (its policy
    said so, ``max_restarts`` was reached, or it was killed).
    """

    id: str
    name: str | None = None
    status: ManagedProcessStatusValue
    restart_count: int = 0
    restart: RestartPolicyConfig = Field(default_factory=RestartPolicyConfig)
    health_check: ProcessHealthCheck | None = None
    health_status: ManagedProcessHealthStatusValue = ManagedProcessHealthStatus.DISABLED
    consecutive_health_failures: int = 0
    last_exit: ManagedProcessExit | None = None
    last_error: str | None = None
    next_restart_at: Timestamp = None


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
    managed: ManagedProcessInfo | None = None
    """Supervisor metadata, for a process started with ``name``, ``restart`` or ``health_check``."""


class _OutputEventWire(_WireModel):
    """The wire form of one output line (``output`` events, docs/protocol/streaming.md): what
    :meth:`OutputEvent.model_validate` validates."""

    line: str
    timestamp: Timestamp = None
    stream: str | None = None
    continued: bool = False
    """The line is a piece of a longer one (see :class:`LinePiece`)."""


class LinePiece(str):
    """A piece of an output line longer than 1 MiB, which the agent cut to bound its memory: the
    next line of the same stream continues it, without a line ending between them. A plain
    ``str`` in every other way. ``run`` results put such lines back together; followers see the
    pieces (:attr:`OutputEvent.continued`, :attr:`OutputBatch.continued`,
    :attr:`OutputResponse.continued`)."""

    __slots__ = ()


class OutputEvent:
    """One line of process output from a follow stream.

    Not a pydantic model: a follower gets one per line, and a model costs more to make than
    everything else the follower does with the line. A plain class with three slots, compared by
    value (``==``), with the models' ``model_validate`` (from wire data: the timestamp is read as
    in every model, as epoch s/ms/µs or ISO-8601) and ``model_dump``. Built without validation by
    the follow streams, whose data is checked once per batch. The events of one batch share their
    ``timestamp`` (a datetime, immutable).

    The SDK's ``follow_*`` hand out instances of a private subclass (:class:`_FollowedEvent`)
    whose constructor is ``object``'s, each made without arguments and its three slots stored
    then: it costs less per line than this class's ``__init__`` or ``OutputEvent.__new__``, and
    a follower pays it for every line. Such an event is an ``OutputEvent`` (``isinstance``) and
    equal to one of the same fields; ``__init__`` must keep doing nothing more than storing them.
    """

    __slots__ = ("line", "timestamp", "stream")

    line: str
    """The line, without its line ending."""
    timestamp: datetime | None
    """When the agent read it (timezone-aware UTC), or None."""
    stream: str | None
    """``"stdout"`` or ``"stderr"`` (None when the server did not say)."""

    def __init__(self, line: str, timestamp: datetime | None = None, stream: str | None = None) -> None:
        self.line = line
        self.timestamp = timestamp
        self.stream = stream

    @classmethod
    def model_validate(cls, obj: Any) -> OutputEvent:
        """The event of wire data (a dict, or an object with the three attributes); raises
        :class:`pydantic.ValidationError` as a model would."""
        wire = _OutputEventWire.model_validate(obj, from_attributes=not isinstance(obj, dict))
        return cls(LinePiece(wire.line) if wire.continued else wire.line, wire.timestamp, wire.stream)

    @property
    def continued(self) -> bool:
        """Whether this line is a piece of a longer line, continued by the next line of its
        stream (:class:`LinePiece`). Only lines over 1 MiB are cut."""
        return type(self.line) is LinePiece

    def model_dump(self) -> dict[str, Any]:
        """The fields as a dict (``line``, ``timestamp``, ``stream``)."""
        return {"line": self.line, "timestamp": self.timestamp, "stream": self.stream}

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, OutputEvent):
            return NotImplemented
        return self.line == other.line and self.timestamp == other.timestamp and self.stream == other.stream

    __hash__ = None  # type: ignore[assignment]  # mutable, like the models

    def __repr__(self) -> str:
        return f"OutputEvent(line={self.line!r}, timestamp={self.timestamp!r}, stream={self.stream!r})"


class _FollowedEvent(OutputEvent):
    """An :class:`OutputEvent` as the follow streams make them: ``_FollowedEvent()``, then the
    three slots stored. Calling a class whose ``__new__`` and ``__init__`` are both ``object``'s
    takes the interpreter's fast path, which ``OutputEvent.__new__(OutputEvent)`` does not."""

    __slots__ = ()
    __init__ = object.__init__  # type: ignore[assignment]


class OutputBatch:
    """The lines of one read of one stream, from :meth:`Sandbox.follow_output_batches`: what the
    agent sends as one ``output_batch`` event. A plain class like :class:`OutputEvent`, compared by
    value; ``lines`` is a list of str (the lines without their line endings, in order).

    ``dropped`` is how many lines (of either stream) the process's output buffer, which holds the
    last 16 MiB, let go before this batch and before this follower read them: it never sees them.
    It is 0 unless the follower fell that far behind (or followed a process that had already
    written more than the buffer holds)."""

    __slots__ = ("lines", "timestamp", "stream", "dropped")

    lines: list[str]
    timestamp: datetime | None
    stream: str | None
    dropped: int

    def __init__(
        self, lines: list[str], timestamp: datetime | None = None, stream: str | None = None, dropped: int = 0
    ) -> None:
        self.lines = lines
        self.timestamp = timestamp
        self.stream = stream
        self.dropped = dropped

    @property
    def continued(self) -> list[int]:
        """Indexes into :attr:`lines` of the pieces of a line longer than 1 MiB, each continued by
        the next line of this stream (:class:`LinePiece`): mostly none."""
        return [index for index, line in enumerate(self.lines) if type(line) is LinePiece]

    def model_dump(self) -> dict[str, Any]:
        """The fields as a dict (``lines``, ``timestamp``, ``stream``, ``dropped``)."""
        return {"lines": self.lines, "timestamp": self.timestamp, "stream": self.stream, "dropped": self.dropped}

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        assert isinstance(other, OutputBatch)
        return (
            self.lines == other.lines
            and self.timestamp == other.timestamp
            and self.stream == other.stream
            and self.dropped == other.dropped
        )

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        dropped = f", dropped={self.dropped!r}" if self.dropped else ""
        return f"OutputBatch(lines={self.lines!r}, timestamp={self.timestamp!r}, stream={self.stream!r}{dropped})"


class OutputResponse(_WireModel):
    """All output lines captured so far for a process (``get_stdout`` / ``get_stderr`` / ``get_output``)."""

    pid: int | None = None
    lines: Annotated[list[str], BeforeValidator(_none_as_empty_list)] = Field(default_factory=list)
    line_count: int = 0
    continued: Annotated[list[int], BeforeValidator(_none_as_empty_list)] = Field(default_factory=list)
    """Indexes into ``lines`` of the pieces of a line longer than 1 MiB, which the agent cut: each
    is continued by the next line of its stream, without a line ending between them."""


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


# ---------------------------------------------------------------------------------------------
# Persisted logs (camelCase on the wire)


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


class _CamelWireModel(_WireModel):
    """A model read from camelCase JSON (its snake_case field names are accepted too)."""

    model_config = ConfigDict(extra="allow", populate_by_name=True, alias_generator=_camel)


class SandboxLogSignal(_CamelWireModel):
    """One persisted log record of a sandbox: a line of process output or an event.

    ``timestamp`` is epoch milliseconds (see :attr:`time`). ``log_attributes`` is the record's
    attributes as the server sends them, a JSON object in a string; :attr:`attributes` is that
    object decoded (Alcove puts ``process_id``, ``pid``, ``stream``, ``managed_name`` and
    ``event`` there, e.g. ``"process_exited"``). ``level`` is the severity's number
    (:attr:`level_name` gives the :class:`SandboxLogLevel`).
    """

    timestamp: int
    uuid: str = ""
    namespace: str = ""
    application: str = ""
    sandbox_id: str | None = None
    resource_attributes: Annotated[list[tuple[str, str]], BeforeValidator(_none_as_empty_list)] = Field(
        default_factory=list
    )
    body: str = ""
    log_attributes: str = "{}"
    allocations: Annotated[list[str], BeforeValidator(_none_as_empty_list)] = Field(default_factory=list)
    function_runs: Annotated[list[str], BeforeValidator(_none_as_empty_list)] = Field(default_factory=list)
    level: int | None = None
    retention: int | None = None

    @property
    def attributes(self) -> dict[str, Any]:
        """``log_attributes`` decoded; an empty dict when it is not a JSON object."""
        try:
            value = json.loads(self.log_attributes) if self.log_attributes else {}
        except ValueError:
            return {}
        return value if isinstance(value, dict) else {}

    @property
    def level_name(self) -> SandboxLogLevel | None:
        """The :class:`SandboxLogLevel` of ``level`` (None when absent or unknown)."""
        return None if self.level is None else SandboxLogLevel.from_number(self.level)

    @property
    def time(self) -> datetime:
        """``timestamp`` as a timezone-aware UTC datetime."""
        return datetime.fromtimestamp(self.timestamp / 1000, tz=timezone.utc)


class SandboxLogsResponse(_CamelWireModel):
    """One page of a sandbox's persisted logs; pass ``next_token`` back for the next page (None at the end)."""

    logs: Annotated[list[SandboxLogSignal], BeforeValidator(_none_as_empty_list)] = Field(default_factory=list)
    next_token: str | None = None


class SandboxProcessLogFilter(_CamelWireModel):
    """A process that has records in a sandbox's persisted logs (a value for ``process_ids``).

    ``first_seen`` / ``last_seen`` are epoch milliseconds.
    """

    process_id: str
    process_pid: str | None = None
    process_command: str | None = None
    process_managed_id: str | None = None
    process_managed_name: str | None = None
    first_seen: int | None = None
    last_seen: int | None = None
    log_count: int = 0

    @field_validator("process_pid", mode="before")
    @classmethod
    def _pid_as_text(cls, value: Any) -> Any:
        return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


class SandboxProcessLogFiltersResponse(_CamelWireModel):
    """The processes that have records in a sandbox's persisted logs."""

    processes: Annotated[list[SandboxProcessLogFilter], BeforeValidator(_none_as_empty_list)] = Field(
        default_factory=list
    )


# ---------------------------------------------------------------------------------------------
# Nodes (server-wide, docs/operations.md)


class NodeResources(_WireModel):
    """CPUs and memory (MiB) of a node: what the machine has, or what its sandboxes reserve."""

    cpus: float
    memory_mb: int


class NodeInfo(_WireModel):
    """One node: an Alcove server registered in the store it shares with the others.

    Returned by ``list_nodes()``, ``drain_node()`` and ``activate_node()``. ``capacity`` is what
    the machine has, ``used`` what its running sandboxes reserve (reported each time it renews its
    lease, ``lease_expires_at``); ``started_at`` is when this run of the server registered.
    ``lost_at`` is set once the other nodes declared it lost (its lease ran out): its running
    sandboxes were marked lost and its suspended sandboxes in the blob store moved away.
    """

    name: str
    address: str
    state: NodeStateValue
    labels: dict[str, str] = Field(default_factory=dict)
    subnet: str
    capacity: NodeResources
    used: NodeResources
    running_sandboxes: int
    suspended_sandboxes: int
    version: str
    started_at: Timestamp
    lease_expires_at: Timestamp
    lost_at: Timestamp | None = None


# ---------------------------------------------------------------------------------------------
# Images (server-wide, docs/images.md)


class ImageRunConfig(_WireModel):
    """How sandboxes of an image run, from its OCI config.

    ``env`` holds ``KEY=VALUE`` entries every process starts with (a call's own ``env`` wins);
    ``exposed_ports`` are routed like a sandbox's ``exposed_ports``.
    """

    env: Annotated[list[str], BeforeValidator(_none_as_empty_list)] = Field(default_factory=list)
    working_dir: str | None = None
    user: str | None = None
    entrypoint: Annotated[list[str], BeforeValidator(_none_as_empty_list)] = Field(default_factory=list)
    cmd: Annotated[list[str], BeforeValidator(_none_as_empty_list)] = Field(default_factory=list)
    exposed_ports: Annotated[list[int], BeforeValidator(_none_as_empty_list)] = Field(default_factory=list)


class ImageLayerInfo(_WireModel):
    """One layer of an image: ``diff_id`` is the digest of the uncompressed layer, ``digest`` the
    digest of the stored blob (when the store keeps one)."""

    diff_id: str
    digest: str | None = None
    size_bytes: int = 0
    unpacked_size_bytes: int = 0


class ImageUsers(_WireModel):
    """Who uses an image (ids): it cannot be deleted while any does."""

    sandboxes: Annotated[list[str], BeforeValidator(_none_as_empty_list)] = Field(default_factory=list)
    snapshots: Annotated[list[str], BeforeValidator(_none_as_empty_list)] = Field(default_factory=list)


class ImageInfo(_WireModel):
    """An image in the server's store.

    ``id`` is the digest of its config (``sha256:…``); ``names`` the references that name it
    (``name:tag``); ``size_bytes`` the bytes of all its unpacked layers; ``layers`` bottom first.
    ``used_by`` is set by :meth:`SandboxClient.get_image` only.
    """

    id: str
    names: Annotated[list[str], BeforeValidator(_none_as_empty_list)] = Field(default_factory=list)
    manifest_digest: str | None = None
    source: ImageSourceValue
    created_at: Timestamp = None
    size_bytes: int = 0
    layers: Annotated[list[ImageLayerInfo], BeforeValidator(_none_as_empty_list)] = Field(default_factory=list)
    config: ImageRunConfig = Field(default_factory=ImageRunConfig)
    used_by: ImageUsers | None = None


class DeleteImageResult(_WireModel):
    """What :meth:`SandboxClient.delete_image` removed: references (``untagged``), images (ids,
    ``deleted``) and the bytes of blobs and layers freed."""

    untagged: Annotated[list[str], BeforeValidator(_none_as_empty_list)] = Field(default_factory=list)
    deleted: Annotated[list[str], BeforeValidator(_none_as_empty_list)] = Field(default_factory=list)
    freed_bytes: int = 0


class LayerProgress(_WireModel):
    """Progress of one layer blob of a pull (``total_bytes`` may be 0 while unknown)."""

    digest: str
    status: LayerStatusValue
    current_bytes: int = 0
    total_bytes: int = 0


class ImageResolvedEvent(_WireModel):
    """A pull resolved its manifest: the layer blobs it will fetch, bottom first."""

    event: Literal["resolved"] = "resolved"
    manifest_digest: str
    layers: Annotated[list[LayerProgress], BeforeValidator(_none_as_empty_list)] = Field(default_factory=list)


class ImageLayerEvent(LayerProgress):
    """A layer of a pull advanced (the fields of :class:`LayerProgress`)."""

    event: Literal["layer"] = "layer"


class BuildStepEvent(_WireModel):
    """A build step started: ``number`` of ``total`` (1-based), the ``instruction`` as written,
    and whether the step cache answered it (``cached``)."""

    event: Literal["step"] = "step"
    number: int
    total: int
    instruction: str
    cached: bool = False


class BuildOutputEvent(_WireModel):
    """A line of a build step's output (``stream`` is ``stdout`` or ``stderr``; no newline)."""

    event: Literal["output"] = "output"
    stream: str
    line: str


class ImageDoneEvent(_WireModel):
    """The pull or build is over: the image is stored."""

    event: Literal["done"] = "done"
    image: ImageInfo


class ImageErrorEvent(_WireModel):
    """The pull or build failed and nothing was stored: ``code`` and ``message`` as in an error
    body, ``status`` the HTTP status the blocking call would have answered. The SDK raises the
    matching exception after passing this event on."""

    event: Literal["error"] = "error"
    code: str | None = None
    message: str = ""
    status: int = 500


ImageProgressEvent = (
    ImageResolvedEvent | ImageLayerEvent | BuildStepEvent | BuildOutputEvent | ImageDoneEvent | ImageErrorEvent
)
"""One event of a pull or build followed with ``on_progress``; tell them apart with
``isinstance`` or by their ``event`` field (``resolved``, ``layer``, ``step``, ``output``,
``done``, ``error``)."""

IMAGE_PROGRESS_EVENTS: dict[str, type[_WireModel]] = {
    "resolved": ImageResolvedEvent,
    "layer": ImageLayerEvent,
    "step": BuildStepEvent,
    "output": BuildOutputEvent,
    "done": ImageDoneEvent,
    "error": ImageErrorEvent,
}
"""The model of each progress event, by its ``event`` field."""


__all__ = [
    "CopiedSandbox",
    "CopySandboxResponse",
    "FileSystemAttachment",
    "FileSystemInfo",
    "FileSystemMount",
    "BuildOutputEvent",
    "BuildStepEvent",
    "DeleteImageResult",
    "ImageDoneEvent",
    "ImageErrorEvent",
    "ImageInfo",
    "ImageLayerEvent",
    "ImageLayerInfo",
    "ImageProgressEvent",
    "ImageResolvedEvent",
    "ImageRunConfig",
    "ImageSource",
    "ImageUsers",
    "LayerProgress",
    "LayerStatus",
    "CommandResult",
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
    "ContainerResourcesInfo",
    "DirectoryEntry",
    "GPUResources",
    "NetworkPolicy",
    "NodeInfo",
    "NodeResources",
    "NodeState",
    "LinePiece",
    "OutputBatch",
    "OutputEvent",
    "OutputMode",
    "OutputResponse",
    "ProcessInfo",
    "ProcessStatus",
    "PoolContainerInfo",
    "PoolContainerState",
    "PtySessionInfo",
    "SandboxInfo",
    "SandboxPoolInfo",
    "SandboxStatus",
    "SnapshotInfo",
    "SnapshotStatus",
    "SnapshotType",
    "StdinMode",
    "Timestamp",
]
