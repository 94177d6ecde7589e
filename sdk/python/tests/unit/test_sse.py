"""SSE decoding, run collection and output events (pure functions of _protocol).

The decoders take the body's bytes in chunks and decode a block of events at a time. The tests
compare them with the line-based reference (:class:`SSEDecoder` fed the lines of the whole body)
over chunkings that cut the body everywhere: inside a UTF-8 character, between ``\\r`` and
``\\n``, inside ``data:``, between the two newlines that end an event.
"""

from __future__ import annotations

import json
import random
import re
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Any

import pytest
from pydantic import ValidationError

from alcove.sandbox import SandboxConnectionError, SandboxError
from alcove.sandbox._protocol import (
    OutputEventDecoder,
    RunCollector,
    SSEBlocks,
    SSEDecoder,
    _follow_stream,
    _run_stream,
    _sse,
    collect_run,
    decode_block,
    iter_output_batches,
    iter_output_events,
    output_event,
)
from alcove.sandbox._protocol._follow_stream import batch_as_events
from alcove.sandbox.models import CommandResult, OutputBatch, OutputEvent

# -- bodies -----------------------------------------------------------------------------------


def agent_event(name: str, data: dict[str, Any]) -> bytes:
    """One event as the agent writes it: serde_json's compact layout, non-ASCII characters raw."""
    return b"event: %s\ndata: %s\n\n" % (
        name.encode(),
        json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode(),
    )


def out(line: str, stream: str = "stdout", timestamp: int = 1767225600131) -> bytes:
    return agent_event("output", {"line": line, "timestamp": timestamp, "stream": stream})


def batch(lines: list[str], stream: str = "stdout", timestamp: int = 1767225600131) -> bytes:
    """An output_batch event as the agent writes it (fields in the order of its struct)."""
    return agent_event("output_batch", {"stream": stream, "timestamp": timestamp, "lines": lines})


STARTED = agent_event("started", {"pid": 317, "started_at": 1767225600123})
EXIT = agent_event("exit", {"exit_code": 3, "signal": None, "oom_killed": False, "reason": "exited"})

# Lines that are hard to carry: multi-byte UTF-8 (2, 3 and 4 bytes), escapes, empty, separators
# that str.splitlines() would cut (U+2028, U+0085, form feed, which JSON escapes).
TRICKY_LINES = [
    "hello",
    "",
    "é and 😀 and 中文",
    'quote " backslash \\ slash /',
    "tab\tcr\rnul\x00esc\x1b",
    "line\u2028separator\u0085next\x0cff",
    "data: looks like a field",
    ": looks like a comment",
    "\\u0041 is not an escape here",
]

AGENT_BODY = b"".join(
    [
        STARTED,
        *(out(line) for line in TRICKY_LINES),
        b": keep-alive\n\n",
        out("to stderr", "stderr"),
        out("", "stderr"),
        out("last", timestamp=1767225600999),
        EXIT,
    ]
)

UNUSUAL_BODY = (
    b": keep-alive\n\n"
    b'event: output\nid: 7\nretry: 100\ndata: {"line": "a", "timestamp": 1}\n\n'
    b"data: not json\n\n"
    b"data: [1, 2]\n\n"
    b"data\n\n"
    b'data:{"line":"no space","timestamp":2,"stream":"stdout"}\n\n'
    b'data: {"line":\ndata: "multi-line", "timestamp": 3}\n\n'
    b'data: {"line": "no blank line", "timestamp": 4}\ndata: {"line": "between", "timestamp": 5}\n\n'
    b'data: {"line": "bad \\q escape", "timestamp": 6, "stream": "stdout"}\n\n'
    b'data: {"line":"bad \\q escape","timestamp":6,"stream":"stdout"}\n\n'
    b'data: {"line": "invalid utf-8 \xff\xfe", "timestamp": 7}\n\n'
    b'data: {"line":"extra","timestamp":8,"stream":"stdout","x":1}\n\n'
    b'data: {"timestamp":9,"line":"reordered","stream":"stdout"}\n\n'
    b'data: {"line":"float time","timestamp":1767225600.5,"stream":"stdout"}\n\n'
    b'data: {"line":"no stream","timestamp":10}\n\n'
    b'data: {"line":"null stream","timestamp":10,"stream":null}\n\n'
    b"event: eof\ndata: {}\n\n"
    b'data: {"line": "unterminated", "timestamp": 11}'
)

