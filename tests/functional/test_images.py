"""Images: pulls from a real registry (docker-registry on loopback), the store's dedup and
deletion, imports, image metadata applied to sandboxes, layered images, snapshot -> image,
create with `pull_image`, and a server killed in the middle of a pull.

The test images are built offline once per run (framework/image_fixtures.py) and pushed to
a registry of the session (framework/image_plugin.py). The images directory is the one every
test server shares, so each run names its repositories `e2e-<token>/...` and each test
asserts on its own images only."""

from __future__ import annotations

import os
import subprocess
import shutil
import stat
import threading
from pathlib import Path

import pytest

from alcove.sandbox import SandboxClient
from framework import image_fixtures as fx
from framework.host import wait_for, wait_until
from framework.images_api import (
    LAYER_STATUSES,
    NAMESPACE_PREFIX,
    all_names,
    create_raw,
    delete_image,
    error_code,
    get_image,
    import_archive,
    list_images,
    pull,
    pull_events,
    pull_ok,
)
from framework.registry import PASSWORD, USER, ThrottledProxy, requires_registry
from framework.server import IMAGES_DIR, AlcoveServer

pytest_plugins = ["framework.image_plugin"]
pytestmark = requires_registry()


@pytest.fixture(scope="module")
def server():
    srv = AlcoveServer()
    srv.start()
    yield srv
    leaked = srv.live_sandboxes()
    srv.stop()
    shutil.rmtree(srv.data_dir, ignore_errors=True)
    assert not leaked, f"sandboxes still running at module end: {leaked}"


@pytest.fixture
def client(server):
    with SandboxClient(api_url=server.url) as c:
        yield c


def wait_file(sandbox, path: str, timeout: float = 30) -> bytes:
    got: dict[str, bytes] = {}

    def present() -> bool:
        try:
            got["data"] = sandbox.read_file(path)
            return True
        except Exception:  # noqa: BLE001 (not there yet)
            return False

    wait_until(present, f"{path} in the sandbox", timeout)
    return got["data"]


# --- pulls -----------------------------------------------------------------------------------
@pytest.mark.parametrize("fmt", ["oci", "v2s2"])
def test_pull_both_manifest_formats(server, registry, pushed, busybox_image, fmt):
    repo = pushed.repo(f"busybox-{fmt}")
    digest = registry.push(busybox_image.path, busybox_image.tag, repo, fmt=fmt)
    ref = registry.ref(repo, busybox_image.tag)
    info = pull_ok(server, ref)
    assert ref in info["names"]
    assert info["source"] == "pull"
    assert info["manifest_digest"] == digest
    assert [layer["diff_id"] for layer in info["layers"]] == busybox_image.diff_ids
    if fmt == "oci":
        assert [layer.get("digest") for layer in info["layers"]] == busybox_image.layer_digests
        assert info["id"] == busybox_image.config_digest
    for layer in info["layers"]:
        assert layer["size_bytes"] > 0 and layer["unpacked_size_bytes"] > 0
    assert info["size_bytes"] >= sum(layer["unpacked_size_bytes"] for layer in info["layers"])
    config = info["config"]
    assert fx.GREETING in config["env"]
    assert config["working_dir"] == fx.WORKDIR
    assert fx.EXPOSED_PORT in config["exposed_ports"]
    assert config["cmd"][:2] == ["/bin/sh", "-c"] and config["entrypoint"] == []
    # The same record by name, by id, and under the namespaced prefix.
    by_name = get_image(server, ref).json()
    assert by_name["id"] == info["id"]
    assert get_image(server, info["id"]).json()["names"] == by_name["names"]
    assert get_image(server, ref, NAMESPACE_PREFIX).json()["id"] == info["id"]
    assert any(i["id"] == info["id"] for i in list_images(server, NAMESPACE_PREFIX))


