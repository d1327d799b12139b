"""PyTorch DataLoader epochs over a folder tree: what a training job sees of a file system.

Run by itself (any folder; as root for ``--drop-caches``)::

    .venv/bin/python benchmarks/dataloader.py FOLDER [--epochs 2] [--workers 4]
                                              [--batch-size 64] [--tensors] [--drop-caches]
                                              [--respawn-workers] [--json OUT]

It lists every file under FOLDER once (outside the timing), starts a
``torch.utils.data.DataLoader`` (4 persistent worker processes, shuffled, batches of 64)
whose dataset opens each file, reads it whole and closes it, and times every epoch
separately. Under an
artifactfs mount it also reads the mount's ``user.artifactfs.stats`` before and after each
epoch and prints the FUSE requests per file. ``benchmarks/peers.py`` (workload 9) imports
this module to run the same epochs against every contender.

Why a DataLoader and not a loop of reads: a training job reads through worker processes in
a shuffled order, and that is what the mount must serve at local-disk speed (issue 16). By
default the dataset returns each file's length, so a batch is 64 integers and the figure is
the file system's, not the cost of moving tensors between processes; ``--tensors`` returns
the bytes as uint8 tensors instead, as a real job would.

torch is imported only when a loader is built, so peers.py runs its other workloads
without it; ``scripts/install-bench-deps.sh`` installs it (the CPU build).
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import json
import multiprocessing
import os
import sys
import time
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

WORKERS = 4
BATCH_SIZE = 64
EPOCHS = 2
SEED = 20261216  # the shuffle's seed, so every contender reads in the same orders
STATS_XATTR = "user.artifactfs.stats"
DROP_CACHES = Path("/proc/sys/vm/drop_caches")


class LoaderError(Exception):
    """A condition the user can fix (no torch, an empty folder, a short read)."""


def import_torch() -> Any:
    """``torch``, or a LoaderError that says how to install it.

    Imported here rather than at the top so that peers.py can import this module (and run
    every other workload) on a machine without torch.
    """
    try:
        import torch
    except ImportError as exc:
        raise LoaderError(
            f"cannot import torch ({exc}): run scripts/install-bench-deps.sh, which installs "
            "torch==2.13.0 (CPU build) into the venv"
        ) from None
    # 4 workers on 2 CPUs is the workload asked for; torch warns about it on every epoch
    warnings.filterwarnings("ignore", message="This DataLoader will create",
                            category=UserWarning)
    return torch


def list_tree(top: Path) -> list[str]:
    """Every regular file under ``top``, sorted: the dataset's index, built once.

    Raises LoaderError when ``top`` is not a folder or holds no file.
    """
    if not top.is_dir():
        raise LoaderError(f"{top} is not a folder")
    found: list[str] = []
    for folder, _dirs, files in os.walk(top):
        found.extend(os.path.join(folder, f) for f in files)
    if not found:
        raise LoaderError(f"{top} holds no file")
    found.sort()
    return found


class FileDataset:
    """A map-style dataset of files: item ``i`` opens file ``i``, reads it whole, closes it.

    It returns the length (``tensors=False``) or the bytes as a uint8 tensor. A plain class
    with ``__len__`` and ``__getitem__`` is all the DataLoader asks of a map-style dataset.
    ``reading`` is a byte in shared memory that the worker processes see change: while it is
    0 an item opens no file and is 0, so the workers can be started, and the loader's own
    cost measured, without touching the files.
    """

    def __init__(self, paths: Sequence[str], *, tensors: bool = False) -> None:
        self.paths = list(paths)
        self.tensors = tensors
        self.reading = multiprocessing.get_context("fork").RawValue("b", 1)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> Any:
        if not self.reading.value:
            return 0
        with open(self.paths[index], "rb", buffering=0) as f:
            data = f.read()
        if not self.tensors:
            return len(data)
        torch = import_torch()
        return torch.frombuffer(bytearray(data), dtype=torch.uint8)


def _as_list(batch: list[Any]) -> list[Any]:
    """Collate tensors of any sizes as a list (stacking needs equal sizes)."""
    return batch


@dataclass
class Epoch:
    """One epoch's figures: every file read once; wall time from ``iter()`` to the last
    batch, and to the first (how long the first batch kept the loop waiting)."""

    epoch: int
    files: int
    bytes: int
    seconds: float
    first_batch_s: float

    @property
    def files_per_s(self) -> float:
        return self.files / self.seconds

    @property
    def mb_per_s(self) -> float:
        return self.bytes / 1e6 / self.seconds


class LoaderRun:
    """A DataLoader over ``paths`` and the epochs run with it.

    The loader is built once and shuffles each epoch with the next draw of one seeded
    generator, so every contender reads the same orders. With ``persistent`` (the default)
    its worker processes are started by ``start()``, in an epoch that opens no file, and
    kept for every epoch after: an epoch's time is then the reads and the batches, not four
    forks, which on a busy 2-CPU machine took from 0.1 to 0.9 s per epoch and would have
    hidden the file system behind them. ``persistent=False`` starts the workers in every
    epoch, as a loop with torch's default ``persistent_workers=False`` does. ``close()``
    stops them.
    """

    def __init__(self, paths: Sequence[str], *, workers: int = WORKERS,
                 batch_size: int = BATCH_SIZE, shuffle: bool = True, tensors: bool = False,
                 persistent: bool = True, seed: int = SEED) -> None:
        torch = import_torch()
        self.dataset = FileDataset(paths, tensors=tensors)
        generator = torch.Generator()
        generator.manual_seed(seed)
        self.loader = torch.utils.data.DataLoader(
            self.dataset, batch_size=batch_size, shuffle=shuffle, num_workers=workers,
            generator=generator, collate_fn=_as_list if tensors else None,
            multiprocessing_context="fork" if workers else None,
            persistent_workers=persistent and workers > 0,
        )
        self.count = 0

    def start(self) -> None:
        """Start the workers (when persistent) in an untimed epoch that opens no file."""
        self._iterate(read=False)

    def close(self) -> None:
        """Stop the persistent workers now rather than when the loader is collected."""
        # torch keeps the persistent workers' iterator in a private attribute; shutting it
        # down is what DataLoader does itself when that iterator is deleted
        found = getattr(self.loader, "_iterator", None)
        if found is not None:
            found._shutdown_workers()
            self.loader._iterator = None

    def _iterate(self, *, read: bool) -> tuple[int, int, float, float]:
        self.dataset.reading.value = int(read)
        files = nbytes = 0
        first = 0.0
        t0 = time.perf_counter()
        for batch in self.loader:
            if not first:
                first = time.perf_counter() - t0
            if isinstance(batch, list):  # collated as a list (tensors)
                files += len(batch)
                nbytes += sum(int(x.numel()) if hasattr(x, "numel") else int(x) for x in batch)
            else:
                files += int(batch.numel())
                nbytes += int(batch.sum())
        return files, nbytes, time.perf_counter() - t0, first

    def epoch(self, expected_bytes: int | None = None, *, read: bool = True) -> Epoch:
        """Read every file once through the loader (none with ``read=False``: the loader's
        own cost); raises LoaderError when an epoch saw too few files or bytes."""
        files, nbytes, seconds, first = self._iterate(read=read)
        number, self.count = self.count, self.count + 1
        if files != len(self.dataset):
            raise LoaderError(f"epoch {number} read {files} files of {len(self.dataset)}")
        if expected_bytes is not None and nbytes != expected_bytes:
            raise LoaderError(f"epoch {number} read {nbytes} bytes, expected {expected_bytes}")
        return Epoch(number, files, nbytes, seconds, first)


# ---- the mount's request counters ------------------------------------------------------------


def mount_root(path: Path) -> Path:
    """The mount point that holds ``path`` (where the stats attribute is)."""
    here = path.absolute()
    while not os.path.ismount(here) and here.parent != here:
        here = here.parent
    return here


def read_stats(root: Path) -> dict[str, Any] | None:
    """The artifactfs daemon's counters at ``root``, or None where there is no such mount."""
    try:
        return dict(json.loads(os.getxattr(root, STATS_XATTR)))
    except OSError as exc:
        if exc.errno in (errno.ENODATA, errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENOENT):
            return None
        raise
    except ValueError:
        return None