# A follow stream with ?batch=true: batches of both streams, one of one line, keep-alives, eof.
BATCH_BODY = b"".join(
    [
        batch(TRICKY_LINES),
        b": keep-alive\n\n",
        batch(["to stderr", ""], "stderr"),
        batch(["one"], timestamp=1767225600999),
        batch([str(i) for i in range(50)], timestamp=1767225601000),
        batch(["and stderr, read at the same time"], "stderr", timestamp=1767225601000),
        agent_event("eof", {}),
    ]
)

# Batches a server could send that the agent does not: other layouts, odd fields, mixed forms.
UNUSUAL_BATCH_BODY = (
    b'data: {"lines": ["spaced", "out"], "stream": "stdout", "timestamp": 1}\n\n'
    b'data: {"stream":"stdout","timestamp":2,"lines":["no stream"]}\n\n'
    b'data: {"timestamp":3,"lines":["stream omitted"]}\n\n'
    b'data: {"stream":null,"timestamp":3,"lines":["null stream"]}\n\n'
    b'data: {"stream":"stdout","lines":["no timestamp"]}\n\n'
    b'data: {"stream":"stdout","timestamp":"2026-01-01T00:00:00Z","lines":["iso time"]}\n\n'
    b'data: {"stream":"stdout","timestamp":1767225600.5,"lines":["float time"]}\n\n'
    b'data: {"stream":"stdout","timestamp":true,"lines":["bool time"]}\n\n'
    b'data: {"stream":5,"timestamp":4,"lines":["number stream"]}\n\n'
    b'data: {"stream":"stdout","timestamp":5,"lines":["a",7,null,"b"]}\n\n'
    b'data: {"stream":"stdout","timestamp":6,"lines":[]}\n\n'
    b'data: {"stream":"stdout","timestamp":6,"lines":"not a list"}\n\n'
    b'data: {"stream":"stdout","timestamp":6,"lines":["bad \\q escape"]}\n\n'
    b'data: {"stream":"stdout","timestamp":6,"lines":["x"],"extra":1}\n\n'
    b'data: {"line":"per-line","timestamp":7,"stream":"stderr"}\n\n'
    b'data: {"stream":"stdout","timestamp":8,"lines":["after per-line"]}\n'
    b'data: {"stream":"stdout","timestamp":8,"lines":["no blank line"]}\n\n'
    b'data: {"stream":"stdout","timestamp":9,"lines":["invalid utf-8 \xff"]}\n\n'
    b"event: eof\ndata: {}\n\n"
    b'data: {"stream":"stdout","timestamp":10,"lines":["unterminated"]}'
)

BODIES = {
    "agent": AGENT_BODY,
    "agent, CRLF": AGENT_BODY.replace(b"\n", b"\r\n"),
    "agent, CR": AGENT_BODY.replace(b"\n", b"\r"),
    "unusual": UNUSUAL_BODY,
    "unusual, CRLF": UNUSUAL_BODY.replace(b"\n", b"\r\n"),
    "batches": BATCH_BODY,
    "batches, CRLF": BATCH_BODY.replace(b"\n", b"\r\n"),
    "unusual batches": UNUSUAL_BATCH_BODY,
}


def chunkings(body: bytes) -> Iterator[list[bytes]]:
    """The body whole, cut in two at every position, byte by byte, and in random pieces."""
    yield [body]
    for cut in range(1, len(body)):
        yield [body[:cut], body[cut:]]
    yield [body[i : i + 1] for i in range(len(body))]
    rng = random.Random(7)
    for _ in range(20):
        chunks, start = [], 0
        while start < len(body):
            size = rng.randint(0, 40)  # empty chunks included
            chunks.append(body[start : start + size])
            start += size
        yield chunks


# -- references: the line-based decoding of the whole body --------------------------------------


