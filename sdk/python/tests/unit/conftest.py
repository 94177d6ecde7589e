"""Fixtures shared by the unit tests.

No Alcove server is needed: HTTP goes to ``fakes.FakeServer`` through httpx.MockTransport, and
WebSockets (PTY, tunnels) to ``ws_fakes.FakeProxy``, a real server on 127.0.0.1.
"""

from __future__ import annotations

import httpx
import pytest

from alcove.sandbox import AsyncSandboxClient, SandboxClient
from alcove.sandbox import async_client as async_client_module
from alcove.sandbox import client as client_module
from fakes import FakeServer
from ws_fakes import EchoServer, FakeProxy


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ALCOVE_API_URL", raising=False)
    monkeypatch.delenv("ALCOVE_API_KEY", raising=False)


@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Skip the polling waits of both clients, recording their lengths."""
    recorded: list[float] = []

    async def fake_async_sleep(seconds: float) -> None:
        recorded.append(seconds)

    monkeypatch.setattr(client_module, "_sleep", recorded.append)
    monkeypatch.setattr(async_client_module, "_sleep", fake_async_sleep)
    return recorded


@pytest.fixture
def server() -> FakeServer:
    return FakeServer()


@pytest.fixture
def client(server: FakeServer, sleeps: list[float]) -> SandboxClient:
    with SandboxClient(transport=httpx.MockTransport(server)) as c:
        yield c


@pytest.fixture
async def aclient(server: FakeServer, sleeps: list[float]) -> AsyncSandboxClient:
    async with AsyncSandboxClient(transport=httpx.MockTransport(server)) as c:
        yield c


@pytest.fixture
def proxy() -> FakeProxy:
    fake = FakeProxy()
    yield fake
    fake.close()


@pytest.fixture
def echo() -> EchoServer:
    server = EchoServer()
    yield server
    server.stop()
