"""SSE decoding and run-event collection (pure functions of _protocol)."""

from __future__ import annotations

import pytest

from alcove.sandbox import SandboxConnectionError, SandboxError
from alcove.sandbox._protocol import SSEDecoder, collect_run, iter_output_events


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


def lines(*events: str) -> list[str]:
    out = []
    for event in events:
        out += [f"data: {event}", ""]
    return out


def test_collect_run_joins_lines_and_splits_streams() -> None:
    result = collect_run(
        lines(
            '{"pid": 1000, "started_at": 1795711162444}',
            '{"line": "hello", "timestamp": 1, "stream": "stdout"}',
            '{"line": "oops", "timestamp": 1, "stream": "stderr"}',
            '{"line": "world", "timestamp": 1}',
            '{"exit_code": 3, "signal": null, "oom_killed": false, "reason": "exited"}',
        )
    )
    assert (result.stdout, result.stderr, result.exit_code) == ("hello\nworld", "oops", 3)
    assert result.pid == 1000 and result.reason == "exited"


def test_collect_run_signal_only_exit_is_negative() -> None:
    result = collect_run(lines('{"exit_code": null, "signal": 9, "reason": "timed_out"}'))
    assert result.exit_code == -9 and result.signal == 9 and result.reason == "timed_out"


def test_collect_run_ignores_exit_events_with_neither_code_nor_signal() -> None:
    with pytest.raises(SandboxConnectionError, match="without an exit event"):
        collect_run(lines('{"line": "x", "timestamp": 1}', '{"exit_code": null, "signal": null}'))


def test_collect_run_stops_at_the_exit_event() -> None:
    def stream():
        yield from lines('{"exit_code": 0}')
        raise AssertionError("read past the exit event")

    assert collect_run(stream()).exit_code == 0


def test_collect_run_error_event() -> None:
    with pytest.raises(SandboxError, match="spawn failed"):
        collect_run(lines('{"error": "spawn failed", "code": "SPAWN"}'))


def test_output_events_skip_non_line_events() -> None:
    events = list(
        iter_output_events(lines('{"line": "a", "timestamp": 1795711162444}', "{}", '{"line": "b"}'), "stdout")
    )
    assert [e.line for e in events] == ["a", "b"]
    assert events[0].stream == "stdout" and events[0].timestamp.year == 2026
