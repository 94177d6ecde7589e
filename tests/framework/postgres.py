"""A private PostgreSQL cluster for the store tests: Debian's postgresql-15 binaries, `initdb`
in a temporary directory and `postgres` on a free loopback port, with password logins over TCP.

    with PostgresCluster() as pg:
        url = pg.create_database("alcove")   # postgres://alcove_test:<password>@127.0.0.1:<port>/alcove
        ...  # AlcoveServer(extra_args=["--database", url])

PostgreSQL refuses to run as root: as root, the cluster runs as the `postgres` user (else
`nobody`). The package's own cluster (port 5432) is never used.
"""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from framework.server import free_port

SUPERUSER = "alcove_test"


def bin_dir() -> Path:
    """The newest /usr/lib/postgresql/<version>/bin with initdb and postgres."""
    found = []
    root = Path("/usr/lib/postgresql")
    if root.is_dir():
        for d in root.iterdir():
            if d.name.isdigit() and (d / "bin/initdb").is_file() and (d / "bin/postgres").is_file():
                found.append((int(d.name), d / "bin"))
    if not found:
        raise RuntimeError(
            "PostgreSQL's server binaries are missing: install postgresql-15 "
            "(scripts/setup.sh packages)"
        )
    return max(found)[1]


class PostgresCluster:
    """One private cluster; `stop()` (or leaving the `with`) stops it and deletes its files."""

    def __init__(self, also_on: str | None = None, clients: str | None = None) -> None:
        """`also_on`: an address to listen on besides loopback, for logins from `clients` (a
        CIDR), as nodes in their own network namespaces need."""
        self.also_on = also_on
        self.clients = clients
        self.bin = bin_dir()
        self.base = Path(tempfile.mkdtemp(prefix="alcove-pg-e2e-"))
        # Letters and digits only, so that it needs no escaping in a URL; unique, so a test
        # can look for it in logs.
        self.password = "pw" + secrets.token_hex(12)
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self._user: pwd.struct_passwd | None = None
        if os.geteuid() == 0:
            for name in ("postgres", "nobody"):
                try:
                    self._user = pwd.getpwnam(name)
                    break
                except KeyError:
                    continue

    def _as_user(self) -> dict:
        if self._user is None:
            return {}
        return {"user": self._user.pw_uid, "group": self._user.pw_gid, "extra_groups": []}

    def start(self) -> None:
        pwfile = self.base / "pwfile"
        pwfile.write_text(self.password)
        if self._user is not None:
            for path in (self.base, pwfile):
                os.chown(path, self._user.pw_uid, self._user.pw_gid)
        data = self.base / "data"
        subprocess.run(
            [
                str(self.bin / "initdb"),
                "-D",
                str(data),
                "-U",
                SUPERUSER,
                "-E",
                "UTF8",
                "--no-locale",
                "--no-sync",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                f"--pwfile={pwfile}",
            ],
            cwd=self.base,
            check=True,
            capture_output=True,
            **self._as_user(),
        )
        if self.clients:
            with open(data / "pg_hba.conf", "a") as hba:
                hba.write(f"host all all {self.clients} scram-sha-256\n")
        self.port = free_port()
        self._run_postgres()

    def _run_postgres(self) -> None:
        data = self.base / "data"
        log = open(self.base / "postgres.log", "ab")
        self.proc = subprocess.Popen(
            [
                str(self.bin / "postgres"),
                "-D",
                str(data),
                "-k",
                str(self.base),
                "-p",
                str(self.port),
                "-c",
                "listen_addresses=" + ",".join(filter(None, ["127.0.0.1", self.also_on])),
                "-c",
                "fsync=off",
            ],
            cwd=self.base,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            **self._as_user(),
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"postgres exited:\n{self.log_tail()}")
            ready = subprocess.run(
                [str(self.bin / "pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(self.port)]
            )
            if ready.returncode == 0:
                return
            time.sleep(0.1)
        raise RuntimeError(f"postgres did not become ready:\n{self.log_tail()}")

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = (self.base / "postgres.log").read_text(errors="replace")
        except FileNotFoundError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def psql(self, database: str, sql: str) -> str:
        """Runs `sql` as the superuser; its rows, unaligned, one per line."""
        out = subprocess.run(
            [
                str(self.bin / "psql"),
                "-X",
                "-A",
                "-t",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-U",
                SUPERUSER,
                "-d",
                database,
                "-c",
                sql,
            ],
            env=dict(os.environ, PGPASSWORD=self.password),
            check=True,
            capture_output=True,
            text=True,
        )
        return out.stdout.strip()

    def url(self, database: str, password: str | None = None, host: str = "127.0.0.1") -> str:
        password = self.password if password is None else password
        return f"postgres://{SUPERUSER}:{password}@{host}:{self.port}/{database}"

    def create_database(self, name: str, host: str = "127.0.0.1") -> str:
        """A new empty database; its URL (with the password), reached at `host`."""
        self.psql("postgres", f"CREATE DATABASE {name}")
        return self.url(name, host=host)

    def pause(self) -> None:
        """Stops the server (fast shutdown: sessions are cut), keeping its files and port."""
        self._shutdown()

    def resume(self) -> None:
        """Starts the paused server again on the same port and files."""
        self._run_postgres()

    def _shutdown(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            # SIGINT: a fast shutdown (open sessions are ended).
            self.proc.send_signal(2)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def stop(self) -> None:
        self._shutdown()
        shutil.rmtree(self.base, ignore_errors=True)

    def __enter__(self) -> PostgresCluster:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
