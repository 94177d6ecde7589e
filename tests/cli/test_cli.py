"""The `alcove` CLI end to end: every command against a real server and real sandboxes,
driven as a person or a script would (a terminal through tmux for `shell`)."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import stat
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from framework.cli import run_cli
from framework.host import wait_for
from framework.network import mirror, reaches
from framework.server import ALCOVE_BIN, AlcoveServer


@pytest.fixture
def cli(server, tmp_path):
    config = tmp_path / "config.json"

    def call(*args: str, input: bytes | None = None, check: bool = True, **kw):
        done = run_cli(server.url, *args, config=config, input=input, **kw)
        if check and done.returncode != 0:
            raise AssertionError(
                f"alcove {' '.join(args)} exited {done.returncode}:\n"
                f"{done.stdout.decode(errors='replace')}\n{done.stderr.decode(errors='replace')}")
        return done

    call.config = config
    return call


@pytest.fixture
def dev(cli):
    """A named sandbox made with the CLI, removed afterwards."""
    name = f"cli-{uuid.uuid4().hex[:8]}"
    out = cli("create", "--name", name, "--wait", "-q").stdout.decode().strip()
    assert len(out) == 36, out
    yield name
    cli("rm", name, check=False)


def sh(cli, sandbox: str, script: str, **kw) -> subprocess.CompletedProcess:
    return cli("exec", sandbox, "--", "sh", "-c", script, **kw)


# ---- create, list, get, rm -----------------------------------------------------------------


def test_create_list_get_and_remove_as_json(cli):
    name = f"cli-{uuid.uuid4().hex[:8]}"
    created = json.loads(cli("create", "--name", name, "--cpus", "0.5", "--memory", "512M",
                             "--wait", "--json").stdout)
    assert created["name"] == name and created["status"] == "running"
    assert created["resources"]["memory_mb"] == 512
    listed = json.loads(cli("ls", "--json").stdout)
    mine = [s for s in listed if s["id"] == created["id"]]
    assert mine and mine[0]["status"] == "running"
    assert cli("ls", "-q").stdout.decode().split() == [s["id"] for s in listed]
    table = cli("ls").stdout.decode()
    assert table.splitlines()[0].split()[:3] == ["ID", "NAME", "STATUS"]
    assert name in table
    got = json.loads(cli("sandbox", "get", name, "--json").stdout)
    assert got["id"] == created["id"]
    assert cli("rm", name).stdout.decode().strip() == name
    assert created["id"] not in cli("ls", "-q").stdout.decode()
    everything = json.loads(cli("ls", "--all", "--json").stdout)
    ended = [s for s in everything if s["id"] == created["id"]]
    assert ended and ended[0]["status"] == "terminated"
    # An ended sandbox is still shown by id, from the archive.
    assert json.loads(cli("sandbox", "get", created["id"], "--json").stdout)["status"] == "terminated"


def test_create_with_environment_ports_and_no_internet(cli):
    info = json.loads(cli("create", "--env", "GREETING=hi there", "--env", "EMPTY=",
                          "--port", "8080", "--no-internet", "--json").stdout)
    try:
        assert info["status"] == "running"  # --env waits until it runs
        assert info["exposed_ports"] == [8080]
        assert info["network_policy"]["allow_internet_access"] is False
        out = sh(cli, info["id"], 'echo "$GREETING|${EMPTY-unset}"').stdout.decode()
        assert out == "hi there|\n"
    finally:
        cli("rm", info["id"])


def test_create_reuse_hands_out_the_named_sandbox_and_resumes_it(cli):
    name = f"cli-{uuid.uuid4().hex[:8]}"
    try:
        first = json.loads(cli("create", "--name", name, "--reuse", "--env", "MODE=first", "--json").stdout)
        assert first["bind_outcome"] == "created" and first["status"] == "running"
        taken = cli("create", "--name", name, check=False)
        assert taken.returncode == 1 and b"NAME_TAKEN" in taken.stderr and b"--reuse" in taken.stderr
        # The options of a reuse apply only when it creates: the environment stays the first one.
        again = cli("create", "--name", name, "--reuse", "--env", "MODE=second", "--cpus", "2").stdout.decode()
        assert again.strip() == f"{first['id']} ({name}) running, attached"
        assert sh(cli, name, 'echo "$MODE"').stdout.decode() == "first\n"
        cli("sandbox", "suspend", name)
        assert cli("create", "--name", name, "--reuse", "-q").stdout.decode().strip() == first["id"]
        assert json.loads(cli("sandbox", "get", name, "--json").stdout)["status"] == "running"
    finally:
        cli("rm", name, check=False)


# ---- exec ----------------------------------------------------------------------------------


def test_exec_returns_the_exit_code_and_keeps_streams_apart(cli, dev):
    done = sh(cli, dev, "echo to-out; echo to-err >&2; exit 7", check=False)
    assert done.returncode == 7
    assert done.stdout == b"to-out\n"
    assert b"to-err" in done.stderr and b"to-out" not in done.stderr
    assert sh(cli, dev, "true").returncode == 0
    # A signal: 128 + its number, as shells do.
    assert sh(cli, dev, "kill -9 $$", check=False).returncode == 137
    # A command that cannot start exits as a shell would: 127 when it is not there, 126 when
    # it cannot be executed, with the sandbox's reason on stderr (not a crash of the CLI).
    for command, code, reason in (
        ("/no/such/program", 127, b"COMMAND_NOT_FOUND"),
        ("no-such-program", 127, b"COMMAND_NOT_FOUND"),
        ("/etc/hostname", 126, b"NOT_EXECUTABLE"),
        ("/tmp", 126, b"NOT_EXECUTABLE"),
    ):
        done = cli("exec", dev, "--", command, check=False)
        assert done.returncode == code, (command, done.returncode, done.stderr)
        assert done.stderr.startswith(b"error:") and reason in done.stderr, done.stderr
        assert done.stdout == b""
    # Any other refusal is the CLI's own failure, 1: a user that is not there.
    done = cli("exec", dev, "-u", "no-such-user", "--", "true", check=False)
    assert done.returncode == 1 and b"USER_NOT_FOUND" in done.stderr, done.stderr


def test_exec_prints_a_line_longer_than_the_agent_keeps_whole_unchanged(cli, dev):
    # The agent cuts lines over 1 MiB into marked pieces; exec prints them as the one line.
    line = "é" * 1_200_000 + "x" * 700_000
    done = cli("exec", dev, "--", "python3", "-c", f"print('é' * 1_200_000 + 'x' * 700_000); print('next')")
    assert done.stdout == (line + "\nnext\n").encode()


def test_exec_forwards_stdin_until_its_end(cli, dev):
    assert cli("exec", dev, "--", "tr", "a-z", "A-Z", input=b"hello\nworld\n").stdout == b"HELLO\nWORLD\n"
    blob = os.urandom(300_000)
    counted = cli("exec", dev, "--", "sh", "-c", "cat | sha256sum", input=blob).stdout.decode()
    assert counted.split()[0] == hashlib.sha256(blob).hexdigest()


def test_exec_streams_output_while_the_command_runs(server, cli, dev):
    env = {k: v for k, v in os.environ.items() if not k.startswith("ALCOVE_")}
    env.update(ALCOVE_API_URL=server.url, ALCOVE_CONFIG=str(cli.config))
    proc = subprocess.Popen(
        [str(ALCOVE_BIN), "exec", dev, "--", "sh", "-c",
         "echo first; while [ ! -e /tmp/go ]; do sleep 0.1; done; echo second"],
        stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, env=env)
    try:
        assert proc.stdout.readline() == b"first\n"
        # The command is still waiting for /tmp/go: the line came live, not at the end.
        assert proc.poll() is None
        sh(cli, dev, "touch /tmp/go")
        assert proc.stdout.read() == b"second\n"
        assert proc.wait(60) == 0
    finally:
        proc.kill()


# ---- cp ------------------------------------------------------------------------------------


def test_cp_moves_100_mb_both_ways_intact(cli, dev, tmp_path):
    big = tmp_path / "big.bin"
    with open(big, "wb") as f:
        for _ in range(100):
            f.write(os.urandom(1024 * 1024))
    digest = hashlib.sha256(big.read_bytes()).hexdigest()
    cli("cp", str(big), f"{dev}:/data/")
    inside = sh(cli, dev, "sha256sum /data/big.bin; stat -c %s /data/big.bin").stdout.decode().split()
    assert inside[0] == digest and inside[2] == str(100 * 1024 * 1024)
    back = tmp_path / "back"
    back.mkdir()
    cli("cp", f"{dev}:/data/big.bin", str(back))
    assert hashlib.sha256((back / "big.bin").read_bytes()).hexdigest() == digest
    # To a new name, not into a directory.
    cli("cp", f"{dev}:/data/big.bin", str(tmp_path / "renamed.bin"))
    assert (tmp_path / "renamed.bin").stat().st_size == 100 * 1024 * 1024


def test_cp_copies_directory_trees_both_ways(cli, dev, tmp_path):
    src = tmp_path / "proj"
    (src / "a" / "b").mkdir(parents=True)
    (src / "empty").mkdir()
    (src / "a" / "one.txt").write_text("one\n")
    (src / "a" / "b" / "two.txt").write_text("two\n")
    script = src / "run.sh"
    script.write_text("#!/bin/sh\necho ran\n")
    script.chmod(0o755)
    # Links are made as they point, never followed here: one into the tree (as a project's
    # node_modules/.bin has), one out of it (to the sandbox's own file of that name).
    (src / "a" / "b" / "bin").symlink_to("../../run.sh")
    (src / "secret").symlink_to("/etc/hostname")
    done = cli("cp", str(src), f"{dev}:/work")
    assert b"and 2 link(s)" in done.stderr and b"skipped" not in done.stderr
    listing = sh(cli, dev, "cd /work && find . | sort").stdout.decode().split()
    assert listing == [".", "./a", "./a/b", "./a/b/bin", "./a/b/two.txt", "./a/one.txt", "./empty", "./run.sh",
                       "./secret"]
    assert sh(cli, dev, "readlink /work/a/b/bin /work/secret").stdout == b"../../run.sh\n/etc/hostname\n"
    assert sh(cli, dev, "/work/a/b/bin").stdout == b"ran\n"
    assert sh(cli, dev, "cat /work/secret").stdout == sh(cli, dev, "cat /etc/hostname").stdout
    sh(cli, dev, "rm /work/a/b/bin /work/secret")
    assert sh(cli, dev, "/work/run.sh").stdout == b"ran\n"
    # Copying to an existing directory puts the tree inside it.
    sh(cli, dev, "mkdir -p /into")
    cli("cp", str(src), f"{dev}:/into")
    assert sh(cli, dev, "cat /into/proj/a/b/two.txt").stdout == b"two\n"
    out = tmp_path / "out"
    cli("cp", f"{dev}:/work", str(out))
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*")) == [
        "a", "a/b", "a/b/two.txt", "a/one.txt", "empty", "run.sh"]
    assert (out / "a" / "b" / "two.txt").read_text() == "two\n"


def test_cp_out_of_a_hostile_sandbox_writes_nothing_dangerous(cli, dev, tmp_path):
    sh(cli, dev, "mkdir -p /evil/sub && cp /bin/true /evil/suid && chmod 4755 /evil/suid && "
                 "ln -s / /evil/sub/root && ln -s .. /evil/sub/up && mkfifo /evil/pipe && "
                 "ln -s /nowhere /evil/sub/dangling && echo data > /evil/sub/file")
    dest = tmp_path / "dest"
    done = cli("cp", f"{dev}:/evil", str(dest))
    err = done.stderr.decode()
    # The listing follows links: one out of the tree and one looping back are skipped, and so
    # are the FIFO (reading it would never end) and a link that leads nowhere.
    assert done.returncode == 0, err
    assert "/evil/sub/root: a link out of /evil" in err, err
    assert "/evil/sub/dangling: a link that leads nowhere" in err, err
    assert "/evil/sub/up: a link loop" in err, err
    assert "/evil/pipe" in err and "not a regular file" in err, err
    assert sorted(str(p.relative_to(dest)) for p in dest.rglob("*")) == ["sub", "sub/file", "suid"]
    # Nothing setuid, nothing outside the destination.
    for path in dest.rglob("*"):
        mode = path.lstat().st_mode
        assert not mode & (stat.S_ISUID | stat.S_ISGID), path
        assert not stat.S_ISLNK(mode), path
    assert stat.S_IMODE((dest / "suid").stat().st_mode) == 0o644
    # A link planted in the destination is never written through.
    outside = tmp_path / "outside.txt"
    outside.write_text("keep me\n")
    trap = tmp_path / "trap"
    trap.mkdir()
    (trap / "victim").symlink_to(outside)
    sh(cli, dev, "echo overwritten > /tmp/victim")
    refused = cli("cp", f"{dev}:/tmp/victim", str(trap), check=False)
    assert refused.returncode == 1
    assert outside.read_text() == "keep me\n"


# ---- suspend, resume, snapshot, restore ----------------------------------------------------


def test_suspend_resume_snapshot_and_restore(cli, dev):
    sh(cli, dev, "echo kept > /root/state")
    # A process whose memory must survive: it counts in a shell variable.
    cli("exec", dev, "--", "sh", "-c",
        "nohup sh -c 'n=41; while true; do echo $((n+1)) > /tmp/n; sleep 0.2; done' >/dev/null 2>&1 &")
    assert cli("sandbox", "suspend", dev).stdout.decode().split()[1] == "suspended"
    assert json.loads(cli("sandbox", "get", dev, "--json").stdout)["status"] == "suspended"
    assert cli("sandbox", "resume", dev).stdout.decode().split()[1] == "running"
    assert sh(cli, dev, "cat /root/state /tmp/n").stdout == b"kept\n42\n"
    snap = cli("sandbox", "snapshot", dev, "-q").stdout.decode().strip()
    listed = json.loads(cli("snapshot", "ls", "--json").stdout)
    assert any(s["id"] == snap and s["status"] == "completed" for s in listed)
    restored_name = f"{dev}-copy"
    restored = cli("sandbox", "restore", snap, "--name", restored_name, "-q").stdout.decode().strip()
    try:
        assert sh(cli, restored_name, "cat /root/state").stdout == b"kept\n"
        fs_snap = cli("sandbox", "snapshot", dev, "--type", "filesystem", "--json").stdout
        assert json.loads(fs_snap)["snapshot_type"] == "filesystem"
        cli("snapshot", "rm", json.loads(fs_snap)["id"])
    finally:
        cli("rm", restored)
    cli("snapshot", "rm", snap)
    assert snap not in cli("snapshot", "ls", "-q").stdout.decode()


# ---- processes and logs --------------------------------------------------------------------


def test_ps_and_kill(server, cli, dev):
    cli("exec", dev, "--", "sh", "-c", "nohup sleep 600 >/dev/null 2>&1 &")
    procs = json.loads(cli("ps", dev, "--json").stdout)
    assert any(p["command"] == "sh" for p in procs)
    table = cli("ps", dev).stdout.decode()
    assert table.splitlines()[0].split()[:3] == ["PID", "NAME", "STATUS"]
    # Signal a tracked process by pid (started through the SDK, as a background process).
    from alcove.sandbox import SandboxClient

    with SandboxClient(api_url=server.url) as client:
        sandbox = client.connect(dev)
        proc = sandbox.start_process("sleep", ["600"])
        cli("sandbox", "kill", dev, str(proc.pid), "--signal", "TERM")
        for _ in range(100):
            info = sandbox.get_process(proc.pid)
            if info.status != "running":
                break
            time.sleep(0.1)
        assert info.status == "signaled" and info.signal == 15
    bad = cli("sandbox", "kill", dev, "999999", check=False)
    assert bad.returncode == 1 and b"error" in bad.stderr


def test_names_and_paths_a_sandbox_chose_reach_the_terminal_as_text(server, cli, dev, tmp_path):
    """A sandbox names its processes' arguments and its files: escape sequences in them (a
    window title, a cleared screen, colours) and carriage returns are shown as U+FFFD, not
    obeyed, in `ps`, in `cp`'s notes and in error messages."""
    evil = "\x1b]0;PWNED\x07\x1b[2J\x1b[31mred\rFAKE\u202eevil"
    from alcove.sandbox import SandboxClient

    with SandboxClient(api_url=server.url) as client:
        client.connect(dev).start_process("sleep", ["600", evil])
    table = cli("ps", dev).stdout.decode()
    assert "PWNED" in table and "FAKE" in table, table
    assert not any(ch in table for ch in "\x1b\x07\r\u202e"), repr(table)
    sh(cli, dev, "mkdir -p /ev && mkfifo \"/ev/f$(printf '\\033[2J')x\" && "
                 "ln -s / \"/ev/l$(printf '\\033]0;T\\007')\"")
    done = cli("cp", f"{dev}:/ev", str(tmp_path / "ev"), check=False)
    err = done.stderr.decode()
    assert "skipped" in err and "\ufffd[2J" in err, repr(err)
    assert "\x1b" not in err and "\x07" not in err, repr(err)
    missing = cli("cp", f"{dev}:/ev/nothing\x1b[2J", str(tmp_path / "ev"), check=False)
    assert missing.returncode == 1 and b"\x1b" not in missing.stderr, missing.stderr


