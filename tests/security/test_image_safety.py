"""Hostile images: every crafted layer (framework/image_fixtures.py, `make_hostile_images`) is
refused with 400 or neutralised, whether imported as an OCI archive or pulled from a
registry, and nothing appears on the host outside the store.

The server runs with `--image-max-unpacked-mb 64`, so that the gzip bomb (2 GiB of zeros
in ~2 MB) is stopped early."""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

import pytest

from framework import image_fixtures as fx
from framework.host import wait_for
from framework.images_api import (
    all_names,
    error_code,
    get_image,
    import_archive,
    list_images,
    pull,
)
from framework.registry import requires_registry
from framework.server import IMAGES_DIR, AlcoveServer

pytest_plugins = ["framework.image_plugin"]
pytestmark = requires_registry()

MAX_UNPACKED_MB = 64
SHADOW = Path("/etc/shadow")
SHADOW_NLINK = SHADOW.stat().st_nlink  # before any test: a hard link made by one shows


@pytest.fixture(scope="module")
def server():
    srv = AlcoveServer(extra_args=["--image-max-unpacked-mb", str(MAX_UNPACKED_MB)])
    srv.start()
    yield srv
    srv.stop()
    shutil.rmtree(srv.data_dir, ignore_errors=True)


def store_files(diff_id: str) -> list[Path]:
    root = fx.layer_dir(IMAGES_DIR / "store", diff_id)
    return [Path(r) / n for r, ds, fs in os.walk(root) for n in ds + fs] if root.exists() else []


def assert_neutralised(h: fx.Hostile, info: dict) -> None:
    """An accepted hostile image: what it carried stayed inside its layer directory."""
    (diff_id,) = h.layout.diff_ids("latest")
    root = fx.layer_dir(IMAGES_DIR / "store", diff_id).resolve()
    shadow = SHADOW.stat()
    for path in store_files(diff_id):
        st = os.lstat(path)
        assert path.resolve(strict=False).is_relative_to(root) or stat.S_ISLNK(st.st_mode), path
        if stat.S_ISCHR(st.st_mode):
            assert st.st_rdev == 0, f"a device node in the store: {path}"  # whiteouts only
        assert not stat.S_ISBLK(st.st_mode), f"a block device in the store: {path}"
        if stat.S_ISREG(st.st_mode):
            assert (st.st_dev, st.st_ino) != (shadow.st_dev, shadow.st_ino), path
    assert info["layers"][0]["diff_id"] == diff_id


def check_outcome(server: AlcoveServer, h: fx.Hostile, name: str, status: int, body: dict) -> None:
    if h.must_refuse:
        assert status == 400, (h.name, status, body)
    else:
        assert status in (200, 201, 400), (h.name, status, body)
    if status == 400:
        assert body.get("code") == "INVALID_ARGUMENT", body
        assert name not in all_names(server)
        assert all(i["id"] != h.layout.config_digest("latest") for i in list_images(server))
    else:
        assert_neutralised(h, body)
    for path in h.host_paths:
        assert not path.exists(), f"{h.name} wrote {path} on the host"
    assert SHADOW.stat().st_nlink == SHADOW_NLINK, "a hard link to /etc/shadow was made"
    # No work in progress is left behind (cleaned when the request ends).
    tmp = IMAGES_DIR / "store" / "tmp"
    assert wait_for(lambda: not tmp.exists() or not any(tmp.iterdir()), 30), list(tmp.iterdir())


@pytest.mark.parametrize("hostile", fx.HOSTILE_NAMES)
def test_hostile_import(server, hostile_images, run_token, hostile):
    h = hostile_images[hostile]
    name = f"e2e-{run_token}/hostile-import-{hostile.replace('_', '-')}:1"
    resp = import_archive(server, h.archive, name)
    body = resp.json()
    check_outcome(server, h, name, resp.status_code, body)
    if resp.status_code == 400:
        assert body["message"]
    if hostile == "gzip_bomb":
        assert str(MAX_UNPACKED_MB) in body["message"] or "large" in body["message"].lower()


@pytest.mark.parametrize(
    "hostile", [n for n in fx.HOSTILE_NAMES if n not in ("truncated_blob", "digest_mismatch")]
)
def test_hostile_pull(server, registry, hostile_images, run_token, hostile):
    """The same layers served by a registry (byte for byte as crafted, pushed through its
    HTTP API); a pull is refused (400) or neutralised like an import."""
    h = hostile_images[hostile]
    assert h.pushable
    repo = f"e2e-{run_token}/hostile-pull-{hostile.replace('_', '-')}"
    registry.push_layout_raw(h.layout, "latest", repo)
    ref = registry.ref(repo, "latest")
    resp = pull(server, ref)
    check_outcome(server, h, ref, resp.status_code, resp.json())


def test_refused_import_can_be_retried_fixed(server, busybox_image, hostile_images, run_token,
                                             tmp_path):
    """A refusal leaves the name free: the same name imports a good archive afterwards.

    (Not the digest-mismatch archive: once another import stored the real blob of that digest,
    the store keeps its verified copy and ignores the archive's bad bytes, so that import
    succeeds with correct content.)"""
    name = f"e2e-{run_token}/hostile-then-good:1"
    assert import_archive(server, hostile_images["unknown_media"].archive, name).status_code == 400
    good = fx.write_docker_archive(busybox_image, tmp_path / "good.tar", name)
    resp = import_archive(server, good, name)
    assert resp.status_code in (200, 201), resp.text
    assert get_image(server, name).json()["id"] == busybox_image.config_digest


def test_not_an_archive_is_400(server, run_token, tmp_path):
    junk = tmp_path / "junk.tar"
    junk.write_bytes(os.urandom(4096))
    resp = import_archive(server, junk, f"e2e-{run_token}/junk:1")
    assert resp.status_code == 400, resp.text
    assert error_code(resp) == "INVALID_ARGUMENT"
