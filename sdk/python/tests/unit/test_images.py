"""Images: the Image DSL and its Dockerfile, build contexts, and the image calls of both clients
against a fake server (requests, answers, progress streams, errors, secrets kept out of sight)."""

from __future__ import annotations

import io
import json
import logging
import os
import re
import tarfile
from pathlib import Path
from typing import Any

import httpx
import pytest

from alcove.sandbox import (
    AsyncSandboxClient,
    AuthenticationError,
    BuildOutputEvent,
    BuildStepEvent,
    DeleteImageResult,
    Image,
    ImageBuildError,
    ImageDoneEvent,
    ImageErrorEvent,
    ImageInfo,
    ImageInUseError,
    ImageLayerEvent,
    ImageNotFoundError,
    ImageProgressEvent,
    ImageResolvedEvent,
    ImageSource,
    LayerStatus,
    RegistryAuthenticationError,
    RegistryError,
    RemoteAPIError,
    SandboxClient,
    SandboxConnectionError,
    SnapshotNotFoundError,
    _protocol,
    models,
)
from alcove.sandbox._config import resolve_config
from alcove.sandbox._context import DockerIgnore
from fakes import FakeServer, info_json, jsonr

B = "/v1/namespaces/default"
IMAGES = f"{B}/images"
WIRE_TYPES = Path(__file__).resolve().parents[4] / "crates" / "wire" / "src" / "image.rs"
PASSWORD = "s3cr3t-registry-token"


def image_json(**extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": "sha256:" + "ab" * 32,
        "names": ["localhost:5000/tools/busybox:1.36"],
        "manifest_digest": "sha256:" + "cd" * 32,
        "source": "pull",
        "created_at": "2026-12-02T07:15:50Z",
        "size_bytes": 4_500_000,
        "layers": [
            {
                "diff_id": "sha256:" + "01" * 32,
                "digest": "sha256:" + "02" * 32,
                "size_bytes": 2,
                "unpacked_size_bytes": 3,
            }
        ],
        "config": {
            "env": ["PATH=/bin"],
            "working_dir": "/srv",
            "entrypoint": [],
            "cmd": ["sh"],
            "exposed_ports": [8080],
        },
    }
    body.update(extra)
    return body


def event_stream(*events: dict[str, Any], chunk: int | None = None) -> httpx.Response:
    """An event stream as the server writes it: an ``event:`` line naming each event, then its data."""
    text = "".join(f"event: {event['event']}\ndata: {json.dumps(event)}\n\n" for event in events)
    data = text.encode()
    content: Any = data if chunk is None else [data[i : i + chunk] for i in range(0, len(data), chunk)]
    if chunk is not None:
        return httpx.Response(200, headers={"content-type": "text/event-stream"}, stream=_Chunks(content))
    return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=content)


class _Chunks(httpx.SyncByteStream, httpx.AsyncByteStream):
    def __init__(self, chunks: list[bytes]) -> None:
        self._chunks = chunks

    def __iter__(self):  # type: ignore[override]
        yield from self._chunks

    async def __aiter__(self):  # type: ignore[override]
        for chunk in self._chunks:
            yield chunk


def members(data: bytes) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return {member.name: member for member in tar.getmembers()}


def member_text(data: bytes, name: str) -> str:
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        extracted = tar.extractfile(name)
        assert extracted is not None
        return extracted.read().decode()


def context_of(image: Image) -> bytes:
    buffer = io.BytesIO()
    image.write_context(buffer)
    return buffer.getvalue()


# ---------------------------------------------------------------------------------------------
# The Image DSL and its Dockerfile


