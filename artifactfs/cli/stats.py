"""``artifactfs stats MOUNTPOINT``: a running mount's counters, for people or scripts.

The counters are the daemon's own ``user.artifactfs.stats`` attribute (docs/mount.md),
which its ``--metrics-port`` serves to Prometheus too (fs/metrics.py): the three show the
same numbers. A path inside a mount names that mount.
"""

from __future__ import annotations

import errno
import json
import os
import threading
from pathlib import Path
from typing import Any

import click

from artifactfs.cli.output import emit_json, fail, human_size
from artifactfs.fs.mounts import FSTYPE, fuse_mount_type

__all__ = ["stats"]

_TIMEOUT = 5.0  # seconds the daemon may take to answer; a hung one is reported as such


def _mount_root(path: Path) -> Path:
    """The artifactfs mount ``path`` is in (``path`` itself, or the nearest folder above
    it that one is mounted on), or exit with what is there instead."""
    path = path.expanduser().absolute()
    for candidate in (path, *path.parents):
        kind = fuse_mount_type(candidate)
        if kind == FSTYPE:
            return candidate
        if kind is not None and candidate == path:
            fail(f"{path} holds a {kind} file system, not artifactfs")
    fail(f"{path} is not an artifactfs mount, nor inside one (mount one with "
         "'artifactfs mount MOUNTPOINT')")
    raise AssertionError


def read_stats(mountpoint: Path, timeout: float = _TIMEOUT) -> dict[str, Any]:
    """The mount's stats attribute, or exit with why it cannot be had: a daemon that died
    (ENOTCONN), another user's mount (refused), or one that does not answer within
    ``timeout`` (left waiting in a daemon thread, not holding the command)."""
    answer: list[bytes] = []
    error: list[OSError] = []

    def ask() -> None:
        try:
            answer.append(os.getxattr(mountpoint, "user.artifactfs.stats"))
        except OSError as exc:
            error.append(exc)

    asking = threading.Thread(target=ask, name="artifactfs-stats", daemon=True)
    asking.start()
    asking.join(timeout)
    if error:
        exc = error[0]
        if exc.errno in (errno.ENOTCONN, errno.ECONNABORTED):
            fail(f"the daemon of {mountpoint} is gone; run 'artifactfs umount "
                 f"{mountpoint}' (or mount it again)")
        if exc.errno in (errno.EACCES, errno.EPERM):
            fail(f"{mountpoint} is another user's mount; its counters are theirs")
        fail(f"cannot read the counters of {mountpoint}: {exc.strerror}")
    if not answer:
        fail(f"the daemon of {mountpoint} did not answer within {timeout:.0f} s")
    try:
        found = json.loads(answer[0])
    except ValueError:
        found = None
    if not isinstance(found, dict):
        fail(f"{mountpoint} answered counters that are not a JSON object")
    return found


def quantile(read_seconds: dict[str, Any], q: float) -> float | None:
    """The upper bound of the histogram bucket that holds quantile ``q`` of the reads (an
    upper estimate, as Prometheus's histogram_quantile is an estimate); None for no reads,
    or when it lies past the last finite bound."""
    count = int(read_seconds.get("count", 0))
    if count == 0:
        return None
    rank = q * count
    for bound, cumulative in read_seconds.get("buckets", []):
        if cumulative >= rank:
            return None if bound is None else float(bound)
    return None


def _count(n: int, thing: str) -> str:
    return f"{n} {thing}" if n == 1 else f"{n} {thing}s"


def _ms(seconds: float | None) -> str:
    if seconds is None:
        return "more than the last bucket"
    return f"{seconds * 1000:g} ms"


@click.command()
@click.argument("mountpoint", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the counters as JSON.")
def stats(mountpoint: Path, as_json: bool) -> None:
    """Show a running mount's counters: cache hits and misses, bytes fetched, verification
    failures, read latency, staged changes.

    \b
    Examples:
      artifactfs stats /mnt/art
      artifactfs stats /mnt/art --json | jq .cache_hits
    """
    root = _mount_root(mountpoint)
    found = read_stats(root)
    if as_json:
        emit_json(found)
        return
    hits, misses = int(found.get("cache_hits", 0)), int(found.get("cache_misses", 0))
    lookups = hits + misses
    rate = f"{hits / lookups:.1%} hit rate" if lookups else "no lookups yet"
    mode = "read-only" if found.get("read_only") else "read-write"
    click.echo(f"mount:     {root} (pid {found.get('pid', '?')}, {mode})")
    click.echo(f"cache:     {found.get('cache_dir', '?')}")
    click.echo(f"  lookups: {hits} hits, {misses} misses ({rate}); "
               f"{found.get('cache_damaged', 0)} damaged files dropped")
    click.echo(f"fetched:   {human_size(int(found.get('fetch_bytes', 0)))} in "
               f"{found.get('fetch_requests', 0)} requests; "
               f"{found.get('verification_failures', 0)} verification failures")
    reads: dict[str, Any] = found.get("read_seconds") or {}
    count = int(reads.get("count", 0))
    if count:
        mean = float(reads.get("sum", 0.0)) / count
        click.echo(f"reads:     {count} (mean {mean * 1000:.2f} ms; p50 at most "
                   f"{_ms(quantile(reads, 0.5))}, p99 at most {_ms(quantile(reads, 0.99))})")
    else:
        click.echo("reads:     none yet")
    click.echo(f"staged:    {_count(int(found.get('staged_files', 0)), 'file')}, "
               f"{human_size(int(found.get('staged_bytes', 0)))} in "
               f"{_count(int(found.get('staged_folders', 0)), 'folder')}")
    click.echo(f"folders:   {found.get('folder_fetches', 0)} listings fetched in "
               f"{found.get('folder_requests', 0)} requests; "
               f"{found.get('manifest_fetches', 0)} manifests")
    if found.get("run"):
        click.echo(f"run:       {found['run']} ({found.get('uses_recorded', 0)} uses recorded, "
                   f"{found.get('uses_failed', 0)} failed)")
    address = found.get("metrics_address")
    click.echo(f"metrics:   {address or 'not served (mount with --metrics-port PORT)'}")
