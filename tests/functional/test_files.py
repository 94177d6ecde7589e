"""The file API through the proxy (docs/protocol/sandbox-api.md, Files): round trips of any bytes and any path, listing,
deleting, a 1 GiB file streamed both ways, and the agent's error answers."""

from __future__ import annotations

import hashlib
import os
import resource
import socket
import time

import pytest

from alcove.sandbox import RemoteAPIError, SandboxError, SandboxNotFoundError
from framework.agent import agent, assert_error

ODD_DIR = "/tmp/dir with space"
ODD_PATH = f"{ODD_DIR}/ünïcødé ✓.txt"
MiB = 1024 * 1024
GiB = 1024 * MiB


class HashingChunks:
    """`count` distinct 1 MiB chunks, hashed as they are produced (never all in memory)."""

    def __init__(self, count: int, size: int = MiB):
        self.count, self.size = count, size
        self.sha = hashlib.sha256()
        self.produced = 0

    def __iter__(self):
        body = os.urandom(self.size)
        for i in range(self.count):
            chunk = i.to_bytes(8, "big") + body[8:]
            self.sha.update(chunk)
            self.produced += len(chunk)
            yield chunk


def test_binary_round_trip_keeps_every_byte(sandbox):
    data = bytes(range(256)) * 64 + b"\x00\r\n\xff"
    sandbox.write_file("/tmp/bin/all-bytes.dat", data)
    assert sandbox.read_file("/tmp/bin/all-bytes.dat") == data
    # The sandbox sees the very same bytes.
    digest = sandbox.run("sha256sum", ["/tmp/bin/all-bytes.dat"]).stdout.split()[0]
    assert digest == hashlib.sha256(data).hexdigest()
    sandbox.write_file("/tmp/bin/empty", b"")
    assert sandbox.read_file("/tmp/bin/empty") == b""


def test_odd_paths_round_trip(sandbox):
    sandbox.write_file(ODD_PATH, "grüße ✓\n".encode())
    assert sandbox.read_file(ODD_PATH).decode() == "grüße ✓\n"
    assert [e.name for e in sandbox.list_directory(ODD_DIR)] == ["ünïcødé ✓.txt"]
    assert sandbox.run("cat", [ODD_PATH]).stdout == "grüße ✓"
    # `+` is a plain character in a path, not an encoded space.
    sandbox.write_file("/tmp/a+b c.txt", b"plus")
    sandbox.write_file("/tmp/a b c.txt", b"space")
    assert sandbox.run("cat", ["/tmp/a+b c.txt"]).stdout == "plus"
    assert sandbox.read_file("/tmp/a b c.txt") == b"space"
    assert sandbox.read_file("/tmp/a+b c.txt") == b"plus"
    sandbox.delete_file(ODD_PATH)
    assert sandbox.list_directory(ODD_DIR) == []


def test_parents_are_created_and_files_overwritten(sandbox):
    sandbox.write_file("/tmp/deep/a/b/c/file.txt", b"a much longer first version\n")
    assert sandbox.run("stat", ["-c", "%F", "/tmp/deep/a/b/c"]).stdout == "directory"
    sandbox.write_file("/tmp/deep/a/b/c/file.txt", b"short")
    assert sandbox.read_file("/tmp/deep/a/b/c/file.txt") == b"short"
    assert sandbox.run("stat", ["-c", "%s", "/tmp/deep/a/b/c/file.txt"]).stdout == "5"


def test_overwrite_keeps_owner_and_mode(sandbox):
    sandbox.run("sh", ["-c", "echo old > /tmp/kept.sh && chmod 750 /tmp/kept.sh && chown nobody /tmp/kept.sh"])
    sandbox.write_file("/tmp/kept.sh", b"#!/bin/sh\necho new\n")
    assert sandbox.run("stat", ["-c", "%a %U", "/tmp/kept.sh"]).stdout == "750 nobody"
    assert sandbox.run("/tmp/kept.sh").stdout == "new"


