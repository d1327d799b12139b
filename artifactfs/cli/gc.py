"""``artifactfs gc``: remove the blobs no live version references (``store/gc.py``).

It runs beside the store's servers and commits, never instead of them: nothing stops while
it sweeps, and a commit landing meanwhile keeps its blobs (docs/storage.md, "Garbage
collection").
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import click

from artifactfs.cli.output import emit_json, fail, human_size
from artifactfs.cli.stores import StoreChoice, store_options
from artifactfs.core.errors import ArtifactFSError

if TYPE_CHECKING:
    from artifactfs.store.blobstore import StoredBlob
    from artifactfs.store.gc import GcPlan

__all__ = ["gc"]


def _grace_option(_ctx: click.Context, _param: click.Parameter, value: str) -> float:
    from artifactfs.store.gc import parse_grace

    try:
        return parse_grace(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


@click.command()
@store_options()
@click.option("--grace", default="24h", show_default=True, callback=_grace_option,
              metavar="DURATION",
              help="Keep blobs written, and blobs of versions deleted, less than this long "
                   "ago: 30m, 24h, 7d, or 0 (only when nothing is being pushed).")
@click.option("--dry-run", is_flag=True, help="Say what would go; remove nothing.")
@click.option("--json", "as_json", is_flag=True,
              help="Print the counts and every blob removed (or to be) as JSON.")
def gc(store_dir: Path | None, db_url: str | None, blobs_url: str | None, grace: float,
       dry_run: bool, as_json: bool) -> None:
    """Remove the blobs that no live version references (mark, then sweep).

    \b
    Live: a blob of a version not deleted, of a version deleted less than the grace ago,
    or written less than the grace ago (the upload of a commit still in flight). The
    rest goes, with its chunk index and the rows that let entities reach it; the folder
    listings of versions deleted past the grace go too. Safe beside running servers and
    commits: a commit landing meanwhile keeps its blobs.
    Examples:
      artifactfs gc --store /srv/artifacts --dry-run
      artifactfs gc --db postgresql://afs@db.internal:5432/artifacts \\
          --blobs s3://artifacts/afs --grace 7d
    """
    from artifactfs.store.gc import plan_gc, sweep

    try:
        with ExitStack() as stack:
            choice = StoreChoice.of(store_dir, db_url, blobs_url)
            if (choice.store_dir is not None
                    and not (choice.store_dir.expanduser() / "registry.sqlite3").is_file()):
                fail(f"{choice.store_dir} is not a store folder (no registry.sqlite3 in it)")
            store = choice.open()
            stack.callback(store.blobs.close)
            plan = plan_gc(store, grace=grace)
            if dry_run:
                _report(as_json, dry_run=True, plan_line=_plan_line(plan), blobs=plan.doomed,
                        extra={"scanned": plan.scanned, "live": plan.live,
                               "young": plan.young,
                               "expired_versions": len(plan.expired_versions)})
                return
            advance, close = _progress(len(plan.doomed))
            try:
                result = sweep(store, plan, on_blobs=advance)
            finally:
                close()
    except ArtifactFSError as exc:
        fail(str(exc))
    line = (f"removed {len(result.removed)} blobs ({human_size(result.removed_bytes)}) of "
            f"{plan.scanned} stored; kept {plan.live} referenced, {plan.young} written less "
            f"than the grace ago, {result.spared} taken up by commits meanwhile; dropped "
            f"{result.access_rows} access rows and {result.folder_rows} folder rows of "
            f"{len(plan.expired_versions)} deleted versions")
    _report(as_json, dry_run=False, plan_line=line, blobs=result.removed,
            extra={"scanned": plan.scanned, "live": plan.live, "young": plan.young,
                   "spared": result.spared, "access_rows": result.access_rows,
                   "folder_rows": result.folder_rows,
                   "expired_versions": len(plan.expired_versions)})


def _plan_line(plan: GcPlan) -> str:
    return (f"would remove {len(plan.doomed)} blobs ({human_size(plan.doomed_bytes)}) of "
            f"{plan.scanned} stored; keeps {plan.live} referenced and {plan.young} written "
            f"less than the grace ago; would drop the folder rows of "
            f"{len(plan.expired_versions)} deleted versions")


def _report(as_json: bool, *, dry_run: bool, plan_line: str, blobs: list[StoredBlob],
            extra: dict[str, int]) -> None:
    if not as_json:
        click.echo(plan_line)
        return
    emit_json({"dry_run": dry_run, "count": len(blobs), "bytes": sum(b.size for b in blobs),
               "blobs": [{"digest": b.digest, "size": b.size,
                          "written_at": datetime.fromtimestamp(b.written_at, UTC).isoformat()}
                         for b in blobs], **extra})


def _progress(total: int) -> tuple[Callable[[int], None] | None, Callable[[], None]]:
    """A bar over the sweep's blobs on a terminal (stderr, so that --json stays clean)."""
    if not sys.stderr.isatty() or total == 0:
        return None, lambda: None
    from tqdm import tqdm

    bar = tqdm(total=total, unit="blob", desc="gc", leave=False, file=sys.stderr)
    return bar.update, bar.close
