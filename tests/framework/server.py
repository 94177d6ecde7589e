"""Starting and stopping a real `alcove serve` on a free port with its own data dir."""

from __future__ import annotations

import atexit
import os
import random
import signal
import socket
import ssl
import subprocess
import tempfile
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[2]


def _default(var: str, fallback: Path) -> Path:
    return Path(os.environ.get(var) or fallback)


ALCOVE_BIN = _default("ALCOVE_BIN", REPO / "target/release/alcove")
AGENT_PATH = _default(
    "ALCOVE_AGENT_PATH", REPO / "target/x86_64-unknown-linux-gnu/release/alcove-agent"
)
IMAGES_DIR = _default("ALCOVE_IMAGES_DIR", Path("/var/lib/alcove/images"))


_SUBNETS_IN_USE: set[str] = set()

# Claims on subnets shared by every test process of the host (one file per subnet, holding the
# claimer's pid): two suites or benchmarks run side by side must not pick the same subnet, or
# the host routes one server's sandbox addresses to the other's sandboxes.
_SUBNET_CLAIMS = Path(tempfile.gettempdir()) / "alcove-test-subnets"


def _claim_subnet(subnet: str) -> bool:
    """Whether this process now holds `subnet` (a claim of a process that is gone is taken over)."""
    _SUBNET_CLAIMS.mkdir(mode=0o700, exist_ok=True)
    claim = _SUBNET_CLAIMS / subnet.replace("/", "_")
    try:
        fd = os.open(claim, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    except FileExistsError:
        try:
            holder = int(claim.read_text() or "0")
        except (OSError, ValueError):
            holder = 0
        if holder and Path(f"/proc/{holder}").exists():
            return False
        claim.unlink(missing_ok=True)  # its process is gone; the next attempt may take it
        return False
    with os.fdopen(fd, "w") as f:
        f.write(str(os.getpid()))
    return True


def _release_subnet_claims() -> None:
    for subnet in _SUBNETS_IN_USE:
        claim = _SUBNET_CLAIMS / subnet.replace("/", "_")
        try:
            if int(claim.read_text() or "0") == os.getpid():
                claim.unlink()
        except (OSError, ValueError):
            pass


atexit.register(_release_subnet_claims)


def _routed(subnet: str) -> bool:
    """Whether the host routes anything inside `subnet` (the sandboxes of a server that is gone
    without its clean-up: a server refuses such a subnet)."""
    import ipaddress

    net = ipaddress.ip_network(subnet)
    try:
        lines = Path("/proc/net/route").read_text().splitlines()[1:]
    except OSError:
        return False
    for line in lines:
        fields = line.split()
        if len(fields) < 8:
            continue
        destination = ipaddress.ip_address(int(fields[1], 16).to_bytes(4, "little"))
        if destination in net:
            return True
    return False


def unique_subnet() -> str:
    """A /18 no other server of this test process, nor of any other test process on the host,
    uses (addresses must never overlap), and that the host does not route yet."""
    while True:
        subnet = f"10.{random.randint(100, 199)}.{random.choice(range(0, 256, 64))}.0/18"
        if subnet not in _SUBNETS_IN_USE and not _routed(subnet) and _claim_subnet(subnet):
            _SUBNETS_IN_USE.add(subnet)
            return subnet


# Every server this test process made, for the session's last check (`leftovers`).
_INSTANCES: list[AlcoveServer] = []


def remove_temporary_data_dirs() -> None:
    """Removes the data directories the servers of this test process made for themselves and
    a test left on disk (stopped without `retire`). Called once `leftovers` found nothing: no
    mount under any of them, no process using one."""
    import shutil

    for srv in _INSTANCES:
        if srv.temporary and srv.data_dir.exists():
            shutil.rmtree(srv.data_dir, ignore_errors=True)


def leftovers() -> list[str]:
    """What the servers of this test process left on the host once all are done: servers
    still running, any process still using one's data directory (an orphaned helper, say),
    and host-wide resources named after one (network namespaces, veths, cgroups, mounts, uid
    ranges, firewall tables). Each entry says what and whose."""
    from framework.host import firewall_tables, mounts_under, owned_resources

    found: list[str] = []
    dirs = {str(srv.data_dir) for srv in _INSTANCES}
    for srv in _INSTANCES:
        if srv.proc is not None and srv.proc.poll() is None:
            found.append(f"server on {srv.data_dir} still running (pid {srv.proc.pid})")
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        args = [a.decode(errors="replace") for a in argv]
        for i, arg in enumerate(args[:-1]):
            if arg == "--data-dir" and args[i + 1] in dirs and not any(
                srv.proc is not None and srv.proc.pid == int(pid) for srv in _INSTANCES
            ):
                found.append(f"process {pid} ({' '.join(args[:3])}) of {args[i + 1]}")
    for data_dir in sorted(dirs):
        res = owned_resources(Path(data_dir))
        host_wide = {
            "netns": res.netns,
            "veths": res.veths,
            "cgroups": res.cgroups,
            "mounts": mounts_under(Path(data_dir)),
            "uid ranges": res.uid_ranges,
            "firewall tables": firewall_tables(Path(data_dir)),
        }
        found += [f"{kind} of {data_dir}: {names}" for kind, names in host_wide.items() if names]
    return found


# Ports `free_port` handed out in this process: servers made before any of them listens (the
# nodes of a cluster) must not be given the same one, which the kernel may offer twice.
_PORTS_HANDED_OUT: set[int] = set()


def free_port() -> int:
    """A port nothing listens on now, not handed out before by this process."""
    for _ in range(100):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in _PORTS_HANDED_OUT:
            _PORTS_HANDED_OUT.add(port)
            return port
    raise RuntimeError("the kernel kept offering ports already handed out")


def _listening_sockets(pid: int, port: int) -> set[str]:
    """Inodes of the sockets listening on TCP `port` in the network namespace of `pid`."""
    found = set()
    for table in ("tcp", "tcp6"):
        try:
            rows = Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            if len(fields) > 9 and fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                found.add(fields[9])
    return found


def holds_listener(pid: int, port: int) -> bool:
    """Whether process `pid` itself listens on `port`: whoever answers on a port may be another
    server that took it first."""
    sockets = _listening_sockets(pid, port)
    try:
        fds = list(Path(f"/proc/{pid}/fd").iterdir())
    except OSError:
        return False
    for fd in fds:
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:[") and target[len("socket:["):-1] in sockets:
            return True
    return False


class AlcoveServer:
    """One `alcove serve` process. Reusable across stop/start on the same data dir."""

    def __init__(
        self,
        data_dir: Path | None = None,
        api_keys: list[str] | None = None,
        extra_args: list[str] | None = None,
        binary: Path | None = None,
        agent: Path | None = None,
        extra_env: dict[str, str] | None = None,
        host: str = "127.0.0.1",
        launcher: list[str] | None = None,
        images_dir: Path | None = None,
        tls_ca: Path | None = None,
    ):
        self.data_dir = Path(data_dir or tempfile.mkdtemp(prefix="alcove-e2e-")).resolve()
        # Made here (not given): removed at the end of the session if a test left it.
        self.temporary = data_dir is None
        if self.temporary:
            # The mode the server makes a data directory with (mkdtemp's 0700 would be changed,
            # with a warning, at its first start).
            self.data_dir.chmod(0o711)
        self.port = free_port()
        # A subnet of its own so that concurrent servers never share addresses.
        self.subnet = unique_subnet()
        self.api_keys = api_keys or []
        self.extra_args = extra_args or []
        self.extra_env = extra_env or {}
        # Another build (a benchmark's baseline) instead of this checkout's.
        self.binary = Path(binary or ALCOVE_BIN)
        self.agent = Path(agent or AGENT_PATH)
        # Where it listens, and what it runs under (a network namespace's `nsenter`).
        self.host = host
        self.launcher = launcher or []
        # Its own image store (a node of a cluster on another machine), else the shared one.
        self.images_dir = Path(images_dir or IMAGES_DIR)
        # Set when it serves HTTPS (--tls-cert): the CA its certificate is checked against.
        self.tls_ca = tls_ca
        self.proc: subprocess.Popen[bytes] | None = None
        # Whether it started once (its port is known to clients from then on).
        self._started = False
        # Whether the last stop had to kill the server (it outlived its grace after SIGTERM).
        self.killed_at_stop = False
        _INSTANCES.append(self)
        self.log_path = self.data_dir / "server.log"

    @property
    def url(self) -> str:
        host = "localhost" if self.host == "127.0.0.1" else self.host
        return f"{'https' if self.tls_ca else 'http'}://{host}:{self.port}"

    def _verify(self) -> ssl.SSLContext | bool:
        """What httpx checks the server's certificate against."""
        return ssl.create_default_context(cafile=str(self.tls_ca)) if self.tls_ca else True

    def start(self, timeout: float = 30.0) -> None:
        """Starts the server and waits until it answers. On its first start a port taken by
        someone else since `free_port` (the server exits: address in use) is swapped for
        another; later starts keep the port, which clients already hold."""
        for _ in range(3):
            logged = self.log_path.stat().st_size if self.log_path.exists() else 0
            try:
                self._start_once(timeout)
                self._started = True
                return
            except RuntimeError:
                with open(self.log_path, "rb") as log:
                    log.seek(logged)
                    taken = b"Address already in use" in log.read()
                exited = self.proc is None or self.proc.poll() is not None
                if self._started or not taken or not exited:
                    raise
                self.port = free_port()
        raise RuntimeError(f"alcove serve found no free port:\n{self.log_tail()}")

    def _start_once(self, timeout: float) -> None:
        argv = [
            *self.launcher,
            str(self.binary),
            "serve",
            "--listen",
            f"{self.host}:{self.port}",
            "--data-dir",
            str(self.data_dir),
            "--images-dir",
            str(self.images_dir),
            "--agent-path",
            str(self.agent),
            "--subnet",
            self.subnet,
        ]
        for key in self.api_keys:
            argv += ["--api-key", key]
        argv += self.extra_args
        # Root-only, as the server keeps everything in its data directory.
        log = open(os.open(self.log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600), "ab")
        env = dict(os.environ, RUST_LOG=os.environ.get("RUST_LOG", "info"), **self.extra_env)
        self.proc = subprocess.Popen(argv, stdout=log, stderr=log, env=env)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"alcove serve exited early:\n{self.log_tail()}")
            try:
                # Healthy only once this process listens: another server holding the port (it
                # took it between `free_port` and this start) answers too, and this one exits.
                if (httpx.get(f"{self.url}/healthz", timeout=1, verify=self._verify()).status_code == 200
                        and holds_listener(self.proc.pid, self.port)):
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"alcove serve did not become healthy:\n{self.log_tail()}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> None:
        if self.proc is None:
            return
        self.killed_at_stop = False
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                # Noted: a server that must be killed skips its orderly shutdown.
                self.killed_at_stop = sig != signal.SIGKILL
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def kill(self) -> None:
        """SIGKILL, as a crash would."""
        self.stop(signal.SIGKILL)

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no log)"

    def log_warnings(self, lines: int = 30) -> str:
        """The last warning and error lines of the log: what a failed test's report shows."""
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return "(no log)"
        marks = ('"level":"WARN"', '"level":"ERROR"', " WARN ", " ERROR ")
        return "\n".join([line for line in text.splitlines() if any(m in line for m in marks)][-lines:])

    def api(self, method: str, path: str, **kwargs) -> httpx.Response:
        headers = kwargs.pop("headers", {})
        if self.api_keys:
            headers.setdefault("Authorization", f"Bearer {self.api_keys[0]}")
        return httpx.request(method, f"{self.url}{path}", headers=headers, timeout=60, verify=self._verify(),
                             **kwargs)

    def live_sandboxes(self) -> list[dict]:
        body = self.api("GET", "/v1/namespaces/default/sandboxes").json()
        return [s for s in body["sandboxes"] if s["status"] not in ("terminated", "failed")]


def retire(srv: AlcoveServer) -> None:
    """Ends a test's server for good: deletes what still lives (starting it again if it was
    stopped), stops it, removes its data directory, and fails if it left host resources
    (mounts, cgroups, network namespaces, firewall tables, uid ranges) behind."""
    from framework.host import firewall_tables, mounts_under, owned_resources

    if srv.proc is None:
        srv.start()
    for sb in srv.live_sandboxes():
        srv.api("DELETE", f"/v1/namespaces/default/sandboxes/{sb['id']}")
    srv.stop()
    res = owned_resources(srv.data_dir)
    tables = firewall_tables(srv.data_dir)
    mounted = mounts_under(srv.data_dir)
    import shutil

    shutil.rmtree(srv.data_dir, ignore_errors=True)
    assert not srv.killed_at_stop, f"the server did not stop within its grace: {srv.log_tail()}"
    assert res.is_empty(), f"host resources left behind: {res}"
    assert not mounted, f"mounts left behind: {mounted}"
    assert not tables, f"firewall table left behind: {tables}: {srv.log_tail()}"


def refused_at_start(args: list[str], env: dict[str, str] | None = None, timeout: float = 60) -> str:
    """Starts a server with `args` that must refuse to start; its log (which never shows a
    panic). Its data directory is removed."""
    import shutil

    srv = AlcoveServer(extra_args=args, extra_env=env)
    try:
        try:
            srv.start(timeout=timeout)
        except RuntimeError as e:
            assert "exited early" in str(e), e
        else:
            raise AssertionError(f"alcove serve {' '.join(args)} started")
        log = srv.log_path.read_text(errors="replace")
        assert "panicked" not in log, log
        from framework.host import firewall_tables, mounts_under, owned_resources

        left = owned_resources(srv.data_dir)
        assert left.is_empty(), f"a server refused at start left host resources behind: {left}"
        assert not mounts_under(srv.data_dir), "a server refused at start left a mount"
        assert not firewall_tables(srv.data_dir), "a server refused at start left its firewall table"
        return log
    finally:
        srv.stop()
        shutil.rmtree(srv.data_dir, ignore_errors=True)
