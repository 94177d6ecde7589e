"""A real S3 server for the blob store's tests: s3s-fs (from the crate registry, built and
cached by `scripts/setup.sh tools`) over a temporary directory, on a free loopback port, with
its own access key and secret. It speaks the S3 protocol (SigV4 signatures, multipart uploads),
and keeps each object as a file, which lets a test see what was stored and damage it.

    with S3Server() as s3:
        AlcoveServer(extra_args=s3.alcove_args("snapshots-test"), extra_env=s3.alcove_env())
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import BinaryIO

from framework.server import free_port, holds_listener

S3S_FS_VERSION = "0.14.1"


def s3s_fs_binary() -> Path:
    cache = Path(os.environ.get("ALCOVE_CACHE_DIR", "/var/cache/alcove"))
    path = cache / f"s3s-fs-{S3S_FS_VERSION}" / "bin" / "s3s-fs"
    if not path.is_file():
        raise RuntimeError(f"{path} is missing: run scripts/setup.sh tools")
    return path


class S3Server:
    """One s3s-fs server with bucket `alcove`; `stop()` kills it and deletes its files."""

    bucket = "alcove"

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.host = host
        self.root = Path(tempfile.mkdtemp(prefix="alcove-s3-e2e-"))
        (self.root / self.bucket).mkdir()
        self.access_key = "AK" + secrets.token_hex(6).upper()
        # Unique, so a test can look for it in logs.
        self.secret_key = "sk" + secrets.token_hex(16)
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.log: BinaryIO | None = None

    @property
    def endpoint(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def log_path(self) -> Path:
        """Its output, beside (not in) the directory of its objects; removed by `stop()`."""
        return self.root.parent / f"{self.root.name}.log"

    def _log_tail(self) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-20:])
        except OSError:
            return "(no log)"

    def start(self) -> None:
        self.port = free_port()
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [
                str(s3s_fs_binary()),
                "--host", self.host,
                "--port", str(self.port),
                "--access-key", self.access_key,
                "--secret-key", self.secret_key,
                str(self.root),
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"s3s-fs exited with {self.proc.returncode}:\n{self._log_tail()}")
            # Its own listening socket, not whatever answers on the port.
            if holds_listener(self.proc.pid, self.port):
                return
            time.sleep(0.05)
        raise RuntimeError(f"s3s-fs did not listen within 20 s:\n{self._log_tail()}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.proc = None
        if self.log is not None:
            self.log.close()
            self.log = None
            self.log_path.unlink(missing_ok=True)
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> "S3Server":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def alcove_args(self, prefix: str) -> list[str]:
        """`alcove serve` flags for this server (the secret goes by environment)."""
        return [
            "--blob-store", f"s3://{self.bucket}/{prefix}",
            "--s3-endpoint", self.endpoint,
            "--s3-access-key-id", self.access_key,
        ]

    def alcove_env(self, secret: str | None = None) -> dict[str, str]:
        return {"ALCOVE_S3_SECRET_ACCESS_KEY": secret or self.secret_key}

    def objects(self, prefix: str) -> dict[str, Path]:
        """The objects under `prefix`, by key relative to it, as files on the server's disk."""
        base = self.root / self.bucket / prefix
        if not base.is_dir():
            return {}
        return {
            str(p.relative_to(base)): p
            for p in base.rglob("*")
            if p.is_file() and not p.name.startswith(".")
        }
