"""run() and follow_*() of both clients over bodies that arrive in awkward pieces or break.

The decoders themselves are tested in test_sse.py; here the bytes come through httpx (a mock
transport, or a real socket on 127.0.0.1) into ``Sandbox`` and ``AsyncSandbox``.
"""

from __future__ import annotations

import copy
import json
import pickle
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from alcove.sandbox import (
    AsyncSandbox,
    AsyncSandboxClient,
    Sandbox,
    SandboxClient,
    SandboxConnectionError,
    SandboxTimeoutError,
)
from alcove.sandbox._protocol import iter_output_events
from alcove.sandbox.models import OutputEvent, SandboxInfo
from fakes import FakeServer, info_json
from test_timeouts import TcpServer, connect, read_head

RUN = "/api/v1/processes/run"
FOLLOW = "/api/v1/processes/7/output/follow"
LINES = ["first", "", "é😀 split anywhere", "tab\there", "last"]


def event(name: str, data: dict) -> bytes:
    return b"event: %s\ndata: %s\n\n" % (
        name.encode(),
        json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode(),
    )


def body(crlf: bool = False) -> bytes:
    events = [event("started", {"pid": 7, "started_at": 1767225600123})]
    for i, line in enumerate(LINES):
        stream = "stderr" if i == 3 else "stdout"
        events.append(event("output", {"line": line, "timestamp": 1767225600131, "stream": stream}))
        events.append(b": keep-alive\n\n")
    events.append(event("exit", {"exit_code": 0, "signal": None, "oom_killed": False, "reason": "exited"}))
    data = b"".join(events)
    return data.replace(b"\n", b"\r\n") if crlf else data


def pieces(data: bytes, size: int) -> Iterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]


async def apieces(data: bytes, size: int) -> AsyncIterator[bytes]:
    for piece in pieces(data, size):
        yield piece


def stream_response(content) -> httpx.Response:
    return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=content)


def connect_info() -> SandboxInfo:
    return SandboxInfo.model_validate(info_json())


STDOUT = "\n".join(line for i, line in enumerate(LINES) if i != 3)


@pytest.mark.parametrize("size", [1, 2, 3, 7, 64])
@pytest.mark.parametrize("crlf", [False, True])
def test_run_and_follow_over_any_pieces(server: FakeServer, client: SandboxClient, size: int, crlf: bool) -> None:
    sandbox = connect(server, client)
    server.on("POST", RUN, lambda request: stream_response(pieces(body(crlf), size)))
    server.on("GET", FOLLOW, lambda request: stream_response(pieces(body(crlf), size)))
    result = sandbox.run("x")
    assert (result.stdout, result.stderr, result.exit_code, result.pid) == (STDOUT, "tab\there", 0, 7)
    assert [(e.line, e.stream) for e in sandbox.follow_output(7)] == [
        (line, "stderr" if i == 3 else "stdout") for i, line in enumerate(LINES)
    ]


@pytest.mark.parametrize("size", [1, 3, 64])
async def test_async_run_and_follow_over_any_pieces(server: FakeServer, size: int) -> None:
    async with AsyncSandboxClient(transport=httpx.MockTransport(server)) as client:
        sandbox = AsyncSandbox(client, connect_info())
        server.on("POST", RUN, lambda request: stream_response(apieces(body(), size)))
        server.on("GET", FOLLOW, lambda request: stream_response(apieces(body(), size)))
        result = await sandbox.run("x")
        assert (result.stdout, result.stderr, result.exit_code) == (STDOUT, "tab\there", 0)
        assert [e.line async for e in sandbox.follow_output(7)] == LINES


def batched_body() -> bytes:
    """A follow body as the agent sends it when asked for batches (what the SDKs ask for)."""
    lines = [f"line {i}" for i in range(300)]
    batches = [
        event("output_batch", {"stream": "stdout", "timestamp": 1767225600131, "lines": lines[:100]}),
        event("output_batch", {"stream": "stderr", "timestamp": 1767225600131, "lines": ["to stderr"]}),
        b": keep-alive\n\n",
        event("output_batch", {"stream": "stdout", "timestamp": 1767225600999, "lines": lines[100:]}),
        event("output", {"line": "unbatched", "timestamp": 1767225601000, "stream": "stdout"}),
        event("eof", {}),
    ]
    return b"".join(batches)


