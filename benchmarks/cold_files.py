"""Cold reads through a ``--read-only`` mount: small files in shuffled order, and one big file
read in order, with the daemon's CPU time and the FUSE requests it answered.

Run as root (it mounts FUSE and drops the page cache)::

    .venv/bin/python benchmarks/cold_files.py [--count 2000] [--readers 4] [--big-mib 1024]
                                              [--transports embedded,server] [--runs 1]
                                              [--profile DIR] [--mount-arg=--threads=16]

It pushes ``--count`` files of 64 KiB in 20 folders and one file of ``--big-mib`` MiB into
an embedded store, starts ``artifactfs serve`` on it, and for each transport (the embedded
store read in the daemon, and the server over loopback HTTP) mounts it read-only and
measures:

- ``small, epoch 0``: a fresh mount with the artifactfs cache emptied; the tree is listed
  (a DataLoader's index, outside the clock), the page cache dropped, then every file read
  whole by ``--readers`` processes in one shuffled order (``--order listing``: in listing
  order) split into contiguous shares.
  Files/s, and the daemon's CPU (utime + stime from /proc/PID/stat) per file.
- ``big, cold`` and ``big, disk-cache warm``: one reader, 1 MiB reads from start to end,
  page cache dropped, after a fresh mount with the cache emptied (cold) or kept (warm).
  MB/s, daemon CPU-s per GiB, and the FUSE READ requests: count and average size (bytes
  read / requests), which shows the request size the kernel sends.

``--profile DIR`` records the daemon with py-spy during each small epoch 0 (``pip install
py-spy`` into the venv first; it is not a project dependency). It times; it asserts nothing
about times.

Why its own script: issue 16 asks for the daemon's CPU time per cold small file and per
GiB of a sequential read, which the throughput and peer benchmarks do not take.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from dataloader import SEED, list_tree
from peers import AfsClient, AfsEmbeddedClient, AfsMount, Pusher, read_files
from read_throughput import (
    BLOCK,
    PROJECT,
    RESULTS,
    SMALL_SIZE,
    TYPE,
    BenchError,
    aligned_table,
    artifactfs_cli,
    become_subreaper,
    drop_page_cache,
    log,
    log_problems,
    make_big,
    make_small,
    push,
    read_all,
    remove_workdir,
    write_json,
)
from server_transfer import Server

GIB = 1 << 30
_CLK_TCK = os.sysconf("SC_CLK_TCK")


def user_system(pid: int) -> tuple[float, float]:
    """User and system CPU seconds process ``pid`` has used so far (utime, stime)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) / _CLK_TCK, int(fields[12]) / _CLK_TCK


def requests_of(stats: dict[str, Any]) -> dict[str, int]:
    return {k: int(v) for k, v in stats.get("requests", {}).items()}


def diff(before: dict[str, Any], after: dict[str, Any]) -> dict[str, int]:
    """Counters that moved between two stats reads (the stats reads' own getxattr left out)."""
    out = {f"fuse_{k}": v - requests_of(before).get(k, 0)
           for k, v in requests_of(after).items() if k != "getxattr"}
    for key in ("fetch_requests", "fetch_bytes", "cache_hits", "cache_misses"):
        out[key] = int(after.get(key, 0)) - int(before.get(key, 0))
    return {k: v for k, v in out.items() if v}


class Profiler:
    """``py-spy record`` of one process for as long as the block runs (when asked for)."""

    def __init__(self, folder: Path | None, name: str, pid: int, tool: str = "py-spy") -> None:
        self.folder, self.name, self.pid, self.tool = folder, name, pid, tool
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Profiler:
        if self.folder is None:
            return self
        self.folder.mkdir(parents=True, exist_ok=True)
        if self.tool == "perf":  # where the kernel time goes (py-spy sees only Python)
            cmd = ["perf", "record", "-g", "-F", "999", "-p", str(self.pid), "-o",
                   str(self.folder / f"{self.name}.perf.data")]
        else:
            spy = Path(sys.executable).parent / "py-spy"
            if not spy.is_file():
                raise BenchError(f"--profile needs {spy}: .venv/bin/pip install py-spy")
            cmd = [str(spy), "record", "-p", str(self.pid), "-r", "250", "--nonblocking", "--gil",
                   "--format", "speedscope", "-o",
                   str(self.folder / f"{self.name}.speedscope.json")]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(1.0)  # py-spy attaches before the clock starts
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None:
            self.proc.send_signal(2)  # SIGINT: py-spy writes its file and exits
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


