"""Sizes as people read them: what the CLI's tables and the web view's pages print."""

from __future__ import annotations

__all__ = ["human_size"]


def human_size(n: int) -> str:
    """``1536`` -> ``"1.5 KiB"``: powers of 1024, as the cache bound and ``ls`` count."""
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{n} B" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable: the loop returns at TiB")
