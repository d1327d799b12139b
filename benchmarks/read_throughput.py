"""Sequential read throughput of an artifactfs mount against reading the store's blobs directly.

Run as root (it mounts FUSE and drops the page cache)::

    .venv/bin/python benchmarks/read_throughput.py [--size-mib 1024] [--small-count 2000]
                                                   [--workdir DIR] [--json OUT] [--keep]

In one run it builds random data in a temporary work folder, pushes it into a private
embedded store with the ``artifactfs`` CLI, mounts that store, and reads:

- ``big``: one file of ``--size-mib`` MiB,
- ``small``: ``--small-count`` files of 64 KiB in 20 folders, in the order the mount lists them,

each in five states: through the mount cold (artifactfs cache emptied, page cache dropped),
disk-cache warm (artifactfs cache full, daemon restarted, page cache dropped) and page-cache
warm (read again right after a read); and straight from ``STORE/blobs/..`` with the page cache
dropped and warm, as the baseline. Reads use 1 MiB blocks and discard the data. It prints one
table and writes it with machine information as JSON. It times; it asserts nothing about times.

Only the standard library is used; the artifactfs package is driven through its CLI.
See benchmarks/README.md for how to read the table.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import hashlib
import json
import mmap
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

BLOCK = 1 << 20  # read size, and the size of the blocks the big file is written in
SMALL_SIZE = 64 << 10
SMALL_FOLDERS = 20
PROJECT = "bench"
TYPE = "dataset"
STATS_XATTR = "user.artifactfs.stats"
DROP_CACHES = Path("/proc/sys/vm/drop_caches")
RESULTS = Path(__file__).resolve().parent / "results"

# state key -> (label, baseline key or None)
STATES: dict[str, tuple[str, str | None]] = {
    "cold": ("mount, cold", "store_dropped"),
    "disk_warm": ("mount, disk-cache warm", "store_dropped"),
    "page_warm": ("mount, page-cache warm", "store_warm"),
    "store_dropped": ("store folder, dropped", None),
    "store_warm": ("store folder, warm", None),
}


class BenchError(Exception):
    """A condition the user can fix; reported as one line, without a traceback."""


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# ---- preflight -----------------------------------------------------------------------------


def artifactfs_cli() -> Path:
    """The ``artifactfs`` next to this interpreter (the venv's), else the one on PATH."""
    beside = Path(sys.executable).parent / "artifactfs"
    if beside.is_file() and os.access(beside, os.X_OK):
        return beside
    found = shutil.which("artifactfs")
    if found is None:
        raise BenchError(
            f"no artifactfs command next to {sys.executable} or on PATH; run this with the "
            "project's venv (.venv/bin/python benchmarks/read_throughput.py) after 'make venv'"
        )
    return Path(found)


def preflight(workdir_parent: Path, need_bytes: int) -> None:
    if os.geteuid() != 0:
        raise BenchError(
            "must run as root: it mounts FUSE and writes /proc/sys/vm/drop_caches "
            "(try: sudo .venv/bin/python benchmarks/read_throughput.py)"
        )
    if not Path("/dev/fuse").exists():
        raise BenchError(
            "/dev/fuse is missing: load the fuse module (modprobe fuse) or, in a container, "
            "pass the device through (--device /dev/fuse --cap-add SYS_ADMIN)"
        )
    if shutil.which("fusermount3") is None:
        raise BenchError("fusermount3 is not installed (apt-get install fuse3)")
    try:
        drop_page_cache()
    except OSError as exc:
        raise BenchError(
            f"cannot drop the page cache ({DROP_CACHES}: {exc.strerror}); cold states "
            "would be meaningless"
        ) from None
    if not workdir_parent.is_dir():
        raise BenchError(f"--workdir {workdir_parent} is not a folder")
    free = shutil.disk_usage(workdir_parent).free
    if free < need_bytes:
        raise BenchError(
            f"{workdir_parent} has {free / 2**30:.1f} GiB free; this run needs about "
            f"{need_bytes / 2**30:.1f} GiB (source data, store and cache); pass a smaller "
            "--size-mib or another --workdir"
        )


def drop_page_cache() -> None:
    os.sync()  # drop_caches only drops clean pages
    DROP_CACHES.write_text("3\n")


def become_subreaper() -> None:
    """Adopt the mount daemons (grandchildren) so they can be reaped, not left as zombies."""
    with contextlib.suppress(Exception):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER


# ---- machine information -------------------------------------------------------------------


def fs_type(path: Path) -> str:
    """File-system type of the mount holding ``path`` (longest matching mount point)."""
    target, best, kind = str(path.resolve()), -1, "unknown"
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            point = fields[4].replace("\\040", " ")
            inside = target == point or target.startswith(point.rstrip("/") + "/")
            if inside and len(point) >= best:
                best, kind = len(point), fields[fields.index("-") + 1]
    return kind


def machine_info(workdir: Path) -> dict[str, Any]:
    mem_total = None
    with contextlib.suppress(OSError), open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                mem_total = int(line.split()[1]) * 1024
    cpu_model = None
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    return {
        "nproc": os.cpu_count(),
        "nproc_usable": len(os.sched_getaffinity(0)),
        "cpu_model": cpu_model,
        "memory_bytes": mem_total,
        "memory_gib": round(mem_total / 2**30, 1) if mem_total else None,
        "kernel": platform.release(),
        "machine": platform.machine(),
        "python": platform.python_version(),
        "python_executable": sys.executable,
        "workdir_fs": fs_type(workdir),
    }


def project_info(cli: Path) -> dict[str, Any]:
    root = Path(__file__).resolve().parent.parent
    out: dict[str, Any] = {}
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out["artifactfs_version"] = subprocess.run(
            [str(cli), "--version"], capture_output=True, text=True, timeout=60
        ).stdout.strip()
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        head = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
            timeout=30,
        )
        if head.returncode == 0:
            out["git_commit"] = head.stdout.strip()
            dirty = subprocess.run(
                ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                capture_output=True, text=True, timeout=30,
            )
            out["git_dirty"] = bool(dirty.stdout.strip())
    return out


