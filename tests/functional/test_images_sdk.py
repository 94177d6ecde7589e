"""Images through the Python SDK (`SandboxClient` / `AsyncSandboxClient`) against a real
server and a real registry: pulls followed with `on_progress`, `used_by` and deletion of an
image in use, imports, the `Image` DSL and Dockerfile builds (with a `.dockerignore`), build
failures, snapshot -> image, create with `pull_image`, registry credentials, and an image of
a dynamically linked musl program.

The test images are built offline once per run (framework/image_fixtures.py) and pushed to
a registry of the session (framework/image_plugin.py). The images directory is shared by
every test server, so each test names its images `e2e-<token>/sdk-...` and deletes them."""

from __future__ import annotations

import contextlib
import gzip
import io
import secrets
import shutil
import tarfile
from pathlib import Path
from typing import Callable, Iterator

import pytest

from alcove.sandbox import (
    AsyncSandboxClient,
    BuildOutputEvent,
    BuildStepEvent,
    Image,
    ImageBuildError,
    ImageDoneEvent,
    ImageErrorEvent,
    ImageInUseError,
    ImageLayerEvent,
    ImageNotFoundError,
    ImageResolvedEvent,
    RegistryAuthenticationError,
    RemoteAPIError,
    SandboxClient,
)
from framework import image_fixtures as fx
from framework.registry import PASSWORD, USER, requires_registry
from framework.server import AlcoveServer

pytest_plugins = ["framework.image_plugin"]
pytestmark = requires_registry()

# Every RUN of a build here needs no network.
OFFLINE = {"allow_internet": False}


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
def client(server) -> Iterator[SandboxClient]:
    with SandboxClient(api_url=server.url) as c:
        yield c


@pytest.fixture
async def aclient(server):
    async with AsyncSandboxClient(api_url=server.url) as c:
        yield c


@pytest.fixture(scope="module")
def base(server, busybox_ref) -> Iterator[str]:
    """The busybox test image in the store, the base of the builds. Pulled by the SDK; removed
    at the end of the module if this module was the one that pulled it."""
    with SandboxClient(api_url=server.url) as c:
        try:
            c.get_image(busybox_ref)
            ours = False
        except ImageNotFoundError:
            ours = True
        c.pull_image(busybox_ref)
        yield busybox_ref
        if ours:
            with contextlib.suppress(ImageNotFoundError):
                c.delete_image(busybox_ref)


@pytest.fixture
def names(client, run_token) -> Iterator[Callable[..., str]]:
    """`names("label")` gives `e2e-<token>/sdk-<label>-<random>:1`; each name given is deleted
    from the store at the end of the test (if it is still there)."""
    given: list[str] = []

    def make(label: str, tag: str = "1") -> str:
        name = f"e2e-{run_token}/sdk-{label}-{secrets.token_hex(3)}:{tag}"
        given.append(name)
        return name

    yield make
    for name in given:
        with contextlib.suppress(ImageNotFoundError):
            client.delete_image(name)


def push_unique(registry, pushed, tmp_path: Path, label: str) -> tuple[fx.Image, str]:
    """A unique image pushed to `e2e-<token>/<label>-<random>:latest`: (image, reference)."""
    image = fx.unique_image(tmp_path, label, random_kib=64)
    repo = pushed.repo(f"{label}-{secrets.token_hex(3)}")
    registry.push(image.path, image.tag, repo)
    return image, registry.ref(repo, image.tag)


def kinds(events: list) -> list[str]:
    return [e.event for e in events]


def context_dir(tmp_path: Path, dockerfile: str) -> Path:
    """A build context directory: a Dockerfile, a `.dockerignore`, files it keeps and leaves
    out."""
    ctx = tmp_path / "ctx"
    (ctx / "sub").mkdir(parents=True)
    (ctx / "logs").mkdir()
    (ctx / "Dockerfile").write_text(dockerfile)
    (ctx / ".dockerignore").write_text("# left out of the context\nsecret.env\nlogs\n*.tmp\n!keep.tmp\n")
    (ctx / "kept.txt").write_text("kept\n")
    (ctx / "sub" / "nested.txt").write_text("nested\n")
    (ctx / "secret.env").write_text("TOKEN=must-not-be-sent\n")
    (ctx / "logs" / "build.log").write_text("noise\n")
    (ctx / "scratch.tmp").write_text("scratch\n")
    (ctx / "keep.tmp").write_text("re-included\n")
    return ctx


