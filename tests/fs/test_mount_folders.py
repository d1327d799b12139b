"""A mount fetches a version one folder at a time: reading a file fetches its folder and
the ones above it, never the manifest; a walk of every folder fetches each once, many in
one request. Counted by the stats xattr, on both transports."""

from __future__ import annotations

import os
import time
from pathlib import Path

from fs.conftest import Mount, drop_caches
from helpers import make_tree
from scale_out import scale_out

from artifactfs.sdk import Api, Artifact

FOLDERS = 40
FILES = {
    "top.txt": b"top\n",
    "f05/sub/deep.bin": b"deep" * 100,
    **{f"f{i:02d}/x{j}.bin": bytes([i, j]) * (50 + i) for i in range(FOLDERS) for j in range(3)},
}
ALL_FOLDERS = 1 + FOLDERS + 1  # the root, f00..f39, f05/sub


def push(api: Api, tmp_path: Path) -> Artifact:
    src = make_tree(tmp_path / f"src-{time.monotonic_ns()}", FILES)
    art = Artifact("many", "dataset")
    art._client = api
    art.add_dir(src)
    return art.save(project="vision")


@scale_out
def test_a_read_fetches_its_folders_and_a_walk_fetches_each_folder_once(
        api: Api, tmp_path: Path, mounted: Mount) -> None:
    push(api, tmp_path)
    version = mounted.path / "vision/dataset/many:v0"
    # one file of a folder never listed: the root and that folder, nothing else
    assert (version / "f30/x1.bin").read_bytes() == FILES["f30/x1.bin"]
    stats = mounted.stats()
    assert (stats["folder_fetches"], stats["folder_requests"]) == (2, 2)
    assert stats["manifest_fetches"] == 0
    assert sorted(os.listdir(version)) == [*(f"f{i:02d}" for i in range(FOLDERS)), "top.txt"]
    assert mounted.stats()["folder_fetches"] == 2  # the root was at hand
    # every folder, in order, as find does: each fetched once, a sweep's next ones together
    found = {}
    for top, _, names in os.walk(version):
        for name in names:
            path = Path(top) / name
            found[str(path.relative_to(version))] = path.read_bytes()
    assert found == FILES
    stats = mounted.stats()
    assert stats["folder_fetches"] == ALL_FOLDERS
    assert stats["folder_requests"] < ALL_FOLDERS // 3
    assert stats["manifest_fetches"] == 0
    # with the kernel's entries dropped, it asks again: answered from memory
    drop_caches()
    assert (version / "f05/sub/deep.bin").read_bytes() == FILES["f05/sub/deep.bin"]
    assert sorted(os.listdir(version / "f39")) == ["x0.bin", "x1.bin", "x2.bin"]
    assert mounted.stats()["folder_fetches"] == ALL_FOLDERS
    assert mounted.alive()


def test_a_name_that_is_no_file_or_folder_is_enoent_and_fetches_nothing_more(
        api: Api, tmp_path: Path, mounted: Mount) -> None:
    push(api, tmp_path)
    version = mounted.path / "vision/dataset/many:v0"
    for missing in ("nope", "f01/nope", "top.txt/x", "f05/sub/nope/deeper"):
        assert not (version / missing).exists()
    stats = mounted.stats()
    # the root, f01, f05 and f05/sub: a missing name needs its folder, and no more
    assert (stats["folder_fetches"], stats["manifest_fetches"]) == (4, 0)
