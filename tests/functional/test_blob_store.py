"""The blob store (`--blob-store s3://…`) against a real S3 server (s3s-fs): snapshots are in
S3 before they are `completed`, suspended sandboxes' dumps are copied there in the background,
and a restore or resume whose files are gone from the local disk (as on another machine) fetches
them, checked against the sha256 recorded at upload. A damaged object fails the resume cleanly
and stays for a retry. Wrong credentials stop the server at start; the secret is never logged."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest

from alcove.sandbox import SandboxClient
from framework.host import firewall_tables, owned_resources, wait_for
from framework.metrics import operations
from framework.s3 import S3Server
from framework.server import AlcoveServer, refused_at_start

PREFIX = "e2e"


@pytest.fixture(scope="module")
def s3():
    with S3Server() as server:
        yield server


@pytest.fixture(scope="module")
def server(s3):
    # compress-after 0: a suspended sandbox is packed (its layer unmounted) at once, so the test
    # can take its files away as if it had been suspended on another machine.
    srv = AlcoveServer(
        extra_args=s3.alcove_args(PREFIX) + ["--compress-after-secs", "0"],
        extra_env=s3.alcove_env(),
    )
    srv.start()
    yield srv
    for sb in srv.live_sandboxes():
        srv.api("DELETE", f"/v1/namespaces/default/sandboxes/{sb['id']}")
    srv.stop()
    log = srv.log_path.read_text(errors="replace")
    assert s3.secret_key not in log
    res = owned_resources(srv.data_dir)
    tables = firewall_tables(srv.data_dir)
    shutil.rmtree(srv.data_dir, ignore_errors=True)
    assert not srv.killed_at_stop, f"the server did not stop within its grace: {log[-4000:]}"
    assert res.is_empty(), f"host resources left behind: {res}"
    assert not tables, f"firewall table left behind: {tables}: {log[-4000:]}"


@pytest.fixture
def client(server):
    with SandboxClient(api_url=server.url) as c:
        yield c


def uploads(server) -> float:
    return operations(server, "blob_upload")


def test_a_snapshot_is_in_s3_when_completed_and_restores_without_its_local_files(s3, server, client):
    with client.create_and_connect() as source:
        source.write_file("/root/kept.txt", b"from s3")
        proc = source.start_process("sleep", ["600"])
        snap = client.snapshot_and_wait(source.sandbox_id)
    objects = s3.objects(f"{PREFIX}/snapshots/{snap.snapshot_id}")
    assert sorted(objects) == ["criu.tar.zst", "disk.img.tar.zst"], objects
    assert all(p.stat().st_size > 0 for p in objects.values())

    # As on a machine that never had them: the local files are gone (once the compactor,
    # which packs them at once here, is done with them).
    local = Path(server.data_dir) / "snapshots" / snap.snapshot_id
    assert wait_for(lambda: all((local / f"{m}.tar.zst").exists() for m in ("criu", "disk.img")))
    shutil.rmtree(local)
    downloads = operations(server, "blob_download")
    restored = client.create_and_connect(snapshot_id=snap.snapshot_id)
    try:
        assert restored.read_file("/root/kept.txt") == b"from s3"
        assert any(p.pid == proc.pid and p.status == "running" for p in restored.list_processes())
    finally:
        client.delete(restored.sandbox_id)
    assert operations(server, "blob_download") == downloads + 1
    # A second restore uses the copy now on the local disk.
    again = client.create_and_connect(snapshot_id=snap.snapshot_id)
    try:
        assert again.read_file("/root/kept.txt") == b"from s3"
    finally:
        client.delete(again.sandbox_id)
    assert operations(server, "blob_download") == downloads + 1

    client.delete_snapshot(snap.snapshot_id)
    assert wait_for(lambda: s3.objects(f"{PREFIX}/snapshots/{snap.snapshot_id}") == {}, 30)


def suspend_and_upload(server, client, s3, name: str):
    """Suspends `name` and waits until it is packed locally and copied to S3; returns the
    sandbox's id, its local directory and its objects."""
    before = uploads(server)
    info = client.get(name)
    client.suspend(name)
    sdir = Path(server.data_dir) / "sandboxes" / info.sandbox_id
    assert wait_for(lambda: uploads(server) > before, 60), server.log_tail()
    objects = s3.objects(f"{PREFIX}/sandboxes/{info.sandbox_id}")
    names = sorted(Path(k).name for k in objects)
    assert names == ["checkpoint.tar.zst", "disk.img.tar.zst"], objects
    assert wait_for(lambda: (sdir / "checkpoint.tar.zst").exists() and (sdir / "disk.img.tar.zst").exists())
    return info.sandbox_id, sdir, objects


