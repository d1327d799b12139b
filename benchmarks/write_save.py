"""Writing into an artifactfs mount and saving it, against the embedded store and a server.

Run as root (it mounts FUSE and drops the page cache)::

    .venv/bin/python benchmarks/write_save.py [--size-mib 1024] [--small-count 1000]
                                              [--no-server] [--workdir DIR] [--json OUT] [--keep]

In one run, for each backend (the embedded store, then a real ``artifactfs serve`` on
loopback holding its own store), with a private store, cache, HOME and staging folder in a
temporary work folder, it:

1. writes ``--size-mib`` MiB (1 MiB ``write()`` calls from a pool of pre-generated random
   blocks, then ``fsync``) to a file on the local disk, in the work folder next to the
   staging folder (the baseline), and the same bytes to a new file in a new alias folder of
   the mount (``mkdir MNT/bench/dataset/big:latest``);
2. times ``artifactfs save`` of that new file (hashing, storing the blob, commit);
3. adds ``--small-count`` files of 4 KiB to the same folder and saves them (timed too), then
   changes one of those small files through the mount and times ``artifactfs save`` of a
   version that holds the big file and all the small ones: only the small file's bytes may
   be uploaded;
4. times an ``artifactfs status`` call, the fixed cost of one CLI command, which every save
   row includes.

Bytes uploaded are measured from the store folder's ``blobs/`` (what the store gained), and
the number of blobs from the daemon's log. It prints one table and writes it with machine
information and load averages as JSON. It times; it asserts nothing about times.

Only the standard library is used; the artifactfs package is driven through its CLI. The
safety checks and helpers (preflight, unmounting, page-cache drop, machine information) are
those of read_throughput.py. See benchmarks/README.md for how to read the table.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from read_throughput import (
    _MOUNTED_RE,
    BLOCK,
    PROJECT,
    RESULTS,
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
    log,
    log_problems,
    machine_info,
    mounts_under,
    preflight,
    project_info,
    remove_workdir,
    write_json,
)

SMALL_SIZE = 4 << 10
SMALL_FOLDERS = 10
POOL_BLOCKS = 256  # distinct random 1 MiB blocks the big file is written from, cycled
COLLECTION = "big"
ALIAS = "latest"
SAVE_TIMEOUT = 7200.0
_SAVED_RE = re.compile(r" saved (?P<key>\S+) as (?P<version>\S+) \((?P<blobs>\d+) blobs uploaded\)")
_VERSION_RE = re.compile(rf"^{PROJECT}/{COLLECTION}:(v\d+)$", re.MULTILINE)


# ---- one backend's environment -------------------------------------------------------------


@dataclass
class Side(Workspace):
    """One backend's private folders and environment: store (the server's, for ``server``),
    cache, HOME, staging, mount point, and the local-disk folder of the baseline write."""

    backend: str = "embedded"
    registry_url: str | None = None
    api_key: str | None = None
    pycache: Path | None = None  # a private bytecode cache for every artifactfs process

    @property
    def staging(self) -> Path:
        return self.root / "staging"

    @property
    def local(self) -> Path:
        return self.root / "local"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    def env(self) -> dict[str, str]:
        env = super().env()
        if self.pycache is not None:
            # commands start as they would from an installed package (bytecode compiled
            # once), also where PYTHONDONTWRITEBYTECODE is set; nothing is written to the repo
            env.pop("PYTHONDONTWRITEBYTECODE", None)
            env["PYTHONPYCACHEPREFIX"] = str(self.pycache)
        if self.registry_url:
            env["ARTIFACTFS_REGISTRY"] = self.registry_url
            env["ARTIFACTFS_API_KEY"] = self.api_key or ""
        return env


@dataclass
class StagingMount(Mount):
    """read_throughput's Mount (same careful stop), mounted with ``--staging-dir``."""

    staging_dir: Path | None = None

    def start(self) -> None:
        extra = ["--staging-dir", str(self.staging_dir)] if self.staging_dir else []
        out = self.ws.run("mount", str(self.ws.mnt), *extra, timeout=180)
        m = _MOUNTED_RE.search(out)
        if m is None:
            raise BenchError(f"could not read the daemon pid from 'artifactfs mount': {out!r}")
        self.pid, self.log_file = int(m["pid"]), Path(m["log"].strip())
        if self.log_file not in self.logs:
            self.logs.append(self.log_file)
        self.count += 1


