"""Session-scoped pytest fixtures of the image tests: each test image is built once per run,
each registry started once, and each image pushed once.

A test module uses them with `pytest_plugins = ["framework.image_plugin"]`. Repositories are
named `e2e-<token>/...` (`token` is new each run), so that images a run stores never collide
with another run's in a shared images directory.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import pytest

from framework import image_fixtures as fx
from framework.registry import PASSWORD, REGISTRY_MISSING, USER, Registry, available


@pytest.fixture(scope="session")
def run_token() -> Iterator[str]:
    token = secrets.token_hex(4)
    yield token
    remove_run_images(token)


def remove_run_images(token: str) -> None:
    """Removes the names this run gave images in the shared images directory (pulled, imported,
    built: every one holds `e2e-<token>/`), so that the store a developer's own server uses
    does not fill up with test images, hostile ones among them. Its servers have stopped: a
    server of its own does it, through the API, which frees what no other name keeps."""
    from framework.images_api import delete_image, list_images
    from framework.server import AlcoveServer, retire

    def ours() -> list[str]:
        return [name for image in list_images(srv) for name in image["names"] if f"e2e-{token}/" in name]

    srv = AlcoveServer()
    srv.start()
    try:
        refused = [(name, resp.text) for name in ours() if (resp := delete_image(srv, name)).status_code != 200]
        assert not refused, f"test images not removed: {refused}"
        left = ours()
        assert not left, f"test images left in the store: {left}"
    finally:
        retire(srv)


@pytest.fixture(scope="session")
def image_workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("images")


# --- layouts -------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def busybox_image(image_workdir) -> fx.Image:
    return fx.make_busybox_layout(image_workdir / "busybox")


@pytest.fixture(scope="session")
def layered_image(image_workdir) -> fx.Image:
    return fx.make_layered_layout(image_workdir / "layered")


@pytest.fixture(scope="session")
def shared_pair(image_workdir) -> tuple[fx.Image, fx.Image]:
    return fx.make_shared_base_pair(image_workdir / "pair")


@pytest.fixture(scope="session")
def multiarch_image(image_workdir) -> tuple[fx.Image, dict[str, str]]:
    return fx.make_multiarch_layout(image_workdir / "multi")


@pytest.fixture(scope="session")
def distroless_image(image_workdir) -> fx.Image:
    return fx.make_distroless_layout(image_workdir / "distroless")


@pytest.fixture(scope="session")
def debian_image() -> fx.Image:
    if not fx.debian_rootfs().is_dir():
        pytest.skip(f"no built-in Debian rootfs at {fx.debian_rootfs()} (scripts/setup.sh image)")
    return fx.make_debian_layout()


@pytest.fixture(scope="session")
def hostile_images(image_workdir, run_token) -> dict[str, fx.Hostile]:
    return fx.make_hostile_images(image_workdir / "hostile", run_token)


# --- registries ----------------------------------------------------------------------------
@pytest.fixture(scope="session")
def registry() -> Iterator[Registry]:
    if not available():
        pytest.skip(REGISTRY_MISSING)
    with Registry() as reg:
        yield reg


@pytest.fixture(scope="session")
def auth_registry() -> Iterator[Registry]:
    if not available():
        pytest.skip(REGISTRY_MISSING)
    with Registry(user=USER, password=PASSWORD) as reg:
        yield reg


@dataclass
class Pushed:
    """References of the images pushed to the session's registry, pushed on first use."""

    registry: Registry
    token: str
    images: dict[str, str] = field(default_factory=dict)

    def repo(self, name: str) -> str:
        return f"e2e-{self.token}/{name}"

    def push(self, key: str, image: fx.Image, fmt: str = "oci") -> str:
        """`<host>/e2e-<token>/<key>:<tag>`, pushed once."""
        if key not in self.images:
            repo = self.repo(key)
            self.registry.push(image.path, image.tag, repo, fmt=fmt)
            self.images[key] = self.registry.ref(repo, image.tag)
        return self.images[key]


@pytest.fixture(scope="session")
def pushed(registry, run_token) -> Pushed:
    return Pushed(registry, run_token)


@pytest.fixture(scope="session")
def busybox_ref(pushed, busybox_image) -> str:
    """The busybox image in the session registry (OCI manifest)."""
    return pushed.push("busybox", busybox_image)


@pytest.fixture(scope="session")
def busybox_user_ref(pushed, busybox_image) -> str:
    return pushed.push("busybox-user", fx.Image(busybox_image.layout, "user"))


@pytest.fixture(scope="session")
def busybox_entrypoint_ref(pushed, busybox_image) -> str:
    return pushed.push("busybox-entrypoint", fx.Image(busybox_image.layout, "entrypoint"))


@pytest.fixture(scope="session")
def layered_ref(pushed, layered_image) -> str:
    return pushed.push("layered", layered_image)


@pytest.fixture(scope="session")
def distroless_ref(pushed, distroless_image) -> str:
    return pushed.push("distroless", distroless_image)


@pytest.fixture(scope="session")
def debian_ref(pushed, debian_image) -> str:
    return pushed.push("debian", debian_image)


@pytest.fixture(scope="session")
def multiarch_ref(pushed, multiarch_image) -> str:
    image, _ids = multiarch_image
    key = "multiarch"
    if key not in pushed.images:
        repo = pushed.repo(key)
        pushed.registry.push_index(image.path, image.tag, repo)
        pushed.images[key] = pushed.registry.ref(repo, image.tag)
    return pushed.images[key]


@pytest.fixture(scope="session")
def musl_image(image_workdir) -> fx.Image:
    """An image of one dynamically linked musl program and musl's loader (no shell)."""
    if not fx.musl_available():
        pytest.skip(fx.MUSL_MISSING)
    return fx.make_musl_layout(image_workdir / "musl")