# --- pulls -----------------------------------------------------------------------------------
def test_pull_image_with_progress(client, registry, pushed, names, tmp_path):
    image, ref = push_unique(registry, pushed, tmp_path, "sdk-pull")
    alias = names("pulled-alias")
    events: list = []
    info = client.pull_image(ref, name=alias, on_progress=events.append)
    seen = kinds(events)
    assert seen[0] == "resolved" and seen[-1] == "done", seen
    assert "layer" in seen and "error" not in seen, seen
    assert isinstance(events[0], ImageResolvedEvent) and isinstance(events[-1], ImageDoneEvent)
    assert [layer.digest for layer in events[0].layers] == image.layer_digests
    layers = [e for e in events if isinstance(e, ImageLayerEvent)]
    (digest,) = image.layer_digests
    assert layers[-1].digest == digest and str(layers[-1].status) == "done", layers[-1]
    assert layers[-1].current_bytes == layers[-1].total_bytes > 0
    # The returned image is the done event's, named by the reference and the alias.
    assert {ref, alias} <= set(info.names), info.names
    assert info == events[-1].image
    assert info.id == image.config_digest and str(info.source) == "pull"
    assert [layer.diff_id for layer in info.layers] == image.diff_ids
    assert fx.PATH_ENV in info.config.env
    listed = {i.id: i for i in client.list_images()}
    assert {ref, alias} <= set(listed[info.id].names)
    assert client.get_image(alias).id == info.id
    assert client.get_image(info.id).id == info.id
    client.delete_image(alias)
    result = client.delete_image(ref)
    assert result.untagged == [ref] and result.deleted == [info.id] and result.freed_bytes > 0
    with pytest.raises(ImageNotFoundError):
        client.get_image(info.id)


def test_pull_without_progress_and_unknown_tag(client, registry, pushed, tmp_path):
    image, ref = push_unique(registry, pushed, tmp_path, "sdk-pull-plain")
    info = client.pull_image(ref)
    try:
        assert ref in info.names and info.id == image.config_digest
    finally:
        client.delete_image(ref)
    missing = ref.rsplit(":", 1)[0] + ":no-such-tag"
    with pytest.raises(ImageNotFoundError) as err:
        client.pull_image(missing)
    assert err.value.code == "NOT_FOUND"
    events: list = []
    with pytest.raises(ImageNotFoundError):
        client.pull_image(missing, on_progress=events.append)


def test_wrong_registry_password_raises(client, auth_registry, busybox_image, run_token):
    repo = f"e2e-{run_token}/sdk-private-{secrets.token_hex(3)}"
    auth_registry.push(busybox_image.path, busybox_image.tag, repo)
    ref = auth_registry.ref(repo, busybox_image.tag)
    wrong = PASSWORD + "-wrong"
    with pytest.raises(RegistryAuthenticationError) as err:
        client.pull_image(ref, username=USER, password=wrong)
    assert err.value.code == "REGISTRY_UNAUTHORIZED" and err.value.status_code in (401, 403)
    assert wrong not in str(err.value) and PASSWORD not in str(err.value)
    events: list = []
    with pytest.raises(RegistryAuthenticationError) as err:
        client.pull_image(ref, username=USER, password=wrong, on_progress=events.append)
    assert err.value.code == "REGISTRY_UNAUTHORIZED"
    assert "done" not in kinds(events)
    with pytest.raises(RegistryAuthenticationError):
        client.pull_image(ref)  # no credentials at all
    with pytest.raises(ImageNotFoundError):
        client.get_image(ref)
    # The right password pulls it.
    info = client.pull_image(ref, username=USER, password=PASSWORD)
    try:
        assert ref in info.names and info.id == busybox_image.config_digest
    finally:
        client.delete_image(ref)