def request_counts(before: dict[str, Any], after: dict[str, Any]) -> dict[str, int]:
    """FUSE requests between two stats readings, by kind, with their ``total``.

    Uses the daemon's ``requests`` map (one count per kind of request) when it has one;
    older daemons count only reads, and then only ``read`` is given.
    """
    if isinstance(after.get("requests"), dict):
        old = before.get("requests") or {}
        out = {str(k): int(v) - int(old.get(k, 0)) for k, v in after["requests"].items()}
        out = {k: v for k, v in sorted(out.items()) if v}
    else:
        out = {"read": int(after.get("read_requests", 0)) - int(before.get("read_requests", 0))}
    out["total"] = sum(out.values())
    return out


def per_file(counts: dict[str, int], files: int) -> dict[str, float]:
    """Each count divided by the number of files read, to three decimals."""
    return {k: round(v / files, 3) for k, v in counts.items()} if files else {}


def describe_requests(by_kind: dict[str, float]) -> str:
    """``3.02 (lookup 1.00, read 1.01, ...)`` for a table cell; ``-`` when none."""
    if not by_kind:
        return "-"
    kinds = ", ".join(f"{k} {v:.2f}" for k, v in by_kind.items()
                      if k != "total" and v >= 0.005)  # not the stats reading itself
    return f"{by_kind.get('total', 0):.2f}" + (f" ({kinds})" if kinds else "")


