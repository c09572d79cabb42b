"""Strict readers of a content record's JSON fields: each refusal names the field, what it must be and
what it was (:class:`ContentRecordError`)."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

__all__ = [
    "ContentRecordError",
    "is_checksum",
    "is_count",
    "is_int",
    "is_str",
    "list_at",
    "need",
    "object_at",
    "optional",
]

_HEX32 = re.compile(r"^[0-9a-f]{32}$")


class ContentRecordError(ValueError):
    """A content record (JSON) is malformed: names the field, what it must be and what it was."""


def _type_name(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def need(data: Mapping[str, Any], key: str, where: str, expected: str, check: Callable[[Any], bool]) -> Any:
    """``data[key]`` when ``check`` accepts it; else the refusal names ``where.key`` and ``expected``."""
    path = f"{where}.{key}" if where else key
    if key not in data:
        raise ContentRecordError(f"content record field {path} is missing (must be {expected})")
    value = data[key]
    if not check(value):
        shown = repr(value) if isinstance(value, (int, float, str)) and len(repr(value)) <= 40 else ""
        raise ContentRecordError(
            f"content record field {path} must be {expected}, got {_type_name(value)}"
            + (f" {shown}" if shown else "")
        )
    return value


def object_at(value: Any, where: str, keys: Sequence[str]) -> Mapping[str, Any]:
    """``value`` when it is an object with no key outside ``keys``."""
    if not isinstance(value, dict):
        raise ContentRecordError(f"content record field {where} must be an object, got {_type_name(value)}")
    unknown = sorted(str(k) for k in value if k not in keys)
    if unknown:
        raise ContentRecordError(f"content record field {where} has unknown keys: {', '.join(unknown)[:200]}")
    return value


def list_at(value: Any, where: str) -> list[Any]:
    """``value`` when it is a list."""
    if not isinstance(value, list):
        raise ContentRecordError(f"content record field {where} must be a list, got {_type_name(value)}")
    return value


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def is_count(value: Any) -> bool:
    return is_int(value) and value >= 0


def is_str(value: Any) -> bool:
    return isinstance(value, str)


def is_checksum(value: Any) -> bool:
    return isinstance(value, str) and _HEX32.match(value) is not None


def optional(check: Callable[[Any], bool]) -> Callable[[Any], bool]:
    return lambda value: value is None or check(value)
