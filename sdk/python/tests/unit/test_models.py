"""Models: tolerant parsing of what the server sends."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from alcove.sandbox import (
    ArchivedSandboxInfo,
    DirectoryEntry,
    ProcessInfo,
    ProcessStatus,
    SandboxInfo,
    SandboxStatus,
    SnapshotInfo,
    SnapshotStatus,
)
from fakes import info_json

WHEN = datetime(2026, 11, 26, 16, 39, 22, 444000, tzinfo=timezone.utc)


@pytest.mark.parametrize(
    "value",
    [
        1795711162444,
        1795711162.444,
        1795711162444000,
        "1795711162444",
        "2026-11-26T16:39:22.444Z",
        "2026-11-26T16:39:22.444000+00:00",
        "2026-11-26T16:39:22.444000123Z",
    ],
)
def test_timestamps_accept_epoch_units_and_iso_strings(value: object) -> None:
    info = SandboxInfo.model_validate(info_json(created_at=value))
    assert info.created_at == WHEN
    assert info.created_at.tzinfo is not None


def test_sandbox_id_accepts_id_or_sandbox_id() -> None:
    assert SandboxInfo.model_validate(info_json(sandbox_id="a")).sandbox_id == "a"
    body = info_json()
    del body["id"]
    body["sandbox_id"] = "b"
    assert SandboxInfo.model_validate(body).sandbox_id == "b"


def test_sandbox_info_full_and_unknown_fields() -> None:
    info = SandboxInfo.model_validate(
        info_json(
            name="my-env",
            secret_names=["OPENAI_API_KEY"],
            timeout_secs=1800,
            exposed_ports=[8080],
            allow_unauthenticated_access=True,
            entrypoint=["/bin/sh"],
            terminated_at=None,
            termination_reason="cancelled",
            network_policy={"allow_internet_access": False, "deny_out": None},
            brand_new_field={"x": 1},
        )
    )
    assert info.status == SandboxStatus.RUNNING == "running"
    assert info.resources.cpus == 1.0 and info.resources.memory_mb == 1024
    assert info.resources.disk_mb == 10240 and info.resources.ephemeral_disk_mb == 10240
    assert info.secret_names == ["OPENAI_API_KEY"]
    assert info.exposed_ports == [8080] and info.allow_unauthenticated_access
    assert info.entrypoint == ["/bin/sh"]
    assert info.termination_reason == "cancelled"
    assert info.network_policy.allow_internet_access is False and info.network_policy.deny_out == []
    assert info.model_extra["brand_new_field"] == {"x": 1}


def test_sandbox_info_defaults_and_nulls() -> None:
    info = SandboxInfo.model_validate({"id": "x", "status": "pending", "secret_names": None, "exposed_ports": None})
    assert info.secret_names == [] and info.exposed_ports == [] and info.entrypoint == []
    assert info.created_at is None and info.sandbox_url is None and info.resources is None


def test_sandbox_info_node_selector() -> None:
    info = SandboxInfo.model_validate(info_json(node_selector={"zone": "b", "gpu": "a100"}))
    assert info.node_selector == {"zone": "b", "gpu": "a100"}
    # The server leaves it out when empty; null reads as empty too.
    assert SandboxInfo.model_validate(info_json()).node_selector == {}
    assert SandboxInfo.model_validate(info_json(node_selector=None)).node_selector == {}
    archived = ArchivedSandboxInfo.model_validate(info_json(archived_at=1795711162444, node_selector={"zone": "b"}))
    assert archived.node_selector == {"zone": "b"}


def test_every_wire_status_is_an_enum_member_and_unknown_ones_survive() -> None:
    for status in ["pending", "running", "snapshotting", "suspending", "suspended", "terminated", "timeout", "failed"]:
        parsed = SandboxInfo.model_validate(info_json(status=status)).status
        assert isinstance(parsed, SandboxStatus) and parsed == status
    unknown = SandboxInfo.model_validate(info_json(status="resizing")).status
    assert unknown == "resizing" and not isinstance(unknown, SandboxStatus)


def test_url_for_port() -> None:
    info = SandboxInfo.model_validate(info_json(ingress_endpoint="http://sandbox.localhost:8900"))
    assert info.url_for_port(8080) == "http://8080-sbx-1.sandbox.localhost:8900"
    assert info.url_for_port(9501) == "http://localhost:8900"


def test_snapshot_info() -> None:
    snap = SnapshotInfo.model_validate(
        {
            "id": "snap-1",
            "namespace": "default",
            "sandbox_id": "sbx-1",
            "status": "completed",
            "snapshot_type": "filesystem",
            "size_bytes": 1234,
            "created_at": 1795711162444,
            "extra": True,
        }
    )
    assert snap.snapshot_id == "snap-1" and snap.status == SnapshotStatus.COMPLETED
    assert snap.snapshot_type == "filesystem" and snap.size_bytes == 1234 and snap.created_at == WHEN
    assert SnapshotInfo.model_validate({"snapshot_id": "s", "status": "in_progress"}).sandbox_id is None


def test_process_info_and_directory_entry() -> None:
    proc = ProcessInfo.model_validate(
        {
            "pid": 1002,
            "status": "running",
            "exit_code": None,
            "signal": None,
            "stdin_writable": True,
            "command": "cat",
            "args": [],
            "started_at": 1795711162444,
            "ended_at": None,
            "new": 1,
        }
    )
    assert proc.pid == 1002 and proc.status == ProcessStatus.RUNNING and proc.stdin_writable
    assert proc.started_at == WHEN and proc.ended_at is None
    entry = DirectoryEntry.model_validate({"name": "sub", "is_dir": True, "size": None, "modified_at": None})
    assert entry.is_dir and entry.size is None
