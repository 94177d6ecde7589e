# client.py is generated from this file: after a change, run scripts/generate_sync.py (in sdk/python).
"""Asynchronous control-plane client: sandbox lifecycle, warm pools, snapshots, images and nodes.

Each method builds an operation from :mod:`._protocol` and hands it to
:meth:`AsyncSandboxClient._drive`, which performs its HTTP requests and sleeps with
``httpx.AsyncClient``.
"""

from __future__ import annotations

import asyncio  # sync: import time
import inspect  # async only
import os

# sync: from collections.abc import Callable, Iterable, Iterator, Mapping
from collections.abc import AsyncIterator, Awaitable, Callable, Generator, Iterable, Mapping
from types import TracebackType
from typing import IO, Any, TypeVar

import httpx

from . import _protocol as proto
from ._config import (
    DEFAULT_NAMESPACE,
    DEFAULT_STREAM_IDLE_TIMEOUT_SECS,
    DEFAULT_TIMEOUT_SECS,
    ClientConfig,
    resolve_config,
)
from ._context import context_file, write_directory_context
from .async_sandbox import AsyncSandbox
from .exceptions import SandboxCopyError, SandboxException
from .image import Image
from .models import (
    ArchivedSandboxInfo,
    ArchivedSandboxPage,
    CopySandboxResponse,
    DeleteImageResult,
    FileSystemInfo,
    FileSystemMount,
    ImageInfo,
    ImageProgressEvent,
    NetworkPolicy,
    NodeInfo,
    SandboxInfo,
    SandboxLogLevel,
    SandboxLogSignal,
    SandboxLogsResponse,
    SandboxMetrics,
    SandboxPoolInfo,
    SandboxProcessLogFiltersResponse,
    SnapshotInfo,
    SnapshotType,
)

T = TypeVar("T")

ImageProgressCallback = Callable[[ImageProgressEvent], Any]
"""What ``on_progress`` of a pull or build is: called with each event (the async client also
awaits what a coroutine function returns)."""

# A module attribute, so that tests can skip the waits.
_sleep = asyncio.sleep  # sync: _sleep = time.sleep