def empty_cache_and_restart(mount: AfsMount) -> None:
    """A fresh mount on an empty artifactfs cache. The old cache is moved aside, not
    deleted, and removed with the work folder at the end: on ext4 without a journal (this
    machine's) every file created within a minute or so of mass deletion makes the
    allocator read past the inodes just freed, and the cache writes of the next epoch
    measured that instead of the daemon (ext4_create was 28% of its CPU)."""
    mount.stop()
    cache = mount.ws.cache
    if cache.exists():
        trash = mount.ws.root / "old-caches"
        trash.mkdir(exist_ok=True)
        cache.rename(trash / f"{cache.name}-{time.monotonic_ns()}")
    mount.start()


def measure_small(mount: AfsMount, top: Path, readers: int, runs: int, profile: Path | None,
                  label: str, tool: str = "py-spy", order: str = "shuffled"
                  ) -> list[dict[str, Any]]:
    rows = []
    for run in range(runs):
        empty_cache_and_restart(mount)
        rels = list_tree(top)
        paths = [top / rel for rel in rels]  # sorted: the mount's listing order
        if order == "shuffled":
            random.Random(SEED + run).shuffle(paths)
        expected = len(paths) * SMALL_SIZE
        assert mount.pid is not None
        with Profiler(profile, f"{label}-small-{run}", mount.pid, tool):
            drop_page_cache()
            before, (u0, s0) = mount.stats(), user_system(mount.pid)
            seconds = read_files(paths, readers, expected)
            (u1, s1), after = user_system(mount.pid), mount.stats()
        cpu = u1 - u0 + s1 - s0
        counts = diff(before, after)
        row = {
            "transport": label, "workload": f"small, epoch 0, {order}", "run": run,
            "files": len(paths), "seconds": round(seconds, 3),
            "files_per_s": round(len(paths) / seconds, 1),
            "mb_per_s": round(expected / 1e6 / seconds, 1),
            "daemon_cpu_s": round(cpu, 3),
            "daemon_cpu_ms_per_file": round(1000 * cpu / len(paths), 3),
            "daemon_user_ms_per_file": round(1000 * (u1 - u0) / len(paths), 3),
            "fuse_per_file": {k[5:]: round(v / len(paths), 2) for k, v in counts.items()
                              if k.startswith("fuse_")},
            **{k: v for k, v in counts.items() if not k.startswith("fuse_")},
        }
        log(f"{label}: small epoch 0 run {run}: {row['files_per_s']:,.0f} files/s, "
            f"{row['daemon_cpu_ms_per_file']:.3f} CPU-ms/file "
            f"({row['daemon_user_ms_per_file']:.3f} user), {row['fuse_per_file']}, "
            f"fetch_requests {counts.get('fetch_requests', 0)}")
        rows.append(row)
    return rows


def measure_big(mount: AfsMount, path: Path, nbytes: int, label: str) -> list[dict[str, Any]]:
    rows = []
    for state, empty in (("cold", True), ("disk-cache warm", False)):
        if empty:
            empty_cache_and_restart(mount)
        else:
            mount.restart(empty_cache=False)
        os.stat(path)
        drop_page_cache()
        assert mount.pid is not None
        before, (u0, s0) = mount.stats(), user_system(mount.pid)
        _, seconds = read_all([path], nbytes)
        (u1, s1), after = user_system(mount.pid), mount.stats()
        cpu = u1 - u0 + s1 - s0
        counts = diff(before, after)
        reads = counts.get("fuse_read", 0)
        row = {
            "transport": label, "workload": f"big, {state}", "bytes": nbytes,
            "seconds": round(seconds, 3), "mb_per_s": round(nbytes / 1e6 / seconds, 1),
            "daemon_cpu_s": round(cpu, 3),
            "daemon_cpu_s_per_gib": round(cpu / (nbytes / GIB), 3),
            "daemon_user_s_per_gib": round((u1 - u0) / (nbytes / GIB), 3),
            "fuse_reads": reads,
            "fuse_read_kib_avg": round(nbytes / reads / 1024, 1) if reads else None,
            **counts,
        }
        log(f"{label}: big {state}: {row['mb_per_s']:,.1f} MB/s, "
            f"{row['daemon_cpu_s_per_gib']:.3f} CPU-s/GiB, {reads} READs of "
            f"{row['fuse_read_kib_avg']} KiB on average")
        rows.append(row)
    return rows


