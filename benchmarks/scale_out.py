"""Scale-out figures (issue 17): a server on SQLite and a blob folder against one on
PostgreSQL and S3, in the same run.

Run as any user with the project's test services installed (scripts/install-system-deps.sh
for PostgreSQL, the test extra for SeaweedFS)::

    .venv/bin/python benchmarks/scale_out.py [--blob-mib 256] [--rounds 3] [--clients 8]
                                             [--commits 10] [--entries 100000] [--json OUT]

It starts a private PostgreSQL cluster and a SeaweedFS S3 service (the same starters the
tests use, tests/pg.py and tests/seaweed.py), and two ``artifactfs serve`` processes on
loopback: ``--store DIR`` (SQLite and a blob folder) and ``--db postgresql://...
--blobs s3://...``. Then, for each:

- **blob reads**: one ``--blob-mib`` blob read whole by the HTTP client in 8 MiB ranges,
  ``--rounds`` times: MB/s, and the server's CPU seconds per GiB read (from
  /proc/PID/stat). On S3 the server answers each range with a presigned address and the
  bytes come from storage, so its CPU per GiB should be near zero;
- **concurrent commits**: ``--clients`` processes committing ``--commits`` versions each to
  one collection at once: commits/s, and a check that the versions are exactly v0..vN-1;
- **a large version**: one version of ``--entries`` entries in 100 folders, committed, then
  its manifest fetched and every folder listed (the mount's walk): seconds for each.

It times; it asserts nothing about times. Every process it starts is stopped by its pid.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

# the tests' own service starters (tests/pg.py, tests/seaweed.py): one copy of each
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from pg import PgCluster
from read_throughput import BenchError
from seaweed import SeaweedS3
from server_transfer import cpu_seconds, free_port

from artifactfs.core.digests import md5_b64
from artifactfs.core.manifest import Manifest, ManifestEntry
from artifactfs.registry.http import HttpRegistry

ENTITY = "bench"
PROJECT = "scale"
RANGE = 8 << 20
RESULTS = Path(__file__).resolve().parent / "results"
CLI = str(Path(sys.executable).parent / "artifactfs")


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


@dataclass
class Served:
    """One ``artifactfs serve`` process and how its store is named."""

    label: str
    store_args: list[str]  # --store DIR, or --db URL --blobs URL
    key_args: list[str]  # what ``key create`` needs to reach the same database
    env: dict[str, str]
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    url: str = ""
    key: str = ""
    figures: dict[str, Any] = field(default_factory=dict)

    def cli(self, *args: str) -> str:
        done = subprocess.run([CLI, *args], env=self.env, capture_output=True,
                              text=True, timeout=300, stdin=subprocess.DEVNULL)
        if done.returncode != 0:
            raise BenchError(f"artifactfs {args[0]} failed: {(done.stderr or done.stdout)[-500:]}")
        return done.stdout

    def start(self) -> None:
        self.key = self.cli("key", "create", ENTITY, *self.key_args).strip().splitlines()[-1]
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        with open(self.log_path, "ab") as out:
            self.proc = subprocess.Popen(
                [CLI, "serve", *self.store_args, "--port", str(port)],
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=self.env)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise BenchError(f"{self.label} server exited: {self.log_path.read_text()[-800:]}")
            registry = HttpRegistry(self.url, self.key, attempts=1)
            try:
                registry.list_projects(ENTITY)
                return
            except Exception:  # not listening yet
                time.sleep(0.1)
            finally:
                registry.close()
        raise BenchError(f"{self.label} server did not start")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def registry(self) -> HttpRegistry:
        return HttpRegistry(self.url, self.key)


def blob_reads(served: Served, source: Path, rounds: int) -> dict[str, Any]:
    """Upload ``source``, commit it, then read it whole ``rounds`` times."""
    data_digest = md5_b64(source.read_bytes())
    size = source.stat().st_size
    registry = served.registry()
    try:
        registry.upload_blob(source, data_digest)
        registry.commit(entity=ENTITY, project=PROJECT, name="big", type_="dataset",
                        manifest=Manifest([ManifestEntry("big.bin", data_digest, size)]))
        speeds, cpu_per_gib = [], []
        for _ in range(rounds):
            cpu0, t0 = cpu_seconds(served.proc.pid if served.proc else None), time.perf_counter()
            got = 0
            for start in range(0, size, RANGE):
                got += len(registry.read_blob(data_digest, start, min(size, start + RANGE)))
            took = time.perf_counter() - t0
            cpu1 = cpu_seconds(served.proc.pid if served.proc else None)
            if got != size:
                raise BenchError(f"{served.label}: read {got} bytes of {size}")
            speeds.append(size / took / 1e6)
            if cpu0 is not None and cpu1 is not None:
                cpu_per_gib.append((cpu1 - cpu0) / (size / 2**30))
    finally:
        registry.close()
    return {"mb_per_s": statistics.median(speeds), "rounds_mb_per_s": speeds,
            "server_cpu_s_per_gib": statistics.median(cpu_per_gib) if cpu_per_gib else None}


def _commit_many(url: str, key: str, digest: str, size: int, count: int, start: Any,
                 out: Any) -> None:
    registry = HttpRegistry(url, key)
    try:
        start.wait()
        for i in range(count):
            manifest = Manifest([ManifestEntry(f"part-{os.getpid()}-{i}.bin", digest, size)])
            registry.commit(entity=ENTITY, project=PROJECT, name="busy", type_="dataset",
                            manifest=manifest)
        out.put(None)
    except Exception as exc:  # reported to the parent, which fails the run
        out.put(repr(exc))
    finally:
        registry.close()


def concurrent_commits(served: Served, source: Path, clients: int, commits: int
                       ) -> dict[str, Any]:
    digest = md5_b64(source.read_bytes())
    registry = served.registry()
    try:
        registry.upload_blob(source, digest)
        registry.commit(entity=ENTITY, project=PROJECT, name="seed", type_="dataset",
                        manifest=Manifest([ManifestEntry("small.bin", digest,
                                                         source.stat().st_size)]))
    finally:
        registry.close()
    ctx = multiprocessing.get_context("spawn")
    start, out = ctx.Event(), ctx.Queue()
    procs = [ctx.Process(target=_commit_many, args=(served.url, served.key, digest,
                                                    source.stat().st_size, commits, start, out))
             for _ in range(clients)]
    for p in procs:
        p.start()
    time.sleep(1.0)  # every client up and waiting
    t0 = time.perf_counter()
    start.set()
    errors = [e for e in (out.get(timeout=600) for _ in procs) if e is not None]
    took = time.perf_counter() - t0
    for p in procs:
        p.join(timeout=60)
    if errors:
        raise BenchError(f"{served.label}: a committing client failed: {errors[0]}")
    registry = served.registry()
    try:
        versions = sorted(v.index for v in registry.list_versions(ENTITY, PROJECT, "busy"))
    finally:
        registry.close()
    if versions != list(range(clients * commits)):
        raise BenchError(f"{served.label}: versions are not v0..v{clients * commits - 1}: "
                         f"{versions[:5]}...")
    return {"commits": clients * commits, "seconds": took,
            "commits_per_s": clients * commits / took}


def large_version(served: Served, source: Path, entries: int) -> dict[str, Any]:
    digest = md5_b64(source.read_bytes())
    size = source.stat().st_size
    paths = [f"f{i % 100:03d}/file{i:07d}.bin" for i in range(entries)]
    manifest = Manifest([ManifestEntry(p, digest, size) for p in paths])
    registry = served.registry()
    try:
        registry.upload_blob(source, digest)
        t0 = time.perf_counter()
        info = registry.commit(entity=ENTITY, project=PROJECT, name="large", type_="dataset",
                               manifest=manifest)
        commit_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        fetched = registry.manifest(info.id)
        manifest_s = time.perf_counter() - t0
        if len(fetched.entries) != entries:
            raise BenchError(f"{served.label}: the manifest has {len(fetched.entries)} entries")
        t0 = time.perf_counter()
        root = registry.folder_listings(info.id, [""])[0]
        listed = 0
        folders = list(root.folders)
        while folders:
            batch = registry.folder_listings(info.id, folders[:64])
            folders = folders[len(batch):]
            listed += sum(len(f.files) for f in batch)
        folders_s = time.perf_counter() - t0
        if listed != entries:
            raise BenchError(f"{served.label}: the folders list {listed} files")
    finally:
        registry.close()
    return {"entries": entries, "commit_s": commit_s, "manifest_s": manifest_s,
            "folders_s": folders_s}


@contextmanager
def services(work: Path) -> Iterator[tuple[PgCluster, SeaweedS3]]:
    cluster = PgCluster()
    try:
        seaweed = SeaweedS3(work / "seaweed")
        try:
            yield cluster, seaweed
        finally:
            seaweed.stop()
    finally:
        cluster.stop()


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--blob-mib", type=int, default=256, help="size of the blob read (256)")
    p.add_argument("--rounds", type=int, default=3, help="reads of it, median taken (3)")
    p.add_argument("--clients", type=int, default=8, help="processes committing at once (8)")
    p.add_argument("--commits", type=int, default=10, help="commits per client (10)")
    p.add_argument("--entries", type=int, default=100_000, help="entries of the large version")
    p.add_argument("--json", type=Path, default=None, help="where to write the results")
    return p.parse_args(argv)


def run(args: argparse.Namespace) -> int:
    started = datetime.now(UTC)
    work = Path(tempfile.mkdtemp(prefix="artifactfs-scale-"))
    results: dict[str, Any] = {"benchmark": "scale_out", "started_utc": started.isoformat(),
                               "parameters": vars(args) | {"json": str(args.json)}}
    servers: list[Served] = []
    try:
        big = work / "big.bin"
        with open(big, "wb") as f:
            for _ in range(args.blob_mib):
                f.write(os.urandom(1 << 20))
        small = work / "small.bin"
        small.write_bytes(os.urandom(1024))
        with services(work) as (cluster, seaweed):
            base = {k: v for k, v in os.environ.items() if not k.startswith("ARTIFACTFS_")}
            base["HOME"] = str(work / "home")
            database = cluster.new_database()
            pg_env = {**base, **seaweed.env}
            servers = [
                Served("sqlite+folder", ["--store", str(work / "store")],
                       ["--store", str(work / "store")], base, work / "sqlite.log"),
                Served("postgresql+s3",
                       ["--db", cluster.url(database),
                        "--blobs", f"s3://{seaweed.bucket}/bench"],
                       ["--db", cluster.url(database)], pg_env, work / "pg.log"),
            ]
            for served in servers:
                served.start()
                log(f"{served.label}: serving at {served.url}")
                served.figures["blob_reads"] = blob_reads(served, big, args.rounds)
                log(f"{served.label}: blob reads {served.figures['blob_reads']}")
                served.figures["commits"] = concurrent_commits(served, small, args.clients,
                                                               args.commits)
                log(f"{served.label}: commits {served.figures['commits']}")
                served.figures["large_version"] = large_version(served, small, args.entries)
                log(f"{served.label}: large version {served.figures['large_version']}")
                served.stop()
    finally:
        for served in servers:
            served.stop()
        shutil.rmtree(work, ignore_errors=True)
    results["servers"] = {s.label: s.figures for s in servers}
    results["finished_utc"] = datetime.now(UTC).isoformat()
    print(table(results["servers"]))
    out = args.json or RESULTS / f"scale_out-{started.strftime('%Y%m%dT%H%M%SZ')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


def table(figures: dict[str, dict[str, Any]]) -> str:
    rows = [
        ("blob reads, MB/s", ("blob_reads", "mb_per_s"), "{:,.0f}"),
        ("server CPU-s per GiB read", ("blob_reads", "server_cpu_s_per_gib"), "{:.2f}"),
        ("commits/s, clients at once", ("commits", "commits_per_s"), "{:.1f}"),
        ("large version: commit, s", ("large_version", "commit_s"), "{:.2f}"),
        ("large version: manifest fetch, s", ("large_version", "manifest_s"), "{:.2f}"),
        ("large version: every folder listed, s", ("large_version", "folders_s"), "{:.2f}"),
    ]
    labels = list(figures)
    lines = [f"{'figure':40}" + "".join(f"{label:>16}" for label in labels)]
    if len(labels) == 2:
        lines[0] += f"{'ratio':>10}"
    for name, (group, key), form in rows:
        values = [figures[label].get(group, {}).get(key) for label in labels]
        line = f"{name:40}" + "".join(
            f"{form.format(v) if v is not None else '-':>16}" for v in values)
        if len(values) == 2 and all(v for v in values):
            line += f"{values[1] / values[0]:>9.2f}x"
        lines.append(line)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    try:
        return run(parse_args(argv))
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
