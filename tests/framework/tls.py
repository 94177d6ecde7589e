"""Certificates for the TLS tests, made with the `openssl` command: a private CA and
certificates it signs for `localhost` and `127.0.0.1` (what a node on loopback advertises)."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path


def _openssl(*args: str, cwd: Path) -> None:
    out = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr


@dataclass(frozen=True)
class NodeCert:
    """A node's certificate chain and key."""

    cert: Path
    key: Path

    def args(self, ca: Path) -> list[str]:
        """`alcove serve` flags serving this certificate and trusting `ca` for relays."""
        return ["--tls-cert", str(self.cert), "--tls-key", str(self.key), "--tls-ca", str(ca)]


class CertificateAuthority:
    """A throwaway CA in `directory`: `ca.pem` is what clients are told to trust."""

    def __init__(self, directory: Path, name: str = "alcove-test-ca"):
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.key = self.dir / f"{name}.key"
        self.pem = self.dir / f"{name}.pem"
        _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                  "-keyout", str(self.key), "-out", str(self.pem), "-days", "2", "-subj", f"/CN={name}",
                  "-addext", "basicConstraints=critical,CA:TRUE",
                  "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=self.dir)

    def issue(self, name: str, sans: str = "DNS:localhost,IP:127.0.0.1") -> NodeCert:
        """A leaf certificate for `sans`, signed by this CA."""
        key, csr, cert = (self.dir / f"{name}.key", self.dir / f"{name}.csr", self.dir / f"{name}.pem")
        ext = self.dir / f"{name}.ext"
        ext.write_text(f"subjectAltName={sans}\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n")
        _openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                  "-keyout", str(key), "-out", str(csr), "-subj", f"/CN={name}", cwd=self.dir)
        _openssl("x509", "-req", "-in", str(csr), "-CA", str(self.pem), "-CAkey", str(self.key),
                  "-CAcreateserial", "-out", str(cert), "-days", "2", "-extfile", str(ext), cwd=self.dir)
        return NodeCert(cert=cert, key=key)