# ---- the environment of one run ------------------------------------------------------------


@dataclass
class Workspace:
    root: Path
    cli: Path
    cache_size: int

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def store(self) -> Path:
        return self.root / "store"

    @property
    def cache(self) -> Path:
        return self.root / "cache"

    @property
    def home(self) -> Path:
        return self.root / "home"

    @property
    def mnt(self) -> Path:
        return self.root / "mnt"

    def env(self) -> dict[str, str]:
        """A private embedded store, cache and home for every artifactfs subprocess."""
        env = {
            k: v for k, v in os.environ.items()
            if not k.startswith(("ARTIFACTFS_", "XDG_"))
        }
        env.update(
            ARTIFACTFS_STORE=str(self.store),
            ARTIFACTFS_CACHE_DIR=str(self.cache),
            ARTIFACTFS_CACHE_SIZE=f"{self.cache_size >> 20}M",
            HOME=str(self.home),
        )
        return env

    def run(self, *args: str, timeout: float) -> str:
        cmd = [str(self.cli), *args]
        try:
            done = subprocess.run(
                cmd, env=self.env(), capture_output=True, text=True, timeout=timeout,
                stdin=subprocess.DEVNULL,
            )
        except subprocess.TimeoutExpired:
            raise BenchError(f"'artifactfs {' '.join(args)}' took over {timeout:.0f} s") from None
        if done.returncode != 0:
            detail = (done.stderr or done.stdout).strip()
            raise BenchError(f"'artifactfs {' '.join(args)}' failed ({done.returncode}): {detail}")
        return done.stdout


# ---- the mount -----------------------------------------------------------------------------


_MOUNTED_RE = re.compile(r"mounted (?P<mnt>.+) \(pid (?P<pid>\d+)\); log: (?P<log>.+)")


