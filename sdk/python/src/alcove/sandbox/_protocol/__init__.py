"""The HTTP protocol of Alcove (docs/protocol/), written once for the sync and async clients.

Nothing here does I/O. Each operation is a generator ("op") that yields steps and receives
their outcome:

* a :class:`Request` step is answered with the :class:`httpx.Response` (or, when sending failed,
  a :class:`SandboxConnectionError` / :class:`SandboxTimeoutError` thrown into the generator);
* a :class:`Sleep` step is answered with ``None`` once the time has passed.

The generator's return value is the operation's result. ``async_client.py`` holds a small driver
that performs the steps with ``httpx.AsyncClient`` (``client.py``, generated from it, does the same
with ``httpx.Client``), so URL building, bodies, retries, polling, error mapping and decoding
live here once.

Streams (``run``, ``follow_*``, file downloads) are opened by an op that returns the open 2xx
response; the caller then feeds the chunks of its body, as they come, to a :class:`RunCollector`
(which says when the exit event has arrived) or an :class:`OutputEventDecoder`, and closes it.

The package is split by job; everything is re-exported here, so callers keep using
``from . import _protocol as proto`` and ``from ._protocol import X``:

* ``_steps``: the :class:`Request` / :class:`Sleep` steps, :data:`Op`, and ``_send`` (retries);
* ``_errors``: error bodies mapped to exceptions, JSON and model decoding;
* ``_routing``: headers, control-plane URLs, and requests to a sandbox's agent through the proxy;
* ``_validation``: client-side argument checks;
* ``_lifecycle``: sandboxes (create, get, list, delete, update, suspend/resume, ports) and snapshots;
* ``_pools``: warm pools (create, get, list, update, delete) and claims of their sandboxes;
* ``_nodes``: nodes, the servers sharing the store (list, drain, activate), outside any namespace;
* ``_processes``: processes of a sandbox, managed ones included;
* ``_logs``: a sandbox's persisted logs;
* ``_images``: images (list, get, delete, pull, import, build, snapshots saved as images) and the
  event streams of pulls and builds;
* ``_files``: files of a sandbox, with streamed uploads;
* ``_sse``: server-sent events: the byte stream cut into blocks of events, decoded a block at a time;
* ``_run_stream``: a run's events collected into a :class:`CommandResult`;
* ``_follow_stream``: the output events of follow streams (asked for in batches), checked once
  per batch and built without validation.
"""

from __future__ import annotations

# Not used here: tests patch ``_protocol.time.monotonic`` (the ``time`` module the ops read).
import time  # noqa: F401

# Re-exports: the public names through ``__all__``; the private helpers ``_pty_protocol`` imports
# from here through ``X as X``.
from ._errors import NOT_IMPLEMENTED, ErrorBody, check, error_from_response, transport_error
from ._errors import _json as _json
from ._errors import _model as _model
from ._files import (
    SEND_SLICE_BYTES,
    UPLOAD_CHUNK_BYTES,
    aiter_upload,
    iter_upload,
    op_delete_file,
    op_list_directory,
    op_open_read_file,
    op_read_file,
    op_write_file,
    prepare_upload,
    sliced_body,
)
from ._follow_stream import (
    FOLLOW_BACKOFF_SECS,
    FOLLOW_RECONNECTS,
    FollowResume,
    OutputBatchDecoder,
    OutputEventDecoder,
    events_of,
    iter_output_batches,
    iter_output_events,
    output_event,
)
from ._file_systems import (
    file_systems_url,
    mount_body,
    mounts_body,
    op_attach_file_system,
    op_create_file_system,
    op_delete_file_system,
    op_detach_file_system,
    op_get_file_system,
    op_list_file_systems,
)
from ._images import (
    DEFAULT_DOCKERFILE,
    EVENT_STREAM_HEADERS,
    TAR_CONTENT_TYPE,
    ImageProgressCollector,
    build_params,
    dockerfile_path,
    image_progress_event,
    image_reference,
    images_url,
    op_build_image,
    op_delete_image,
    op_get_image,
    op_import_image,
    op_list_images,
    op_open_build_image,
    op_open_pull_image,
    op_pull_image,
    op_save_snapshot_as_image,
    pull_body,
)
from ._lifecycle import (
    ARCHIVE_DIRECTIONS,
    CREATE_GRACE_MS,
    CREATE_POLL_INTERVAL_SECS,
    DEFAULT_CPUS,
    DEFAULT_MEMORY_MB,
    MAX_WAIT_MS,
    SNAPSHOT_POLL_INTERVAL_SECS,
    STATE_POLL_INTERVAL_SECS,
    archived_params,
    create_body,
    op_connect,
    op_copy,
    op_create,
    op_delete,
    op_delete_snapshot,
    op_desktop_url,
    op_expose_ports,
    op_get,
    op_get_archived,
    op_get_or_create,
    op_get_snapshot,
    op_list,
    op_list_archived,
    op_list_snapshots,
    op_metrics,
    op_rename,
    op_snapshot,
    op_snapshot_and_wait,
    op_transition,
    op_unexpose_ports,
    op_update,
    op_update_resources,
    op_wait_for_resource_resize,
)
from ._logs import log_level_number, logs_params, op_get_logs, op_list_log_processes
from ._nodes import node_name, nodes_url, op_activate_node, op_drain_node, op_list_nodes
from ._processes import (
    FOLLOW_STREAMS,
    health_check_body,
    op_close_stdin,
    op_get_output,
    op_get_process,
    op_kill_process,
    op_list_processes,
    op_open_follow,
    op_open_run,
    op_reopen_follow,
    op_restart_process,
    op_send_signal,
    op_start_process,
    op_stop_all_processes,
    op_write_stdin,
    restart_body,
    run_body,
    start_body,
)
from ._pools import (
    MAX_POOL_CONTAINERS,
    MAX_WARM_CONTAINERS,
    NetworkArg,
    claim_body,
    network_body,
    op_claim,
    op_create_pool,
    op_delete_pool,
    op_get_pool,
    op_list_pools,
    op_update_pool,
    pool_body,
)
from ._processes import _command_fields as _command_fields
from ._routing import (
    USER_AGENT,
    ProxyTarget,
    archived_url,
    base_headers,
    namespace_url,
    pools_url,
    proxy_target,
    sandboxes_url,
    snapshots_url,
    target_for,
)
from ._routing import _proxied as _proxied
from ._routing import _proxy_check as _proxy_check
from ._routing import _proxy_op as _proxy_op
from ._routing import _segment as _segment
from ._run_stream import RunCollector, collect_run
from ._sse import SSEBlocks, SSEDecoder, check_event_stream, decode_block
from ._steps import (
    GET_ATTEMPTS,
    MAX_RETRY_AFTER_SECS,
    NOT_READY_ATTEMPTS,
    NOT_READY_CODES,
    RETRYABLE_GET_STATUSES,
    Op,
    Request,
    Sleep,
    Step,
    Upload,
)
from ._steps import _send as _send
from ._validation import MANAGEMENT_PORT, validate_ports

