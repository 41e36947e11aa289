"""Sizes for people: one formatter for the CLI's lines and the bench's tables."""

from __future__ import annotations


def human_bytes(n: float, kilo: str = "KB", table: bool = False) -> str:
    """512 B, 1.5 KB, 2.3 MB, ... (powers of 1000). `table`: two decimals below 100 (bench tables)."""
    for unit in ("B", kilo, "MB"):
        if abs(n) < 1000:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.{2 if table and abs(n) < 100 else 1}f} {unit}"
        n /= 1000
    return f"{n:.{2 if table and abs(n) < 100 else 1}f} GB"