def lose_local_dump(sdir: Path) -> None:
    for name in ("checkpoint.tar.zst", "disk.img.tar.zst", "checkpoint.done"):
        (sdir / name).unlink()


def test_a_suspended_sandbox_resumes_from_s3_with_memory_and_files(s3, server, client):
    with client.create_and_connect(name="from-s3") as sandbox:
        sandbox.write_file("/root/notes.txt", b"suspended to s3")
        counter = sandbox.start_process("sh", ["-c", "i=0; while true; do i=$((i+1)); echo $i > /root/n; sleep 0.2; done"])
        time.sleep(1)
        sid, sdir, objects = suspend_and_upload(server, client, s3, "from-s3")
        lose_local_dump(sdir)
        downloads = operations(server, "blob_download")
        client.resume("from-s3")
        assert operations(server, "blob_download") == downloads + 1
        again = client.connect("from-s3")
        assert again.read_file("/root/notes.txt") == b"suspended to s3"
        assert any(p.pid == counter.pid and p.status == "running" for p in again.list_processes())
        first = int(again.read_file("/root/n"))
        assert wait_for(lambda: int(again.read_file("/root/n")) > first, 10)
        # Resumed, the copy in S3 is of a state it has left: removed.
        assert wait_for(lambda: all(not p.exists() for p in objects.values()), 30)
        client.delete("from-s3")


def test_a_damaged_dump_fails_the_resume_cleanly_and_is_kept_for_a_retry(s3, server, client):
    with client.create_and_connect(name="damaged") as sandbox:
        sandbox.write_file("/root/notes.txt", b"survives a bad download")
        proc = sandbox.start_process("sleep", ["600"])
        sid, sdir, objects = suspend_and_upload(server, client, s3, "damaged")
        lose_local_dump(sdir)
        [dump] = [p for k, p in objects.items() if k.endswith("checkpoint.tar.zst")]
        good = dump.read_bytes()
        bad = bytearray(good)
        bad[len(bad) // 2] ^= 0xFF
        dump.write_bytes(bytes(bad))

        failed = operations(server, "blob_download", "failed")
        resp = server.api("POST", "/v1/namespaces/default/sandboxes/damaged/resume?wait_ms=60000")
        assert resp.status_code >= 400, resp.text
        assert operations(server, "blob_download", "failed") == failed + 1
        info = server.api("GET", "/v1/namespaces/default/sandboxes/damaged").json()
        assert info["status"] == "suspended", info
        assert "corrupt" in resp.text or "corrupt" in str(info.get("error_details")), (resp.text, info)
        assert dump.exists(), "the object stays in the store"
        assert not list(sdir.glob("*.partial")), list(sdir.iterdir())

        # Repaired, the same resume works, with the process and files intact.
        dump.write_bytes(good)
        client.resume("damaged")
        again = client.connect("damaged")
        assert again.read_file("/root/notes.txt") == b"survives a bad download"
        assert any(p.pid == proc.pid and p.status == "running" for p in again.list_processes())
        client.delete("damaged")


def test_wrong_s3_credentials_stop_the_server_at_start_without_the_secret(s3):
    wrong = "wrong-" + s3.secret_key
    log = refused_at_start(s3.alcove_args("refused"), s3.alcove_env(wrong))
    assert "refused the credentials" in log, log
    assert wrong not in log and s3.secret_key not in log


def test_an_unreachable_s3_server_or_a_bad_url_stops_the_server_at_start(s3):
    for args, expect in [
        (["--blob-store", "s3://alcove/x", "--s3-endpoint", "http://127.0.0.1:1",
          "--s3-access-key-id", "AK"], "opening the blob store"),
        (["--blob-store", "s3://Not_A_Bucket"], "not an S3 bucket name"),
        (["--blob-store", "s3://alcove/x"], "needs an access key id"),
        (["--blob-store", "ftp://host/x"], "expected file:///dir or s3://bucket/prefix"),
    ]:
        env = {"ALCOVE_S3_SECRET_ACCESS_KEY": "sk-unused"} if "--s3-access-key-id" in args else {}
        log = refused_at_start(args, env, timeout=90)
        assert expect in log, (args, log)
        assert "sk-unused" not in log