__all__ = [
    "MAX_POOL_CONTAINERS",
    "MAX_WARM_CONTAINERS",
    "NetworkArg",
    "claim_body",
    "network_body",
    "op_claim",
    "op_create_pool",
    "op_delete_pool",
    "op_get_pool",
    "op_list_pools",
    "op_update_pool",
    "pool_body",
    "pools_url",
    "node_name",
    "nodes_url",
    "op_activate_node",
    "op_drain_node",
    "op_list_nodes",
    "file_systems_url",
    "mount_body",
    "mounts_body",
    "op_attach_file_system",
    "op_create_file_system",
    "op_delete_file_system",
    "op_detach_file_system",
    "op_get_file_system",
    "op_list_file_systems",
    "DEFAULT_DOCKERFILE",
    "EVENT_STREAM_HEADERS",
    "TAR_CONTENT_TYPE",
    "ImageProgressCollector",
    "build_params",
    "dockerfile_path",
    "image_progress_event",
    "image_reference",
    "images_url",
    "op_build_image",
    "op_delete_image",
    "op_get_image",
    "op_import_image",
    "op_list_images",
    "op_open_build_image",
    "op_open_pull_image",
    "op_pull_image",
    "op_save_snapshot_as_image",
    "pull_body",
    "start_body",
    "restart_body",
    "op_restart_process",
    "op_list_log_processes",
    "op_get_logs",
    "logs_params",
    "log_level_number",
    "health_check_body",
    "ARCHIVE_DIRECTIONS",
    "CREATE_GRACE_MS",
    "CREATE_POLL_INTERVAL_SECS",
    "DEFAULT_CPUS",
    "DEFAULT_MEMORY_MB",
    "ErrorBody",
    "FOLLOW_BACKOFF_SECS",
    "FOLLOW_RECONNECTS",
    "FOLLOW_STREAMS",
    "FollowResume",
    "GET_ATTEMPTS",
    "MANAGEMENT_PORT",
    "MAX_RETRY_AFTER_SECS",
    "MAX_WAIT_MS",
    "NOT_IMPLEMENTED",
    "NOT_READY_ATTEMPTS",
    "NOT_READY_CODES",
    "Op",
    "OutputBatchDecoder",
    "OutputEventDecoder",
    "ProxyTarget",
    "RETRYABLE_GET_STATUSES",
    "Request",
    "RunCollector",
    "SEND_SLICE_BYTES",
    "SNAPSHOT_POLL_INTERVAL_SECS",
    "SSEBlocks",
    "SSEDecoder",
    "STATE_POLL_INTERVAL_SECS",
    "Sleep",
    "Step",
    "UPLOAD_CHUNK_BYTES",
    "USER_AGENT",
    "Upload",
    "aiter_upload",
    "archived_params",
    "archived_url",
    "base_headers",
    "check",
    "check_event_stream",
    "collect_run",
    "create_body",
    "decode_block",
    "error_from_response",
    "iter_output_batches",
    "events_of",
    "iter_output_events",
    "iter_upload",
    "namespace_url",
    "op_close_stdin",
    "op_connect",
    "op_copy",
    "op_create",
    "op_delete",
    "op_delete_file",
    "op_delete_snapshot",
    "op_expose_ports",
    "op_get",
    "op_get_archived",
    "op_get_output",
    "op_get_process",
    "op_get_snapshot",
    "op_kill_process",
    "op_list",
    "op_list_archived",
    "op_list_directory",
    "op_list_processes",
    "op_list_snapshots",
    "op_open_follow",
    "op_open_read_file",
    "op_open_run",
    "op_read_file",
    "op_rename",
    "op_reopen_follow",
    "op_send_signal",
    "op_stop_all_processes",
    "op_snapshot",
    "op_snapshot_and_wait",
    "op_start_process",
    "op_desktop_url",
    "op_metrics",
    "op_transition",
    "op_unexpose_ports",
    "op_update",
    "op_update_resources",
    "op_wait_for_resource_resize",
    "op_write_file",
    "op_write_stdin",
    "output_event",
    "prepare_upload",
    "proxy_target",
    "run_body",
    "sandboxes_url",
    "sliced_body",
    "snapshots_url",
    "target_for",
    "transport_error",
    "validate_ports",
]