def test_overwrite_keeps_the_acl_and_user_attributes_not_capabilities(sandbox):
    # An access ACL (version 2; tag, permissions, id): the owner rw, user 1234 r, the owning
    # group nothing, the mask r, others nothing. Without it the group would read the file.
    acl = "struct.pack('<I',2)+b''.join(struct.pack('<HHI',*e) for e in [(1,6,N),(2,4,1234),(4,0,N),(16,4,N),(32,0,N)])"
    setup = (
        "import os, struct\nN = 2**32 - 1\nopen('/tmp/acl.txt', 'w').write('old')\n"
        f"os.setxattr('/tmp/acl.txt', 'system.posix_acl_access', {acl})\n"
        "os.setxattr('/tmp/acl.txt', 'user.origin', b'builder')\n"
        # A capability: dropped by the kernel on any write, so new content must not get it either.
        "os.setxattr('/tmp/acl.txt', 'security.capability', struct.pack('<IIIII', 0x02000001, 1 << 10, 0, 0, 0))\n"
        "print(os.stat('/tmp/acl.txt').st_ino)"
    )
    before = sandbox.run("python3", ["-c", setup])
    assert before.exit_code == 0, before.stderr
    sandbox.write_file("/tmp/acl.txt", b"new")
    check = (
        "import os\nst = os.stat('/tmp/acl.txt')\nnames = os.listxattr('/tmp/acl.txt')\n"
        "print(st.st_ino, oct(st.st_mode & 0o777), sorted(names), os.getxattr('/tmp/acl.txt', 'user.origin').decode(),"
        " os.getxattr('/tmp/acl.txt', 'system.posix_acl_access').hex(), sep='|')"
    )
    checked = sandbox.run("python3", ["-c", check])
    assert checked.exit_code == 0, f"the ACL or the attribute is gone: {checked.stderr}"
    ino, mode, names, origin, acl_hex = checked.stdout.split("|")
    assert ino != before.stdout, "the file was replaced by a new one (the case that would lose them)"
    assert sandbox.read_file("/tmp/acl.txt") == b"new"
    assert mode == "0o640", "the group bits are the ACL's mask"
    assert names == "['system.posix_acl_access', 'user.origin']", "no capability"
    assert origin == "builder"
    assert "02000400d2040000" in acl_hex, "the entry of user 1234 (tag 2, r, id 1234) is kept"


def test_an_upload_that_breaks_off_keeps_the_old_file_whole(server, sandbox):
    sandbox.write_file("/tmp/keep/settings.json", b'{"version": 1}')
    # A raw PUT through the proxy that promises 1 MiB, sends 64 KiB and hangs up.
    auth = f"Authorization: Bearer {server.api_keys[0]}\r\n" if server.api_keys else ""
    head = (
        "PUT /api/v1/files?path=/tmp/keep/settings.json HTTP/1.1\r\n"
        f"Host: {server.host}:{server.port}\r\nX-Tensorlake-Sandbox-Id: {sandbox.sandbox_id}\r\n{auth}"
        f"Content-Type: application/octet-stream\r\nContent-Length: {MiB}\r\n\r\n"
    )
    with socket.create_connection((server.host, server.port), timeout=10) as conn:
        conn.sendall(head.encode() + b"x" * (64 * 1024))
        time.sleep(0.3)
    # Whenever the agent notices, the old content stays and no temporary file is left.
    deadline = time.monotonic() + 10
    while True:
        names = [e.name for e in sandbox.list_directory("/tmp/keep")]
        if names == ["settings.json"] or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert names == ["settings.json"]
    assert sandbox.read_file("/tmp/keep/settings.json") == b'{"version": 1}'
    # The client hung up: the server does not blame the sandbox for it.
    log = server.log_path.read_text(errors="replace").splitlines()
    assert not [line for line in log if "upstream unreachable" in line and sandbox.sandbox_id in line]


def test_readers_see_the_old_file_or_the_new_one_never_a_torn_one(sandbox):
    size = 256 * 1024
    sandbox.write_file("/tmp/torn/data", b"A" * size)
    reader = (
        "import os, time\n"
        "torn = reads = 0\n"
        "end = time.monotonic() + 30\n"
        "while not os.path.exists('/tmp/torn/stop') and time.monotonic() < end:\n"
        "    data = open('/tmp/torn/data', 'rb').read()\n"
        "    reads += 1\n"
        f"    if len(data) != {size} or data.count(data[:1]) != len(data): torn += 1\n"
        "print(reads, torn)\n"
    )
    proc = sandbox.start_process("python3", ["-c", reader])
    for i in range(40):
        sandbox.write_file("/tmp/torn/data", (b"B" if i % 2 == 0 else b"A") * size)
    sandbox.write_file("/tmp/torn/stop", b"")
    deadline = time.monotonic() + 30
    while sandbox.get_process(proc.pid).status == "running" and time.monotonic() < deadline:
        time.sleep(0.05)
    reads, torn = map(int, sandbox.get_stdout(proc.pid).lines[-1].split())
    assert reads > 40
    assert torn == 0


