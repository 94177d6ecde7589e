"""Sandboxes of a built (multi-layer) image through suspend, resume, memory snapshots and
restores, and the pin: a sandbox keeps the exact layers it was made from after its image's
name moves to a new build."""

from __future__ import annotations

import secrets
import time

import pytest

from alcove.sandbox import Image, ImageInUseError

COUNTER = (
    "import time\n"
    "i = 0\n"
    "while True:\n"
    "    i += 1\n"
    "    print(i, flush=True)\n"
    "    time.sleep(0.05)\n"
)


def last_count(sandbox, pid) -> int:
    lines = sandbox.get_output(pid).lines
    return int(lines[-1]) if lines else 0


@pytest.fixture
def image_name(client):
    name = f"e2e-life-{secrets.token_hex(4)}/layered:1"
    yield name
    for info in client.list_images():
        if name in info.names or info.source == "build" and not info.names:
            try:
                client.delete_image(info.id)
            except Exception:  # noqa: BLE001 (best effort: a test may have deleted it)
                pass


def build(client, name: str, version: str):
    image = (
        Image(name, base="alcove/debian")
        .run(f"echo {version} > /etc/layered.txt")
        .env({"LAYER_VERSION": version})
        .workdir("/srv/app")
        .run("echo second > /srv/app/second.txt")
    )
    return client.build_image(image, allow_internet=False)


def test_a_layered_sandbox_suspends_resumes_and_keeps_its_layers_after_a_rebuild(client, image_name):
    first = build(client, image_name, "v1")
    assert len(first.layers) >= 3, first.layers  # base + RUN + WORKDIR + RUN
    sandbox_name = f"layered-{secrets.token_hex(3)}"
    with client.create_and_connect(name=sandbox_name, image=image_name) as sb:
        assert sb.read_file("/etc/layered.txt") == b"v1\n"
        assert sb.run("pwd").stdout.strip() == "/srv/app"
        counter = sb.start_process("python", ["-c", COUNTER])
        deadline = time.monotonic() + 20
        while last_count(sb, counter.pid) == 0 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert client.suspend(sandbox_name).status == "suspended"
        # The name moves to a new build while the sandbox sleeps.
        second = build(client, image_name, "v2")
        assert second.id != first.id
        # The old image is still in use by the suspended sandbox: it cannot go.
        with pytest.raises(ImageInUseError):
            client.delete_image(first.id)
        assert client.resume(sandbox_name).status == "running"
        again = client.connect(sandbox_name)
        before = last_count(again, counter.pid)
        deadline = time.monotonic() + 10
        while last_count(again, counter.pid) <= before and time.monotonic() < deadline:
            time.sleep(0.1)
        assert last_count(again, counter.pid) > before, "the counter runs on after resume"
        # Its files are still those of the image it was made from.
        assert again.read_file("/etc/layered.txt") == b"v1\n"
        assert again.read_file("/srv/app/second.txt") == b"second\n"
        # Users see the name it was created with, not the pin.
        assert client.get(sandbox_name).image == image_name

        # A memory snapshot restores into a new sandbox on the same layers.
        snap = client.snapshot_and_wait(sandbox_name)
        try:
            with client.create_and_connect(snapshot_id=snap.snapshot_id) as clone:
                assert clone.read_file("/etc/layered.txt") == b"v1\n"
                procs = {p.pid: p.status for p in clone.list_processes()}
                assert procs.get(counter.pid) == "running"
        finally:
            client.delete_snapshot(snap.snapshot_id)
    # A new sandbox of the name gets the new build.
    with client.create_and_connect(image=image_name) as fresh:
        assert fresh.read_file("/etc/layered.txt") == b"v2\n"
        assert "LAYER_VERSION=v2" in fresh.run("env").stdout.splitlines()
    # Nothing uses the first build now.
    client.delete_image(first.id)
