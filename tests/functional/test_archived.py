"""Archived sandboxes: an ended sandbox leaves the live list for `/archived-sandboxes`, where it
keeps what it was (status, reason, resources, image, name, times) until `--archive-ttl` runs
out; pages go newest first by cursor; the official SDK and Alcove's read it
(docs/protocol/control-plane.md, Archived sandboxes)."""

from __future__ import annotations

import time
import uuid

import httpx
import pytest
from alcove.sandbox import ArchivedSandboxInfo, ArchivedSandboxPage, SandboxClient, SandboxNotFoundError
from tensorlake import sandbox as tl

from framework.host import owned_resources
from framework.server import AlcoveServer

BASES = ["/v1/namespaces/default", ""]


def wait_for(what: str, check, timeout: float = 60.0, every: float = 0.25):
    """Polls `check` until it returns something truthy (bounded: fails after `timeout`)."""
    deadline = time.monotonic() + timeout
    while True:
        got = check()
        if got:
            return got
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {timeout:g}s")
        time.sleep(every)


def archived_ids(server: AlcoveServer, base: str = "/v1/namespaces/default", **query) -> list[str]:
    resp = server.api("GET", f"{base}/archived-sandboxes", params={"limit": 1000, **query})
    assert resp.status_code == 200, resp.text
    return [s["id"] for s in resp.json()["sandboxes"]]


def live_ids(server: AlcoveServer, base: str = "/v1/namespaces/default") -> list[str]:
    return [s["id"] for s in server.api("GET", f"{base}/sandboxes").json()["sandboxes"]]


def test_a_deleted_sandbox_moves_to_the_archive_with_what_it_was(server, client):
    created = client.create(name="archived-env", cpus=1.0, memory_mb=2048, disk_mb=4096)
    sandbox_id = created.sandbox_id
    assert sandbox_id in live_ids(server)
    assert server.api("GET", f"/archived-sandboxes/{sandbox_id}").status_code == 404, "live: not archived"
    client.delete(sandbox_id)

    # Out of the live list, in the archive; still answered by id (clients poll it to see it end).
    for base in BASES:
        assert sandbox_id not in live_ids(server, base)
        assert sandbox_id in archived_ids(server, base)
    polled = server.api("GET", f"/sandboxes/{sandbox_id}").json()
    assert polled["status"] == "terminated"

    for base in BASES:
        resp = server.api("GET", f"{base}/archived-sandboxes/{sandbox_id}")
        assert resp.status_code == 200, resp.text
        info = resp.json()
        assert info["id"] == sandbox_id
        assert "sandbox_id" not in info, "the official SDK refuses a body with both"
        assert info["namespace"] == "default"
        assert info["status"] == "terminated"
        assert info["termination_reason"] == "deleted"
        assert info["name"] == "archived-env"
        assert info["image"] == "alcove/debian"
        assert info["resources"] == {"cpus": 1.0, "memory_mb": 2048, "disk_mb": 4096, "ephemeral_disk_mb": 4096}
        assert info["created_at"] <= info["terminated_at"] == info["archived_at"]
        assert "sandbox_url" not in info
        # The same sandbox as GET /sandboxes/{id} answers, plus archived_at.
        assert {k: v for k, v in info.items() if k != "archived_at"} == polled

    # Another namespace's archive is its own; a name no longer resolves; unknown ids are 404.
    assert server.api("GET", f"/v1/namespaces/other/archived-sandboxes/{sandbox_id}").status_code == 404
    assert sandbox_id not in archived_ids(server, "/v1/namespaces/other")
    for missing in ("archived-env", str(uuid.uuid4()), "not-an-id"):
        resp = server.api("GET", f"/archived-sandboxes/{missing}")
        assert resp.status_code == 404, resp.text
        assert resp.json()["code"] == "NOT_FOUND"

    # Alcove's Python SDK.
    archived = client.get_archived(sandbox_id)
    assert isinstance(archived, ArchivedSandboxInfo)
    assert (archived.status, archived.termination_reason, archived.name) == ("terminated", "deleted", "archived-env")
    assert archived.resources is not None and archived.resources.memory_mb == 2048
    assert archived.archived_at == archived.terminated_at
    assert archived.created_at is not None and archived.created_at <= archived.archived_at
    page = client.list_archived(limit=1000)
    assert isinstance(page, ArchivedSandboxPage)
    assert sandbox_id in [s.sandbox_id for s in page.sandboxes]
    with pytest.raises(SandboxNotFoundError):
        client.get_archived(str(uuid.uuid4()))


