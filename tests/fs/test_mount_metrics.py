"""A mount's counters: ``--metrics-port`` scraped over real HTTP, and ``artifactfs stats``.

Real mounts of a real store read real files; each test checks that the counters moved
with the work: a first read fetches (misses, bytes fetched), the same file read through a
second mount of the same cache hits, a blob damaged in the store moves the verification
failures, a file written into an alias folder shows as staged bytes. The scrape, the stats
attribute and ``artifactfs stats --json`` give the same numbers.
"""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path
from typing import Any

import httpx
import pytest
from fs.conftest import Mount
from fs.test_mount_tree import push
from helpers import free_port
from prometheus_client.parser import text_string_to_metric_families

from artifactfs.core.chunks import CHUNK_SIZE
from artifactfs.core.digests import blob_key
from artifactfs.sdk import Api

pytestmark = pytest.mark.mount

SMALL = os.urandom(70_000)
BIG = os.urandom(2 * CHUNK_SIZE + 5_000)
FILES = {"small.bin": SMALL, "big.bin": BIG}
VERSION = "vision/dataset/mnist:v0"


def scrape(mount: Mount) -> dict[str, float]:
    """The mount's metrics, by sample name (the labelled ones by ``name{k=v,...}``)."""
    address = mount.stats()["metrics_address"]
    assert address and address.startswith("http://127.0.0.1:"), address
    r = httpx.get(address, timeout=10)
    assert r.status_code == 200, r.text
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(r.text):
        for s in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(s.labels.items()))
            out[f"{s.name}{{{labels}}}" if labels else s.name] = s.value
    return out


def stats_cli(run_cli: Any, mount: Mount, *args: str) -> Any:
    proc = run_cli("stats", str(mount.path), *args)
    assert proc.returncode == 0, proc.stderr
    return proc


def test_reads_move_misses_and_bytes_fetched_and_a_second_mount_hits(
    api: Api, tmp_path: Path, mount_factory: Any, run_cli: Any
) -> None:
    push(api, tmp_path, FILES, aliases=())
    first = mount_factory("--metrics-port", str(free_port()), name="one")
    before = scrape(first)
    assert before["artifactfs_mount_fetched_bytes_total"] == 0
    assert (first.path / VERSION / "small.bin").read_bytes() == SMALL
    assert (first.path / VERSION / "big.bin").read_bytes() == BIG
    after = scrape(first)
    assert after["artifactfs_mount_fetched_bytes_total"] >= len(SMALL) + len(BIG)
    assert after["artifactfs_mount_fetch_requests_total"] >= 2
    # the small blob and the big file's chunk index were looked up, and not found (its
    # chunks are fetched with the index, unasked on a first read)
    assert after["artifactfs_mount_cache_misses_total"] >= 2
    assert after["artifactfs_mount_cache_hits_total"] == 0
    assert after["artifactfs_mount_verification_failures_total"] == 0
    reads = after["artifactfs_mount_read_duration_seconds_count"]
    assert reads >= 2 and reads == after["artifactfs_mount_requests_total{op=read}"]
    assert after["artifactfs_mount_read_duration_seconds_sum"] > 0
    assert after[f"artifactfs_mount_info{{mountpoint={first.path},no_open=false,"
                 "read_only=false}"] == 1
    assert after["process_resident_memory_bytes"] > 0

    # the same cache, another mount: the bytes come from the disk cache, nothing fetched
    second = mount_factory("--metrics-port", "0", "--read-only", name="two")
    assert (second.path / VERSION / "small.bin").read_bytes() == SMALL
    assert (second.path / VERSION / "big.bin").read_bytes() == BIG
    warm = scrape(second)
    assert warm["artifactfs_mount_cache_hits_total"] >= 4
    assert warm["artifactfs_mount_cache_misses_total"] == 0
    assert warm["artifactfs_mount_fetched_bytes_total"] == 0

    # the stats attribute and 'artifactfs stats --json' say the same
    attribute = second.stats()
    shown = json.loads(stats_cli(run_cli, second, "--json").stdout)
    for key in ("cache_hits", "cache_misses", "fetch_bytes", "verification_failures"):
        assert shown[key] == attribute[key]
    assert shown["cache_hits"] == warm["artifactfs_mount_cache_hits_total"]
    assert shown["read_seconds"]["count"] >= 2
    text = stats_cli(run_cli, second).stdout
    assert f"mount:     {second.path} (pid {second.pid}, read-only)" in text
    assert f"{attribute['cache_hits']} hits, 0 misses (100.0% hit rate)" in text
    assert f"metrics:   {attribute['metrics_address']}" in text
    # a path inside the mount names the mount
    inside = run_cli("stats", str(second.path / VERSION), "--json")
    assert inside.returncode == 0 and json.loads(inside.stdout)["pid"] == second.pid


