"""Dockerfile builds (`POST /images/build`): instructions, the step cache, failures.

The base is the busybox test image, pulled from the session registry first; builds run
with `allow_internet=false` (nothing they do needs the network)."""

from __future__ import annotations

import json
import shutil

import pytest

from alcove.sandbox import SandboxClient
from framework import image_fixtures as fx
from framework.images_api import (
    build,
    context_tar,
    delete_image,
    error_code,
    get_image,
    pull_ok,
)
from framework.registry import requires_registry
from framework.server import AlcoveServer

pytest_plugins = ["framework.image_plugin"]
pytestmark = requires_registry()

DOCKERFILE = """\
FROM {base}
ARG GREETING_ARG=default
ENV BUILT_WITH=$GREETING_ARG
WORKDIR /app
COPY hello.txt /app/hello.txt
RUN echo "ran at build with $GREETING_ARG" > /app/run.txt && chown -R 1000:1000 /app
USER 1000:1000
EXPOSE 9090
ENTRYPOINT ["/bin/sh", "-c"]
CMD ["echo built > /app/cmd-ran; exec sleep 3600"]
"""
STEPS = len(DOCKERFILE.strip().splitlines())


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


@pytest.fixture(scope="module")
def base(server, busybox_ref) -> str:
    pull_ok(server, busybox_ref)
    return busybox_ref


def context(base: str, dockerfile: str = DOCKERFILE, **files: str) -> bytes:
    return context_tar({"Dockerfile": dockerfile.format(base=base),
                        "hello.txt": "copied from the context\n", **files})


def test_build_applies_every_instruction(server, client, base, run_token):
    name = f"e2e-{run_token}/built:1"
    resp = build(server, context(base), name, build_arg="GREETING_ARG=from-arg",
                 no_cache=True, allow_internet=False)
    assert resp.status_code in (200, 201), resp.text
    info = resp.json()
    assert info["source"] == "build" and name in info["names"]
    config = info["config"]
    assert "BUILT_WITH=from-arg" in config["env"]
    assert fx.GREETING in config["env"]  # inherited from the base
    assert config["working_dir"] == "/app"
    assert config["user"] == "1000:1000"
    assert {9090, fx.EXPOSED_PORT} <= set(config["exposed_ports"])
    assert config["entrypoint"] == ["/bin/sh", "-c"]
    assert config["cmd"] == ["echo built > /app/cmd-ran; exec sleep 3600"]
    base_layers = pull_ok(server, base)["layers"]
    assert info["layers"][: len(base_layers)] == base_layers  # the base's layers, shared
    assert len(info["layers"]) > len(base_layers)
    with client.create_and_connect(image=name) as sb:
        assert sb.read_file("/app/hello.txt") == b"copied from the context\n"
        assert sb.read_file("/app/run.txt") == b"ran at build with from-arg\n"
        assert sb.run("pwd").stdout == "/app"
        assert sb.run("id", ["-u"]).stdout == "1000"
        assert "BUILT_WITH=from-arg" in sb.run("env").stdout.splitlines()
    assert delete_image(server, name).status_code == 200


def test_build_cache(server, base, run_token):
    name = f"e2e-{run_token}/cached:1"
    ctx = context(base)
    status, first = build(server, ctx, name, sse=True, build_arg="GREETING_ARG=cache")
    assert status == 200 and first[-1].name == "done", [(e.name, e.data) for e in first][-3:]
    steps = [e.data for e in first if e.name == "step"]
    assert [s["number"] for s in steps] == list(range(1, STEPS + 1))
    assert all(s["total"] == STEPS for s in steps)
    assert any("RUN" in s["instruction"] for s in steps)
    image_id = first[-1].data["image"]["id"]
    status, second = build(server, ctx, name, sse=True, build_arg="GREETING_ARG=cache")
    assert status == 200 and second[-1].name == "done"
    again = [e.data for e in second if e.name == "step"]
    assert len(again) == STEPS and all(s["cached"] for s in again), again
    assert second[-1].data["image"]["id"] == image_id
    # Another build arg changes the RUN step: from there on nothing is cached.
    status, third = build(server, ctx, name, sse=True, build_arg="GREETING_ARG=other")
    assert status == 200 and third[-1].name == "done"
    run_step = next(e.data for e in third if e.name == "step" and "RUN" in e.data["instruction"])
    assert run_step["cached"] is False
    # no_cache: nothing is taken from the cache.
    status, fourth = build(server, ctx, name, sse=True, build_arg="GREETING_ARG=cache",
                           no_cache=True)
    assert status == 200
    run_step = next(e.data for e in fourth if e.name == "step" and "RUN" in e.data["instruction"])
    assert run_step["cached"] is False
    assert delete_image(server, name).status_code == 200


