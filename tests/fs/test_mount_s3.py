"""A mount of a registry whose blobs are in S3 (a real SeaweedFS behind a real server): its
reads follow the registry's redirects to presigned URLs, byte for byte and verified."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
from fs.conftest import Mount
from fs.test_mount_tree import push

from artifactfs.core.chunks import CHUNK_SIZE
from artifactfs.core.digests import blob_key, md5_b64
from artifactfs.sdk import Api

FILES = {
    "small.txt": b"hello, world\n" * 100,
    "big.bin": os.urandom(3 * CHUNK_SIZE + 12345),
}


@pytest.mark.parametrize("transport", ["s3"], indirect=True)
def test_a_mount_reads_a_version_whose_blobs_are_in_s3(
    api: Api, tmp_path: Path, mount_factory, transport: str
) -> None:
    push(api, tmp_path, FILES)
    mount: Mount = mount_factory()
    base = mount.path / "vision/dataset/mnist:v0"
    for rel, data in FILES.items():
        got = (base / rel).read_bytes()
        assert hashlib.sha256(got).digest() == hashlib.sha256(data).digest(), rel
    with open(base / "big.bin", "rb") as f:  # a range in the middle, past the first chunk
        f.seek(2 * CHUNK_SIZE + 5)
        assert f.read(100) == FILES["big.bin"][2 * CHUNK_SIZE + 5:2 * CHUNK_SIZE + 105]
    log = (tmp_path / "server.log").read_text()
    # the big file's chunks came from storage by redirect, not from the server
    assert f'"GET /api/v1/blobs/{blob_key(md5_b64(FILES["big.bin"]))}" 307' in log
    assert f'"GET /api/v1/blobs/{blob_key(md5_b64(FILES["big.bin"]))}" 206' not in log
    assert mount.alive()