def reference_events(body: bytes) -> list[dict[str, Any]]:
    decoder = SSEDecoder()
    events = []
    for line in re.split(r"\r\n|\r|\n", body.decode("utf-8", "replace")):
        events.extend(decoder.feed(line))
    return events + decoder.flush()


def reference_run(body: bytes) -> CommandResult:
    collector = RunCollector()
    for event in reference_events(body):
        if collector.add(event):
            break
    return collector.result()


def reference_output(body: bytes, default_stream: str | None) -> list[OutputEvent]:
    """Each event validated on its own, a batch standing for one output event per line."""
    events = [line_event for event in reference_events(body) for line_event in batch_as_events(event)]
    items = (output_event(event, default_stream) for event in events)
    return [item for item in items if item is not None]


def block_events(chunks: list[bytes]) -> list[dict[str, Any]]:
    blocks = SSEBlocks()
    events = []
    for chunk in chunks:
        block = blocks.feed(chunk)
        if block is not None:
            events += decode_block(block)
    return events + decode_block(blocks.close())


def same_models(got: list[OutputEvent], want: list[OutputEvent]) -> None:
    assert got == want
    for a, b in zip(got, want, strict=True):
        assert type(a) is OutputEvent
        assert repr(a) == repr(b)
        assert a.model_dump() == b.model_dump()
        assert type(a.line) is str and (a.timestamp is None or type(a.timestamp) is datetime)


# -- the line-based decoder -------------------------------------------------------------------


def decode(text: str) -> list[dict]:
    decoder = SSEDecoder()
    events = []
    for line in text.split("\n"):
        events.extend(decoder.feed(line))
    return events + decoder.flush()


def test_decoder_ignores_event_names_comments_ids_and_non_json() -> None:
    text = (
        ": keep-alive\n\n"
        'event: output\nid: 7\nretry: 100\ndata: {"line": "a"}\n\n'
        "data: not json\n\n"
        "data: [1, 2]\n\n"
        "event: eof\ndata: {}\n\n"
        'data:{"line": "no space"}\r\n\r\n'
        'data: {"line":\n'
        'data: "multi-line"}\n\n'
        'data: {"line": "unterminated"}'
    )
    assert decode(text) == [{"line": "a"}, {}, {"line": "no space"}, {"line": "multi-line"}, {"line": "unterminated"}]


def test_decoder_tolerates_missing_blank_lines_between_events() -> None:
    assert decode('data: {"a": 1}\ndata: {"b": 2}\n\n') == [{"a": 1}, {"b": 2}]


# -- blocks -----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(BODIES))
def test_blocks_decode_like_the_line_decoder_however_the_body_is_cut(name: str) -> None:
    body = BODIES[name]
    want = reference_events(body)
    assert len(want) > 5
    for chunks in chunkings(body):
        assert block_events(chunks) == want, chunks


@pytest.mark.parametrize("pieces", [3, 30, 300])
def test_data_values_are_what_the_data_pattern_finds(pieces: int) -> None:
    # Few data lines are found with bytes.find, many with the pattern: the same values either way,
    # whatever surrounds them (a "data" field without a colon, one at the very end, empty values).
    rng = random.Random(pieces)
    parts = [b"\ndata:", b"\ndata: ", b"\ndata", b"\n", b"\n\n", b"x", b":", b'{"a":1}', b"data:", b"\nid: 3"]
    for _ in range(300):
        block = b"\n" + b"".join(rng.choice(parts) for _ in range(rng.randint(0, pieces)))
        count = _sse.data_line_count(block)
        assert _sse._data_values(block, count) == _sse._DATA_LINE.findall(block), block
    assert _sse._data_values(b"\ndata:" + b"7" * 100_000, 1) == [b"7" * 100_000]


