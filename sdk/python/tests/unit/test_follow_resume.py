"""follow_*() across broken connections: opened again, each line handed out once, in order.

Alcove's agent gives each ``output_batch`` an SSE ``id`` (the line after it): a follow whose
connection breaks (the sandbox suspended and resumed, a proxy that drops it) is opened again with
the last one as ``Last-Event-ID`` and the agent goes on from there. A server without ids answers
every line still in the buffer, then the live ones, then ``eof``: the follow then skips the lines
it already handed out (by count). These tests script the connections with a fake transport: each
response is one connection, cut where the test says, for both clients.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import httpx
import pytest

from alcove.sandbox import (
    AsyncSandbox,
    AsyncSandboxClient,
    RemoteAPIError,
    Sandbox,
    SandboxClient,
    SandboxConnectionError,
    SandboxNotFoundError,
    SandboxTimeoutError,
)
from alcove.sandbox._protocol import FOLLOW_BACKOFF_SECS, FOLLOW_RECONNECTS, GET_ATTEMPTS, FollowResume
from alcove.sandbox.models import OutputBatch, SandboxInfo
from fakes import FakeServer, info_json, jsonr

FOLLOW = "/api/v1/processes/7/output/follow"
STDOUT_FOLLOW = "/api/v1/processes/7/stdout/follow"
TS = 1767225600131
EOF = b"event: eof\ndata: {}\n\n"
KEEP_ALIVE = b": keep-alive\n\n"


def batch(
    lines: list[str], stream: str = "stdout", timestamp: int = TS, event_id: int | None = None, dropped: int = 0
) -> bytes:
    data: dict[str, Any] = {"stream": stream, "timestamp": timestamp, "lines": lines}
    if dropped:
        data["dropped"] = dropped
    id_line = b"" if event_id is None else b"id: %d\n" % event_id
    return b"event: output_batch\n%sdata: %s\n\n" % (id_line, json.dumps(data, separators=(",", ":")).encode())


def output(line: str, stream: str = "stdout") -> bytes:
    data = {"line": line, "timestamp": TS, "stream": stream}
    return b"event: output\ndata: %s\n\n" % json.dumps(data, separators=(",", ":")).encode()


def numbered(first: int, last: int) -> list[str]:
    return [f"line{i}" for i in range(first, last + 1)]


class Connection:
    """One scripted connection: its chunks, then a break (``httpx.ReadError``) unless ``clean``."""

    def __init__(self, *chunks: bytes, clean: bool = False) -> None:
        self.chunks = chunks
        self.clean = clean

    def response(self, asynchronous: bool) -> httpx.Response:
        chunks, clean = self.chunks, self.clean

        def sync_body() -> Iterator[bytes]:
            yield from chunks
            if not clean:
                raise httpx.ReadError("peer closed connection without sending complete message body")

        async def async_body() -> AsyncIterator[bytes]:
            for chunk in chunks:
                yield chunk
            if not clean:
                raise httpx.ReadError("peer closed connection without sending complete message body")

        content: Any = async_body() if asynchronous else sync_body()
        return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=content)


def script(server: FakeServer, path: str, answers: list[Any], asynchronous: bool) -> None:
    """Answer the follow route with ``answers`` in order (the last one repeats): responses, or
    objects whose ``response(asynchronous)`` makes one (:class:`Connection`)."""
    queue = list(answers)

    def respond(request: httpx.Request) -> httpx.Response:
        answer = queue.pop(0) if len(queue) > 1 else queue[0]
        return answer if isinstance(answer, httpx.Response) else answer.response(asynchronous)

    server.on("GET", path, respond)


Follow = Callable[..., Any]


def info() -> SandboxInfo:
    return SandboxInfo.model_validate(info_json())


@pytest.fixture(params=["sync", "async"])
def follow_lines(request: pytest.FixtureRequest, server: FakeServer, sleeps: list[float]) -> Follow:
    """Follow pid 7's output through the sync or the async client over scripted connections:
    ``(lines received, the error raised or None)``."""
    asynchronous = request.param == "async"

    async def run(
        server: FakeServer, answers: list[Any], method: str = "follow_output"
    ) -> tuple[list[str], Exception | None]:
        path = STDOUT_FOLLOW if method == "follow_stdout" else FOLLOW
        script(server, path, answers, asynchronous)
        received: list[str] = []
        error: Exception | None = None
        transport = httpx.MockTransport(server)
        if asynchronous:
            async with AsyncSandboxClient(transport=transport) as aclient:
                asandbox = AsyncSandbox(aclient, info())
                try:
                    if method == "follow_output_batches":
                        async for item in asandbox.follow_output_batches(7):
                            received.extend(item.lines)
                    else:
                        async for event in getattr(asandbox, method)(7):
                            received.append(event.line)
                except Exception as exc:  # noqa: BLE001 - handed to the test
                    error = exc
        else:
            with SandboxClient(transport=transport) as client:
                sandbox = Sandbox(client, info())
                try:
                    if method == "follow_output_batches":
                        for item in sandbox.follow_output_batches(7):
                            received.extend(item.lines)
                    else:
                        for event in getattr(sandbox, method)(7):
                            received.append(event.line)
                except Exception as exc:  # noqa: BLE001
                    error = exc
        return received, error

    return run


def follow_calls(server: FakeServer, path: str = FOLLOW) -> list[httpx.Request]:
    return server.calls("GET", path)


async def test_a_follow_broken_midway_goes_on_where_it_stopped(
    follow_lines: Follow, server: FakeServer, sleeps: list[float]
) -> None:
    # The repro: a suspend cuts the connection after 7 lines; the follow opened again gets the
    # whole buffer replayed (in other batches than the first time) and the live lines after it.
    answers = [
        Connection(batch(numbered(1, 3)), KEEP_ALIVE, batch(numbered(4, 5)), batch(numbered(6, 7))),
        Connection(batch(numbered(1, 8)), batch(numbered(9, 10)), EOF, clean=True),
    ]
    lines, error = await follow_lines(server, answers)
    assert error is None
    assert lines == numbered(1, 10)
    calls = follow_calls(server)
    assert len(calls) == 2
    assert all(call.url.params["batch"] == "true" for call in calls)
    assert sleeps == [FOLLOW_BACKOFF_SECS[0]]


async def test_a_follow_with_event_ids_goes_on_after_the_last_one_taken(
    follow_lines: Follow, server: FakeServer
) -> None:
    # The agent dropped lines 1-5 of its buffer while the follower was away (a long-lived process
    # past 16 MiB): counting would skip 7 lines of the replay (6-12) never seen; the id says where
    # to go on, and the agent answers only what came after it.
    answers = [
        Connection(batch(numbered(1, 3), event_id=3), KEEP_ALIVE, batch(numbered(4, 7), event_id=7)),
        Connection(batch(numbered(8, 12), event_id=12), EOF, clean=True),
    ]
    lines, error = await follow_lines(server, answers)
    assert (lines, error) == (numbered(1, 12), None)
    first, second = follow_calls(server)
    assert "last-event-id" not in first.headers
    assert second.headers["last-event-id"] == "7"


async def test_the_last_id_of_a_block_counts_and_batches_follow_it_too(follow_lines: Follow, server: FakeServer) -> None:
    # Several batches in one chunk, then a chunk cut: the id of the last whole batch taken.
    answers = [
        Connection(batch(["a"], event_id=1) + batch(["b"], "stderr", event_id=2) + b"event: output_batch\nid: 9"),
        Connection(batch(["c"], event_id=3), EOF, clean=True),
    ]
    lines, error = await follow_lines(server, answers, "follow_output_batches")
    assert (lines, error) == (["a", "b", "c"], None)
    assert follow_calls(server)[1].headers["last-event-id"] == "2"


@pytest.mark.parametrize("method", ["follow_output", "follow_output_batches"])
async def test_lines_the_buffer_let_go_are_told(
    follow_lines: Follow, server: FakeServer, caplog: pytest.LogCaptureFixture, method: str
) -> None:
    # The follower fell 16 MiB behind: the agent says how many lines it never saw. A per-line
    # follow has no place for that among its events, so it warns; a batch follow's batch says it.
    answers = [Connection(batch(["a"], event_id=1), batch(["z"], event_id=9, dropped=7), EOF, clean=True)]
    with caplog.at_level("WARNING", logger="alcove.sandbox"):
        lines, error = await follow_lines(server, answers, method)
    assert (lines, error) == (["a", "z"], None)
    warnings = [r.getMessage() for r in caplog.records if r.name == "alcove.sandbox"]
    if method == "follow_output":
        assert len(warnings) == 1, warnings
        assert "process 7" in warnings[0] and "7 lines" in warnings[0], warnings
    else:
        assert warnings == []


async def test_a_suspended_sandbox_is_waited_for(follow_lines: Follow, server: FakeServer, sleeps: list[float]) -> None:
    # While the sandbox is suspending the proxy answers 503 SANDBOX_NOT_READY (the request did not
    # reach it): the open is replayed until it is back.
    not_ready = jsonr(503, {"message": "sandbox sbx-1 is suspending, not running", "code": "SANDBOX_NOT_READY"})
    answers: list[Connection | httpx.Response] = [
        Connection(batch(numbered(1, 4))),
        not_ready,
        not_ready,
        not_ready,
        Connection(batch(numbered(1, 6)), EOF, clean=True),
    ]
    lines, error = await follow_lines(server, answers)
    assert error is None
    assert lines == numbered(1, 6)
    assert len(follow_calls(server)) == 5
    assert sleeps[0] == FOLLOW_BACKOFF_SECS[0] and len(sleeps) == 4  # the break, then 3 not-ready replays


async def test_per_line_events_resume_too(follow_lines: Follow, server: FakeServer) -> None:
    # A server that sends output events (no batches), on the stdout route.
    answers = [
        Connection(output("a"), output("b")),
        Connection(output("a"), output("b"), output("c"), EOF, clean=True),
    ]
    lines, error = await follow_lines(server, answers, "follow_stdout")
    assert (lines, error) == (["a", "b", "c"], None)
    assert len(follow_calls(server, STDOUT_FOLLOW)) == 2


async def test_batches_resume_and_a_batch_half_seen_keeps_its_other_lines(
    follow_lines: Follow, server: FakeServer
) -> None:
    answers = [
        Connection(batch(["a", "b"]), batch(["c"], "stderr")),
        # The replay groups the lines otherwise: "c" then "d" read at once.
        Connection(batch(["a"]), batch(["b", "c", "d"]), EOF, clean=True),
    ]
    lines, error = await follow_lines(server, answers, "follow_output_batches")
    assert (lines, error) == (["a", "b", "c", "d"], None)


async def test_a_stream_cut_cleanly_without_eof_is_opened_again(follow_lines: Follow, server: FakeServer) -> None:
    # A proxy that ends the body properly but early: no eof, so the follow is not over.
    answers = [
        Connection(batch(numbered(1, 2)), clean=True),
        Connection(batch(numbered(1, 5)), EOF, clean=True),
    ]
    lines, error = await follow_lines(server, answers)
    assert (lines, error) == (numbered(1, 5), None)
    assert len(follow_calls(server)) == 2


async def test_a_server_that_sends_no_eof_ends_after_one_more_look(follow_lines: Follow, server: FakeServer) -> None:
    answers = [Connection(batch(numbered(1, 3)), clean=True)]
    lines, error = await follow_lines(server, answers)
    assert (lines, error) == (numbered(1, 3), None)
    assert len(follow_calls(server)) == 2  # the second brought nothing new: the process is done


async def test_eof_ends_the_follow_without_another_request(follow_lines: Follow, server: FakeServer) -> None:
    lines, error = await follow_lines(server, [Connection(batch(["x"]), EOF, clean=True)])
    assert (lines, error) == (["x"], None)
    assert len(follow_calls(server)) == 1


async def test_an_unknown_process_on_reconnect_is_raised_at_once(follow_lines: Follow, server: FakeServer) -> None:
    answers: list[Connection | httpx.Response] = [
        Connection(batch(numbered(1, 3))),
        jsonr(404, {"error": "process 7 not found", "code": "NOT_FOUND"}),
    ]
    lines, error = await follow_lines(server, answers)
    assert lines == numbered(1, 3)
    assert isinstance(error, RemoteAPIError) and error.status_code == 404
    assert "process 7 not found" in str(error)
    assert len(follow_calls(server)) == 2


async def test_a_sandbox_gone_on_reconnect_is_raised_at_once(follow_lines: Follow, server: FakeServer) -> None:
    answers: list[Connection | httpx.Response] = [
        Connection(batch(numbered(1, 3))),
        jsonr(404, {"message": "sandbox sbx-1 is terminated", "code": "NOT_FOUND"}),
    ]
    lines, error = await follow_lines(server, answers)
    assert lines == numbered(1, 3)
    assert isinstance(error, RemoteAPIError) and "terminated" in str(error)
    assert len(follow_calls(server)) == 2
    answers = [
        Connection(batch(numbered(1, 3))),
        jsonr(404, {"message": "no sandbox sbx-1", "code": "SANDBOX_NOT_FOUND"}),
    ]
    server.requests.clear()
    lines, error = await follow_lines(server, answers)
    assert isinstance(error, SandboxNotFoundError)


async def test_a_sandbox_that_stays_suspended_is_raised(
    follow_lines: Follow, server: FakeServer, sleeps: list[float]
) -> None:
    # Suspended without auto_resume: the open's own replays run out, and their answer is raised.
    not_ready = jsonr(503, {"message": "sandbox sbx-1 is suspended, not running", "code": "SANDBOX_NOT_READY"})
    lines, error = await follow_lines(server, [Connection(batch(["a"])), not_ready])
    assert lines == ["a"]
    assert isinstance(error, RemoteAPIError) and error.code == "SANDBOX_NOT_READY"


async def test_the_budget_of_reconnects_without_progress_is_bounded(
    follow_lines: Follow, server: FakeServer, sleeps: list[float]
) -> None:
    # Every connection breaks before bringing anything new.
    lines, error = await follow_lines(server, [Connection(batch(["a", "b"]))])
    assert lines == ["a", "b"]
    assert isinstance(error, SandboxConnectionError) and "peer closed connection" in str(error)
    assert len(follow_calls(server)) == 1 + FOLLOW_RECONNECTS
    assert sleeps == list(FOLLOW_BACKOFF_SECS)


class Refused:
    """A connection that cannot be made."""

    def response(self, asynchronous: bool) -> httpx.Response:
        raise httpx.ConnectError("connection refused")


async def test_connections_that_cannot_be_opened_spend_the_budget(
    follow_lines: Follow, server: FakeServer, sleeps: list[float]
) -> None:
    # After the first break the server cannot be reached at all: each open tries GET_ATTEMPTS
    # times (its own retries), and each failed open counts against the budget.
    lines, error = await follow_lines(server, [Connection(batch(["a"])), Refused()])
    assert lines == ["a"]
    assert isinstance(error, SandboxConnectionError) and "connection refused" in str(error)
    assert len(follow_calls(server)) == 1 + FOLLOW_RECONNECTS * GET_ATTEMPTS
    open_retries = [0.2 * 2**i for i in range(GET_ATTEMPTS - 1)]  # _send's, within each open
    assert sleeps == [s for pause in FOLLOW_BACKOFF_SECS for s in [pause, *open_retries]]


async def test_progress_renews_the_budget(follow_lines: Follow, server: FakeServer) -> None:
    # A flaky link: each connection brings one new line before it breaks, far more often than
    # the budget of reconnects without progress.
    total = 3 * FOLLOW_RECONNECTS
    answers: list[Connection | httpx.Response] = [Connection(batch(numbered(1, n))) for n in range(1, total + 1)]
    answers.append(Connection(batch(numbered(1, total)), EOF, clean=True))
    lines, error = await follow_lines(server, answers)
    assert (lines, error) == (numbered(1, total), None)


def test_an_idle_stream_is_not_opened_again(server: FakeServer, client: SandboxClient) -> None:
    # Silence past stream_idle_timeout means a dead agent: raised, not retried.
    def silent(request: httpx.Request) -> httpx.Response:
        def body() -> Iterator[bytes]:
            yield batch(["a"])
            raise httpx.ReadTimeout("timed out")

        return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=body())

    server.on("GET", FOLLOW, silent)
    sandbox = Sandbox(client, info())
    received = []
    with pytest.raises(SandboxTimeoutError):
        for event in sandbox.follow_output(7):
            received.append(event.line)
    assert received == ["a"]
    assert len(follow_calls(server)) == 1


def test_a_follow_stopped_early_opens_nothing_more(server: FakeServer, client: SandboxClient) -> None:
    script(server, FOLLOW, [Connection(batch(numbered(1, 3)))], asynchronous=False)
    sandbox = Sandbox(client, info())
    for event in sandbox.follow_output(7):
        assert event.line == "line1"
        break
    assert len(follow_calls(server)) == 1


# -- FollowResume alone ------------------------------------------------------------------------


def runs(*groups: list[str]) -> list[tuple[list[str], None, str]]:
    return [(group, None, "stdout") for group in groups]


def test_follow_resume_adds_up_what_batches_say_was_dropped() -> None:
    follow = FollowResume()
    follow.note_block(batch(["a"], event_id=3, dropped=2) + batch(["b"], event_id=4))
    follow.note_block(batch(["c"], event_id=9, dropped=4))
    # A line that reads like the key is escaped inside its JSON string: no count.
    follow.note_block(batch(['"dropped":5'], event_id=10))
    assert follow.dropped == 6
    assert follow.cursor == "10"


def test_follow_resume_skips_what_was_handed_out_by_count() -> None:
    follow = FollowResume()
    assert [r[0] for r in follow.fresh(runs(["a", "b"], ["c"]))] == [["a", "b"], ["c"]]
    assert follow.delivered == 3
    assert follow.broke()
    assert follow.pause() == FOLLOW_BACKOFF_SECS[0]
    # The replay: whole runs skipped, one cut, then new lines.
    assert [r[0] for r in follow.fresh(runs(["a"], ["b", "c", "d"], ["e"]))] == [["d"], ["e"]]
    assert follow.delivered == 5
    assert follow.reconnects == 1
    assert not follow.ended(eof=False)  # cut without eof: open again, at once
    assert follow.pause() == 0.0
    assert follow.ended(eof=False)  # nothing new, no eof again: a server without eof, done
    batches = FollowResume()
    list(batches.fresh_batches([OutputBatch(["a", "b"], None, "stdout")]))
    batches.broke()
    batches.pause()
    got = list(batches.fresh_batches([OutputBatch(["a"], None, "stdout"), OutputBatch(["b", "c"], None, "stderr")]))
    assert [(b.lines, b.stream) for b in got] == [(["c"], "stderr")]


def test_follow_resume_budget_counts_breaks_without_new_lines() -> None:
    follow = FollowResume()
    pauses = []
    for _ in range(FOLLOW_RECONNECTS):
        assert follow.broke()
        pauses.append(follow.pause())
    assert pauses == list(FOLLOW_BACKOFF_SECS)
    assert not follow.broke()
    # A new line renews it.
    follow = FollowResume()
    for _ in range(3 * FOLLOW_RECONNECTS):
        assert follow.broke()
        follow.pause()
        list(follow.fresh(runs([f"l{follow.delivered}"] * (follow.delivered + 1))))
