"""A mount reading ``wandb-artifact://`` references: the file shows its target's size and
reads its target's bytes, verified (small files whole, large ones by chunk); a reference
whose target version was deleted is EIO with a log line naming the entry, not ENOENT and not
other bytes. On both transports."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest
from fs.conftest import Mount, drop_caches
from fs.test_mount_tree import push

from artifactfs.core.chunks import CHUNK_SIZE
from artifactfs.sdk import Api, Artifact

SOURCE = {
    "labels.txt": b"cat\ndog\n",
    "deep/big.bin": os.urandom(3 * CHUNK_SIZE + 5),  # chunked through the reference
    "gone.txt": b"read only after its version is deleted\n",
}


def test_a_mount_reads_artifact_references_as_their_targets(
        api: Api, mounted: Mount, tmp_path: Path) -> None:
    source = push(api, tmp_path, SOURCE, name="source", aliases=())
    derived = Artifact("derived", "dataset")
    derived._client = api
    derived.add_reference(source.get_entry("labels.txt"), name="refs/labels.txt")
    derived.add_reference(source.get_entry("deep/big.bin"))
    derived.add_reference(source.get_entry("gone.txt"))
    with derived.new_file("own.txt", mode="w") as f:
        f.write("own\n")
    derived.save(project="vision")

    folder = mounted.path / "vision/dataset/derived:v0"
    assert sorted(os.listdir(folder)) == ["big.bin", "gone.txt", "own.txt", "refs"]
    assert (folder / "big.bin").stat().st_size == len(SOURCE["deep/big.bin"])
    assert (folder / "refs/labels.txt").read_bytes() == SOURCE["labels.txt"]
    with open(folder / "big.bin", "rb") as f:  # a range across a chunk boundary, then all
        f.seek(CHUNK_SIZE - 3)
        assert f.read(10) == SOURCE["deep/big.bin"][CHUNK_SIZE - 3:CHUNK_SIZE + 7]
    assert (folder / "big.bin").read_bytes() == SOURCE["deep/big.bin"]
    assert (folder / "own.txt").read_bytes() == b"own\n"

    # the target version deleted: the reference not read before is EIO, said in the log
    api.artifact("vision/source:v0").delete(delete_aliases=True)
    drop_caches()
    with pytest.raises(OSError) as info:
        (folder / "gone.txt").read_bytes()
    assert info.value.errno == errno.EIO
    log = mounted.log_text()
    assert "gone.txt" in log and source.id in log and "Traceback" not in log
    assert mounted.alive()
