"""Checks of any operator argument: names, connection ids, flags, numbers, and whether a value is still a
template (checked again once rendered). Each raises :class:`InvalidOptionError` naming the value."""

from __future__ import annotations

import datetime
import math
from collections.abc import Iterable
from typing import Any


def is_templated(*values: Any) -> bool:
    """True when a value is only known at run time: Jinja, or an XComArg / MappedArgument (``.expand``).

    Such values are validated at the start of ``execute``, once rendered or resolved.
    """

    def has_jinja(value: Any) -> bool:
        if isinstance(value, str):
            return "{{" in value or "{%" in value
        if isinstance(value, (list, tuple)):
            return any(has_jinja(v) for v in value)
        return value is not None and not isinstance(value, (int, float, datetime.timedelta))

    return any(has_jinja(v) for v in values)


class InvalidOptionError(ValueError):
    """A user-supplied option is not allowed; the message names the value and what is allowed."""


def parse_flag(name: str, value: bool | str) -> bool:
    """A boolean, also from a rendered template ("True"/"false"/"1"/"0"); anything else is an error."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "1", "yes", "on"):
        return True
    if text in ("false", "0", "no", "off"):
        return False
    raise InvalidOptionError(f"{name} {value!r} is not a boolean; use true or false")


def check_name(kind: str, value: str) -> str:
    """Refuse names and patterns that cannot be passed safely to libpq or the pg tools."""
    if not isinstance(value, str) or not value:
        raise InvalidOptionError(f"{kind} {value!r} must be a non-empty string")
    bad = [c for c in ("\n", "\r", "\x00") if c in value]
    if bad:
        raise InvalidOptionError(
            f"{kind} {value!r} contains a newline, carriage return or NUL byte, which pg_dump cannot take"
        )
    return value


def check_names(kind: str, values: Iterable[str] | str | None) -> tuple[str, ...]:
    """A list of names or patterns (one string is one name); None or anything else is refused."""
    if isinstance(values, str):
        values = (values,)
    if not isinstance(values, (list, tuple)):
        raise InvalidOptionError(f"{kind}s {values!r} must be a list of strings (or one string)")
    return tuple(check_name(kind, v) for v in values)


def check_optional_name(kind: str, value: object) -> str | None:
    """None or "" (use the default), else a name as :func:`check_name` accepts it."""
    if value is None or value == "":
        return None
    return check_name(kind, value)  # type: ignore[arg-type]


def check_conn_id(kind: str, value: object) -> str:
    """An Airflow connection id: a non-empty string without whitespace control characters."""
    if not isinstance(value, str) or not value.strip():
        raise InvalidOptionError(
            f"{kind} {value!r} must be the id of an Airflow connection (a non-empty string)"
        )
    return check_name(kind, value)


def check_bin_dir(value: object) -> str | None:
    """``pg_bin_dir``: None, or the absolute path of a folder."""
    if value is None or value == "":
        return None
    if not isinstance(value, str) or not value.startswith("/") or "\x00" in value or "\n" in value:
        raise InvalidOptionError(f"pg_bin_dir {value!r} must be the absolute path of a folder (or None)")
    return value


def check_positive_number(kind: str, value: object, *, allow_zero: bool = False) -> float:
    """A finite number > 0 (or >= 0 with ``allow_zero``): seconds, intervals."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise InvalidOptionError(f"{kind} {value!r} must be a finite number of seconds")
    if value < 0 or (value == 0 and not allow_zero):
        least = "a number >= 0" if allow_zero else "a positive number"
        raise InvalidOptionError(f"{kind} {value!r} must be {least}")
    return float(value)