def test_pull_multiarch_picks_amd64(server, multiarch_ref, multiarch_image):
    _index, ids = multiarch_image
    info = pull_ok(server, multiarch_ref)
    assert info["id"] == ids["amd64"] != ids["arm64"]
    assert f"{fx.ARCH_ENV}=amd64" in info["config"]["env"]
    assert multiarch_ref in info["names"]


def test_pull_by_digest(server, registry, pushed, layered_image):
    repo = pushed.repo("by-digest")
    digest = registry.push(layered_image.path, layered_image.tag, repo)
    info = pull_ok(server, registry.digest_ref(repo, digest), name=f"{repo}:pinned")
    assert info["manifest_digest"] == digest
    assert info["id"] == layered_image.config_digest
    assert f"{repo}:pinned" in info["names"]
    assert get_image(server, f"{repo}:pinned").json()["id"] == info["id"]


def test_pull_progress_events(server, registry, pushed, tmp_path):
    image = fx.unique_image(tmp_path, "progress")
    ref = registry.ref(pushed.repo("progress"), "latest")
    registry.push(image.path, image.tag, pushed.repo("progress"))
    status, events = pull_events(server, ref)
    assert status == 200, events
    names = [e.name for e in events]
    assert names[0] == "resolved" and names[-1] == "done", names
    assert "error" not in names
    resolved = events[0].data
    assert [layer["digest"] for layer in resolved["layers"]] == image.layer_digests
    layer_events = [e.data for e in events if e.name == "layer"]
    assert layer_events, names
    for ev in layer_events:
        assert ev["status"] in LAYER_STATUSES, ev
        assert 0 <= ev["current_bytes"] <= ev["total_bytes"], ev
    (digest,) = image.layer_digests
    statuses = [ev["status"] for ev in layer_events if ev["digest"] == digest]
    assert statuses[-1] == "done", statuses  # new to this store: fetched, not "exists"
    assert "exists" not in statuses
    final = [ev for ev in layer_events if ev["digest"] == digest][-1]
    assert final["current_bytes"] == final["total_bytes"] == image.layout.manifest("latest")[
        "layers"][0]["size"]
    done = events[-1].data["image"]
    assert done["id"] == image.config_digest and ref in done["names"]
    delete_image(server, ref)


def test_pull_with_credentials(server, auth_registry, busybox_image, run_token):
    repo = f"e2e-{run_token}/private"
    auth_registry.push(busybox_image.path, busybox_image.tag, repo)
    ref = auth_registry.ref(repo, busybox_image.tag)
    info = pull_ok(server, ref, username=USER, password=PASSWORD)
    assert info["id"] == busybox_image.config_digest and ref in info["names"]


def test_pull_with_a_wrong_password_is_refused(server, auth_registry, busybox_image, run_token):
    repo = f"e2e-{run_token}/private-wrong"
    auth_registry.push(busybox_image.path, busybox_image.tag, repo)
    ref = auth_registry.ref(repo, busybox_image.tag)
    for creds in ({"username": USER, "password": PASSWORD + "-wrong"}, {}):
        resp = pull(server, ref, **creds)
        assert resp.status_code in (401, 403), resp.text
        assert error_code(resp) == "REGISTRY_UNAUTHORIZED", resp.text
        assert resp.json()["message"], resp.text
        assert PASSWORD not in resp.text
    assert ref not in all_names(server)


def test_pull_unknown_tag_is_404(server, registry, busybox_ref):
    missing = busybox_ref.rsplit(":", 1)[0] + ":no-such-tag"
    resp = pull(server, missing)
    assert resp.status_code == 404, resp.text
    assert error_code(resp) == "NOT_FOUND"
    assert missing not in all_names(server)
    status, events = pull_events(server, missing)
    error = events[-1]
    assert error.name == "error", [e.name for e in events]
    assert error.data.get("status", status) == 404 and error.data["code"] == "NOT_FOUND"


