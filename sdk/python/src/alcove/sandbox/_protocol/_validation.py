"""Client-side checks of arguments, before anything is sent."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

MANAGEMENT_PORT = 9501
"""The in-sandbox agent's port; it can never be exposed as a user port."""


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _str_list(value: Any, what: str) -> list[str]:
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        raise ValueError(f"{what} must be a list of strings, got {value!r}")
    items = list(value)
    if not all(isinstance(item, str) for item in items):
        raise ValueError(f"{what} must be a list of strings, got {value!r}")
    return items


def validate_ports(ports: Any) -> list[int]:
    if _is_int(ports) or isinstance(ports, (str, bytes)) or not isinstance(ports, Iterable):
        raise ValueError(f"ports must be a list of port numbers, got {ports!r}")
    result = []
    for port in ports:
        if not _is_int(port) or not 1 <= port <= 65535:
            raise ValueError(f"ports must be integers between 1 and 65535, got {port!r}")
        if port == MANAGEMENT_PORT:
            raise ValueError(f"port {MANAGEMENT_PORT} is reserved for the sandbox agent and cannot be exposed")
        result.append(port)
    return sorted(set(result))
