"""The output events of a ``follow`` stream, as :class:`OutputEvent` objects.

Alcove's SDK asks the agent for ``output_batch`` events (``?batch=true``): each carries the lines
of one stream read at once as a JSON list, with one ``stream`` and one ``timestamp``. A block of
them is parsed with one ``json.loads``, each batch is checked once (its timestamp turned into a
datetime once, shared by its lines), and its lines become events as they are iterated, without
validation: :class:`OutputEvent` is a plain class whose constructor only stores three attributes.

A server that sends per-line ``output`` events instead (the official protocol) is read fast too:
when all the data lines of a block are output events in the agent's exact layout (one regular
expression says so), their JSON objects are parsed together and built into events without
validation. Any other block is decoded and validated event by event. Whatever the path, the
events are those the line-by-line decoder and ``OutputEvent.model_validate`` make of the same
body, a batch standing for one ``output`` event per line.

The decoder also answers the lines as runs (:data:`OutputRun`: lines sharing timestamp and stream),
from which the SDK's ``follow_*`` generators make the events themselves, in the frame that yields
them (the slots stored there directly: see :class:`OutputEvent`).

A follow whose connection breaks (a suspend and resume of the sandbox, a proxy or network that
drops it) is opened again where it stopped: each ``output_batch`` carries an SSE ``id`` (the line
after it), which the decoders note in :class:`FollowResume` and the next connection sends back as
``Last-Event-ID``. A server whose batches carry no id answers every follow with every line still
in its buffer first; :class:`FollowResume` then skips as many lines as it handed out. Each decoder
notes the ``eof`` event (data ``{}``), which tells a finished follow from one cut off.

A batch that comes after lines the process's output buffer let go before this follower read them
says how many (``dropped``): :class:`OutputBatch` carries it, :class:`FollowResume` adds it up and,
for the per-line follows, which have no place to put it, logs a warning.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime
from itertools import chain, repeat
from operator import itemgetter
from typing import Any, TypeAlias

from pydantic import ValidationError

from ..models import LinePiece, OutputBatch, OutputEvent, _timestamp_before
from ._sse import SSEBlocks, agent_output_data, data_line_count, decode_block, last_event_id

# The JSON object of each output event of a block in the agent's layout: once parsed, a dict of
# exactly "line" (str), "timestamp" (int) and "stream" ("stdout" or "stderr"), in that order.
_AGENT_OUTPUT = agent_output_data(whole=True)
_TIMESTAMPS = itemgetter("timestamp")
_LINES = itemgetter("line")
_STREAMS = itemgetter("stream")
# What every batch (and only a batch) of the agent holds.
_BATCH_MARK = b'"lines":['
# How a block that ends with the ``eof`` event (data ``{}``, the last event of a follow) ends: the
# stream ends right after it, so it is the last event of its block (cut at a blank line, whose
# ``\n`` starts the next block; the last block may lack its final ``\n``).
_EOF_ENDINGS = (b"\ndata: {}\n", b"\ndata: {}", b"\ndata:{}\n", b"\ndata:{}")

# How a batch says lines were lost before it (a key: inside a JSON string every quote is escaped).
_DROPPED_MARK = b'"dropped":'
_DROPPED = re.compile(rb'"dropped":(\d+)')
_log = logging.getLogger("alcove.sandbox")

FOLLOW_RECONNECTS = 5
"""Connections in a row that may break without bringing a new line before a follow gives up."""
FOLLOW_BACKOFF_SECS = (0.25, 0.5, 1.0, 2.0, 4.0)
"""The pause before each of those reconnections (the proxy's own not-ready replays come on top)."""


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


def continued_pieces(lines: list[Any], continued: Any) -> list[Any]:
    """``lines`` with the items that ``continued`` (a batch's list of indexes) names made
    :class:`LinePiece`: a copy when there are any, else ``lines`` itself."""
    if not continued or not isinstance(continued, list):
        return lines
    marked = list(lines)
    for index in continued:
        if type(index) is int and 0 <= index < len(marked) and isinstance(marked[index], str):
            marked[index] = LinePiece(marked[index])
    return marked


def batch_as_events(event: dict[str, Any]) -> list[dict[str, Any]]:
    """The ``output`` events an event stands for: one per line of an ``output_batch`` (any event
    whose ``lines`` is a list), else the event itself. The reference semantics of a batch: its
    decoding gives what :func:`output_event` makes of these."""
    lines = event.get("lines")
    if not isinstance(lines, list):
        return [event]
    rest = {key: value for key, value in event.items() if key not in ("lines", "continued")}
    pieces = continued_pieces(lines, event.get("continued"))
    return [
        {**rest, "line": line, "continued": True} if type(line) is LinePiece else {**rest, "line": line}
        for line in pieces
    ]


class _TimestampCache:
    """Epoch numbers of the wire turned into datetimes, remembered: a fast writer's lines share
    their millisecond, and a datetime is immutable, so events may share one."""

    _LIMIT = 4096  # distinct timestamps kept: a long follow must not grow it without bound

    def __init__(self) -> None:
        self._known: dict[int, datetime] = {}

    def convert(self, timestamps: list[int]) -> list[datetime] | None:
        """The datetimes of ``timestamps``, or None when one is not one (out of range)."""
        known = self._known
        if len(known) > self._LIMIT:
            known.clear()
        for value in set(timestamps).difference(known):
            try:
                converted = _timestamp_before(value)
            except (ValueError, OverflowError, OSError):
                return None  # validation says what it says about it
            if not isinstance(converted, datetime):
                return None
            known[value] = converted
        return list(map(known.__getitem__, timestamps))


OutputRun: TypeAlias = tuple[Sequence[str], datetime | None, str | None]
"""Lines of a follow stream that share their timestamp and stream: ``(lines, timestamp, stream)``.
The lines of one ``output_batch`` event, or the one line of an ``output`` event; each line stands
for the :class:`OutputEvent` ``OutputEvent(line, timestamp, stream)``."""


class OutputEventDecoder:
    """The output events of a ``follow`` stream: feed it the body's chunks, then :meth:`flush`.

    ``default_stream`` is the ``stream`` of events that omit it (``None`` for the merged stream).
    Each call answers an iterable of the events of what it completed, built as they are iterated
    (take them before feeding the next chunk, or keep them: they do not change).

    :meth:`feed_runs` and :meth:`flush_runs` answer the same as :class:`OutputRun` items, for a
    follower that makes the events itself: the SDK's ``follow_*`` build them in the generator that
    hands them out, which costs less per line than iterating over events made here.
    """

    def __init__(self, default_stream: str | None, resume: FollowResume | None = None) -> None:
        self._blocks = SSEBlocks()
        self._default_stream = default_stream
        self._timestamps = _TimestampCache()
        self._resume = resume
        self.eof = False
        """Whether the ``eof`` event came: the process exited and every line was sent."""

    def feed(self, chunk: bytes) -> Iterable[OutputEvent]:
        """Take the next chunk of the body; the output events it completes, in order."""
        return events_of(self.feed_runs(chunk))

    def flush(self) -> Iterable[OutputEvent]:
        """The events left at the end of the stream (an event left unterminated counts)."""
        return events_of(self.flush_runs())

    def feed_runs(self, chunk: bytes) -> Iterable[OutputRun]:
        """Take the next chunk of the body; the output lines it completes, in order, as runs."""
        block = self._blocks.feed(chunk)
        return () if block is None else self._runs(self._mark(block))

    def flush_runs(self) -> Iterable[OutputRun]:
        """The output lines left at the end of the stream, as runs (see :meth:`flush`)."""
        return self._runs(self._mark(self._blocks.close()))

    def _mark(self, block: bytes) -> bytes:
        """Note what a block says of the follow itself (its ``eof``, its last event id); the block."""
        if block.endswith(_EOF_ENDINGS):
            self.eof = True
        if self._resume is not None:
            self._resume.note_block(block)
        return block

    def _runs(self, block: bytes) -> Iterable[OutputRun]:
        """The runs of a block (:meth:`_mark` it first)."""
        if _BATCH_MARK not in block:
            fast = self._agent_runs(block)
            if fast is not None:
                return fast
        runs: list[OutputRun] = []
        for event in decode_block(block):
            if isinstance(event.get("lines"), list):
                parts = self._batch_parts(event)
                if parts is not None:
                    runs.append(parts)
            elif isinstance(event.get("line"), str):  # else no line: eof, an error, anything else
                item = output_event(event, self._default_stream)
                if item is not None:
                    runs.append(((item.line,), item.timestamp, item.stream))
        return runs

    def _batch_parts(self, event: dict[str, Any]) -> tuple[list[str], datetime | None, str | None] | None:
        """The lines, timestamp and stream of one ``output_batch`` event, checked once, as its
        lines' own events would be; None when it holds no line event."""
        lines: list[Any] = event["lines"]
        if not lines:
            return None
        if "continued" in event:
            lines = continued_pieces(lines, event["continued"])
        try:
            "".join(lines)  # a TypeError says an item is not a string
        except TypeError:
            lines = [line for line in lines if isinstance(line, str)]  # the others are no line events
        stream = event.get("stream")
        if stream is None:
            stream = self._default_stream
        timestamp = event.get("timestamp")
        converted = None
        if type(timestamp) is int and type(stream) is str:
            converted = self._timestamps.convert([timestamp])
        if converted is not None:
            moment: datetime | None = converted[0]
        else:
            # Anything unusual: validated once, as each line would be.
            try:
                checked = OutputEvent.model_validate({"line": "", "timestamp": timestamp, "stream": stream})
            except ValidationError:
                return None
            moment, stream = checked.timestamp, checked.stream
        return (lines, moment, stream) if lines else None

    def _agent_runs(self, block: bytes) -> Iterable[OutputRun] | None:
        """The runs of a block of agent ``output`` events (one per event), unvalidated; else None."""
        objects = _AGENT_OUTPUT.findall(block)
        if len(objects) != data_line_count(block):
            return None
        if not objects:
            return ()  # keep-alives
        try:
            # One JSON object per item, by the pattern: only an invalid escape can fail here.
            events: list[dict[str, Any]] = json.loads((b"[" + b",".join(objects) + b"]").decode("utf-8"))
        except ValueError:
            return None
        datetimes = self._timestamps.convert(list(map(_TIMESTAMPS, events)))
        if datetimes is None:
            return None
        lines = zip(map(_LINES, events), strict=True)  # zip of one iterable: each line in a 1-tuple
        return zip(lines, datetimes, map(_STREAMS, events), strict=True)


def events_of(runs: Iterable[OutputRun]) -> Iterator[OutputEvent]:
    """The events of runs, built without validation as they are iterated."""
    return chain.from_iterable(
        map(OutputEvent, lines, repeat(moment), repeat(stream)) for lines, moment, stream in runs
    )


class OutputBatchDecoder:
    """The output of a ``follow`` stream as :class:`OutputBatch` objects, one per ``output_batch``
    event (no object per line); per-line ``output`` events (a server that does not batch) are
    grouped while they share stream and timestamp. Flattened, the batches hold the lines, streams
    and timestamps :class:`OutputEventDecoder` gives for the same body."""

    def __init__(self, default_stream: str | None, resume: FollowResume | None = None) -> None:
        self._events = OutputEventDecoder(default_stream, resume)

    @property
    def eof(self) -> bool:
        """Whether the ``eof`` event came: the process exited and every line was sent."""
        return self._events.eof

    def feed(self, chunk: bytes) -> list[OutputBatch]:
        """Take the next chunk of the body; the batches it completes, in order."""
        block = self._events._blocks.feed(chunk)
        return [] if block is None else self._batches(block)

    def flush(self) -> list[OutputBatch]:
        """The batches left at the end of the stream (an event left unterminated counts)."""
        return self._batches(self._events._blocks.close())

    def _batches(self, block: bytes) -> list[OutputBatch]:
        self._events._mark(block)
        if _BATCH_MARK not in block:
            return _grouped(events_of(self._events._runs(block)))
        out: list[OutputBatch] = []
        for event in decode_block(block):
            if isinstance(event.get("lines"), list):
                parts = self._events._batch_parts(event)
                if parts is not None:
                    out.append(OutputBatch(*parts, dropped=_dropped_of(event)))
            elif isinstance(event.get("line"), str):
                item = output_event(event, self._events._default_stream)
                if item is not None:
                    out.append(OutputBatch([item.line], item.timestamp, item.stream))
        return out


def _dropped_of(event: dict[str, Any]) -> int:
    """The ``dropped`` of a batch event: a positive count, else 0."""
    dropped = event.get("dropped")
    return dropped if type(dropped) is int and dropped > 0 else 0


def _grouped(events: Iterable[OutputEvent]) -> list[OutputBatch]:
    """Events as batches: consecutive ones of the same stream and timestamp together."""
    out: list[OutputBatch] = []
    last: OutputBatch | None = None
    for event in events:
        if last is not None and last.stream == event.stream and last.timestamp == event.timestamp:
            last.lines.append(event.line)
        else:
            last = OutputBatch([event.line], event.timestamp, event.stream)
            out.append(last)
    return out


def iter_output_batches(chunks: Iterable[bytes], default_stream: str | None) -> Iterator[OutputBatch]:
    """The output batches of a whole follow stream given as body chunks."""
    decoder = OutputBatchDecoder(default_stream)
    for chunk in chunks:
        yield from decoder.feed(chunk)
    yield from decoder.flush()


def iter_output_events(chunks: Iterable[bytes], default_stream: str | None) -> Iterator[OutputEvent]:
    """The output events of a whole follow stream given as body chunks."""
    decoder = OutputEventDecoder(default_stream)
    for chunk in chunks:
        yield from decoder.feed(chunk)
    yield from decoder.flush()


class FollowResume:
    """Where a follow stands across its connections, and whether to open another.

    Each ``output_batch`` of Alcove's agent carries an SSE ``id``, the number of the line after
    it; the decoders note the last one of every block (:meth:`note_block`), and a follow opened
    again sends it as ``Last-Event-ID`` (:attr:`cursor`): the agent goes on right after it
    (docs/protocol/sandbox-api.md, Process I/O), whatever its buffer dropped meanwhile. A server
    whose events carry no id answers a follow with every line still in the process's buffer,
    oldest first, then the live ones; the lines already handed out are then skipped by count
    (:meth:`fresh`). Either way the caller gets each line once, in order. (Counting goes wrong
    once the buffer, 16 MiB, has dropped lines: hence the ids.)

    A connection that breaks (:meth:`broke`), or ends without the ``eof`` event (:meth:`ended`),
    is opened again, after :data:`FOLLOW_BACKOFF_SECS` when it broke; after
    :data:`FOLLOW_RECONNECTS` connections in a row that broke without a new line, the last error is
    raised. Errors the open answers (an unknown process, a sandbox gone or still suspended once the
    open's own replays are spent) are the caller's at once.
    """

    def __init__(self, warn_dropped: str | None = None) -> None:
        self.delivered = 0
        """Lines handed out so far."""
        self.dropped = 0
        """Lines the process's output buffer let go before this follow read them (its batches'
        ``dropped``, added up)."""
        self._warn_dropped = warn_dropped  # what a warning names (a per-line follow), or None
        self.reconnects = 0
        """Connections opened again so far."""
        self.cursor: str | None = None
        """The ``id`` of the last event taken that had one: where a follow opened again goes on."""
        self._skip = 0
        self._failures = 0  # connections in a row that brought no new line
        self._new_lines = False  # the current connection brought a line not seen before
        self._quiet = False  # the previous connection ended without eof and without a new line

    def _take(self, count: int) -> int:
        """Of the next ``count`` lines: how many at the front were handed out before, or -1 when
        all were; the others are counted as handed out."""
        skip = self._skip
        if skip:
            if count <= skip:
                self._skip = skip - count
                return -1
            self._skip = 0
        self.delivered += count - skip
        self._new_lines = True
        return skip

    def note_block(self, block: bytes) -> None:
        """Note the last event id of a block of the stream (its lines are all handed out before
        the connection can be found broken)."""
        found = last_event_id(block)
        if found is not None:
            self.cursor = found
        if _DROPPED_MARK in block:
            self._note_dropped(block)

    def _note_dropped(self, block: bytes) -> None:
        lost = sum(int(count) for count in _DROPPED.findall(block))
        if not lost:
            return
        self.dropped += lost
        if self._warn_dropped is not None:
            _log.warning(
                "follow of %s: %d lines of output were dropped before this follower read them "
                "(the process's output buffer holds the last 16 MiB)",
                self._warn_dropped,
                lost,
            )

    def fresh(self, runs: Iterable[OutputRun]) -> Iterator[OutputRun]:
        """The lines of ``runs`` not handed out before, counted as handed out."""
        for run in runs:
            skip = self._take(len(run[0]))
            if skip == 0:
                yield run
            elif skip > 0:
                yield (run[0][skip:], run[1], run[2])

    def fresh_batches(self, batches: Iterable[OutputBatch]) -> Iterator[OutputBatch]:
        """:meth:`fresh` for batches: a batch partly handed out keeps its other lines."""
        for batch in batches:
            skip = self._take(len(batch.lines))
            if skip == 0:
                yield batch
            elif skip > 0:
                yield OutputBatch(batch.lines[skip:], batch.timestamp, batch.stream, batch.dropped)

    def broke(self) -> bool:
        """The connection broke (or could not be opened again): whether to open another (else
        the caller raises its error: the budget is spent)."""
        if self._new_lines:
            self._failures = 0
        self._failures += 1
        self._quiet = False
        return self._failures <= FOLLOW_RECONNECTS

    def ended(self, eof: bool) -> bool:
        """The connection ended cleanly: whether the follow is over. It is at the ``eof`` event.
        Without one the connection was cut, and another is opened; a server that sends no ``eof``
        (the stream just ends at exit) is recognised when a connection opened again ends too
        without a new line, and the follow ends there."""
        if eof or (self._quiet and not self._new_lines):
            return True
        if self._new_lines:
            self._failures = 0
        self._quiet = True
        return False

    def pause(self) -> float:
        """Before opening the follow again: the seconds to wait first. From then on the lines
        handed out are skipped."""
        self.reconnects += 1
        # With a cursor the agent sends only what comes after it; without, everything it keeps.
        self._skip = 0 if self.cursor is not None else self.delivered
        self._new_lines = False
        if not self._failures:
            return 0.0
        return FOLLOW_BACKOFF_SECS[min(self._failures, len(FOLLOW_BACKOFF_SECS)) - 1]
