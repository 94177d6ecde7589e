"""What a server prepares for every start: the runc hook it runs (`alcove-hook`, or `alcove
__hook` where that is not installed) and the cgroup2 `favordynmods` option."""

from __future__ import annotations

import shutil
from pathlib import Path

from alcove.sandbox import SandboxClient
from framework.host import owned_resources
from framework.server import ALCOVE_BIN, AlcoveServer


def cgroup2_options() -> list[str] | None:
    """The hierarchy options of the first cgroup2 mount, or None without one."""
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        _, _, tail = line.partition(" - ")
        fields = tail.split()
        if fields and fields[0] == "cgroup2":
            return fields[2].split(",")
    return None


def test_the_server_turns_on_favordynmods_and_keeps_the_hierarchys_other_options(server):
    options = cgroup2_options()
    if options is None:
        return  # a cgroup v1-only host has no cgroup2 hierarchy to tune
    assert "favordynmods" in options, options
    assert options[0] in ("rw", "ro"), options


def test_a_server_without_alcove_hook_beside_it_runs_alcove_itself_as_the_hook(tmp_path):
    assert (Path(ALCOVE_BIN).parent / "alcove-hook").is_file(), "setup installs alcove-hook"
    alone = tmp_path / "bin"
    alone.mkdir()
    alone.chmod(0o755)
    tmp_path.chmod(0o755)
    shutil.copy2(ALCOVE_BIN, alone / "alcove")
    srv = AlcoveServer(binary=alone / "alcove")
    srv.start()
    try:
        with SandboxClient(api_url=srv.url) as c:
            sb = c.create_and_connect(name="no-hook-binary")
            sb.write_file("/root/kept.txt", b"kept")
            address = sb.run("ip", ["-4", "-o", "addr", "show", "eth0"]).stdout
            assert " inet " in address, address
            # The restore runs the hook again: the network is plumbed anew.
            c.suspend("no-hook-binary")
            c.resume("no-hook-binary")
            again = c.connect("no-hook-binary")
            assert again.run("cat", ["/root/kept.txt"]).stdout == "kept"
            after = again.run("ip", ["-4", "-o", "addr", "show", "eth0"]).stdout
            assert after.split()[3] == address.split()[3], (address, after)
            c.delete("no-hook-binary")
        assert owned_resources(srv.data_dir).is_empty()
    finally:
        srv.stop()
        shutil.rmtree(srv.data_dir, ignore_errors=True)