def test_dockerfile_renders_each_step_in_order(tmp_path: Path) -> None:
    (tmp_path / "app.py").write_text("print(1)\n")
    image = (
        Image("tools/jq:1", base="alcove/debian")
        .run("apt-get update && apt-get install -y jq")
        .copy(tmp_path / "app.py", "/srv/app.py")
        .env({"LANG": "C.UTF-8", "PATH": "/opt/bin:$PATH"})
        .workdir("/srv")
        .user("app")
        .entrypoint(["/bin/sh", "-c"])
        .cmd(["python3", "app.py"])
        .expose(8080, 9000)
    )
    assert image.dockerfile() == (
        "FROM alcove/debian\n"
        "RUN apt-get update && apt-get install -y jq\n"
        "COPY ctx/0/app.py /srv/app.py\n"
        'ENV LANG="C.UTF-8" PATH="/opt/bin:$PATH"\n'
        "WORKDIR /srv\n"
        "USER app\n"
        'ENTRYPOINT ["/bin/sh", "-c"]\n'
        'CMD ["python3", "app.py"]\n'
        "EXPOSE 8080 9000\n"
    )
    assert image.name == "tools/jq:1" and image.base == "alcove/debian"


def test_the_default_base_is_the_servers_default_image() -> None:
    assert Image("x:1").dockerfile() == "FROM alcove/debian\n"


def test_every_step_returns_a_new_image() -> None:
    base = Image("x:1").run("true")
    a, b = base.run("echo a"), base.run("echo b")
    assert base.dockerfile() == "FROM alcove/debian\nRUN true\n"
    assert a.dockerfile().endswith("RUN echo a\n") and b.dockerfile().endswith("RUN echo b\n")
    assert a != b and base.run("echo a") == a
    assert repr(a) == "Image(name='x:1', base='alcove/debian', steps=2)"


def test_run_keeps_the_meaning_of_a_command_of_several_lines() -> None:
    script = 'set -e\napt-get update\necho "done" \\\n  now'
    image = Image("x:1").run(script).run("echo one \\")
    lines = image.dockerfile().splitlines()
    # One Dockerfile line each: no newline of the command escapes its instruction.
    assert len(lines) == 3
    assert json.loads(lines[1].removeprefix("RUN ")) == ["/bin/sh", "-c", script]
    assert json.loads(lines[2].removeprefix("RUN ")) == ["/bin/sh", "-c", "echo one \\"]


def test_env_values_are_json_quoted_and_checked() -> None:
    image = Image("x:1").env({"MSG": 'say "hi" \\ é', "EMPTY": ""})
    line = image.dockerfile().splitlines()[1]
    assert line == 'ENV MSG="say \\"hi\\" \\\\ é" EMPTY=""'
    with pytest.raises(ValueError, match="names"):
        Image("x:1").env({"1BAD": "v"})
    with pytest.raises(ValueError, match="one line"):
        Image("x:1").env({"K": "a\nRUN evil"})
    with pytest.raises(TypeError):
        Image("x:1").env({"K": 1})  # type: ignore[dict-item]


