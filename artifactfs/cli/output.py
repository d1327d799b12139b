"""How the CLI talks to people: errors without tracebacks, progress bars, tables, JSON, and
the log records of artifactfs and its libraries as ``warning: ...`` lines."""

from __future__ import annotations

import json
import logging
import sys
import threading
from collections.abc import Callable, Sequence
from typing import Any

import click

from artifactfs.core.units import human_size

__all__ = ["emit_json", "fail", "human_size", "log_to_stderr", "progress_factory", "shown_ref",
           "table"]


def fail(message: str, code: int = 1) -> None:
    """Print ``error: message`` to stderr and exit with ``code``."""
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


class _LineFormatter(logging.Formatter):
    """A record as the CLI's own messages look: ``warning: text``, one line. Verbose, the
    logger's name is added (which library spoke) and a traceback is kept; otherwise a
    record's traceback is left out, as the CLI never shows one for what a user can fix."""

    def __init__(self, *, verbose: bool) -> None:
        super().__init__()
        self.verbose = verbose

    def format(self, record: logging.LogRecord) -> str:
        level = record.levelname.lower()
        if not self.verbose:
            return f"{level}: {record.getMessage()}"
        line = f"{level}: {record.name}: {record.getMessage()}"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


def log_to_stderr(*, verbose: bool = False) -> None:
    """Send log records to stderr as ``warning: ...`` lines: WARNING and above, or with
    ``verbose`` INFO too. Without it a warning of the S3 store, the cache or a library
    reached stderr through logging's last-resort handler as bare text, unlike every other
    message of the CLI. Commands that keep a log of their own (``serve``, a mount's daemon)
    replace this with ``logging.basicConfig(force=True)``."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_LineFormatter(verbose=verbose))
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h.formatter, _LineFormatter)]:
        root.removeHandler(old)  # a second call (tests run the CLI in process) replaces it
    root.addHandler(handler)
    root.setLevel(logging.INFO if verbose else logging.WARNING)


def shown_ref(entity: str | None, project: str | None, name: str, working_in: str) -> str:
    """A version's name as the commands print it, and as it would be typed back:
    ``PROJECT/NAME:vN`` in the entity the command works in, ``ENTITY/PROJECT/NAME:vN``
    in another (``name`` is ``NAME:vN``)."""
    if entity is None or entity == working_in:
        return f"{project}/{name}"
    return f"{entity}/{project}/{name}"


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
        return _Bar(tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024,
                         desc=label, leave=False, file=sys.stderr))

    return make


class _Bar:
    """A transfer's bar: bytes, and files done of the files to do when the transfer says
    (``expect_files``, ``file_done``: what a download of many files calls)."""

    def __init__(self, bar: Any) -> None:
        self._bar = bar
        self._files = 0
        self._done = 0
        self._lock = threading.Lock()  # files finish in several threads

    def __call__(self, n: int) -> None:
        with self._lock:
            self._bar.update(n)
            if self._bar.n >= self._bar.total and self._done >= self._files:
                self._bar.close()

    def expect_files(self, count: int) -> None:
        with self._lock:
            self._files = count
            self._bar.set_postfix_str(f"0/{count} files", refresh=False)

    def file_done(self) -> None:
        with self._lock:
            self._done += 1
            # drawn at the bar's own pace (update(0)), not once a file: a million small
            # files would be a million redraws of the terminal
            self._bar.set_postfix_str(f"{self._done}/{self._files} files", refresh=False)
            if self._bar.n >= self._bar.total and self._done >= self._files:
                self._bar.refresh()
                self._bar.close()
            else:
                self._bar.update(0)