# --- the store: dedup, delete, GC ------------------------------------------------------------
def test_shared_base_is_stored_once(server, registry, pushed, shared_pair):
    a, b = shared_pair
    ref_a = registry.ref(pushed.repo("pair"), "a")
    ref_b = registry.ref(pushed.repo("pair"), "b")
    registry.push(a.path, "a", pushed.repo("pair"))
    registry.push(b.path, "b", pushed.repo("pair"))
    info_a = pull_ok(server, ref_a)
    status, events = pull_events(server, ref_b)
    assert status == 200 and events[-1].name == "done", [e.name for e in events]
    base, top_b = b.layer_digests
    final = {}
    for ev in (e.data for e in events if e.name == "layer"):
        final[ev["digest"]] = ev["status"]
    assert final[base] == "exists", final
    assert final[top_b] == "done", final
    info_b = get_image(server, ref_b).json()
    assert info_a["layers"][0]["diff_id"] == info_b["layers"][0]["diff_id"] == b.diff_ids[0]
    assert info_a["layers"][1]["diff_id"] != info_b["layers"][1]["diff_id"]
    # One unpacked copy of the base on disk.
    assert fx.layer_dir(IMAGES_DIR / "store", b.diff_ids[0]).is_dir()


def test_delete_is_refused_while_in_use_then_frees(server, client, registry, pushed, tmp_path):
    image = fx.unique_image(tmp_path, "inuse")
    repo = pushed.repo("inuse")
    registry.push(image.path, image.tag, repo)
    ref = registry.ref(repo, "latest")
    info = pull_ok(server, ref)
    layer = fx.layer_dir(IMAGES_DIR / "store", image.diff_ids[0])
    assert layer.is_dir()
    sandbox = client.create_and_connect(image=ref)
    snap = None
    try:
        assert sandbox.run("/bin/busybox", ["echo", "up"]).stdout == "up"
        resp = delete_image(server, ref)
        assert resp.status_code == 409, resp.text
        assert error_code(resp) == "IMAGE_IN_USE"
        used_by = get_image(server, ref).json()["used_by"]
        assert sandbox.sandbox_id in used_by["sandboxes"]
        snap = client.snapshot_and_wait(sandbox.sandbox_id, snapshot_type="filesystem")
        sandbox.terminate()
        # The snapshot alone keeps it.
        resp = delete_image(server, ref)
        assert resp.status_code == 409, resp.text
        used_by = get_image(server, ref).json()["used_by"]
        assert used_by["sandboxes"] == [] and snap.snapshot_id in used_by["snapshots"]
        client.delete_snapshot(snap.snapshot_id)
        snap = None
    finally:
        if snap is not None:
            client.delete_snapshot(snap.snapshot_id)
        try:
            client.delete(sandbox.sandbox_id)
        except Exception:  # noqa: BLE001 (already deleted)
            pass
    resp = delete_image(server, ref)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert ref in body["untagged"] and info["id"] in body["deleted"]
    # Its one layer was its own: blob and unpacked files are freed.
    assert body["freed_bytes"] >= info["layers"][0]["unpacked_size_bytes"] > 256 * 1024
    assert get_image(server, ref).status_code == 404
    assert get_image(server, info["id"]).status_code == 404
    assert not layer.exists()
    assert not (IMAGES_DIR / "store" / "blobs" / "sha256" / image.layer_digests[0].split(":")[1]).exists()


def test_delete_of_one_name_keeps_a_shared_image(server, registry, pushed, busybox_image):
    repo = pushed.repo("two-names")
    registry.push(busybox_image.path, busybox_image.tag, repo)
    ref = registry.ref(repo, busybox_image.tag)
    info = pull_ok(server, ref, name=f"{repo}:other-name")
    assert {ref, f"{repo}:other-name"} <= set(info["names"])
    body = delete_image(server, f"{repo}:other-name").json()
    assert body["untagged"] == [f"{repo}:other-name"]
    assert body["deleted"] == [] and body["freed_bytes"] == 0
    assert get_image(server, ref).json()["id"] == info["id"]
    assert delete_image(server, "nope/never:pulled").status_code == 404