@pytest.mark.parametrize("transport", ["embedded"], indirect=True)
def test_a_corrupted_blob_moves_verification_failures(
    api: Api, tmp_path: Path, mount_factory: Any, config: Any
) -> None:
    art = push(api, tmp_path, FILES, aliases=())
    key = blob_key(art.manifest["small.bin"].digest)
    blob = config.store_dir / "blobs" / key[:2] / key
    damaged = bytearray(blob.read_bytes())
    damaged[100] ^= 0xFF
    os.chmod(blob, 0o644)
    blob.write_bytes(bytes(damaged))
    mount = mount_factory("--metrics-port", "0")
    with pytest.raises(OSError):
        (mount.path / VERSION / "small.bin").read_bytes()
    after = scrape(mount)
    # fetched twice, failed twice, never cached
    assert after["artifactfs_mount_verification_failures_total"] >= 2
    assert mount.stats()["verification_failures"] == after[
        "artifactfs_mount_verification_failures_total"]
    assert after["artifactfs_mount_cache_hits_total"] == 0


@pytest.mark.parametrize("transport", ["embedded"], indirect=True)
def test_a_write_into_an_alias_folder_shows_as_staged_bytes(
    api: Api, tmp_path: Path, mount_factory: Any, run_cli: Any
) -> None:
    push(api, tmp_path, {"a.txt": b"alpha"}, aliases=("best",))
    mount = mount_factory("--metrics-port", "0")
    before = scrape(mount)
    assert before["artifactfs_mount_staged_bytes"] == 0
    (mount.path / "vision/dataset/mnist:best/new.bin").write_bytes(b"n" * 12_345)
    after = scrape(mount)
    assert after["artifactfs_mount_staged_files"] == 1
    assert after["artifactfs_mount_staged_bytes"] == 12_345
    assert after["artifactfs_mount_staged_folders"] == 1
    text = stats_cli(run_cli, mount).stdout
    assert "staged:    1 file, 12.1 KiB in 1 folder" in text


@pytest.mark.parametrize("transport", ["embedded"], indirect=True)
def test_metrics_port_in_use_is_one_line_and_no_mount(
    tmp_path: Path, run_cli: Any, mount_factory: Any
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        target = tmp_path / "mnt"
        target.mkdir()
        proc = run_cli("mount", str(target), "--metrics-port", str(port))
    assert proc.returncode == 1
    assert proc.stderr.strip() == (f"error: --metrics-port {port} on 127.0.0.1 is already "
                                   "in use; choose another (0 picks a free one)")
    assert not os.path.ismount(target)
    # no --metrics-port: nothing served, and 'stats' says how to have it
    mount = mount_factory()
    assert mount.stats()["metrics_address"] is None
    assert "metrics:   not served (mount with --metrics-port PORT)" in stats_cli(
        run_cli, mount).stdout


@pytest.mark.parametrize("transport", ["embedded"], indirect=True)
def test_stats_of_a_folder_that_is_no_mount_is_one_line(tmp_path: Path, run_cli: Any) -> None:
    proc = run_cli("stats", str(tmp_path))
    assert proc.returncode == 1
    assert proc.stderr.strip() == (f"error: {tmp_path} is not an artifactfs mount, nor inside "
                                   "one (mount one with 'artifactfs mount MOUNTPOINT')")