def test_blocks_start_with_a_newline_and_end_at_a_blank_line() -> None:
    blocks = SSEBlocks()
    assert blocks.feed(b"data: 1\n") is None
    assert blocks.feed(b"\ndata: 2\n\nda") == b"\ndata: 1\n\ndata: 2\n"
    assert blocks.feed(b"ta: 3\n") is None
    assert blocks.feed(b"\n") == b"\ndata: 3\n"  # the blank line starts the next chunk
    assert blocks.feed(b"data: 4\r") is None  # the "\r" ends the line at once...
    assert blocks.feed(b"\n") is None  # ...and this "\n" is the rest of its "\r\n"
    assert blocks.feed(b"\r") == b"\ndata: 4\n"  # a blank line, without waiting for a "\n"
    assert blocks.close() == b"\n"


def test_a_lone_cr_at_the_end_of_the_stream_ends_a_line() -> None:
    assert block_events([b'data: {"a": 1}\r']) == [{"a": 1}]


def test_a_very_long_line_costs_linear_time() -> None:
    line = "x" * (8 * 1024 * 1024)
    body = out(line) + EXIT
    chunks = [body[i : i + 4096] for i in range(0, len(body), 4096)]
    start = time.perf_counter()
    result = collect_run(chunks)
    assert time.perf_counter() - start < 5  # joined once: quadratic joining would take minutes
    assert result.stdout == line


def test_agent_blocks_take_the_fast_path(monkeypatch: pytest.MonkeyPatch) -> None:
    class NoLineDecoding(SSEDecoder):
        def feed(self, line: str) -> list[dict[str, Any]]:
            raise AssertionError(f"decoded line by line: {line!r}")

    monkeypatch.setattr(_sse, "SSEDecoder", NoLineDecoding)
    assert block_events([AGENT_BODY]) == reference_events(AGENT_BODY)


# -- run --------------------------------------------------------------------------------------


def results(got: CommandResult) -> tuple[Any, ...]:
    return (got.stdout, got.stderr, got.exit_code, got.signal, got.reason, got.pid)


@pytest.mark.parametrize("name", ["agent", "agent, CRLF", "agent, CR"])
def test_run_collects_like_the_line_decoder_however_the_body_is_cut(name: str) -> None:
    body = BODIES[name]
    want = reference_run(body)
    assert want.stdout == "\n".join([*TRICKY_LINES, "last"]) and want.stderr == "to stderr\n"
    for chunks in chunkings(body):
        assert results(collect_run(chunks)) == results(want), chunks


def test_run_of_unusual_events_collects_like_the_line_decoder() -> None:
    body = UNUSUAL_BODY.replace(b"event: eof", b'data: {"exit_code": 0}\n\nevent: eof')
    want = reference_run(body)
    assert "bad \\q escape" not in want.stdout and "invalid utf-8 \ufffd\ufffd" in want.stdout
    for chunks in chunkings(body):
        assert results(collect_run(chunks)) == results(want)


@pytest.mark.parametrize(
    "text",
    [
        out("a") + out("b"),
        out("a", "stderr") + out("b", "stderr"),
        out("a") + b'event: output\ndata: {"line":"b","timestamp":1,"stream":"stdout"}\nab\n\n' + out("c"),
        out("a") + b'event: output\ndata: {"line":"b","timestamp":1,"stream":"stdout"}\nab\n\n',
        out("a") + out('"stream":"stderr"') + out("c"),
        out("a") + b": keep-alive\n\n" + out("b"),
        out("a\\") + out("b"),
    ],
)
def test_run_notices_anything_but_output_events_in_a_block_taken_at_once(text: bytes) -> None:
    body = text + EXIT
    want = reference_run(body)
    for chunks in chunkings(body):
        assert results(collect_run(chunks)) == results(want)


def piece(line: str, stream: str = "stdout") -> bytes:
    """A per-line event of a piece of a cut line (the agent cuts lines over 1 MiB)."""
    return agent_event("output", {"line": line, "timestamp": 1767225600131, "stream": stream, "continued": True})


def cut_batch(lines: list[str], continued: list[int], stream: str = "stdout") -> bytes:
    """An output_batch whose lines at ``continued`` are pieces continued by the next line."""
    data = {"stream": stream, "timestamp": 1767225600131, "lines": lines, "continued": continued}
    return agent_event("output_batch", data)