# --- used_by, delete -------------------------------------------------------------------------
def test_used_by_and_delete_refused_while_in_use(client, registry, pushed, tmp_path):
    image, ref = push_unique(registry, pushed, tmp_path, "sdk-inuse")
    info = client.pull_image(ref)
    try:
        assert client.get_image(ref).used_by.sandboxes == []
        sandbox = client.create_and_connect(image=ref)
        try:
            assert sandbox.run("cat", ["/sdk-inuse.bin"]).exit_code == 0
            used_by = client.get_image(ref).used_by
            assert used_by is not None and sandbox.sandbox_id in used_by.sandboxes
            with pytest.raises(ImageInUseError) as err:
                client.delete_image(ref)
            assert err.value.code == "IMAGE_IN_USE" and err.value.status_code == 409
            assert client.get_image(ref).id == info.id  # still there
        finally:
            sandbox.terminate()
        assert client.get_image(ref).used_by.sandboxes == []
        result = client.delete_image(ref)
        assert result.untagged == [ref] and result.deleted == [info.id]
        with pytest.raises(ImageNotFoundError):
            client.get_image(ref)
        with pytest.raises(ImageNotFoundError) as err:
            client.delete_image(ref)
        assert err.value.status_code == 404
    finally:
        with contextlib.suppress(ImageNotFoundError):
            client.delete_image(ref)


# --- imports ---------------------------------------------------------------------------------
def test_import_docker_save_archive(client, busybox_image, names, tmp_path):
    in_archive = names("imported")
    archive = fx.write_docker_archive(busybox_image, tmp_path / "busybox.tar", in_archive)
    info = client.import_image(archive)  # named by the archive's RepoTags
    assert str(info.source) == "import" and in_archive in info.names
    assert info.id == busybox_image.config_digest
    assert [layer.diff_id for layer in info.layers] == busybox_image.diff_ids
    assert fx.GREETING in info.config.env and info.config.working_dir == fx.WORKDIR
    # Once more under a name of its own: the same image, two names.
    other = names("imported-again")
    again = client.import_image(str(archive), other)
    assert again.id == info.id and {in_archive, other} <= set(again.names)
    with client.create_and_connect(image=other) as sb:
        assert sb.run("cat", ["/work/hello.txt"]).stdout == "hello from the image"
        assert sb.run("pwd").stdout == fx.WORKDIR


# --- builds ----------------------------------------------------------------------------------
def test_build_image_dsl(client, base, names, tmp_path):
    local_file = tmp_path / "notes.txt"
    local_file.write_text("a local file\n")
    local_dir = tmp_path / "assets"
    (local_dir / "deep").mkdir(parents=True)
    (local_dir / "top.txt").write_text("top\n")
    (local_dir / "deep" / "bottom.txt").write_text("bottom\n")
    name = names("dsl")
    image = (
        Image(name, base=base)
        .run("echo built > /built.txt")
        .copy(local_file, "/srv/notes.txt")
        .copy(str(local_dir), "/srv/assets")
        .env({"K": "V"})
        .workdir("/srv")
        .expose(8080)
    )
    total = len(image.dockerfile().strip().splitlines())
    events: list = []
    info = client.build_image(image, on_progress=events.append, no_cache=True, **OFFLINE)
    steps = [e for e in events if isinstance(e, BuildStepEvent)]
    assert [s.number for s in steps] == list(range(1, total + 1)), kinds(events)
    assert all(s.total == total for s in steps)
    assert any(s.instruction.startswith("RUN") for s in steps)
    assert steps[0].instruction == f"FROM {base}"
    # no_cache: no step after FROM comes from the cache (FROM itself only names the base).
    assert not any(s.cached for s in steps[1:]), steps
    assert isinstance(events[-1], ImageDoneEvent) and events[-1].image == info
    assert str(info.source) == "build" and name in info.names
    assert "K=V" in info.config.env and info.config.working_dir == "/srv"
    assert 8080 in info.config.exposed_ports
    with client.create_and_connect(image=name) as sb:
        assert sb.read_file("/built.txt") == b"built\n"
        assert sb.read_file("/srv/notes.txt") == b"a local file\n"
        assert sb.read_file("/srv/assets/top.txt") == b"top\n"
        assert sb.read_file("/srv/assets/deep/bottom.txt") == b"bottom\n"
        assert "K=V" in sb.run("env").stdout.splitlines()
        assert sb.run("pwd").stdout == "/srv"
        assert 8080 in client.get(sb.sandbox_id).exposed_ports
    # The same build again: every step comes from the cache, the same image.
    events = []
    again = client.build_image(image, on_progress=events.append, **OFFLINE)
    assert again.id == info.id
    assert all(e.cached for e in events if isinstance(e, BuildStepEvent) and e.number > 1)