def test_a_nearly_full_disk_still_takes_a_file_that_fits_in_place(sandbox):
    path = "/root/full/data.bin"
    sandbox.write_file(path, b"\x01" * (20 * MiB))
    # Fill the disk until 10 MiB are left: no room for a second copy beside the file.
    filler = (
        "import os\n"
        "st = os.statvfs('/root/full')\n"
        "left = st.f_bavail * st.f_frsize - 10 * 1024 * 1024\n"
        "fd = os.open('/root/full/filler', os.O_CREAT | os.O_WRONLY)\n"
        "os.posix_fallocate(fd, 0, left)\n"
        "os.close(fd)\n"
    )
    assert sandbox.run("python3", ["-c", filler]).exit_code == 0
    try:
        # Streamed without a length, it cannot be replaced whole: refused, the old file kept.
        with pytest.raises(RemoteAPIError) as err:
            sandbox.write_file(path, iter([b"\x02" * (20 * MiB)]))
        assert (err.value.status_code, err.value.code) == (507, "NO_SPACE")
        assert "the old file is unchanged" in str(err.value)
        assert sandbox.read_file(path) == b"\x01" * (20 * MiB)
        # A new file larger than the space left: 507 (after the whole body was sent, the answer
        # arrives intact rather than as a broken connection), and nothing of it stays.
        with pytest.raises(RemoteAPIError) as err:
            sandbox.write_file("/root/full/new.bin", b"\x04" * (40 * MiB))
        assert (err.value.status_code, err.value.code) == (507, "NO_SPACE")
        # With its length known, it is written in place, where it fits.
        sandbox.write_file(path, b"\x03" * (20 * MiB))
        assert sandbox.read_file(path) == b"\x03" * (20 * MiB)
        assert sorted(e.name for e in sandbox.list_directory("/root/full")) == ["data.bin", "filler"]
    finally:
        sandbox.run("rm", ["-rf", "/root/full"])


def test_a_running_program_can_be_replaced(sandbox):
    # Written in place this was `409 FILE_BUSY` (ETXTBSY); replaced, the running copy keeps
    # its old file and the next start runs the new one.
    sandbox.run("cp", ["/bin/sleep", "/tmp/tool"])
    running = sandbox.start_process("/tmp/tool", ["60"])
    sandbox.write_file("/tmp/tool", b"#!/bin/sh\necho new tool\n")
    assert sandbox.get_process(running.pid).status == "running"
    assert sandbox.run("/tmp/tool").stdout == "new tool"
    sandbox.kill_process(running.pid)


def test_uploads_through_links_and_to_hard_linked_files(sandbox):
    sandbox.run("sh", ["-c", "mkdir -p /tmp/links && echo old > /tmp/links/real && ln -s real /tmp/links/current"
                             " && echo twin > /tmp/links/a && ln /tmp/links/a /tmp/links/b"])
    # Through a symbolic link: the file it leads to changes, the link stays a link.
    sandbox.write_file("/tmp/links/current", b"new")
    assert sandbox.run("readlink", ["/tmp/links/current"]).stdout == "real"
    assert sandbox.read_file("/tmp/links/real") == b"new"
    # A file with two names is written in place: both names see the new content.
    sandbox.write_file("/tmp/links/a", b"both")
    assert sandbox.read_file("/tmp/links/b") == b"both"
    assert sandbox.run("stat", ["-c", "%h", "/tmp/links/a"]).stdout == "2"


def test_list_directory_entries_dirs_first(sandbox):
    sandbox.write_file("/tmp/ls/zeta.txt", b"zzz")
    sandbox.write_file("/tmp/ls/alpha.txt", b"alpha")
    sandbox.write_file("/tmp/ls/sub/inner.txt", b"x")
    sandbox.run("mkdir", ["/tmp/ls/Another dir"])
    entries = sandbox.list_directory("/tmp/ls")
    assert [e.name for e in entries] == ["Another dir", "sub", "alpha.txt", "zeta.txt"]
    assert [e.is_dir for e in entries] == [True, True, False, False]
    assert [e.size for e in entries[2:]] == [5, 3]
    assert all(e.modified_at is not None for e in entries[2:])
    assert [e.name for e in sandbox.list_directory("/tmp/ls/sub")] == ["inner.txt"]


