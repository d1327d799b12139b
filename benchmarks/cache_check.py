"""What the disk cache's per-read checksum costs: throughput with and without it, one run.

Every file the disk cache serves is checked against the XXH3-64 it was put with, on every read
(issue 15, item 5). This measures that check where it can cost something: reads served from
the disk cache but not from the page cache. Two layers, each with and without the check, in
rounds that alternate which goes first (so that drift on a shared machine falls on both):

- ``cache``: ``ContentCache.get_many`` in this process over 1 MiB chunk files (runs of 8, as
  ``VerifiedContent.chunks`` asks for them) and over 64 KiB small-file blobs, with the page
  cache dropped (``disk``) and kept (``memory``, where the check is the largest share);
- ``mount``: the daemon reading the same workloads as ``read_throughput.py``'s
  ``mount, disk-cache warm`` row (the cache full, the daemon restarted, the page cache
  dropped), once as installed and once as a daemon started from a wrapper that skips the
  checksum comparison (``_damage`` of ``artifactfs/cache/disk.py``, replaced in that process
  only; the trailer is still read and its magic still compared).

For each it prints MB/s (10^6 bytes per second), the CPU seconds per GiB (of this process for
``cache``, of the daemon for ``mount``), the range over the rounds, and the ratio of the
medians, checked / unchecked. Must run as root (FUSE, drop_caches); everything lives in a
work folder that is removed at the end.

    .venv/bin/python benchmarks/cache_check.py            # 1 GiB + 2,000 x 64 KiB, 3 rounds
    .venv/bin/python benchmarks/cache_check.py --quick    # 256 MiB + 500 x 64 KiB, 2 rounds
    .venv/bin/python benchmarks/cache_check.py --hashes   # only: each candidate's CPU per GiB
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from read_throughput import (
    BLOCK,
    PROJECT,
    SMALL_SIZE,
    TYPE,
    BenchError,
    Mount,
    Workspace,
    add_output_options,
    aligned_table,
    artifactfs_cli,
    become_subreaper,
    bench_main,
    drop_page_cache,
    listing_order,
    log,
    log_problems,
    machine_info,
    make_big,
    make_small,
    preflight,
    project_info,
    push,
    read_all,
    remove_workdir,
)
from server_transfer import cpu_seconds, steal_seconds

from artifactfs.cache import ContentCache
from artifactfs.cache import disk as cache_disk

GIB = 1 << 30
RUN = 8  # chunks per get_many, as VerifiedContent.chunks reads a read-ahead run
VARIANTS = ("checked", "unchecked")

_UNCHECKED_CLI = '''#!{python}
"""artifactfs whose disk cache reads the checksum trailer but does not compare it: the
'unchecked' side of benchmarks/cache_check.py. Never use it for anything else."""
import sys

from artifactfs.cache import disk


def _trailer_only(name, data, tail):
    ok = len(tail) == disk.TRAILER_SIZE and tail[:8] == disk._MAGIC
    return None if ok else "no trailer"


disk._damage = _trailer_only
from artifactfs.cli.main import main  # noqa: E402

sys.exit(main())
'''


def _trailer_only(name: str, data: bytes, tail: bytes) -> str | None:
    """``cache_disk._damage`` without the checksum: what reads cost with no check."""
    ok = len(tail) == cache_disk.TRAILER_SIZE and tail[:8] == cache_disk._MAGIC
    return None if ok else "no trailer"


@contextlib.contextmanager
def unchecked(variant: str) -> Iterator[None]:
    """This process's cache reads without the checksum comparison, when ``variant`` asks."""
    if variant == "checked":
        yield
        return
    real = cache_disk._damage
    cache_disk._damage = _trailer_only
    try:
        yield
    finally:
        cache_disk._damage = real


