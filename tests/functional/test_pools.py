"""Warm pools and claims, through the HTTP API and the official SDK: a pool keeps its idle
sandboxes started and hidden, a claim hands one out running with the claimer's name,
environment, secrets and network policy bound to it, the pool refills, `max_containers` caps
it (429 past it), an update recycles idle sandboxes, a delete drains it (409 while claimed
ones run), and every bad request is refused before a sandbox is taken."""

from __future__ import annotations

import time

import pytest

from alcove.sandbox import SandboxClient
from framework.network import mirror, reaches

B = "/v1/namespaces/default"
SMALL = {"cpus": 0.5, "memory_mb": 512, "disk_mb": 1024}


def create_pool(server, **body) -> str:
    body.setdefault("resources", SMALL)
    resp = server.api("POST", f"{B}/sandbox-pools", json=body)
    assert resp.status_code == 200, resp.text
    answer = resp.json()
    assert answer["namespace"] == "default"
    return answer["pool_id"]


def get_pool(server, pool_id: str) -> dict:
    resp = server.api("GET", f"{B}/sandbox-pools/{pool_id}")
    assert resp.status_code == 200, resp.text
    return resp.json()


def idle_ids(server, pool_id: str) -> list[str]:
    return [c["sandbox_id"] for c in get_pool(server, pool_id)["containers"] if c["state"] == "Idle"]