def test_build_image_from_dockerfile_honours_dockerignore(client, base, names, tmp_path):
    dockerfile = (
        f"FROM {base}\n"
        "ARG WHO=nobody\n"
        "COPY . /ctx\n"
        "RUN echo \"hi $WHO\" > /ctx-arg.txt\n"
        "WORKDIR /ctx\n"
    )
    ctx = context_dir(tmp_path, dockerfile)
    name = names("dockerfile")
    events: list = []
    info = client.build_image_from_dockerfile(
        ctx, name, build_args={"WHO": "sdk"}, no_cache=True, on_progress=events.append, **OFFLINE
    )
    assert [e.number for e in events if isinstance(e, BuildStepEvent)] == [1, 2, 3, 4, 5]
    assert name in info.names and info.config.working_dir == "/ctx"
    with client.create_and_connect(image=name) as sb:
        listing = set(sb.run("ls", ["-A", "/ctx"]).stdout.split())
        assert {"Dockerfile", "kept.txt", "sub", "keep.tmp"} <= listing, listing
        assert not {"secret.env", "logs", "scratch.tmp"} & listing, listing
        assert sb.read_file("/ctx/sub/nested.txt") == b"nested\n"
        assert sb.read_file("/ctx-arg.txt") == b"hi sdk\n"
        assert sb.run("pwd").stdout == "/ctx"


def test_build_from_another_dockerfile_path(client, base, names, tmp_path):
    ctx = tmp_path / "ctx"
    (ctx / "docker").mkdir(parents=True)
    (ctx / "docker" / "Build.dockerfile").write_text(f"FROM {base}\nCOPY data.txt /data.txt\n")
    (ctx / "data.txt").write_text("from the other dockerfile\n")
    name = names("other-dockerfile")
    client.build_image_from_dockerfile(ctx, name, dockerfile="docker/Build.dockerfile", **OFFLINE)
    with client.create_and_connect(image=name) as sb:
        assert sb.read_file("/data.txt") == b"from the other dockerfile\n"
    with pytest.raises(FileNotFoundError):
        client.build_image_from_dockerfile(ctx, name)  # no ./Dockerfile


def test_failing_run_raises_image_build_error(client, base, names):
    name = names("fails")
    image = Image(name, base=base).run("echo boom-output-5150 && exit 42")
    with pytest.raises(ImageBuildError) as err:
        client.build_image(image, no_cache=True, **OFFLINE)
    assert err.value.code == "BUILD_FAILED" and err.value.status_code == 422
    assert "exit code 42" in err.value.message, err.value.message
    assert "boom-output-5150" in err.value.message
    # Followed: the error arrives as an event, passed on, then raised.
    events: list = []
    with pytest.raises(ImageBuildError) as err:
        client.build_image(image, no_cache=True, on_progress=events.append, **OFFLINE)
    assert "exit code 42" in err.value.message
    assert isinstance(events[-1], ImageErrorEvent) and events[-1].code == "BUILD_FAILED"
    assert ("stdout", "boom-output-5150") in {
        (e.stream, e.line) for e in events if isinstance(e, BuildOutputEvent)}
    with pytest.raises(ImageNotFoundError):
        client.get_image(name)