def test_a_followed_event_behaves_as_the_output_event_of_its_fields(server: FakeServer, client: SandboxClient) -> None:
    # follow_* make a private subclass without calling OutputEvent (see models._FollowedEvent):
    # to a caller it must be an OutputEvent in every way but its exact type.
    server.on("GET", FOLLOW, lambda request: stream_response(pieces(batched_body(), 4096)))
    followed = list(connect(server, client).follow_output(7))[0]
    plain = OutputEvent(followed.line, followed.timestamp, followed.stream)
    assert isinstance(followed, OutputEvent) and type(followed) is not OutputEvent
    assert followed == plain and plain == followed and not (followed != plain)
    assert followed != OutputEvent(followed.line + "x", followed.timestamp, followed.stream)
    assert repr(followed) == repr(plain) and followed.model_dump() == plain.model_dump()
    assert followed.continued is False
    for copied in (pickle.loads(pickle.dumps(followed)), copy.copy(followed), copy.deepcopy(followed)):
        assert copied == plain
    with pytest.raises(TypeError):
        hash(followed)
    with pytest.raises(AttributeError):
        followed.other = 1  # type: ignore[attr-defined]  # slots only, as OutputEvent


@pytest.mark.parametrize("size", [1, 7, 4096])
async def test_both_follows_give_the_decoders_events(server: FakeServer, client: SandboxClient, size: int) -> None:
    # follow_* make their events themselves (from the decoder's runs): the same as the decoder's.
    data = batched_body()
    want = list(iter_output_events([data], None))
    assert len(want) == 302
    sandbox = connect(server, client)
    server.on("GET", FOLLOW, lambda request: stream_response(pieces(data, size)))
    got = list(sandbox.follow_output(7))
    assert got == want and all(isinstance(e, OutputEvent) for e in got)
    assert [repr(e) for e in got] == [repr(e) for e in want]
    async with AsyncSandboxClient(transport=httpx.MockTransport(server)) as aclient:
        asandbox = AsyncSandbox(aclient, connect_info())
        server.on("GET", FOLLOW, lambda request: stream_response(apieces(data, size)))
        agot = [e async for e in asandbox.follow_output(7)]
        assert agot == want and all(isinstance(e, OutputEvent) for e in agot)
        assert [repr(e) for e in agot] == [repr(e) for e in want]


async def test_a_follow_stopped_early_closes_its_response(server: FakeServer, client: SandboxClient) -> None:
    def endless() -> Iterator[bytes]:
        while True:
            yield event("output_batch", {"stream": "stdout", "timestamp": 1767225600131, "lines": ["a", "b"]})

    async def aendless() -> AsyncIterator[bytes]:
        while True:
            yield event("output_batch", {"stream": "stdout", "timestamp": 1767225600131, "lines": ["a", "b"]})

    responses: list[httpx.Response] = []

    def respond(content) -> httpx.Response:
        responses.append(stream_response(content))
        return responses[-1]

    sandbox = connect(server, client)
    server.on("GET", FOLLOW, lambda request: respond(endless()))
    for seen, _ in enumerate(sandbox.follow_output(7)):  # the generator goes with the loop
        if seen == 2:
            break
    assert responses[-1].is_closed
    async with AsyncSandboxClient(transport=httpx.MockTransport(server)) as aclient:
        asandbox = AsyncSandbox(aclient, connect_info())
        server.on("GET", FOLLOW, lambda request: respond(aendless()))
        events = asandbox.follow_output(7)
        async for e in events:
            if e.line == "b":
                break
        assert not responses[-1].is_closed
        await events.aclose()  # type: ignore[attr-defined]  # an async generator
        assert responses[-1].is_closed


def breaks_after(data: bytes) -> Iterator[bytes]:
    yield data
    raise httpx.ReadError("connection reset by peer")


