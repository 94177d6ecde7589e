"""A named sandbox cannot outlive its timeout by making its own suspend fail.

At its timeout a named sandbox is suspended, and a failed suspend is tried again later. What
runs in a sandbox can make every dump fail (here: a rename that carries a volume's mount off,
which a dump refuses), so after `--timeout-suspend-attempts` failures in a row the server
keeps the sandbox's files as a filesystem snapshot and ends it with reason `timeout`
(docs/security.md, Limits a sandbox cannot get around)."""

from __future__ import annotations

import time
import uuid

import pytest
from alcove.sandbox import SandboxClient

from framework.server import AlcoveServer, retire


@pytest.fixture
def impatient():
    """A server of its own that gives up after two failed timeout suspends a second apart."""
    srv = AlcoveServer(extra_args=["--timeout-suspend-attempts", "2", "--timeout-suspend-retry", "1s"])
    srv.start()
    try:
        yield srv
    finally:
        retire(srv)


def test_a_sandbox_that_makes_its_suspends_fail_is_ended_with_its_files_kept(impatient):
    srv = impatient
    vol = f"esc-{uuid.uuid4().hex[:8]}"
    with SandboxClient(api_url=srv.url) as client:
        client.create_file_system(vol, 32)
        sb = client.create_and_connect(
            name=f"escape-{uuid.uuid4().hex[:6]}",
            timeout_secs=6,
            file_systems=[{"file_system_id": vol, "mount_path": "/a/b"}],
        )
        sb.write_file("/root/kept", b"on the sandbox's disk")
        sb.write_file("/a/b/on-volume", b"on the volume")
        # Carries the volume's mount off: from now on every dump is refused.
        assert "moved" in sb.run("sh", ["-c", "mv /a /x && echo moved"]).stdout

        deadline = time.monotonic() + 90
        while client.get(sb.sandbox_id).status not in ("terminated", "timeout"):
            assert time.monotonic() < deadline, "the sandbox outlived its timeout"
            time.sleep(0.5)

        ended = client.get_archived(sb.sandbox_id)
        assert ended.termination_reason == "timeout"
        why = str(ended.error_details)
        assert "failed 2 times in a row" in why, why
        assert "/x/b" in why, f"the reason of the last failure is kept: {why}"

        # Its files were kept as a filesystem snapshot that the error names.
        kept = [s for s in client.list_snapshots() if s.sandbox_id == sb.sandbox_id]
        assert len(kept) == 1, kept
        assert kept[0].snapshot_type == "filesystem"
        assert kept[0].snapshot_id in why, why
        assert kept[0].status == "completed"

        # Its log says so too, where its user can read it.
        bodies = [r.body for r in client.get_logs(sb.sandbox_id).logs]
        assert any("it was ended" in b and kept[0].snapshot_id in b for b in bodies), bodies

        # The volume was let go, keeps what was written, and is not in the snapshot.
        assert client.get_file_system(vol).attachments == []
        with client.create_and_connect(snapshot_id=kept[0].snapshot_id) as restored:
            assert restored.read_file("/root/kept") == b"on the sandbox's disk"
            restored.attach_file_system(vol, "/data")
            assert restored.read_file("/data/on-volume") == b"on the volume"
            restored.detach_file_system("/data")
        client.delete_snapshot(kept[0].snapshot_id)
        client.delete_file_system(vol)

    log = srv.log_path.read_text(errors="replace")
    assert "ending a sandbox its timeout could not suspend" in log
