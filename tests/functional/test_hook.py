"""What a server prepares for every start: the network and user-namespace limits of a new
sandbox (plumbed by the server once `runc run` returns), the runc hook that does the same for a
restored one (`alcove-hook`, or `alcove __hook` where that is not installed), and the cgroup2
`favordynmods` option."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from alcove.sandbox import SandboxClient
from framework.host import owned_resources, settled_resources
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
        assert settled_resources(srv.data_dir).is_empty()
    finally:
        srv.stop()
        shutil.rmtree(srv.data_dir, ignore_errors=True)


# What the server writes into every sandbox's user namespace (crates/runtime/src/host.rs).
NAMESPACE_LIMITS = {
    "max_inotify_instances": "1024",
    "max_inotify_watches": "1048576",
    "max_fanotify_groups": "128",
    "max_fanotify_marks": "65536",
}


def hooks_of(server, sandbox_id: str) -> dict:
    bundle = server.data_dir / "sandboxes" / sandbox_id / "bundle" / "config.json"
    return json.loads(bundle.read_text()).get("hooks") or {}


def limits_inside(sb) -> dict:
    out = sb.run("sh", ["-c", "cd /proc/sys/user && for f in " + " ".join(NAMESPACE_LIMITS)
                        + "; do echo $f $(cat $f); done"]).stdout
    return dict(line.split() for line in out.splitlines())


def host_end(sb) -> str:
    """The name of the host's end of the sandbox's veth pair (eth0's peer, by index)."""
    peer = sb.run("cat", ["/sys/class/net/eth0/iflink"]).stdout.strip()
    for link in Path("/sys/class/net").iterdir():
        if (link / "ifindex").read_text().strip() == peer:
            return link.name
    raise AssertionError(f"no host link has index {peer}")


def assert_no_ipv6_on_host_end(sb) -> None:
    """The host's end carries no IPv6 (sandboxes are IPv4-only; no link-local route to the host)."""
    link = host_end(sb)
    assert Path(f"/proc/sys/net/ipv6/conf/{link}/disable_ipv6").read_text().strip() == "1", link
    inet6 = [line for line in Path("/proc/net/if_inet6").read_text().splitlines() if line.split()[-1] == link]
    assert inet6 == [], inet6


def test_a_new_sandbox_is_plumbed_by_the_server_and_a_restored_one_by_its_hook(server, client):
    sb = client.create_and_connect(name="plumbed")
    # No hook on a fresh start: the server did the work once runc returned.
    assert hooks_of(server, sb.sandbox_id) == {}
    assert limits_inside(sb) == NAMESPACE_LIMITS
    route = sb.run("ip", ["-4", "route", "show", "default"]).stdout
    address = sb.run("ip", ["-4", "-o", "addr", "show", "eth0"]).stdout
    # Reached through the veth pair: every call above went to the agent over it.
    assert route.startswith("default via "), route
    assert_no_ipv6_on_host_end(sb)

    client.suspend("plumbed")
    client.resume("plumbed")
    again = client.connect("plumbed")
    assert list(hooks_of(server, again.sandbox_id)) == ["createRuntime"]
    assert limits_inside(again) == NAMESPACE_LIMITS
    after = again.run("ip", ["-4", "-o", "addr", "show", "eth0"]).stdout
    assert after.split()[3] == address.split()[3], (address, after)
    assert again.run("ip", ["-4", "route", "show", "default"]).stdout == route
    assert_no_ipv6_on_host_end(again)
    client.delete("plumbed")
