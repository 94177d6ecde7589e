# sandbox.py is generated from this file: after a change, run scripts/generate_sync.py (in sdk/python).
"""Asynchronous handle to one running sandbox: commands, processes, files, terminals, tunnels, desktop.

Requests go to the sandbox's agent through the proxy at the sandbox's ``sandbox_url``; each
method builds an operation from :mod:`._protocol` and lets the owning client perform it.
"""

from __future__ import annotations

import os
import signal as signal_module

# sync: from collections.abc import Iterable, Iterator, Mapping
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, BinaryIO

from . import _protocol as proto
from . import _pty_protocol as ptyp
from . import _websocket as wsp
from .async_desktop import AsyncDesktop, connect_sandbox_desktop
from .async_pty import AsyncPtySession
from .async_tunnel import AsyncTunnel
from .exceptions import SandboxConnectionError, SandboxError, SandboxNotFoundError
from .models import (
    CommandResult,
    DirectoryEntry,
    FileSystemMount,
    OutputBatch,
    OutputEvent,
    OutputResponse,
    ProcessHealthCheck,
    ProcessInfo,
    RestartPolicyConfig,
    SandboxInfo,
    SandboxLogLevel,
    SandboxLogSignal,
    SandboxLogsResponse,
    SandboxMetrics,
    SandboxProcessLogFiltersResponse,
    _FollowedEvent,
)

if TYPE_CHECKING:
    from .async_client import AsyncSandboxClient


