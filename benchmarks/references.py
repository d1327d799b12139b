"""Reading references (issue 18) through a mount and through ``artifact://`` (issue 20),
against reading their sources directly and against the same bytes kept as blobs, in one run.

Run as root (it mounts FUSE, drops the page cache and runs nginx and SeaweedFS)::

    .venv/bin/python benchmarks/references.py [--size-mib 256] [--small-count 500]
                                              [--workdir DIR] [--json OUT] [--keep]

In a fresh work folder it writes one file of ``--size-mib`` MiB (``big.bin``) and
``--small-count`` files of 64 KiB in 20 folders, and logs them four ways into a private
embedded store, one artifact each (``bench/<source>``):

- ``blob``: pushed, the bytes in the store (the path every other benchmark measures);
- ``file``: ``add_reference("file://...")`` on the data folder;
- ``http``: ``add_reference("http://...")`` of each file, served by nginx on loopback
  (ETags and ranges, as a static file server gives them);
- ``s3``: ``add_reference("s3://bucket/prefix")`` of a SeaweedFS bucket the files were put in
  (the tests' own starter, tests/seaweed.py).

It mounts the store ``--read-only`` and measures, for each source:

- **first byte**: a 4 KiB read at offset 0 of ``big.bin``, cold (artifactfs cache emptied,
  daemon restarted, page cache dropped). A reference is fetched whole and checked before
  its first byte is served (docs/architecture.md, "References"), so this is the price of
  that choice; a blob's first chunk is served once it alone is checked;
- **big, cold** and **big, disk-cache warm** (remounted, page cache dropped): MB/s reading
  ``big.bin`` start to end in 1 MiB reads;
- **small, cold** and **small, disk-cache warm**: files/s reading the small files in the
  order the mount lists them, opens and closes included;

and, as the limit of each source, the same bytes read straight from it with the page cache
dropped: the data folder's files (``file``, and ``blob``'s store folder), one GET per file
from nginx with httpx (``http``), one ``get_object`` per file with boto3 (``s3``).
Then ``artifact://`` (fsspec, in a process of its own) reads ``big.bin`` of ``blob`` and
``file`` cold and disk-cache warm.

It times; it asserts nothing about times. Every process it starts is stopped by its pid.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

# the tests' own SeaweedFS starter (tests/seaweed.py): one copy of it
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from peers import Nginx
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
    blob_path,
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
    write_json,
)
from seaweed import SeaweedS3

SOURCES = ("blob", "file", "http", "s3")
FIRST_BYTE = 4096
RESULTS = Path(__file__).resolve().parent / "results"


@dataclass
class Row:
    source: str
    measure: str  # first_byte, big_cold, big_warm, small_cold, small_warm, big_source, ...
    value: float
    unit: str  # "ms", "MB/s", "files/s"


class RefWorkspace(Workspace):
    """The benchmark's store and cache, with the S3 service's AWS settings for every
    artifactfs process (the mount reads ``s3://`` references with them)."""

    def __init__(self, root: Path, cli: Path, cache_size: int, aws: dict[str, str]) -> None:
        super().__init__(root, cli, cache_size)
        self.aws = aws

    def env(self) -> dict[str, str]:
        return {**super().env(), **self.aws}


def log_references(ws: RefWorkspace, nginx_url: str, bucket: str) -> None:
    """The ``file``, ``http`` and ``s3`` artifacts, made by the SDK in a process that has
    the workspace's settings (as a user's script would)."""
    data = ws.data
    script = textwrap.dedent(f"""
        import os, artifactfs
        data = {str(data)!r}
        small = sorted(os.path.relpath(os.path.join(d, f), data + "/small")
                       for d, _, fs in os.walk(data + "/small") for f in fs)

        art = artifactfs.Artifact("file", type={TYPE!r})
        art.add_reference("file://" + data + "/big.bin")
        art.add_reference("file://" + data + "/small", name="small")
        art.save(project={PROJECT!r})

        art = artifactfs.Artifact("http", type={TYPE!r})
        art.add_reference({nginx_url!r} + "/tree/big.bin")
        for rel in small:
            art.add_reference({nginx_url!r} + "/tree/small/" + rel, name="small/" + rel)
        art.save(project={PROJECT!r})

        art = artifactfs.Artifact("s3", type={TYPE!r})
        art.add_reference("s3://{bucket}/data/big.bin")
        art.add_reference("s3://{bucket}/data/small", name="small",
                          max_objects=len(small) + 1)
        art.save(project={PROJECT!r})
    """)
    done = subprocess.run([sys.executable, "-c", script], env=ws.env(), capture_output=True,
                          text=True, timeout=3600, stdin=subprocess.DEVNULL)
    if done.returncode != 0:
        raise BenchError(f"logging the references failed: {done.stderr.strip()[-2000:]}")


def put_in_bucket(seaweed: SeaweedS3, data: Path) -> None:
    """``big.bin`` and the small files under ``data/`` in the bucket, by boto3."""
    s3 = s3_client(seaweed.env)
    for path in [data / "big.bin", *sorted((data / "small").rglob("*.bin"))]:
        key = "data/" + path.relative_to(data).as_posix()
        s3.upload_file(str(path), seaweed.bucket, key)


def s3_client(env: dict[str, str]) -> Any:
    import boto3

    return boto3.client(
        "s3", endpoint_url=env["AWS_ENDPOINT_URL"], region_name=env.get("AWS_REGION",
                                                                        "us-east-1"),
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
    )


def first_byte(path: Path) -> float:
    """Milliseconds from open to the first 4 KiB of ``path``."""
    t0 = time.perf_counter()
    with open(path, "rb", buffering=0) as f:
        got = f.read(FIRST_BYTE)
    ms = (time.perf_counter() - t0) * 1000
    if len(got) != FIRST_BYTE:
        raise BenchError(f"{path}: read {len(got)} bytes of its first {FIRST_BYTE}")
    return ms


def source_limits(source: str, ws: RefWorkspace, nginx: Nginx, seaweed: SeaweedS3,
                  rels: list[str], big_size: int, big_key: str,
                  small_keys: dict[str, str]) -> list[Row]:
    """The same bytes read straight from where the source keeps them, page cache dropped."""
    rows: list[Row] = []
    if source in ("blob", "file"):
        if source == "blob":
            big = [blob_path(ws.store, big_key)]
            small = [blob_path(ws.store, small_keys[r]) for r in rels]
        else:
            big, small = [ws.data / "big.bin"], [ws.data / "small" / r for r in rels]
        drop_page_cache()
        n, s = read_all(big, big_size)
        rows.append(Row(source, "big_source", n / s / 1e6, "MB/s"))
        drop_page_cache()
        _, s = read_all(small, len(small) * SMALL_SIZE)
        rows.append(Row(source, "small_source", len(small) / s, "files/s"))
        return rows
    if source == "http":
        import httpx

        with httpx.Client() as client:
            def get(url: str) -> int:
                total = 0
                with client.stream("GET", url) as r:
                    r.raise_for_status()
                    for piece in r.iter_raw(BLOCK):
                        total += len(piece)
                return total

            drop_page_cache()
            t0 = time.perf_counter()
            n = get(f"{nginx.url}/tree/big.bin")
            rows.append(Row(source, "big_source", n / (time.perf_counter() - t0) / 1e6,
                            "MB/s"))
            drop_page_cache()
            t0 = time.perf_counter()
            for rel in rels:
                get(f"{nginx.url}/tree/small/{rel}")
            rows.append(Row(source, "small_source", len(rels) / (time.perf_counter() - t0),
                            "files/s"))
        return rows
    s3 = s3_client(seaweed.env)

    def get_object(key: str) -> int:
        body = s3.get_object(Bucket=seaweed.bucket, Key=key)["Body"]
        total = 0
        while piece := body.read(BLOCK):
            total += len(piece)
        return total

    drop_page_cache()
    t0 = time.perf_counter()
    n = get_object("data/big.bin")
    rows.append(Row(source, "big_source", n / (time.perf_counter() - t0) / 1e6, "MB/s"))
    drop_page_cache()
    t0 = time.perf_counter()
    for rel in rels:
        get_object(f"data/small/{rel}")
    rows.append(Row(source, "small_source", len(rels) / (time.perf_counter() - t0),
                    "files/s"))
    return rows


def through_mount(source: str, folder: str, mount: Mount, big_size: int,
                  small_count: int) -> list[Row]:
    """First byte, big and small, cold and disk-cache warm, through the mount."""
    rows: list[Row] = []
    top = mount.ws.mnt / PROJECT / TYPE / folder
    mount.restart(empty_cache=True)
    drop_page_cache()
    rows.append(Row(source, "first_byte", first_byte(top / "big.bin"), "ms"))
    mount.restart(empty_cache=True)
    drop_page_cache()
    n, s = read_all([top / "big.bin"], big_size)
    rows.append(Row(source, "big_cold", n / s / 1e6, "MB/s"))
    mount.restart(empty_cache=False)
    drop_page_cache()
    n, s = read_all([top / "big.bin"], big_size)
    rows.append(Row(source, "big_warm", n / s / 1e6, "MB/s"))
    listed = listing_order(top / "small")
    if len(listed) != small_count:
        raise BenchError(f"{top}/small lists {len(listed)} files, expected {small_count}")
    mount.restart(empty_cache=True)
    drop_page_cache()
    _, s = read_all(listed, small_count * SMALL_SIZE)
    rows.append(Row(source, "small_cold", small_count / s, "files/s"))
    mount.restart(empty_cache=False)
    drop_page_cache()
    _, s = read_all(listed, small_count * SMALL_SIZE)
    rows.append(Row(source, "small_warm", small_count / s, "files/s"))
    return rows


FSSPEC_READ = textwrap.dedent("""
    import json, sys, time, fsspec
    url, size = sys.argv[1], int(sys.argv[2])
    fs = fsspec.filesystem("artifact")
    t0 = time.perf_counter()
    total = 0
    with fs.open(url, "rb", block_size=1 << 20) as f:
        while piece := f.read(1 << 20):
            total += len(piece)
    seconds = time.perf_counter() - t0
    assert total == size, (total, size)
    print(json.dumps({"seconds": seconds}))
""")


def through_fsspec(source: str, folder: str, ws: RefWorkspace, big_size: int) -> list[Row]:
    """``big.bin`` through ``artifact://`` in a fresh process, cold and disk-cache warm."""
    url = f"artifact://{PROJECT}/{TYPE}/{folder}/big.bin"
    rows: list[Row] = []
    for state in ("cold", "warm"):
        if state == "cold":
            shutil.rmtree(ws.cache, ignore_errors=True)
        drop_page_cache()
        done = subprocess.run([sys.executable, "-c", FSSPEC_READ, url, str(big_size)],
                              env=ws.env(), capture_output=True, text=True, timeout=3600,
                              stdin=subprocess.DEVNULL)
        if done.returncode != 0:
            raise BenchError(f"artifact:// read of {url} failed: {done.stderr.strip()[-1500:]}")
        seconds = json.loads(done.stdout)["seconds"]
        rows.append(Row(source, f"fsspec_{state}", big_size / seconds / 1e6, "MB/s"))
    return rows


MEASURES = {
    "first_byte": "first 4 KiB, cold",
    "big_cold": "big, mount cold",
    "big_warm": "big, mount disk-cache warm",
    "big_source": "big, the source itself",
    "fsspec_cold": "big, artifact:// cold",
    "fsspec_warm": "big, artifact:// disk-cache warm",
    "small_cold": "small, mount cold",
    "small_warm": "small, mount disk-cache warm",
    "small_source": "small, the source itself",
}
# ratio of a measure to another of the same source (the source's own limit), or to blob's
RATIOS = {
    "big_cold": ("big_source", "of the source"),
    "small_cold": ("small_source", "of the source"),
    "big_warm": ("blob", "of blob"),
    "small_warm": ("blob", "of blob"),
    "fsspec_cold": ("big_cold", "of the mount"),
    "fsspec_warm": ("big_warm", "of the mount"),
}


def render_table(rows: list[Row]) -> str:
    value = {(r.source, r.measure): r for r in rows}
    out: list[tuple[str, ...]] = []
    groups: list[object] = []
    for measure, label in MEASURES.items():
        for source in SOURCES:
            row = value.get((source, measure))
            if row is None:
                continue
            ratio = ""
            if measure in RATIOS:
                against, says = RATIOS[measure]
                ref = (value.get((source, against)) if against in MEASURES
                       else value.get((against, measure)))
                if ref is not None and ref.value and not (against == "blob"
                                                          and source == "blob"):
                    ratio = f"{row.value / ref.value:.2f}x {says}"
            out.append((label, source, f"{row.value:,.1f} {row.unit}", ratio))
            groups.append(measure.split("_")[0])
    return aligned_table(("measure", "source", "figure", "ratio"), out, {2}, groups)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="References read through a mount and artifact://, against their "
                    "sources and against blobs.",
    )
    p.add_argument("--size-mib", type=int, default=256,
                   help="size of big.bin in MiB (default 256)")
    p.add_argument("--small-count", type=int, default=500,
                   help="number of 64 KiB files in 20 folders (default 500)")
    add_output_options(p, "references", "data, store, cache, daemon, nginx and weed logs")
    args = p.parse_args(argv)
    if args.size_mib < 1 or args.small_count < 1:
        p.error("--size-mib and --small-count must be at least 1")
    return args


