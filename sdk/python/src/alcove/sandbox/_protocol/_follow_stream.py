"""The output events of a ``follow`` stream, as :class:`OutputEvent` models.

Validating each line with pydantic costs more than everything else a follower does. So when all
the data lines of a block are output events in the agent's exact layout (one regular expression
says so), their JSON objects are parsed together and built into models without validation, into
the models ``OutputEvent.model_validate`` would make (see :mod:`._fast_models`). Any other block
is decoded and validated event by event, as before.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from datetime import datetime
from operator import itemgetter
from typing import Any

from pydantic import ValidationError

from ..models import OutputEvent, _timestamp_before
from ._fast_models import OutputEventFactory
from ._sse import SSEBlocks, agent_output_data, data_line_count, decode_block

# The JSON object of each output event of a block in the agent's layout: once parsed, a dict of
# exactly "line" (str), "timestamp" (int) and "stream" ("stdout" or "stderr"), in that order.
_AGENT_OUTPUT = agent_output_data(whole=True)
_TIMESTAMPS = itemgetter("timestamp")


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


class OutputEventDecoder:
    """The output events of a ``follow`` stream: feed it the body's chunks, then :meth:`flush`.

    ``default_stream`` is the ``stream`` of events that omit it (``None`` for the merged stream).
    """

    def __init__(self, default_stream: str | None) -> None:
        self._blocks = SSEBlocks()
        self._default_stream = default_stream
        self._timestamps = _TimestampCache()
        self._factory = OutputEventFactory.get()

    def feed(self, chunk: bytes) -> Iterable[OutputEvent]:
        """Take the next chunk of the body; the output events it completes, in order."""
        block = self._blocks.feed(chunk)
        return () if block is None else self._events(block)

    def flush(self) -> Iterable[OutputEvent]:
        """The events left at the end of the stream (an event left unterminated counts)."""
        return self._events(self._blocks.close())

    def _events(self, block: bytes) -> Iterable[OutputEvent]:
        fast = self._agent_events(block)
        if fast is not None:
            return fast
        items = (output_event(event, self._default_stream) for event in decode_block(block))
        return [item for item in items if item is not None]

    def _agent_events(self, block: bytes) -> Iterable[OutputEvent] | None:
        """The events of a block of agent output events, built without validation; else None."""
        if self._factory is None:
            return None
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
        # Built as they are consumed: a follower that handles each event before taking the next
        # keeps few alive, which keeps the garbage collector's work small.
        return self._factory.build(events, datetimes)


def iter_output_events(chunks: Iterable[bytes], default_stream: str | None) -> Iterator[OutputEvent]:
    """The output events of a whole follow stream given as body chunks."""
    decoder = OutputEventDecoder(default_stream)
    for chunk in chunks:
        yield from decoder.feed(chunk)
    yield from decoder.flush()