def render(rows: list[dict[str, Any]]) -> str:
    head = ("transport", "workload", "files/s", "MB/s", "CPU-ms/file", "CPU-s/GiB",
            "READ KiB avg", "requests per file or READs")
    body = []
    for r in rows:
        small = "files_per_s" in r
        body.append((
            r["transport"], r["workload"], f"{r['files_per_s']:,.0f}" if small else "-",
            f"{r['mb_per_s']:,.1f}",
            f"{r['daemon_cpu_ms_per_file']:.3f}" if small else "-",
            "-" if small else f"{r['daemon_cpu_s_per_gib']:.3f}",
            "-" if small else str(r["fuse_read_kib_avg"]),
            " ".join(f"{k} {v}" for k, v in r["fuse_per_file"].items()) if small
            else str(r["fuse_reads"]),
        ))
    return aligned_table(head, body, {2, 3, 4, 5, 6}, [r["transport"] for r in rows])


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--count", type=int, default=2000, help="64 KiB files (0 skips them)")
    p.add_argument("--readers", type=int, default=4, help="reader processes for small files")
    p.add_argument("--big-mib", type=int, default=1024, help="the big file's MiB (0 skips it)")
    p.add_argument("--transports", default="embedded,server",
                   help="comma-separated: embedded, server")
    p.add_argument("--order", choices=("shuffled", "listing"), default="shuffled",
                   help="small files in one shuffled order, or in listing order (each "
                        "reader a contiguous share)")
    p.add_argument("--runs", type=int, default=1, help="small epoch 0 runs per transport")
    p.add_argument("--profile", type=Path, default=None,
                   help="folder for py-spy speedscope profiles of the small epochs")
    p.add_argument("--profiler", choices=("py-spy", "perf"), default="py-spy")
    p.add_argument("--mount-arg", action="append", default=[],
                   help="extra 'artifactfs mount' option (repeatable)")
    p.add_argument("--workdir", type=Path, default=None)
    p.add_argument("--json", type=Path, default=None)
    p.add_argument("--keep", action="store_true")
    args = p.parse_args(argv)
    args.transports = [t for t in args.transports.split(",") if t]
    if not set(args.transports) <= {"embedded", "server"}:
        p.error("--transports takes embedded and server")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    json_path = (args.json or RESULTS / f"cold_files-{stamp}.json").absolute()
    cli = artifactfs_cli()
    become_subreaper()
    parent = (args.workdir or Path(tempfile.gettempdir())).absolute()
    root = Path(tempfile.mkdtemp(prefix="artifactfs-cold-", dir=parent)).resolve()
    data_bytes = args.count * SMALL_SIZE + args.big_mib * BLOCK
    cache_size = 2 * data_bytes + GIB
    server = Server(root, cli)
    mounts: list[AfsMount] = []
    rows: list[dict[str, Any]] = []
    try:
        pusher = Pusher(root, cli, cache_size)
        (root / "data").mkdir()
        small_folder = big_folder = ""
        if args.count:
            log(f"writing and pushing {args.count} files of 64 KiB")
            make_small(root / "data/small", args.count)
            small_folder, _ = push(pusher, root / "data/small", "small")
        if args.big_mib:
            log(f"writing and pushing {args.big_mib} MiB")
            make_big(root / "data/big.bin", args.big_mib)
            big_folder, _ = push(pusher, root / "data/big.bin", "big")
        clients: dict[str, AfsClient] = {}
        if "embedded" in args.transports:
            clients["embedded"] = AfsEmbeddedClient(root, cli, cache_size, name="embedded")
        if "server" in args.transports:
            key = server.create_key()
            server.start(key)
            clients["server"] = AfsClient(root, cli, cache_size, name="server",
                                          registry_url=server.url, api_key=key)
        for label, client in clients.items():
            for folder in (client.home, client.mnt):
                folder.mkdir(parents=True, exist_ok=True)
            mount = AfsMount(client, extra_args=["--read-only", *args.mount_arg])
            mounts.append(mount)
            base = client.mnt / PROJECT / TYPE
            if args.count:
                rows += measure_small(mount, base / small_folder, args.readers, args.runs,
                                      args.profile, label, args.profiler, args.order)
            if args.big_mib:
                rows += measure_big(mount, base / big_folder / "big.bin",
                                    args.big_mib * BLOCK, label)
            mount.stop()
        print()
        print(render(rows))
        problems = log_problems([p for m in mounts for p in m.logs])
        write_json(json_path, {"started": stamp, "args": {k: str(v) for k, v in
                                                          vars(args).items()},
                               "rows": rows, "log_problems": problems[:50]})
        for line in problems[:10]:
            log(f"daemon log: {line}")
    except BenchError as exc:
        log(f"error: {exc}")
        return 1
    finally:
        for mount in mounts:
            mount.stop()
        server.stop()
        with contextlib.suppress(OSError):
            remove_workdir(root, keep=args.keep)
    return 0


if __name__ == "__main__":
    sys.exit(main())