@pytest.mark.parametrize(
    ("body", "stdout", "stderr"),
    [
        (cut_batch(["aaa", "bbb", "ccc", "next"], [0, 1]), "aaabbbccc\nnext", ""),
        # Across batches, with the other stream in between: continuation is per stream.
        (
            cut_batch(["aaa", "bbb"], [0, 1]) + out("e1", "stderr") + batch(["ccc", "next"]),
            "aaabbbccc\nnext",
            "e1",
        ),
        (piece("aaa") + out("x", "stderr") + piece("bbb") + out("ccc") + out("next"), "aaabbbccc\nnext", "x"),
        (out("first") + cut_batch(["e1", "e2"], [0], "stderr") + piece("p") + out("q"), "first\npq", "e1e2"),
    ],
)
def test_run_puts_the_pieces_of_a_cut_line_back_together(body: bytes, stdout: str, stderr: str) -> None:
    body += EXIT
    for chunks in chunkings(body):
        got = collect_run(chunks)
        assert (got.stdout, got.stderr) == (stdout, stderr), chunks


def test_follows_mark_the_pieces_of_a_cut_line() -> None:
    from alcove.sandbox import LinePiece, OutputResponse

    body = cut_batch(["a", "b", "c"], [1]) + piece("d") + out("e")
    for chunks in chunkings(body):
        events = list(iter_output_events(chunks, None))
        assert [(e.line, e.continued) for e in events] == [
            ("a", False),
            ("b", True),
            ("c", False),
            ("d", True),
            ("e", False),
        ]
        assert type(events[1].line) is LinePiece and type(events[0].line) is str
        batches = list(iter_output_batches(chunks, None))
        assert batches[0].continued == [1]
        flat = [(line, index in b.continued) for b in batches for index, line in enumerate(b.lines)]
        assert flat == [(e.line, e.continued) for e in events]
    assert reference_output(body, None) == list(iter_output_events([body], None))
    response = OutputResponse.model_validate({"pid": 1, "lines": ["a", "b"], "line_count": 2, "continued": [0]})
    assert response.continued == [0]
    assert OutputResponse.model_validate({"pid": 1, "lines": [], "line_count": 0}).continued == []


def test_run_skips_a_line_with_an_invalid_escape_and_keeps_the_others() -> None:
    body = out("a") + b'event: output\ndata: {"line":"bad \\q","timestamp":1,"stream":"stdout"}\n\n' + out("b") + EXIT
    assert collect_run([body]).stdout == "a\nb"


def test_run_carries_escapes_and_surrogates_like_json() -> None:
    lines = ['"\\/\b\f\n\r\t', "\U0001f600", "\ud800 lone surrogate", "\u00e9"]
    for ensure_ascii in (True, False):  # "\ud83d\ude00" escapes, or the characters raw
        body = b"".join(
            b"event: output\ndata: %s\n\n"
            % json.dumps(
                {"line": line, "timestamp": 1, "stream": "stdout"}, separators=(",", ":"), ensure_ascii=ensure_ascii
            ).encode("utf-8", "surrogatepass")
            for line in lines
        )
        result = collect_run([body + EXIT])
        assert results(result) == results(reference_run(body + EXIT))
        if ensure_ascii:
            assert result.stdout == "\n".join(lines)
        else:  # a raw lone surrogate is no UTF-8: replaced, as when decoding text
            assert "\ufffd\ufffd\ufffd lone surrogate" in result.stdout


def test_run_keeps_each_stream_in_order_and_empty_lines() -> None:
    body = b"".join(out(f"{i}", "stderr" if i % 3 == 0 else "stdout") for i in range(1000))
    result = collect_run([out(""), out(""), body, EXIT])
    assert result.stdout == "\n\n" + "\n".join(str(i) for i in range(1000) if i % 3)
    assert result.stderr == "\n".join(str(i) for i in range(1000) if i % 3 == 0)


