"""An ImageNet-sized version: how commit, mount, listing, reads and memory grow with entries.

Run as root (it mounts FUSE and drops the page cache)::

    .venv/bin/python benchmarks/imagenet_scale.py                    # 100,000 and 1,281,167
    .venv/bin/python benchmarks/imagenet_scale.py --sizes 20000 --no-local   # a quick look

For each size N it makes a version shaped like ImageNet's train split: N files of 1 KiB in
folders of about 1,281 (1,000 folders at full size, names like ``n01440764``, files like
``n01440764_10026.JPEG``), whose entries point at 1,000 distinct blobs, so the stores stay
small while the manifest is full size (120 MB of JSON at 1,281,167 entries, past the
server's 64 MiB JSON body: it is committed by reference, see docs/api.md). The manifest is
built in Python; everything after that goes through the real code paths:

- **commit, embedded**: ``LocalRegistry.commit`` into a fresh store folder (the blobs uploaded
  first, untimed);
- **commit, server**: ``HttpRegistry.commit`` against ``artifactfs serve`` on its own store;
- then, on each store (``embedded``, ``server``), from a dropped page cache: ``artifactfs
  mount`` until the mount answers; the first ``ls`` of the version folder (which fetches
  its root folder's listing, not the manifest: see core/folders.py); the first read of one
  file in a folder never listed, page cache dropped again; the first ``find | wc -l`` of
  the version, page cache dropped again; the mount daemon's peak memory (VmHWM), and the
  server's;
- for reference, the same tree as real 1 KiB files on the work folder's own file system
  (ext4 here), with the same three steps from a dropped page cache (``--no-local`` skips it;
  it needs about 5 GB at full size, and is removed straight after).

It prints a table of each figure at each size with the growth from the smallest to the
largest size (against the growth of the entries themselves: more than a tenth faster is
called super-linear), then
the targets of issue 16 with PASS/MISS at each size, and writes both as JSON under
``benchmarks/results/``. It asserts nothing. Processes are stopped by their pid, mounts are
always unmounted in ``finally``, and the work folder is removed unless ``--keep``.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import os
import random
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from peers import AfsMount, vm_hwm
from read_throughput import (
    PROJECT,
    RESULTS,
    TYPE,
    BenchError,
    add_output_options,
    aligned_table,
    artifactfs_cli,
    become_subreaper,
    bench_main,
    drop_page_cache,
    log,
    log_problems,
    machine_info,
    preflight,
    project_info,
    remove_workdir,
    write_json,
)
from server_transfer import EMBEDDED, ENTITY, SERVER, Client, Server

IMAGENET_FILES = 1_281_167
IMAGENET_FOLDERS = 1_000
DEFAULT_SIZES = (100_000, IMAGENET_FILES)
FILE_SIZE = 1024
BLOBS = 1000
NAME = "imagenet"
# an ext4 file of 1 KiB takes a 4 KiB block and an inode (256 bytes)
LOCAL_BYTES_PER_FILE = 4096 + 256

TARGET_LS_S = 1.0
TARGET_READ_S = 0.050
TARGET_FIND_RATIO = 2.0
TARGET_RSS = 1 << 30
# a figure that grew by more than the entries did, times this, is called super-linear: a
# tenth for the noise of one run on a shared machine
LINEAR_SLACK = 1.1


# ---- the version ----------------------------------------------------------------------------


def folder_names(count: int) -> list[str]:
    """``count`` synset-like folder names (``n`` and eight digits), sorted, the same each run."""
    rng = random.Random(1281167)
    return sorted(f"n{n:08d}" for n in rng.sample(range(1_000_000, 15_000_000), count))


def tree_paths(entries: int) -> list[str]:
    """ImageNet's shape at ``entries`` files: folders of about 1,281 files, names like
    ``n01440764/n01440764_10026.JPEG``."""
    folders = folder_names(max(1, round(entries * IMAGENET_FOLDERS / IMAGENET_FILES)))
    per, extra = divmod(entries, len(folders))
    rng = random.Random(entries)
    paths: list[str] = []
    for i, folder in enumerate(folders):
        count = per + (1 if i < extra else 0)
        for n in sorted(rng.sample(range(1, 60_000), count)):
            paths.append(f"{folder}/{folder}_{n}.JPEG")
    return paths


def blob_bytes() -> list[bytes]:
    rng = random.Random(1000)
    return [rng.randbytes(FILE_SIZE) for _ in range(BLOBS)]


def build_manifest(paths: list[str], blobs: list[bytes]) -> Any:
    from artifactfs.core.digests import md5_b64
    from artifactfs.core.manifest import Manifest, ManifestEntry

    digests = [md5_b64(b) for b in blobs]
    return Manifest(ManifestEntry(p, digests[i % BLOBS], FILE_SIZE) for i, p in enumerate(paths))


def write_blob_files(folder: Path, blobs: list[bytes]) -> list[tuple[Path, str]]:
    from artifactfs.core.digests import md5_b64

    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i, data in enumerate(blobs):
        path = folder / f"blob{i:04d}"
        path.write_bytes(data)
        out.append((path, md5_b64(data)))
    return out


def write_local_tree(top: Path, paths: list[str], blobs: list[bytes]) -> float:
    """The version as real files on the work folder's file system; seconds it took."""
    t0 = time.perf_counter()
    made: set[str] = set()
    for i, rel in enumerate(paths):
        folder = rel.partition("/")[0]
        if folder not in made:
            (top / folder).mkdir(parents=True, exist_ok=True)
            made.add(folder)
        fd = os.open(top / rel, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            os.write(fd, blobs[i % BLOBS])
        finally:
            os.close(fd)
    os.sync()
    return time.perf_counter() - t0


# ---- the steps timed --------------------------------------------------------------------------


def timed_run(cmd: list[str] | str, *, shell: bool = False, timeout: float = 3600) -> tuple[
        float, str]:
    t0 = time.perf_counter()
    done = subprocess.run(cmd, shell=shell, capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)
    took = time.perf_counter() - t0
    if done.returncode != 0:
        raise BenchError(f"{cmd!r} failed ({done.returncode}): {done.stderr.strip()[-500:]}")
    return took, done.stdout


def first_ls(top: Path) -> tuple[float, int]:
    took, out = timed_run(["ls", str(top)])
    return took, len(out.split())


def first_read(path: Path) -> float:
    t0 = time.perf_counter()
    with open(path, "rb") as f:
        data = f.read()
    took = time.perf_counter() - t0
    if len(data) != FILE_SIZE:
        raise BenchError(f"{path} read {len(data)} bytes, not {FILE_SIZE}")
    return took


def first_find(top: Path) -> tuple[float, int]:
    took, out = timed_run(f"find {shlex.quote(str(top))} | wc -l", shell=True)
    return took, int(out.strip())


def tree_steps(top: Path, unlisted: str, expect_names: int, expect_found: int) -> dict[str, Any]:
    """ls of the root, read of a file in a folder never listed, find: each from a dropped
    page cache, in that order (the read comes before find, which lists every folder)."""
    drop_page_cache()
    ls_s, names = first_ls(top)
    if names != expect_names:
        raise BenchError(f"ls {top} showed {names} names, not {expect_names}")
    drop_page_cache()
    read_s = first_read(top / unlisted)
    drop_page_cache()
    find_s, found = first_find(top)
    if found != expect_found:
        raise BenchError(f"find {top} found {found} paths, not {expect_found}")
    return {"ls_root_s": ls_s, "first_read_s": read_s, "find_s": find_s, "find_count": found}


# ---- one size -------------------------------------------------------------------------------


def upload_and_commit(registry: Any, sources: list[tuple[Path, str]],
                      manifest: Any) -> tuple[Any, float]:
    """Upload the blobs (untimed), then commit the manifest: the version and the seconds
    the commit took."""
    for path, digest in sources:
        registry.upload_blob(path, digest)
    gc.collect()
    t0 = time.perf_counter()
    info = registry.commit(entity=ENTITY, project=PROJECT, name=NAME, type_=TYPE,
                           manifest=manifest)
    return info, time.perf_counter() - t0


def run_size(root: Path, cli: Path, entries: int, args: argparse.Namespace,
             logs: list[Path]) -> dict[str, Any]:
    from artifactfs.registry import LocalRegistry
    from artifactfs.registry.http import HttpRegistry
    from artifactfs.store import Store

    root.mkdir(parents=True)
    out: dict[str, Any] = {"entries": entries}
    paths = tree_paths(entries)
    folders = sorted({p.partition("/")[0] for p in paths})
    out["folders"] = len(folders)
    # a file in the last folder, which nothing lists before it is read
    unlisted = next(p for p in reversed(paths) if p.startswith(folders[-1] + "/"))
    blobs = blob_bytes()
    sources = write_blob_files(root / "blob-sources", blobs)
    t0 = time.perf_counter()
    manifest = build_manifest(paths, blobs)
    out["manifest_build_s"] = time.perf_counter() - t0
    out["manifest_json_bytes"] = len(manifest.to_json())
    log(f"{entries} entries in {len(folders)} folders; manifest {out['manifest_json_bytes']:,}"
        " bytes of JSON")

    embedded = Client(root, cli, args.cache_size, transport=EMBEDDED)
    local = LocalRegistry(Store(embedded.store))
    try:
        info, out["commit_embedded_s"] = upload_and_commit(local, sources, manifest)
    finally:
        local.close()
    log(f"embedded commit {info.qualified_name}: {out['commit_embedded_s']:.2f} s")

    server = Server(root, cli)
    key = server.create_key()
    server.start(key)
    logs.append(server.log_path)
    try:
        out["server_rss_idle"] = vm_hwm(server.pid)
        remote = HttpRegistry(server.url, key)
        try:
            info, out["commit_server_s"] = upload_and_commit(remote, sources, manifest)
        finally:
            remote.close()
        out["server_rss_after_commit"] = vm_hwm(server.pid)
        log(f"server commit {info.qualified_name}: {out['commit_server_s']:.2f} s, server "
            f"VmHWM {out['server_rss_after_commit'] / 2**20:.0f} MiB")
        del manifest
        gc.collect()

        version = f"{NAME}:{info.version}"
        # version root: ls shows the folders; find shows the root, folders and files
        expect = (len(folders), 1 + len(folders) + entries)
        server_client = Client(root, cli, args.cache_size, transport=SERVER,
                               registry_url=server.url, api_key=key)
        for client in (embedded, server_client):
            if client.transport not in args.transports:
                continue
            client.mnt.mkdir(parents=True, exist_ok=True)
            mount = AfsMount(client, extra_args=args.mount_args)
            try:
                drop_page_cache()
                mount.start()
                logs.extend(p for p in mount.logs if p not in logs)
                top = client.mnt / PROJECT / TYPE / version
                steps = tree_steps(top, unlisted, *expect)
                steps["mount_s"] = mount.mount_times[-1]["answers_s"]
                steps["daemon_rss"] = vm_hwm(mount.pid)
            finally:
                mount.stop()
            out[client.transport] = steps
            log(f"{client.transport} mount: {_fmt_steps(steps)}")
        out["server_rss"] = vm_hwm(server.pid)
    finally:
        server.stop()

    if not args.no_local:
        local_top = root / "local-tree"
        need = entries * LOCAL_BYTES_PER_FILE + (1 << 30)
        if shutil.disk_usage(root).free < need:
            raise BenchError(f"{root} has too little space for the local tree "
                             f"({need / 2**30:.1f} GiB); pass --no-local")
        try:
            write_s = write_local_tree(local_top, paths, blobs)
            log(f"local tree of {entries} files written in {write_s:.0f} s")
            steps = tree_steps(local_top, unlisted, *expect)
            steps["write_s"] = write_s
            out["local"] = steps
            log(f"local ext4: {_fmt_steps(steps)}")
        finally:
            t0 = time.perf_counter()
            shutil.rmtree(local_top, ignore_errors=True)
            log(f"local tree removed in {time.perf_counter() - t0:.0f} s")
    shutil.rmtree(root / "blob-sources", ignore_errors=True)
    return out


def _fmt_steps(steps: dict[str, Any]) -> str:
    parts = [f"{k} {v:.3f}" for k, v in steps.items() if k.endswith("_s")]
    if steps.get("daemon_rss"):
        parts.append(f"VmHWM {steps['daemon_rss'] / 2**20:.0f} MiB")
    return ", ".join(parts)


# ---- the report ---------------------------------------------------------------------------


# (label, how to find it in a size's results, unit)
FIGURES: list[tuple[str, tuple[str, ...], str]] = [
    ("commit, embedded", ("commit_embedded_s",), "s"),
    ("commit, server", ("commit_server_s",), "s"),
    ("server VmHWM after commit", ("server_rss_after_commit",), "MiB"),
    ("server VmHWM at the end", ("server_rss",), "MiB"),
]
for _t in (EMBEDDED, SERVER, "local"):
    _where = "local ext4" if _t == "local" else f"mount on {_t}"
    if _t != "local":
        FIGURES.append((f"{_where}: mount until it answers", (_t, "mount_s"), "s"))
    FIGURES += [
        (f"{_where}: first ls of the version", (_t, "ls_root_s"), "s"),
        (f"{_where}: first read, unlisted folder", (_t, "first_read_s"), "ms"),
        (f"{_where}: first find | wc -l", (_t, "find_s"), "s"),
    ]
    if _t != "local":
        FIGURES.append((f"{_where}: daemon VmHWM", (_t, "daemon_rss"), "MiB"))


def _get(result: dict[str, Any], where: tuple[str, ...]) -> float | None:
    value: Any = result
    for k in where:
        if not isinstance(value, dict) or k not in value:
            return None
        value = value[k]
    return float(value) if value is not None else None


def _show(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if unit == "MiB":
        return f"{value / 2**20:,.0f} MiB"
    if unit == "ms":
        return f"{value * 1000:,.1f} ms"
    return f"{value:,.3f} s" if value < 10 else f"{value:,.1f} s"


def figures_table(results: list[dict[str, Any]]) -> tuple[str, list[dict[str, Any]]]:
    sizes = [r["entries"] for r in results]
    entry_growth = sizes[-1] / sizes[0] if len(sizes) > 1 else None
    head = ("figure", *(f"{n:,} entries" for n in sizes), "growth", "")
    body, rows = [], []
    for label, where, unit in FIGURES:
        values = [_get(r, where) for r in results]
        if all(v is None for v in values):
            continue
        growth = (values[-1] / values[0]
                  if entry_growth and values[0] and values[-1] is not None else None)
        verdict = ""
        if growth is not None and entry_growth is not None:
            verdict = "super-linear" if growth > entry_growth * LINEAR_SLACK else ""
        body.append((label, *(_show(v, unit) for v in values),
                     f"{growth:.1f}x" if growth is not None else "-", verdict))
        rows.append({"figure": label, "values": values, "unit": unit, "growth": growth,
                     "super_linear": verdict == "super-linear"})
    if entry_growth:
        body.append(("entries", *(f"{n:,}" for n in sizes), f"{entry_growth:.1f}x", ""))
    return aligned_table(head, body, set(range(1, len(head) - 1)), [0] * len(body)), rows


def targets_table(results: list[dict[str, Any]]) -> tuple[str, list[dict[str, Any]]]:
    head = ("target", "mount on", *(f"{r['entries']:,}" for r in results))
    body, rows = [], []

    def verdict(value: float | None, ok: bool, shown: str) -> str:
        return "-" if value is None else f"{shown} {'PASS' if ok else 'MISS'}"

    for transport in (EMBEDDED, SERVER):
        checks = []
        for r in results:
            steps = r.get(transport)
            local = r.get("local")
            if steps is None:
                checks.append(None)
                continue
            ratio = steps["find_s"] / local["find_s"] if local else None
            checks.append({
                "ls": (steps["ls_root_s"], steps["ls_root_s"] < TARGET_LS_S),
                "read": (steps["first_read_s"], steps["first_read_s"] < TARGET_READ_S),
                "find": (ratio, ratio is not None and ratio <= TARGET_FIND_RATIO),
                "rss": (steps["daemon_rss"], steps["daemon_rss"] < TARGET_RSS),
            })
        for key, label, fmt in (
            ("ls", "first ls of the root < 1 s", lambda v: f"{v:.2f} s"),
            ("read", "first read < 50 ms", lambda v: f"{v * 1000:.1f} ms"),
            ("find", "find <= 2x local ext4", lambda v: f"{v:.2f}x"),
            ("rss", "daemon VmHWM < 1 GiB", lambda v: f"{v / 2**20:.0f} MiB"),
        ):
            cells = []
            for c in checks:
                if c is None or c[key][0] is None:
                    cells.append("-")
                else:
                    value, ok = c[key]
                    cells.append(verdict(value, ok, fmt(value)))
                    rows.append({"target": label, "transport": transport,
                                 "value": value, "pass": ok})
            body.append((label, transport, *cells))
    groups: list[object] = [b[1] for b in body]
    return aligned_table(head, body, set(range(2, len(head))), groups), rows


# ---- main -----------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="An ImageNet-sized version through artifactfs.")
    p.add_argument("--sizes", default=",".join(map(str, DEFAULT_SIZES)),
                   help="entry counts, comma-separated, smallest first (default "
                        "100000,1281167)")
    p.add_argument("--transports", default=f"{EMBEDDED},{SERVER}",
                   help="mounts to measure: embedded, server or both (default both)")
    p.add_argument("--no-local", action="store_true",
                   help="skip the local ext4 reference tree (5 GB at full size)")
    p.add_argument("--mount-arg", dest="mount_args", action="append", default=[],
                   help="an extra option for 'artifactfs mount' (repeatable)")
    p.add_argument("--cache-size", type=int, default=1 << 30, help=argparse.SUPPRESS)
    add_output_options(p, "imagenet_scale", "stores, daemon and server logs")
    args = p.parse_args(argv)
    try:
        args.sizes = sorted(int(s) for s in args.sizes.split(","))
    except ValueError:
        p.error("--sizes must be whole numbers separated by commas")
    if not args.sizes or args.sizes[0] < 1:
        p.error("--sizes must be positive")
    args.transports = set(args.transports.split(","))
    if not args.transports <= {EMBEDDED, SERVER}:
        p.error("--transports takes embedded, server or both")
    return args


@contextlib.contextmanager
def work_folder(args: argparse.Namespace) -> Iterator[Path]:
    parent = args.workdir or Path(tempfile.gettempdir())
    root = Path(tempfile.mkdtemp(prefix="afs-imagenet-", dir=parent))
    try:
        yield root
    finally:
        remove_workdir(root, keep=args.keep)


def run(args: argparse.Namespace) -> int:
    started = datetime.now(UTC)
    cli = artifactfs_cli()
    parent = args.workdir or Path(tempfile.gettempdir())
    need = 0 if args.no_local else max(args.sizes) * LOCAL_BYTES_PER_FILE
    preflight(parent, need + (2 << 30))
    become_subreaper()
    results: list[dict[str, Any]] = []
    logs: list[Path] = []
    with work_folder(args) as root:
        info = machine_info(root)
        for entries in args.sizes:
            results.append(run_size(root / f"n{entries}", cli, entries, args, logs))
        problems = log_problems(logs)
    figures, figure_rows = figures_table(results)
    targets, target_rows = targets_table(results)
    print(figures)
    print()
    print(targets)
    stamp = started.strftime("%Y%m%dT%H%M%SZ")
    result = {
        "benchmark": "imagenet_scale",
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "started_utc": started.isoformat(timespec="seconds"),
        "finished_utc": datetime.now(UTC).isoformat(timespec="seconds"),
        "parameters": {"sizes": args.sizes, "file_size": FILE_SIZE, "blobs": BLOBS,
                       "transports": sorted(args.transports), "local": not args.no_local,
                       "mount_args": args.mount_args},
        "machine": info,
        "project": project_info(cli),
        "results": results,
        "figures": figure_rows,
        "targets": target_rows,
        "table": [*figures.splitlines(), "", *targets.splitlines()],
        "warnings": problems,
    }
    write_json(args.json or RESULTS / f"imagenet_scale-{stamp}.json", result)
    return 0


def main(argv: list[str] | None = None) -> int:
    return bench_main(parse_args, run, argv)


if __name__ == "__main__":
    sys.exit(main())