@dataclass
class Mount:
    ws: Workspace
    pid: int | None = None
    log_file: Path | None = None
    logs: list[Path] = field(default_factory=list)
    count: int = 0
    options: tuple[str, ...] = ()  # more ``artifactfs mount`` options (``--read-only``)

    def start(self) -> None:
        out = self.ws.run("mount", str(self.ws.mnt), *self.options, timeout=180)
        m = _MOUNTED_RE.search(out)
        if m is None:
            raise BenchError(f"could not read the daemon pid from 'artifactfs mount': {out!r}")
        self.pid, self.log_file = int(m["pid"]), Path(m["log"].strip())
        if self.log_file not in self.logs:
            self.logs.append(self.log_file)
        self.count += 1

    def stop(self) -> None:
        """Unmount and make sure the daemon is gone; never raises, never kills by name."""
        mnt = self.ws.mnt
        if is_mounted(mnt):
            try:
                subprocess.run(
                    [str(self.ws.cli), "umount", str(mnt)], env=self.ws.env(),
                    capture_output=True, text=True, timeout=60,
                )
            except (OSError, subprocess.SubprocessError) as exc:
                log(f"artifactfs umount failed: {exc}")
        pid, self.pid = self.pid, None
        if pid is not None and not wait_gone(pid, 15.0) and is_our_daemon(pid, mnt):
            log(f"mount daemon {pid} still running after umount; sending SIGTERM")
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
            if not wait_gone(pid, 15.0):
                log(f"mount daemon {pid} ignored SIGTERM; leaving it (pid {pid})")
        if is_mounted(mnt):
            with contextlib.suppress(OSError, subprocess.SubprocessError):
                subprocess.run(
                    ["fusermount3", "-uz", str(mnt)], capture_output=True, timeout=30
                )

    def restart(self, *, empty_cache: bool) -> None:
        self.stop()
        if empty_cache:
            shutil.rmtree(self.ws.cache, ignore_errors=True)
        self.start()

    def stats(self) -> dict[str, Any]:
        return json.loads(os.getxattr(self.ws.mnt, STATS_XATTR))


def is_mounted(path: Path) -> bool:
    target = os.path.abspath(path)  # no resolve(): it would stat into a possibly hung mount
    with open("/proc/self/mountinfo") as f:
        return any(line.split()[4].replace("\\040", " ") == target for line in f)


def remove_workdir(root: Path, *, keep: bool) -> None:
    """Remove a run's work folder, unless asked to keep it or something is still mounted
    in it (removing under a live mount would delete through it)."""
    left = mounts_under(root)
    if keep:
        log(f"kept the work folder {root}")
    elif left:
        log(f"not removing {root}: still mounted at {', '.join(left)}")
    else:
        shutil.rmtree(root, ignore_errors=True)


def mounts_under(path: Path) -> list[str]:
    prefix = os.path.abspath(path).rstrip("/") + "/"
    with open("/proc/self/mountinfo") as f:
        points = [line.split()[4].replace("\\040", " ") for line in f]
    return [p for p in points if p.startswith(prefix)]


def pid_alive(pid: int) -> bool:
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)  # reaps it when we adopted it as subreaper
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state not in ("Z", "X")


def wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while pid_alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def is_our_daemon(pid: int, mnt: Path) -> bool:
    """The pid still runs an artifactfs mount of ``mnt`` (guards against a reused pid)."""
    try:
        args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return any(b"artifactfs" in a for a in args) and str(mnt).encode() in args


# ---- data ----------------------------------------------------------------------------------


@dataclass
class Workload:
    name: str  # "big" or "small"
    description: str
    mount_paths: list[Path]  # in the order they are read
    store_paths: list[Path]  # the same bytes, as blobs of the store
    nbytes: int


def make_big(path: Path, size_mib: int) -> str:
    """Write ``size_mib`` MiB of random bytes; return their hex MD5 (the blob key)."""
    md5 = hashlib.md5()
    with open(path, "wb") as f:
        for _ in range(size_mib):
            block = os.urandom(BLOCK)
            md5.update(block)
            f.write(block)
    return md5.hexdigest()


def make_small(root: Path, count: int) -> dict[str, str]:
    """``count`` files of 64 KiB spread over 20 folders; relative path -> hex MD5."""
    keys: dict[str, str] = {}
    for i in range(count):
        rel = f"d{i % SMALL_FOLDERS:02d}/f{i:05d}.bin"
        data = os.urandom(SMALL_SIZE)
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
        keys[rel] = hashlib.md5(data).hexdigest()
    return keys


def blob_path(store: Path, hex_key: str) -> Path:
    return store / "blobs" / hex_key[:2] / hex_key


def push(ws: Workspace, source: Path, name: str) -> tuple[str, float]:
    """Push ``source`` as PROJECT/name; returns the folder name under the mount and seconds."""
    t0 = time.perf_counter()
    out = ws.run("push", str(source), f"{PROJECT}/{name}", "--type", TYPE, timeout=7200)
    seconds = time.perf_counter() - t0
    m = re.search(rf"{PROJECT}/{re.escape(name)}:(v\d+)", out)
    if m is None:
        raise BenchError(f"'artifactfs push' printed {out.strip()!r}, not {PROJECT}/{name}:vN")
    return f"{name}:{m[1]}", seconds