def test_steps_that_change_nothing_make_an_image_that_starts(server, client, base, run_token):
    """Two RUN steps that write nothing leave the same (empty) layer twice: overlayfs refused the
    repeated directory (ELOOP) and no sandbox of the image started."""
    name = f"e2e-{run_token}/empty-steps:1"
    dockerfile = "FROM {base}\nRUN echo one\nRUN echo two\nRUN echo three > /made.txt\nRUN true\n"
    resp = build(server, context(base, dockerfile), name, no_cache=True)
    assert resp.status_code in (200, 201), resp.text
    layers = [json.dumps(layer, sort_keys=True) for layer in resp.json()["layers"]]
    assert len(layers) > len(set(layers)), layers  # the case at hand: a layer repeated
    with client.create_and_connect(image=name) as sb:
        assert sb.read_file("/made.txt") == b"three\n"
        assert sb.run("echo", ["started"]).stdout == "started"
    assert delete_image(server, name).status_code == 200


def test_build_output_is_streamed(server, base, run_token):
    name = f"e2e-{run_token}/output:1"
    dockerfile = "FROM {base}\nRUN echo line-one && echo line-two >&2\n"
    status, events = build(server, context(base, dockerfile), name, sse=True, no_cache=True)
    assert status == 200 and events[-1].name == "done"
    lines = {(e.data["stream"], e.data["line"]) for e in events if e.name == "output"}
    assert ("stdout", "line-one") in lines and ("stderr", "line-two") in lines
    assert delete_image(server, name).status_code == 200


def test_failing_run_is_422_with_exit_code_and_output(server, base, run_token):
    name = f"e2e-{run_token}/fails:1"
    dockerfile = "FROM {base}\nRUN echo boom-output-1234 && exit 7\n"
    resp = build(server, context(base, dockerfile), name, no_cache=True)
    assert resp.status_code == 422, resp.text
    assert error_code(resp) == "BUILD_FAILED"
    message = resp.json()["message"]
    assert "7" in message and "boom-output-1234" in message
    assert get_image(server, name).status_code == 404
    status, events = build(server, context(base, dockerfile), name, sse=True, no_cache=True)
    assert events[-1].name == "error"
    assert events[-1].data["code"] == "BUILD_FAILED" and events[-1].data.get("status", 422) == 422


def test_unsupported_instruction_is_400_naming_it(server, base, run_token):
    dockerfile = "FROM {base}\nRUN true\nFROBNICATE the-widget\n"
    resp = build(server, context(base, dockerfile), f"e2e-{run_token}/bad:1")
    assert resp.status_code == 400, resp.text
    assert error_code(resp) == "INVALID_ARGUMENT"
    message = resp.json()["message"]
    assert "FROBNICATE" in message.upper() and "3" in message


def test_copy_outside_the_context_is_refused(server, base, run_token):
    dockerfile = "FROM {base}\nCOPY ../../etc/shadow /stolen\n"
    resp = build(server, context(base, dockerfile), f"e2e-{run_token}/escape:1")
    assert resp.status_code in (400, 422), resp.text


def test_hostile_dockerfiles_are_400_and_the_server_lives_on(server, base, run_token):
    """What once overflowed a server thread's stack (and aborted the server) or ran for minutes:
    a substitution nested 10,000 deep, a COPY pattern of 50,000 `*` or of backtracking pairs;
    an environment doubled until it is megabytes, over a thousand instructions; and a built-in
    image's name, refused before any step runs."""
    name = f"e2e-{run_token}/hostile:1"
    # (Braces doubled: context() formats the Dockerfile to put the base in.)
    nested = "${{A:-" * 10_000 + "x" + "}}" * 10_000
    for dockerfile, says in (
        ("FROM {base}\nENV B=" + nested + "\n", "nested deeper"),
        ("FROM {base}\nCOPY " + "*" * 50_000 + " /x\n", "4096"),
        ("FROM {base}\nCOPY " + "*a" * 12 + "b /x\n", ""),
        # Each step's cache entry holds the environment: doubling one variable 16 times makes
        # it 1 MiB in 17 short lines, and every line after would have written that again.
        ("FROM {base}\nENV A=0123456789abcdef\n" + "ENV A=$A$A\n" * 16 + "ENV B=$A\n" * 50, "line 16"),
        ("FROM {base}\n" + "ENV A=1\n" * 1000, "at most 1000 instructions"),
    ):
        resp = build(server, context(base, dockerfile, **{"a" * 60: "content"}), name, no_cache=True)
        assert resp.status_code == 400, resp.text[:500]
        assert says in resp.json()["message"], resp.text[:500]
    taken = build(server, context(base), "default", no_cache=True)
    assert taken.status_code == 400 and "built-in" in taken.json()["message"], taken.text
    assert get_image(server, name).status_code == 404
    assert server.api("GET", "/healthz").status_code == 200
