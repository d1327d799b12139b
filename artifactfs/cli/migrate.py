"""``artifactfs migrate``: move an embedded store into PostgreSQL and S3 (or any --db/--blobs
pair); the copying itself is ``store.migrate``."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click

from artifactfs.cli.output import fail, human_size
from artifactfs.core.errors import ArtifactFSError

__all__ = ["migrate"]


@contextmanager
def _bar(label: str, total: int, unit: str) -> Iterator[Any]:
    """A tqdm bar on stderr (the summary goes to stdout), quiet when stderr is no terminal
    (a log file would fill with redraws)."""
    from tqdm import tqdm

    scaled = unit == "B"
    with tqdm(total=total, desc=label, unit=unit, unit_scale=scaled,
              unit_divisor=1024 if scaled else 1000, leave=False, file=sys.stderr,
              disable=not sys.stderr.isatty()) as bar:
        yield bar


@click.command()
@click.option("--from", "source_dir", required=True,
              type=click.Path(file_okay=False, path_type=Path),
              help="The embedded store folder to copy (it is only read).")
@click.option("--db", "db_url", required=True, metavar="URL",
              help="Target database: postgresql://USER@HOST:PORT/DB or sqlite:///PATH.")
@click.option("--blobs", "blobs_url", required=True, metavar="URL",
              help="Target blob store: s3://BUCKET/PREFIX (endpoint and credentials from the "
                   "AWS configuration) or file:///PATH.")
@click.option("--dry-run", is_flag=True,
              help="Say what would be copied, and check the target holds no other data; "
                   "write nothing.")
@click.option("--workers", default=8, show_default=True, type=click.IntRange(1, 64),
              help="Blobs copied at once.")
def migrate(source_dir: Path, db_url: str, blobs_url: str, dry_run: bool,
            workers: int) -> None:
    """Copy an embedded store into PostgreSQL and S3, every blob and row checked.

    Every blob is written through the target's checks (its MD5 against its name; the chunk
    index built again), and every row keeps its id: versions, aliases, API keys (the same
    keys work), exactly-once save keys. The target database may be empty or hold an earlier
    run's copy: a run killed part way is resumed by running it again, and a run after a
    complete one copies nothing. A target holding other data is refused. At the end the
    target is checked (rows per table, every version's manifest digest, every blob's size).
    Stop writers to the source first, or run it again after they stopped.

    \b
    Example:
      export AWS_ENDPOINT_URL=https://s3.internal AWS_ACCESS_KEY_ID=... \\
             AWS_SECRET_ACCESS_KEY=...
      artifactfs migrate --from ~/.local/share/artifactfs/store \\
          --db postgresql://afs@db.internal:5432/artifacts --blobs s3://artifacts/registry
      artifactfs serve --db postgresql://afs@db.internal:5432/artifacts \\
          --blobs s3://artifacts/registry
    """
    from artifactfs.store.migrate import migrate_store

    try:
        report = migrate_store(source_dir, db_url, blobs_url, dry_run=dry_run,
                               workers=workers, progress=_bar)
    except ArtifactFSError as exc:
        fail(str(exc))
    except OSError as exc:  # a source file that cannot be read, a full target disk
        fail(f"{exc.strerror or exc}: {exc.filename}" if exc.filename else str(exc))
    verb = "would copy" if dry_run else "copied"
    if report.copied_nothing and not report.damaged:
        click.echo("nothing to copy: the target already holds everything of the source")
    click.echo(f"blobs: {verb} {report.blobs_copied} ({human_size(report.bytes_copied)}), "
               f"{report.blobs_skipped} already there")
    rows = ", ".join(f"{name} {n}" for name, n in report.rows_copied.items() if n)
    click.echo(f"rows: {verb} {rows or 'none'}; "
               f"{sum(report.rows_present.values())} already there")
    for digest in report.damaged:
        click.echo(f"error: source blob {digest} is damaged (its bytes have another digest); "
                   f"not copied", err=True)
    if dry_run:
        return
    for problem in report.problems:
        click.echo(f"error: check failed: {problem}", err=True)
    if report.problems or report.damaged:
        raise SystemExit(1)
    click.echo(f"checked: every table's row count, {report.versions_checked} manifests, "
               f"{report.blobs_checked} blobs ({report.indexes_checked} chunk indexes) at the "
               f"target")
