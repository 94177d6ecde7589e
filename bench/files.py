"""Local files for the transfer benchmarks."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

CHUNK = 1024 * 1024


def make_random_file(path: Path, size: int) -> str:
    """Write `size` random bytes to `path` (1 MiB at a time) and return their SHA-256, hex."""
    sha = hashlib.sha256()
    with open(path, "wb") as f:
        left = size
        while left:
            chunk = os.urandom(min(CHUNK, left))
            sha.update(chunk)
            f.write(chunk)
            left -= len(chunk)
    return sha.hexdigest()
