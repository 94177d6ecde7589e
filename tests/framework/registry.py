"""A real OCI registry for the image tests: the CNCF distribution registry
(/usr/bin/docker-registry, Debian's docker-registry package) on a free loopback port, its
storage in a temporary directory, optionally behind htpasswd basic auth.

    with Registry(user="u", password="p") as reg:
        reg.push(image.path, "latest", "test/busybox")
        ...  # pull f"{reg.host}/test/busybox:latest"

Plain HTTP: every client here talks to 127.0.0.1 (skopeo with --dest-tls-verify=false).
The package's own service (port 5000, /var/lib/docker-registry) is never used.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from framework.oci_layout import Layout
from framework.server import free_port

REGISTRY_BIN = Path("/usr/bin/docker-registry")
HTPASSWD = shutil.which("htpasswd") or "/usr/bin/htpasswd"
SKOPEO = shutil.which("skopeo") or "/usr/bin/skopeo"

CONFIG = """\
version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: {storage}
  delete:
    enabled: true
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: {addr}
  secret: alcove-test-registry
{auth}"""

AUTH = """\
auth:
  htpasswd:
    realm: alcove-test
    path: {htpasswd}
"""

REGISTRY_MISSING = (
    "/usr/bin/docker-registry (Debian's docker-registry) or skopeo is missing: "
    "run scripts/setup.sh packages"
)
# The user of the test registries that require a login.
USER, PASSWORD = "alcove-e2e", "registry-pass-1"


def available() -> bool:
    return REGISTRY_BIN.exists() and shutil.which("skopeo") is not None


def requires_registry():
    """A module mark: skip (saying why) where the registry or skopeo is missing."""
    import pytest

    return pytest.mark.skipif(not available(), reason=REGISTRY_MISSING)


class RegistryError(RuntimeError):
    pass


class Registry:
    """One registry process. `host` is `127.0.0.1:<port>`, what an image reference starts with."""

    def __init__(self, user: str | None = None, password: str | None = None):
        if (user is None) != (password is None):
            raise ValueError("user and password go together")
        self.user, self.password = user, password
        self.dir: Path | None = None
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None

    # --- lifecycle -----------------------------------------------------------------------
    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    @property
    def auth(self) -> tuple[str, str] | None:
        return (self.user, self.password) if self.user is not None else None  # type: ignore[return-value]

    def start(self, timeout: float = 20.0) -> "Registry":
        if not REGISTRY_BIN.exists():
            raise RegistryError(f"{REGISTRY_BIN} is missing (scripts/setup.sh packages)")
        self.dir = Path(tempfile.mkdtemp(prefix="alcove-registry-"))
        auth = ""
        if self.user is not None:
            line = subprocess.run(
                [HTPASSWD, "-Bbn", self.user, self.password],
                capture_output=True, text=True, check=True,
            ).stdout.strip()
            (self.dir / "htpasswd").write_text(line + "\n")
            auth = AUTH.format(htpasswd=self.dir / "htpasswd")
        # A port picked here may be taken before the registry binds it: a few tries.
        last_err = ""
        for _ in range(5):
            self.port = free_port()
            config = self.dir / "config.yml"
            config.write_text(
                CONFIG.format(storage=self.dir / "data", addr=self.host, auth=auth)
            )
            log = open(self.dir / "registry.log", "ab")
            self.proc = subprocess.Popen(
                [str(REGISTRY_BIN), "serve", str(config)],
                stdout=log, stderr=log, stdin=subprocess.DEVNULL,
            )
            log.close()
            if self._wait_ready(timeout):
                return self
            last_err = self.log_tail()
            self._stop_proc()
        self.stop()
        raise RegistryError(f"docker-registry did not start:\n{last_err}")

    def _wait_ready(self, timeout: float) -> bool:
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            try:
                if httpx.get(f"{self.url}/v2/", timeout=1).status_code in (200, 401):
                    return True
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        return False

    def _stop_proc(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def stop(self) -> None:
        self._stop_proc()
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None

    def __enter__(self) -> "Registry":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def log_tail(self, lines: int = 30) -> str:
        try:
            assert self.dir is not None
            text = (self.dir / "registry.log").read_text(errors="replace")
            return "\n".join(text.splitlines()[-lines:])
        except (AssertionError, FileNotFoundError):
            return "(no log)"

    # --- references ----------------------------------------------------------------------
    def ref(self, repo: str, tag: str) -> str:
        """`127.0.0.1:<port>/<repo>:<tag>`, as a pull request names it."""
        return f"{self.host}/{repo}:{tag}"

    def digest_ref(self, repo: str, digest: str) -> str:
        return f"{self.host}/{repo}@{digest}"

    # --- pushing -------------------------------------------------------------------------
    def _skopeo_copy(self, args: list[str]) -> None:
        argv = [SKOPEO, "copy", "--quiet", "--dest-tls-verify=false"]
        if self.auth:
            argv += ["--dest-creds", f"{self.user}:{self.password}"]
        proc = subprocess.run(argv + args, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise RegistryError(f"skopeo copy {' '.join(args)}: {proc.stderr.strip()}")

    def push(self, oci_layout_dir: Path, tag: str, repo: str, fmt: str = "oci",
             dest_tag: str | None = None) -> str:
        """Copies the image `tag` of a layout to `<repo>:<dest_tag or tag>`, its manifest in
        `fmt` (`oci`, or `v2s2` for Docker's schema 2). Returns the pushed manifest's digest
        as the registry has it."""
        if fmt not in ("oci", "v2s2"):
            raise ValueError(fmt)
        dest_tag = dest_tag or tag
        self._skopeo_copy(["--format", fmt, f"oci:{oci_layout_dir}:{tag}",
                           f"docker://{self.ref(repo, dest_tag)}"])
        return self.manifest_digest(repo, dest_tag)

    def push_index(self, oci_layout_dir: Path, tag: str, repo: str) -> str:
        """Copies the image index `tag` of a layout and every image it lists (skopeo copy
        --all). Returns the index's digest as the registry has it."""
        self._skopeo_copy(["--all", f"oci:{oci_layout_dir}:{tag}",
                           f"docker://{self.ref(repo, tag)}"])
        return self.manifest_digest(repo, tag)

    # --- the HTTP API (for what skopeo will not push, and for checks) ----------------------
    def _client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, auth=self.auth, timeout=60)

    def put_blob(self, repo: str, data: bytes, digest: str) -> None:
        """Uploads a blob in one monolithic PUT (the registry checks the digest)."""
        with self._client() as c:
            if c.head(f"/v2/{repo}/blobs/{digest}").status_code == 200:
                return
            r = c.post(f"/v2/{repo}/blobs/uploads/")
            if r.status_code != 202:
                raise RegistryError(f"blob upload start: {r.status_code} {r.text}")
            location = r.headers["Location"]
            sep = "&" if "?" in location else "?"
            r = c.put(f"{location}{sep}digest={digest}", content=data,
                      headers={"Content-Type": "application/octet-stream"})
            if r.status_code != 201:
                raise RegistryError(f"blob upload of {digest}: {r.status_code} {r.text}")

    def put_manifest(self, repo: str, reference: str, data: bytes, media_type: str) -> str:
        with self._client() as c:
            r = c.put(f"/v2/{repo}/manifests/{reference}", content=data,
                      headers={"Content-Type": media_type})
            if r.status_code != 201:
                raise RegistryError(f"manifest {repo}:{reference}: {r.status_code} {r.text}")
            return r.headers["Docker-Content-Digest"]

    def push_layout_raw(self, layout: Layout, tag: str, repo: str,
                        dest_tag: str | None = None) -> str:
        """Pushes the image or index `tag` of a layout blob by blob, byte for byte as the
        layout has them (no conversion, no recompression): what skopeo refuses, e.g. a
        layer of an unknown media type. Returns the top manifest's digest."""
        desc = layout.descriptor_of(tag)
        return self._push_desc(layout, desc, repo, dest_tag or tag)

    def _push_desc(self, layout: Layout, desc: dict[str, Any], repo: str, ref: str) -> str:
        data = layout.read_blob(desc["digest"])
        doc = json.loads(data)
        if "manifests" in doc:
            for child in doc["manifests"]:
                self._push_desc(layout, child, repo, child["digest"])
        else:
            for blob in [doc["config"], *doc["layers"]]:
                self.put_blob(repo, layout.read_blob(blob["digest"]), blob["digest"])
        return self.put_manifest(repo, ref, data, desc["mediaType"])

    def manifest(self, repo: str, reference: str) -> tuple[dict[str, Any], str]:
        """(the manifest or index, its digest) as the registry serves it."""
        accept = ", ".join([
            "application/vnd.oci.image.index.v1+json",
            "application/vnd.oci.image.manifest.v1+json",
            "application/vnd.docker.distribution.manifest.list.v2+json",
            "application/vnd.docker.distribution.manifest.v2+json",
        ])
        with self._client() as c:
            r = c.get(f"/v2/{repo}/manifests/{reference}", headers={"Accept": accept})
            if r.status_code != 200:
                raise RegistryError(f"manifest {repo}:{reference}: {r.status_code} {r.text}")
            return r.json(), r.headers["Docker-Content-Digest"]

    def manifest_digest(self, repo: str, reference: str) -> str:
        return self.manifest(repo, reference)[1]

    def has_blob(self, repo: str, digest: str) -> bool:
        with self._client() as c:
            return c.head(f"/v2/{repo}/blobs/{digest}").status_code == 200

    def inspect(self, repo: str, tag: str, raw: bool = False) -> dict[str, Any]:
        """`skopeo inspect` of `<repo>:<tag>` in this registry."""
        argv = [SKOPEO, "inspect", "--tls-verify=false"]
        if self.auth:
            argv += ["--creds", f"{self.user}:{self.password}"]
        if raw:
            argv.append("--raw")
        proc = subprocess.run(argv + [f"docker://{self.ref(repo, tag)}"],
                              capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise RegistryError(f"skopeo inspect {repo}:{tag}: {proc.stderr.strip()}")
        return json.loads(proc.stdout)

    def storage_bytes(self) -> int:
        """Bytes of the registry's storage (to see that a blob was pushed once)."""
        assert self.dir is not None
        return sum(p.stat().st_size for p in (self.dir / "data").rglob("*") if p.is_file())



class ThrottledProxy:
    """A TCP relay on a free loopback port in front of a registry that sends the
    registry's answers at most `bytes_per_sec`: a pull through it takes long enough to be
    interrupted on purpose. `forwarded` counts the bytes handed to clients so far (each
    chunk counted just before it is sent).

        with ThrottledProxy(reg.port, 2 << 20) as proxy:
            ... pull f"{proxy.host}/repo:tag" ...
    """

    def __init__(self, target_port: int, bytes_per_sec: int):
        import socket
        import threading

        self._socket_mod = socket
        self._threading = threading
        self.target_port = target_port
        self.rate = bytes_per_sec
        self.forwarded = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._listener = socket.socket()
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._conns: list = []

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def __enter__(self) -> "ThrottledProxy":
        self._listener.listen(16)
        self._listener.settimeout(0.2)
        self._threading.Thread(target=self._accept, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._listener.close()
        for c in self._conns:
            try:
                c.close()
            except OSError:
                pass

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            upstream = self._socket_mod.create_connection(("127.0.0.1", self.target_port))
            self._conns += [client, upstream]
            self._threading.Thread(target=self._pipe, args=(client, upstream, False),
                                   daemon=True).start()
            self._threading.Thread(target=self._pipe, args=(upstream, client, True),
                                   daemon=True).start()

    def _pipe(self, src, dst, throttle: bool) -> None:
        chunk = 16 * 1024
        try:
            while not self._stop.is_set():
                data = src.recv(chunk)
                if not data:
                    break
                if throttle:
                    # Counted before the send: a client that has the bytes must already
                    # see them in `forwarded`, or a reader racing the last chunk loses it.
                    with self._lock:
                        self.forwarded += len(data)
                dst.sendall(data)
                if throttle:
                    time.sleep(len(data) / self.rate)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(self._socket_mod.SHUT_RDWR)
                except OSError:
                    pass
