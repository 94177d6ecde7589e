"""Server-sent events: decoding, collecting a run's events, and output events of follow streams."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import httpx
from pydantic import ValidationError

from ..exceptions import SandboxConnectionError, SandboxError
from ..models import CommandResult, OutputEvent
from ._errors import _json_or_none
from ._validation import _is_int


def check_event_stream(resp: httpx.Response) -> None:
    content_type = resp.headers.get("content-type", "")
    if not content_type.lower().startswith("text/event-stream"):
        raise SandboxError(f"expected an event stream from {resp.request.url.path}, got content-type {content_type!r}")


class SSEDecoder:
    """Line-based SSE decoder yielding the JSON object of each event's data.

    ``event:``, ``id:`` and ``retry:`` lines and ``:`` comments are ignored; data that is not a
    JSON object is skipped. Feed it lines without their line ending, then call :meth:`flush`.
    """

    def __init__(self) -> None:
        self._data: list[str] = []

    def feed(self, line: str) -> list[dict[str, Any]]:
        line = line.rstrip("\r\n")
        if not line:
            return self.flush()
        if line.startswith(":"):
            return []
        name, _, value = line.partition(":")
        if value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._data.append(value)
        return []

    def flush(self) -> list[dict[str, Any]]:
        if not self._data:
            return []
        lines, self._data = self._data, []
        joined = _json_or_none("\n".join(lines))
        if isinstance(joined, dict):
            return [joined]
        # Tolerate servers that forget the blank line between events: one object per data line.
        objects = (_json_or_none(line) for line in lines)
        return [obj for obj in objects if isinstance(obj, dict)]


class RunCollector:
    """Accumulates the events of ``processes/run`` (recognised by shape) into a CommandResult.

    Feed it the stream's lines with :meth:`feed` until it returns True (the exit event arrived) or
    the stream ends, then call :meth:`finish`.
    """

    def __init__(self) -> None:
        self.stdout: list[str] = []
        self.stderr: list[str] = []
        self.pid: int | None = None
        self._exit: dict[str, Any] | None = None
        self._decoder = SSEDecoder()

    def feed(self, line: str) -> bool:
        """Take one line of the stream; True once the exit event has arrived (stop reading then)."""
        return any(self.add(event) for event in self._decoder.feed(line))

    def finish(self) -> CommandResult:
        """The result, after the exit event or at the end of the stream (an event left unterminated counts)."""
        if self._exit is None:
            any(self.add(event) for event in self._decoder.flush())
        return self.result()

    def add(self, event: dict[str, Any]) -> bool:
        """Take one event; True once the exit event has arrived."""
        line = event.get("line")
        if isinstance(line, str):
            (self.stderr if event.get("stream") == "stderr" else self.stdout).append(line)
            return False
        if event.get("exit_code") is not None or event.get("signal") is not None:
            self._exit = event
            return True
        if _is_int(event.get("pid")) and self.pid is None:
            self.pid = event["pid"]
            return False
        error = event.get("error")
        if isinstance(error, str) and error:
            code = event.get("code")
            raise SandboxError(f"command failed in the sandbox{f' ({code})' if code else ''}: {error}")
        return False

    def result(self) -> CommandResult:
        if self._exit is None:
            raise SandboxConnectionError("command output stream ended without an exit event")
        exit_code = self._exit.get("exit_code")
        signal = self._exit.get("signal")
        if exit_code is None:
            exit_code = -int(signal)
        return CommandResult(
            stdout="\n".join(self.stdout),
            stderr="\n".join(self.stderr),
            exit_code=int(exit_code),
            signal=signal,
            reason=self._exit.get("reason"),
            pid=self.pid,
        )


def collect_run(lines: Iterable[str]) -> CommandResult:
    """The result of a whole run stream given as lines (what ``Sandbox.run`` does while reading)."""
    collector = RunCollector()
    for line in lines:
        if collector.feed(line):
            break
    return collector.finish()


def output_event(event: dict[str, Any], default_stream: str | None) -> OutputEvent | None:
    """An OutputEvent for a line event, None for anything else (e.g. indexify's ``eof`` ``{}``)."""
    if not isinstance(event.get("line"), str):
        return None
    if event.get("stream") is None and default_stream is not None:
        event = {**event, "stream": default_stream}
    try:
        return OutputEvent.model_validate(event)
    except ValidationError:
        return None


class OutputEventDecoder:
    """The output events of a ``follow`` stream: feed it lines, then :meth:`flush` at the end.

    ``default_stream`` is the ``stream`` of events that omit it (``None`` for the merged stream).
    """

    def __init__(self, default_stream: str | None) -> None:
        self._decoder = SSEDecoder()
        self._default_stream = default_stream

    def feed(self, line: str) -> list[OutputEvent]:
        return self._events(self._decoder.feed(line))

    def flush(self) -> list[OutputEvent]:
        return self._events(self._decoder.flush())

    def _events(self, events: list[dict[str, Any]]) -> list[OutputEvent]:
        items = (output_event(event, self._default_stream) for event in events)
        return [item for item in items if item is not None]


def iter_output_events(lines: Iterable[str], default_stream: str | None) -> Iterator[OutputEvent]:
    """The output events of a whole follow stream given as lines."""
    decoder = OutputEventDecoder(default_stream)
    for line in lines:
        yield from decoder.feed(line)
    yield from decoder.flush()
