"""The agent survives what its sandbox's processes do: a fork bomb, two fork bombs under two
users, and a flood of output leave it answering, and what cannot be started is a clear
503 PROCESS_LIMIT, never a 500 or a hang. (How fast it answers is in bench/, not here.)"""

from __future__ import annotations

import pytest

from alcove.sandbox import RemoteAPIError
from framework.host import wait_until

BOMB = "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n"



def tasks(sandbox) -> int:
    return sandbox.metrics().pids


def run_or_process_limit(sandbox) -> str:
    """`run("echo")` works, or fails with the documented code; anything else fails the test."""
    try:
        result = sandbox.run("echo", ["alive"], timeout_secs=30)
    except RemoteAPIError as e:
        assert (e.status_code, e.code) == (503, "PROCESS_LIMIT"), e
        assert "process limit" in str(e)
        return "limit"
    assert result.stdout == "alive", result
    return "ran"


def test_user_processes_run_below_the_agent(sandbox):
    assert sandbox.run("nice").stdout.strip() == "19"
    limit = int(sandbox.run("bash", ["-c", "ulimit -u"]).stdout)
    pids_limit = sandbox.metrics().pids_limit
    assert pids_limit and limit < pids_limit
    # The agent itself (PID 1) keeps its priority.
    assert sandbox.run("sh", ["-c", "cut -d' ' -f19 /proc/1/stat"]).stdout.strip() == "0"


def test_during_a_fork_bomb_the_agent_answers_and_still_starts_processes(sandbox):
    bomb = sandbox.start_process("python3", ["-c", BOMB], stdin_mode="closed")
    pids_limit = sandbox.metrics().pids_limit
    wait_until(lambda: tasks(sandbox) >= pids_limit - 2 * 64, "the bomb filled the sandbox", timeout=60)
    # Everything answers while the bomb runs. A new process would only queue behind the
    # bomb's thousands of runnable tasks, so a start is refused at once (or, when the bomb
    # dipped below its limit, runs).
    assert sandbox.list_processes()
    sandbox.write_file("/tmp/during-bomb.txt", b"written during the bomb")
    assert sandbox.read_file("/tmp/during-bomb.txt") == b"written during the bomb"
    assert run_or_process_limit(sandbox) in {"ran", "limit"}
    # Killing the bomb's process kills its whole tree; the sandbox is usable again.
    sandbox.kill_process(bomb.pid)
    wait_until(lambda: tasks(sandbox) < 16, "the bomb's tree is gone")
    assert sandbox.run("echo", ["alive"]).stdout == "alive"


def test_when_nothing_can_be_started_the_error_says_so(sandbox):
    """Two bombs under two users fill the task limit past the agent's reserve: a run then
    fails with 503 PROCESS_LIMIT (or runs), never 500, and health and listing still answer."""
    bombs = [
        sandbox.start_process("python3", ["-c", BOMB], stdin_mode="closed"),
        sandbox.start_process("python3", ["-c", BOMB], user="nobody", stdin_mode="closed"),
    ]
    pids_limit = sandbox.metrics().pids_limit
    # Past one user's task limit: the second user's bomb takes the agent's reserve too.
    wait_until(lambda: tasks(sandbox) > pids_limit - 64, "the bombs filled the sandbox", timeout=60)
    outcomes = {run_or_process_limit(sandbox) for _ in range(5)}
    assert outcomes <= {"ran", "limit"}
    assert sandbox.list_processes()
    for bomb in bombs:
        sandbox.kill_process(bomb.pid)
    wait_until(lambda: tasks(sandbox) < 16, "the bombs' trees are gone")
    assert sandbox.run("echo", ["alive"]).stdout == "alive"


def test_stop_all_processes_ends_a_bomb_and_the_sandbox_works_again(sandbox):
    sandbox.start_process("python3", ["-c", BOMB], stdin_mode="closed")
    sandbox.start_process("sleep", ["600"], stdin_mode="closed")
    wait_until(lambda: tasks(sandbox) > 500, "the bomb grew")
    killed = sandbox.stop_all_processes()
    assert killed > 500
    wait_until(lambda: tasks(sandbox) < 8, "every user process is gone")
    assert not [p for p in sandbox.list_processes() if p.status == "running"]
    assert sandbox.run("echo", ["alive"]).stdout == "alive"
    # Nothing left to stop: a second call kills nothing.
    assert sandbox.stop_all_processes() == 0


def test_a_flood_of_output_leaves_the_agent_answering(sandbox):
    flood = sandbox.start_process("sh", ["-c", "yes 'flood flood flood flood flood flood flood'"],
                                  stdin_mode="closed")
    wait_until(lambda: len(sandbox.get_stdout(flood.pid).lines) > 1000, "the flood is under way")
    for _ in range(3):
        assert sandbox.run("echo", ["alive"]).stdout == "alive"
        assert any(p.pid == flood.pid for p in sandbox.list_processes())
    # Output kept per process is bounded: the agent holds at most its cap however long it runs.
    kept = sandbox.get_stdout(flood.pid)
    assert sum(len(line) + 1 for line in kept.lines) <= 17 * (1 << 20)
    sandbox.kill_process(flood.pid)
    assert sandbox.run("echo", ["alive"]).stdout == "alive"


