"""An interactive `sh` (dash) on a PTY survives suspend/resume and a memory snapshot.

Dash with job control opens /dev/tty (bash and python do not). CRIU 4.2.1 refused to dump such a
tree ("tty: ctty inheritance detected"): it matched the PTY master the agent holds (pid 1, dumped
first) against the shell's /dev/tty. scripts/criu/0002-tty-ctty-held-by-session-leader.patch makes
it check what restore needs instead: the task holding /dev/tty leads its terminal's session.
"""

from __future__ import annotations

import pytest

from alcove.sandbox import RemoteAPIError

PROMPT = "sbx$ "
ROOT_PROMPT = "# "  # dash's default prompt for root: a non-interactive bash passes no PS1 on

# (command, args, env, prompt). `bash -c "sh -i"` execs sh, as images' entry scripts do.
SHELLS = {
    "sh": ("sh", [], {"PS1": PROMPT}, PROMPT),
    "sh-i-under-bash": ("bash", ["-c", "sh -i"], {}, ROOT_PROMPT),
}


def start_shell(sandbox, which):
    command, args, env, prompt = SHELLS[which]
    pty = sandbox.create_pty(command, args, env=env, cols=200)
    pty.connect()
    pty.read_until(prompt, timeout=10)
    return pty, prompt


def run_line(pty, prompt, a: int, b: int) -> bytes:
    """Types `echo $((a+b))` and returns what the shell printed up to its next prompt; the sum
    only appears in the output (the echoed line shows the expression)."""
    pty.send(f"echo $(({a}+{b}))\n")
    out = pty.read_until(f"{a + b}\r\n", timeout=15)
    return out + pty.read_until(prompt, timeout=15)


def dash_holds_dev_tty(sandbox) -> bool:
    """Whether the shell on the PTY (a dash) holds /dev/tty open, the case this module is about."""
    probe = "for p in /proc/[0-9]*; do ls -l $p/fd 2>/dev/null; done | grep -c ' -> /dev/tty$'"
    return int(sandbox.run("sh", ["-c", probe]).stdout.strip() or 0) > 0


@pytest.mark.parametrize("which", sorted(SHELLS))
def test_interactive_sh_survives_suspend_and_resume(client, which):
    name = f"pty-dump-{which}"
    with client.create_and_connect(name=name) as sandbox:
        pty, prompt = start_shell(sandbox, which)
        run_line(pty, prompt, 40, 2)
        assert dash_holds_dev_tty(sandbox)
        session, token = pty.session_id, pty.token
        pty.close()

        assert client.suspend(name).status == "suspended"
        assert client.resume(name).status == "running"

        again = client.connect(name)
        with again.connect_pty(session, token) as pty:
            run_line(pty, prompt, 50, 5)
            # Job control still works: a foreground job gets the terminal and gives it back.
            pty.send("sleep 0.2; echo after-$((3*7))\n")
            pty.read_until("after-21\r\n", timeout=15)
            pty.read_until(prompt, timeout=15)
            pty.send("exit 4\n")
            assert pty.wait(timeout=10) == 4


def test_sh_running_a_foreground_job_survives_suspend_and_resume(client):
    """Dumped while the terminal's foreground group is a job, not the shell (CRIU refused that
    too: it wanted the foreground group to be the session)."""
    with client.create_and_connect(name="pty-dump-job") as sandbox:
        pty, prompt = start_shell(sandbox, "sh")
        pty.send("sleep 2; echo woke-$((6*7))\n")
        pty.read_until("woke-$((6*7))\r\n", timeout=10)  # the echo of the typed line
        session, token = pty.session_id, pty.token
        pty.close()

        assert client.suspend("pty-dump-job").status == "suspended"
        assert client.resume("pty-dump-job").status == "running"

        with client.connect("pty-dump-job").connect_pty(session, token) as pty:
            pty.read_until("woke-42\r\n", timeout=20)
            pty.read_until(prompt, timeout=10)
            run_line(pty, prompt, 60, 6)


def test_memory_snapshot_of_interactive_sh_restores_a_usable_shell(client):
    with client.create_and_connect(name="pty-dump-snap") as source:
        pty, prompt = start_shell(source, "sh")
        run_line(pty, prompt, 1, 2)
        session, token = pty.session_id, pty.token
        pty.close()

        snap = client.snapshot_and_wait(source.sandbox_id)
        assert snap.status in ("completed", "local_ready"), snap
        try:
            # The source keeps its shell.
            with source.connect_pty(session, token) as pty:
                run_line(pty, prompt, 3, 4)
            with client.create_and_connect(snapshot_id=snap.snapshot_id) as clone:
                with clone.connect_pty(session, token) as pty:
                    run_line(pty, prompt, 70, 7)
                    pty.send("exit 0\n")
                    assert pty.wait(timeout=10) == 0
        finally:
            client.delete_snapshot(snap.snapshot_id)


def test_sh_started_from_an_interactive_bash_is_refused_and_keeps_running(server, client):
    """Not supported: that dash holds /dev/tty but does not lead the session (bash does). CRIU
    forks a session's other tasks before its leader gets the terminal back, so they come back
    without a controlling terminal, and dash could not reopen /dev/tty nor set the foreground
    group. The dump is refused cleanly: the sandbox keeps running and the shell stays usable."""
    with client.create_and_connect(name="pty-dump-nested") as sandbox:
        pty = sandbox.create_pty("bash", ["--norc", "--noprofile"], env={"PS1": "bash$ "}, cols=200)
        with pty:
            pty.read_until("bash$ ", timeout=10)
            pty.send(f"PS1='{PROMPT}' sh -i\n")
            pty.read_until(PROMPT, timeout=10)
            with pytest.raises(RemoteAPIError) as err:
                client.suspend("pty-dump-nested")
            # The sandbox stands in the way, not the server: a conflict, saying what to do.
            assert (err.value.status_code, err.value.code) == (409, "OPERATION_REFUSED"), err.value
            assert "inner shell" in err.value.message, err.value
            assert client.get("pty-dump-nested").status == "running"
            run_line(pty, PROMPT, 80, 8)
            pty.send("exit\n")
            pty.read_until("bash$ ", timeout=10)
        # Back in bash alone, the sandbox suspends.
        assert client.suspend("pty-dump-nested").status == "suspended"
        assert client.resume("pty-dump-nested").status == "running"