@dataclass
class Server:
    """A real ``artifactfs serve`` on loopback, started and stopped by its own pid."""

    side: Side
    port: int = 0
    log_path: Path | None = None
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, api_key: str) -> None:
        self.port = free_port()
        self.log_path = self.side.logs / "server.log"
        env = {k: v for k, v in self.side.env().items()  # the server is not a client
               if k not in ("ARTIFACTFS_REGISTRY", "ARTIFACTFS_API_KEY")}
        with open(self.log_path, "ab") as out:
            self.proc = subprocess.Popen(
                [str(self.side.cli), "serve", "--store", str(self.side.store),
                 "--host", "127.0.0.1", "--port", str(self.port)],
                env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True,  # a Ctrl-C reaches us, and we stop it in order
            )
        deadline = time.monotonic() + 60
        request = urllib.request.Request(
            f"{self.url}/api/v1/entities/local/projects",
            headers={"Authorization": f"Bearer {api_key}"},
        )
        while True:
            if self.proc.poll() is not None:
                tail = self.log_path.read_text(errors="replace")[-2000:]
                raise BenchError(f"artifactfs serve exited ({self.proc.returncode}): {tail}")
            try:
                with urllib.request.urlopen(request, timeout=2) as answer:
                    if answer.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() > deadline:
                raise BenchError(f"artifactfs serve did not answer on {self.url} within 60 s")
            time.sleep(0.1)

    def stop(self) -> None:
        """SIGTERM to our child's pid, SIGKILL if it hangs; never raises."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                log(f"server {proc.pid} ignored SIGTERM; sending SIGKILL")
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=10)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ---- measuring -----------------------------------------------------------------------------


@dataclass
class Row:
    backend: str
    step: str
    label: str
    bytes: int
    seconds: float
    mb_per_s: float | None = None
    baseline: str | None = None
    ratio: float | None = None
    uploaded_bytes: int | None = None  # what the store's blobs/ folder gained
    uploaded_blobs: int | None = None  # as the daemon logged it
    version: str | None = None


def write_file(path: Path, pool: list[bytes], nblocks: int) -> float:
    """Create ``path`` and write ``nblocks`` 1 MiB blocks, then fsync; seconds, open to close."""
    t0 = time.perf_counter()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        for i in range(nblocks):
            view = memoryview(pool[i % len(pool)])
            while view:
                view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)
    return time.perf_counter() - t0


def write_small(top: Path, count: int) -> tuple[list[str], float]:
    """``count`` new 4 KiB files in 10 folders under ``top`` (no fsync); (paths, seconds)."""
    blobs = [os.urandom(SMALL_SIZE) for _ in range(count)]
    rels = [f"small/d{i % SMALL_FOLDERS:02d}/f{i:05d}.bin" for i in range(count)]
    t0 = time.perf_counter()
    for d in range(min(count, SMALL_FOLDERS)):
        (top / f"small/d{d:02d}").mkdir(parents=True)
    for rel, data in zip(rels, blobs, strict=True):
        with open(top / rel, "xb", buffering=0) as f:
            f.write(data)
    return rels, time.perf_counter() - t0


def modify_one(path: Path) -> float:
    """Overwrite the first 64 bytes of an existing file in place, fsync; seconds."""
    t0 = time.perf_counter()
    with open(path, "r+b", buffering=0) as f:
        f.write(os.urandom(64))
        os.fsync(f.fileno())
    return time.perf_counter() - t0


def blob_usage(store: Path) -> tuple[int, int]:
    """(files, bytes) under ``STORE/blobs``."""
    files = size = 0
    for folder, _, names in os.walk(store / "blobs"):
        for name in names:
            with contextlib.suppress(FileNotFoundError):
                size += os.stat(os.path.join(folder, name)).st_size
                files += 1
    return files, size


def logged_blobs(mount: Mount) -> int | None:
    """Blob count of the last 'saved ... (N blobs uploaded)' line of the daemon's log."""
    if mount.log_file is None:
        return None
    with contextlib.suppress(OSError):
        found = _SAVED_RE.findall(mount.log_file.read_text(errors="replace"))
        if found:
            return int(found[-1][2])
    return None