# --- sandboxes of images ---------------------------------------------------------------------
def test_sandbox_applies_image_metadata(server, client, busybox_ref):
    """Env, WorkingDir and ExposedPorts of the image apply, and with no `entrypoint` in the
    create body the image's Entrypoint + Cmd is started as the sandbox's entrypoint."""
    pull_ok(server, busybox_ref)
    with client.create_and_connect(image=busybox_ref) as sb:
        env = sb.run("env").stdout.splitlines()
        assert fx.GREETING in env
        assert sb.run("pwd").stdout == fx.WORKDIR
        assert sb.run("cat", ["hello.txt"]).stdout == "hello from the image"
        # A call's own env and working dir win over the image's.
        assert sb.run("sh", ["-c", "echo $GREETING"], env={"GREETING": "mine"}).stdout == "mine"
        assert sb.run("pwd", working_dir="/tmp").stdout == "/tmp"
        assert wait_file(sb, fx.CMD_MARKER) == b"cmd\n"
        assert fx.EXPOSED_PORT in client.get(sb.sandbox_id).exposed_ports
        assert sb.run("id", ["-u"]).stdout == "0"


def test_sandbox_runs_as_the_image_user(server, client, busybox_user_ref):
    pull_ok(server, busybox_user_ref)
    with client.create_and_connect(image=busybox_user_ref) as sb:
        assert sb.run("id", ["-u"]).stdout == "1000"
        assert sb.run("id", ["-g"]).stdout == "1000"


def test_create_entrypoint_replaces_the_image_entrypoint_and_cmd(
    server, client, busybox_entrypoint_ref
):
    """The create body's `entrypoint` replaces the image's Entrypoint *and* Cmd (it is
    not appended to the Entrypoint as Docker's `docker run image args` would)."""
    pull_ok(server, busybox_entrypoint_ref)
    with client.create_and_connect(image=busybox_entrypoint_ref) as sb:
        assert wait_file(sb, fx.ENTRYPOINT_MARKER) == b"ep\n"
    mine = ["/bin/sh", "-c", "echo mine > /tmp/mine; exec sleep 600"]
    with client.create_and_connect(image=busybox_entrypoint_ref, entrypoint=mine) as sb:
        assert wait_file(sb, "/tmp/mine") == b"mine\n"
        assert client.get(sb.sandbox_id).entrypoint == mine
        procs = sb.list_processes()
        commands = [" ".join([p.command, *p.args]) for p in procs]
        assert not any(fx.ENTRYPOINT_MARKER in c for c in commands), commands
        assert sb.run("test", ["-e", fx.ENTRYPOINT_MARKER]).exit_code == 1


def test_distroless_image_runs_by_absolute_path(server, client, distroless_ref):
    pull_ok(server, distroless_ref)
    with client.create_and_connect(image=distroless_ref) as sb:
        assert sb.run("/bin/busybox", ["echo", "hi"]).stdout == "hi"
        assert sb.run("/bin/busybox", ["test", "-e", "/bin/sh"]).exit_code == 1