@dataclass
class Sample:
    layer: str  # "cache" or "mount"
    workload: str
    state: str
    variant: str
    round: int
    bytes: int
    seconds: float
    cpu_seconds: float
    steal_seconds: float | None

    @property
    def mb_per_s(self) -> float:
        return self.bytes / 1e6 / self.seconds

    @property
    def cpu_per_gib(self) -> float:
        return self.cpu_seconds * GIB / self.bytes


def steal_delta(before: float | None) -> float | None:
    after = steal_seconds()
    return None if before is None or after is None else after - before


# ---- the cache, in this process ----------------------------------------------------------


def fill_cache(cache: ContentCache, big_mib: int, small_count: int) -> dict[str, list[str]]:
    """Put ``big_mib`` chunks of 1 MiB and ``small_count`` blobs of 64 KiB; their names."""
    names: dict[str, list[str]] = {"big": [], "small": []}
    for n in range(big_mib):
        names["big"].append(f"{'b' * 32}.c{n}")
        cache.put(names["big"][-1], os.urandom(BLOCK))
    for i in range(small_count):
        names["small"].append(f"{i:032x}")
        cache.put(names["small"][-1], os.urandom(SMALL_SIZE))
    return names


def read_cache(cache: ContentCache, names: list[str], run: int) -> int:
    total = 0
    for i in range(0, len(names), run):
        for data in cache.get_many(names[i : i + run]):
            if data is None:
                raise BenchError("a cache file went missing or failed its check mid-run")
            total += len(data)
    return total


def measure_cache(cache: ContentCache, names: dict[str, list[str]], rounds: int
                  ) -> list[Sample]:
    out: list[Sample] = []
    for r in range(rounds):
        order = VARIANTS if r % 2 == 0 else VARIANTS[::-1]
        for work, run in (("big", RUN), ("small", 1)):
            if not names[work]:
                continue
            for state in ("disk", "memory"):
                for variant in order:
                    if state == "disk":
                        drop_page_cache()
                    else:
                        read_cache(cache, names[work], run)  # into the page cache
                    with unchecked(variant):
                        steal0, cpu0, t0 = steal_seconds(), time.process_time(), \
                            time.perf_counter()
                        nbytes = read_cache(cache, names[work], run)
                        seconds = time.perf_counter() - t0
                        cpu = time.process_time() - cpu0
                    out.append(Sample("cache", work, state, variant, r, nbytes, seconds, cpu,
                                      steal_delta(steal0)))
                    log(f"cache {work} {state} {variant}: {out[-1].mb_per_s:,.0f} MB/s, "
                        f"{out[-1].cpu_per_gib:.3f} CPU-s/GiB")
    return out


# ---- the mount ---------------------------------------------------------------------------


def measure_mount(mounts: dict[str, Mount], workloads: dict[str, tuple[list[Path], int]],
                  rounds: int) -> list[Sample]:
    out: list[Sample] = []
    for r in range(rounds):
        order = VARIANTS if r % 2 == 0 else VARIANTS[::-1]
        for variant in order:
            mount = mounts[variant]
            mount.start()
            try:
                for work, (paths, expected) in workloads.items():
                    drop_page_cache()
                    before = mount.stats()
                    steal0, cpu0 = steal_seconds(), cpu_seconds(mount.pid)
                    nbytes, seconds = read_all(paths, expected)
                    cpu1 = cpu_seconds(mount.pid)
                    after = mount.stats()
                    if after["fetch_bytes"] != before["fetch_bytes"]:
                        raise BenchError(f"the {variant} mount fetched from the store: the "
                                         "disk cache did not hold the whole workload")
                    cpu = (cpu1 - cpu0) if cpu0 is not None and cpu1 is not None else 0.0
                    out.append(Sample("mount", work, "disk-cache warm", variant, r, nbytes,
                                      seconds, cpu, steal_delta(steal0)))
                    log(f"mount {work} {variant}: {out[-1].mb_per_s:,.0f} MB/s, daemon "
                        f"{out[-1].cpu_per_gib:.3f} CPU-s/GiB")
            finally:
                mount.stop()
    return out