def test_a_timed_out_sandbox_is_archived_with_reason_timeout(server, client):
    created = client.create(timeout_secs=2)
    sandbox_id = created.sandbox_id
    wait_for(
        "the sandbox to time out",
        lambda: server.api("GET", f"/sandboxes/{sandbox_id}").json()["status"] == "terminated",
    )
    assert sandbox_id not in live_ids(server)
    # The reaper records the end before it tears the sandbox down: wait for that too.
    wait_for("the timed-out sandbox to be torn down", lambda: owned_resources(server.data_dir).is_empty())
    info = server.api("GET", f"/archived-sandboxes/{sandbox_id}").json()
    assert info["status"] == "terminated"
    assert info["termination_reason"] == "timeout"
    assert info["name"] is None
    assert info["timeout_secs"] == 2
    assert info["image"] == "alcove/debian"
    assert info["resources"]["cpus"] == 1.0
    assert info["created_at"] <= info["terminated_at"] == info["archived_at"]


def test_a_sandbox_that_fails_to_start_is_archived_failed(server):
    resp = server.api("POST", "/sandboxes", json={"name": "never-starts", "entrypoint": ["/no/such/program"]})
    assert resp.status_code == 200, resp.text
    created = resp.json()
    assert created["status"] == "failed", created
    sandbox_id = created["sandbox_id"]
    assert sandbox_id not in live_ids(server)
    info = server.api("GET", f"/archived-sandboxes/{sandbox_id}").json()
    assert info["status"] == "failed"
    assert info["termination_reason"] == "startup_failed"
    assert info["name"] == "never-starts"
    assert info["entrypoint"] == ["/no/such/program"]
    assert info["error_details"], info
    # Why it failed, in public terms: no host paths or command lines.
    assert str(server.data_dir) not in info["error_details"]
    assert "runc" not in info["error_details"]
    assert info["created_at"] <= info["terminated_at"] == info["archived_at"]
    # The name is free again while the failed holder stays in the archive.
    again = server.api("POST", "/sandboxes", json={"name": "never-starts"})
    assert again.status_code == 200, again.text
    assert server.api("DELETE", f"/sandboxes/{again.json()['sandbox_id']}").status_code == 200


def _ended_in(server: AlcoveServer, namespace: str, count: int) -> list[str]:
    """`count` sandboxes of `namespace` created and deleted one after the other; their ids
    newest first (the archive's order)."""
    ids = []
    for _ in range(count):
        resp = server.api("POST", f"/v1/namespaces/{namespace}/sandboxes", json={})
        assert resp.status_code == 200, resp.text
        sandbox_id = resp.json()["sandbox_id"]
        assert server.api("DELETE", f"/v1/namespaces/{namespace}/sandboxes/{sandbox_id}").status_code == 200
        ids.append(sandbox_id)
    return ids[::-1]


def _page(server: AlcoveServer, base: str, **query) -> dict:
    resp = server.api("GET", f"{base}/archived-sandboxes", params=query)
    assert resp.status_code == 200, resp.text
    return resp.json()


