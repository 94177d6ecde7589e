"""Server-sent events: cutting the byte stream into blocks of whole events and decoding them.

The agent writes many events per read (docs/protocol/streaming.md), so the stream is decoded a
block at a time, not a line at a time: :class:`SSEBlocks` cuts the bytes after the last blank
line of what has arrived, and :func:`decode_block` turns all the data lines of a block into JSON
objects with one ``json.loads``. Whenever a block is not made of one-line JSON objects (which is
all the agent sends) it is decoded line by line by :class:`SSEDecoder`, the reference semantics.
"""

from __future__ import annotations

import json
import re
from typing import Any

import httpx

from ..exceptions import SandboxError
from ._errors import _json_or_none

Event = dict[str, Any]
"""The JSON object carried by one event's data."""

# A data line of a block (every line of a block follows a "\n"): the value, its leading space
# included (JSON ignores it).
_DATA_LINE = re.compile(rb"\ndata:([^\n]*)")
# Counts every line that could be a data field, including ones the pattern above does not take
# (a bare "data", which is a data field with an empty value).
_DATA_FIELD = b"\ndata"


JSON_STRING_BODY = rb'[^"\\\x00-\x1f]*(?:\\.[^"\\\x00-\x1f]*)*'
"""What may stand between the quotes of a JSON string: no quote, backslash or control character
but in a backslash pair. Escapes are not checked (``json.loads`` does), yet each pair is taken
whole, so a body never ends inside an escape."""


def agent_output_data(
    line: bytes = JSON_STRING_BODY, stream: bytes = b"stdout|stderr", *, whole: bool = False
) -> re.Pattern[bytes]:
    """A data line of a block holding one output event exactly as the agent writes it.

    serde_json writes ``{"line":"…","timestamp":…,"stream":"…"}``: these fields in this order, no
    spaces, an integer timestamp. ``line`` is the pattern of the line's string body (put a group in
    it to capture it) and ``stream`` the alternatives of the stream; ``whole`` captures the whole
    JSON object. Data in any other layout, even valid, does not match.
    """
    value = rb'\{"line":"%s","timestamp":-?(?:0|[1-9][0-9]*),"stream":"(?:%s)"\}' % (line, stream)
    return re.compile(rb"\ndata: %s(?=\n)" % (rb"(%s)" % value if whole else value))


def last_event_id(block: bytes) -> str | None:
    """The ``id`` of the last event of a block (from :class:`SSEBlocks`) that has one, or None."""
    at = block.rfind(b"\nid:")
    if at < 0:
        return None
    end = block.find(b"\n", at + 4)
    value = block[at + 4 : end if end >= 0 else len(block)]
    return value.removeprefix(b" ").decode("utf-8", "replace")


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

    def feed(self, line: str) -> list[Event]:
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

    def flush(self) -> list[Event]:
        if not self._data:
            return []
        lines, self._data = self._data, []
        joined = _json_or_none("\n".join(lines))
        if isinstance(joined, dict):
            return [joined]
        # Tolerate servers that forget the blank line between events: one object per data line.
        objects = (_json_or_none(line) for line in lines)
        return [obj for obj in objects if isinstance(obj, dict)]


