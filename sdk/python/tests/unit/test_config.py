"""Configuration: explicit arguments > ALCOVE_* environment > defaults, read at build time."""

from __future__ import annotations

import httpx
import pytest

from alcove.sandbox import AsyncSandboxClient, SandboxClient
from alcove.sandbox._config import resolve_config
from fakes import FakeServer, info_json, jsonr


def test_defaults() -> None:
    cfg = resolve_config()
    assert cfg.api_url == "http://localhost:8900"
    assert cfg.api_key is None
    assert cfg.namespace == "default"
    assert cfg.timeout_secs == 300.0


def test_environment_is_read_when_the_client_is_built(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ALCOVE_API_URL", "http://127.0.0.1:9999/")
    monkeypatch.setenv("ALCOVE_API_KEY", "env-key")
    client = SandboxClient()
    assert client.api_url == "http://127.0.0.1:9999"
    assert client._config.api_key == "env-key"


def test_arguments_win_over_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ALCOVE_API_URL", "http://127.0.0.1:9999")
    monkeypatch.setenv("ALCOVE_API_KEY", "env-key")
    cfg = resolve_config(api_url="http://localhost:1234", api_key="arg-key", namespace="team", timeout=5)
    assert (cfg.api_url, cfg.api_key, cfg.namespace, cfg.timeout_secs) == (
        "http://localhost:1234",
        "arg-key",
        "team",
        5.0,
    )


def test_empty_environment_values_count_as_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ALCOVE_API_URL", "")
    monkeypatch.setenv("ALCOVE_API_KEY", " ")
    cfg = resolve_config()
    assert cfg.api_url == "http://localhost:8900"
    assert cfg.api_key is None


@pytest.mark.parametrize(
    "kwargs",
    [{"api_url": "localhost:8900"}, {"namespace": ""}, {"namespace": "a/b"}, {"namespace": ".."}, {"namespace": "a b"},
     {"timeout": 0}, {"timeout": -1}],
)
def test_bad_configuration_is_a_value_error(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        resolve_config(**kwargs)


def test_every_kind_of_call_has_a_read_deadline() -> None:
    cfg = resolve_config(timeout=30)
    assert cfg.request_timeout().read == 30
    # Event streams are bounded by silence (the agent's keep-alives break it every 15 s).
    events = cfg.event_stream_timeout()
    assert events.read == 120.0
    assert events.connect == 10.0
    # File transfers: each read may wait as long as a request.
    assert cfg.transfer_timeout().read == 30
    assert resolve_config(stream_idle_timeout=5).event_stream_timeout().read == 5
    # None is the explicit way to wait forever.
    assert resolve_config(stream_idle_timeout=None).event_stream_timeout().read is None


@pytest.mark.parametrize("idle", [0, -1, True, "10"])
def test_bad_stream_idle_timeout_is_a_value_error(idle: object) -> None:
    with pytest.raises(ValueError, match="stream_idle_timeout"):
        resolve_config(stream_idle_timeout=idle)


def test_namespace_and_api_key_reach_the_wire(sleeps: list[float]) -> None:
    server = FakeServer().on("GET", "/v1/namespaces/team/sandboxes/sbx-1", jsonr(200, info_json()))
    client = SandboxClient(
        api_url="http://localhost:8900", api_key="k1", namespace="team", transport=httpx.MockTransport(server)
    )
    client.get("sbx-1")
    request = server.requests[0]
    assert str(request.url) == "http://localhost:8900/v1/namespaces/team/sandboxes/sbx-1"
    assert request.headers["authorization"] == "Bearer k1"
    assert request.headers["user-agent"].startswith("alcove-python-sdk/")


def test_no_authorization_header_without_a_key(server: FakeServer, client: SandboxClient) -> None:
    server.on("GET", "/v1/namespaces/default/sandboxes", jsonr(200, {"sandboxes": []}))
    client.list()
    assert "authorization" not in server.requests[0].headers


async def test_async_client_reads_the_same_configuration(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ALCOVE_API_URL", "http://127.0.0.1:7000")
    async with AsyncSandboxClient(api_key="x") as client:
        assert client.api_url == "http://127.0.0.1:7000"
        assert client._config.api_key == "x"