# --- snapshot -> image, create with pull_image -----------------------------------------------
def test_save_snapshot_as_image(client, base, names):
    name = names("from-snapshot")
    with client.create_and_connect(image=base) as source:
        source.write_file("/root/saved.txt", b"written before the snapshot")
        snap = client.snapshot_and_wait(source.sandbox_id, snapshot_type="filesystem")
    try:
        info = client.save_snapshot_as_image(snap.snapshot_id, name)
        assert str(info.source) == "snapshot" and name in info.names
        assert fx.GREETING in info.config.env  # the base's config carries over
        assert client.get_image(name).id == info.id
        with client.create_and_connect(image=name) as sb:
            assert sb.read_file("/root/saved.txt") == b"written before the snapshot"
            assert sb.run("pwd").stdout == fx.WORKDIR
    finally:
        client.delete_snapshot(snap.snapshot_id)
    client.delete_image(name)
    with pytest.raises(ImageNotFoundError):
        client.get_image(name)


def test_create_with_pull_image(client, registry, pushed, tmp_path):
    image, ref = push_unique(registry, pushed, tmp_path, "sdk-autopull")
    with pytest.raises(ImageNotFoundError):
        client.get_image(ref)
    with pytest.raises(RemoteAPIError) as err:
        client.create(image=ref)  # not pulled, and not asked to
    assert err.value.status_code in (400, 404)
    try:
        with client.create_and_connect(image=ref, pull_image=True) as sb:
            assert sb.run("cat", ["/sdk-autopull.bin"]).exit_code == 0
            stored = client.get_image(ref)
            assert stored.id == image.config_digest and str(stored.source) == "pull"
            assert sb.sandbox_id in stored.used_by.sandboxes
    finally:
        with contextlib.suppress(ImageNotFoundError):
            client.delete_image(ref)


# --- musl ------------------------------------------------------------------------------------
def _layer_file(image: fx.Image, path: str) -> bytes:
    """A file of the (only) layer of `image`, as the registry will serve it."""
    (digest,) = image.layer_digests
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(image.layout.read_blob(digest)))) as tar:
        member = tar.extractfile(path.lstrip("/"))
        assert member is not None, path
        return member.read()


def test_musl_image_runs(client, pushed, musl_image):
    # The program in the image really is a dynamically linked musl program.
    program = _layer_file(musl_image, fx.MUSL_PROGRAM)
    assert fx.elf_interpreter(program) == "/lib/ld-musl-x86_64.so.1"
    loader = _layer_file(musl_image, str(fx.MUSL_LOADER))
    assert loader[:4] == b"\x7fELF" and fx.elf_interpreter(loader) is None
    ref = pushed.push(f"musl-{secrets.token_hex(3)}", musl_image)
    info = client.pull_image(ref)
    try:
        assert f"{fx.MUSL_ENV_NAME}={fx.MUSL_ENV_VALUE}" in info.config.env
        with client.create_and_connect(image=ref) as sb:
            result = sb.run(fx.MUSL_PROGRAM, ["x"])
            assert result.exit_code == 0, result
            assert result.stdout.splitlines() == [
                f"argv[0]={fx.MUSL_PROGRAM}", "argv[1]=x",
                f"{fx.MUSL_ENV_NAME}={fx.MUSL_ENV_VALUE}",
            ], result.stdout
            # A call's own env wins over the image's.
            mine = sb.run(fx.MUSL_PROGRAM, [], env={fx.MUSL_ENV_NAME: "mine"})
            assert mine.stdout.splitlines()[-1] == f"{fx.MUSL_ENV_NAME}=mine"
            # Nothing else is in the image: no shell to run.
            with pytest.raises(RemoteAPIError) as err:
                sb.run("sh", ["-c", "true"])
            assert err.value.code == "COMMAND_NOT_FOUND", err.value
    finally:
        client.delete_image(ref)