# ---- output ------------------------------------------------------------------------------


def summarize(samples: list[Sample]) -> list[dict[str, Any]]:
    """One row per layer, workload and state: each variant's median and range, and the
    ratios of the medians."""
    rows: list[dict[str, Any]] = []
    keys = list(dict.fromkeys((s.layer, s.workload, s.state) for s in samples))
    for layer, work, state in keys:
        row: dict[str, Any] = {"layer": layer, "workload": work, "state": state}
        for variant in VARIANTS:
            got = [s for s in samples if (s.layer, s.workload, s.state, s.variant)
                   == (layer, work, state, variant)]
            mbs = [s.mb_per_s for s in got]
            cpu = [s.cpu_per_gib for s in got]
            row[variant] = {
                "mb_per_s_median": statistics.median(mbs), "mb_per_s_min": min(mbs),
                "mb_per_s_max": max(mbs), "cpu_s_per_gib_median": statistics.median(cpu),
                "cpu_s_per_gib_min": min(cpu), "cpu_s_per_gib_max": max(cpu),
            }
        c, u = row["checked"], row["unchecked"]
        row["throughput_ratio"] = c["mb_per_s_median"] / u["mb_per_s_median"]
        row["cpu_s_per_gib_added"] = c["cpu_s_per_gib_median"] - u["cpu_s_per_gib_median"]
        rows.append(row)
    return rows


def render(rows: list[dict[str, Any]]) -> str:
    head = ("layer", "workload", "state", "checked MB/s (range)", "unchecked MB/s (range)",
            "ratio", "CPU-s/GiB checked", "unchecked", "added")
    body = []
    for r in rows:
        c, u = r["checked"], r["unchecked"]
        body.append((
            r["layer"], r["workload"], r["state"],
            f"{c['mb_per_s_median']:,.0f} ({c['mb_per_s_min']:,.0f}-{c['mb_per_s_max']:,.0f})",
            f"{u['mb_per_s_median']:,.0f} ({u['mb_per_s_min']:,.0f}-{u['mb_per_s_max']:,.0f})",
            f"{r['throughput_ratio']:.3f}x",
            f"{c['cpu_s_per_gib_median']:.3f}", f"{u['cpu_s_per_gib_median']:.3f}",
            f"{r['cpu_s_per_gib_added']:+.3f}",
        ))
    return aligned_table(head, body, {3, 4, 5, 6, 7, 8}, [r["layer"] for r in rows])


# ---- the candidate checksums -------------------------------------------------------------


def hash_candidates() -> dict[str, Callable[[bytes], object]]:
    """The checksums the cache could keep, and the digests it verifies against: those whose
    package is installed here (``pip install google-crc32c crc32c`` in a scratch venv to
    compare with the CRC32C ones)."""
    import hashlib
    import zlib

    import xxhash

    out: dict[str, Callable[[bytes], object]] = {
        "xxh3_64 (xxhash)": xxhash.xxh3_64_intdigest,
        "xxh3_128 (xxhash)": xxhash.xxh3_128_intdigest,
        "xxh64 (xxhash)": xxhash.xxh64_intdigest,
        "crc32 (zlib)": zlib.crc32,
        "sha256 (hashlib)": lambda b: hashlib.sha256(b).digest(),
        "md5 (hashlib)": lambda b: hashlib.md5(b).digest(),
    }
    with contextlib.suppress(ImportError):
        import google_crc32c

        out["crc32c (google-crc32c)"] = google_crc32c.value
    with contextlib.suppress(ImportError):
        import crc32c

        out["crc32c (crc32c)"] = crc32c.crc32c
    return out


