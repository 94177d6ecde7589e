"""Control plane: a sandbox's persisted logs (``GET .../sandboxes/{id}/logs``) and the processes
that have records in them (``GET .../sandboxes/{id}/processes``).

Both routes are always addressed in the client's namespace (``/v1/namespaces/{ns}/...``), and
their answers are camelCase JSON (see :class:`SandboxLogsResponse`).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from .._config import ClientConfig
from ..models import SandboxLogLevel, SandboxLogsResponse, SandboxProcessLogFiltersResponse
from ._errors import _json, _model, check
from ._routing import _identifier, _lifecycle, sandboxes_url
from ._steps import Op, _send
from ._validation import _is_int

_LEVEL_ALIASES = {"warning": "warn"}


def log_level_number(level: Any) -> int:
    """The wire number of a level given as a :class:`SandboxLogLevel`, a name (``"info"``, any
    case; ``"warning"`` is ``warn``) or a number from 1 (trace) to 6 (fatal)."""
    if isinstance(level, SandboxLogLevel):
        return level.number
    if _is_int(level):
        if SandboxLogLevel.from_number(level) is None:
            raise ValueError(f"a log level number is between 1 (trace) and 6 (fatal), got {level!r}")
        return int(level)
    if isinstance(level, str):
        name = level.strip().lower()
        name = _LEVEL_ALIASES.get(name, name)
        if name.isdigit():
            return log_level_number(int(name))
        try:
            return SandboxLogLevel(name).number
        except ValueError:
            pass
    names = ", ".join(level.value for level in SandboxLogLevel)
    raise ValueError(f"log levels are {names} (or their numbers 1 to 6), got {level!r}")


def _str_items(value: Any, what: str) -> list[str]:
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        raise ValueError(f"{what} must be a list, got {value!r}")
    items = list(value)
    if not all(isinstance(item, str) and item for item in items):
        raise ValueError(f"{what} must be a list of non-empty strings, got {value!r}")
    return items


def logs_params(
    levels: Iterable[Any] | None,
    process_ids: Iterable[str] | None,
    next_token: str | None,
    head: int | None,
    tail: int | None,
    body: str | None,
) -> list[tuple[str, str]]:
    """The query of ``GET .../logs``: ``level`` and ``processId`` repeated once per value."""
    params: list[tuple[str, str]] = []
    if levels is not None:
        if isinstance(levels, (str, bytes, SandboxLogLevel)) or _is_int(levels) or not isinstance(levels, Iterable):
            raise ValueError(f"levels must be a list of log levels, got {levels!r}")
        params += [("level", str(log_level_number(level))) for level in levels]
    if process_ids is not None:
        params += [("processId", item) for item in _str_items(process_ids, "process_ids")]
    if next_token is not None:
        if not isinstance(next_token, str) or not next_token:
            raise ValueError(
                f"next_token must be a non-empty string (a next_token of an earlier page), got {next_token!r}"
            )
        params.append(("nextToken", next_token))
    for key, value in (("head", head), ("tail", tail)):
        if value is not None:
            if not _is_int(value) or value < 1:
                raise ValueError(f"{key} must be a positive integer, got {value!r}")
            params.append((key, str(value)))
    if head is not None and tail is not None:
        raise ValueError("pass head or tail, not both")
    if body is not None:
        if not isinstance(body, str) or not body:
            raise ValueError(f"body must be a non-empty string to search for, got {body!r}")
        params.append(("body", body))
    return params


def op_get_logs(
    cfg: ClientConfig,
    sandbox_id: str,
    levels: Iterable[Any] | None = None,
    process_ids: Iterable[str] | None = None,
    next_token: str | None = None,
    head: int | None = None,
    tail: int | None = None,
    body: str | None = None,
) -> Op[SandboxLogsResponse]:
    sandbox_id = _identifier(sandbox_id, "sandbox_id")
    params = logs_params(levels, process_ids, next_token, head, tail, body)
    resp = yield from _send(_lifecycle(cfg, "GET", sandboxes_url(cfg, sandbox_id, "/logs"), params=params))
    check(resp, sandbox=sandbox_id)
    return _model(SandboxLogsResponse, _json(resp, "sandbox logs"), "sandbox logs")


def op_list_log_processes(cfg: ClientConfig, sandbox_id: str) -> Op[SandboxProcessLogFiltersResponse]:
    sandbox_id = _identifier(sandbox_id, "sandbox_id")
    resp = yield from _send(_lifecycle(cfg, "GET", sandboxes_url(cfg, sandbox_id, "/processes")))
    check(resp, sandbox=sandbox_id)
    return _model(SandboxProcessLogFiltersResponse, _json(resp, "sandbox log processes"), "sandbox log processes")
