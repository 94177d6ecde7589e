"""Suspended sandboxes and snapshots are packed (zstd) when idle, and resume and
restore unpack them transparently."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from alcove.sandbox import SandboxClient
from framework.host import wait_for
from framework.server import AlcoveServer


@pytest.fixture(scope="module")
def server():
    srv = AlcoveServer(extra_args=["--compress-after-secs", "0"])
    srv.start()
    yield srv
    srv.stop()
    shutil.rmtree(srv.data_dir, ignore_errors=True)


@pytest.fixture
def client(server):
    with SandboxClient(api_url=server.url) as c:
        yield c


def test_suspended_sandbox_is_packed_and_resumes(server, client):
    with client.create_and_connect(name="cold") as sandbox:
        proc = sandbox.start_process("sleep", ["600"])
        sandbox.write_file("/root/cold.txt", b"packed and back")
        client.suspend("cold")
        sdir = Path(server.data_dir) / "sandboxes" / sandbox.sandbox_id
        # Packed = the archive is in place and the raw files are gone (in that order).
        def packed(member: str) -> bool:
            return (sdir / f"{member}.tar.zst").exists() and not (sdir / member).exists()

        assert wait_for(lambda: packed("checkpoint") and packed("disk.img")), list(sdir.iterdir())
        client.resume("cold")
        again = client.connect("cold")
        assert again.read_file("/root/cold.txt") == b"packed and back"
        assert any(p.pid == proc.pid and p.status == "running" for p in again.list_processes())
        assert not (sdir / "checkpoint.tar.zst").exists()


def test_packed_snapshot_restores(server, client):
    with client.create_and_connect() as source:
        source.write_file("/root/snap.txt", b"from a packed snapshot")
        snap = client.snapshot_and_wait(source.sandbox_id)
    sdir = Path(server.data_dir) / "snapshots" / snap.snapshot_id
    assert wait_for(
        lambda: all(
            (sdir / f"{m}.tar.zst").exists() and not (sdir / m).exists() for m in ("disk.img", "criu")
        )
    )
    assert (sdir / "manifest.json").exists()
    restored = client.create_and_connect(snapshot_id=snap.snapshot_id)
    try:
        assert restored.read_file("/root/snap.txt") == b"from a packed snapshot"
    finally:
        client.delete(restored.sandbox_id)
        client.delete_snapshot(snap.snapshot_id)
    assert not sdir.exists()