# ---- by itself ------------------------------------------------------------------------------


def drop_page_cache() -> None:
    os.sync()  # drop_caches drops only clean pages
    DROP_CACHES.write_text("3\n")


def page_cache_drops() -> int | None:
    """How many times anyone has written to drop_caches since boot (``drop_pagecache`` of
    /proc/vmstat), or None where the kernel does not say.

    On a machine shared with other benchmarks, a drop by someone else in the middle of a
    warm epoch makes it a partly cold one; comparing this count before and after an epoch
    tells such an epoch from a slow one.
    """
    try:
        with open("/proc/vmstat") as f:
            for line in f:
                if line.startswith("drop_pagecache "):
                    return int(line.split()[1])
    except (OSError, ValueError):
        return None
    return None


def run_epochs(run: LoaderRun, epochs: int, stats_root: Path | None,
               expected: int | None) -> Iterable[dict[str, Any]]:
    """Each epoch's figures, with the requests per file when ``stats_root`` is a mount."""
    for _ in range(epochs):
        before = read_stats(stats_root) if stats_root is not None else None
        epoch = run.epoch(expected)
        out: dict[str, Any] = {**asdict(epoch), "files_per_s": round(epoch.files_per_s, 1),
                               "mb_per_s": round(epoch.mb_per_s, 1)}
        after = read_stats(stats_root) if before is not None and stats_root else None
        if before is not None and after is not None:
            out["requests"] = request_counts(before, after)
            out["requests_per_file"] = per_file(out["requests"], epoch.files)
        yield out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="PyTorch DataLoader epochs over a folder tree.")
    p.add_argument("folder", type=Path, help="the tree to read (every file under it)")
    p.add_argument("--epochs", type=int, default=EPOCHS)
    p.add_argument("--workers", type=int, default=WORKERS)
    p.add_argument("--batch-size", type=int, default=BATCH_SIZE)
    p.add_argument("--no-shuffle", action="store_true", help="read in sorted order")
    p.add_argument("--respawn-workers", action="store_true",
                   help="start the workers in every epoch (torch's default) instead of once, "
                        "before the first")
    p.add_argument("--tensors", action="store_true",
                   help="return uint8 tensors (moved between processes) instead of lengths")
    p.add_argument("--drop-caches", action="store_true",
                   help="drop the page cache after listing, before the first epoch (root)")
    p.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = p.parse_args(argv)
    if min(args.epochs, args.batch_size) < 1 or args.workers < 0:
        p.error("--epochs and --batch-size must be at least 1, --workers at least 0")
    run: LoaderRun | None = None
    try:
        paths = list_tree(args.folder)
        expected = sum(os.stat(x).st_size for x in paths)
        run = LoaderRun(paths, workers=args.workers, batch_size=args.batch_size,
                        shuffle=not args.no_shuffle, tensors=args.tensors,
                        persistent=not args.respawn_workers)
        run.start()
        root = mount_root(args.folder)
        stats_root = root if read_stats(root) is not None else None
        if args.drop_caches:
            try:
                drop_page_cache()
            except OSError as exc:
                raise LoaderError(f"cannot drop the page cache ({exc.strerror}): run as root"
                                  ) from None
        print(f"{len(paths):,} files, {expected / 1e6:,.1f} MB under {args.folder}"
              + (f"; artifactfs mount at {stats_root}" if stats_root else ""))
        found = []
        for out in run_epochs(run, args.epochs, stats_root, expected):
            found.append(out)
            line = (f"epoch {out['epoch']}: {out['files_per_s']:,.0f} files/s, "
                    f"{out['mb_per_s']:,.1f} MB/s ({out['seconds']:.2f} s)")
            if "requests_per_file" in out:
                line += f"; requests per file {describe_requests(out['requests_per_file'])}"
            print(line, flush=True)
    except LoaderError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        if run is not None:
            run.close()
    if args.json is not None:
        with contextlib.suppress(FileExistsError):
            args.json.parent.mkdir(parents=True)
        args.json.write_text(json.dumps({"folder": str(args.folder), "files": len(paths),
                                         "bytes": expected, "epochs": found}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
