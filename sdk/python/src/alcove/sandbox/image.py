"""Images described in Python and built by the server (``SandboxClient.build_image``)::

    from alcove.sandbox import Image, SandboxClient

    image = (
        Image("tools/jq:1", base="alcove/debian")
        .run("apt-get update && apt-get install -y jq")
        .copy("scripts/", "/opt/scripts")
        .env({"LANG": "C.UTF-8"})
        .workdir("/srv")
    )
    print(image.dockerfile())
    info = SandboxClient().build_image(image)

An :class:`Image` is immutable: each method returns a new one, so a shared base can be extended
in several ways. Nothing is read from disk until the build: a ``copy`` source that does not
exist raises :class:`FileNotFoundError` then (from :meth:`Image.write_context`).
"""

from __future__ import annotations

import io
import json
import os
import re
import tarfile
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import IO, Any

from ._context import add_path

DEFAULT_BASE_IMAGE = "alcove/debian"
"""The base of an :class:`Image` that names none: the server's default image."""

CONTEXT_DIR = "ctx"
"""Where the build context holds the sources of ``copy``: ``ctx/<n>/<name>`` for the n-th copy."""

_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]")
_PLAIN_ARGUMENT = re.compile(r'[^\s"\'\\\[\]$]+')


@dataclass(frozen=True)
class _Copy:
    source: str  # absolute local path
    destination: str


@dataclass(frozen=True)
class _Instruction:
    keyword: str
    argument: Any


def _text(value: Any, what: str, *, one_line: bool = True) -> str:
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{what} must be a non-empty string, got {value!r}")
    if one_line and any(ch in value for ch in "\r\n"):
        raise ValueError(f"{what} must be one line, got {value!r}")
    return value


def _strings(values: Any, what: str) -> tuple[str, ...]:
    if isinstance(values, (str, bytes)) or not isinstance(values, Iterable):
        raise TypeError(f"{what} must be a list of strings (the exec form), got {values!r}")
    items = tuple(values)
    if not items or not all(isinstance(item, str) for item in items):
        raise TypeError(f"{what} must be a non-empty list of strings, got {values!r}")
    return items


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


