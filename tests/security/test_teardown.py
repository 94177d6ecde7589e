"""A sandbox's processes cannot outlive its delete: detached, signal-ignoring, re-parented or in
a pid namespace of their own, none is left on the host when the delete answers, nor any of its
cgroups or runc's state of it."""

from __future__ import annotations

import os
import time
from pathlib import Path

from framework.host import instance_tag, owned_resources, wait_for

HOLDOUTS = r"""
trap '' TERM HUP INT
# A detached session leader that ignores the polite signals.
setsid sh -c 'trap "" TERM HUP INT; while :; do sleep 1; done' &
# A daemon whose parent has gone (re-parented to the agent).
sh -c '(trap "" TERM; exec sleep 1000) &' &
# A pid namespace of its own, if the sandbox may make one.
unshare -fp sleep 1000 2>/dev/null &
touch /tmp/started
while :; do sleep 1; done
"""


def start_time(pid: int) -> str | None:
    """When `pid` started, or None if it is not running (gone, or dead and not yet reaped: the
    container's init is reaped by the host's init, which takes its time)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return None if fields[0] in ("Z", "X") else fields[19]


def processes_in_cgroups_of(data_dir: Path, sandbox_id: str) -> dict[int, str]:
    """Every host process in one of the sandbox's cgroups (nested ones too), by pid, with its
    start time (a pid seen again later is the same process only if that matches)."""
    marker = f"/alcove-{instance_tag(data_dir)}/{sandbox_id}"
    found = {}
    for name in filter(str.isdigit, os.listdir("/proc")):
        try:
            lines = Path(f"/proc/{name}/cgroup").read_text().splitlines()
        except OSError:
            continue
        if any(line.split(":", 2)[-1].startswith(marker) for line in lines):
            started = start_time(int(name))
            if started is not None:
                found[int(name)] = started
    return found


def test_no_process_of_a_sandbox_outlives_its_delete(server, client):
    with client.create_and_connect() as sandbox:
        sid = sandbox.sandbox_id
        sandbox.start_process("sh", ["-c", HOLDOUTS])
        assert wait_for(lambda: sandbox.run("test", ["-e", "/tmp/started"]).exit_code == 0, 20)
        # The agent, the script, the session leader and its sleep, the daemon: at least five.
        assert wait_for(lambda: len(processes_in_cgroups_of(server.data_dir, sid)) >= 5, 20)
        before = processes_in_cgroups_of(server.data_dir, sid)
        started = time.monotonic()
        client.delete(sid)
        took = time.monotonic() - started
    alive = {pid for pid, at in before.items() if start_time(pid) == at}
    assert not alive, f"still running after the delete ({took:.2f} s): {sorted(alive)}"
    assert not processes_in_cgroups_of(server.data_dir, sid)
    res = owned_resources(server.data_dir)
    assert not [c for c in res.cgroups if c.endswith("/" + sid)], res
    assert sid not in res.containers, res
