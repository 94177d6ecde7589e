"""Fixtures shared by the unit tests (no server needed: httpx.MockTransport + fakes.FakeServer)."""

from __future__ import annotations

import httpx
import pytest

from alcove.sandbox import AsyncSandboxClient, SandboxClient
from alcove.sandbox import async_client as async_client_module
from alcove.sandbox import client as client_module
from fakes import FakeServer


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