def timed_save(side: Side, folder: Path, message: str) -> tuple[str, float, int]:
    """``artifactfs save`` end to end; (new version, seconds, bytes the store gained)."""
    os.sync()  # nothing of an earlier step left to write back during the timed save
    _, before = blob_usage(side.store)
    t0 = time.perf_counter()
    out = side.run("save", str(folder), "-m", message, timeout=SAVE_TIMEOUT)
    seconds = time.perf_counter() - t0
    _, after = blob_usage(side.store)
    m = _VERSION_RE.search(out)
    if m is None:
        raise BenchError(f"'artifactfs save' printed {out.strip()!r}, not "
                         f"{PROJECT}/{COLLECTION}:vN")
    return m[1], seconds, after - before


def staged_changes(side: Side, folder: Path) -> dict[str, list[str]]:
    answer = json.loads(side.run("status", str(folder), "--json", timeout=120))
    return {k: answer[k] for k in ("added", "modified", "deleted")}


def rate(nbytes: int, seconds: float) -> float:
    return nbytes / 1e6 / seconds if seconds > 0 else float("inf")


def measure(side: Side, mount: StagingMount, pool: list[bytes], size_mib: int,
            small_count: int) -> list[Row]:
    """Every row of one backend; the mount must not be mounted yet."""
    name = side.backend
    rows: list[Row] = []
    big_bytes = size_mib * BLOCK

    def add(row: Row) -> Row:
        rows.append(row)
        extra = f", {row.mb_per_s:,.1f} MB/s" if row.mb_per_s is not None else ""
        up = (f", uploaded {row.uploaded_bytes / 2**20:,.3f} MiB"
              if row.uploaded_bytes is not None else "")
        log(f"{name}: {row.label}: {row.seconds:.3f} s{extra}{up}")
        return row

    # a seed version, so that PROJECT/TYPE exists in the mount and big:latest can be made
    seed = side.root / "seed"
    seed.mkdir()
    (seed / "README.txt").write_text("seed of the write_save benchmark\n")
    side.run("push", str(seed), f"{PROJECT}/seed", "--type", TYPE, timeout=300)
    mount.start()
    log(f"{name}: mounted {side.mnt} (daemon pid {mount.pid}), staging in {side.staging}")

    # 1. the same bytes to the local disk and into a new alias folder of the mount
    local = side.local / "big.bin"
    drop_page_cache()
    seconds = write_file(local, pool, size_mib)
    base = add(Row(name, "write_local", f"write {size_mib} MiB, local disk", big_bytes,
                   seconds, rate(big_bytes, seconds)))
    local.unlink()
    folder = side.mnt / PROJECT / TYPE / f"{COLLECTION}:{ALIAS}"
    folder.mkdir()  # starts a new collection
    drop_page_cache()
    seconds = write_file(folder / "big.bin", pool, size_mib)
    size = (folder / "big.bin").stat().st_size
    if size != big_bytes:
        raise BenchError(f"the mount shows {size} bytes for big.bin after writing {big_bytes}")
    row = add(Row(name, "write_mount", f"write {size_mib} MiB, into the mount", big_bytes,
                  seconds, rate(big_bytes, seconds), baseline="write_local"))
    row.ratio = row.mb_per_s / base.mb_per_s if row.mb_per_s and base.mb_per_s else None

    # 2. save of the new big file
    version, seconds, gained = timed_save(side, folder, "big file")
    add(Row(name, "save_big", f"save: 1 new {size_mib} MiB file", big_bytes, seconds,
            rate(big_bytes, seconds), uploaded_bytes=gained, uploaded_blobs=logged_blobs(mount),
            version=version))

    # 3. many small files next to it, then one of them changed
    rels, seconds = write_small(folder, small_count)
    small_bytes = small_count * SMALL_SIZE
    add(Row(name, "write_small", f"write {small_count:,} x 4 KiB, into the mount", small_bytes,
            seconds, rate(small_bytes, seconds)))
    version, seconds, gained = timed_save(side, folder, "small files")
    add(Row(name, "save_small", f"save: {small_count:,} new 4 KiB files", small_bytes, seconds,
            rate(small_bytes, seconds), uploaded_bytes=gained,
            uploaded_blobs=logged_blobs(mount), version=version))

    target = rels[0]
    seconds = modify_one(folder / target)
    add(Row(name, "modify_one", "change 1 small file (copy-up, write, fsync)", SMALL_SIZE,
            seconds))
    changes = staged_changes(side, folder)
    if changes != {"added": [], "modified": [target], "deleted": []}:
        raise BenchError(f"expected only {target} modified in {folder}, status says {changes}")
    version, seconds, gained = timed_save(side, folder, "one small file changed")
    add(Row(name, "save_one", f"save: 1 changed file of {small_count + 1:,}", SMALL_SIZE,
            seconds, uploaded_bytes=gained, uploaded_blobs=logged_blobs(mount),
            version=version))
    want = big_bytes + small_bytes
    with contextlib.suppress(OSError, ValueError):
        shown = int(os.getxattr(folder, "user.artifactfs.size"))
        if shown != want:
            raise BenchError(f"{PROJECT}/{COLLECTION}:{version} holds {shown} bytes, not {want}")

    # 4. the fixed cost of one CLI command talking to the daemon (every save row has it)
    t0 = time.perf_counter()
    side.run("status", str(folder), timeout=120)
    add(Row(name, "cli", "artifactfs status (CLI start + round trip)", 0,
            time.perf_counter() - t0))
    return rows


