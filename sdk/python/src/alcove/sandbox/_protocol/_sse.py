"""Server-sent events: decoding, collecting a run's events, and output events of follow streams."""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator
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
    """Accumulates the events of ``processes/run`` (recognised by shape) into a CommandResult."""

    def __init__(self) -> None:
        self.stdout: list[str] = []
        self.stderr: list[str] = []
        self.pid: int | None = None
        self._exit: dict[str, Any] | None = None

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
    decoder, collector = SSEDecoder(), RunCollector()
    for line in lines:
        for event in decoder.feed(line):
            if collector.add(event):
                return collector.result()
    for event in decoder.flush():
        if collector.add(event):
            break
    return collector.result()


async def acollect_run(lines: AsyncIterable[str]) -> CommandResult:
    decoder, collector = SSEDecoder(), RunCollector()
    async for line in lines:
        for event in decoder.feed(line):
            if collector.add(event):
                return collector.result()
    for event in decoder.flush():
        if collector.add(event):
            break
    return collector.result()


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


def iter_output_events(lines: Iterable[str], default_stream: str | None) -> Iterator[OutputEvent]:
    decoder = SSEDecoder()
    for line in lines:
        for event in decoder.feed(line):
            if (item := output_event(event, default_stream)) is not None:
                yield item
    for event in decoder.flush():
        if (item := output_event(event, default_stream)) is not None:
            yield item


async def aiter_output_events(lines: AsyncIterable[str], default_stream: str | None) -> AsyncIterator[OutputEvent]:
    decoder = SSEDecoder()
    async for line in lines:
        for event in decoder.feed(line):
            if (item := output_event(event, default_stream)) is not None:
                yield item
    for event in decoder.flush():
        if (item := output_event(event, default_stream)) is not None:
            yield item