class Image:
    """A container image to build: a base image and the steps that follow, rendered as a
    Dockerfile (:meth:`dockerfile`) and built by ``SandboxClient.build_image(image)``.

    ``name`` is the built image's reference (``name:tag``); ``base`` the image it starts ``FROM``
    (default ``alcove/debian``, the server's default image). Each method returns a new
    :class:`Image` with one more step; the steps render in the order they were added.
    """

    __slots__ = ("_name", "_base", "_steps")

    def __init__(self, name: str, base: str = DEFAULT_BASE_IMAGE) -> None:
        self._name = _text(name, "name")
        self._base = _text(base, "base")
        if any(ch.isspace() for ch in self._name + self._base):
            raise ValueError(f"image references have no whitespace, got {name!r} and {base!r}")
        self._steps: tuple[_Instruction, ...] = ()

    @property
    def name(self) -> str:
        """The built image's reference (``name:tag``)."""
        return self._name

    @property
    def base(self) -> str:
        """The image this one starts ``FROM``."""
        return self._base

    def __repr__(self) -> str:
        return f"Image(name={self._name!r}, base={self._base!r}, steps={len(self._steps)})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Image):
            return NotImplemented
        return (self._name, self._base, self._steps) == (other._name, other._base, other._steps)

    def __hash__(self) -> int:
        return hash((self._name, self._base, self._steps))

    def _with(self, keyword: str, argument: Any) -> Image:
        image = Image.__new__(Image)
        image._name, image._base = self._name, self._base
        image._steps = (*self._steps, _Instruction(keyword, argument))
        return image

    # -- steps ---------------------------------------------------------------------------------

    def run(self, command: str) -> Image:
        """Run a shell command (``/bin/sh -c``) at build time, as ``RUN`` in the shell form.

        A command of several lines (or ending with a backslash) keeps its exact meaning: it is
        rendered in the exec form ``RUN ["/bin/sh", "-c", "<command>"]``, since a Dockerfile line
        cannot hold a newline and a continuation would join the lines into one command.
        """
        return self._with("RUN", _text(command, "command", one_line=False))

    def copy(self, source: str | os.PathLike[str], destination: str) -> Image:
        """Copy a local file or directory (its contents, as ``COPY`` does) to ``destination`` in
        the image. ``source`` is resolved against the current directory now and read at build
        time (a missing one raises :class:`FileNotFoundError` then); links inside a directory
        are copied as links."""
        local = os.path.abspath(_text(source, "source"))
        return self._with("COPY", _Copy(local, _text(destination, "destination")))

    def env(self, values: Mapping[str, str]) -> Image:
        """Set environment variables (``ENV K="V"``, the value JSON-quoted; ``$NAME`` in a value
        is expanded by the build, as in any Dockerfile: ``{"PATH": "/opt/bin:$PATH"}``)."""
        if not isinstance(values, Mapping) or not values:
            raise TypeError(f"env takes a non-empty mapping of names to values, got {values!r}")
        pairs = []
        for key, value in values.items():
            if not isinstance(key, str) or not _ENV_NAME.fullmatch(key):
                raise ValueError(f"environment variable names are [A-Za-z_][A-Za-z0-9_]*, got {key!r}")
            if not isinstance(value, str):
                raise TypeError(f"the value of {key} must be a string, got {type(value).__name__}")
            if any(ch in value for ch in "\r\n"):
                raise ValueError(f"the value of {key} must be one line, got {value!r}")
            pairs.append((key, value))
        return self._with("ENV", tuple(pairs))

    def workdir(self, path: str) -> Image:
        """Set the working directory of later steps and of the image's processes (``WORKDIR``)."""
        return self._with("WORKDIR", _text(path, "path"))

    def user(self, name: str) -> Image:
        """Run later steps and the image's processes as this user (``USER name``, ``uid[:gid]``)."""
        return self._with("USER", _text(name, "name"))

    def entrypoint(self, command: Iterable[str]) -> Image:
        """Set the image's entrypoint (``ENTRYPOINT``, exec form)."""
        return self._with("ENTRYPOINT", _strings(command, "entrypoint"))

    def cmd(self, command: Iterable[str]) -> Image:
        """Set the image's default command (``CMD``, exec form)."""
        return self._with("CMD", _strings(command, "cmd"))

    def expose(self, port: int, *ports: int) -> Image:
        """Declare TCP ports the image serves on (``EXPOSE``)."""
        numbers = (port, *ports)
        for number in numbers:
            if isinstance(number, bool) or not isinstance(number, int) or not 1 <= number <= 65535:
                raise ValueError(f"ports are integers between 1 and 65535, got {number!r}")
        return self._with("EXPOSE", numbers)

    # -- rendering -----------------------------------------------------------------------------

    def context_files(self) -> list[tuple[str, str]]:
        """The ``copy`` sources as (path in the build context, local path), in order: the n-th
        copy's source goes to ``ctx/<n>/<its name>``, so two sources never collide."""
        files = []
        for step in self._steps:
            if step.keyword == "COPY":
                name = _SAFE_NAME.sub("_", os.path.basename(step.argument.source)) or "root"
                files.append((f"{CONTEXT_DIR}/{len(files)}/{name}", step.argument.source))
        return files

    def dockerfile(self) -> str:
        """The Dockerfile of this image (``COPY`` reads from the context of :meth:`write_context`)."""
        lines = [f"FROM {self._base}"]
        sources = iter(self.context_files())
        for step in self._steps:
            lines.append(f"{step.keyword} {self._render(step, sources)}")
        return "\n".join(lines) + "\n"

    @staticmethod
    def _render(step: _Instruction, sources: Iterator[tuple[str, str]]) -> str:
        keyword, argument = step.keyword, step.argument
        if keyword == "RUN":
            if "\n" in argument or "\r" in argument or argument.rstrip().endswith("\\"):
                return _json(["/bin/sh", "-c", argument])
            return str(argument)
        if keyword == "COPY":
            context_path, _ = next(sources)
            if _PLAIN_ARGUMENT.fullmatch(argument.destination):
                return f"{context_path} {argument.destination}"
            return _json([context_path, argument.destination])
        if keyword == "ENV":
            return " ".join(f"{key}={_json(value)}" for key, value in argument)
        if keyword in ("ENTRYPOINT", "CMD"):
            return _json(list(argument))
        if keyword == "EXPOSE":
            return " ".join(str(port) for port in argument)
        return str(argument)  # WORKDIR, USER

    def write_context(self, fileobj: IO[bytes]) -> None:
        """Write the build context, a tar holding ``Dockerfile`` (:meth:`dockerfile`) and the
        ``copy`` sources under ``ctx/``, to ``fileobj``. Raises :class:`FileNotFoundError` for a
        missing source."""
        files = self.context_files()
        for _, local in files:
            if not os.path.exists(local):
                raise FileNotFoundError(f"image {self._name}: the source {local!r} of copy() does not exist")
        dockerfile = self.dockerfile().encode("utf-8")
        with tarfile.open(fileobj=fileobj, mode="w", format=tarfile.PAX_FORMAT) as tar:
            info = tarfile.TarInfo("Dockerfile")
            info.size, info.mode = len(dockerfile), 0o644
            info.uname = info.gname = "root"
            tar.addfile(info, io.BytesIO(dockerfile))
            directories = {CONTEXT_DIR} | {context_path.rsplit("/", 1)[0] for context_path, _ in files}
            for directory in sorted(directories):
                entry = tarfile.TarInfo(directory)
                entry.type, entry.mode = tarfile.DIRTYPE, 0o755
                entry.uname = entry.gname = "root"
                tar.addfile(entry)
            for context_path, local in files:
                # The named source itself is followed when it is a link (it was named on purpose).
                add_path(tar, os.path.realpath(local), context_path)


__all__ = ["CONTEXT_DIR", "DEFAULT_BASE_IMAGE", "Image"]