def test_logs_and_follow(server, cli, dev):
    sh(cli, dev, "echo one; echo two >&2")
    out = cli("logs", dev).stdout.decode()
    assert "one\n" in out and "two\n" in out
    tail = cli("logs", dev, "--tail", "1").stdout.decode().splitlines()
    assert len(tail) == 1
    warn = cli("logs", dev, "--level", "warn", "--grep", "two").stdout.decode()
    assert "two" in warn and "one" not in warn
    as_json = json.loads(cli("logs", dev, "--json").stdout)
    assert any(r["body"] == "one" for r in as_json)
    env = {k: v for k, v in os.environ.items() if not k.startswith("ALCOVE_")}
    env.update(ALCOVE_API_URL=server.url, ALCOVE_CONFIG=str(cli.config))
    follow = subprocess.Popen([str(ALCOVE_BIN), "logs", "-f", dev], stdout=subprocess.PIPE, env=env)
    try:
        marker = f"marker-{uuid.uuid4().hex[:6]}"
        sh(cli, dev, f"echo {marker}")
        seen = []
        while True:
            line = follow.stdout.readline().decode()
            assert line, f"logs -f ended before the marker: {seen}"
            seen.append(line)
            if marker in line:
                break
        assert seen.count("one\n") == 1  # old records once, not again on every poll
        # The sandbox ends: follow ends on its own.
        cli("rm", dev)
        assert follow.wait(60) == 0
    finally:
        follow.kill()


