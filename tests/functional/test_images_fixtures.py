"""The image tests' own fixtures, checked without an Alcove server: each test image is what
it claims to be (by skopeo, umoci and a chroot into its unpacked tree), each pushes to the
test registry and reads back, and each hostile image really carries its attack."""

from __future__ import annotations

import gzip
import io
import json
import os
import subprocess
import tarfile
import tempfile
from pathlib import Path

import httpx
import pytest

from framework import image_fixtures as fx
from framework.registry import PASSWORD, USER, Registry, RegistryError, ThrottledProxy
from framework.oci_layout import Layout
from framework.registry import requires_registry

pytest_plugins = ["framework.image_plugin"]
pytestmark = requires_registry()


def unpack(image: fx.Image, dest: Path) -> Path:
    """umoci's unpack of the image (applying whiteouts as a runtime would): its rootfs."""
    fx.umoci("unpack", "--image", f"{image.path}:{image.tag}", dest)
    return dest / "rootfs"


def chroot(rootfs: Path, *argv: str) -> str:
    return subprocess.run(["chroot", str(rootfs), *argv], capture_output=True, text=True,
                          check=True, timeout=30).stdout


def layer_members(layout: Layout, tag: str, index: int) -> list[tarfile.TarInfo]:
    desc = layout.manifest(tag)["layers"][index]
    raw = layout.uncompressed_layer(desc["digest"], desc["mediaType"])
    with tarfile.open(fileobj=io.BytesIO(raw)) as tar:
        return tar.getmembers()


def test_busybox_image_config_and_tree(busybox_image, tmp_path):
    info = fx.skopeo_inspect(busybox_image.oci_ref)
    assert info["Architecture"] == "amd64" and info["Os"] == "linux"
    assert fx.GREETING in info["Env"]
    config = fx.skopeo_inspect(busybox_image.oci_ref, "--config")["config"]
    assert config["WorkingDir"] == fx.WORKDIR
    assert config["ExposedPorts"] == {f"{fx.EXPOSED_PORT}/tcp": {}}
    assert config["Cmd"][:2] == ["/bin/sh", "-c"] and fx.CMD_MARKER in config["Cmd"][2]
    assert "User" not in config and "Entrypoint" not in config
    rootfs = unpack(busybox_image, tmp_path / "b")
    assert os.readlink(rootfs / "bin" / "sh") == "busybox"
    assert (rootfs / "work").is_dir()
    out = chroot(rootfs, "/bin/sh", "-c", "cd /work && cat hello.txt && id -u app")
    assert out.splitlines() == ["hello from the image", "1000"]


def test_busybox_variants(busybox_image):
    layout = busybox_image.layout
    assert layout.config("user")["config"]["User"] == "1000:1000"
    ep = layout.config("entrypoint")["config"]
    assert ep["Entrypoint"] == ["/bin/sh", "-c"] and fx.ENTRYPOINT_MARKER in ep["Cmd"][0]
    # Variants differ in config only: one layer blob for all.
    assert layout.layer_digests("user") == layout.layer_digests("latest")
    assert layout.layer_digests("entrypoint") == layout.layer_digests("latest")
    assert len({layout.config_digest(t) for t in ("latest", "user", "entrypoint")}) == 3


def test_layered_image_has_an_opaque_whiteout_and_applies(layered_image, tmp_path):
    names = [m.name for m in layer_members(layered_image.layout, "layered", -1)]
    assert "etc/opq/.wh..wh..opq" in names and "etc/.wh.gone.txt" in names
    members = {m.name: m for m in layer_members(layered_image.layout, "layered", -1)}
    assert members["data/hl2"].islnk() and members["data/hl2"].linkname == "data/hl1"
    assert members["data/link"].issym()
    assert members["data/xattr.txt"].pax_headers["SCHILY.xattr.user.test"] == fx.XATTR_VALUE
    assert len(layered_image.layer_digests) == 3  # busybox, the base files, the top layer
    rootfs = unpack(layered_image, tmp_path / "l")
    assert not (rootfs / "etc" / "gone.txt").exists()
    assert (rootfs / "etc" / "kept.txt").read_text() == "still here\n"
    assert sorted(os.listdir(rootfs / "etc" / "opq")) == ["new.txt"]
    hl1, hl2 = (rootfs / p.lstrip("/") for p in fx.LAYERED["hardlinks"])
    assert hl1.stat().st_ino == hl2.stat().st_ino and hl1.read_bytes() == fx.HARDLINK_CONTENT
    assert os.readlink(rootfs / "data" / "link") == "hl1"
    assert os.getxattr(rootfs / "data" / "xattr.txt", fx.XATTR_NAME) == fx.XATTR_VALUE.encode()


