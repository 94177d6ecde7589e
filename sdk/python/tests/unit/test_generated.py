"""The sync modules are generated from the async ones (scripts/generate_sync.py) and committed up to date."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "src" / "alcove" / "sandbox"


def load_generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("generate_sync", ROOT / "scripts" / "generate_sync.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def generator() -> ModuleType:
    return load_generator()


def test_committed_sync_modules_match_their_async_sources(generator: ModuleType, tmp_path: Path) -> None:
    assert generator.main(["--out", str(tmp_path)]) == 0
    generated = sorted(path.name for path in tmp_path.iterdir())
    assert generated == sorted(generator.SOURCES.values())
    stale = [
        name
        for name in generated
        if (tmp_path / name).read_text(encoding="utf-8") != (PACKAGE / name).read_text(encoding="utf-8")
    ]
    assert not stale, f"{stale} differ from their async sources: run `python scripts/generate_sync.py` in sdk/python"


def test_translation_rules(generator: ModuleType) -> None:
    source = "\n".join(
        [
            "# x.py is generated from this file.",
            '"""Asynchronous: use it as an async context manager."""',
            "import asyncio  # sync: import time",
            "",
            "# sync: from collections.abc import Iterator",
            "from collections.abc import AsyncIterator",
            "from .async_sandbox import AsyncSandbox",
            "# sync: def run(self) -> Iterator[str]:",
            "async def run(self) -> AsyncIterator[str]:",
            "    async with self._lock:",
            "        async for line in response.aiter_lines():",
            "            yield line",
            "    await response.aclose()",
            "    self.note()  # async only",
            "# async only: begin",
            "class _OnlyAsync:",
            "    pass",
            "# async only: end",
            "async def __aenter__(self) -> AsyncSandbox:",
            "    return await wsp.aconnect(url)",
            "",
        ]
    )
    assert generator.unasync(source, "async_x.py") == generator.HEADER.format(source="async_x.py") + "\n".join(
        [
            '"""Synchronous: use it as a context manager."""',
            "import time",
            "from collections.abc import Iterator",
            "from .sandbox import Sandbox",
            "def run(self) -> Iterator[str]:",
            "    with self._lock:",
            "        for line in response.iter_lines():",
            "            yield line",
            "    response.close()",
            "def __enter__(self) -> Sandbox:",
            "    return wsp.connect(url)",
            "",
        ]
    )


@pytest.mark.parametrize(
    "source",
    [
        "# async only: begin\nx = 1\n",
        "x = 1\n# async only: end\n",
        "# sync: y = 2\n",
        "# sync: y = 2\n\nx = 1\n",
    ],
)
def test_malformed_directives_are_refused(generator: ModuleType, source: str) -> None:
    with pytest.raises(generator.DirectiveError):
        generator.unasync('"""Doc."""\n' + source, "async_x.py")