def test_layered_image_semantics(server, client, layered_ref, layered_image):
    info = pull_ok(server, layered_ref)
    assert [layer["diff_id"] for layer in info["layers"]] == layered_image.diff_ids
    with client.create_and_connect(image=layered_ref) as sb:
        assert sb.run("test", ["-e", fx.LAYERED["whited_out"]]).exit_code == 1
        assert sb.run("cat", [fx.LAYERED["kept"]]).stdout == "still here"
        assert sb.run("ls", ["-A", fx.LAYERED["opaque_dir"]]).stdout.split() == [
            fx.LAYERED["opaque_new"]]
        hl1, hl2 = fx.LAYERED["hardlinks"]
        inodes = sb.run("stat", ["-c", "%i %h", hl1, hl2]).stdout.splitlines()
        assert inodes[0] == inodes[1] and inodes[0].split()[1] == "2", inodes
        link, target = fx.LAYERED["symlink"]
        assert sb.run("readlink", [link]).stdout == target
        assert sb.read_file(link) == fx.HARDLINK_CONTENT
        assert sb.read_file(fx.LAYERED["xattr_file"]) == b"has an xattr\n"
    # busybox has no getfattr: the xattr, the whiteout and the opaque mark are checked in the
    # store's copy of the top layer (overlayfs form).
    top = fx.layer_dir(IMAGES_DIR / "store", layered_image.diff_ids[-1])
    xfile = top / fx.LAYERED["xattr_file"].lstrip("/")
    assert os.getxattr(xfile, fx.XATTR_NAME) == fx.XATTR_VALUE.encode()
    whiteout = os.lstat(top / fx.LAYERED["whited_out"].lstrip("/"))
    assert stat.S_ISCHR(whiteout.st_mode) and whiteout.st_rdev == 0
    opaque = top / fx.LAYERED["opaque_dir"].lstrip("/")
    assert os.getxattr(opaque, "trusted.overlay.opaque") == b"y"
    assert not (opaque / ".wh..wh..opq").exists()


# --- imports ---------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["docker-save", "skopeo-docker-archive", "oci-archive"])
def test_import_archives(server, client, busybox_image, run_token, tmp_path, kind):
    name = f"e2e-{run_token}/imported-{kind}:v1"
    if kind == "docker-save":
        archive = fx.write_docker_archive(busybox_image, tmp_path / "a.tar", name)
    elif kind == "skopeo-docker-archive":
        # skopeo's form: layers as `<hex>.tar` at the top, `<id>/layer.tar` links to them.
        archive = tmp_path / "a.tar"
        subprocess.run(["skopeo", "copy", "--quiet",
                        f"oci:{busybox_image.path}:{busybox_image.tag}",
                        f"docker-archive:{archive}:{name}"], check=True)
    else:
        archive = fx.write_oci_archive(busybox_image, tmp_path / "a.tar")
    resp = import_archive(server, archive, name)
    assert resp.status_code in (200, 201), resp.text
    info = resp.json()
    assert info["source"] == "import" and name in info["names"]
    assert [layer["diff_id"] for layer in info["layers"]] == busybox_image.diff_ids
    assert info["id"] == busybox_image.config_digest
    assert fx.GREETING in info["config"]["env"]
    with client.create_and_connect(image=name) as sb:
        assert sb.run("cat", ["/work/hello.txt"]).stdout == "hello from the image"
    assert delete_image(server, name).status_code == 200


# --- snapshot -> image, create with pull_image -----------------------------------------------
def test_snapshot_to_image(server, client, busybox_ref, run_token):
    pull_ok(server, busybox_ref)
    name = f"e2e-{run_token}/from-snapshot:1"
    with client.create_and_connect(image=busybox_ref) as source:
        source.write_file("/root/saved.txt", b"kept in the image")
        snap = client.snapshot_and_wait(source.sandbox_id, snapshot_type="filesystem")
    try:
        # The built-in images' names are every namespace's default: no snapshot takes them.
        builtin = server.api("GET", "/images/default").json()["id"]
        for taken in ("default", "alcove/debian:latest", "debian"):
            refused = server.api("POST", f"/snapshots/{snap.snapshot_id}/image", json={"name": taken})
            assert refused.status_code == 400 and "built-in" in refused.json()["message"], refused.text
        for taken in ("default", "alcove/debian", "debian"):
            assert server.api("GET", f"/images/{taken}").json()["id"] == builtin, taken
        resp = server.api("POST", f"/snapshots/{snap.snapshot_id}/image", json={"name": name})
        assert resp.status_code in (200, 201), resp.text
        info = resp.json()
        assert info["source"] == "snapshot" and name in info["names"]
        assert fx.GREETING in info["config"]["env"]  # the base's config carries over
        with client.create_and_connect(image=name) as sb:
            assert sb.read_file("/root/saved.txt") == b"kept in the image"
            assert sb.run("pwd").stdout == fx.WORKDIR
    finally:
        client.delete_snapshot(snap.snapshot_id)
    assert delete_image(server, name).status_code == 200