# ---- shell (a real terminal, through tmux) -------------------------------------------------


@pytest.fixture
def tmux(tmp_path):
    sock = str(tmp_path / "tmux.sock")

    def call(*args: str) -> str:
        return subprocess.run(["tmux", "-S", sock, *args], capture_output=True, check=True,
                              timeout=30).stdout.decode()

    yield call
    subprocess.run(["tmux", "-S", sock, "kill-server"], capture_output=True)


def wait_for_pane(tmux, needle: str, timeout: float = 30) -> str:
    deadline = time.monotonic() + timeout
    while True:
        pane = tmux("capture-pane", "-p", "-t", "t")
        if needle in pane:
            return pane
        if time.monotonic() > deadline:
            raise AssertionError(f"{needle!r} not on the screen:\n{pane}")
        time.sleep(0.1)


def test_shell_is_an_interactive_terminal(server, cli, dev, tmux, tmp_path):
    status = tmp_path / "status"
    command = (f"env ALCOVE_API_URL={server.url} ALCOVE_CONFIG={cli.config} {ALCOVE_BIN} shell {dev};"
               f" echo $? > {status}; sleep 60")
    tmux("new-session", "-d", "-s", "t", "-x", "100", "-y", "30", command)
    tmux("send-keys", "-t", "t", "echo shell-$((6*7)) $(tput cols)x$(tput lines)", "Enter")
    wait_for_pane(tmux, "shell-42 100x30")
    # Raw mode: Ctrl-C reaches the sandbox's shell, which survives it.
    tmux("send-keys", "-t", "t", "sleep 100", "Enter")
    # Ctrl-C only once the sleep runs: one sent while the shell is still starting it is not
    # the interrupt this checks.
    sleeping = ["--", "sh", "-c", "grep -sqx sleep /proc/[0-9]*/comm"]
    assert wait_for(lambda: cli("exec", dev, *sleeping, check=False).returncode == 0, 30)
    tmux("send-keys", "-t", "t", "C-c")
    tmux("send-keys", "-t", "t", "echo after-$((1+1))", "Enter")
    wait_for_pane(tmux, "after-2")
    # A resize reaches the sandbox's terminal (SIGWINCH).
    tmux("resize-window", "-t", "t", "-x", "120", "-y", "40")
    time.sleep(0.5)
    tmux("send-keys", "-t", "t", "echo size-$(stty size | tr ' ' x)", "Enter")
    wait_for_pane(tmux, "size-40x120")
    tmux("send-keys", "-t", "t", "exit 5", "Enter")
    deadline = time.monotonic() + 30
    while not status.exists() or not status.read_text().strip():
        assert time.monotonic() < deadline, tmux("capture-pane", "-p", "-t", "t")
        time.sleep(0.1)
    assert status.read_text().strip() == "5"