def test_copy_sources_never_collide_and_odd_names_are_safe(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    image = (
        Image("x:1")
        .copy(tmp_path / "a" / "conf", "/etc/a/")
        .copy(tmp_path / "b" / "conf", "/etc/b/")
        .copy(tmp_path / "we*ird [name]", "/opt/dir with space")
    )
    assert [path for path, _ in image.context_files()] == ["ctx/0/conf", "ctx/1/conf", "ctx/2/we_ird__name_"]
    assert image.dockerfile().splitlines()[1:] == [
        "COPY ctx/0/conf /etc/a/",
        "COPY ctx/1/conf /etc/b/",
        'COPY ["ctx/2/we_ird__name_", "/opt/dir with space"]',
    ]


def test_steps_check_their_arguments() -> None:
    image = Image("x:1")
    with pytest.raises(ValueError):
        Image("")
    with pytest.raises(ValueError):
        Image("x:1", base="a b")
    with pytest.raises(ValueError):
        image.run("  ")
    with pytest.raises(ValueError, match="one line"):
        image.workdir("/srv\nRUN evil")
    with pytest.raises(ValueError, match="one line"):
        image.user("app\nRUN evil")
    with pytest.raises(TypeError):
        image.cmd("echo hi")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        image.entrypoint([])
    with pytest.raises(ValueError):
        image.expose(0)
    with pytest.raises(ValueError):
        image.expose(True)


# ---------------------------------------------------------------------------------------------
# Build contexts


def test_image_context_holds_the_dockerfile_and_the_copied_sources(tmp_path: Path) -> None:
    (tmp_path / "one.txt").write_text("one")
    tree = tmp_path / "tree"
    (tree / "sub").mkdir(parents=True)
    (tree / "sub" / "two.txt").write_text("two")
    (tree / "link").symlink_to("/etc/passwd")
    (tmp_path / "via-link").symlink_to(tmp_path / "one.txt")
    image = Image("x:1").copy(tmp_path / "one.txt", "/a").copy(tree, "/b").copy(tmp_path / "via-link", "/c")
    data = context_of(image)
    entries = members(data)
    assert sorted(entries) == [
        "Dockerfile",
        "ctx",
        "ctx/0",
        "ctx/0/one.txt",
        "ctx/1",
        "ctx/1/tree",
        "ctx/1/tree/link",
        "ctx/1/tree/sub",
        "ctx/1/tree/sub/two.txt",
        "ctx/2",
        "ctx/2/via-link",
    ]
    assert member_text(data, "Dockerfile") == image.dockerfile()
    assert member_text(data, "ctx/1/tree/sub/two.txt") == "two"
    # A link inside a copied directory stays a link; a source named on purpose is followed.
    assert entries["ctx/1/tree/link"].issym() and entries["ctx/1/tree/link"].linkname == "/etc/passwd"
    assert entries["ctx/2/via-link"].isreg() and member_text(data, "ctx/2/via-link") == "one"
    assert entries["ctx/0/one.txt"].uid == 0 and entries["ctx/0/one.txt"].uname == "root"


def test_a_missing_copy_source_raises_at_build_time(tmp_path: Path) -> None:
    image = Image("x:1").copy(tmp_path / "nope", "/x")  # no error yet
    with pytest.raises(FileNotFoundError, match="nope"):
        context_of(image)


def test_long_names_survive_the_tar(tmp_path: Path) -> None:
    deep = tmp_path / ("d" * 120) / ("e" * 120)
    deep.mkdir(parents=True)
    (deep / ("f" * 150)).write_text("x")
    entries = members(context_of(Image("x:1").copy(tmp_path / ("d" * 120), "/x")))
    assert f"ctx/0/{'d' * 120}/{'e' * 120}/{'f' * 150}" in entries


def test_dockerignore_patterns() -> None:
    ignore = DockerIgnore(["# comment", "", "*.log", "/build/", "**/secret*", "!keep.log", "docs/*/draft?.md"])
    assert ignore.excluded("a.log") and not ignore.excluded("keep.log")
    assert not ignore.excluded("sub/a.log")  # "*" does not cross "/"
    assert ignore.excluded("build") and ignore.excluded("build/out/x.o")
    assert ignore.excluded("secret.txt") and ignore.excluded("deep/er/secret.key")
    assert ignore.excluded("docs/v1/draft1.md") and not ignore.excluded("docs/v1/v2/draft1.md")
    assert not ignore.excluded("src/main.py")
    assert not DockerIgnore([])


def write_tree(root: Path) -> None:
    (root / "src").mkdir(parents=True)
    (root / "src" / "main.py").write_text("print('hi')\n")
    (root / "src" / "debug.log").write_text("noise")
    (root / "build" / "out").mkdir(parents=True)
    (root / "build" / "out" / "big.o").write_bytes(b"\0" * 10)
    (root / "build" / "out" / "keep.txt").write_text("kept")
    (root / "Dockerfile").write_text("FROM alcove/debian\nCOPY src /srv\n")
    (root / ".dockerignore").write_text("**/*.log\nbuild\n!build/out/keep.txt\nDockerfile\n")
    (root / "outside-link").symlink_to("/etc")
    (root / "src" / "rel-link").symlink_to("../Dockerfile")


def test_directory_context_honours_dockerignore_and_keeps_links(tmp_path: Path) -> None:
    from alcove.sandbox._context import write_directory_context

    write_tree(tmp_path / "ctx")
    buffer = io.BytesIO()
    write_directory_context(buffer, str(tmp_path / "ctx"), "Dockerfile")
    entries = members(buffer.getvalue())
    assert sorted(entries) == [
        ".dockerignore",
        "Dockerfile",  # left out by .dockerignore, but a build needs it
        "build/out/keep.txt",
        "outside-link",
        "src",
        "src/main.py",
        "src/rel-link",
    ]
    assert entries["outside-link"].issym() and entries["outside-link"].linkname == "/etc"
    assert entries["src/rel-link"].issym() and entries["src/rel-link"].linkname == "../Dockerfile"


# ---------------------------------------------------------------------------------------------
# Requests and answers


def test_list_get_delete(server: FakeServer, client: SandboxClient) -> None:
    ref = "localhost:5000/tools/busybox:1.36"
    server.on("GET", IMAGES, jsonr(200, {"images": [image_json(), image_json(source="builtin", extra_field=1)]}))
    server.on("GET", f"{IMAGES}/{ref}", jsonr(200, image_json(used_by={"sandboxes": ["sbx-1"], "snapshots": []})))
    server.on(
        "DELETE",
        f"{IMAGES}/{ref}",
        jsonr(200, {"untagged": [ref], "deleted": ["sha256:" + "ab" * 32], "freed_bytes": 4096}),
    )
    images = client.list_images()
    assert [image.source for image in images] == [ImageSource.PULL, "builtin"]
    assert images[0].used_by is None and images[0].layers[0].unpacked_size_bytes == 3
    assert images[0].created_at is not None and images[0].created_at.year == 2026
    assert images[0].config.exposed_ports == [8080] and images[0].config.user is None
    info = client.get_image(ref)
    assert info.used_by is not None and info.used_by.sandboxes == ["sbx-1"]
    result = client.delete_image(ref)
    assert isinstance(result, DeleteImageResult) and result.freed_bytes == 4096 and result.untagged == [ref]
    get = server.calls("GET", f"{IMAGES}/{ref}")[0]
    assert get.url.raw_path.decode() == f"{IMAGES}/{ref}"  # "/", ":" travel as they are


def test_references_are_percent_encoded_but_for_slash_colon_at() -> None:
    cfg = resolve_config(None, None, "default", 10.0)
    ref = "reg:5000/a/b@sha256:" + "0" * 64
    assert _protocol.images_url(cfg, ref).endswith(f"/images/{ref}")
    assert _protocol.images_url(cfg, "a+b~c_d.e-f").endswith("/images/a%2Bb~c_d.e-f")
    assert _protocol.images_url(cfg, "name?x#y%").endswith("/images/name%3Fx%23y%25")
    for bad in ("", "  ", "../sandboxes", "a/./b", "a/..", "a b"):
        with pytest.raises(ValueError):
            _protocol.images_url(cfg, bad)


def test_image_404_and_409(server: FakeServer, client: SandboxClient) -> None:
    server.on("GET", f"{IMAGES}/nope:1", jsonr(404, {"message": "no image nope:1", "code": "NOT_FOUND"}))
    server.on("DELETE", f"{IMAGES}/busy:1", jsonr(409, {"message": "used by sbx-1", "code": "IMAGE_IN_USE"}))
    with pytest.raises(ImageNotFoundError) as missing:
        client.get_image("nope:1")
    assert missing.value.code == "NOT_FOUND" and missing.value.status_code == 404
    with pytest.raises(ImageInUseError) as busy:
        client.delete_image("busy:1")
    assert busy.value.code == "IMAGE_IN_USE" and busy.value.message == "used by sbx-1"


def test_pull_blocking(server: FakeServer, client: SandboxClient) -> None:
    server.on("POST", f"{IMAGES}/pull", jsonr(200, image_json()))
    info = client.pull_image("localhost:5000/tools/busybox:1.36", name="busybox:stable")
    assert isinstance(info, ImageInfo) and info.manifest_digest == "sha256:" + "cd" * 32
    post = server.requests[0]
    assert json.loads(post.content) == {"reference": "localhost:5000/tools/busybox:1.36", "name": "busybox:stable"}
    assert "text/event-stream" not in post.headers.get("accept", "")
    assert post.headers["content-type"] == "application/json"


def test_pull_credentials(server: FakeServer, client: SandboxClient) -> None:
    server.on("POST", f"{IMAGES}/pull", jsonr(200, image_json()))
    client.pull_image("r/x:1", username="bob", password=PASSWORD)
    client.pull_image("r/x:1", auth_secret="REGISTRY")
    bodies = [json.loads(request.content) for request in server.requests]
    assert bodies == [
        {"reference": "r/x:1", "username": "bob", "password": PASSWORD},
        {"reference": "r/x:1", "auth_secret": "REGISTRY"},
    ]
    with pytest.raises(ValueError, match="together"):
        client.pull_image("r/x:1", username="bob")
    with pytest.raises(ValueError, match="not both"):
        client.pull_image("r/x:1", username="bob", password=PASSWORD, auth_secret="REGISTRY")


PULL_EVENTS = [
    {
        "event": "resolved",
        "manifest_digest": "sha256:" + "cd" * 32,
        "layers": [{"digest": "sha256:" + "02" * 32, "status": "waiting", "current_bytes": 0, "total_bytes": 100}],
    },
    {
        "event": "layer",
        "digest": "sha256:" + "02" * 32,
        "status": "downloading",
        "current_bytes": 50,
        "total_bytes": 100,
    },
    {"event": "layer", "digest": "sha256:" + "02" * 32, "status": "done", "current_bytes": 100, "total_bytes": 100},
    {"event": "some_future_event", "whatever": 1},
    {"event": "done", "image": image_json()},
]


@pytest.mark.parametrize("chunk", [None, 7])
def test_pull_with_progress(server: FakeServer, client: SandboxClient, chunk: int | None) -> None:
    server.on("POST", f"{IMAGES}/pull", event_stream(*PULL_EVENTS, chunk=chunk))
    seen: list[ImageProgressEvent] = []
    info = client.pull_image("localhost:5000/tools/busybox:1.36", on_progress=seen.append)
    assert info.id == "sha256:" + "ab" * 32
    assert [type(event) for event in seen] == [ImageResolvedEvent, ImageLayerEvent, ImageLayerEvent, ImageDoneEvent]
    resolved, downloading = seen[0], seen[1]
    assert isinstance(resolved, ImageResolvedEvent) and resolved.layers[0].status == LayerStatus.WAITING
    assert isinstance(downloading, ImageLayerEvent) and downloading.current_bytes == 50 and downloading.event == "layer"
    assert server.requests[0].headers["accept"] == "text/event-stream"


@pytest.mark.parametrize(
    ("code", "status", "cls"),
    [
        ("REGISTRY_UNAUTHORIZED", 401, RegistryAuthenticationError),
        ("REGISTRY_ERROR", 502, RegistryError),
        ("NOT_FOUND", 404, ImageNotFoundError),
        ("INVALID_ARGUMENT", 400, RemoteAPIError),
    ],
)
def test_pull_error_event_raises_the_mapped_error(
    server: FakeServer, client: SandboxClient, code: str, status: int, cls: type[RemoteAPIError]
) -> None:
    error = {"event": "error", "code": code, "message": "registry said no", "status": status}
    server.on("POST", f"{IMAGES}/pull", event_stream(PULL_EVENTS[0], error, PULL_EVENTS[4]))
    seen: list[ImageProgressEvent] = []
    with pytest.raises(cls) as raised:
        client.pull_image("r/x:1", on_progress=seen.append)
    assert type(raised.value) is cls
    assert raised.value.code == code and raised.value.status_code == status
    assert raised.value.message == "registry said no"
    assert not isinstance(raised.value, AuthenticationError)  # the registry refused, not Alcove
    assert [event.event for event in seen] == ["resolved", "error"]  # nothing after the error
    assert isinstance(seen[1], ImageErrorEvent) and seen[1].status == status


def test_pull_error_answers_map_the_same_way(server: FakeServer, client: SandboxClient) -> None:
    server.on("POST", f"{IMAGES}/pull", jsonr(403, {"message": "denied: wrong token", "code": "REGISTRY_UNAUTHORIZED"}))
    with pytest.raises(RegistryAuthenticationError, match="denied"):
        client.pull_image("r/x:1", username="bob", password=PASSWORD)
    with pytest.raises(RegistryAuthenticationError):
        client.pull_image("r/x:1", on_progress=lambda event: None)
    server.on("POST", f"{IMAGES}/pull", jsonr(401, {"message": "bad key", "code": "UNAUTHORIZED"}))
    with pytest.raises(AuthenticationError):
        client.pull_image("r/x:1")


def test_a_stream_without_done_is_a_connection_error(server: FakeServer, client: SandboxClient) -> None:
    server.on("POST", f"{IMAGES}/pull", event_stream(PULL_EVENTS[0]))
    with pytest.raises(SandboxConnectionError, match="ended before"):
        client.pull_image("r/x:1", on_progress=lambda event: None)


def test_the_password_is_never_shown(
    server: FakeServer, client: SandboxClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    server.on("POST", f"{IMAGES}/pull", jsonr(401, {"message": "unauthorized", "code": "REGISTRY_UNAUTHORIZED"}))
    with pytest.raises(RegistryAuthenticationError) as raised:
        client.pull_image("r/x:1", username="bob", password=PASSWORD)
    assert PASSWORD not in str(raised.value) and PASSWORD not in repr(raised.value)
    assert PASSWORD not in caplog.text
    body = _protocol.pull_body("r/x:1", None, "bob", PASSWORD, None)
    cfg = resolve_config(None, None, "default", 10.0)
    step = next(_protocol.op_pull_image(cfg, body))
    assert isinstance(step, _protocol.Request) and PASSWORD not in repr(step) and PASSWORD not in str(step)
    with pytest.raises(ValueError) as bad:
        client.pull_image("r/x:1", username="bob", password=b"s3cr3t-bytes")  # type: ignore[arg-type]
    assert "s3cr3t" not in str(bad.value)


def test_import_streams_the_archive(server: FakeServer, client: SandboxClient, tmp_path: Path) -> None:
    archive = tmp_path / "busybox.tar"
    archive.write_bytes(os.urandom(300_000))
    server.on("POST", f"{IMAGES}/import", jsonr(200, image_json(source="import")))
    info = client.import_image(archive, name="busybox:1.36")
    assert info.source == ImageSource.IMPORT
    post = server.requests[0]
    assert post.url.params["name"] == "busybox:1.36"
    assert post.headers["content-type"] == "application/x-tar"
    assert post.headers["content-length"] == "300000"
    assert post.content == archive.read_bytes()
    client.import_image(str(archive))
    assert "name" not in server.requests[1].url.params
    with pytest.raises(FileNotFoundError):
        client.import_image(tmp_path / "missing.tar")


def test_build_image_posts_the_context(server: FakeServer, client: SandboxClient, tmp_path: Path) -> None:
    (tmp_path / "app.py").write_text("print(1)\n")
    image = Image("tools/app:1").copy(tmp_path / "app.py", "/srv/app.py").cmd(["python3", "/srv/app.py"])
    server.on("POST", f"{IMAGES}/build", jsonr(200, image_json(source="build", names=["tools/app:1"])))
    info = client.build_image(image, build_args={"VERSION": "1.2", "EMPTY": ""}, no_cache=True, allow_internet=False)
    assert info.names == ["tools/app:1"]
    post = server.requests[0]
    assert post.url.params.multi_items() == [
        ("name", "tools/app:1"),
        ("build_arg", "VERSION=1.2"),
        ("build_arg", "EMPTY="),
        ("no_cache", "true"),
        ("allow_internet", "false"),
    ]
    assert post.headers["content-type"] == "application/x-tar"
    assert "text/event-stream" not in post.headers.get("accept", "")
    assert member_text(post.content, "Dockerfile") == image.dockerfile()
    assert member_text(post.content, "ctx/0/app.py") == "print(1)\n"
    client.build_image(image)
    assert server.requests[1].url.params.multi_items() == [("name", "tools/app:1")]
    with pytest.raises(TypeError):
        client.build_image("tools/app:1")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        client.build_image(image, build_args={"A=B": "c"})


def test_build_image_from_dockerfile(server: FakeServer, client: SandboxClient, tmp_path: Path) -> None:
    write_tree(tmp_path)
    (tmp_path / "docker").mkdir()
    (tmp_path / "docker" / "Dockerfile.dev").write_text("FROM alcove/debian\n")
    server.on("POST", f"{IMAGES}/build", jsonr(200, image_json(source="build")))
    client.build_image_from_dockerfile(tmp_path, "app:dev", dockerfile="docker/Dockerfile.dev")
    post = server.requests[0]
    assert post.url.params.multi_items() == [("name", "app:dev"), ("dockerfile", "docker/Dockerfile.dev")]
    entries = members(post.content)
    assert "docker/Dockerfile.dev" in entries and "src/debug.log" not in entries and "build/out/big.o" not in entries
    client.build_image_from_dockerfile(str(tmp_path), "app:1")
    assert server.requests[1].url.params.multi_items() == [("name", "app:1")]
    assert "Dockerfile" in members(server.requests[1].content)
    with pytest.raises(FileNotFoundError):
        client.build_image_from_dockerfile(tmp_path, "app:1", dockerfile="Nope")
    with pytest.raises(ValueError):
        client.build_image_from_dockerfile(tmp_path, "app:1", dockerfile="../Dockerfile")
    with pytest.raises(NotADirectoryError):
        client.build_image_from_dockerfile(tmp_path / "Dockerfile", "app:1")


BUILD_EVENTS = [
    {"event": "step", "number": 1, "total": 2, "instruction": "FROM alcove/debian", "cached": True},
    {"event": "step", "number": 2, "total": 2, "instruction": "RUN make", "cached": False},
    {"event": "output", "stream": "stderr", "line": "make: *** no rule"},
]


def test_build_with_progress(server: FakeServer, client: SandboxClient) -> None:
    done = {"event": "done", "image": image_json(source="build")}
    server.on("POST", f"{IMAGES}/build", event_stream(*BUILD_EVENTS, done))
    seen: list[ImageProgressEvent] = []
    info = client.build_image(Image("x:1").run("make"), on_progress=seen.append)
    assert info.source == "build"
    assert [type(event) for event in seen] == [BuildStepEvent, BuildStepEvent, BuildOutputEvent, ImageDoneEvent]
    step, output = seen[0], seen[2]
    assert isinstance(step, BuildStepEvent) and step.cached and step.instruction == "FROM alcove/debian"
    assert isinstance(output, BuildOutputEvent) and output.stream == "stderr" and output.line == "make: *** no rule"
    assert server.requests[0].headers["accept"] == "text/event-stream"


def test_a_failed_build_carries_message_and_code(server: FakeServer, client: SandboxClient) -> None:
    message = "step 2 (RUN make) exited with 2: make: *** no rule"
    error = {"event": "error", "code": "BUILD_FAILED", "message": message, "status": 422}
    server.on("POST", f"{IMAGES}/build", event_stream(*BUILD_EVENTS, error))
    with pytest.raises(ImageBuildError) as streamed:
        client.build_image(Image("x:1").run("make"), on_progress=lambda event: None)
    assert streamed.value.code == "BUILD_FAILED" and streamed.value.message == message
    assert streamed.value.status_code == 422 and message in str(streamed.value)
    server.on("POST", f"{IMAGES}/build", jsonr(422, {"message": message, "code": "BUILD_FAILED"}))
    with pytest.raises(ImageBuildError) as blocking:
        client.build_image(Image("x:1").run("make"))
    assert blocking.value.code == "BUILD_FAILED" and blocking.value.message == message


def test_save_snapshot_as_image(server: FakeServer, client: SandboxClient) -> None:
    server.on("POST", f"{B}/snapshots/snap-1/image", jsonr(200, image_json(source="snapshot", names=["mine:1"])))
    info = client.save_snapshot_as_image("snap-1", "mine:1")
    assert info.source == ImageSource.SNAPSHOT
    assert json.loads(server.requests[0].content) == {"name": "mine:1"}
    server.on("POST", f"{B}/snapshots/gone/image", jsonr(404, {"message": "no snapshot gone", "code": "NOT_FOUND"}))
    with pytest.raises(SnapshotNotFoundError):
        client.save_snapshot_as_image("gone", "mine:1")
    with pytest.raises(ValueError):
        client.save_snapshot_as_image("snap-1", "")


def test_create_pulls_the_image_only_when_asked(server: FakeServer, client: SandboxClient) -> None:
    server.on("POST", f"{B}/sandboxes", jsonr(200, {"sandbox_id": "sbx-1", "status": "running"}))
    server.on("GET", f"{B}/sandboxes/sbx-1", jsonr(200, info_json()))
    client.create(image="localhost:5000/tools/busybox:1.36", pull_image=True)
    client.create(image="alcove/debian")
    first, second = (json.loads(r.content) for r in server.calls("POST", f"{B}/sandboxes"))
    assert first["pull_image"] is True and first["image"] == "localhost:5000/tools/busybox:1.36"
    assert "pull_image" not in second


# ---------------------------------------------------------------------------------------------
# The async client


async def test_async_pull_awaits_coroutine_callbacks(server: FakeServer, aclient: AsyncSandboxClient) -> None:
    server.on("POST", f"{IMAGES}/pull", event_stream(*PULL_EVENTS, chunk=5))
    seen: list[str] = []

    async def on_progress(event: ImageProgressEvent) -> None:
        seen.append(event.event)

    info = await aclient.pull_image("r/x:1", on_progress=on_progress)
    assert info.id.startswith("sha256:") and seen == ["resolved", "layer", "layer", "done"]


async def test_async_build_and_errors(server: FakeServer, aclient: AsyncSandboxClient, tmp_path: Path) -> None:
    (tmp_path / "Dockerfile").write_text("FROM alcove/debian\n")
    error = {"event": "error", "code": "BUILD_FAILED", "message": "exit 1", "status": 422}
    server.on("POST", f"{IMAGES}/build", event_stream(BUILD_EVENTS[0], error))
    seen: list[ImageProgressEvent] = []
    with pytest.raises(ImageBuildError, match="exit 1"):
        await aclient.build_image_from_dockerfile(tmp_path, "x:1", on_progress=seen.append)
    assert [event.event for event in seen] == ["step", "error"]
    server.on("GET", IMAGES, jsonr(200, {"images": [image_json()]}))
    assert [image.id for image in await aclient.list_images()] == ["sha256:" + "ab" * 32]
    server.on("POST", f"{IMAGES}/build", jsonr(200, image_json(source="build")))
    assert (await aclient.build_image(Image("x:1").run("true"))).source == "build"


# ---------------------------------------------------------------------------------------------
# The models against the server's wire types


def _rust_fields(source: str, name: str) -> set[str]:
    match = re.search(rf"pub struct {name} \{{(.*?)\n\}}", source, re.S)
    assert match, f"struct {name} not found in {WIRE_TYPES}"
    return set(re.findall(r"^\s*pub (\w+):", match.group(1), re.M))


def _rust_variant_fields(source: str, variant: str) -> set[str]:
    match = re.search(rf"\n    {variant} \{{(.*?)\n    \}},", source, re.S)
    assert match, f"variant {variant} not found in {WIRE_TYPES}"
    return set(re.findall(r"^\s*(\w+):", match.group(1), re.M))


@pytest.mark.skipif(not WIRE_TYPES.is_file(), reason="the server's sources are not next to the SDK")
def test_models_match_the_wire_types() -> None:
    source = WIRE_TYPES.read_text()
    pairs = {
        "ImageRunConfig": models.ImageRunConfig,
        "ImageLayerInfo": models.ImageLayerInfo,
        "ImageUsers": models.ImageUsers,
        "ImageInfo": models.ImageInfo,
        "DeleteImageResponse": models.DeleteImageResult,
        "LayerProgress": models.LayerProgress,
    }
    for rust, model in pairs.items():
        assert _rust_fields(source, rust) == set(model.model_fields), rust
    variants = {
        "Resolved": models.ImageResolvedEvent,
        "Step": models.BuildStepEvent,
        "Output": models.BuildOutputEvent,
        "Done": models.ImageDoneEvent,
        "Error": models.ImageErrorEvent,
    }
    for rust, model in variants.items():
        assert _rust_variant_fields(source, rust) | {"event"} == set(model.model_fields), rust
    assert "Layer(LayerProgress)" in source
    assert _rust_fields(source, "PullImageRequest") == set(
        json.loads(json.dumps(_protocol.pull_body("r/x:1", "n:1", "u", "p", None))) | {"auth_secret": ""}
    )
    assert {model.model_fields["event"].default for model in variants.values()} | {"layer"} == set(
        models.IMAGE_PROGRESS_EVENTS
    )