def gil_released(func: Callable[[bytes], object], buf: bytes) -> bool:
    """Whether another Python thread runs while ``func`` hashes ``buf`` (256 MiB: tens of
    ms): one that holds the GIL lets it run only just before the call and just after it (a
    switch interval, 5 ms, each), so a tick in the middle third means it was released."""
    stamps: list[float] = []
    stop = threading.Event()

    def spin() -> None:
        while not stop.is_set():
            stamps.append(time.perf_counter())

    spinner = threading.Thread(target=spin)
    spinner.start()
    time.sleep(0.02)
    t0 = time.perf_counter()
    func(buf)
    t1 = time.perf_counter()
    stop.set()
    spinner.join()
    third = (t1 - t0) / 3
    return any(t0 + third < t < t1 - third for t in stamps)


def compare_hashes(repeats: int = 3) -> list[tuple[str, ...]]:
    """CPU ms per GiB of each candidate on 1 MiB and 16 KiB buffers (best of ``repeats``)."""
    big, small, huge = os.urandom(BLOCK), os.urandom(16 << 10), os.urandom(256 << 20)
    rows = []
    for name, func in hash_candidates().items():
        slow = name.startswith(("sha", "md5"))
        per_gib = []
        for buf, count in ((big, 1024), (small, 65536)):
            count //= 8 if slow else 1  # then scaled up: the slow ones would take seconds
            best = float("inf")
            for _ in range(repeats):
                t0 = time.process_time()
                for _ in range(count):
                    func(buf)
                best = min(best, time.process_time() - t0)
            per_gib.append(best * (8 if slow else 1) * 1000)
        rows.append((name, f"{per_gib[0]:,.1f}", f"{per_gib[1]:,.1f}",
                     "yes" if gil_released(func, huge) else "no"))
        log(f"hash {name}: {per_gib[0]:,.1f} ms/GiB on 1 MiB buffers")
    return rows


# ---- the run -----------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size-mib", type=int, default=1024, help="MiB of the big file (1 GiB)")
    p.add_argument("--small-count", type=int, default=2000, help="64 KiB files (2,000)")
    p.add_argument("--rounds", type=int, default=3, help="rounds of each variant (3)")
    p.add_argument("--quick", action="store_true",
                   help="256 MiB, 500 small files, 2 rounds: a first look in a few minutes")
    p.add_argument("--layers", default="cache,mount", help="cache, mount or both (default)")
    p.add_argument("--hashes", action="store_true",
                   help="only compare the candidate checksums' CPU time per GiB, and stop")
    add_output_options(p, "cache_check", "data, store, caches, daemon logs")
    args = p.parse_args(argv)
    if args.quick:
        args.size_mib, args.small_count, args.rounds = 256, 500, 2
    args.layers = {x.strip() for x in args.layers.split(",") if x.strip()}
    if not args.layers or args.layers - {"cache", "mount"}:
        p.error("--layers takes cache, mount or both")
    if args.size_mib <= 0 or args.small_count < 0 or args.rounds < 1:
        p.error("--size-mib and --rounds must be positive, --small-count not negative")
    return args