def test_shell_reads_piped_input_as_a_script(cli, dev):
    done = cli("shell", dev, input=b"echo piped-$((2+3))\nexit 4\n", check=False)
    assert done.returncode == 4 and done.stdout == b"piped-5\n"
    # Without an exit: the end of the input is the end of the shell.
    assert cli("shell", dev, input=b"echo no-exit\n").stdout == b"no-exit\n"
    # -t asks for a terminal: refused with a reason when there is none.
    refused = cli("exec", "-t", dev, "--", "sh", input=b"echo x\n", check=False)
    assert refused.returncode == 1 and b"needs a terminal" in refused.stderr


def test_shell_reconnects_when_the_server_restarts(tmux, tmp_path):
    srv = AlcoveServer()
    srv.start()
    config = tmp_path / "config.json"
    name = "reconnect"
    try:
        assert run_cli(srv.url, "create", "--name", name, "--wait", config=config).returncode == 0
        tmux("new-session", "-d", "-s", "t", "-x", "100", "-y", "30",
             f"env ALCOVE_API_URL={srv.url} ALCOVE_CONFIG={config} {ALCOVE_BIN} shell {name}; sleep 60")
        tmux("send-keys", "-t", "t", "X=before-$((2*3))", "Enter")
        time.sleep(0.5)
        srv.kill()
        srv.start()
        wait_for_pane(tmux, "reconnecting")
        wait_for_pane(tmux, "[alcove: reconnected]")
        tmux("send-keys", "-t", "t", "echo still-$X", "Enter")
        wait_for_pane(tmux, "still-before-6")
    finally:
        if srv.proc is not None:
            run_cli(srv.url, "rm", name, config=config)
            srv.stop()
        shutil.rmtree(srv.data_dir, ignore_errors=True)