def listing_order(top: Path) -> list[Path]:
    """Every file under ``top`` in the order the file system lists them (no sorting)."""
    out: list[Path] = []
    for folder, dirs, files in os.walk(top):
        del dirs  # os.walk descends in listing order already
        out.extend(Path(folder) / f for f in files)
    return out


# ---- measuring -----------------------------------------------------------------------------


def read_buffer() -> memoryview:
    """The readers' 1 MiB buffer, page-aligned as dd's, cat's and fio's are.

    A fresh ``bytearray`` of 1 MiB starts 16 bytes into a page (glibc's header of an
    mmap'd chunk). On the AMD EPYC VM these figures come from, the kernel copies
    page-cache pages into a buffer that starts 8 to 24 bytes into a page at 1.7 to
    2.5 GB/s, and into one at any multiple of 32 at 11 to 14 GB/s (``preadv`` at each
    offset). Where a ``bytearray`` lands depends on the allocator's history, so with one
    the figures measured the allocator rather than the contender.
    """
    return memoryview(mmap.mmap(-1, BLOCK))


def read_through(paths: list[Path] | list[str], buf: memoryview) -> int:
    """Read every file start to end in reads of ``len(buf)``, opens and closes included,
    discarding the bytes; how many there were."""
    total = 0
    for path in paths:
        with open(path, "rb", buffering=0) as f:
            while n := f.readinto(buf):
                total += n
    return total


def read_all(paths: list[Path], expected: int) -> tuple[int, float]:
    """Read every file start to end in 1 MiB reads, discarding the bytes; (bytes, seconds)."""
    buf = read_buffer()
    t0 = time.perf_counter()
    total = read_through(paths, buf)
    seconds = time.perf_counter() - t0
    if total != expected:
        raise BenchError(f"read {total} bytes, expected {expected}: the data is incomplete")
    return total, seconds


@dataclass
class Row:
    workload: str
    workload_description: str
    state: str
    label: str
    bytes: int
    seconds: float
    mb_per_s: float
    baseline: str | None = None
    ratio: float | None = None
    fetch: dict[str, int] | None = None  # daemon counters during this read (mount rows)


def stat_delta(before: dict[str, Any], after: dict[str, Any]) -> dict[str, int]:
    keys = ("fetch_bytes", "fetch_requests", "cache_hits", "cache_misses", "manifest_fetches")
    return {k: int(after.get(k, 0)) - int(before.get(k, 0)) for k in keys}


def measure(work: Workload, mount: Mount) -> list[Row]:
    rows: dict[str, Row] = {}

    def record(state: str, paths: list[Path], with_stats: bool) -> None:
        before = mount.stats() if with_stats else None
        nbytes, seconds = read_all(paths, work.nbytes)
        fetch = stat_delta(before, mount.stats()) if before is not None else None
        label, baseline = STATES[state]
        rows[state] = Row(
            work.name, work.description, state, label, nbytes, seconds,
            nbytes / 1e6 / seconds if seconds > 0 else float("inf"), baseline, fetch=fetch,
        )
        extra = f", fetched {fetch['fetch_bytes'] / 2**20:.1f} MiB" if fetch else ""
        log(f"{work.name}: {label}: {rows[state].mb_per_s:.1f} MB/s "
            f"({seconds:.2f} s{extra})")

    log(f"{work.name}: cold (unmount, empty the artifactfs cache, remount, drop page cache)")
    mount.restart(empty_cache=True)
    drop_page_cache()
    record("cold", work.mount_paths, True)

    log(f"{work.name}: disk-cache warm (unmount, remount, drop page cache)")
    mount.restart(empty_cache=False)
    drop_page_cache()
    record("disk_warm", work.mount_paths, True)
    record("page_warm", work.mount_paths, True)

    drop_page_cache()
    record("store_dropped", work.store_paths, False)
    record("store_warm", work.store_paths, False)

    for row in rows.values():
        if row.baseline is not None:
            base = rows[row.baseline].mb_per_s
            row.ratio = row.mb_per_s / base if base > 0 else None
    return list(rows.values())


# ---- output --------------------------------------------------------------------------------


def render_table(rows: list[Row]) -> str:
    head = ("workload", "state", "MB/s", "ratio", "vs baseline", "seconds", "fetched MiB")
    body = []
    for r in rows:
        body.append((
            r.workload_description,
            r.label,
            f"{r.mb_per_s:,.1f}",
            f"{r.ratio:.2f}x" if r.ratio is not None else "-",
            STATES[r.baseline][0] if r.baseline else "(baseline)",
            f"{r.seconds:.2f}",
            f"{r.fetch['fetch_bytes'] / 2**20:,.1f}" if r.fetch else "-",
        ))
    return aligned_table(head, body, {2, 3, 5, 6}, [r.workload for r in rows])