# --- the async client ------------------------------------------------------------------------
async def test_async_pull_use_and_delete(aclient, registry, pushed, tmp_path):
    image, ref = push_unique(registry, pushed, tmp_path, "sdk-async-pull")
    events: list = []

    async def on_progress(event) -> None:  # a coroutine callback is awaited
        events.append(event)

    info = await aclient.pull_image(ref, on_progress=on_progress)
    try:
        seen = kinds(events)
        assert seen[0] == "resolved" and "layer" in seen and seen[-1] == "done", seen
        assert ref in info.names and info.id == image.config_digest
        assert any(i.id == info.id for i in await aclient.list_images())
        async with aclient.create_and_connect(image=ref) as sb:
            assert (await sb.run("cat", ["/sdk-async-pull.bin"])).exit_code == 0
            assert sb.sandbox_id in (await aclient.get_image(ref)).used_by.sandboxes
            with pytest.raises(ImageInUseError) as err:
                await aclient.delete_image(ref)
            assert err.value.code == "IMAGE_IN_USE"
        result = await aclient.delete_image(ref)
        assert result.deleted == [info.id]
        with pytest.raises(ImageNotFoundError):
            await aclient.get_image(ref)
    finally:
        with contextlib.suppress(ImageNotFoundError):
            await aclient.delete_image(ref)


async def test_async_builds(aclient, base, names, tmp_path):
    local = tmp_path / "payload.txt"
    local.write_text("async payload\n")
    name = names("async-dsl")
    image = (
        Image(name, base=base)
        .run("echo built-async > /built.txt")
        .copy(local, "/srv/payload.txt")
        .env({"K": "V"})
        .workdir("/srv")
    )
    steps: list = []
    info = await aclient.build_image(image, no_cache=True, on_progress=steps.append, **OFFLINE)
    assert [e.number for e in steps if isinstance(e, BuildStepEvent)] == [1, 2, 3, 4, 5]
    assert name in info.names
    async with aclient.create_and_connect(image=name) as sb:
        assert await sb.read_file("/built.txt") == b"built-async\n"
        assert await sb.read_file("/srv/payload.txt") == b"async payload\n"
        assert "K=V" in (await sb.run("env")).stdout.splitlines()
        assert (await sb.run("pwd")).stdout == "/srv"

    ctx = context_dir(tmp_path, f"FROM {base}\nCOPY . /ctx\n")
    from_dir = names("async-dockerfile")
    await aclient.build_image_from_dockerfile(ctx, from_dir, **OFFLINE)
    async with aclient.create_and_connect(image=from_dir) as sb:
        listing = set((await sb.run("ls", ["-A", "/ctx"])).stdout.split())
        assert "kept.txt" in listing and "secret.env" not in listing, listing

    failing = Image(names("async-fails"), base=base).run("exit 3")
    with pytest.raises(ImageBuildError) as err:
        await aclient.build_image(failing, no_cache=True, **OFFLINE)
    assert "exit code 3" in err.value.message


async def test_async_snapshot_to_image_and_import(aclient, base, busybox_image, names, tmp_path):
    name = names("async-snapshot")
    async with aclient.create_and_connect(image=base) as source:
        await source.write_file("/root/async.txt", b"async snapshot")
        snap = await aclient.snapshot_and_wait(source.sandbox_id, snapshot_type="filesystem")
    try:
        info = await aclient.save_snapshot_as_image(snap.snapshot_id, name)
        assert str(info.source) == "snapshot"
        async with aclient.create_and_connect(image=name) as sb:
            assert await sb.read_file("/root/async.txt") == b"async snapshot"
    finally:
        await aclient.delete_snapshot(snap.snapshot_id)
    imported = names("async-imported")
    archive = fx.write_docker_archive(busybox_image, tmp_path / "a.tar", imported)
    info = await aclient.import_image(archive, imported)
    assert imported in info.names and info.id == busybox_image.config_digest