# ---- login, usage, completions -------------------------------------------------------------


def test_login_checks_and_saves_the_key_privately(tmp_path):
    key = "k-" + uuid.uuid4().hex
    srv = AlcoveServer(api_keys=[key])
    srv.start()
    config = tmp_path / "alcove" / "config.json"
    try:
        # Without a key, the server refuses: a clear message, exit 1.
        denied = run_cli(srv.url, "ls", config=config)
        assert denied.returncode == 1 and b"401" in denied.stderr
        # A wrong key is refused at login and nothing is saved.
        wrong = run_cli(None, "login", "--api-url", srv.url, config=config, input=b"nope\n")
        assert wrong.returncode == 1 and not config.exists()
        ok = run_cli(None, "login", "--api-url", srv.url, config=config, input=f"{key}\n".encode())
        assert ok.returncode == 0, ok.stderr
        assert key.encode() not in ok.stdout + ok.stderr
        assert stat.S_IMODE(config.stat().st_mode) == 0o600
        assert json.loads(config.read_text()) == {"api_url": srv.url, "api_key": key}
        # Later commands use what was saved, with no flag or variable.
        assert run_cli(None, "ls", "--json", config=config).returncode == 0
        # The saved key is never sent to another server.
        other = run_cli(None, "ls", "--api-url", "http://127.0.0.1:9", config=config)
        assert other.returncode == 1 and b"127.0.0.1:9" in other.stderr
        # A flag or ALCOVE_API_KEY overrides the saved key.
        overridden = run_cli(None, "ls", config=config, env={"ALCOVE_API_KEY": "wrong"})
        assert overridden.returncode == 1 and b"401" in overridden.stderr
        # A config others can read is refused (it holds a key).
        config.chmod(0o644)
        loose = run_cli(None, "ls", config=config)
        assert loose.returncode == 1 and b"chmod 600" in loose.stderr
        config.chmod(0o600)
        assert run_cli(None, "logout", config=config).returncode == 0
        assert not config.exists()
    finally:
        srv.stop()
        shutil.rmtree(srv.data_dir, ignore_errors=True)


@pytest.mark.parametrize("args", [
    ["create", "--memory", "lots"],
    ["create", "--port", "0"],
    ["create", "--reuse"],
    ["exec", "some-sandbox"],
    ["cp", "only-one-side"],
    ["sandbox", "snapshot", "x", "--type", "disk"],
    ["logs", "x", "--tail", "0"],
    ["sandbox", "kill", "x", "1", "--signal", "NOPE"],
    ["no-such-command"],
    ["ls", "--no-such-flag"],
    ["sandbox", "resize", "x"],
    ["sandbox", "network", "x"],
    ["sandbox", "network", "x", "--open", "--no-internet"],
    ["exec", "x", "--name", "web", "--", "true"],
    ["exec", "-d", "-t", "x", "--", "true"],
    ["exec", "-d", "x", "--health-http", "web", "--", "true"],
    ["sandbox", "copy", "x", "--times", "0"],
    ["create", "--volume", "data"],
    ["create", "--volume", "data:relative/path"],
])
def test_bad_usage_exits_with_two(tmp_path, args):
    done = run_cli("http://127.0.0.1:9", *args, config=tmp_path / "c.json")
    assert done.returncode == 2, (args, done.stderr)
    assert done.stderr.startswith(b"error:") and b"--help" in done.stderr, done.stderr


