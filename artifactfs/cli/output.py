"""How the CLI talks to people: errors without tracebacks, progress bars, tables, JSON."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Sequence
from typing import Any

import click

__all__ = ["emit_json", "fail", "human_size", "progress_factory", "table"]


def fail(message: str, code: int = 1) -> None:
    """Print ``error: message`` to stderr and exit with ``code``."""
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def human_size(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


def table(rows: Sequence[Sequence[str]], header: Sequence[str]) -> None:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        click.echo("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


def emit_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=True))


def progress_factory() -> Callable[[str, int], Callable[[int], None]] | None:
    """A progress-bar maker for transfers, or None when stdout is not a terminal."""
    if not sys.stdout.isatty():
        return None
    from tqdm import tqdm

    def make(label: str, total: int) -> Callable[[int], None]:
        bar = tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=label,
                   leave=False, file=sys.stderr)

        def advance(n: int) -> None:
            bar.update(n)
            if bar.n >= total:
                bar.close()

        return advance

    return make