def test_shared_pair_shares_its_base_blob(shared_pair, registry, run_token):
    a, b = shared_pair
    assert a.layer_digests[0] == b.layer_digests[0]
    assert a.layer_digests[1] != b.layer_digests[1]
    assert a.diff_ids[0] == b.diff_ids[0]
    repo = f"fixtures-{run_token}/pair"
    registry.push(a.path, a.tag, repo)
    registry.push(b.path, b.tag, repo)
    for image in (a, b):
        assert registry.inspect(repo, image.tag)["Layers"] == image.layer_digests


@pytest.mark.parametrize("fmt", ["oci", "v2s2"])
def test_push_and_inspect_back(busybox_image, registry, run_token, fmt):
    repo = f"fixtures-{run_token}/busybox-{fmt}"
    digest = registry.push(busybox_image.path, busybox_image.tag, repo, fmt=fmt)
    raw, served = registry.manifest(repo, busybox_image.tag)
    assert served == digest
    want = {"oci": "application/vnd.oci.image.manifest.v1+json",
            "v2s2": "application/vnd.docker.distribution.manifest.v2+json"}[fmt]
    # umoci leaves the optional mediaType out of an OCI manifest; skopeo's v2s2 has it.
    assert raw.get("mediaType", "application/vnd.oci.image.manifest.v1+json") == want
    if fmt == "oci":
        assert digest == busybox_image.manifest_digest
    info = registry.inspect(repo, busybox_image.tag)
    assert fx.GREETING in info["Env"] and info["Digest"] == digest


def test_multiarch_index(multiarch_image, registry, run_token):
    image, ids = multiarch_image
    assert ids["amd64"] != ids["arm64"]
    assert image.layout.config("arm64")["architecture"] == "arm64"
    repo = f"fixtures-{run_token}/multi"
    registry.push_index(image.path, image.tag, repo)
    index, _ = registry.manifest(repo, image.tag)
    assert sorted(m["platform"]["architecture"] for m in index["manifests"]) == ["amd64", "arm64"]
    for arch in ("amd64", "arm64"):
        out = subprocess.run(
            ["skopeo", "inspect", "--tls-verify=false", "--override-arch", arch, "--config",
             f"docker://{registry.ref(repo, image.tag)}"],
            capture_output=True, text=True, check=True,
        ).stdout
        config = json.loads(out)
        assert config["architecture"] == arch
        assert f"{fx.ARCH_ENV}={arch}" in config["config"]["Env"]


def test_distroless_has_no_shell(distroless_image, tmp_path):
    rootfs = unpack(distroless_image, tmp_path / "d")
    assert not (rootfs / "bin" / "sh").exists()
    assert sorted(os.listdir(rootfs / "bin")) == ["busybox"]
    assert chroot(rootfs, "/bin/busybox", "echo", "hi") == "hi\n"
    assert "Cmd" not in distroless_image.config()["config"]


def test_debian_image_is_cached_and_pushes(debian_image, registry, run_token):
    assert debian_image.path.is_relative_to(fx.CACHE_DIR)
    again = fx.make_debian_layout()  # from the cache: the same layout, not a rebuild
    assert again.path == debian_image.path and again.manifest_digest == debian_image.manifest_digest
    (layer,) = debian_image.layout.manifest("latest")["layers"]
    assert layer["size"] > 20 << 20
    repo = f"fixtures-{run_token}/debian"
    registry.push(debian_image.path, "latest", repo)
    assert registry.inspect(repo, "latest")["Layers"] == [layer["digest"]]


def test_archives(busybox_image, tmp_path):
    docker_tar = fx.write_docker_archive(busybox_image, tmp_path / "d.tar", "imp/busybox:docker")
    info = fx.skopeo_inspect(f"docker-archive:{docker_tar}")
    assert fx.GREETING in info["Env"]
    with tarfile.open(docker_tar) as tar:
        manifest = json.load(tar.extractfile("manifest.json"))
    assert manifest[0]["RepoTags"] == ["imp/busybox:docker"]
    assert [p.split("/")[0] for p in manifest[0]["Layers"]] == [
        d.split(":")[1] for d in busybox_image.diff_ids
    ]
    oci_tar = fx.write_oci_archive(busybox_image, tmp_path / "o.tar")
    assert fx.skopeo_inspect(f"oci-archive:{oci_tar}:{busybox_image.tag}")["Digest"] == (
        busybox_image.manifest_digest
    )