def test_a_full_disk_leaves_the_agent_answering_and_the_logs_collected(server, client):
    """The sandbox fills its own disk (512 MB layer): writes fail with 507 NO_SPACE, the agent
    answers, runs and reads work, and output still reaches the logs (they live on the host)."""
    with client.create_and_connect(disk_mb=512) as sb:
        sleeper = sb.start_process("sleep", ["600"], stdin_mode="closed")
        fill = sb.run("sh", ["-c", "dd if=/dev/zero of=/root/fill bs=1M 2>/dev/null; echo filled"],
                      timeout_secs=120)
        assert fill.stdout.strip() == "filled"
        with pytest.raises(RemoteAPIError) as full:
            sb.write_file("/root/more.bin", b"x" * (4 << 20))
        assert (full.value.status_code, full.value.code) == (507, "NO_SPACE"), full.value
        assert sb.run("echo", ["disk-full-but-alive"]).stdout == "disk-full-but-alive"
        assert sleeper.pid in [p.pid for p in sb.list_processes()]
        assert sb.read_file("/etc/hostname")

        def logged() -> bool:
            page = server.api("GET", f"/v1/namespaces/default/sandboxes/{sb.sandbox_id}/logs",
                              params={"body": "disk-full-but-alive"}).json()
            return any(r["body"] == "disk-full-but-alive" for r in page["logs"])

        wait_until(logged, "output logged while the disk is full")
        sb.run("rm", ["/root/fill"])
        sb.write_file("/root/more.bin", b"fits again")
        assert sb.read_file("/root/more.bin") == b"fits again"


MEMORY_BOMB = "a = []\nwhile True:\n    a.append(bytearray(1 << 20))\n"


def cgroup_of(sandbox, pid: str, controller: str) -> str:
    text = sandbox.run("cat", [f"/proc/{pid}/cgroup"]).stdout
    return next(line.split(":", 2)[2] for line in text.splitlines() if line.split(":")[1] == controller)


def test_user_processes_live_in_a_user_cgroup_the_sandbox_cannot_change(sandbox):
    for controller in ["pids", "memory", "cpu"]:
        assert cgroup_of(sandbox, "self", controller) == "/user", controller
        assert cgroup_of(sandbox, "1", controller) == "/", f"the agent left its group ({controller})"
    def read(path: str) -> int:
        return int(sandbox.run("cat", [path]).stdout)

    user_pids = read("/.alcove/cgroup/pids/pids.max")
    assert user_pids < sandbox.metrics().pids_limit
    memory = sandbox.metrics()
    user_memory = read("/.alcove/cgroup/memory/memory.limit_in_bytes")
    assert memory.memory_limit_bytes and user_memory < memory.memory_limit_bytes
    # Root in the sandbox cannot raise the limits, make a group, or reach the parent's files.
    attack = sandbox.run("sh", ["-c", """
        echo max > /.alcove/cgroup/pids/pids.max 2>/dev/null && echo raised-pids
        echo -1 > /.alcove/cgroup/memory/memory.limit_in_bytes 2>/dev/null && echo raised-memory
        echo 100000 > /.alcove/cgroup/cpu/cpu.shares 2>/dev/null && echo raised-cpu
        mkdir /.alcove/cgroup/pids/escape 2>/dev/null && echo made-group
        ls /.alcove/cgroup/pids/../.. >/dev/null 2>&1
        cat /.alcove/cgroup/pids/../pids.max 2>/dev/null | grep -qv "$(cat /.alcove/cgroup/pids/pids.max)" && echo read-parent
        mount -t cgroup -o pids none /mnt 2>/dev/null && echo mounted
        echo done
    """])
    assert attack.stdout.strip() == "done", attack
    assert read("/.alcove/cgroup/pids/pids.max") == user_pids


def test_a_memory_bomb_is_killed_inside_the_user_group_and_the_agent_stays(sandbox):
    bomb = sandbox.start_process("python3", ["-c", MEMORY_BOMB], stdin_mode="closed")
    wait_until(lambda: sandbox.get_process(bomb.pid).status != "running", "the bomb hit its limit")
    info = sandbox.get_process(bomb.pid)
    assert info.status == "oom_killed" and info.oom_killed, info
    # The agent was never in danger: it answers, starts processes, and its logs say what happened.
    assert sandbox.run("echo", ["alive"]).stdout == "alive"
    assert sandbox.list_processes()


@pytest.fixture
def sandbox(client):
    # Room for bombs: the default pids limit, a modest memory limit.
    with client.create_and_connect(memory_mb=1024) as sb:
        yield sb


def test_reading_a_fifo_or_a_device_is_refused_at_once(sandbox):
    """A FIFO would block the agent's read forever, /dev/zero never ends and /dev/tty has
    nothing behind it: each is a clear 400, never a hang or a 500."""
    sandbox.run("mkfifo", ["/tmp/pipe"])
    for path in ["/tmp/pipe", "/dev/zero", "/dev/tty", "/dev/null"]:
        with pytest.raises(RemoteAPIError) as refused:
            sandbox.read_file(path)
        assert refused.value.status_code == 400, (path, refused.value)
        assert "not a regular file" in str(refused.value), (path, refused.value)
    # Writing one is refused as well: a FIFO without a reader held the write (and its request)
    # until a reader came; one with a reader is still not a file.
    sandbox.run("mkfifo", ["/tmp/read"])
    reader = sandbox.start_process("cat", ["/tmp/read"])
    for path in ["/tmp/pipe", "/tmp/read", "/dev/tty"]:
        with pytest.raises(RemoteAPIError) as refused:
            sandbox.write_file(path, b"data")
        assert refused.value.status_code == 400, (path, refused.value)
        assert "not a regular file" in str(refused.value), (path, refused.value)
    # (and its reader was not disturbed: an open for writing would have ended it).
    assert sandbox.get_process(reader.pid).status == "running"
    sandbox.kill_process(reader.pid)
    # Nothing is stuck behind them: a plain read still answers.
    sandbox.write_file("/tmp/plain", b"ok")
    assert sandbox.read_file("/tmp/plain") == b"ok"
