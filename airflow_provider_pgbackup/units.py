"""Small leaf helpers shared by every layer (no imports from the provider)."""

from __future__ import annotations


def format_bytes(count: float) -> str:
    """``1536`` -> ``"1.5 KiB"``: sizes in log lines and progress reports."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(count) < 1024 or unit == "GiB":
            return f"{count:.1f} {unit}" if unit != "B" else f"{int(count)} B"
        count /= 1024
    return f"{count:.1f} TiB"  # pragma: no cover - the loop always returns