class SSEBlocks:
    """Cuts an SSE byte stream into blocks of whole events.

    Feed it the body's chunks as they come; :meth:`feed` answers the bytes up to the last blank
    line seen so far (or None), :meth:`close` what is left at the end of the stream. Every block
    starts with ``\\n`` and its line ends are ``\\n`` (``\\r\\n`` and ``\\r`` are turned into
    ``\\n``, SSE allows all three); every block but the last ends with ``\\n``, and the blank line
    ending its last event is the ``\\n`` that starts the next block. So each line of a block
    follows a ``\\n``, and a block decodes on its own: no event spans two blocks. A UTF-8
    character never spans two blocks either, since blocks are cut at a newline byte.

    Bytes without a blank line (a very long line) are kept as a list of chunks and joined once,
    so a line of any length costs linear time.
    """

    def __init__(self) -> None:
        # A leading empty line changes nothing (it ends no event) and gives the first block its "\n".
        self._pending: list[bytes] = [b"\n"]
        # The last chunk ended with "\r", already counted as a line end: a "\n" starting the next
        # chunk completes that "\r\n" and is dropped.
        self._after_cr = False

    def feed(self, chunk: bytes) -> bytes | None:
        """Take the next chunk of the body; the block of whole events it completes, if any."""
        if self._after_cr and chunk:
            self._after_cr = False
            if chunk.startswith(b"\n"):
                chunk = chunk[1:]
        if b"\r" in chunk:
            self._after_cr = chunk.endswith(b"\r")
            chunk = chunk.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        if not chunk:
            return None
        cut = chunk.rfind(b"\n\n")
        if cut < 0:
            if not (chunk.startswith(b"\n") and self._pending[-1].endswith(b"\n")):
                self._pending.append(chunk)
                return None
            cut = -1  # the blank line starts this chunk
        self._pending.append(chunk[: cut + 1])
        block = b"".join(self._pending)
        self._pending = [chunk[cut + 1 :]]
        return block

    def close(self) -> bytes:
        """What is left at the end of the stream (its last line may be unterminated)."""
        rest = b"".join(self._pending)
        self._pending, self._after_cr = [b"\n"], False
        return rest


def data_line_count(block: bytes) -> int:
    """How many lines of a block (from :class:`SSEBlocks`) may be data fields."""
    return block.count(_DATA_FIELD)


def decode_block(block: bytes) -> list[Event]:
    """The JSON objects of the events of a block from :class:`SSEBlocks`, in order.

    The data lines of a block of one-line events are parsed together, as one JSON array; any
    other block (an event whose data spans lines, data that is not a JSON object, bytes that are
    not UTF-8) is decoded line by line, as :class:`SSEDecoder` does, with the same result. The
    last event of a block counts even without its blank line (the next block starts with it, or
    the stream ended).
    """
    count = data_line_count(block)
    if count == 0:
        return []  # comments (keep-alives), or events without data
    datas = _data_values(block, count)
    if len(datas) == count:
        events = _json_objects(datas)
        if events is not None:
            return events
    decoder = SSEDecoder()
    events = []
    for line in block.decode("utf-8", "replace").split("\n"):
        events.extend(decoder.feed(line))
    return events + decoder.flush()


# Up to this many data lines a block's values are found with bytes.find, which skips over a long
# line at the speed of memchr; past it (per-line events) the pattern is quicker than a loop.
_FEW_DATA_LINES = 64


def _data_values(block: bytes, count: int) -> list[bytes]:
    """What ``_DATA_LINE.findall(block)`` answers (``count`` is :func:`data_line_count` of it):
    the value of each data line with a colon, found without the pattern when there are few, as
    in a block of batches, each a line tens of kilobytes long that the pattern reads byte by byte."""
    if count > _FEW_DATA_LINES:
        return _DATA_LINE.findall(block)
    values: list[bytes] = []
    find = block.find
    at = find(b"\ndata:")
    while at >= 0:
        end = find(b"\n", at + 6)
        if end < 0:
            values.append(block[at + 6 :])
            break
        values.append(block[at + 6 : end])
        at = find(b"\ndata:", end)
    return values


def _json_objects(datas: list[bytes]) -> list[Event] | None:
    """The data values parsed as one JSON array: None unless each is exactly one JSON object.

    A value that is not a JSON object on its own makes the array fail to parse, hold another
    number of items or an item that is not an object, and the caller then decodes line by line.
    The values are joined with ``",\\n"``: a raw newline is invalid inside a JSON string, so a
    string cannot run from one value into the next. (Only garbage shaped to balance out, such as
    ``{"a":[1`` then ``2]}`` then ``{},{}``, could still parse as three objects where the line
    decoder finds none; no server sends that.)
    """
    try:
        text = (b"[" + b",\n".join(datas) + b"]").decode("utf-8")  # strict: invalid bytes go the slow way
        events: list[Event] = json.loads(text)
    except ValueError:
        return None
    if len(events) != len(datas) or set(map(type, events)) != {dict}:
        return None
    return events