class AsyncSandbox:
    """A live sandbox, returned by ``AsyncSandboxClient.create_and_connect()`` and ``connect()``.

    As an async context manager, a handle from ``create_and_connect()`` deletes its sandbox on
    exit; a handle from ``connect()`` leaves the sandbox running.
    """

    def __init__(
        self, client: AsyncSandboxClient, info: SandboxInfo, *, owned: bool = False, bind_outcome: str | None = None
    ) -> None:
        self._client = client
        self._info = info
        self._target = proto.target_for(info)
        self._owned = owned
        self._bind_outcome = bind_outcome

    @property
    def sandbox_id(self) -> str:
        """The server-assigned id (even when connected by name)."""
        return self._info.sandbox_id

    @property
    def name(self) -> str | None:
        """The sandbox's name, or None for an ephemeral sandbox (as of the last :meth:`info`)."""
        return self._info.name

    @property
    def bind_outcome(self) -> str | None:
        """What :meth:`AsyncSandboxClient.get_or_create` did to hand out this handle:
        ``"created"``, ``"attached"`` or ``"resumed"``; None for a handle from elsewhere."""
        return self._bind_outcome

    def __repr__(self) -> str:
        return f"AsyncSandbox(sandbox_id={self.sandbox_id!r}, name={self.name!r})"

    async def __aenter__(self) -> AsyncSandbox:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._owned:
            try:
                await self.terminate()
            except SandboxNotFoundError:
                pass

    async def attach_file_system(self, file_system_id: str, mount_path: str, read_only: bool = False) -> SandboxInfo:
        """Mount a volume into this sandbox, live (see :meth:`AsyncSandboxClient.attach_file_system`)."""
        info = await self._client.attach_file_system(self.sandbox_id, file_system_id, mount_path, read_only)
        self._info = info
        return info

    async def detach_file_system(self, mount_path: str) -> SandboxInfo:
        """Unmount the volume at ``mount_path`` (see :meth:`AsyncSandboxClient.detach_file_system`)."""
        info = await self._client.detach_file_system(self.sandbox_id, mount_path)
        self._info = info
        return info

    async def file_systems(self) -> list[FileSystemMount]:
        """The volumes mounted in this sandbox now."""
        return (await self.info()).file_systems

    async def info(self) -> SandboxInfo:
        """Fetch the sandbox's current description from the control plane."""
        info = await self._client.get(self.sandbox_id)
        self._info = info
        if info.sandbox_url:
            self._target = proto.target_for(info)
        return info

    async def update(
        self,
        *,
        cpus: float | None = None,
        memory_mb: int | None = None,
        disk_mb: int | None = None,
        wait: bool = True,
        timeout: float = 300,
        poll_interval: float = 1.0,
    ) -> SandboxInfo:
        """Resize this sandbox live (see :meth:`AsyncSandboxClient.update`)."""
        info = await self._client.update(
            self.sandbox_id,
            cpus=cpus,
            memory_mb=memory_mb,
            disk_mb=disk_mb,
            wait=wait,
            timeout=timeout,
            poll_interval=poll_interval,
        )
        self._info = info
        return info

    async def wait_for_resource_resize(
        self, generation: int, *, timeout: float = 300, poll_interval: float = 1.0
    ) -> SandboxInfo:
        """Wait for resize ``generation`` of this sandbox (see
        :meth:`AsyncSandboxClient.wait_for_resource_resize`)."""
        info = await self._client.wait_for_resource_resize(
            self.sandbox_id, generation, timeout=timeout, poll_interval=poll_interval
        )
        self._info = info
        return info

    async def desktop_url(self, port: int | None = None) -> str:
        """A URL, valid for an hour, of a noVNC page showing this sandbox's desktop (see
        :meth:`AsyncSandboxClient.desktop_url`)."""
        return await self._client.desktop_url(self.sandbox_id, port)

    async def metrics(self) -> SandboxMetrics:
        """What this sandbox uses now against its limits (it must be running)."""
        return await self._client.metrics(self.sandbox_id)

    async def copy(self, times: int = 1) -> list[AsyncSandbox]:
        """Copy this running sandbox ``times`` ways (1 to 16) and return handles to the copies:
        each its own sandbox (id, address, files) that starts with this one's processes, memory
        and files. All or nothing (see ``AsyncSandboxClient.copy_and_connect``); the handles
        delete their copy when used as a context manager."""
        return await self._client.copy_and_connect(self.sandbox_id, times)

    async def terminate(self) -> None:
        """Delete the sandbox (same as ``client.delete(sandbox.sandbox_id)``)."""
        await self._client.delete(self.sandbox_id)
        self._owned = False

    # -- commands ------------------------------------------------------------------------------

    async def run(
        self,
        command: str,
        args: list[str] | None = None,
        env: Mapping[str, str] | None = None,
        working_dir: str | None = None,
        timeout_secs: float | None = None,
        user: str | None = None,
    ) -> CommandResult:
        """Run a command to completion and return its output and exit code.

        ``exit_code`` is negative (``-signal``) when the command was killed by a signal, e.g. on
        ``timeout_secs`` expiry (the sandbox kills the command then). A silent command may run as
        long as it likes: the agent keeps the stream alive. If the agent stops answering (the
        sandbox is frozen, the host is gone), :class:`SandboxTimeoutError` is raised after the
        client's ``stream_idle_timeout`` (default 120 s) without data.
        """
        body = proto.run_body(command, args, env, working_dir, timeout_secs, user)
        response = await self._client._drive(proto.op_open_run(self._client._config, self._target, body))
        try:
            proto.check_event_stream(response)
            collector = proto.RunCollector()
            # Whole chunks, not lines: the collector decodes many events at a time. After the
            # exit event the body is read to its end (the agent ends it there), so that the
            # connection goes back to the pool instead of a new one (a TLS handshake) per run;
            # anything more after it is not read.
            done = False
            try:
                async for chunk in self._client._chunks(response, events=True):
                    if done:
                        break
                    done = collector.feed(chunk)
            except SandboxError:
                if not done:
                    raise  # after the exit event, the result stands
            return collector.finish()
        finally:
            await response.aclose()

    # -- processes -----------------------------------------------------------------------------

    async def start_process(
        self,
        command: str,
        args: list[str] | None = None,
        env: Mapping[str, str] | None = None,
        working_dir: str | None = None,
        stdin_mode: str | None = "pipe",
        stdout_mode: str | None = None,
        stderr_mode: str | None = None,
        user: str | None = None,
        name: str | None = None,
        restart: RestartPolicyConfig | Mapping[str, object] | None = None,
        health_check: ProcessHealthCheck | Mapping[str, object] | None = None,
    ) -> ProcessInfo:
        """Start a background process and return at once (follow it with :meth:`follow_output`).

        ``stdin_mode`` defaults to ``"pipe"``: the process's stdin is a pipe that
        :meth:`write_stdin` writes to and :meth:`close_stdin` closes (a program that reads its
        stdin waits for that close). Pass ``stdin_mode="closed"`` to give it ``/dev/null``
        instead, or None to leave the choice to the server (its default is ``"closed"``).
        ``stdout_mode`` / ``stderr_mode`` are ``"capture"`` (the server's default) or ``"discard"``.

        ``name``, ``restart`` or ``health_check`` make it a managed process, watched by the
        sandbox's supervisor (see ``ProcessInfo.managed``). A ``name`` addresses it instead of
        its pid in every process method, and stays valid across restarts. ``restart`` is a
        :class:`RestartPolicyConfig` or a dict of its fields (``policy``: ``"never"``,
        ``"on_failure"`` (the default) or ``"always"``; ``max_restarts``: None for no limit;
        ``initial_backoff_ms``, ``max_backoff_ms``); ``health_check`` a
        :class:`ProcessHealthCheck` or a dict (``type``: ``"http"`` or ``"tcp"``, ``port``,
        ``path``, ...). :meth:`kill_process` stops the supervision as well as the process.
        """
        body = proto.start_body(
            command,
            args,
            env,
            working_dir,
            stdin_mode,
            stdout_mode,
            stderr_mode,
            user,
            name,
            restart,
            health_check,
        )
        return await self._client._drive(proto.op_start_process(self._client._config, self._target, body))

    async def restart_process(self, process: int | str) -> ProcessInfo:
        """Restart a managed process, by pid or name, at once (any back-off is skipped): its
        current run is stopped and a new one started. Returns the new run (a new pid)."""
        return await self._client._drive(proto.op_restart_process(self._client._config, self._target, process))

    async def list_processes(self) -> list[ProcessInfo]:
        """Every process started in the sandbox."""
        return await self._client._drive(proto.op_list_processes(self._client._config, self._target))

    async def get_process(self, pid: int | str) -> ProcessInfo:
        """Describe one process, by pid or managed-process name (as every process method here)."""
        return await self._client._drive(proto.op_get_process(self._client._config, self._target, pid))

    async def kill_process(self, pid: int | str) -> None:
        """Kill a process (SIGKILL to its process group); a managed one is not restarted."""
        await self._client._drive(proto.op_kill_process(self._client._config, self._target, pid))

    async def stop_all_processes(self) -> int:
        """Kill every process in the sandbox except the agent and the image's services (a
        desktop's display, say), and return how many were killed: the way back from a fork bomb
        or a runaway process tree."""
        return await self._client._drive(proto.op_stop_all_processes(self._client._config, self._target))

    async def send_signal(self, pid: int | str, signal: int | signal_module.Signals) -> None:
        """Send a signal (e.g. ``signal.SIGTERM``) to a process."""
        await self._client._drive(proto.op_send_signal(self._client._config, self._target, pid, signal))

    async def write_stdin(self, pid: int | str, data: bytes) -> None:
        """Write raw bytes to a process's stdin (a pipe unless it was started with ``stdin_mode="closed"``)."""
        await self._client._drive(proto.op_write_stdin(self._client._config, self._target, pid, data))

    async def close_stdin(self, pid: int | str) -> None:
        """Close a process's stdin (it then reads end-of-file)."""
        await self._client._drive(proto.op_close_stdin(self._client._config, self._target, pid))

    async def get_stdout(self, pid: int | str) -> OutputResponse:
        """All stdout lines captured so far."""
        return await self._client._drive(proto.op_get_output(self._client._config, self._target, pid, "stdout"))

    async def get_stderr(self, pid: int | str) -> OutputResponse:
        """All stderr lines captured so far."""
        return await self._client._drive(proto.op_get_output(self._client._config, self._target, pid, "stderr"))

    async def get_output(self, pid: int | str) -> OutputResponse:
        """All stdout and stderr lines captured so far, interleaved."""
        return await self._client._drive(proto.op_get_output(self._client._config, self._target, pid, "output"))

    def follow_output(self, pid: int | str) -> AsyncIterator[OutputEvent]:
        """Iterate over output lines (stdout and stderr): past ones first, then live ones until exit.

        A connection that breaks meanwhile (the sandbox suspended and resumed, a proxy that drops
        it) is opened again, and the lines come on where they stopped: each once, in order. After
        five connections in a row that broke without a new line the last
        :class:`SandboxConnectionError` is raised; a process that is no longer known or a sandbox
        that is gone raise their error at once (:class:`RemoteAPIError` 404)."""
        return self._follow(pid, "output")

    def follow_stdout(self, pid: int | str) -> AsyncIterator[OutputEvent]:
        """Iterate over stdout lines until the process exits (across broken connections, as
        :meth:`follow_output`)."""
        return self._follow(pid, "stdout")

    def follow_stderr(self, pid: int | str) -> AsyncIterator[OutputEvent]:
        """Iterate over stderr lines until the process exits (across broken connections, as
        :meth:`follow_output`)."""
        return self._follow(pid, "stderr")

    async def follow_output_batches(self, pid: int | str) -> AsyncIterator[OutputBatch]:
        """Iterate over output (stdout and stderr) a read at a time, as :meth:`follow_output` does
        line by line: each :class:`OutputBatch` holds the lines of one read of one stream, with
        its ``stream`` and ``timestamp``. No object per line, for followers that take many."""
        follow = proto.FollowResume()
        response = await self._client._drive(proto.op_open_follow(self._client._config, self._target, pid, "output"))
        while True:
            decoder = proto.OutputBatchDecoder(None, follow)
            try:
                async for chunk in self._client._chunks(response, events=True):
                    # sync: yield from follow.fresh_batches(decoder.feed(chunk))
                    for batch in follow.fresh_batches(decoder.feed(chunk)):
                        yield batch  # async only
                # sync: yield from follow.fresh_batches(decoder.flush())
                for batch in follow.fresh_batches(decoder.flush()):
                    yield batch  # async only
            except SandboxConnectionError:
                if not follow.broke():
                    raise
            else:
                if follow.ended(decoder.eof):
                    return
            finally:
                await response.aclose()
            response = await self._client._drive(
                proto.op_reopen_follow(self._client._config, self._target, pid, "output", follow)
            )

    async def _follow(self, pid: int | str, stream: str) -> AsyncIterator[OutputEvent]:
        # A broken connection is opened again and the lines already handed out are skipped
        # (proto.FollowResume: the next connection goes on after the last event id taken). Lines
        # lost before this follower read them have no place among the events: a warning says so.
        follow = proto.FollowResume(warn_dropped=f"process {pid}")
        response = await self._client._drive(proto.op_open_follow(self._client._config, self._target, pid, stream))
        # The events are made here, one per line, in the frame that yields them: making one with
        # object's constructor and storing its three slots costs less than calling OutputEvent
        # (see models._FollowedEvent) or iterating over events made elsewhere, and a follower pays
        # it for every line.
        new_event = _FollowedEvent
        while True:
            decoder = proto.OutputEventDecoder(proto.FOLLOW_STREAMS[stream], follow)
            try:
                async for chunk in self._client._chunks(response, events=True):
                    for lines, timestamp, source in follow.fresh(decoder.feed_runs(chunk)):
                        for line in lines:
                            event = new_event()
                            event.line = line
                            event.timestamp = timestamp
                            event.stream = source
                            yield event
                # sync: yield from proto.events_of(follow.fresh(decoder.flush_runs()))
                for event in proto.events_of(follow.fresh(decoder.flush_runs())):
                    yield event  # async only
            except SandboxConnectionError:
                if not follow.broke():
                    raise
            else:
                if follow.ended(decoder.eof):
                    return
            finally:
                await response.aclose()
            response = await self._client._drive(
                proto.op_reopen_follow(self._client._config, self._target, pid, stream, follow)
            )

    # -- logs ----------------------------------------------------------------------------------

    async def get_logs(
        self,
        levels: list[SandboxLogLevel | str | int] | None = None,
        process_ids: list[str] | None = None,
        next_token: str | None = None,
        head: int | None = None,
        tail: int | None = None,
        body: str | None = None,
    ) -> SandboxLogsResponse:
        """One page of this sandbox's persisted logs (see :meth:`AsyncSandboxClient.get_logs`)."""
        return await self._client.get_logs(
            self.sandbox_id,
            levels=levels,
            process_ids=process_ids,
            next_token=next_token,
            head=head,
            tail=tail,
            body=body,
        )

    def iter_logs(
        self,
        levels: list[SandboxLogLevel | str | int] | None = None,
        process_ids: list[str] | None = None,
        body: str | None = None,
    ) -> AsyncIterator[SandboxLogSignal]:
        """Every record of this sandbox's persisted logs that passes the filters, page after page
        (see :meth:`AsyncSandboxClient.iter_logs`)."""
        return self._client.iter_logs(self.sandbox_id, levels=levels, process_ids=process_ids, body=body)

    async def list_log_processes(self) -> SandboxProcessLogFiltersResponse:
        """The processes that have records in this sandbox's persisted logs."""
        return await self._client.list_log_processes(self.sandbox_id)

    # -- files ---------------------------------------------------------------------------------

    async def write_file(
        self,
        path: str,
        # sync: data: bytes | BinaryIO | Iterable[bytes],
        data: bytes | BinaryIO | Iterable[bytes] | AsyncIterable[bytes],
    ) -> None:
        """Write a file (parents are created, an existing file is replaced whole: readers see
        the old content or the new, and an upload that fails leaves the old file as it was).

        ``data`` is bytes, a binary file object or an iterable of bytes; files and iterables are
        streamed, never loaded whole. A ``str`` is written as UTF-8. The async client also takes
        an async file object (whose ``read`` is a coroutine) or an async iterable, and reads a
        plain file between its awaits (blocking the event loop briefly per chunk).
        """
        await self._client._drive(proto.op_write_file(self._client._config, self._target, path, data))

    async def read_file(self, path: str) -> bytes:
        """Read a whole file into memory (see :meth:`read_file_stream` for big files)."""
        return await self._client._drive(proto.op_read_file(self._client._config, self._target, path))

    async def read_file_stream(self, path: str, chunk_size: int = 65536) -> AsyncIterator[bytes]:
        """Iterate over a file's content in chunks, without holding it in memory."""
        response = await self._client._drive(proto.op_open_read_file(self._client._config, self._target, path))
        try:
            async for chunk in self._client._chunks(response, chunk_size):
                yield chunk
        finally:
            await response.aclose()

    async def download_file(self, path: str, local_path: str | os.PathLike[str]) -> int:
        """Stream a sandbox file to ``local_path``; returns the number of bytes written."""
        response = await self._client._drive(proto.op_open_read_file(self._client._config, self._target, path))
        written = 0
        try:
            with open(local_path, "wb") as out:
                async for chunk in self._client._chunks(response, proto.UPLOAD_CHUNK_BYTES):
                    out.write(chunk)
                    written += len(chunk)
        finally:
            await response.aclose()
        return written

    async def list_directory(self, path: str) -> list[DirectoryEntry]:
        """The entries of a directory."""
        return await self._client._drive(proto.op_list_directory(self._client._config, self._target, path))

    async def delete_file(self, path: str) -> None:
        """Delete a file."""
        await self._client._drive(proto.op_delete_file(self._client._config, self._target, path))

    # -- terminals and tunnels ---------------------------------------------------------------

    async def create_pty(
        self,
        command: str = "bash",
        args: list[str] | None = None,
        env: Mapping[str, str] | None = None,
        working_dir: str | None = None,
        rows: int = 24,
        cols: int = 80,
    ) -> AsyncPtySession:
        """Start ``command`` on a new terminal of ``cols`` x ``rows`` and return its session.

        The parameters keep the official SDK's order; pass ``rows`` / ``cols`` by name. The session
        is not connected yet: use it as an async context manager (or call
        ``connect()``) to drive it from here, or hand its ``websocket_url`` to another client::

            async with await sandbox.create_pty("bash") as pty:
                await pty.send("ls\\n")
                print(await pty.read_until("$ ", timeout=10))
        """
        body = ptyp.pty_body(command, args, cols, rows, env, working_dir)
        info = await self._client._drive(ptyp.op_create_pty(self._client._config, self._target, body))
        return AsyncPtySession(self, info.session_id, info.token)

    async def connect_pty(self, session_id: str, token: str) -> AsyncPtySession:
        """Reattach to an existing PTY session: returns it connected (READY sent)."""
        return await AsyncPtySession(self, session_id, token).connect()

    async def create_tunnel(
        self, remote_port: int, local_port: int | None = None, local_host: str = "127.0.0.1"
    ) -> AsyncTunnel:
        """Listen on ``local_host:local_port`` and relay each connection to ``remote_port`` in the sandbox.

        ``local_port`` None or 0 picks a free port (read it from ``tunnel.local_port``).
        Close the tunnel (or use it as an async context manager) to stop listening.
        """
        url = wsp.tunnel_websocket_url(self._info.sandbox_url or "", self.sandbox_id, remote_port)
        headers = wsp.websocket_headers(self._client._config, self._target)
        tunnel = AsyncTunnel(
            url,
            headers,
            remote_port,
            0 if local_port is None else local_port,
            local_host,
            wsp.connect_timeout(self._client._config),
        )
        await tunnel._start()
        return tunnel

    # -- desktop ---------------------------------------------------------------------------------

    async def connect_desktop(
        self, port: int = 5901, password: str | None = None, shared: bool = True, connect_timeout: float = 10.0
    ) -> AsyncDesktop:
        """Connect to the VNC server on ``port`` in the sandbox and return the desktop to drive.

        Waits up to ``connect_timeout`` seconds for the server to accept connections (probing
        from inside the sandbox every 250 ms), then speaks RFB through the sandbox's TCP-tunnel
        WebSocket (no local port is opened) with the same budget for the handshake. ``password``
        is the VNC password (only its first 8 bytes count), needed when the server asks for one;
        ``shared=False`` asks the server to disconnect its other clients. Use the desktop as
        an async context manager (or call ``close()``): closing it closes the connection in the
        sandbox::

            async with await sandbox.connect_desktop(password="secret") as desktop:
                png = await desktop.screenshot()
                await desktop.click(640, 400)
                await desktop.type_text("hello")

        Raises :class:`SandboxTimeoutError` when nothing accepts connections on the port in
        time, and :class:`SandboxError` when the VNC handshake fails (a wrong password says
        "authentication failed").
        """
        return await connect_sandbox_desktop(self, port, password, shared, connect_timeout)