def test_a_stream_broken_midway_raises_a_connection_error(server: FakeServer, client: SandboxClient) -> None:
    # follow_output opens the stream again (test_follow_resume.py); one that breaks each time
    # without a new line raises once its reconnects are spent.
    sandbox = connect(server, client)
    half = body()[: len(body()) // 2]
    server.on("POST", RUN, lambda request: stream_response(breaks_after(half)))
    server.on("GET", FOLLOW, lambda request: stream_response(breaks_after(half)))
    with pytest.raises(SandboxConnectionError, match="connection reset"):
        sandbox.run("x")
    received = []
    with pytest.raises(SandboxConnectionError, match="connection reset"):
        for e in sandbox.follow_output(7):
            received.append(e.line)
    assert received == LINES[:2]  # what arrived before the break


async def test_async_stream_broken_midway_raises_a_connection_error(server: FakeServer, sleeps: list[float]) -> None:
    # follow_output opens the stream again (test_follow_resume.py); one that breaks each time
    # without a new line raises once its reconnects are spent.
    async def breaks() -> AsyncIterator[bytes]:
        yield body()[: len(body()) // 2]
        raise httpx.ReadError("connection reset by peer")

    async with AsyncSandboxClient(transport=httpx.MockTransport(server)) as client:
        sandbox = AsyncSandbox(client, connect_info())
        server.on("GET", FOLLOW, lambda request: stream_response(breaks()))
        received = []
        with pytest.raises(SandboxConnectionError, match="connection reset"):
            async for e in sandbox.follow_output(7):
                received.append(e.line)
        assert received == LINES[:2]


# -- real sockets -------------------------------------------------------------------------------


def chunked(conn: socket.socket, data: bytes) -> None:
    conn.sendall(b"%x\r\n%s\r\n" % (len(data), data))


def two_lines_then_silence(conn: socket.socket, stop: threading.Event) -> None:
    """A follow stream whose agent stops after two lines, the second cut in the middle of "é"."""
    read_head(conn)
    conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n")
    second = event("output", {"line": "é", "timestamp": 1, "stream": "stdout"})
    cut = second.index("é".encode()) + 1
    chunked(conn, event("output", {"line": "one", "timestamp": 1, "stream": "stdout"}) + second[:cut])
    time.sleep(0.05)
    chunked(conn, second[cut:])
    stop.wait()


def closes_midway(conn: socket.socket, stop: threading.Event) -> None:
    read_head(conn)
    conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n")
    chunked(conn, event("output", {"line": "one", "timestamp": 1, "stream": "stdout"}))
    conn.sendall(b"100\r\nevent: out")  # a chunk announced longer than what comes before the close
    conn.close()


@pytest.fixture
def silent_after_two() -> Iterator[TcpServer]:
    server = TcpServer(two_lines_then_silence)
    yield server
    server.close()


@pytest.fixture
def closing() -> Iterator[TcpServer]:
    server = TcpServer(closes_midway)
    yield server
    server.close()


def test_silence_after_some_output_raises_the_idle_timeout(silent_after_two: TcpServer) -> None:
    with SandboxClient(api_url=f"http://127.0.0.1:{silent_after_two.port}", stream_idle_timeout=0.5) as client:
        received = []
        with pytest.raises(SandboxTimeoutError) as err:
            for e in Sandbox(client, silent_after_two.info).follow_output(7):
                received.append(e.line)
    assert received == ["one", "é"]  # both delivered as they arrived, before the timeout
    assert err.value.parameter == "stream_idle_timeout"


async def test_async_silence_after_some_output_raises_the_idle_timeout(silent_after_two: TcpServer) -> None:
    url = f"http://127.0.0.1:{silent_after_two.port}"
    async with AsyncSandboxClient(api_url=url, stream_idle_timeout=0.5) as client:
        received = []
        with pytest.raises(SandboxTimeoutError) as err:
            async for e in AsyncSandbox(client, silent_after_two.info).follow_output(7):
                received.append(e.line)
    assert received == ["one", "é"]
    assert err.value.parameter == "stream_idle_timeout"


def test_a_connection_closed_midway_raises_a_connection_error(closing: TcpServer, sleeps: list[float]) -> None:
    with SandboxClient(api_url=f"http://127.0.0.1:{closing.port}") as client:
        sandbox = Sandbox(client, closing.info)
        with pytest.raises(SandboxConnectionError):
            sandbox.run("x")
        received = []
        with pytest.raises(SandboxConnectionError):
            for e in sandbox.follow_output(7):
                received.append(e.line)
        assert received == ["one"]