def test_create_with_pull_image(server, client, registry, pushed, busybox_image):
    repo = pushed.repo("autopull")
    registry.push(busybox_image.path, busybox_image.tag, repo)
    ref = registry.ref(repo, busybox_image.tag)
    assert get_image(server, ref).status_code == 404
    resp = server.api("POST", "/sandboxes", json={"image": ref})
    assert resp.status_code in (400, 404), resp.text
    assert "image" in resp.json()["message"].lower()
    sandbox_id = create_raw(server, {"image": ref, "pull_image": True})
    try:
        sb = client.connect(sandbox_id)
        assert fx.GREETING in sb.run("env").stdout.splitlines()
        assert get_image(server, ref).json()["id"] == busybox_image.config_digest
    finally:
        client.delete(sandbox_id)


# --- a crash in the middle of a pull ---------------------------------------------------------
def test_sigkill_during_pull_leaves_no_half_image(registry, pushed, debian_image):
    """The server is SIGKILLed while it fetches the Debian image (~90 MB, through a relay
    that sends 4 MB/s); after a restart on the same data dir the image is not listed, no
    layer or blob of it is in the store, the store's tmp/ is empty, and a new pull works."""
    repo = pushed.repo("debian-crash")
    registry.push(debian_image.path, debian_image.tag, repo)
    (layer_digest,) = debian_image.layer_digests
    (diff_id,) = debian_image.diff_ids
    srv = AlcoveServer()
    srv.start()
    try:
        # A previous run may have stored the same (cached) image: start without it.
        if get_image(srv, debian_image.config_digest).status_code == 200:
            for name in get_image(srv, debian_image.config_digest).json()["names"]:
                delete_image(srv, name)
            delete_image(srv, debian_image.config_digest)
        assert not fx.layer_dir(IMAGES_DIR / "store", diff_id).exists()
        with ThrottledProxy(registry.port, 4 << 20) as proxy:
            ref = f"{proxy.host}/{repo}:{debian_image.tag}"
            result: dict[str, object] = {}

            def do_pull() -> None:
                try:
                    result["resp"] = pull(srv, ref, timeout=300)
                except Exception as exc:  # noqa: BLE001 (the server dies under it)
                    result["err"] = exc

            t = threading.Thread(target=do_pull, daemon=True)
            t.start()
            assert wait_for(lambda: proxy.forwarded > 6 << 20, 120), "the pull never started"
            srv.kill()
            t.join(60)
        assert "resp" not in result or result["resp"].status_code >= 500  # type: ignore[union-attr]
        srv.start()
        assert ref not in all_names(srv)
        assert all(i["id"] != debian_image.config_digest for i in list_images(srv))
        assert get_image(srv, ref).status_code == 404
        assert not fx.layer_dir(IMAGES_DIR / "store", diff_id).exists()
        assert not (IMAGES_DIR / "store" / "blobs" / "sha256" / layer_digest.split(":")[1]).exists()
        tmp = IMAGES_DIR / "store" / "tmp"
        assert not tmp.exists() or not any(tmp.iterdir()), sorted(os.listdir(tmp))
        # And the store still works: the same pull, straight from the registry, completes.
        info = pull_ok(srv, registry.ref(repo, debian_image.tag))
        assert info["id"] == debian_image.config_digest
        assert fx.layer_dir(IMAGES_DIR / "store", diff_id).is_dir()
        assert delete_image(srv, registry.ref(repo, debian_image.tag)).status_code == 200
    finally:
        srv.stop()
        shutil.rmtree(srv.data_dir, ignore_errors=True)