def aligned_table(
    head: tuple[str, ...], body: list[tuple[str, ...]], numeric: set[int],
    groups: list[object],
) -> str:
    """Padded columns (``numeric`` ones right-aligned), a blank line where ``groups`` changes."""
    widths = [max(len(x[i]) for x in (head, *body)) for i in range(len(head))]

    def line(cells: tuple[str, ...]) -> str:
        return "  ".join(
            c.rjust(w) if i in numeric else c.ljust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    out = [line(head), "  ".join("-" * w for w in widths)]
    for i, cells in enumerate(body):
        if i and groups[i] != groups[i - 1]:
            out.append("")
        out.append(line(cells))
    return "\n".join(out)


def add_output_options(p: argparse.ArgumentParser, name: str, kept: str) -> None:
    """--workdir, --json and --keep, which every benchmark takes."""
    p.add_argument("--workdir", type=Path, default=None,
                   help="folder to make the temporary work folder in (default: the system "
                        "temporary folder, normally /tmp); it is removed at the end")
    p.add_argument("--json", type=Path, default=None,
                   help=f"where to write the results (default "
                        f"benchmarks/results/{name}-<UTC timestamp>.json)")
    p.add_argument("--keep", action="store_true", help=f"keep the work folder ({kept})")


def log_problems(logs: list[Path]) -> list[str]:
    """WARNING/ERROR lines the mount daemons logged (the logs vanish with the work folder)."""
    found: list[str] = []
    for path in logs:
        with contextlib.suppress(OSError):
            for text in path.read_text(errors="replace").splitlines():
                if " WARNING " in text or " ERROR " in text or "Traceback" in text:
                    found.append(text)
    return found


def default_json_path(stamp: str) -> Path:
    return RESULTS / f"read_throughput-{stamp}.json"


# ---- main ----------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Sequential read throughput of an artifactfs mount vs its store's blobs.",
    )
    p.add_argument("--size-mib", type=int, default=1024,
                   help="size of the big file in MiB (default 1024; 0 skips it)")
    p.add_argument("--small-count", type=int, default=2000,
                   help="number of 64 KiB files in 20 folders (default 2000; 0 skips them)")
    add_output_options(p, "read_throughput", "data, store, cache, daemon logs")
    args = p.parse_args(argv)
    if args.size_mib < 0 or args.small_count < 0:
        p.error("--size-mib and --small-count must not be negative")
    if args.size_mib == 0 and args.small_count == 0:
        p.error("nothing to measure: --size-mib and --small-count are both 0")
    return args