def run(args: argparse.Namespace) -> int:
    if args.hashes:
        rows = compare_hashes()
        print(aligned_table(("checksum", "CPU ms/GiB, 1 MiB", "CPU ms/GiB, 16 KiB",
                             "GIL released"), rows, {1, 2}, [0] * len(rows)))
        return 0
    started = datetime.now(UTC)
    json_path = (args.json or Path(__file__).resolve().parent / "results" /
                 f"cache_check-{started.strftime('%Y%m%dT%H%M%SZ')}.json").absolute()
    parent = (args.workdir or Path(tempfile.gettempdir())).absolute()
    data_bytes = args.size_mib * BLOCK + args.small_count * SMALL_SIZE
    preflight(parent, 4 * data_bytes + (256 << 20))  # data, store, mount cache, own cache
    cli = artifactfs_cli()
    become_subreaper()
    root = Path(tempfile.mkdtemp(prefix="artifactfs-cache-check-", dir=parent)).resolve()
    info = machine_info(root)
    if info["workdir_fs"] in ("tmpfs", "ramfs"):
        raise BenchError(f"the work folder is on {info['workdir_fs']}: dropping the page cache "
                         "cannot evict it; pass --workdir on a disk-backed file system")
    log(f"work folder {root} ({info['workdir_fs']})")
    unchecked_cli = root / "artifactfs-unchecked"
    unchecked_cli.write_text(_UNCHECKED_CLI.format(python=sys.executable))
    unchecked_cli.chmod(0o755)
    cache_size = 2 * data_bytes + (1 << 30)
    spaces = {"checked": Workspace(root, cli, cache_size),
              "unchecked": Workspace(root, unchecked_cli, cache_size)}
    mounts = {v: Mount(ws) for v, ws in spaces.items()}
    samples: list[Sample] = []
    try:
        if "cache" in args.layers:
            log(f"cache layer: putting {args.size_mib} chunks and {args.small_count} blobs")
            cache = ContentCache(root / "own-cache", max_bytes=cache_size)
            names = fill_cache(cache, args.size_mib, args.small_count)
            samples += measure_cache(cache, names, args.rounds)
            shutil.rmtree(root / "own-cache", ignore_errors=True)
        if "mount" in args.layers:
            samples += mount_layer(args, spaces["checked"], mounts)
    finally:
        for mount in mounts.values():
            mount.stop()
        problems = log_problems([p for m in mounts.values() for p in m.logs])
        remove_workdir(root, keep=args.keep)
    rows = summarize(samples)
    table = render(rows)
    print(table)
    steal = [s.steal_seconds for s in samples if s.steal_seconds is not None]
    if steal:
        print(f"\nsteal time during the timed reads: {sum(steal):.2f} CPU-s in all, "
              f"at most {max(steal):.2f} in one")
    for text in problems:
        print(f"daemon log: {text}")
    result = {
        "benchmark": "cache_check",
        "started_utc": started.isoformat(timespec="seconds"),
        "finished_utc": datetime.now(UTC).isoformat(timespec="seconds"),
        "parameters": {"size_mib": args.size_mib, "small_count": args.small_count,
                       "rounds": args.rounds, "layers": sorted(args.layers), "run": RUN},
        "machine": info,
        "project": project_info(cli),
        "rows": rows,
        "samples": [{**asdict(s), "mb_per_s": s.mb_per_s, "cpu_s_per_gib": s.cpu_per_gib}
                    for s in samples],
        "table": table.splitlines(),
        "daemon_warnings": problems,
    }
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwrote {json_path}")
    return 0


def mount_layer(args: argparse.Namespace, ws: Workspace, mounts: dict[str, Mount]
                ) -> list[Sample]:
    """Push the workloads, fill the mount's disk cache with one cold read, then measure."""
    for folder in (ws.data, ws.store, ws.cache, ws.home, ws.mnt):
        folder.mkdir(parents=True, exist_ok=True)
    log(f"mount layer: writing and pushing {args.size_mib} MiB and {args.small_count} files")
    make_big(ws.data / "big.bin", args.size_mib)
    big_folder, _ = push(ws, ws.data / "big.bin", "big")
    small_folder = ""
    if args.small_count:
        make_small(ws.data / "small", args.small_count)
        small_folder, _ = push(ws, ws.data / "small", "small")
    base = ws.mnt / PROJECT / TYPE
    first = mounts["checked"]
    first.start()
    try:
        workloads: dict[str, tuple[list[Path], int]] = {
            "big": ([base / big_folder / "big.bin"], args.size_mib * BLOCK)}
        if small_folder:
            workloads["small"] = (listing_order(base / small_folder),
                                  args.small_count * SMALL_SIZE)
        for paths, expected in workloads.values():  # cold: fills the disk cache
            read_all(paths, expected)
    finally:
        first.stop()
    return measure_mount(mounts, workloads, args.rounds)


def main(argv: list[str] | None = None) -> int:
    return bench_main(parse_args, run, argv)


if __name__ == "__main__":
    sys.exit(main())