def test_delete_file_then_it_is_gone(sandbox):
    sandbox.write_file("/tmp/del/victim.txt", b"bye")
    sandbox.delete_file("/tmp/del/victim.txt")
    with pytest.raises(RemoteAPIError) as err:
        sandbox.read_file("/tmp/del/victim.txt")
    assert (err.value.status_code, err.value.code) == (404, "NOT_FOUND")
    assert sandbox.list_directory("/tmp/del") == []
    assert sandbox.run("test", ["-e", "/tmp/del/victim.txt"]).exit_code == 1
    with pytest.raises(RemoteAPIError) as err:
        sandbox.delete_file("/tmp/del/victim.txt")
    assert (err.value.status_code, err.value.code) == (404, "NOT_FOUND")


def test_files_and_commands_see_each_other(sandbox):
    sandbox.write_file("/root/from-api.txt", b"written by write_file\n")
    assert sandbox.run("cat", ["/root/from-api.txt"]).stdout == "written by write_file"
    sandbox.run("sh", ["-c", "printf 'written by run\\n' > /root/from-run.txt"])
    assert sandbox.read_file("/root/from-run.txt") == b"written by run\n"
    sandbox.run("mkdir", ["-p", "/root/made/by/run"])
    assert [e.name for e in sandbox.list_directory("/root/made")] == ["by"]


def test_streams_and_download_of_a_small_file(sandbox, tmp_path):
    chunks = HashingChunks(3)
    sandbox.write_file("/tmp/stream/three.bin", iter(chunks))
    assert b"".join(sandbox.read_file_stream("/tmp/stream/three.bin", chunk_size=1000)) == sandbox.read_file(
        "/tmp/stream/three.bin"
    )
    local = tmp_path / "three.bin"
    assert sandbox.download_file("/tmp/stream/three.bin", local) == 3 * MiB
    assert hashlib.sha256(local.read_bytes()).hexdigest() == chunks.sha.hexdigest()
    # A local binary file is streamed up as well.
    with open(local, "rb") as f:
        sandbox.write_file("/tmp/stream/copy.bin", f)
    assert sandbox.run("cmp", ["/tmp/stream/three.bin", "/tmp/stream/copy.bin"]).exit_code == 0


def test_kernel_and_fuse_files_read_whole_as_cat_sees_them(server, sandbox):
    """procfs says 0 bytes, sysfs 4096 and lxcfs (FUSE) its own figure, whatever a read of
    them yields: their bytes come whole, not cut at (or padded to) the size `stat` gives."""
    for path in ["/proc/version", "/proc/sys/kernel/ostype", "/sys/class/net/lo/address", "/proc/uptime"]:
        assert sandbox.run("stat", ["-c", "%s", path]).stdout.strip() != "", path
        data = sandbox.read_file(path)
        assert data and data.endswith(b"\n"), (path, data)
        if path != "/proc/uptime":  # the one that changes between two reads
            # (`run` hands out lines, joined without the last newline.)
            assert data.decode() == sandbox.run("cat", [path]).stdout + "\n", path
        assert b"".join(sandbox.read_file_stream(path)).count(b"\n") == data.count(b"\n"), path
    assert sandbox.read_file("/proc/sys/kernel/ostype") == b"Linux\n"
    assert sandbox.read_file("/sys/class/net/lo/address") == b"00:00:00:00:00:00\n"
    cpuinfo = sandbox.read_file("/proc/cpuinfo").decode()
    processors = sandbox.run("grep", ["-c", "^processor", "/proc/cpuinfo"]).stdout.strip()
    assert str(cpuinfo.count("\nprocessor") + cpuinfo.startswith("processor")) == processors
    # On the wire: chunked for such a file, an exact `Content-Length` for a file on disk.
    raw = agent(server, sandbox, "GET", "/api/v1/files", params={"path": "/proc/version"})
    assert raw.status_code == 200 and "content-length" not in raw.headers and raw.content
    sandbox.write_file("/tmp/sized.txt", b"12345")
    raw = agent(server, sandbox, "GET", "/api/v1/files", params={"path": "/tmp/sized.txt"})
    assert (raw.headers.get("content-length"), raw.content) == ("5", b"12345")