def run(args: argparse.Namespace) -> int:
    started = datetime.now(UTC)
    stamp = started.strftime("%Y%m%dT%H%M%SZ")
    json_path = (args.json or RESULTS / f"references-{stamp}.json").absolute()
    parent = (args.workdir or Path(tempfile.gettempdir())).absolute()
    big_size = args.size_mib * BLOCK
    data_bytes = big_size + args.small_count * SMALL_SIZE
    # the data, the store's copy, the bucket's copy and the cache, plus slack
    preflight(parent, 4 * data_bytes + (512 << 20))
    cli = artifactfs_cli()
    become_subreaper()
    root = Path(tempfile.mkdtemp(prefix="artifactfs-bench-refs-", dir=parent)).resolve()
    info = machine_info(root)
    rows: list[Row] = []
    seaweed: SeaweedS3 | None = None
    nginx: Nginx | None = None
    mount: Mount | None = None
    problems: list[str] = []
    try:
        log(f"work folder {root}; starting SeaweedFS")
        seaweed = SeaweedS3(root / "seaweed")
        ws = RefWorkspace(root, cli, cache_size=2 * data_bytes + (1 << 30), aws=seaweed.env)
        for folder in (ws.data, ws.store, ws.cache, ws.home, ws.mnt):
            folder.mkdir(parents=True)
        log(f"writing {args.size_mib} MiB and {args.small_count} x 64 KiB of random bytes")
        big_key = make_big(ws.data / "big.bin", args.size_mib)
        small_keys = make_small(ws.data / "small", args.small_count)
        nginx = Nginx(root, ws.store, ws.data)
        nginx.start()
        log("putting the data in the bucket, pushing it, logging the references")
        put_in_bucket(seaweed, ws.data)
        blob_folder, _ = push(ws, ws.data, "blob")
        log_references(ws, nginx.url, seaweed.bucket)
        mount = Mount(ws, options=("--read-only",))  # a training job's mount
        mount.start()
        folders = {"blob": blob_folder, "file": "file:v0", "http": "http:v0", "s3": "s3:v0"}
        listed = listing_order(ws.mnt / PROJECT / TYPE / blob_folder / "small")
        rels = [p.relative_to(ws.mnt / PROJECT / TYPE / blob_folder / "small").as_posix()
                for p in listed]
        for source in SOURCES:
            log(f"{source}: the source itself")
            rows += source_limits(source, ws, nginx, seaweed, rels, big_size, big_key,
                                  small_keys)
            log(f"{source}: through the mount")
            rows += through_mount(source, folders[source], mount, big_size, args.small_count)
        mount.stop()
        for source in ("blob", "file"):
            log(f"{source}: through artifact://")
            rows += through_fsspec(source, folders[source], ws, big_size)
    finally:
        if mount is not None:
            mount.stop()
            problems = log_problems(mount.logs)
        if nginx is not None:
            nginx.stop()
        if seaweed is not None:
            seaweed.stop()
        remove_workdir(root, keep=args.keep)

    table = render_table(rows)
    print(table)
    if problems:
        print(f"\nthe mount daemons logged {len(problems)} warnings or errors; "
              "see 'warnings' in the JSON")
    write_json(json_path, {
        "benchmark": "references",
        "started_utc": started.isoformat(timespec="seconds"),
        "finished_utc": datetime.now(UTC).isoformat(timespec="seconds"),
        "parameters": {"size_mib": args.size_mib, "small_count": args.small_count,
                       "small_size": SMALL_SIZE, "read_block": BLOCK,
                       "first_byte": FIRST_BYTE, "workdir": str(root)},
        "machine": info,
        "project": project_info(cli),
        "rows": [asdict(r) for r in rows],
        "table": table.splitlines(),
        "warnings": [f"daemon log: {p}" for p in problems],
    })
    return 0


def main(argv: list[str] | None = None) -> int:
    return bench_main(parse_args, run, argv)


if __name__ == "__main__":
    sys.exit(main())
