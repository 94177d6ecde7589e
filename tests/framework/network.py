"""Checks of a sandbox's outbound network against the machine's own apt mirror (read from its
configuration, one request per check); `curl --resolve` pins the mirror's address so that DNS
plays no part in the result."""

from __future__ import annotations

import re
import socket
from pathlib import Path
from urllib.parse import urlparse

import pytest


def mirror() -> tuple[str, str]:
    """(host, IPv4 address) of the apt mirror this machine is configured with."""
    for path in sorted(Path("/etc/apt/sources.list.d").glob("*.sources")):
        m = re.search(r"^URIs:\s*(\S+)", path.read_text(), re.M)
        if m and urlparse(m.group(1)).hostname:
            host = urlparse(m.group(1)).hostname
            return host, socket.gethostbyname(host)
    pytest.fail("no apt mirror configured on this machine")


def reaches(sandbox, host: str, ip: str) -> bool:
    """Whether an HTTP request from the sandbox to the mirror gets any answer."""
    out = sandbox.run(
        "curl",
        ["-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "5",
         "--resolve", f"{host}:80:{ip}", f"http://{host}/"],
        timeout_secs=30,
    ).stdout.strip()
    return out not in ("", "000")