def test_one_gib_file_streams_in_and_out(sandbox):
    path = "/root/big/one-gib.bin"
    peak_before_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    chunks = HashingChunks(GiB // MiB)
    sandbox.write_file(path, iter(chunks))
    assert chunks.produced == GiB
    expected = chunks.sha.hexdigest()

    assert sandbox.run("stat", ["-c", "%s", path]).stdout == str(GiB)
    assert sandbox.run("sha256sum", [path]).stdout.split()[0] == expected

    sha, size = hashlib.sha256(), 0
    for chunk in sandbox.read_file_stream(path, chunk_size=MiB):
        sha.update(chunk)
        size += len(chunk)
    assert size == GiB
    assert sha.hexdigest() == expected
    # Neither direction held the file in this process's memory.
    peak_after_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    assert (peak_after_kib - peak_before_kib) * 1024 < 256 * MiB
    sandbox.delete_file(path)


def test_error_answers_have_the_wire_shape(server, sandbox):
    sandbox.write_file("/tmp/errs/file.txt", b"x")
    cases = [
        ("GET", "/api/v1/files", "/tmp/errs/missing", 404, "NOT_FOUND"),
        ("DELETE", "/api/v1/files", "/tmp/errs/missing", 404, "NOT_FOUND"),
        ("GET", "/api/v1/files/list", "/tmp/errs/missing", 404, "NOT_FOUND"),
        ("GET", "/api/v1/files", "/tmp/errs", 400, "IS_DIRECTORY"),
        ("PUT", "/api/v1/files", "/tmp/errs", 400, "IS_DIRECTORY"),
        ("DELETE", "/api/v1/files", "/tmp/errs", 400, "IS_DIRECTORY"),
        ("GET", "/api/v1/files/list", "/tmp/errs/file.txt", 400, "NOT_A_DIRECTORY"),
        ("GET", "/api/v1/files", "tmp/errs/file.txt", 400, "INVALID_ARGUMENT"),
        ("PUT", "/api/v1/files", "relative.txt", 400, "INVALID_ARGUMENT"),
        ("GET", "/api/v1/files", "/tmp/errs/../errs/file.txt", 403, "PATH_TRAVERSAL"),
        ("PUT", "/api/v1/files", "/tmp/../etc/evil", 403, "PATH_TRAVERSAL"),
        ("GET", "/api/v1/files/list", "/tmp/..", 403, "PATH_TRAVERSAL"),
    ]
    for method, route, path, status, code in cases:
        resp = agent(server, sandbox, method, route, params={"path": path}, content=b"y" if method == "PUT" else None)
        assert_error(resp, status, code)
    assert_error(agent(server, sandbox, "GET", "/api/v1/files"), 400, "INVALID_ARGUMENT")
    # None of the refused writes happened.
    assert sandbox.run("test", ["-e", "/etc/evil"]).exit_code == 1
    assert sandbox.run("test", ["-e", "/tmp/relative.txt"]).exit_code == 1
    assert sandbox.read_file("/tmp/errs/file.txt") == b"x"


def test_sdk_raises_typed_errors(sandbox):
    sandbox.write_file("/tmp/errs/file.txt", b"x")
    cases = [
        (lambda: sandbox.read_file("/tmp/errs/missing"), 404, "NOT_FOUND"),
        (lambda: sandbox.delete_file("/tmp/errs/missing"), 404, "NOT_FOUND"),
        (lambda: sandbox.list_directory("/tmp/errs/missing"), 404, "NOT_FOUND"),
        (lambda: sandbox.read_file("/tmp/errs"), 400, "IS_DIRECTORY"),
        (lambda: sandbox.write_file("/tmp/errs", b"y"), 400, "IS_DIRECTORY"),
        (lambda: list(sandbox.read_file_stream("/tmp/errs")), 400, "IS_DIRECTORY"),
        (lambda: sandbox.list_directory("/tmp/errs/file.txt"), 400, "NOT_A_DIRECTORY"),
        (lambda: sandbox.read_file("tmp/errs/file.txt"), 400, "INVALID_ARGUMENT"),
        (lambda: sandbox.read_file("/tmp/../etc/passwd"), 403, "PATH_TRAVERSAL"),
        # A kernel file whose read the kernel refuses: an error, not a body cut off.
        (lambda: sandbox.read_file("/proc/self/mem"), 400, "INVALID_ARGUMENT"),
        (lambda: sandbox.write_file("/tmp/../etc/evil", b"y"), 403, "PATH_TRAVERSAL"),
    ]
    for call, status, code in cases:
        with pytest.raises(RemoteAPIError) as err:
            call()
        assert (err.value.status_code, err.value.code) == (status, code)
        assert isinstance(err.value, SandboxError)
        assert not isinstance(err.value, SandboxNotFoundError)
    with pytest.raises(ValueError):
        sandbox.read_file("")
