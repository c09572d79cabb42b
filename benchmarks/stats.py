"""Small statistics and formatting helpers for the benchmark report."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

Raw = dict[str, list[dict[str, Any]]]


@dataclass(frozen=True)
class Summary:
    """Median, min and max of a series of measurements (n = how many)."""

    median: float
    low: float
    high: float
    n: int

    @classmethod
    def of(cls, values: Sequence[float]) -> Summary:
        if not values:
            return cls(float("nan"), float("nan"), float("nan"), 0)
        return cls(statistics.median(values), min(values), max(values), len(values))

    def fmt(self, digits: int = 2, unit: str = "") -> str:
        return f"{self.median:.{digits}f}{unit} ({self.low:.{digits}f}-{self.high:.{digits}f}, n={self.n})"


def mib(count: float) -> float:
    return count / (1024 * 1024)


def verdict(ok: bool) -> str:
    return "met" if ok else "**missed**"


def series(raw: Raw, setting: str, key: str = "seconds") -> list[float]:
    return [float(r[key]) for r in raw.get(setting, []) if key in r]


def pair_ratios(raw: Raw, base: str, other: str, key: str = "seconds") -> list[float]:
    """Per-round ratios other/base: each round ran both sides back to back."""
    by_round = {r["round"]: r[key] for r in raw.get(base, [])}
    return [r[key] / by_round[r["round"]] for r in raw.get(other, []) if r["round"] in by_round]


def databases(data: dict[str, Any], part: int) -> list[dict[str, Any]]:
    """The databases part ``part`` ran on (a merged report holds parts of runs at other scales)."""
    by_part: dict[str, list[dict[str, Any]]] = data.get("databases_by_part", {})
    return by_part.get(str(part)) or list(data.get("databases", []))
