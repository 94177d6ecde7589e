"""SIGKILL of the server in the middle of a live volume attach or detach: after a restart the
sandbox runs, what the API says is mounted is exactly what is mounted inside it, and once the
sandbox and the volume are deleted nothing of either is left on the host (no mount, no loop
device, no file)."""

from __future__ import annotations

import shutil
import subprocess
import threading
import time

import pytest

from alcove.sandbox import RemoteAPIError, SandboxClient
from framework.host import owned_resources
from framework.server import AlcoveServer

# Kill points after the request was sent: before, during and after the mount.
DELAYS = [0.0, 0.005, 0.02, 0.08]


@pytest.fixture
def srv():
    s = AlcoveServer()
    s.start()
    yield s
    if s.proc is None:
        s.start()
    for sb in s.live_sandboxes():
        s.api("DELETE", f"/sandboxes/{sb['id']}")
    for fs in s.api("GET", "/file-systems").json()["file_systems"]:
        s.api("DELETE", f"/file-systems/{fs['name']}")
    s.stop()
    res = owned_resources(s.data_dir)
    leftovers = host_volume_state(s)
    shutil.rmtree(s.data_dir, ignore_errors=True)
    assert res.is_empty(), f"host resources left behind: {res}"
    assert leftovers == ([], [], []), f"volume leftovers: {leftovers}"


def host_volume_state(s: AlcoveServer) -> tuple[list[str], list[str], list[str]]:
    root = str((s.data_dir / "volumes").resolve())
    with open("/proc/self/mountinfo") as f:
        mounts = [line.split(" ")[4] for line in f if line.split(" ")[4].startswith(root + "/")]
    loops = subprocess.run(["losetup", "-l", "-n", "-O", "NAME,BACK-FILE"], capture_output=True, text=True)
    files = sorted(p.name for p in (s.data_dir / "volumes").glob("*")) if (s.data_dir / "volumes").exists() else []
    return mounts, [line for line in loops.stdout.splitlines() if root in line], files


def mounted_inside(sandbox, path: str) -> bool:
    return any(line.split()[1] == path for line in sandbox.run("cat", ["/proc/mounts"]).stdout.splitlines())


def kill_during(srv: AlcoveServer, method: str, path: str, body: dict, delay: float) -> None:
    def call() -> None:
        try:
            srv.api(method, path, json=body)
        except Exception:  # noqa: BLE001 - the server dies under it
            pass

    t = threading.Thread(target=call)
    t.start()
    time.sleep(delay)
    srv.kill()
    t.join(timeout=30)
    srv.start()


@pytest.mark.parametrize("delay", DELAYS)
def test_kill_during_attach_and_detach(srv, delay):
    client = SandboxClient(api_url=srv.url)
    client.create_file_system("crashvol", 32)
    sandbox = client.create_and_connect(name="crash-attach")
    sleeper = sandbox.start_process("sleep", ["600"])

    kill_during(
        srv,
        "POST",
        "/sandboxes/crash-attach/file_systems",
        {"file_system_id": "crashvol", "mount_path": "/data"},
        delay,
    )
    client = SandboxClient(api_url=srv.url)
    sandbox = client.connect("crash-attach")
    info = client.get("crash-attach")
    assert info.status == "running"
    listed = [m.mount_path for m in info.file_systems]
    assert listed == (["/data"] if mounted_inside(sandbox, "/data") else []), listed
    assert "alive" in sandbox.run("sh", ["-c", f"kill -0 {sleeper.pid} && echo alive"]).stdout
    if not listed:
        sandbox.attach_file_system("crashvol", "/data")
    sandbox.write_file("/data/f", b"kept")

    kill_during(srv, "DELETE", "/sandboxes/crash-attach/file_systems", {"mount_path": "/data"}, delay)
    client = SandboxClient(api_url=srv.url)
    sandbox = client.connect("crash-attach")
    listed = [m.mount_path for m in client.get("crash-attach").file_systems]
    assert listed == (["/data"] if mounted_inside(sandbox, "/data") else []), listed
    if listed:
        sandbox.detach_file_system("/data")
    sandbox.attach_file_system("crashvol", "/again")
    assert sandbox.read_file("/again/f") == b"kept"
    client.delete("crash-attach")
    client.delete_file_system("crashvol")
    assert host_volume_state(srv) == ([], [], [])
    client.close()


def test_a_restart_keeps_volumes_mounted_through_suspend_and_resume(srv):
    client = SandboxClient(api_url=srv.url)
    for name in ("bootvol", "livevol", "rovol", "liverovol"):
        client.create_file_system(name, 32)
    sandbox = client.create_and_connect(
        name="restarted",
        file_systems=[{"file_system_id": "bootvol", "mount_path": "/boot-vol"},
                      {"file_system_id": "rovol", "mount_path": "/ro-vol", "read_only": True}],
    )
    sandbox.attach_file_system("livevol", "/live-vol")
    sandbox.attach_file_system("liverovol", "/live-ro-vol", read_only=True)
    # The volume's root is its users' to set, and stays as they set it.
    sandbox.run("chmod", ["0777", "/boot-vol"])
    holder = sandbox.start_process("sh", ["-c", "exec 3>>/live-vol/held; sleep 600"])
    expected = [("/boot-vol", False), ("/live-ro-vol", True), ("/live-vol", False), ("/ro-vol", True)]
    srv.kill()
    srv.start()
    client = SandboxClient(api_url=srv.url)
    sandbox = client.connect("restarted")
    # Read-only views were dropped from the record at a restart (while still mounted inside).
    assert sorted((m.mount_path, m.read_only) for m in client.get("restarted").file_systems) == expected
    assert all(mounted_inside(sandbox, path) for path, _ in expected)
    modes = "stat -c '%n %a' /boot-vol /ro-vol /live-ro-vol"
    assert sandbox.run("sh", ["-c", modes]).stdout.split("\n") == ["/boot-vol 777", "/ro-vol 755", "/live-ro-vol 755"]
    # Still exclusive: no other sandbox gets a read-only volume read-write, none can be deleted.
    other = client.create_and_connect()
    with pytest.raises(RemoteAPIError) as refused:
        other.attach_file_system("liverovol", "/w")
    assert refused.value.status_code == 409, refused.value
    with pytest.raises(RemoteAPIError) as refused:
        client.delete_file_system("rovol")
    assert refused.value.status_code == 409, refused.value
    # A second reader mounts it without touching the first one's view (its root was made 0700).
    other.attach_file_system("rovol", "/r", read_only=True)
    assert sandbox.run("sh", ["-c", modes]).stdout.split("\n")[1] == "/ro-vol 755"
    client.delete(other.sandbox_id)
    client.suspend("restarted")
    info = client.resume("restarted")
    assert sorted((m.mount_path, m.read_only) for m in info.file_systems) == expected
    sandbox = client.connect("restarted")
    assert all(mounted_inside(sandbox, path) for path, _ in expected)
    assert "alive" in sandbox.run("sh", ["-c", f"kill -0 {holder.pid} && echo alive"]).stdout
    sandbox.run("sh", ["-c", "head -c 3000000 /dev/urandom > /boot-vol/f && sync"])
    client.delete("restarted")
    # Unmounted, a volume's use is its own (it was the host disk's).
    assert 1 <= client.get_file_system("bootvol").used_mb <= 32
    for name in ("bootvol", "livevol", "rovol", "liverovol"):
        client.delete_file_system(name)
    assert host_volume_state(srv) == ([], [], [])
    client.close()