def wait_idle(server, pool_id: str, count: int, timeout: float = 60) -> list[str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ids = idle_ids(server, pool_id)
        if len(ids) >= count:
            return ids
        time.sleep(0.2)
    raise AssertionError(f"pool {pool_id} has {idle_ids(server, pool_id)} idle, wanted {count}")


def claim(server, pool_id: str, body: dict | None = None):
    return server.api("POST", f"{B}/sandbox-pools/{pool_id}/sandboxes", json=body)


def delete_pool(server, pool_id: str) -> None:
    resp = server.api("DELETE", f"{B}/sandbox-pools/{pool_id}")
    assert resp.status_code in (204, 404), resp.text


def delete_sandbox(server, sandbox_id: str) -> None:
    server.api("DELETE", f"{B}/sandboxes/{sandbox_id}")


def test_a_claim_hands_out_a_warm_sandbox_with_its_bindings_and_the_pool_refills(server):
    host, ip = mirror()
    server.api("PUT", f"{B}/secrets/POOL_TOKEN", json={"value": "s3cret-value"})
    # The pool's sandboxes start with no internet; the claim opens it.
    pool_id = create_pool(server, warm_containers=2, network={"allow_internet_access": False})
    claimed = None
    try:
        warm = wait_idle(server, pool_id, 2)
        # Idle sandboxes are the pool's: not listed, not addressable, not routed.
        listed = [s["id"] for s in server.api("GET", f"{B}/sandboxes").json()["sandboxes"]]
        assert not set(warm) & set(listed)
        assert server.api("GET", f"{B}/sandboxes/{warm[0]}").status_code == 404
        routed = server.api("GET", f"/sandboxes/{warm[0]}/api/v1/health")
        assert routed.status_code == 404, routed.text

        resp = claim(
            server,
            pool_id,
            {
                "name": "claimed-one",
                "env": {"GREETING": "hello from the claim"},
                "secret_names": ["POOL_TOKEN"],
                "network": {"allow_internet_access": True},
            },
        )
        assert resp.status_code == 200, resp.text
        answer = resp.json()
        claimed = answer["sandbox_id"]
        assert answer["status"] == "running"
        assert answer["claim_configuration_applied"] is True
        assert answer["name"] == "claimed-one"
        assert answer["sandbox_url"]
        assert claimed in warm, "the claim did not take a warm sandbox"

        info = server.api("GET", f"{B}/sandboxes/claimed-one").json()
        assert info["id"] == claimed
        assert info["pool_id"] == pool_id
        assert info["secret_names"] == ["POOL_TOKEN"]
        assert info["network_policy"]["allow_internet_access"] is True
        # The claim answer carries the claimed sandbox as GET answers it (claim applied).
        assert answer["sandbox"] == info
        assert claimed in [s["id"] for s in server.api("GET", f"{B}/sandboxes").json()["sandboxes"]]

        with SandboxClient(api_url=server.url) as client:
            sandbox = client.connect("claimed-one")
            result = sandbox.run("sh", ["-c", 'echo "$GREETING|$POOL_TOKEN"'])
            assert result.exit_code == 0, result.stderr
            assert result.stdout.strip() == "hello from the claim|s3cret-value"
            assert reaches(sandbox, host, ip), "the claim's network policy is not in force"
            # A claim that binds no policy keeps the pool's.
            other = claim(server, pool_id).json()["sandbox_id"]
            try:
                assert not reaches(client.connect(other), host, ip), "the pool's policy is not in force"
            finally:
                delete_sandbox(server, other)

        # The pool refills to two idle sandboxes, the claimed one listed as running.
        refilled = wait_idle(server, pool_id, 2)
        assert claimed not in refilled
        states = {c["sandbox_id"]: c["state"] for c in get_pool(server, pool_id)["containers"]}
        assert states[claimed] == "Running"
    finally:
        if claimed:
            delete_sandbox(server, claimed)
        delete_pool(server, pool_id)
        server.api("DELETE", f"{B}/secrets/POOL_TOKEN")
    assert server.api("GET", f"{B}/sandbox-pools/{pool_id}").status_code == 404


def test_the_pool_timeout_counts_from_the_claim(server):
    pool_id = create_pool(server, warm_containers=1, timeout_secs=2)
    try:
        (warm,) = wait_idle(server, pool_id, 1)
        time.sleep(3)
        assert idle_ids(server, pool_id) == [warm], "an idle sandbox timed out before its claim"
        resp = claim(server, pool_id)
        assert resp.status_code == 200, resp.text
        claimed = resp.json()["sandbox_id"]
        assert claimed == warm
        deadline = time.monotonic() + 20
        status = None
        while time.monotonic() < deadline:
            info = server.api("GET", f"{B}/sandboxes/{claimed}").json()
            status = info["status"]
            if status == "terminated":
                break
            time.sleep(0.3)
        assert status == "terminated"
        assert info["termination_reason"] == "timeout"
    finally:
        delete_pool(server, pool_id)


def test_max_containers_caps_claims_and_a_delete_waits_for_claimed_sandboxes(server):
    pool_id = create_pool(server, warm_containers=1, max_containers=2)
    taken: list[str] = []
    try:
        wait_idle(server, pool_id, 1)
        for _ in range(2):
            resp = claim(server, pool_id)
            assert resp.status_code == 200, resp.text
            assert resp.json()["status"] == "running"
            taken.append(resp.json()["sandbox_id"])
        full = claim(server, pool_id)
        assert full.status_code == 429, full.text
        assert full.json()["code"] == "POOL_AT_CAPACITY"

        in_use = server.api("DELETE", f"{B}/sandbox-pools/{pool_id}")
        assert in_use.status_code == 409, in_use.text
        assert in_use.json()["code"] == "POOL_IN_USE"
        assert all(t in in_use.json()["message"] for t in taken)
        assert get_pool(server, pool_id)["id"] == pool_id, "a refused delete changed the pool"

        for sandbox_id in taken:
            delete_sandbox(server, sandbox_id)
        # Room again: the pool refills, and then a delete drains it.
        wait_idle(server, pool_id, 1)
        gone = server.api("DELETE", f"{B}/sandbox-pools/{pool_id}")
        assert gone.status_code == 204, gone.text
        assert claim(server, pool_id).status_code == 404
    finally:
        for sandbox_id in taken:
            delete_sandbox(server, sandbox_id)
        delete_pool(server, pool_id)


def test_an_update_replaces_idle_sandboxes_made_from_the_old_configuration(server):
    pool_id = create_pool(server, warm_containers=1)
    claimed = None
    try:
        (old,) = wait_idle(server, pool_id, 1)
        resp = server.api(
            "PUT",
            f"{B}/sandbox-pools/{pool_id}",
            json={"resources": {"cpus": 0.5, "memory_mb": 768, "disk_mb": 1024}, "warm_containers": 1},
        )
        assert resp.status_code == 200, resp.text
        info = resp.json()
        assert info["resources"]["memory_mb"] == 768
        assert info["network_policy"]["allow_internet_access"] is True, "absent network kept"
        closed = server.api(
            "PUT",
            f"{B}/sandbox-pools/{pool_id}",
            json={"resources": {"cpus": 0.5, "memory_mb": 768, "disk_mb": 1024}, "network": {"allow_internet_access": False}},
        ).json()
        assert closed["network_policy"]["allow_internet_access"] is False
        reopened = server.api(
            "PUT",
            f"{B}/sandbox-pools/{pool_id}",
            json={"resources": {"cpus": 0.5, "memory_mb": 768, "disk_mb": 1024}, "network": None},
        ).json()
        assert reopened["network_policy"]["allow_internet_access"] is True, "null opens the policy"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            ids = idle_ids(server, pool_id)
            if ids and old not in ids:
                break
            time.sleep(0.2)
        assert ids and old not in ids, (old, ids)
        # Ended, the replaced sandbox is archived: answered by id, as the archive answers it.
        gone = server.api("GET", f"{B}/sandboxes/{old}")
        assert gone.status_code == 200 and gone.json()["status"] == "terminated", gone.text
        assert server.api("GET", f"{B}/archived-sandboxes/{old}").status_code == 200
        assert old not in {s["id"] for s in server.live_sandboxes()}
        resp = claim(server, pool_id)
        claimed = resp.json()["sandbox_id"]
        got = server.api("GET", f"{B}/sandboxes/{claimed}").json()
        assert got["resources"]["memory_mb"] == 768
    finally:
        if claimed:
            delete_sandbox(server, claimed)
        delete_pool(server, pool_id)


@pytest.mark.parametrize(
    "body, field",
    [
        ({"warm_containers": 0}, "warm_containers"),
        ({"warm_containers": -2}, "warm_containers"),
        ({"warm_containers": 65}, "warm_containers"),
        ({"warm_containers": 3, "max_containers": 2}, "warm_containers"),
        ({"max_containers": 0}, "max_containers"),
        ({"resources": {"cpus": 0.5, "memory_mb": 1}}, "memory_mb"),
        ({"resources": {"cpus": 1, "memory_mb": 1024, "gpus": [{"count": 1, "model": "H100"}]}}, "gpus"),
        ({"entrypoint": [""]}, "entrypoint"),
        ({"network": {"allow_out": ["not a host!"]}}, "network"),
    ],
)
def test_bad_pools_are_refused_and_make_nothing(server, body, field):
    resp = server.api("POST", f"{B}/sandbox-pools", json=body)
    assert resp.status_code == 400, resp.text
    assert resp.json()["code"] == "INVALID_ARGUMENT"
    assert field in resp.json()["message"]
    assert server.api("GET", f"{B}/sandbox-pools").json()["pools"] == []


def test_a_pool_of_an_unknown_image_or_a_malformed_body_is_refused(server):
    assert server.api("POST", f"{B}/sandbox-pools", json={"image": "no-such-image:1"}).status_code == 404
    resp = server.api("POST", f"{B}/sandbox-pools", content=b"{not json", headers={"content-type": "application/json"})
    assert resp.status_code == 400
    assert server.api("GET", f"{B}/sandbox-pools/pool-unknown").status_code == 404
    assert claim(server, "pool-unknown").status_code == 404
    assert server.api("PUT", f"{B}/sandbox-pools/pool-unknown", json={}).status_code == 404
    assert server.api("DELETE", f"{B}/sandbox-pools/pool-unknown").status_code == 404
    assert server.api("GET", f"{B}/sandbox-pools").json()["pools"] == []


def test_bad_claims_are_refused_before_a_sandbox_is_taken(server):
    pool_id = create_pool(server, warm_containers=1)
    holder = None
    try:
        (warm,) = wait_idle(server, pool_id, 1)
        for volume in ("pool-vol", "held-vol"):
            made = server.api("POST", f"{B}/file-systems", json={"name": volume, "size_mb": 64})
            assert made.status_code == 200, made.text
        holder = server.api(
            "POST",
            f"{B}/sandboxes",
            json={
                "name": "taken-name",
                "resources": SMALL,
                "file_systems": [{"file_system_id": "held-vol", "mount_path": "/mnt/held"}],
            },
        ).json()["sandbox_id"]
        cases = [
            ({"name": "Not A Name"}, 400, "INVALID_ARGUMENT"),
            ({"name": "taken-name"}, 409, "NAME_TAKEN"),
            ({"env": {"1BAD": "x"}}, 400, "INVALID_ARGUMENT"),
            ({"env": {"A=B": "x"}}, 400, "INVALID_ARGUMENT"),
            ({"env": {"ALCOVE_AGENT_USER": "root"}}, 400, "INVALID_ARGUMENT"),
            ({"secret_names": ["NO_SUCH_SECRET"]}, 400, "INVALID_ARGUMENT"),
            ({"network": {"deny_out": ["???"]}}, 400, "INVALID_ARGUMENT"),
            ({"file_systems": [{"file_system_id": "no-such-volume", "mount_path": "/mnt/v"}]}, 404, "NOT_FOUND"),
            ({"file_systems": [{"file_system_id": "pool-vol", "mount_path": "/proc/x"}]}, 400, "INVALID_ARGUMENT"),
            ({"file_systems": [{"file_system_id": "held-vol", "mount_path": "/mnt/v"}]}, 409, "FILE_SYSTEM_IN_USE"),
        ]
        for body, status, code in cases:
            resp = claim(server, pool_id, body)
            assert resp.status_code == status, (body, resp.text)
            assert resp.json()["code"] == code, (body, resp.text)
        bad_json = server.api(
            "POST", f"{B}/sandbox-pools/{pool_id}/sandboxes", content=b"[1,2]", headers={"content-type": "application/json"}
        )
        assert bad_json.status_code == 400, bad_json.text
        # Nothing was taken: the same warm sandbox is still idle, nothing more runs.
        assert idle_ids(server, pool_id) == [warm]
        live = [s["id"] for s in server.api("GET", f"{B}/sandboxes").json()["sandboxes"]]
        assert live == [holder]
    finally:
        if holder:
            delete_sandbox(server, holder)
        delete_pool(server, pool_id)
        for volume in ("pool-vol", "held-vol"):
            server.api("DELETE", f"{B}/file-systems/{volume}")


def test_a_claim_mounts_volumes_and_they_outlive_the_claimed_sandbox(server):
    assert server.api("POST", f"{B}/file-systems", json={"name": "claim-data", "size_mb": 64}).status_code == 200
    pool_id = create_pool(server, warm_containers=1)
    claimed = []
    try:
        wait_idle(server, pool_id, 1)
        mount = {"file_system_id": "claim-data", "mount_path": "/mnt/data"}
        resp = claim(server, pool_id, {"file_systems": [mount]})
        assert resp.status_code == 200, resp.text
        assert resp.json()["claim_configuration_applied"] is True
        first = resp.json()["sandbox_id"]
        claimed.append(first)
        info = server.api("GET", f"{B}/sandboxes/{first}").json()
        assert [m["mount_path"] for m in info["file_systems"]] == ["/mnt/data"]
        with SandboxClient(api_url=server.url) as client:
            wrote = client.connect(first).run("sh", ["-c", "echo kept > /mnt/data/f && cat /mnt/data/f"])
            assert wrote.stdout.strip() == "kept", wrote.stderr
            # Read-write volumes are exclusive: a second claim of it is refused, taking nothing.
            again = claim(server, pool_id, {"file_systems": [mount]})
            assert again.status_code == 409, again.text
            delete_sandbox(server, first)
            resp = claim(server, pool_id, {"file_systems": [{**mount, "read_only": True}]})
            assert resp.status_code == 200, resp.text
            second = resp.json()["sandbox_id"]
            claimed.append(second)
            read = client.connect(second).run("sh", ["-c", "cat /mnt/data/f; touch /mnt/data/g || echo read-only"])
            assert read.stdout.split() == ["kept", "read-only"], (read.stdout, read.stderr)
    finally:
        for sandbox_id in claimed:
            delete_sandbox(server, sandbox_id)
        delete_pool(server, pool_id)
        server.api("DELETE", f"{B}/file-systems/claim-data")


def test_claims_racing_for_one_warm_sandbox_get_different_sandboxes(server):
    import concurrent.futures

    pool_id = create_pool(server, warm_containers=1, max_containers=3)
    got: list[str] = []
    try:
        wait_idle(server, pool_id, 1)
        with concurrent.futures.ThreadPoolExecutor(3) as ex:
            answers = list(ex.map(lambda _: claim(server, pool_id), range(3)))
        for resp in answers:
            assert resp.status_code == 200, resp.text
            assert resp.json()["status"] == "running"
            got.append(resp.json()["sandbox_id"])
        assert len(set(got)) == 3, f"two claims got the same sandbox: {got}"
    finally:
        for sandbox_id in got:
            delete_sandbox(server, sandbox_id)
        delete_pool(server, pool_id)