def test_run_output_blocks_take_the_fast_path(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_event_decoding(block: bytes) -> list[dict[str, Any]]:
        assert b'"stream"' not in block, "output decoded event by event"
        return _sse.decode_block(block)

    monkeypatch.setattr(_run_stream, "decode_block", no_event_decoding)
    blocks = [STARTED, b"".join(out(str(i), "stderr" if i % 2 else "stdout") for i in range(100)), EXIT]
    assert collect_run(blocks).stdout == "\n".join(str(i) for i in range(0, 100, 2))


def test_collect_run_joins_lines_and_splits_streams() -> None:
    result = collect_run(
        [
            b'data: {"pid": 1000, "started_at": 1795711162444}\n\n',
            b'data: {"line": "hello", "timestamp": 1, "stream": "stdout"}\n\n',
            b'data: {"line": "oops", "timestamp": 1, "stream": "stderr"}\n\n',
            b'data: {"line": "world", "timestamp": 1}\n\n',
            b'data: {"exit_code": 3, "signal": null, "oom_killed": false, "reason": "exited"}\n\n',
        ]
    )
    assert (result.stdout, result.stderr, result.exit_code) == ("hello\nworld", "oops", 3)
    assert result.pid == 1000 and result.reason == "exited"


def test_collect_run_signal_only_exit_is_negative() -> None:
    result = collect_run([b'data: {"exit_code": null, "signal": 9, "reason": "timed_out"}\n\n'])
    assert result.exit_code == -9 and result.signal == 9 and result.reason == "timed_out"


def test_collect_run_ignores_exit_events_with_neither_code_nor_signal() -> None:
    with pytest.raises(SandboxConnectionError, match="without an exit event"):
        collect_run([out("x"), b'data: {"exit_code": null, "signal": null}\n\n'])


def test_collect_run_counts_an_unterminated_exit_event() -> None:
    assert collect_run([out("x"), b'data: {"exit_code": 0}']).exit_code == 0


def test_collect_run_stops_at_the_exit_event() -> None:
    def stream() -> Iterator[bytes]:
        # What follows the exit event in its chunk is not looked at either.
        yield out("x") + agent_event("exit", {"exit_code": 0}) + b'data: {"error": "after the exit"}\n\n'
        raise AssertionError("read past the exit event")

    assert collect_run(stream()).stdout == "x"


def test_collect_run_error_event() -> None:
    with pytest.raises(SandboxError, match=r"command failed in the sandbox \(SPAWN\): spawn failed"):
        collect_run([out("before"), b'data: {"error": "spawn failed", "code": "SPAWN"}\n\n'])


# -- follow -----------------------------------------------------------------------------------


def output_events(chunks: list[bytes], default_stream: str | None) -> list[OutputEvent]:
    return list(iter_output_events(chunks, default_stream))


@pytest.mark.parametrize("name", sorted(BODIES))
@pytest.mark.parametrize("default_stream", [None, "stdout"])
def test_output_events_like_the_line_decoder_however_the_body_is_cut(name: str, default_stream: str | None) -> None:
    body = BODIES[name]
    want = reference_output(body, default_stream)
    for chunks in chunkings(body):
        same_models(output_events(chunks, default_stream), want)


@pytest.mark.parametrize("name", sorted(BODIES))
def test_output_batches_hold_the_output_events_however_the_body_is_cut(name: str) -> None:
    body = BODIES[name]
    want = [(e.line, e.timestamp, e.stream) for e in reference_output(body, None)]
    for chunks in chunkings(body):
        batches = list(iter_output_batches(chunks, None))
        assert all(type(b) is OutputBatch and b.lines for b in batches)
        assert [(line, b.timestamp, b.stream) for b in batches for line in b.lines] == want


@pytest.mark.parametrize("name", sorted(BODIES))
@pytest.mark.parametrize("default_stream", [None, "stderr"])
def test_output_runs_hold_the_output_events_however_the_body_is_cut(name: str, default_stream: str | None) -> None:
    # What the SDK's follow_* make of feed_runs (the last block through flush, as they do).
    body = BODIES[name]
    want = reference_output(body, default_stream)
    for chunks in chunkings(body):
        decoder = OutputEventDecoder(default_stream)
        runs = [run for chunk in chunks for run in decoder.feed_runs(chunk)]
        got = [OutputEvent(line, moment, stream) for lines, moment, stream in runs for line in lines]
        same_models(got + list(decoder.flush()), want)
        assert list(decoder.flush_runs()) == []  # flushed: nothing left


def test_output_batches_are_the_agents_batches() -> None:
    body = batch(["a", "b"]) + batch(["c"], "stderr") + batch(["d"]) + agent_event("eof", {})
    moment = datetime(2026, 1, 1, 0, 0, 0, 131000, tzinfo=timezone.utc)
    assert list(iter_output_batches([body], None)) == [
        OutputBatch(["a", "b"], moment, "stdout"),
        OutputBatch(["c"], moment, "stderr"),
        OutputBatch(["d"], moment, "stdout"),
    ]
    # Per-line events (a server that does not batch) are grouped while stream and time agree.
    per_line = out("a") + out("b") + out("c", "stderr") + out("d", timestamp=1767225600999)
    assert [(b.lines, b.stream) for b in iter_output_batches([per_line], None)] == [
        (["a", "b"], "stdout"),
        (["c"], "stderr"),
        (["d"], "stdout"),
    ]
    assert repr(OutputBatch(["x"])) == "OutputBatch(lines=['x'], timestamp=None, stream=None)"
    assert OutputBatch(["x"]).model_dump() == {"lines": ["x"], "timestamp": None, "stream": None, "dropped": 0}


def test_a_batch_says_how_many_lines_were_dropped_before_it() -> None:
    def with_dropped(lines: list[str], dropped: object) -> bytes:
        data = {"stream": "stdout", "timestamp": 1767225600131, "lines": lines, "dropped": dropped}
        return agent_event("output_batch", data)

    body = with_dropped(["a"], 12) + batch(["b"]) + with_dropped(["c"], -1) + with_dropped(["d"], "3")
    got = list(iter_output_batches([body], None))
    assert [(b.lines, b.dropped) for b in got] == [(["a"], 12), (["b"], 0), (["c"], 0), (["d"], 0)]
    assert got[0] != OutputBatch(["a"], got[0].timestamp, "stdout")  # compared with it
    assert "dropped=12" in repr(got[0])
    # The per-line decoder hands out the same lines.
    assert [e.line for e in iter_output_events([body], None)] == ["a", "b", "c", "d"]


def test_output_events_are_models_equal_to_validated_ones() -> None:
    body = out("a é 😀", "stderr") + out("b", timestamp=1767225600131) + out("c", timestamp=1767225600131)
    events = output_events([body], None)
    same_models(events, reference_output(body, None))
    assert events[0].timestamp == datetime(2026, 1, 1, 0, 0, 0, 131000, tzinfo=timezone.utc)
    events[1].line = "changed"  # events stay mutable, and one's change is its own
    assert events[1].line == "changed" and events[2].line == "c"


def test_output_events_keep_the_validated_path_for_other_shapes() -> None:
    events = output_events(
        [
            b'data: {"line":"extra","timestamp":1,"stream":"stdout","x":1}\n\n'
            b'data: {"line":"no stream","timestamp":1767225600131}\n\n'
            b'data: {"line":"iso","timestamp":"2026-01-01T00:00:00Z","stream":"stdout"}\n\n'
            b'data: {"line":"bool","timestamp":true,"stream":"stdout"}\n\n'
            b'data: {"line":5,"timestamp":1,"stream":"stdout"}\n\n'
        ],
        "stderr",
    )
    assert [(e.line, e.stream) for e in events] == [("extra", "stdout"), ("no stream", "stderr"), ("iso", "stdout")]


def test_an_out_of_range_timestamp_behaves_as_when_validated() -> None:
    body = out("far", timestamp=10**30)
    try:
        want: Any = reference_output(body, None)
    except Exception as exc:  # noqa: BLE001 - whatever validation does, the fast path must do too
        with pytest.raises(type(exc)):
            output_events([body], None)
    else:
        assert output_events([body], None) == want


def test_output_events_of_the_agent_take_the_fast_path(monkeypatch: pytest.MonkeyPatch) -> None:
    def validated(event: dict[str, Any], default_stream: str | None) -> OutputEvent | None:
        raise AssertionError(f"validated: {event}")

    monkeypatch.setattr(_follow_stream, "output_event", validated)
    body = b"".join(out(line) for line in TRICKY_LINES)
    assert [e.line for e in output_events([body], None)] == TRICKY_LINES


def test_batches_of_the_agent_take_the_fast_path(monkeypatch: pytest.MonkeyPatch) -> None:
    def validated(event: dict[str, Any], default_stream: str | None) -> OutputEvent | None:
        raise AssertionError(f"validated: {event}")

    monkeypatch.setattr(_follow_stream, "output_event", validated)
    monkeypatch.setattr(OutputEvent, "model_validate", validated)
    body = batch(TRICKY_LINES) + batch(["e"], "stderr") + agent_event("eof", {})
    events = output_events([body], None)
    assert [(e.line, e.stream) for e in events] == [*((line, "stdout") for line in TRICKY_LINES), ("e", "stderr")]
    assert events[0].timestamp == datetime(2026, 1, 1, 0, 0, 0, 131000, tzinfo=timezone.utc)
    assert all(e.timestamp is events[0].timestamp for e in events)  # one datetime per batch


@pytest.mark.parametrize("default_stream", [None, "stdout", "stderr"])
def test_a_batch_stands_for_one_output_event_per_line(default_stream: str | None) -> None:
    lines = ["a", "", "é 😀"]
    per_line = b"".join(out(line, "stderr", 1767225600999) for line in lines)
    batched = batch(lines, "stderr", 1767225600999)
    same_models(output_events([batched], default_stream), output_events([per_line], default_stream))
    same_models(output_events([batched], default_stream), reference_output(per_line, default_stream))


def test_output_events_read_batches_and_per_line_events_alike() -> None:
    body = out("one") + batch(["two", "three"]) + out("four", "stderr") + batch(["five"], "stderr")
    for chunks in chunkings(body):
        events = output_events(chunks, None)
        assert [(e.line, e.stream) for e in events] == [
            ("one", "stdout"),
            ("two", "stdout"),
            ("three", "stdout"),
            ("four", "stderr"),
            ("five", "stderr"),
        ]


def test_a_batch_with_an_out_of_range_timestamp_behaves_as_its_lines_would() -> None:
    body = batch(["far", "away"], timestamp=10**30)
    try:
        want: Any = reference_output(body, None)
    except Exception as exc:  # noqa: BLE001 - whatever validation does, the batch path must do too
        with pytest.raises(type(exc)):
            output_events([body], None)
    else:
        assert output_events([body], None) == want


def test_output_event_validates_like_a_model() -> None:
    new_year = datetime(2026, 1, 1, tzinfo=timezone.utc)
    event = OutputEvent.model_validate({"line": "a", "timestamp": "2026-01-01T00:00:00", "stream": "stdout", "x": 1})
    assert event == OutputEvent("a", new_year, "stdout")
    assert event.model_dump() == {"line": "a", "timestamp": new_year, "stream": "stdout"}
    assert OutputEvent.model_validate(event) == event
    assert OutputEvent("a") == OutputEvent("a", None, None) != OutputEvent("b")
    assert OutputEvent("a") != ("a", None, None)
    with pytest.raises(ValidationError):
        OutputEvent.model_validate({"line": 5})
    with pytest.raises(TypeError):
        hash(OutputEvent("a"))


def test_output_event_decoder_flushes_an_unterminated_event() -> None:
    decoder = OutputEventDecoder("stdout")
    assert list(decoder.feed(b'data: {"line": "a", "timestamp": 1795711162444}')) == []
    (event,) = decoder.flush()
    assert event.line == "a" and event.stream == "stdout" and event.timestamp.year == 2026


def test_output_events_skip_non_line_events() -> None:
    events = output_events(
        [b'data: {"line": "a", "timestamp": 1795711162444}\n\n', b"data: {}\n\n", b'data: {"line": "b"}\n\n'], "stdout"
    )
    assert [e.line for e in events] == ["a", "b"]
    assert events[0].stream == "stdout" and events[0].timestamp.year == 2026
