"""The event stream of ``POST /api/v1/processes/run``, collected into a :class:`CommandResult`.

Alcove's SDK asks the agent for ``output_batch`` events (``batch_output`` in the request): each
carries the lines of one read as a JSON list, which ``json.loads`` decodes at C speed and
``"\\n".join`` joins. A server that sends per-line ``output`` events instead (one that does not
know the field) is read as fast as it can be: the output lines of a block of events are never
turned into one Python object each: the escaped text of every stdout line of the block is cut out
of the bytes (one regular expression) and the lines are joined into one JSON string, which
``json.loads`` unescapes in one call. Blocks holding any other event (``started``, ``exit``, an
error, anything unusual) are decoded event by event.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from ..exceptions import SandboxConnectionError, SandboxError
from ..models import CommandResult
from ._sse import JSON_STRING_BODY, Event, SSEBlocks, agent_output_data, data_line_count, decode_block
from ._validation import _is_int

# The JSON string body of every stdout (stderr) line of a block, still escaped.
_STDOUT_DATA = agent_output_data(rb"(%s)" % JSON_STRING_BODY, b"stdout")
_STDERR_DATA = agent_output_data(rb"(%s)" % JSON_STRING_BODY, b"stderr")


def _joined_lines(escaped: list[bytes]) -> str | None:
    """The lines whose JSON-escaped bodies are given, joined with ``"\\n"``; None if one is invalid.

    The bodies are joined with the escape ``\\n`` inside one JSON string: every escape of a body
    is whole (the pattern takes a backslash with the character after it), so none can run into
    the next body, and the string is valid exactly when every body is.
    """
    try:
        text: str = json.loads((b'"' + b"\\n".join(escaped) + b'"').decode("utf-8"))
    except ValueError:
        return None
    return text


def _joined_batch(lines: list[str], continued: Any) -> str:
    """A batch's lines joined with ``"\n"``, but for the pieces ``continued`` names (a list of
    indexes), which run on into the next line. Raises TypeError when an item is not a string."""
    if not continued or not isinstance(continued, list):
        return "\n".join(lines)
    goes_on = set(continued)
    parts: list[str] = []
    for index, line in enumerate(lines):
        if not isinstance(line, str):
            raise TypeError("a line is not a string")
        parts.append(line)
        if index < len(lines) - 1 and index not in goes_on:
            parts.append("\n")
    return "".join(parts)


class RunCollector:
    """Accumulates the events of ``processes/run`` (recognised by shape) into a CommandResult.

    Feed it the body's chunks with :meth:`feed` until it returns True (the exit event arrived) or
    the stream ends, then call :meth:`finish`.
    """

    def __init__(self) -> None:
        # Pieces of the output, each one line or several joined with "\n", in order, and the
        # "\n" between them; a line the agent cut (over 1 MiB) goes on in the next piece.
        self._stdout: list[str] = []
        self._stderr: list[str] = []
        self._open: set[str] = set()  # the streams whose last line goes on in the next piece
        self.pid: int | None = None
        self._exit: Event | None = None
        self._blocks = SSEBlocks()

    def feed(self, chunk: bytes) -> bool:
        """Take the next chunk of the body; True once the exit event has arrived (stop reading then)."""
        block = self._blocks.feed(chunk)
        return block is not None and self._take(block)

    def finish(self) -> CommandResult:
        """The result, after the exit event or at the end of the stream (an event left unterminated counts)."""
        if self._exit is None:
            self._take(self._blocks.close())
        return self.result()

    def _take(self, block: bytes) -> bool:
        if b'"lines":[' not in block and self._take_output(block):
            return False
        return any(self.add(event) for event in decode_block(block))

    def _take_output(self, block: bytes) -> bool:
        """Take a block made of output events only, at once; False (nothing taken) for any other."""
        count = data_line_count(block)
        if count == 0:
            return True  # keep-alives
        stdout = _STDOUT_DATA.findall(block)
        stderr = _STDERR_DATA.findall(block) if len(stdout) < count else []
        if len(stdout) + len(stderr) != count:
            return False
        stdout_text = _joined_lines(stdout) if stdout else ""
        stderr_text = _joined_lines(stderr) if stderr else ""
        if stdout_text is None or stderr_text is None:
            return False  # an invalid escape: let the event-by-event path skip that event
        if stdout:
            self._append("stdout", stdout_text, False)
        if stderr:
            self._append("stderr", stderr_text, False)
        return True

    def _append(self, stream: str, text: str, goes_on: bool) -> None:
        """Add ``text`` (lines joined with ``"\n"``) to ``stream``'s output, after a ``"\n"``
        unless the line before it goes on in it; ``goes_on`` says whether its own last line does."""
        parts = self._stderr if stream == "stderr" else self._stdout
        if parts and stream not in self._open:
            parts.append("\n")
        parts.append(text)
        if goes_on:
            self._open.add(stream)
        else:
            self._open.discard(stream)

    def add(self, event: Event) -> bool:
        """Take one event; True once the exit event has arrived."""
        stream = "stderr" if event.get("stream") == "stderr" else "stdout"
        line = event.get("line")
        if isinstance(line, str):
            self._append(stream, line, event.get("continued") is True)
            return False
        lines = event.get("lines")
        if isinstance(lines, list) and lines:
            try:
                text = _joined_batch(lines, event.get("continued"))
            except TypeError:  # an item is not a string
                return False
            last = len(lines) - 1
            goes_on = isinstance(event.get("continued"), list) and last in event["continued"]
            self._append(stream, text, goes_on)
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
        exit_code: Any = self._exit.get("exit_code")
        signal: Any = self._exit.get("signal")
        if exit_code is None:
            exit_code = -int(signal)
        return CommandResult(
            stdout="".join(self._stdout),
            stderr="".join(self._stderr),
            exit_code=int(exit_code),
            signal=signal,
            reason=self._exit.get("reason"),
            pid=self.pid,
        )


def collect_run(chunks: Iterable[bytes]) -> CommandResult:
    """The result of a whole run stream given as body chunks (what ``Sandbox.run`` does while reading)."""
    collector = RunCollector()
    for chunk in chunks:
        if collector.feed(chunk):
            break
    return collector.finish()