# ---- output --------------------------------------------------------------------------------


def render_table(rows: list[Row]) -> str:
    head = ("backend", "step", "MiB", "seconds", "MB/s", "ratio", "uploaded MiB", "blobs",
            "version")
    body = []
    for r in rows:
        body.append((
            r.backend,
            r.label,
            f"{r.bytes / 2**20:,.3f}" if r.bytes < BLOCK else f"{r.bytes / 2**20:,.1f}",
            f"{r.seconds:.3f}",
            f"{r.mb_per_s:,.1f}" if r.mb_per_s is not None else "-",
            f"{r.ratio:.2f}x" if r.ratio is not None else "-",
            f"{r.uploaded_bytes / 2**20:,.3f}" if r.uploaded_bytes is not None else "-",
            str(r.uploaded_blobs) if r.uploaded_blobs is not None else "-",
            r.version or "-",
        ))
    return aligned_table(head, body, {2, 3, 4, 5, 6, 7}, [r.backend for r in rows])


def load_average() -> dict[str, float]:
    one, five, fifteen = os.getloadavg()
    return {"1m": one, "5m": five, "15m": fifteen}


# ---- main ----------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Write throughput into an artifactfs mount, and the time of saving it.",
    )
    p.add_argument("--size-mib", type=int, default=1024,
                   help="size of the big file in MiB (default 1024)")
    p.add_argument("--small-count", type=int, default=1000,
                   help="4 KiB files added next to the big file (default 1000)")
    p.add_argument("--no-server", action="store_true",
                   help="only the embedded store; skip the run against 'artifactfs serve'")
    add_output_options(p, "write_save", "stores, staging, daemon and server logs")
    args = p.parse_args(argv)
    if args.size_mib < 1 or args.small_count < 1:
        p.error("--size-mib and --small-count must be at least 1")
    return args


def run_backend(side: Side, pool: list[bytes], args: argparse.Namespace,
                problems: list[str]) -> list[Row]:
    for folder in (side.store, side.cache, side.home, side.mnt, side.staging, side.local,
                   side.logs):
        folder.mkdir(parents=True)
    mount = StagingMount(side, staging_dir=side.staging)
    server = Server(side) if side.backend == "server" else None
    failed = True
    try:
        if server is not None:
            key = side.run("key", "create", "local", "--store", str(side.store),
                           timeout=120).strip()
            server.start(key)
            side.registry_url, side.api_key = server.url, key
            log(f"server: artifactfs serve on {server.url} (pid "
                f"{server.proc.pid if server.proc else '?'})")
        rows = measure(side, mount, pool, args.size_mib, args.small_count)
        failed = False
        return rows
    finally:
        mount.stop()
        if server is not None:
            server.stop()
        found = log_problems(mount.logs)
        if server is not None and server.log_path is not None:
            found += log_problems([server.log_path])
        problems.extend(f"{side.backend}: {text}" for text in found)
        if failed and found:
            log(f"{side.backend}: daemon/server log problems:\n" + "\n".join(found[-20:]))
        left = mounts_under(side.root)
        if args.keep:
            pass
        elif left:
            log(f"not removing {side.root}: still mounted at {', '.join(left)}")
        else:
            shutil.rmtree(side.root, ignore_errors=True)  # frees the space for the next one


