"""``artifactfs cache info``, ``cache prune`` and ``cache clear``: the shared content cache.

The cache (ARTIFACTFS_CACHE_DIR, bounded by ARTIFACTFS_CACHE_SIZE) holds verified bytes
for every mount and download of this user. These commands are safe while mounts read from
it (``ContentCache.prune`` says why): they take the same eviction lock as the mounts, only
unlink files, and a mount that finds a file gone fetches and verifies it again.

The hit rate is the running mounts' own count (their ``user.artifactfs.stats`` attribute,
docs/mount.md): the cache keeps no count on disk, so with no mount running it is unknown.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from artifactfs.cli.common import user_errors
from artifactfs.cli.output import emit_json, fail, human_size
from artifactfs.config import Config, parse_size

if TYPE_CHECKING:
    from artifactfs.cache import ContentCache

__all__ = ["cache"]

_STATS_TIMEOUT = 2.0  # seconds one mount may take to answer; a hung one is left out


@click.group()
def cache() -> None:
    """Inspect and empty the shared content cache (ARTIFACTFS_CACHE_DIR).

    Safe while mounts use it: a mount reading meanwhile fetches and verifies again what
    was removed.
    """


def _open_cache(config: Config) -> ContentCache | None:
    """The cache, or None when its folder was never made (nothing to count or remove, and
    no reason to make it)."""
    from artifactfs.cache import ContentCache

    bound = config.cache_size  # a bad ARTIFACTFS_CACHE_SIZE is one error line, named
    if not config.cache_dir.is_dir():
        return None
    return ContentCache(config.cache_dir, bound)


@cache.command("info")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@user_errors
def cache_info(as_json: bool) -> None:
    """Show where the cache is, its bound, what it holds, and the running mounts' hit rate.

    \b
    Examples:
      artifactfs cache info
      ARTIFACTFS_CACHE_DIR=/scratch/afs artifactfs cache info --json
    """
    config = Config.from_env()
    found = _open_cache(config)
    summary = found.summary() if found is not None else None
    mounts = _mount_counts(config.cache_dir)
    hits = sum(m["hits"] for m in mounts)
    lookups = hits + sum(m["misses"] for m in mounts)
    out: dict[str, Any] = {
        "root": str(config.cache_dir),
        "bound": config.cache_size,
        "used": summary.used if summary else 0,
        "files": summary.files if summary else 0,
        "whole_blobs": summary.whole if summary else 0,
        "chunks": summary.chunks if summary else 0,
        "chunk_indexes": summary.indexes if summary else 0,
        "mounts": mounts,
        "hit_rate": hits / lookups if lookups else None,
    }
    if as_json:
        emit_json(out)
        return
    share = out["used"] / out["bound"]
    click.echo(f"cache:    {out['root']}")
    click.echo(f"used:     {human_size(out['used'])} of {human_size(out['bound'])} "
               f"({share:.0%}; ARTIFACTFS_CACHE_SIZE={config.cache_size_setting})")
    click.echo(f"files:    {out['files']} ({out['whole_blobs']} whole files, {out['chunks']} "
               f"chunks, {out['chunk_indexes']} chunk indexes)")
    if not mounts:
        click.echo("hit rate: unknown (no mount of this cache is running; mounts count it)")
        return
    rate = f"{out['hit_rate']:.1%}" if out["hit_rate"] is not None else "no reads yet"
    click.echo(f"hit rate: {rate} ({hits} hits of {lookups} lookups, "
               f"{len(mounts)} running mount{'s' if len(mounts) > 1 else ''})")
    for m in mounts:
        click.echo(f"  {m['mountpoint']}: {m['hits']} hits, {m['misses']} misses")


def _mount_counts(cache_dir: Path) -> list[dict[str, Any]]:
    """The cache counters of each running mount of this user that uses ``cache_dir``."""
    from artifactfs.fs.mounts import artifactfs_mounts

    wanted = os.path.realpath(cache_dir)
    out = []
    for mountpoint in artifactfs_mounts():
        stats = _stats_of(mountpoint)
        if stats is None or os.path.realpath(str(stats.get("cache_dir", ""))) != wanted:
            continue
        out.append({"mountpoint": str(mountpoint), "hits": int(stats.get("cache_hits", 0)),
                    "misses": int(stats.get("cache_misses", 0)),
                    "damaged": int(stats.get("cache_damaged", 0))})
    return out


def _stats_of(mountpoint: Path) -> dict[str, Any] | None:
    """A mount's stats attribute; None for another user's mount (refused), a dead one
    (ENOTCONN) or one that does not answer within ``_STATS_TIMEOUT``, which is left waiting
    in a daemon thread rather than holding the command."""
    answer: list[dict[str, Any]] = []

    def ask() -> None:
        try:
            raw = os.getxattr(mountpoint, "user.artifactfs.stats")
            answer.append(json.loads(raw))
        except (OSError, ValueError):
            pass

    asking = threading.Thread(target=ask, name="artifactfs-stats", daemon=True)
    asking.start()
    asking.join(_STATS_TIMEOUT)
    return answer[0] if answer else None


def _size(ctx: click.Context, param: click.Parameter, value: str | None) -> int | None:
    if value is None:
        return None
    from artifactfs.core.errors import ArtifactFSError

    try:
        return parse_size(value)
    except ArtifactFSError as exc:
        fail(f"--to: {exc}")
    raise AssertionError


@cache.command("prune")
@click.option("--to", "to", default=None, callback=_size, metavar="SIZE",
              help="Remove least recently used files until the cache holds at most SIZE "
                   "(512M, 2G, 2GiB; 0 empties it). Default: bring it under its bound as "
                   "the mounts do (to 90% of ARTIFACTFS_CACHE_SIZE, if it is over).")
@user_errors
def cache_prune(to: int | None) -> None:
    """Remove the least recently used files of the cache.

    \b
    Examples:
      artifactfs cache prune             # under ARTIFACTFS_CACHE_SIZE, if over it
      artifactfs cache prune --to 2G
    """
    config = Config.from_env()
    found = _open_cache(config)
    if found is None:
        click.echo(f"{config.cache_dir}: no cache here yet; nothing to remove")
        return
    target = to
    if target is None:
        from artifactfs.cache.disk import LOW_WATER

        over = found.summary().used > found.max_bytes
        target = int(found.max_bytes * LOW_WATER) if over else found.max_bytes
    _report(found.prune(target))


@cache.command("clear")
@user_errors
def cache_clear() -> None:
    """Remove every file of the cache (mounts keep working and fetch again what they read).

    Temporary files a killed process left behind go too, once an hour old.

    \b
    Example:
      artifactfs cache clear
    """
    config = Config.from_env()
    found = _open_cache(config)
    if found is None:
        click.echo(f"{config.cache_dir}: no cache here yet; nothing to remove")
        return
    _report(found.prune(0))


def _report(done: Any) -> None:
    click.echo(f"removed {done.removed} files ({human_size(done.freed)}); "
               f"{human_size(done.left)} left")
