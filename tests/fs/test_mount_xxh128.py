"""A real mount of XXH128 versions: reads checked against both digests, and a save in an
XXH128 version gives its new files XXH128 digests, as wandb gives every file added to such
an artifact."""

from __future__ import annotations

from pathlib import Path

import pytest
from fs.conftest import Mount
from fs.test_mount_writes import save
from helpers import rand_bytes
from test_xxh128 import FILES, xxh_artifact

from artifactfs.core.chunks import CHUNK_SIZE
from artifactfs.core.digests import XXH128, artifact_digest, md5_b64, xxh128_b64
from artifactfs.sdk import Api


@pytest.mark.mount
def test_mount_reads_and_saves_xxh128_versions(
    api: Api, tmp_path: Path, mounted: Mount, run_cli
) -> None:
    big = rand_bytes(CHUNK_SIZE * 3 + 11, seed=2)
    files = {**FILES, "big.bin": big}
    xxh_artifact(api, tmp_path, files)
    folder = mounted.path / "proj" / "dataset" / "data:latest"
    for path, data in files.items():
        assert (folder / path).read_bytes() == data
    with open(folder / "big.bin", "rb") as f:
        f.seek(CHUNK_SIZE * 2 - 4)
        assert f.read(8) == big[CHUNK_SIZE * 2 - 4 : CHUNK_SIZE * 2 + 4]
    (folder / "new.txt").write_bytes(b"saved in the mount")
    assert "v1" in save(run_cli, folder)
    v1 = api.artifact("proj/data:v1")
    entry = v1.manifest["new.txt"]
    assert (entry.digest, entry.algorithm) == (xxh128_b64(b"saved in the mount"), XXH128)
    assert entry.stored_digest == md5_b64(b"saved in the mount")
    assert v1.manifest.digest_algorithm == XXH128
    assert v1.digest == artifact_digest([(e.path, e.digest) for e in v1.manifest], XXH128)
    v1_folder = mounted.path / "proj" / "dataset" / "data:v1"
    assert (v1_folder / "new.txt").read_bytes() == b"saved in the mount"