def run(args: argparse.Namespace) -> int:
    started = datetime.now(UTC)
    stamp = started.strftime("%Y%m%dT%H%M%SZ")
    json_path = (args.json or RESULTS / f"write_save-{stamp}.json").absolute()
    parent = (args.workdir or Path(tempfile.gettempdir())).absolute()
    big = args.size_mib * BLOCK
    # per backend: the staged copy, the stored blob and its temporary copy while it is stored
    preflight(parent, 3 * big + args.small_count * SMALL_SIZE * 3 + (256 << 20))
    cli = artifactfs_cli()
    become_subreaper()

    root = Path(tempfile.mkdtemp(prefix="artifactfs-write-bench-", dir=parent)).resolve()
    info = machine_info(root)
    info["loadavg_start"] = load_average()
    info["pythondontwritebytecode_set"] = bool(os.environ.get("PYTHONDONTWRITEBYTECODE"))
    warnings: list[str] = []
    if info["workdir_fs"] in ("tmpfs", "ramfs"):
        warnings.append(
            f"the work folder is on {info['workdir_fs']}: the local-disk baseline and the "
            "staging folder are memory, not a disk; pass --workdir on a disk-backed file system"
        )
    busy = info["loadavg_start"]["1m"]
    if busy > 0.5 * info["nproc_usable"]:
        warnings.append(
            f"the machine was busy at the start (load {busy:.2f} on {info['nproc_usable']} "
            "CPUs): the times include waiting for the CPU and the disk"
        )
    for w in warnings:
        log(f"warning: {w}")
    log(f"work folder {root} ({info['workdir_fs']}); artifactfs {cli}")
    log(f"generating {min(args.size_mib, POOL_BLOCKS)} random 1 MiB blocks")
    pool = [os.urandom(BLOCK) for _ in range(min(args.size_mib, POOL_BLOCKS))]
    backends = ["embedded"] if args.no_server else ["embedded", "server"]
    cache_size = 2 * big + (1 << 30)
    rows: list[Row] = []
    problems: list[str] = []
    try:
        for backend in backends:
            side = Side(root / backend, cli, cache_size, backend=backend,
                        pycache=root / "pycache")
            rows.extend(run_backend(side, pool, args, problems))
    finally:
        remove_workdir(root, keep=args.keep)
    info["loadavg_end"] = load_average()

    warnings.extend(f"log: {text}" for text in problems)
    table = render_table(rows)
    print(table)
    if problems:
        print(f"\nthe daemons or the server logged {len(problems)} warnings or errors; "
              "see 'warnings' in the JSON")
    result = {
        "benchmark": "write_save",
        "started_utc": started.isoformat(timespec="seconds"),
        "finished_utc": datetime.now(UTC).isoformat(timespec="seconds"),
        "units": {
            "mb_per_s": "10^6 bytes per second (for saves: new bytes / seconds)",
            "ratio": "mount write MB/s / local-disk write MB/s",
            "uploaded_bytes": "bytes the store's blobs/ folder gained during the save",
            "uploaded_blobs": "blob count the mount daemon logged for the save",
        },
        "parameters": {
            "size_mib": args.size_mib, "small_count": args.small_count,
            "small_size": SMALL_SIZE, "write_block": BLOCK, "pool_blocks": len(pool),
            "backends": backends, "workdir": str(root), "kept": bool(args.keep),
            "cache_size": cache_size,
        },
        "machine": info,
        "project": project_info(cli),
        "rows": [asdict(r) for r in rows],
        "table": table.splitlines(),
        "warnings": warnings,
    }
    write_json(json_path, result)
    return 0


def main(argv: list[str] | None = None) -> int:
    return bench_main(parse_args, run, argv)


if __name__ == "__main__":
    sys.exit(main())