def test_pages_walk_the_archive_newest_first_both_ways(server):
    namespace = "archive-pages"
    base = f"/v1/namespaces/{namespace}"
    newest_first = _ended_in(server, namespace, 5)

    # Forward from the newest, two at a time.
    first = _page(server, base, limit=2)
    assert [s["id"] for s in first["sandboxes"]] == newest_first[0:2]
    assert first["prev_cursor"] is None
    second = _page(server, base, limit=2, cursor=first["next_cursor"])
    assert [s["id"] for s in second["sandboxes"]] == newest_first[2:4]
    third = _page(server, base, limit=2, cursor=second["next_cursor"], direction="forward")
    assert [s["id"] for s in third["sandboxes"]] == newest_first[4:5]
    assert third["next_cursor"] is None
    assert all(s["archived_at"] >= t["archived_at"] for s, t in zip(first["sandboxes"], first["sandboxes"][1:]))

    # And back.
    back = _page(server, base, limit=2, cursor=third["prev_cursor"], direction="backward")
    assert [s["id"] for s in back["sandboxes"]] == newest_first[2:4]
    back = _page(server, base, limit=2, cursor=back["prev_cursor"], direction="backward")
    assert [s["id"] for s in back["sandboxes"]] == newest_first[0:2]
    assert back["prev_cursor"] is None
    # Backward without a cursor starts at the oldest.
    oldest = _page(server, base, limit=2, direction="backward")
    assert [s["id"] for s in oldest["sandboxes"]] == newest_first[3:5]
    assert oldest["next_cursor"] is None

    # Exact boundaries: a page that ends at the last sandbox has no next cursor.
    whole = _page(server, base, limit=5)
    assert [s["id"] for s in whole["sandboxes"]] == newest_first
    assert (whole["prev_cursor"], whole["next_cursor"]) == (None, None)
    four = _page(server, base, limit=4)
    last = _page(server, base, limit=4, cursor=four["next_cursor"])
    assert [s["id"] for s in last["sandboxes"]] == newest_first[4:]
    assert last["next_cursor"] is None
    assert _page(server, base)["sandboxes"] == whole["sandboxes"], "the default limit (100) holds all five"

    # Alcove's Python SDK walks the same pages.
    with SandboxClient(api_url=server.url, namespace=namespace) as alcove:
        walked, cursor = [], None
        while True:
            page = alcove.list_archived(limit=2, cursor=cursor)
            walked += [s.sandbox_id for s in page.sandboxes]
            if page.next_cursor is None:
                break
            cursor = page.next_cursor
        assert walked == newest_first
        # Backward from where the last page started: the two just newer than that, newest first.
        back = alcove.list_archived(limit=2, cursor=cursor, direction="backward")
        assert [s.sandbox_id for s in back.sandboxes] == newest_first[1:3]

    # The official SDK too (it parses the page and each sandbox with its own models).
    official = tl.SandboxClient.for_localhost(api_url=server.url, namespace=namespace)
    try:
        page = official.list_archived(limit=3)
        assert [s.sandbox_id for s in page.sandboxes] == newest_first[0:3]
        assert page.prev_cursor is None and page.next_cursor is not None
        rest = official.list_archived(limit=3, cursor=page.next_cursor, direction="forward")
        assert [s.sandbox_id for s in rest.sandboxes] == newest_first[3:5]
        assert rest.next_cursor is None
        again = official.list_archived(limit=3, cursor=rest.prev_cursor, direction="backward")
        assert [s.sandbox_id for s in again.sandboxes] == newest_first[0:3]
    finally:
        official.close()


def test_the_official_sdk_reads_an_archived_sandbox(server):
    official = tl.SandboxClient.for_localhost(api_url=server.url)
    try:
        created = official.create(cpus=1.0, memory_mb=1024, name="official-archived")
        official.delete(created.sandbox_id)
        info = official.get_archived(created.sandbox_id)
        assert isinstance(info.value, tl.ArchivedSandboxInfo)
        assert info.sandbox_id == created.sandbox_id
        assert info.status == tl.SandboxStatus.TERMINATED
        assert info.termination_reason == "deleted"
        assert info.name == "official-archived"
        assert info.image == "alcove/debian"
        assert (info.resources.cpus, info.resources.memory_mb) == (1.0, 1024)
        assert info.created_at is not None and info.terminated_at is not None
        assert info.archived_at == info.terminated_at
        listed = official.list_archived()
        assert created.sandbox_id in [s.sandbox_id for s in listed.sandboxes]
        assert created.sandbox_id not in [s.sandbox_id for s in official.list()], "the live list"
        with pytest.raises(tl.SandboxNotFoundError):
            official.get_archived(str(uuid.uuid4()))
    finally:
        official.close()