class AsyncSandboxClient:
    """Manage the sandboxes of one namespace on an Alcove server.

    Configuration comes from the arguments, then ``ALCOVE_API_URL`` (default
    ``http://localhost:8900``) and ``ALCOVE_API_KEY``, read when the client is built. ``timeout``
    is the per-request timeout in seconds and also the deadline of every wait (create, suspend,
    resume, snapshot); file transfers may take longer as long as bytes keep moving.
    ``stream_idle_timeout`` (default 120 s) bounds the silence of command and output streams
    (``run``, ``follow_*``): the agent sends a keep-alive every 15 s, so a silent command may run for
    hours, but a stopped or unreachable agent raises :class:`SandboxTimeoutError` instead of
    hanging. Pass ``stream_idle_timeout=None`` to wait forever.

    Use it as a context manager, or call :meth:`close`, to release its connections. Sandbox handles
    share the client's connections, so keep the client open while you use them::

        async with AsyncSandboxClient() as client:
            async with client.create_and_connect() as sandbox:
                result = await sandbox.run("echo", ["hello"])
                print(result.stdout)
    """

    def __init__(
        self,
        api_url: str | None = None,
        api_key: str | None = None,
        namespace: str = DEFAULT_NAMESPACE,
        timeout: float = DEFAULT_TIMEOUT_SECS,
        stream_idle_timeout: float | None = DEFAULT_STREAM_IDLE_TIMEOUT_SECS,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._config: ClientConfig = resolve_config(
            api_url, api_key, namespace, timeout, stream_idle_timeout=stream_idle_timeout
        )
        self._http = httpx.AsyncClient(transport=transport, timeout=self._config.request_timeout())

    @property
    def api_url(self) -> str:
        return self._config.api_url

    @property
    def namespace(self) -> str:
        return self._config.namespace

    def __repr__(self) -> str:
        return f"AsyncSandboxClient(api_url={self.api_url!r}, namespace={self.namespace!r})"

    async def close(self) -> None:
        """Close the client's connections (sandbox handles made by it stop working)."""
        await self._http.aclose()

    async def __aenter__(self) -> AsyncSandboxClient:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    # -- driver --------------------------------------------------------------------------------

    async def _drive(self, op: proto.Op[T]) -> T:
        """Perform the steps of a protocol operation and return its result."""
        try:
            step = next(op)
            while True:
                try:
                    outcome = await self._perform(step)
                except SandboxException as exc:
                    step = op.throw(exc)
                else:
                    step = op.send(outcome)
        except StopIteration as stop:
            return stop.value

    async def _perform(self, step: proto.Step) -> httpx.Response | None:
        if isinstance(step, proto.Sleep):
            await _sleep(step.seconds)
            return None
        headers = dict(step.headers)
        content: Any = step.content  # sync: content: Any = proto.sliced_body(step.content, headers)
        if step.upload is not None:
            content = proto.aiter_upload(step.upload.source)
            if step.upload.length is not None:
                headers["Content-Length"] = str(step.upload.length)
        if step.events:
            timeout = self._config.event_stream_timeout()
        elif step.stream or step.upload is not None:
            timeout = self._config.transfer_timeout()
        else:
            timeout = self._config.request_timeout()
        request = self._http.build_request(
            step.method,
            step.url,
            params=step.params,
            json=step.json,
            content=content,
            headers=headers,
            timeout=timeout,
        )
        try:
            response = await self._http.send(request, stream=step.stream)
            if step.stream and not response.is_success:
                try:
                    await response.aread()
                finally:
                    await response.aclose()
            return response
        except httpx.HTTPError as exc:
            raise proto.transport_error(exc, step.method, step.url, self._config, events=step.events) from exc

    async def _chunks(
        self, response: httpx.Response, chunk_size: int | None = None, *, events: bool = False
    ) -> AsyncIterator[bytes]:
        """The body of a streamed response, as it comes (``chunk_size=None``) or in chunks of that
        size; transport errors become SDK errors (``events``: it is an event stream, whose read
        timeout is ``stream_idle_timeout``)."""
        try:
            async for chunk in response.aiter_bytes(chunk_size):
                yield chunk
        except httpx.HTTPError as exc:
            raise proto.transport_error(
                exc, response.request.method, str(response.request.url), self._config, events=events
            ) from exc

    # -- sandboxes -----------------------------------------------------------------------------

    async def create(
        self,
        name: str | None = None,
        cpus: float = 1.0,
        memory_mb: int = 1024,
        timeout_secs: int | None = None,
        image: str | None = None,
        snapshot_id: str | None = None,
        secret_names: list[str] | None = None,
        expose_ports: list[int] | None = None,
        allow_unauthenticated_access: bool = False,
        disk_mb: int | None = None,
        entrypoint: list[str] | None = None,
        pull_image: bool = False,
        file_systems: list[FileSystemMount | dict[str, Any]] | None = None,
        node_selector: dict[str, str] | None = None,
    ) -> SandboxInfo:
        """Create a sandbox and wait until it is running.

        Omit ``name`` for an ephemeral sandbox; a named one can be suspended and resumed. Pass
        ``snapshot_id`` to restore a snapshot (image and resources are inherited unless given,
        each size on its own; ``cpus=1.0`` and ``memory_mb=1024``, the defaults, inherit too).
        Raises :class:`SandboxNameConflictError` when the name is taken,
        :class:`SandboxFailedError` when the sandbox fails to start and
        :class:`SandboxTimeoutError` when it is not running within the client's ``timeout``.
        ``pull_image=True`` lets the server pull ``image`` from its registry first when its store
        does not have it (otherwise an unknown image is :class:`RemoteAPIError` 404).
        ``file_systems`` mounts volumes when it boots (:class:`FileSystemMount` or dicts with
        ``file_system_id``, ``mount_path`` and ``read_only``).
        ``node_selector`` (an Alcove extension) runs it only on a node whose labels
        (``alcove serve --node-label key=value``) include every pair; when no such node has room
        the server answers :class:`RemoteAPIError` 503 ``RESOURCE_EXHAUSTED``.
        """
        body = proto.create_body(
            name=name,
            cpus=cpus,
            memory_mb=memory_mb,
            timeout_secs=timeout_secs,
            image=image,
            snapshot_id=snapshot_id,
            secret_names=secret_names,
            expose_ports=expose_ports,
            allow_unauthenticated_access=allow_unauthenticated_access,
            disk_mb=disk_mb,
            entrypoint=entrypoint,
            pull_image=pull_image,
            file_systems=file_systems,
            node_selector=node_selector,
        )
        return await self._drive(proto.op_create(self._config, body))

    def create_and_connect(
        self,
        name: str | None = None,
        cpus: float = 1.0,
        memory_mb: int = 1024,
        timeout_secs: int | None = None,
        image: str | None = None,
        snapshot_id: str | None = None,
        secret_names: list[str] | None = None,
        expose_ports: list[int] | None = None,
        allow_unauthenticated_access: bool = False,
        disk_mb: int | None = None,
        entrypoint: list[str] | None = None,
        pull_image: bool = False,
        file_systems: list[FileSystemMount | dict[str, Any]] | None = None,
        node_selector: dict[str, str] | None = None,
    ) -> _SandboxContext:  # sync: ) -> Sandbox:
        """Create a sandbox (as :meth:`create`) and return a handle to it.

        Used as a context manager, the handle deletes the sandbox on exit::

            async with client.create_and_connect() as sandbox: ...
            sandbox = await client.create_and_connect()  # delete it with sandbox.terminate()
        """
        handle = self._create_and_connect(
            name=name,
            cpus=cpus,
            memory_mb=memory_mb,
            timeout_secs=timeout_secs,
            image=image,
            snapshot_id=snapshot_id,
            secret_names=secret_names,
            expose_ports=expose_ports,
            allow_unauthenticated_access=allow_unauthenticated_access,
            disk_mb=disk_mb,
            entrypoint=entrypoint,
            pull_image=pull_image,
            file_systems=file_systems,
            node_selector=node_selector,
        )
        return _SandboxContext(handle)  # sync: return handle

    async def _create_and_connect(self, **kwargs: Any) -> AsyncSandbox:
        info = await self.create(**kwargs)
        return await self._owned_handle(info)

    async def _owned_handle(self, info: SandboxInfo) -> AsyncSandbox:
        """A handle that deletes the sandbox on exit; the sandbox is deleted if none can be made."""
        try:
            return AsyncSandbox(self, info, owned=True)
        except SandboxException:
            try:
                await self.delete(info.sandbox_id)
            except SandboxException:
                pass
            raise

    async def get_or_create(
        self,
        name: str,
        *,
        resume: bool = True,
        cpus: float = 1.0,
        memory_mb: int = 1024,
        timeout_secs: int | None = None,
        image: str | None = None,
        snapshot_id: str | None = None,
        secret_names: list[str] | None = None,
        expose_ports: list[int] | None = None,
        allow_unauthenticated_access: bool = False,
        disk_mb: int | None = None,
        entrypoint: list[str] | None = None,
        pull_image: bool = False,
        file_systems: list[FileSystemMount | dict[str, Any]] | None = None,
        node_selector: dict[str, str] | None = None,
    ) -> AsyncSandbox:
        """A handle to the one sandbox named ``name``, created (as :meth:`create`) on first use.

        Meant for an agent session that derives its sandbox's name from its own id: where
        :meth:`create` raises :class:`SandboxNameConflictError`, this attaches to the holder.
        Concurrent callers with one name all get the same sandbox; one still starting is waited
        for, and a suspended one is resumed (``resume=False`` returns it suspended). The other
        arguments are used only when the sandbox is created. The handle's
        :attr:`~AsyncSandbox.bind_outcome` says what happened (``"created"``, ``"attached"``,
        ``"resumed"``); it does not delete the sandbox on exit, since the name is meant to be
        used again::

            sandbox = await client.get_or_create(f"agent-{session_id}", memory_mb=2048)
        """
        body = proto.create_body(
            name=name,
            cpus=cpus,
            memory_mb=memory_mb,
            timeout_secs=timeout_secs,
            image=image,
            snapshot_id=snapshot_id,
            secret_names=secret_names,
            expose_ports=expose_ports,
            allow_unauthenticated_access=allow_unauthenticated_access,
            disk_mb=disk_mb,
            entrypoint=entrypoint,
            pull_image=pull_image,
            file_systems=file_systems,
            node_selector=node_selector,
        )
        info, outcome = await self._drive(proto.op_get_or_create(self._config, name, body, resume=bool(resume)))
        return AsyncSandbox(self, info, bind_outcome=outcome)

    async def connect(self, identifier: str) -> AsyncSandbox:
        """A handle to an existing sandbox, by id or name (``sandbox_id`` is always the id)."""
        return AsyncSandbox(self, await self._drive(proto.op_connect(self._config, identifier)))

    async def get(self, identifier: str) -> SandboxInfo:
        """Describe one sandbox, by id or name."""
        return await self._drive(proto.op_get(self._config, identifier))

    async def list(self) -> list[SandboxInfo]:
        """The live sandboxes of the namespace (ended ones are in :meth:`list_archived`)."""
        return await self._drive(proto.op_list(self._config))

    async def list_archived(
        self, limit: int | None = None, cursor: str | None = None, direction: str | None = None
    ) -> ArchivedSandboxPage:
        """One page of the namespace's ended sandboxes, newest first, kept by the server for its
        ``--archive-ttl``. ``limit``: at most this many (server default 100, at most 1000);
        ``cursor``: a ``next_cursor`` (with ``direction="forward"``, the default) or
        ``prev_cursor`` (with ``direction="backward"``) of an earlier page."""
        return await self._drive(proto.op_list_archived(self._config, limit, cursor, direction))

    async def get_archived(self, sandbox_id: str) -> ArchivedSandboxInfo:
        """One archived sandbox, by id; :class:`SandboxNotFoundError` if it is unknown, still
        live, or past the archive's retention."""
        return await self._drive(proto.op_get_archived(self._config, sandbox_id))

    async def delete(self, identifier: str) -> None:
        """Terminate a sandbox for good."""
        await self._drive(proto.op_delete(self._config, identifier))

    async def update_sandbox(self, identifier: str, name: str) -> SandboxInfo:
        """Rename a sandbox; naming an ephemeral sandbox makes it suspendable."""
        return await self._drive(proto.op_rename(self._config, identifier, name))

    async def update(
        self,
        identifier: str,
        *,
        cpus: float | None = None,
        memory_mb: int | None = None,
        disk_mb: int | None = None,
        wait: bool = True,
        timeout: float = 300,
        poll_interval: float = 1.0,
    ) -> SandboxInfo:
        """Resize a running sandbox live (a suspended one gets the limits when it resumes).
        Omitted dimensions keep their value; the disk only grows. With ``wait`` (the default),
        waits up to ``timeout`` seconds for the resize to succeed; otherwise returns at once,
        and :meth:`wait_for_resource_resize` waits for ``info.resource_resize.generation``.
        Raises :class:`SandboxResizeError` when the resize fails, and :class:`RemoteAPIError`
        when the server refuses it (400 for bad values, 409 for memory below what it uses)."""
        return await self._drive(
            proto.op_update_resources(
                self._config, identifier, cpus, memory_mb, disk_mb, wait, timeout, poll_interval
            )
        )

    async def wait_for_resource_resize(
        self, identifier: str, generation: int, *, timeout: float = 300, poll_interval: float = 1.0
    ) -> SandboxInfo:
        """Wait for resize ``generation`` of a sandbox to succeed, without asking for another;
        :class:`SandboxResizeError` when it failed, was superseded, or is pending at ``timeout``."""
        return await self._drive(
            proto.op_wait_for_resource_resize(self._config, identifier, generation, timeout, poll_interval)
        )

    async def suspend(self, identifier: str) -> SandboxInfo:
        """Suspend a named sandbox and wait until it is ``suspended``."""
        return await self._drive(proto.op_transition(self._config, identifier, "suspend"))

    async def resume(self, identifier: str) -> SandboxInfo:
        """Resume a suspended sandbox and wait until it is ``running``."""
        return await self._drive(proto.op_transition(self._config, identifier, "resume"))

    async def copy(self, identifier: str, times: int = 1) -> CopySandboxResponse:
        """Copy a running sandbox ``times`` ways (1 to 16): one memory dump of it, which keeps
        running, restored into new sandboxes with its processes, memory and files, each with its
        own id and address (and no name). Waits until every copy runs or failed; failed copies
        are in the answer with ``status`` ``failed`` and a ``reason`` (see
        :meth:`copy_and_connect` for handles). Raises :class:`RemoteAPIError` (409) when the
        sandbox is not running, :class:`SandboxNotFoundError` when there is no such sandbox."""
        return await self._drive(proto.op_copy(self._config, identifier, times))

    async def copy_and_connect(self, identifier: str, times: int = 1) -> list[AsyncSandbox]:
        """Copy a running sandbox as :meth:`copy` does and return handles to the copies, which
        delete their sandbox when used as a context manager. All or nothing: when any copy
        failed, the ones that run are deleted and :class:`SandboxCopyError` is raised with the
        copy's answer as ``result``."""
        result = await self.copy(identifier, times)
        failed = result.failed
        if failed:
            for made in result.sandboxes:
                if made.running:
                    try:
                        await self.delete(made.sandbox_id)
                    except SandboxException:
                        pass
            reasons = "; ".join(f"{c.sandbox_id}: {c.reason or c.status}" for c in failed)
            raise SandboxCopyError(
                result.source_sandbox_id,
                result,
                f"{len(failed)} of {len(result.sandboxes)} copies of sandbox {identifier} failed: {reasons}",
            )
        handles: list[AsyncSandbox] = []
        for made in result.sandboxes:
            info = await self._drive(proto.op_connect(self._config, made.sandbox_id))
            handles.append(AsyncSandbox(self, info, owned=True))
        return handles

    async def desktop_url(self, identifier: str, port: int | None = None) -> str:
        """A URL, valid for an hour, at which a browser sees and drives the sandbox's desktop
        (noVNC over the sandbox's TCP tunnel to its VNC server on ``port``, default 5901).
        Append ``#password=<vnc password>`` to skip the password prompt."""
        return await self._drive(proto.op_desktop_url(self._config, identifier, port))

    async def metrics(self, identifier: str) -> SandboxMetrics:
        """What a running sandbox uses now against its limits: CPU time, memory, tasks and disk."""
        return await self._drive(proto.op_metrics(self._config, identifier))

    async def expose_ports(
        self, identifier: str, ports: Iterable[int], allow_unauthenticated_access: bool | None = None
    ) -> SandboxInfo:
        """Route traffic to user ports of the sandbox (added to those already exposed). Whether
        exposed ports accept unauthenticated traffic stays as it is unless
        ``allow_unauthenticated_access`` says otherwise."""
        return await self._drive(proto.op_expose_ports(self._config, identifier, ports, allow_unauthenticated_access))

    async def unexpose_ports(self, identifier: str, ports: Iterable[int]) -> SandboxInfo:
        """Stop routing traffic to the given user ports."""
        return await self._drive(proto.op_unexpose_ports(self._config, identifier, ports))

    # -- pools -------------------------------------------------------------------------------

    async def create_pool(
        self,
        image: str | None = None,
        cpus: float = 1.0,
        memory_mb: int = 1024,
        disk_mb: int | None = None,
        timeout_secs: int = 0,
        entrypoint: list[str] | None = None,
        max_containers: int | None = None,
        warm_containers: int | None = None,
        network: NetworkPolicy | Mapping[str, Any] | None = None,
        node_selector: dict[str, str] | None = None,
    ) -> SandboxPoolInfo:
        """Create a warm pool and return it (read back, with its ``containers``).

        The server starts ``warm_containers`` (1 to 64, default 1) idle sandboxes of this
        configuration in the background and keeps that many started as claims take them, never
        more than ``max_containers`` (1 to 1000, idle and claimed; ``None``: no limit but the
        host's). Idle sandboxes are invisible to :meth:`list`; :meth:`claim` hands one out.
        ``timeout_secs`` is a claimed sandbox's lifetime counted from its claim (0: none);
        ``network`` the outbound policy of its sandboxes (a :class:`NetworkPolicy` or a mapping
        of its fields; ``None``: open). ``node_selector`` (an Alcove extension, as :meth:`create`
        takes it) starts its sandboxes only on nodes whose labels include every pair (``None`` or
        empty: any node). Raises :class:`ValueError` on bad arguments,
        :class:`ImageNotFoundError` when the server has no such image and
        :class:`RemoteAPIError` (400 ``INVALID_ARGUMENT``) when it refuses the configuration.
        """
        body = proto.pool_body(
            image=image,
            cpus=cpus,
            memory_mb=memory_mb,
            disk_mb=disk_mb,
            timeout_secs=timeout_secs,
            entrypoint=entrypoint,
            max_containers=max_containers,
            warm_containers=warm_containers,
            network=network,
            node_selector=node_selector,
        )
        return await self._drive(proto.op_create_pool(self._config, body))

    async def get_pool(self, pool_id: str) -> SandboxPoolInfo:
        """Describe one pool, with its ``containers``: idle sandboxes (``Idle``) and claimed ones
        that have not ended (``Running``). Raises :class:`PoolNotFoundError`."""
        return await self._drive(proto.op_get_pool(self._config, pool_id))

    async def list_pools(self) -> list[SandboxPoolInfo]:
        """The namespace's pools, oldest first (without ``containers``)."""
        return await self._drive(proto.op_list_pools(self._config))

    async def update_pool(
        self,
        pool_id: str,
        image: str | None = None,
        cpus: float = 1.0,
        memory_mb: int = 1024,
        disk_mb: int | None = None,
        timeout_secs: int = 0,
        entrypoint: list[str] | None = None,
        max_containers: int | None = None,
        warm_containers: int | None = None,
        network: NetworkPolicy | Mapping[str, Any] | None = None,
        node_selector: dict[str, str] | None = None,
    ) -> SandboxPoolInfo:
        """Replace a pool's configuration (the server's ``PUT``): every argument means what it
        means to :meth:`create_pool`, and one left out takes its default, not the pool's current
        value, except ``network``, which ``None`` keeps (pass ``NetworkPolicy()`` to open it).
        ``node_selector`` left out is no selector (any node), not the pool's: pass
        ``pool.node_selector`` to keep it.

        Idle sandboxes made from the old configuration are ended and replaced in the background;
        claimed ones are not touched. Returns the pool as changed (without ``containers``).
        Raises :class:`PoolNotFoundError`, :class:`ImageNotFoundError` and
        :class:`RemoteAPIError` (400) as :meth:`create_pool` does.
        """
        body = proto.pool_body(
            image=image,
            cpus=cpus,
            memory_mb=memory_mb,
            disk_mb=disk_mb,
            timeout_secs=timeout_secs,
            entrypoint=entrypoint,
            max_containers=max_containers,
            warm_containers=warm_containers,
            network=network,
            node_selector=node_selector,
        )
        return await self._drive(proto.op_update_pool(self._config, pool_id, body))

    async def delete_pool(self, pool_id: str) -> None:
        """Delete a pool and end its idle sandboxes. Raises :class:`PoolInUseError` while
        sandboxes claimed from it have not ended (delete them first), and
        :class:`PoolNotFoundError`."""
        await self._drive(proto.op_delete_pool(self._config, pool_id))

    async def claim(
        self,
        pool_id: str,
        *,
        name: str | None = None,
        env: Mapping[str, str] | None = None,
        secret_names: list[str] | None = None,
        network: NetworkPolicy | Mapping[str, Any] | None = None,
        file_systems: list[Any] | None = None,
    ) -> SandboxInfo:
        """Take a running sandbox from the pool, with ``name``, ``env``, the secrets and
        ``network`` (replacing the pool's policy) bound to it first; ``env`` and the secrets reach
        every process started after the claim, and the pool's ``timeout_secs`` counts from now.

        Takes an idle sandbox when the pool has one, else starts one (as :meth:`create` waits).
        The claimed sandbox is an ordinary one (in :meth:`list`, with ``pool_id`` set): delete it
        when done. Raises :class:`PoolNotFoundError`, :class:`PoolAtCapacityError` (no idle
        sandbox and ``max_containers`` reached), :class:`SandboxNameConflictError`,
        :class:`RemoteAPIError` (400: a bad name, variable, network policy or mount path, an
        unknown secret; 404: an unknown volume; 409 ``FILE_SYSTEM_IN_USE``: a volume mounted
        read-write elsewhere), and
        :class:`SandboxFailedError` / :class:`SandboxTimeoutError` when a sandbox it had to start
        fails or is late.
        """
        body = proto.claim_body(
            name=name, env=env, secret_names=secret_names, network=network, file_systems=file_systems
        )
        return await self._drive(proto.op_claim(self._config, pool_id, body))

    def claim_and_connect(
        self,
        pool_id: str,
        *,
        name: str | None = None,
        env: Mapping[str, str] | None = None,
        secret_names: list[str] | None = None,
        network: NetworkPolicy | Mapping[str, Any] | None = None,
        file_systems: list[Any] | None = None,
    ) -> _SandboxContext:  # sync: ) -> Sandbox:
        """Claim a sandbox of the pool (as :meth:`claim`) and return a handle to it.

        Used as a context manager, the handle deletes the sandbox on exit::

            async with client.claim_and_connect(pool.pool_id) as sandbox: ...
            sandbox = await client.claim_and_connect(pool_id)  # delete it with sandbox.terminate()
        """
        handle = self._claim_and_connect(
            pool_id, name=name, env=env, secret_names=secret_names, network=network, file_systems=file_systems
        )
        return _SandboxContext(handle)  # sync: return handle

    async def _claim_and_connect(self, pool_id: str, **kwargs: Any) -> AsyncSandbox:
        info = await self.claim(pool_id, **kwargs)
        return await self._owned_handle(info)

    # -- nodes (server-wide) -------------------------------------------------------------------

    async def list_nodes(self) -> list[NodeInfo]:
        """Every node (Alcove server) registered in the server's store, by name, with its state
        (``active``, ``draining``, or ``offline`` once its lease ran out), capacity and use.
        Nodes are server-wide: the client's namespace plays no part."""
        return await self._drive(proto.op_list_nodes(self._config))

    async def drain_node(self, name: str) -> NodeInfo:
        """Take a node out of service and return it (``draining``): it starts and resumes no
        sandboxes (creates, restores, copies and resumes there fail with :class:`RemoteAPIError`
        503 ``NODE_DRAINING``), its pools stop refilling, and it suspends its named running
        sandboxes. The state outlives restarts of the node until :meth:`activate_node`. Raises
        :class:`RemoteAPIError` 404 when there is no such node."""
        return await self._drive(proto.op_drain_node(self._config, name))

    async def activate_node(self, name: str) -> NodeInfo:
        """Put a drained node back in service and return it (``active``); sandboxes the drain
        suspended stay suspended until resumed. Raises :class:`RemoteAPIError` 404 when there is
        no such node."""
        return await self._drive(proto.op_activate_node(self._config, name))

    # -- logs ----------------------------------------------------------------------------------

    async def get_logs(
        self,
        sandbox_id: str,
        levels: list[SandboxLogLevel | str | int] | None = None,
        process_ids: list[str] | None = None,
        next_token: str | None = None,
        head: int | None = None,
        tail: int | None = None,
        body: str | None = None,
    ) -> SandboxLogsResponse:
        """One page of a sandbox's persisted logs: its processes' output lines and events (a
        process started, exited, was restarted, ...), oldest first; kept after the sandbox ended.

        ``levels``: only these severities (:class:`SandboxLogLevel`, names such as ``"info"`` or
        numbers 1 to 6); ``process_ids``: only these processes (ids from
        :meth:`list_log_processes`); ``body``: only records whose text contains it; ``head`` /
        ``tail``: only the first / last n records. Pass the answer's ``next_token`` back as
        ``next_token`` for the next page (None at the end); :meth:`iter_logs` does that for you.
        """
        return await self._drive(
            proto.op_get_logs(self._config, sandbox_id, levels, process_ids, next_token, head, tail, body)
        )

    async def iter_logs(
        self,
        sandbox_id: str,
        levels: list[SandboxLogLevel | str | int] | None = None,
        process_ids: list[str] | None = None,
        body: str | None = None,
    ) -> AsyncIterator[SandboxLogSignal]:
        """Every record of a sandbox's persisted logs that passes the filters (as in
        :meth:`get_logs`), following ``next_token`` from page to page."""
        next_token: str | None = None
        seen: set[str] = set()
        while True:
            page = await self.get_logs(
                sandbox_id, levels=levels, process_ids=process_ids, next_token=next_token, body=body
            )
            for record in page.logs:
                yield record
            if not page.next_token or page.next_token in seen or not page.logs:
                return
            seen.add(page.next_token)
            next_token = page.next_token

    async def list_log_processes(self, sandbox_id: str) -> SandboxProcessLogFiltersResponse:
        """The processes that have records in a sandbox's persisted logs (their ``process_id``
        values filter :meth:`get_logs`)."""
        return await self._drive(proto.op_list_log_processes(self._config, sandbox_id))

    # -- file systems (persistent volumes) -----------------------------------------------------

    async def create_file_system(self, name: str, size_mb: int) -> FileSystemInfo:
        """Create a persistent volume of ``size_mb`` MiB (docs/volumes.md)."""
        return await self._drive(proto.op_create_file_system(self._config, name, size_mb))

    async def list_file_systems(self) -> list[FileSystemInfo]:
        """The namespace's volumes, with where each is mounted."""
        return await self._drive(proto.op_list_file_systems(self._config))

    async def get_file_system(self, name: str) -> FileSystemInfo:
        """One volume; :class:`RemoteAPIError` 404 if there is none of that name."""
        return await self._drive(proto.op_get_file_system(self._config, name))

    async def delete_file_system(self, name: str) -> None:
        """Delete a volume and its data; :class:`RemoteAPIError` 409 while a sandbox has it mounted."""
        await self._drive(proto.op_delete_file_system(self._config, name))

    async def attach_file_system(
        self, sandbox: str, file_system_id: str, mount_path: str, read_only: bool = False
    ) -> SandboxInfo:
        """Mount a volume into a running sandbox, live; 409 when it is mounted elsewhere in a way
        that excludes this mount (read-write is exclusive)."""
        return await self._drive(
            proto.op_attach_file_system(self._config, sandbox, file_system_id, mount_path, read_only)
        )

    async def detach_file_system(self, sandbox: str, mount_path: str) -> SandboxInfo:
        """Unmount the volume at ``mount_path`` from a running sandbox; 409 while files on it are
        in use (it stays mounted)."""
        return await self._drive(proto.op_detach_file_system(self._config, sandbox, mount_path))

    # -- snapshots -----------------------------------------------------------------------------

    async def snapshot(self, identifier: str, snapshot_type: SnapshotType | str | None = None) -> SnapshotInfo:
        """Start a snapshot of the sandbox without waiting for it (usually ``in_progress``)."""
        return await self._drive(proto.op_snapshot(self._config, identifier, snapshot_type))

    async def snapshot_and_wait(self, identifier: str, snapshot_type: SnapshotType | str | None = None) -> SnapshotInfo:
        """Snapshot the sandbox and wait until the snapshot is usable (``local_ready``/``completed``)."""
        return await self._drive(proto.op_snapshot_and_wait(self._config, identifier, snapshot_type))

    async def list_snapshots(self) -> list[SnapshotInfo]:
        """Every snapshot of the namespace."""
        return await self._drive(proto.op_list_snapshots(self._config))

    async def get_snapshot(self, snapshot_id: str) -> SnapshotInfo:
        """Describe one snapshot."""
        return await self._drive(proto.op_get_snapshot(self._config, snapshot_id))

    async def delete_snapshot(self, snapshot_id: str) -> None:
        """Delete a snapshot."""
        await self._drive(proto.op_delete_snapshot(self._config, snapshot_id))

    async def save_snapshot_as_image(self, snapshot_id: str, name: str) -> ImageInfo:
        """Store a snapshot's filesystem as the image ``name`` (``name:tag``), to create sandboxes
        from (``create(image=name)``). :class:`SnapshotNotFoundError` if the snapshot is unknown."""
        return await self._drive(proto.op_save_snapshot_as_image(self._config, snapshot_id, name))

    # -- images --------------------------------------------------------------------------------

    async def list_images(self) -> list[ImageInfo]:
        """Every image of the server's store (images are server-wide), newest first."""
        return await self._drive(proto.op_list_images(self._config))

    async def get_image(self, ref: str) -> ImageInfo:
        """Describe one image, by reference (``alcove/debian``, ``registry:5000/tools/jq:1``,
        ``name@sha256:…``) or id (``sha256:…``, or 12 or more of its hex digits); ``used_by``
        lists the sandboxes and snapshots that use it. :class:`ImageNotFoundError` if unknown."""
        return await self._drive(proto.op_get_image(self._config, ref))

    async def delete_image(self, ref: str) -> DeleteImageResult:
        """Delete an image (by reference or id): :class:`ImageInUseError` while a sandbox or
        snapshot uses it, :class:`ImageNotFoundError` if unknown."""
        return await self._drive(proto.op_delete_image(self._config, ref))

    async def pull_image(
        self,
        reference: str,
        *,
        name: str | None = None,
        username: str | None = None,
        password: str | None = None,
        auth_secret: str | None = None,
        on_progress: ImageProgressCallback | None = None,
    ) -> ImageInfo:
        """Pull an image from a registry into the server's store (``registry/repository:tag`` or
        ``…@sha256:…``); ``name`` stores it under that reference too.

        Credentials: ``username`` with ``password`` (a password or token, never logged nor shown
        in errors), or ``auth_secret``, a stored secret whose value is ``username:password``.
        Without ``on_progress`` the call returns when the image is stored, waiting at most the
        client's ``timeout`` for the answer; with it, the server streams its progress, each event
        (:data:`ImageProgressEvent`: ``resolved``, ``layer``, ``done``, ``error``) is passed to
        ``on_progress`` as it comes (a coroutine function's result is awaited by the async
        client), and only silence longer than ``stream_idle_timeout`` fails the wait.

        Raises :class:`ImageNotFoundError` (unknown reference), :class:`RegistryAuthenticationError`
        (credentials refused), :class:`RegistryError` (registry unreachable or failing), each with
        the server's ``code`` and ``message``, also when they arrive as an ``error`` event.
        """
        body = proto.pull_body(reference, name, username, password, auth_secret)
        if on_progress is None:
            return await self._drive(proto.op_pull_image(self._config, body))
        response = await self._drive(proto.op_open_pull_image(self._config, body))
        return await self._follow_image(response, on_progress, "pull")

    async def import_image(self, path: str | os.PathLike[str], name: str | None = None) -> ImageInfo:
        """Import an image archive from a local file: a ``docker save`` archive or an OCI layout
        tarball, optionally gzipped. The file is streamed, never read into memory; ``name``
        (``name:tag``) names the image when the archive names none (or names it once more)."""
        with open(path, "rb") as archive:
            return await self._drive(proto.op_import_image(self._config, archive, name))

    async def build_image(
        self,
        image: Image,
        *,
        no_cache: bool = False,
        allow_internet: bool = True,
        build_args: Mapping[str, str] | None = None,
        on_progress: ImageProgressCallback | None = None,
    ) -> ImageInfo:
        """Build an :class:`Image` on the server and store it under ``image.name``.

        The build context (the generated Dockerfile and the ``copy`` sources, read now: a
        missing one raises :class:`FileNotFoundError`) is written to a temporary file and
        streamed. ``no_cache`` ignores the step cache; ``allow_internet=False`` runs the ``RUN``
        steps without network; ``build_args`` are the Dockerfile's ``ARG`` values.
        ``on_progress`` follows the build as in :meth:`pull_image` (events ``step``, ``output``,
        ``done``, ``error``). A failing step raises :class:`ImageBuildError` (``code``
        ``BUILD_FAILED``) whose ``message`` has the step's exit code and output.
        """
        if not isinstance(image, Image):
            raise TypeError(f"build_image takes an Image, got {type(image).__name__}")
        params = proto.build_params(image.name, proto.DEFAULT_DOCKERFILE, build_args, no_cache, allow_internet)
        # sync: context = context_file(image.write_context)
        context = await asyncio.to_thread(context_file, image.write_context)
        with context:
            return await self._build(context, params, on_progress)

    async def build_image_from_dockerfile(
        self,
        context_dir: str | os.PathLike[str],
        name: str,
        *,
        dockerfile: str = "Dockerfile",
        build_args: Mapping[str, str] | None = None,
        no_cache: bool = False,
        allow_internet: bool = True,
        on_progress: ImageProgressCallback | None = None,
    ) -> ImageInfo:
        """Build the image ``name`` (``name:tag``) from a local directory and the Dockerfile in it
        (``dockerfile``, a path relative to the directory).

        The directory is sent as a tar written to a temporary file and streamed: what its
        ``.dockerignore`` lists is left out (one glob per line, ``!`` re-includes), and symbolic
        links are stored as links, never followed. The options are those of :meth:`build_image`.
        """
        directory = os.fspath(context_dir)
        if not os.path.isdir(directory):
            raise NotADirectoryError(f"the build context {directory!r} is not a directory")
        relative = proto.dockerfile_path(dockerfile)
        if not os.path.isfile(os.path.join(directory, *relative.split("/"))):
            raise FileNotFoundError(f"the build context {directory!r} has no Dockerfile {relative!r}")
        params = proto.build_params(name, relative, build_args, no_cache, allow_internet)

        def write(file: IO[bytes]) -> None:
            write_directory_context(file, directory, relative)

        context = await asyncio.to_thread(context_file, write)  # sync: context = context_file(write)
        with context:
            return await self._build(context, params, on_progress)

    async def _build(
        self, context: IO[bytes], params: list[tuple[str, str]], on_progress: ImageProgressCallback | None
    ) -> ImageInfo:
        if on_progress is None:
            return await self._drive(proto.op_build_image(self._config, context, params))
        response = await self._drive(proto.op_open_build_image(self._config, context, params))
        return await self._follow_image(response, on_progress, "build")

    async def _follow_image(self, response: httpx.Response, on_progress: ImageProgressCallback, what: str) -> ImageInfo:
        """Pass the events of a pull's or build's event stream to ``on_progress``; its result."""
        try:
            proto.check_event_stream(response)
            progress = proto.ImageProgressCollector(what)
            async for chunk in self._chunks(response, events=True):
                await self._notify(on_progress, progress.feed(chunk))
                if progress.finished:
                    break
            await self._notify(on_progress, progress.close())
            return progress.result()
        finally:
            await response.aclose()

    async def _notify(self, on_progress: ImageProgressCallback, events: list[ImageProgressEvent]) -> None:
        for event in events:
            result = on_progress(event)  # sync: on_progress(event)
            if inspect.isawaitable(result):  # async only
                await result  # async only


# async only: begin
class _SandboxContext(Awaitable[AsyncSandbox]):
    """What ``AsyncSandboxClient.create_and_connect()`` returns: await it for the handle, or use
    it with ``async with`` to delete the sandbox on exit."""

    def __init__(self, creating: Awaitable[AsyncSandbox]) -> None:
        self._creating = creating
        self._sandbox: AsyncSandbox | None = None

    def __await__(self) -> Generator[Any, None, AsyncSandbox]:
        return self._creating.__await__()

    async def __aenter__(self) -> AsyncSandbox:
        self._sandbox = await self._creating
        return self._sandbox

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._sandbox is not None:
            await self._sandbox.__aexit__(exc_type, exc, tb)


# async only: end
