"""Ordinary tools and Python I/O against a real mount."""

from __future__ import annotations

import hashlib
import io
import mmap
import multiprocessing
import os
import subprocess
import tarfile
from pathlib import Path

import numpy as np
import pytest
from fs.conftest import Mount
from fs.test_mount_tree import push

from artifactfs.core.chunks import CHUNK_SIZE
from artifactfs.sdk import Api

ARRAY = np.arange(600_000, dtype=np.float64)  # 4.8 MB: a chunked file
FILES = {
    "array.npy": ARRAY.tobytes(),
    "docs/readme.md": b"# data\n",
    **{f"shards/shard-{i:02d}.bin": os.urandom(50_000 + i) for i in range(8)},
    "big.bin": os.urandom(3 * CHUNK_SIZE + 99),
}


@pytest.fixture
def version(api: Api, tmp_path: Path, mounted: Mount) -> Path:
    push(api, tmp_path, FILES)
    return mounted.path / "vision/dataset/mnist:latest"


def run(*args: str, cwd: Path | None = None) -> str:
    return subprocess.run(args, capture_output=True, text=True, check=True, cwd=cwd).stdout


def test_ls_find_du(version: Path):
    listing = run("ls", "-l", str(version / "shards"))
    assert listing.count("shard-") == 8 and "50000" in listing
    found = run("find", str(version), "-type", "f").split()
    assert sorted(os.path.relpath(p, version) for p in found) == sorted(FILES)
    du = int(run("du", "-s", "-B1", "--apparent-size", str(version)).split()[0])
    assert du >= sum(len(d) for d in FILES.values())


def test_cat_and_sha256sum(version: Path):
    assert run("cat", str(version / "docs/readme.md")) == "# data\n"
    sums = run("sha256sum", *(str(version / rel) for rel in FILES))
    for line in sums.splitlines():
        digest, path = line.split(maxsplit=1)
        assert digest == hashlib.sha256(FILES[os.path.relpath(path, version)]).hexdigest()


def test_cp_r_and_rsync_a(version: Path, tmp_path: Path):
    run("cp", "-r", str(version), str(tmp_path / "copy"))
    run("rsync", "-a", f"{version}/", str(tmp_path / "synced"))
    for target in ("copy", "synced"):
        for rel, data in FILES.items():
            assert (tmp_path / target / rel).read_bytes() == data, (target, rel)


def test_tar_c(version: Path):
    out = subprocess.run(["tar", "c", "-C", str(version), "."], capture_output=True,
                         check=True).stdout
    with tarfile.open(fileobj=io.BytesIO(out)) as tar:
        got = {m.name.removeprefix("./"): tar.extractfile(m).read()
               for m in tar.getmembers() if m.isfile()}
    assert got == FILES


def test_getfattr_on_a_file(version: Path):
    out = run("getfattr", "-d", str(version / "big.bin"))
    assert "user.artifactfs.digest=" in out


def test_python_open_seek_and_mmap(version: Path):
    data = FILES["big.bin"]
    with open(version / "big.bin", "rb") as f:
        f.seek(CHUNK_SIZE - 10)
        assert f.read(20) == data[CHUNK_SIZE - 10 : CHUNK_SIZE + 10]
        f.seek(-5, os.SEEK_END)
        assert f.read() == data[-5:]
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
            assert len(m) == len(data)
            assert m[2 * CHUNK_SIZE : 2 * CHUNK_SIZE + 4096] == data[
                2 * CHUNK_SIZE : 2 * CHUNK_SIZE + 4096
            ]
            assert hashlib.md5(m).digest() == hashlib.md5(data).digest()


def test_numpy_memmap(version: Path):
    arr = np.memmap(version / "array.npy", dtype=np.float64, mode="r")
    assert arr.shape == ARRAY.shape
    assert arr[123_456] == 123_456.0
    assert np.array_equal(arr, ARRAY)
    del arr


def _digest(path: str) -> tuple[str, str]:
    with open(path, "rb") as f:
        return path, hashlib.sha256(f.read()).hexdigest()


def test_loader_with_four_workers(version: Path):
    paths = sorted(str(p) for p in (version / "shards").iterdir())
    with multiprocessing.get_context("spawn").Pool(4) as pool:
        results = dict(pool.map(_digest, paths * 3))
    for path, digest in results.items():
        rel = os.path.relpath(path, version)
        assert digest == hashlib.sha256(FILES[rel]).hexdigest()
