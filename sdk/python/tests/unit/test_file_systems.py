"""Persistent volumes: request bodies and decoding, without a server."""

from __future__ import annotations

import pytest

from alcove.sandbox import _protocol as proto
from alcove.sandbox.models import FileSystemInfo, FileSystemMount, SandboxInfo


def test_a_mount_body_carries_only_what_is_set() -> None:
    assert proto.mount_body("data", "/mnt/data") == {"file_system_id": "data", "mount_path": "/mnt/data"}
    assert proto.mount_body("data", "/mnt/data", True)["read_only"] is True
    assert proto.mounts_body([FileSystemMount(file_system_id="d", mount_path="/d", owner="1000")]) == [
        {"file_system_id": "d", "mount_path": "/d", "owner": "1000"}
    ]


@pytest.mark.parametrize("path", ["mnt", "", None])
def test_a_relative_mount_path_is_refused_before_sending(path: object) -> None:
    with pytest.raises(ValueError):
        proto.mount_body("data", path)  # type: ignore[arg-type]


def test_create_size_must_be_positive() -> None:
    cfg = proto_config()
    for bad in (0, -1, "10", 1.5):
        with pytest.raises(ValueError):
            next(proto.op_create_file_system(cfg, "data", bad))  # type: ignore[arg-type]


def test_volumes_and_mounts_decode() -> None:
    info = FileSystemInfo.model_validate(
        {
            "id": "data",
            "name": "data",
            "size_mb": 64,
            "created_at": 1_700_000_000_000,
            "attachments": [{"sandbox_id": "s", "mount_path": "/mnt/d", "read_only": True}],
        }
    )
    assert info.attachments[0].read_only
    assert info.used_mb is None
    mount = FileSystemMount.model_validate({"file_system_id": "data", "mount_path": "/mnt/d"})
    assert mount.read_only is False
    assert SandboxInfo.model_fields["file_systems"].default_factory is not None


def proto_config():  # type: ignore[no-untyped-def]
    from alcove.sandbox._config import ClientConfig

    return ClientConfig(api_url="http://localhost:1", api_key=None, namespace="default", timeout_secs=5.0)