@pytest.mark.parametrize("base", BASES)
@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"limit": "0"}, "limit"),
        ({"limit": "1001"}, "limit"),
        ({"limit": "-5"}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"cursor": "not-a-cursor!"}, "cursor"),
        ({"cursor": "YTE6MTIzOm5vdC1hbi1pZA"}, "cursor"),
        ({"direction": "sideways"}, "direction"),
    ],
)
def test_bad_queries_are_400_naming_the_field(server, base, query, field):
    resp = server.api("GET", f"{base}/archived-sandboxes", params=query)
    assert resp.status_code == 400, resp.text
    body = resp.json()
    assert body["code"] == "INVALID_ARGUMENT"
    assert body["message"].startswith(f"invalid {field}:"), body["message"]


@pytest.fixture
def short_lived():
    """A server of its own whose archive keeps sandboxes for 3 seconds."""
    srv = AlcoveServer(extra_args=["--archive-ttl", "3s"])
    srv.start()
    try:
        yield srv
    finally:
        leaked = srv.live_sandboxes()
        for sb in leaked:
            srv.api("DELETE", f"/sandboxes/{sb['id']}")
        srv.stop()
        res = owned_resources(srv.data_dir)
        assert not leaked, f"test left sandboxes running: {leaked}"
        assert res.is_empty(), f"host resources left behind: {res}"


def test_archived_sandboxes_expire_after_the_ttl_and_live_ones_never(short_lived):
    srv = short_lived
    with SandboxClient(api_url=srv.url) as client:
        live = client.create(name="outlives-the-ttl")
        ended = client.create()
        client.delete(ended.sandbox_id)
        assert srv.api("GET", f"/archived-sandboxes/{ended.sandbox_id}").status_code == 200
        logs_dir = srv.data_dir / "logs" / ended.sandbox_id
        wait_for("its logs on the host", logs_dir.is_dir, timeout=30)

        # Gone from both routes, and from GET /sandboxes/{id}, once purged.
        wait_for(
            "the archived sandbox to expire",
            lambda: srv.api("GET", f"/archived-sandboxes/{ended.sandbox_id}").status_code == 404,
            timeout=60,
        )
        assert ended.sandbox_id not in archived_ids(srv)
        assert ended.sandbox_id not in archived_ids(srv, "")
        wait_for(
            "the purge to delete its record",
            lambda: srv.api("GET", f"/sandboxes/{ended.sandbox_id}").status_code == 404,
            timeout=60,
        )
        with pytest.raises(SandboxNotFoundError):
            client.get_archived(ended.sandbox_id)
        # Its logs went with it.
        assert not logs_dir.exists()
        assert srv.api("GET", f"/v1/namespaces/default/sandboxes/{ended.sandbox_id}/logs").status_code == 404

        # The live sandbox is older than the TTL and untouched.
        info = client.get(live.sandbox_id)
        assert info.status == "running"
        assert srv.api("GET", f"/archived-sandboxes/{live.sandbox_id}").status_code == 404
        client.delete(live.sandbox_id)
        assert live.sandbox_id in archived_ids(srv), "a new end starts a new retention"
    log = srv.log_path.read_text(errors="replace")
    assert "archived sandbox purged" in log


def test_the_archive_needs_an_api_key_when_the_server_has_keys():
    srv = AlcoveServer(api_keys=["archive-key"])
    srv.start()
    try:
        for path in ("/archived-sandboxes", f"/v1/namespaces/default/archived-sandboxes/{uuid.uuid4()}"):
            assert httpx.get(f"{srv.url}{path}", timeout=30).status_code == 401
        assert srv.api("GET", "/archived-sandboxes").status_code == 200
    finally:
        srv.stop()
        assert owned_resources(srv.data_dir).is_empty()
