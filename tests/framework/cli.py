"""Running the `alcove` CLI as a person would: the built binary, a config file of the test's
own, and none of the test process's ALCOVE_* variables."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from framework.server import ALCOVE_BIN


def run_cli(server_url: str | None, *args: str, config: Path, input: bytes | None = None,
            env: dict | None = None, timeout: float = 180) -> subprocess.CompletedProcess:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("ALCOVE_")}
    full_env["ALCOVE_CONFIG"] = str(config)
    if server_url:
        full_env["ALCOVE_API_URL"] = server_url
    full_env.update(env or {})
    return subprocess.run([str(ALCOVE_BIN), *args], input=input, capture_output=True,
                          env=full_env, timeout=timeout)
