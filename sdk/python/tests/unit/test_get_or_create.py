"""``get_or_create``: one sandbox per name, however many callers race for it."""

from __future__ import annotations

import json

import httpx
import pytest

from alcove.sandbox import AsyncSandboxClient, SandboxClient, SandboxError, SandboxStatus
from fakes import FakeServer, info_json, jsonr

BASE = "/v1/namespaces/default/sandboxes"
BY_NAME = f"{BASE}/my-env"
SBX = f"{BASE}/sbx-1"


# Responders, not shared responses: a response's body can be read only once.
def not_found(_request: httpx.Request) -> httpx.Response:
    return jsonr(404, {"message": "sandbox my-env not found", "code": "SANDBOX_NOT_FOUND"})


def taken(_request: httpx.Request) -> httpx.Response:
    return jsonr(409, {"message": "name 'my-env' is taken", "code": "NAME_TAKEN"})


def created(_request: httpx.Request) -> httpx.Response:
    return jsonr(200, {"sandbox_id": "sbx-1", "status": "running", "sandbox": info_json(name="my-env")})


def test_a_free_name_is_created_with_the_given_configuration(server: FakeServer, client: SandboxClient) -> None:
    server.on("GET", BY_NAME, not_found)
    server.on("POST", BASE, created)
    with client.get_or_create("my-env", cpus=2.0, memory_mb=4096, secret_names=["K"]) as sandbox:
        assert sandbox.bind_outcome == "created" and sandbox.sandbox_id == "sbx-1"
    body = json.loads(server.calls("POST", BASE)[0].content)
    assert body["name"] == "my-env" and body["resources"] == {"cpus": 2.0, "memory_mb": 4096}
    assert body["secret_names"] == ["K"]
    # The name is meant to be used again: leaving the block does not delete the sandbox.
    assert server.calls("DELETE") == []


def test_a_running_holder_is_attached_and_the_configuration_ignored(
    server: FakeServer, client: SandboxClient
) -> None:
    server.on("GET", BY_NAME, jsonr(200, info_json(name="my-env")))
    sandbox = client.get_or_create("my-env", cpus=4.0)
    assert sandbox.bind_outcome == "attached" and sandbox.sandbox_id == "sbx-1"
    assert server.calls("POST") == []


def test_the_loser_of_a_create_race_attaches_to_the_winner(server: FakeServer, client: SandboxClient) -> None:
    server.on("GET", BY_NAME, [not_found, jsonr(200, info_json(name="my-env"))])
    server.on("POST", BASE, taken)
    sandbox = client.get_or_create("my-env")
    assert sandbox.bind_outcome == "attached"
    assert len(server.calls("POST", BASE)) == 1 and len(server.calls("GET", BY_NAME)) == 2


def test_a_holder_still_starting_is_waited_for_at_growing_intervals(
    server: FakeServer, client: SandboxClient, sleeps: list[float]
) -> None:
    server.on("GET", BY_NAME, jsonr(200, info_json(name="my-env", status="pending", sandbox_url=None)))
    server.on(
        "GET",
        SBX,
        [
            jsonr(200, info_json(name="my-env", status="pending", sandbox_url=None)),
            jsonr(200, info_json(name="my-env", status="pending", sandbox_url=None)),
            jsonr(200, info_json(name="my-env")),
        ],
    )
    sandbox = client.get_or_create("my-env")
    assert sandbox.bind_outcome == "attached" and sandbox.info().status == SandboxStatus.RUNNING
    assert sleeps == [0.02, 0.04, 0.08]


def test_a_suspended_holder_is_resumed_unless_asked_not_to(server: FakeServer, client: SandboxClient) -> None:
    server.on("GET", BY_NAME, lambda _r: jsonr(200, info_json(name="my-env", status="suspended")))
    server.on("POST", f"{SBX}/resume", jsonr(200, info_json(name="my-env")))
    server.on("GET", SBX, jsonr(200, info_json(name="my-env")))
    kept = client.get_or_create("my-env", resume=False)
    assert kept.bind_outcome == "attached" and server.calls("POST") == []
    resumed = client.get_or_create("my-env")
    assert resumed.bind_outcome == "resumed"
    assert len(server.calls("POST", f"{SBX}/resume")) == 1


def test_a_suspending_holder_is_resumed_once_it_has_suspended(
    server: FakeServer, client: SandboxClient, sleeps: list[float]
) -> None:
    server.on("GET", BY_NAME, jsonr(200, info_json(name="my-env", status="suspending")))
    server.on(
        "GET", SBX, [jsonr(200, info_json(name="my-env", status="suspended")), jsonr(200, info_json(name="my-env"))]
    )
    server.on("POST", f"{SBX}/resume", jsonr(200, info_json(name="my-env")))
    assert client.get_or_create("my-env").bind_outcome == "resumed"
    assert sleeps[:1] == [0.02]


def test_a_holder_that_ends_while_looked_at_frees_the_name(server: FakeServer, client: SandboxClient) -> None:
    server.on("GET", BY_NAME, [jsonr(200, info_json(name="my-env", status="pending", sandbox_url=None)), not_found])
    server.on("GET", SBX, jsonr(200, info_json(name="my-env", status="failed", sandbox_url=None)))
    server.on("POST", BASE, created)
    assert client.get_or_create("my-env").bind_outcome == "created"


def test_a_name_that_stays_held_but_unattachable_is_an_error(server: FakeServer, client: SandboxClient) -> None:
    server.on("GET", BY_NAME, not_found)
    server.on("POST", BASE, taken)
    with pytest.raises(SandboxError, match="stayed held after 5 attempts"):
        client.get_or_create("my-env")
    assert len(server.calls("POST", BASE)) == 5


def test_bad_arguments_are_refused_before_any_request(server: FakeServer, client: SandboxClient) -> None:
    with pytest.raises(ValueError, match="name"):
        client.get_or_create("")
    with pytest.raises(ValueError, match="cpus"):
        client.get_or_create("my-env", cpus=0)
    assert server.requests == []


def test_an_id_is_not_taken_for_a_name(server: FakeServer, client: SandboxClient) -> None:
    # An id is looked up like a name; a sandbox found by its id is not the name's holder.
    server.on("GET", SBX, jsonr(200, info_json(name="other")))
    with pytest.raises(ValueError, match="is the id of a sandbox"):
        client.get_or_create("sbx-1")
    assert server.calls("POST") == []


async def test_async_callers_converge_the_same_way(server: FakeServer, aclient: AsyncSandboxClient) -> None:
    server.on("GET", BY_NAME, [not_found, lambda _r: jsonr(200, info_json(name="my-env"))])
    server.on("POST", BASE, [created, taken])
    first = await aclient.get_or_create("my-env")
    second = await aclient.get_or_create("my-env")
    assert (first.bind_outcome, second.bind_outcome) == ("created", "attached")
    assert first.sandbox_id == second.sandbox_id


def test_handles_from_elsewhere_have_no_outcome(server: FakeServer, client: SandboxClient) -> None:
    server.on("GET", SBX, jsonr(200, info_json()))
    assert client.connect("sbx-1").bind_outcome is None
