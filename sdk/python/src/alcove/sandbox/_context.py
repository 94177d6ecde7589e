"""Build contexts: tar archives of a directory (honouring its ``.dockerignore``) or of the files
of an :class:`~alcove.sandbox.Image`, written to a temporary file that is then streamed.

Symbolic links are stored as links, never followed, so nothing outside the directory gets in.
Only directories, regular files and links are stored (sockets, FIFOs and devices are left out);
owners are stored as root (a build's ``COPY`` makes files root's unless told otherwise).
"""

from __future__ import annotations

import os
import re
import stat
import tarfile
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import IO

DOCKERIGNORE = ".dockerignore"


@dataclass(frozen=True)
class _Pattern:
    regex: re.Pattern[str]
    exclusion: bool  # a "!" line: matching paths are included again


class DockerIgnore:
    """The patterns of a ``.dockerignore``: one per line, ``#`` comments, ``!`` re-includes.

    A pattern is a path relative to the context (a leading ``/`` or ``./`` changes nothing) in
    which ``*`` stands for any characters but ``/``, ``?`` for one, ``[...]`` for a class and
    ``**`` for any number of directories. A path is left out when the last pattern that matches
    it or one of its parent directories is not a ``!`` one.
    """

    def __init__(self, lines: Iterable[str]) -> None:
        self._patterns: list[_Pattern] = []
        for raw in lines:
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            exclusion = line.startswith("!")
            if exclusion:
                line = line[1:].strip()
            cleaned = _clean(line)
            if cleaned:
                self._patterns.append(_Pattern(_pattern_regex(cleaned), exclusion))

    @classmethod
    def read(cls, context_dir: str) -> DockerIgnore:
        """The ``.dockerignore`` of a directory (no patterns when it has none)."""
        path = os.path.join(context_dir, DOCKERIGNORE)
        if not os.path.isfile(path):
            return cls([])
        with open(path, encoding="utf-8") as file:
            return cls(file.read().splitlines())

    @property
    def has_exclusions(self) -> bool:
        """Whether a ``!`` line may re-include a path below a directory left out."""
        return any(pattern.exclusion for pattern in self._patterns)

    def __bool__(self) -> bool:
        return bool(self._patterns)

    def excluded(self, path: str) -> bool:
        """Whether the ``/``-separated path (relative to the context) is left out."""
        candidates = [path]
        while "/" in path:
            path = path.rsplit("/", 1)[0]
            candidates.append(path)
        result = False
        for pattern in self._patterns:
            if any(pattern.regex.fullmatch(candidate) for candidate in candidates):
                result = not pattern.exclusion
        return result


def _clean(pattern: str) -> str:
    parts = [part for part in pattern.split("/") if part not in ("", ".")]
    return "/".join(parts)


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    out: list[str] = []
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        if pattern.startswith("**", i):
            i += 2
            if pattern.startswith("/", i):
                out.append("(?:.*/)?")
                i += 1
            else:
                out.append(".*")
            continue
        if ch == "*":
            out.append("[^/]*")
        elif ch == "?":
            out.append("[^/]")
        elif ch == "[":
            end = pattern.find("]", i + 2)
            if end < 0:
                out.append(re.escape(ch))
            else:
                body = pattern[i + 1 : end]
                negate = body[:1] in ("^", "!")
                body = body[1:] if negate else body
                out.append("[" + ("^" if negate else "") + body.replace("\\", "\\\\") + "]")
                i = end + 1
                continue
        elif ch == "\\" and i + 1 < len(pattern):
            out.append(re.escape(pattern[i + 1]))
            i += 2
            continue
        else:
            out.append(re.escape(ch))
        i += 1
    return re.compile("".join(out))


def _tarinfo(tar: tarfile.TarFile, path: str, arcname: str) -> tarfile.TarInfo | None:
    """The entry of a directory, regular file or link (never followed); None for anything else."""
    info = tar.gettarinfo(path, arcname)
    if info is None or not (info.isdir() or info.isreg() or info.issym() or info.islnk()):
        return None
    if info.islnk():  # a second name of a file already stored: stored as a file of its own
        info.type = tarfile.REGTYPE
        info.size = os.lstat(path).st_size
        info.linkname = ""
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    return info


def add_path(
    tar: tarfile.TarFile,
    path: str,
    arcname: str,
    ignore: DockerIgnore | None = None,
    relative: str = "",
) -> None:
    """Store ``path`` as ``arcname``: a directory with everything under it (sorted, links kept as
    links), a file, or a link. ``relative`` is its path in the context for ``ignore``."""
    info = _tarinfo(tar, path, arcname)
    if info is None:
        return
    if info.isreg():
        with open(path, "rb") as file:
            tar.addfile(info, file)
        return
    tar.addfile(info)
    if not info.isdir():
        return
    with os.scandir(path) as entries:
        names = sorted(entry.name for entry in entries)
    for name in names:
        child_relative = f"{relative}/{name}" if relative else name
        if ignore and ignore.excluded(child_relative):
            if not ignore.has_exclusions or not _is_dir(os.path.join(path, name)):
                continue
            # A "!" line may bring back something below: look inside, without the directory itself.
            _add_children(tar, os.path.join(path, name), f"{arcname}/{name}", ignore, child_relative)
            continue
        add_path(tar, os.path.join(path, name), f"{arcname}/{name}", ignore, child_relative)


def _add_children(tar: tarfile.TarFile, path: str, arcname: str, ignore: DockerIgnore, relative: str) -> None:
    with os.scandir(path) as entries:
        names = sorted(entry.name for entry in entries)
    for name in names:
        child, child_arcname, child_relative = os.path.join(path, name), f"{arcname}/{name}", f"{relative}/{name}"
        if not ignore.excluded(child_relative):
            add_path(tar, child, child_arcname, ignore, child_relative)
        elif _is_dir(child):
            _add_children(tar, child, child_arcname, ignore, child_relative)


def _is_dir(path: str) -> bool:
    return stat.S_ISDIR(os.lstat(path).st_mode)


def write_directory_context(fileobj: IO[bytes], context_dir: str, dockerfile: str) -> None:
    """Write the tar of ``context_dir`` to ``fileobj``: everything but what its ``.dockerignore``
    leaves out; the Dockerfile (``dockerfile``, relative) always goes in."""
    ignore = DockerIgnore.read(context_dir)
    with tarfile.open(fileobj=fileobj, mode="w", format=tarfile.PAX_FORMAT) as tar:
        with os.scandir(context_dir) as entries:
            names = sorted(entry.name for entry in entries)
        for name in names:
            full = os.path.join(context_dir, name)
            if ignore and ignore.excluded(name):
                if ignore.has_exclusions and _is_dir(full):
                    _add_children(tar, full, name, ignore, name)
                continue
            add_path(tar, full, name, ignore, name)
        if ignore and ignore.excluded(dockerfile):
            add_path(tar, os.path.join(context_dir, *dockerfile.split("/")), dockerfile)


def context_file(write: Callable[[IO[bytes]], None]) -> IO[bytes]:
    """A temporary file (deleted when closed) holding what ``write`` wrote, rewound."""
    file = tempfile.TemporaryFile()
    try:
        write(file)
        file.flush()
        file.seek(0)
    except BaseException:
        file.close()
        raise
    return file