def test_failures_exit_with_one_and_say_why(cli):
    missing = cli("sandbox", "get", "no-such-sandbox", check=False)
    assert missing.returncode == 1 and b"error:" in missing.stderr
    # The server's reason once, with its code.
    assert missing.stderr.count(b"not found") == 1 and b"(NOT_FOUND)" in missing.stderr, missing.stderr
    both_local = cli("cp", "/etc/hostname", "/tmp/x", check=False)
    assert both_local.returncode == 1 and b"SANDBOX:PATH" in both_local.stderr
    unreachable = run_cli("http://127.0.0.1:9", "ls", config=cli.config)
    assert unreachable.returncode == 1 and b"127.0.0.1:9" in unreachable.stderr


def test_runs_without_a_home_when_the_environment_names_the_server(server):
    """A cron job or a bare container has no HOME: nothing can have been saved there, and
    ALCOVE_API_URL is all the CLI needs."""
    env = {"PATH": os.environ["PATH"], "ALCOVE_API_URL": server.url}
    done = subprocess.run([str(ALCOVE_BIN), "ls", "-q"], env=env, capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr
    # Saving is what needs a place, and says so.
    login = subprocess.run([str(ALCOVE_BIN), "login", "--api-url", server.url, "--no-key"], env=env,
                           stdin=subprocess.DEVNULL, capture_output=True, timeout=60)
    assert login.returncode == 1 and b"HOME" in login.stderr, login.stderr


def test_completions_man_and_help_are_generated(tmp_path):
    for shell_name in ["bash", "zsh", "fish"]:
        script = run_cli(None, "completions", shell_name, config=tmp_path / "c.json")
        assert script.returncode == 0 and b"shell" in script.stdout and b"exec" in script.stdout
    page = run_cli(None, "man", config=tmp_path / "c.json")
    assert page.returncode == 0 and b".TH alcove 1" in page.stdout
    pages = tmp_path / "man"
    assert run_cli(None, "man", "--dir", str(pages), config=tmp_path / "c.json").returncode == 0
    assert (pages / "alcove-sandbox-exec.1").exists()
    helped = run_cli(None, "exec", "--help", config=tmp_path / "c.json")
    assert helped.returncode == 0 and b"Examples:" in helped.stdout


def test_ports_stats_and_desktop_url(cli, dev):
    cli("sandbox", "ports", "expose", dev, "8080", "3000")
    ports = json.loads(cli("sandbox", "ports", "ls", dev, "--json").stdout)
    assert [p["port"] for p in ports] == [3000, 8080]
    url = cli("sandbox", "ports", "url", dev, "8080").stdout.decode().strip()
    assert url.startswith("http://8080-") and ".sandbox.localhost:" in url
    cli("sandbox", "ports", "unexpose", dev, "3000")
    assert cli("sandbox", "ports", "url", dev, "3000", check=False).returncode == 1
    assert cli("sandbox", "ports", "expose", dev, "9501", check=False).returncode == 1
    stats = json.loads(cli("sandbox", "stats", dev, "--json").stdout)
    assert stats["memory_bytes"] > 0 and stats["memory_limit_bytes"] == 1024 * 1024 * 1024
    desktop = cli("sandbox", "desktop", dev).stdout.decode().strip()
    assert "/desktop/" in desktop and "token=" in desktop


def test_volumes_through_the_cli(cli, dev):
    vol = f"v{uuid.uuid4().hex[:8]}"
    cli("volume", "create", vol, "--size", "64M")
    try:
        cli("volume", "attach", dev, vol, "/mnt/v")
        sh(cli, dev, "echo on-volume > /mnt/v/f")
        listed = json.loads(cli("volume", "ls", "--json").stdout)
        mine = [v for v in listed if v["name"] == vol]
        assert mine and mine[0]["attachments"][0]["mount_path"] == "/mnt/v"
        assert vol in cli("volume", "ls", "-q").stdout.decode().splitlines()
        assert cli("volume", "rm", vol, check=False).returncode == 1  # in use
        cli("volume", "detach", dev, "/mnt/v")
    finally:
        cli("volume", "rm", vol, check=False)
    assert vol not in cli("volume", "ls").stdout.decode()


def test_pools_through_the_cli(cli):
    pool = cli("pool", "create", "--memory", "1G", "--warm", "1", "--max", "2").stdout.decode().strip()
    try:
        assert any(p["id"] == pool for p in json.loads(cli("pool", "ls", "--json").stdout))
        # An update changes what it names and keeps the rest (a PUT replaces the whole pool).
        updated = cli("pool", "update", pool, "--max", "3", "--deny-out", "10.0.0.0/8").stdout.decode().split()
        assert updated == [pool, "warm=1", "max=3", "cpus=1", "memory=1024M"], updated
        now = json.loads(cli("pool", "get", pool).stdout)
        assert now["network_policy"]["deny_out"] == ["10.0.0.0/8"] and now["timeout_secs"] == 0, now
        too_warm = cli("pool", "update", pool, "--warm", "5", check=False)
        assert too_warm.returncode == 1 and b"max_containers" in too_warm.stderr, too_warm.stderr
        # Ids alone, one a line, as `ls -q` prints them everywhere (for xargs).
        assert pool in cli("pool", "ls", "-q").stdout.decode().splitlines()
        images = cli("image", "ls", "-q").stdout.decode().splitlines()
        assert images and all(i.startswith("sha256:") for i in images), images
        assert cli("node", "ls", "-q").stdout.decode().strip()
        assert cli("secrets", "ls").returncode == 0
        name = f"claimed-{uuid.uuid4().hex[:6]}"
        claimed = json.loads(cli("pool", "claim", pool, "--name", name, "--env", "JOB=7",
                                 "--json").stdout)
        assert claimed["name"] == name and claimed["status"] == "running"
        assert sh(cli, name, 'echo "job $JOB"').stdout == b"job 7\n"
        containers = json.loads(cli("pool", "get", pool).stdout)["containers"]
        assert any(c["sandbox_id"] == claimed["id"] and c["state"].lower() == "running" for c in containers)
        busy = cli("pool", "rm", pool, check=False)
        assert busy.returncode == 1 and b"POOL_IN_USE" in busy.stderr
        cli("rm", name)
    finally:
        cli("pool", "rm", pool, check=False)
    assert pool not in cli("pool", "ls").stdout.decode()


def test_network_policy_at_create_survives_rename_and_ports(cli, client):
    """The policy the flags give is enforced, and a rename or a change of ports leaves it as it
    was (the CLI's rename once sent `"network": null`, which reset a locked-down sandbox to open)."""
    host, ip = mirror()
    info = json.loads(cli("create", "--no-internet", "--allow-out", "10.1.2.3", "--deny-out", "10.0.0.0/8",
                          "--wait", "--json").stdout)
    policy = {"allow_internet_access": False, "allow_out": ["10.1.2.3"], "deny_out": ["10.0.0.0/8"]}
    try:
        assert info["network_policy"] == policy
        assert not reaches(client.connect(info["id"]), host, ip)
        name = f"cli-{uuid.uuid4().hex[:8]}"
        cli("sandbox", "rename", info["id"], name)
        cli("sandbox", "ports", "expose", name, "8080")
        after = json.loads(cli("sandbox", "get", name, "--json").stdout)
        assert after["network_policy"] == policy and after["exposed_ports"] == [8080], after
        shown = cli("sandbox", "get", name).stdout.decode()
        assert re.search(r"^internet\s+blocked$", shown, re.M), shown
        assert re.search(r"^allow out\s+10\.1\.2\.3$", shown, re.M), shown
        assert re.search(r"^deny out\s+10\.0\.0\.0/8$", shown, re.M), shown
        assert not reaches(client.connect(info["id"]), host, ip), "rename and ports opened the network"
        # Changed live: opened, then closed but for the mirror, then open but for it.
        assert cli("sandbox", "network", name, "--open").stdout.decode().split()[1:] == ["internet=allowed"]
        assert reaches(client.connect(info["id"]), host, ip)
        closed = cli("sandbox", "network", name, "--no-internet", "--allow-out", ip).stdout.decode()
        assert closed.split()[1:] == ["internet=blocked", f"allow-out={ip}"], closed
        assert reaches(client.connect(info["id"]), host, ip)
        cli("sandbox", "network", name, "--deny-out", f"{ip}/32")
        assert not reaches(client.connect(info["id"]), host, ip)
    finally:
        cli("rm", info["id"])


def test_volumes_and_a_network_policy_bound_at_create_and_claim(cli, client):
    host, ip = mirror()
    vol = f"v{uuid.uuid4().hex[:8]}"
    cli("volume", "create", vol, "--size", "64M")
    pool = cli("pool", "create", "--memory", "1G", "--warm", "1", "--max", "2",
               "--no-internet").stdout.decode().strip()
    made: list[str] = []
    try:
        assert json.loads(cli("pool", "get", pool).stdout)["network_policy"]["allow_internet_access"] is False
        plain = json.loads(cli("pool", "claim", pool, "--json").stdout)
        made.append(plain["id"])
        assert not reaches(client.connect(plain["id"]), host, ip), "the pool's policy"
        # The claim's policy replaces the pool's; its volume is mounted before it is handed out.
        bound = json.loads(cli("pool", "claim", pool, "--no-internet", "--allow-out", ip,
                               "--volume", f"{vol}:/data", "--json").stdout)
        made.append(bound["id"])
        assert bound["file_systems"] == [{"file_system_id": vol, "mount_path": "/data", "read_only": False}]
        assert reaches(client.connect(bound["id"]), host, ip), "the claim's allow-out"
        shown = cli("sandbox", "get", bound["id"]).stdout.decode()
        assert re.search(rf"^pool\s+{pool}$", shown, re.M), shown
        assert re.search(rf"^volume\s+{vol} at /data$", shown, re.M), shown
        sh(cli, bound["id"], "echo kept > /data/f")
        # Read-write in one sandbox at a time: a create asking for it is refused as such (not as
        # a taken name), and leaves no sandbox behind.
        before = set(cli("ls", "-q").stdout.decode().split())
        busy = cli("create", "--volume", f"{vol}:/data", "--wait", check=False)
        assert busy.returncode == 1 and b"FILE_SYSTEM_IN_USE" in busy.stderr, busy.stderr
        assert b"--reuse" not in busy.stderr, busy.stderr
        assert set(cli("ls", "-q").stdout.decode().split()) == before
        # Detached by its name; a second time it says what is mounted instead.
        cli("volume", "detach", bound["id"], vol)
        again = cli("volume", "detach", bound["id"], vol, check=False)
        assert again.returncode == 1 and b"is not mounted" in again.stderr, again.stderr
        ro = json.loads(cli("create", "--volume", f"{vol}:/ro:ro", "--wait", "--json").stdout)
        made.append(ro["id"])
        assert ro["file_systems"][0]["read_only"] is True
        assert sh(cli, ro["id"], "cat /ro/f").stdout == b"kept\n"
        assert sh(cli, ro["id"], "touch /ro/new 2>/dev/null", check=False).returncode != 0
        refused = cli("cp", "/etc/hostname", f"{ro['id']}:/ro/", check=False)
        assert refused.returncode == 1, refused.stderr
        assert b"the server answered 403" in refused.stderr and b"read-only file system" in refused.stderr, refused.stderr
    finally:
        for sandbox in made:
            cli("rm", sandbox, check=False)
        cli("pool", "rm", pool, check=False)
        cli("volume", "rm", vol, check=False)
    assert vol not in cli("volume", "ls", "-q").stdout.decode().split()


def test_resize_and_copy_through_the_cli(cli, dev):
    out = cli("sandbox", "resize", dev, "--cpus", "0.5", "--memory", "2G").stdout.decode()
    assert out.split()[1:] == ["cpus=0.5", "memory=2048M", "disk=10240M"], out
    limits = sh(cli, dev, "cat /sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/cpu/cpu.cfs_quota_us")
    assert limits.stdout.split() == [b"2147483648", b"50000"], limits.stdout
    shrink = cli("sandbox", "resize", dev, "--disk", "1G", check=False)
    assert shrink.returncode == 1 and b"cannot shrink" in shrink.stderr, shrink.stderr
    source = json.loads(cli("sandbox", "get", dev, "--json").stdout)
    assert source["resources"]["disk_mb"] == 10240
    sh(cli, dev, "echo state > /tmp/s")
    lines = cli("sandbox", "copy", dev, "--times", "2").stdout.decode().splitlines()
    copies = [line.split()[0] for line in lines]
    try:
        assert len(lines) == 2 and all(line.endswith(" running") for line in lines), lines
        assert len(set(copies)) == 2 and source["id"] not in copies
        for copy in copies:
            assert sh(cli, copy, "cat /tmp/s").stdout == b"state\n"
        # Independent of each other and of the source.
        sh(cli, copies[0], "echo changed > /tmp/s")
        assert sh(cli, copies[1], "cat /tmp/s").stdout == b"state\n"
        assert sh(cli, dev, "cat /tmp/s").stdout == b"state\n"
    finally:
        for copy in copies:
            cli("rm", copy, check=False)


def test_background_and_supervised_processes(cli, dev):
    def process(pid: int) -> dict:
        return next(p for p in json.loads(cli("ps", dev, "--json").stdout) if p["pid"] == pid)

    plain = cli("exec", "-d", dev, "--", "sleep", "300").stdout.decode().split()
    assert len(plain) == 1 and plain[0].isdigit(), plain
    assert process(int(plain[0]))["status"] == "running"
    # Named and restarted on failure: three runs, then it gives up; its output is in the logs.
    pid, name = cli("exec", "-d", dev, "--name", "flaky", "--restart", "on-failure", "--max-restarts", "2",
                    "--", "sh", "-c", "echo up; sleep 0.3; exit 3").stdout.decode().split()
    assert name == "flaky" and pid.isdigit()

    def gave_up() -> bool:
        managed = [p["managed"] for p in json.loads(cli("ps", dev, "--json").stdout)
                   if (p.get("managed") or {}).get("name") == "flaky"]
        return any(m["restart_count"] == 2 and m["last_error"] for m in managed)

    assert wait_for(gave_up, 30), cli("ps", dev, "--json").stdout
    assert cli("logs", dev, "--process", "flaky").stdout.decode().count("up\n") == 3
    # Restarted by name: a new pid, the same name and health check.
    first = cli("exec", "-d", dev, "--name", "srv", "--health-tcp", "8000", "--",
                "python3", "-m", "http.server", "8000").stdout.decode().split()
    again = cli("sandbox", "restart-process", dev, "srv").stdout.decode().split()
    assert again[1] == "srv" and again[0] != first[0], (first, again)
    restarted = process(int(again[0]))
    assert restarted["status"] == "running" and restarted["managed"]["health_check"]["port"] == 8000
    taken = cli("exec", "-d", dev, "--name", "srv", "--", "true", check=False)
    assert taken.returncode == 1 and b"NAME_TAKEN" in taken.stderr, taken.stderr
    missing = cli("exec", "-d", dev, "--", "no-such-program", check=False)
    assert missing.returncode == 127, missing.stderr
    # A kill ends its supervision: no run of it comes back.
    cli("sandbox", "kill", dev, "srv")
    assert wait_for(lambda: process(int(again[0]))["status"] != "running", 10)
    time.sleep(1.5)
    runs = [p for p in json.loads(cli("ps", dev, "--json").stdout)
            if (p.get("managed") or {}).get("name") == "srv" and p["status"] == "running"]
    assert runs == [], runs