def test_hostile_layers_carry_their_attack(hostile_images, run_token, registry, tmp_path):
    def names(h: str) -> list[str]:
        layout = hostile_images[h].layout
        return [m.name for m in layer_members(layout, "latest", 0)]

    assert names("escape_dotdot") == [f"../../../../../../tmp/alcove-dotdot-{run_token}"]
    assert names("escape_abs") == [f"/etc/alcove-escape-{run_token}"]
    assert names("symlink_escape")[1] == f"evil/tmp/alcove-pwned-{run_token}"
    dev = {m.name: m for m in layer_members(hostile_images["chardev"].layout, "latest", 0)}
    assert dev["dev/mem"].ischr() and (dev["dev/mem"].devmajor, dev["dev/mem"].devminor) == (1, 1)
    links = layer_members(hostile_images["hardlink_shadow"].layout, "latest", 0)
    assert [m.linkname for m in links] == ["/etc/shadow", "../../../../../../etc/shadow"]
    for h in hostile_images.values():
        for path in h.host_paths:
            assert not path.exists(), path
        assert h.archive.stat().st_size > 0
    # The bomb: a small blob that inflates to 2 GiB.
    bomb = hostile_images["gzip_bomb"].layout
    desc = bomb.manifest("latest")["layers"][0]
    assert desc["size"] < 8 << 20
    with gzip.open(bomb.blob_path(desc["digest"])) as f:
        header = tarfile.TarInfo.frombuf(f.read(512), "utf-8", "surrogateescape")
    assert header.size == 2 << 30
    # The broken ones are broken: the cut gzip stream does not inflate; skopeo refuses to
    # copy a blob shorter than its descriptor or not of its digest; the registry refuses it.
    cut = hostile_images["truncated_gzip"].layout
    with pytest.raises((EOFError, OSError)):
        cut.uncompressed_layer(cut.layer_digests("latest")[0], "+gzip")
    for name in ("truncated_blob", "digest_mismatch"):
        proc = subprocess.run(
            ["skopeo", "copy", f"oci-archive:{hostile_images[name].archive}:latest",
             f"dir:{tmp_path / name}"], capture_output=True, text=True, check=False)
        assert proc.returncode != 0, name
    assert not hostile_images["digest_mismatch"].pushable
    broken = hostile_images["digest_mismatch"].layout
    layer = broken.manifest("latest")["layers"][0]
    with pytest.raises(RegistryError):
        registry.put_blob(f"fixtures-{run_token}/broken", broken.read_blob(layer["digest"]),
                          layer["digest"])
    # The valid hostile images push as they are (for the pull path of the safety tests).
    digest = registry.push_layout_raw(hostile_images["unknown_media"].layout, "latest",
                                      f"fixtures-{run_token}/unknown-media")
    raw, _ = registry.manifest(f"fixtures-{run_token}/unknown-media", digest)
    assert raw["layers"][0]["mediaType"] == "application/vnd.example.unknown"


def test_registry_auth_and_unknown_tag(busybox_image, auth_registry, run_token):
    repo = f"fixtures-{run_token}/auth"
    auth_registry.push(busybox_image.path, busybox_image.tag, repo)
    assert auth_registry.inspect(repo, busybox_image.tag)["Digest"] == busybox_image.manifest_digest
    anon = httpx.get(f"{auth_registry.url}/v2/{repo}/manifests/{busybox_image.tag}")
    assert anon.status_code == 401
    bad = httpx.get(f"{auth_registry.url}/v2/{repo}/manifests/{busybox_image.tag}",
                    auth=(USER, PASSWORD + "x"))
    assert bad.status_code == 401
    missing = httpx.get(f"{auth_registry.url}/v2/{repo}/manifests/no-such-tag",
                        auth=(USER, PASSWORD),
                        headers={"Accept": "application/vnd.oci.image.manifest.v1+json"})
    assert missing.status_code == 404


def test_registry_stops_and_cleans_up():
    reg = Registry().start()
    state_dir, proc = reg.dir, reg.proc
    assert state_dir is not None and state_dir.is_dir() and proc is not None
    reg.stop()
    assert proc.poll() is not None
    assert not state_dir.exists()


def test_throttled_proxy_relays_everything(busybox_image, registry, run_token):
    repo = f"fixtures-{run_token}/proxied"
    registry.push(busybox_image.path, busybox_image.tag, repo)
    digest = busybox_image.layer_digests[0]
    with ThrottledProxy(registry.port, 8 << 20) as proxy:
        body = httpx.get(f"http://{proxy.host}/v2/{repo}/blobs/{digest}", timeout=60).content
        assert proxy.forwarded >= len(body)
    assert body == busybox_image.layout.read_blob(digest)


def test_layer_dir_path():
    path = fx.layer_dir(Path("/x"), "sha256:" + "ab" * 32)
    assert path == Path("/x/layers/sha256") / ("ab" * 32) / "fs"


def test_scratch_dir_is_not_left(tmp_path):
    """The image builders leave nothing in the temp directory they are given but the layout."""
    fx.make_distroless_layout(tmp_path / "d")
    assert sorted(os.listdir(tmp_path)) == ["d"]
    with tempfile.TemporaryDirectory() as tmp:
        fx.make_busybox_layout(Path(tmp) / "b")
        assert sorted(os.listdir(tmp)) == ["b"]
