"""Upgrading the agent binary under a server with sandboxes: what was suspended, snapshotted or
left running keeps the build it was made with, and new sandboxes get the new one.

CRIU restores a process's code from the file it was mapped from, which it checks by size and
build id, and refuses to dump a mapping of a file deleted on the host. Replacing the agent file
(a rebuild, a package upgrade) used to leave every suspended sandbox unresumable, every memory
snapshot unrestorable and every running sandbox unsnapshottable."""

from __future__ import annotations

import os
import shutil

import pytest

from alcove.sandbox import SandboxClient
from framework.server import AGENT_PATH, AlcoveServer, retire


def install_agent(dest, extra: bytes = b"") -> None:
    """Puts a build at `dest` the way an upgrade does: a new file renamed over the old one.
    `extra` bytes at the end make another build (other size and digest) that still runs."""
    partial = dest.with_name(dest.name + ".new")
    shutil.copyfile(AGENT_PATH, partial)
    with open(partial, "ab") as f:
        f.write(extra)
    os.chmod(partial, 0o755)
    os.replace(partial, dest)


def stored_builds(server: AlcoveServer) -> list[str]:
    return sorted(os.listdir(server.data_dir / "agents"))


@pytest.fixture
def upgradable(tmp_path_factory):
    agent = tmp_path_factory.mktemp("agent-install") / "alcove-agent"
    install_agent(agent)
    server = AlcoveServer(agent=agent)
    server.start()
    yield server, agent
    retire(server)


def test_sandboxes_keep_their_agent_build_across_an_upgrade(upgradable):
    server, agent = upgradable
    client = SandboxClient(api_url=server.url)
    sleeper = client.create_and_connect(name="sleeper")
    sleeper.run("sh", ["-c", "echo before > /root/state"])
    sleeper_proc = sleeper.start_process("sleep", ["600"])
    client.suspend("sleeper")
    pictured = client.create_and_connect(name="pictured")
    pictured.run("sh", ["-c", "echo pictured > /root/state"])
    snapshot = client.snapshot_and_wait("pictured")
    assert snapshot.status == "completed", snapshot
    runner = client.create_and_connect(name="runner")
    runner_proc = runner.start_process("sleep", ["600"])
    assert len(stored_builds(server)) == 1

    # The upgrade: a new file at the agent path, then a restart of the server.
    install_agent(agent, extra=b"\0another build")
    # Even before the restart, a running sandbox still dumps: its build is not the file replaced.
    assert client.snapshot_and_wait("runner").status == "completed"
    server.stop()
    server.start()
    assert len(stored_builds(server)) == 2, "the new build is stored beside the old one"

    client.resume("sleeper")
    woken = client.connect("sleeper")
    assert woken.run("cat", ["/root/state"]).stdout.strip() == "before"
    assert any(p.pid == sleeper_proc.pid and p.status == "running" for p in woken.list_processes())

    restored = client.create_and_connect(snapshot_id=snapshot.snapshot_id)
    assert restored.run("cat", ["/root/state"]).stdout.strip() == "pictured"

    # The one left running suspends and resumes on its own build.
    client.suspend("runner")
    client.resume("runner")
    again = client.connect("runner")
    assert any(p.pid == runner_proc.pid and p.status == "running" for p in again.list_processes())

    # A new sandbox runs the new build, and dumps and restores with it.
    fresh = client.create_and_connect(name="fresh")
    client.suspend("fresh")
    client.resume("fresh")
    assert client.connect("fresh").run("echo", ["new build"]).stdout.strip() == "new build"

    # Once nothing made with the old build is left, the next start removes it.
    for name in ("sleeper", "runner", "pictured"):
        client.delete(name)
    client.delete(restored.sandbox_id)
    for snap in client.list_snapshots():
        client.delete_snapshot(snap.snapshot_id)
    server.stop()
    server.start()
    assert len(stored_builds(server)) == 1
    assert client.connect("fresh").run("true").exit_code == 0
    client.close()


def test_a_dump_naming_a_build_the_node_lacks_fails_clearly_and_stays(upgradable):
    server, _ = upgradable
    client = SandboxClient(api_url=server.url)
    client.create_and_connect(name="lost-build")
    client.suspend("lost-build")
    info = client.get("lost-build")
    # As if the dump came from a node running a build this one never had.
    marker = server.data_dir / "sandboxes" / info.sandbox_id / "checkpoint" / "alcove-agent.sha256"
    assert marker.is_file(), "a dump names the build that made it"
    marker.write_text("0" * 64 + "\n")
    with pytest.raises(Exception) as err:
        client.resume("lost-build")
    assert "500" in str(err.value) or "could not" in str(err.value), err.value
    assert "agent build " + "0" * 64 in server.log_path.read_text()
    # Nothing was lost: with the right build named again, it resumes.
    marker.write_text(stored_builds(server)[0] + "\n")
    client.resume("lost-build")
    assert client.connect("lost-build").run("true").exit_code == 0
    client.close()