@contextlib.contextmanager
def sigterm_as_exit() -> Iterator[None]:
    """Let SIGTERM/SIGHUP unwind through ``finally`` so the mount is always cleaned up."""

    def handler(signum: int, frame: object) -> None:
        log(f"received {signal.Signals(signum).name}; unmounting and cleaning up")
        raise SystemExit(128 + signum)

    old = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def run(args: argparse.Namespace) -> int:
    started = datetime.now(UTC)
    stamp = started.strftime("%Y%m%dT%H%M%SZ")
    json_path = (args.json or default_json_path(stamp)).absolute()
    parent = (args.workdir or Path(tempfile.gettempdir())).absolute()
    data_bytes = args.size_mib * BLOCK + args.small_count * SMALL_SIZE
    # source data + store blobs + cache objects, plus slack for metadata and chunk indexes
    preflight(parent, 3 * data_bytes + (256 << 20))
    cli = artifactfs_cli()
    become_subreaper()

    # resolved, so paths match what the kernel lists in /proc/self/mountinfo
    root = Path(tempfile.mkdtemp(prefix="artifactfs-bench-", dir=parent)).resolve()
    ws = Workspace(root, cli, cache_size=2 * data_bytes + (1 << 30))
    mount = Mount(ws)
    info = machine_info(root)
    warnings: list[str] = []
    if info["workdir_fs"] in ("tmpfs", "ramfs"):
        warnings.append(
            f"the work folder is on {info['workdir_fs']}: dropping the page cache does not "
            "evict it, so 'dropped' and 'cold' rows measure memory, not the disk; pass "
            "--workdir on a disk-backed file system"
        )
    for w in warnings:
        log(f"warning: {w}")
    log(f"work folder {root} ({info['workdir_fs']}); artifactfs {cli}")
    rows: list[Row] = []
    pushes: dict[str, float] = {}
    failed = True
    try:
        for folder in (ws.data, ws.store, ws.cache, ws.home, ws.mnt):
            folder.mkdir(parents=True)
        workloads: list[Workload] = []
        big_key = small_keys = None
        if args.size_mib:
            log(f"writing {args.size_mib} MiB of random bytes")
            big_key = make_big(ws.data / "big.bin", args.size_mib)
        if args.small_count:
            log(f"writing {args.small_count} files of 64 KiB in {SMALL_FOLDERS} folders")
            small_keys = make_small(ws.data / "small", args.small_count)
        big_folder = small_folder = ""
        if big_key:
            log("pushing the big file")
            big_folder, pushes["big"] = push(ws, ws.data / "big.bin", "big")
        if small_keys:
            log("pushing the small files")
            small_folder, pushes["small"] = push(ws, ws.data / "small", "small")

        mount.start()
        log(f"mounted {ws.mnt} (daemon pid {mount.pid})")
        base = ws.mnt / PROJECT / TYPE
        if big_key:
            big = base / big_folder / "big.bin"
            if not big.is_file():
                raise BenchError(f"{big} is not in the mount")
            workloads.append(Workload(
                "big", f"big ({args.size_mib} MiB)", [big], [blob_path(ws.store, big_key)],
                args.size_mib * BLOCK,
            ))
        if small_keys:
            top = base / small_folder
            listed = listing_order(top)
            rels = [p.relative_to(top).as_posix() for p in listed]
            if sorted(rels) != sorted(small_keys):
                raise BenchError(
                    f"the mount lists {len(rels)} files under {top}, expected {len(small_keys)}"
                )
            workloads.append(Workload(
                "small", f"small ({args.small_count} x 64 KiB)", listed,
                [blob_path(ws.store, small_keys[r]) for r in rels],
                args.small_count * SMALL_SIZE,
            ))
        for work in workloads:
            missing = [p for p in work.store_paths if not p.is_file()]
            if missing:
                raise BenchError(f"blob {missing[0]} is not in the store folder")
            rows.extend(measure(work, mount))
        failed = False
    finally:
        mount.stop()
        problems = log_problems(mount.logs)
        if failed and mount.log_file is not None:
            tail = "\n".join(log_problems([mount.log_file])[-20:]) or "(nothing logged)"
            log(f"daemon log {mount.log_file} problems:\n{tail}")
        remove_workdir(root, keep=args.keep)

    for text in problems:
        warnings.append(f"daemon log: {text}")
    table = render_table(rows)
    print(table)
    if problems:
        print(f"\nthe mount daemons logged {len(problems)} warnings or errors; "
              "see 'warnings' in the JSON")
    result = {
        "benchmark": "read_throughput",
        "started_utc": started.isoformat(timespec="seconds"),
        "finished_utc": datetime.now(UTC).isoformat(timespec="seconds"),
        "units": {"mb_per_s": "10^6 bytes per second", "ratio": "mount MB/s / baseline MB/s"},
        "parameters": {
            "size_mib": args.size_mib, "small_count": args.small_count,
            "small_size": SMALL_SIZE, "small_folders": SMALL_FOLDERS, "read_block": BLOCK,
            "workdir": str(root), "kept": bool(args.keep), "mounts": mount.count,
            "cache_size": ws.cache_size,
        },
        "machine": info,
        "project": project_info(cli),
        "push_seconds": pushes,
        "rows": [asdict(r) for r in rows],
        "table": table.splitlines(),
        "warnings": warnings,
    }
    write_json(json_path, result)
    return 0


def bench_main(
    parse: Callable[[list[str] | None], argparse.Namespace],
    run_bench: Callable[[argparse.Namespace], int],
    argv: list[str] | None,
) -> int:
    """The entry point every benchmark shares: clear errors, SIGTERM and Ctrl-C clean up."""
    args = parse(argv)
    try:
        with sigterm_as_exit():
            return run_bench(args)
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def write_json(json_path: Path, result: dict[str, Any]) -> None:
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwrote {json_path}")


def main(argv: list[str] | None = None) -> int:
    return bench_main(parse_args, run, argv)


if __name__ == "__main__":
    sys.exit(main())
