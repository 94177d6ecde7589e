"""Synchronous handle to one running sandbox: commands, processes, files, terminals and tunnels.

Requests go to the sandbox's agent through the proxy at the sandbox's ``sandbox_url``; each
method builds an operation from :mod:`._protocol` and lets the owning client perform it.
"""

from __future__ import annotations

import os
import signal as signal_module
from collections.abc import Iterable, Iterator, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any, BinaryIO

from . import _protocol as proto
from . import _pty_protocol as ptyp
from . import _websocket as wsp
from .exceptions import SandboxNotFoundError
from .models import (
    CommandResult,
    DirectoryEntry,
    OutputEvent,
    OutputResponse,
    ProcessInfo,
    SandboxInfo,
)
from .pty import PtySession
from .tunnel import Tunnel

if TYPE_CHECKING:
    from .client import SandboxClient


class Sandbox:
    """A live sandbox, returned by ``SandboxClient.create_and_connect()`` and ``connect()``.

    As a context manager, a handle from ``create_and_connect()`` deletes its sandbox on exit;
    a handle from ``connect()`` leaves the sandbox running.
    """

    def __init__(self, client: SandboxClient, info: SandboxInfo, *, owned: bool = False) -> None:
        self._client = client
        self._info = info
        self._target = proto.target_for(info)
        self._owned = owned

    @property
    def sandbox_id(self) -> str:
        """The server-assigned id (even when connected by name)."""
        return self._info.sandbox_id

    @property
    def name(self) -> str | None:
        """The sandbox's name, or None for an ephemeral sandbox (as of the last :meth:`info`)."""
        return self._info.name

    def __repr__(self) -> str:
        return f"Sandbox(sandbox_id={self.sandbox_id!r}, name={self.name!r})"

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._owned:
            try:
                self.terminate()
            except SandboxNotFoundError:
                pass

    def info(self) -> SandboxInfo:
        """Fetch the sandbox's current description from the control plane."""
        info = self._client.get(self.sandbox_id)
        self._info = info
        if info.sandbox_url:
            self._target = proto.target_for(info)
        return info

    def terminate(self) -> None:
        """Delete the sandbox (same as ``client.delete(sandbox.sandbox_id)``)."""
        self._client.delete(self.sandbox_id)
        self._owned = False

    # -- commands ------------------------------------------------------------------------------

    def run(
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
        response = self._client._drive(proto.op_open_run(self._client._config, self._target, body))
        try:
            proto.check_event_stream(response)
            collector = proto.RunCollector()
            for line in self._client._lines(response):
                if collector.feed(line):
                    break
            return collector.finish()
        finally:
            response.close()

    # -- processes -----------------------------------------------------------------------------

    def start_process(
        self,
        command: str,
        args: list[str] | None = None,
        env: Mapping[str, str] | None = None,
        working_dir: str | None = None,
        stdin_mode: str | None = None,
        stdout_mode: str | None = None,
        stderr_mode: str | None = None,
        user: str | None = None,
    ) -> ProcessInfo:
        """Start a background process; pass ``stdin_mode="pipe"`` to write to its stdin later."""
        return self._client._drive(
            proto.op_start_process(
                self._client._config,
                self._target,
                command,
                args,
                env,
                working_dir,
                stdin_mode,
                stdout_mode,
                stderr_mode,
                user,
            )
        )

    def list_processes(self) -> list[ProcessInfo]:
        """Every process started in the sandbox."""
        return self._client._drive(proto.op_list_processes(self._client._config, self._target))

    def get_process(self, pid: int | str) -> ProcessInfo:
        """Describe one process."""
        return self._client._drive(proto.op_get_process(self._client._config, self._target, pid))

    def kill_process(self, pid: int | str) -> None:
        """Kill a process (SIGKILL to its process group)."""
        self._client._drive(proto.op_kill_process(self._client._config, self._target, pid))

    def send_signal(self, pid: int | str, signal: int | signal_module.Signals) -> None:
        """Send a signal (e.g. ``signal.SIGTERM``) to a process."""
        self._client._drive(proto.op_send_signal(self._client._config, self._target, pid, signal))

    def write_stdin(self, pid: int | str, data: bytes) -> None:
        """Write raw bytes to a process's stdin (started with ``stdin_mode="pipe"``)."""
        self._client._drive(proto.op_write_stdin(self._client._config, self._target, pid, data))

    def close_stdin(self, pid: int | str) -> None:
        """Close a process's stdin (it then reads end-of-file)."""
        self._client._drive(proto.op_close_stdin(self._client._config, self._target, pid))

    def get_stdout(self, pid: int | str) -> OutputResponse:
        """All stdout lines captured so far."""
        return self._client._drive(proto.op_get_output(self._client._config, self._target, pid, "stdout"))

    def get_stderr(self, pid: int | str) -> OutputResponse:
        """All stderr lines captured so far."""
        return self._client._drive(proto.op_get_output(self._client._config, self._target, pid, "stderr"))

    def get_output(self, pid: int | str) -> OutputResponse:
        """All stdout and stderr lines captured so far, interleaved."""
        return self._client._drive(proto.op_get_output(self._client._config, self._target, pid, "output"))

    def follow_output(self, pid: int | str) -> Iterator[OutputEvent]:
        """Iterate over output lines (stdout and stderr): past ones first, then live ones until exit."""
        return self._follow(pid, "output")

    def follow_stdout(self, pid: int | str) -> Iterator[OutputEvent]:
        """Iterate over stdout lines until the process exits."""
        return self._follow(pid, "stdout")

    def follow_stderr(self, pid: int | str) -> Iterator[OutputEvent]:
        """Iterate over stderr lines until the process exits."""
        return self._follow(pid, "stderr")

    def _follow(self, pid: int | str, stream: str) -> Iterator[OutputEvent]:
        response = self._client._drive(proto.op_open_follow(self._client._config, self._target, pid, stream))
        decoder = proto.OutputEventDecoder(proto.FOLLOW_STREAMS[stream])
        try:
            for line in self._client._lines(response):
                yield from decoder.feed(line)
            yield from decoder.flush()
        finally:
            response.close()

    # -- files ---------------------------------------------------------------------------------

    def write_file(self, path: str, data: bytes | BinaryIO | Iterable[bytes]) -> None:
        """Write a file (parents are created, an existing file is replaced).

        ``data`` is bytes, a binary file object or an iterable of bytes; files and iterables are
        streamed, never loaded whole. A ``str`` is written as UTF-8.
        """
        self._client._drive(proto.op_write_file(self._client._config, self._target, path, data))

    def read_file(self, path: str) -> bytes:
        """Read a whole file into memory (see :meth:`read_file_stream` for big files)."""
        return self._client._drive(proto.op_read_file(self._client._config, self._target, path))

    def read_file_stream(self, path: str, chunk_size: int = 65536) -> Iterator[bytes]:
        """Iterate over a file's content in chunks, without holding it in memory."""
        response = self._client._drive(proto.op_open_read_file(self._client._config, self._target, path))
        try:
            yield from self._client._chunks(response, chunk_size)
        finally:
            response.close()

    def download_file(self, path: str, local_path: str | os.PathLike[str]) -> int:
        """Stream a sandbox file to ``local_path``; returns the number of bytes written."""
        response = self._client._drive(proto.op_open_read_file(self._client._config, self._target, path))
        written = 0
        try:
            with open(local_path, "wb") as out:
                for chunk in self._client._chunks(response, proto.UPLOAD_CHUNK_BYTES):
                    out.write(chunk)
                    written += len(chunk)
        finally:
            response.close()
        return written

    def list_directory(self, path: str) -> list[DirectoryEntry]:
        """The entries of a directory."""
        return self._client._drive(proto.op_list_directory(self._client._config, self._target, path))

    def delete_file(self, path: str) -> None:
        """Delete a file."""
        self._client._drive(proto.op_delete_file(self._client._config, self._target, path))

    # -- terminals and tunnels ---------------------------------------------------------------

    def create_pty(
        self,
        command: str = "bash",
        args: list[str] | None = None,
        env: Mapping[str, str] | None = None,
        working_dir: str | None = None,
        rows: int = 24,
        cols: int = 80,
    ) -> PtySession:
        """Start ``command`` on a new terminal of ``cols`` x ``rows`` and return its session.

        The parameters keep the official SDK's order; pass ``rows`` / ``cols`` by name. The session
        is not connected yet: use it as a context manager (or call
        ``connect()``) to drive it from here, or hand its ``websocket_url`` to another client::

            with sandbox.create_pty("bash") as pty:
                pty.send("ls\\n")
                print(pty.read_until("$ ", timeout=10))
        """
        body = ptyp.pty_body(command, args, cols, rows, env, working_dir)
        info = self._client._drive(ptyp.op_create_pty(self._client._config, self._target, body))
        return PtySession(self, info.session_id, info.token)

    def connect_pty(self, session_id: str, token: str) -> PtySession:
        """Reattach to an existing PTY session: returns it connected (READY sent)."""
        return PtySession(self, session_id, token).connect()

    def create_tunnel(self, remote_port: int, local_port: int | None = None, local_host: str = "127.0.0.1") -> Tunnel:
        """Listen on ``local_host:local_port`` and relay each connection to ``remote_port`` in the sandbox.

        ``local_port`` None or 0 picks a free port (read it from ``tunnel.local_port``).
        Close the tunnel (or use it as a context manager) to stop listening.
        """
        url = wsp.tunnel_websocket_url(self._info.sandbox_url or "", self.sandbox_id, remote_port)
        headers = wsp.websocket_headers(self._client._config, self._target)
        tunnel = Tunnel(
            url,
            headers,
            remote_port,
            0 if local_port is None else local_port,
            local_host,
            wsp.connect_timeout(self._client._config),
        )
        tunnel._start()
        return tunnel

    # -- not implemented yet -------------------------------------------------------------------

    def connect_desktop(
        self, port: int = 5901, password: str | None = None, shared: bool = True, connect_timeout: float = 10
    ) -> Any:
        """Not implemented yet: raises NotImplementedError."""
        raise NotImplementedError(proto.NOT_IMPLEMENTED.format(feature="connect_desktop"))
