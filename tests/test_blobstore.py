"""The BlobStore interface, the same tests for both backends: the folder and S3 (a real
SeaweedFS), and the S3 store's uploads straight to storage, by a client that lies."""

from __future__ import annotations

import base64
import hashlib
import io
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from helpers import rand_bytes
from seaweed import SeaweedS3

from artifactfs.core.chunks import CHUNK_SIZE
from artifactfs.core.digests import blob_key, md5_b64
from artifactfs.core.errors import DigestMismatch, InvalidName, InvalidRequest, NotFound
from artifactfs.store.blobs import BlobDir
from artifactfs.store.blobstore import BatchTooLarge, BlobStore
from artifactfs.store.s3 import S3BlobStore, parse_s3_url

SMALL = b"hello"
LARGE = rand_bytes(2 * CHUNK_SIZE + 123, seed=7)  # three chunks, an index


@pytest.fixture(params=["folder", "s3"])
def blobs(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[BlobStore]:
    if request.param == "folder":
        yield BlobDir(tmp_path / "blobs")
    else:
        yield request.getfixturevalue("s3_blobs")


def test_put_then_read_back(blobs: BlobStore) -> None:
    small, large = md5_b64(SMALL), md5_b64(LARGE)
    assert blobs.missing([small, large]) == {small, large}
    blobs.put_stream(io.BytesIO(SMALL), small)
    blobs.put_stream(io.BytesIO(LARGE), large)
    assert blobs.has(small) and blobs.has(large)
    assert blobs.sizes([small, large, md5_b64(b"other")]) == {
        small: 5, large: len(LARGE), md5_b64(b"other"): None}
    assert blobs.read(small) == SMALL
    assert blobs.read(large, CHUNK_SIZE - 3, CHUNK_SIZE + 5) == LARGE[CHUNK_SIZE - 3:CHUNK_SIZE + 5]
    assert blobs.read(large, len(LARGE) - 2) == LARGE[-2:]
    assert blobs.read(small, 5, 9) == b""  # past the end: nothing, as from a file
    stream = blobs.open_range(large, 10, CHUNK_SIZE + 10)
    try:
        got = b"".join(iter(lambda: stream.read(1 << 16), b""))
    finally:
        stream.close()
    assert got == LARGE[10:CHUNK_SIZE + 10]
    assert blobs.read_many([small, md5_b64(b"nope"), large]) == [SMALL, None, LARGE]
    with pytest.raises(BatchTooLarge):
        blobs.read_many([small, large], max_bytes=len(LARGE))
    assert blobs.chunk_index(small) is None
    index = blobs.chunk_index(large)
    assert index is not None and index.count == 3 and index.check(2, LARGE[2 * CHUNK_SIZE:])
    assert sorted(blobs.keys()) == sorted([small, large])


def test_wrong_bytes_never_become_visible(blobs: BlobStore) -> None:
    claimed = md5_b64(LARGE)
    with pytest.raises(DigestMismatch):
        blobs.put_stream(io.BytesIO(LARGE[:-1] + b"x"), claimed)
    assert not blobs.has(claimed)
    assert list(blobs.keys()) == []
    with pytest.raises(NotFound):
        blobs.chunk_index(claimed)
    with pytest.raises(NotFound):
        blobs.read(claimed)
    with pytest.raises(NotFound):
        blobs.size(claimed)


def test_s3_chunk_index_is_an_object_beside_the_blob(s3_blobs: S3BlobStore,
                                                     seaweed: SeaweedS3) -> None:
    digest = md5_b64(LARGE)
    s3_blobs.put_stream(io.BytesIO(LARGE), digest)
    key = blob_key(digest)
    names = {o["Key"] for o in seaweed.client().list_objects_v2(
        Bucket=s3_blobs.bucket, Prefix=s3_blobs.prefix + "/")["Contents"]}
    assert names == {f"{s3_blobs.prefix}/blobs/{key[:2]}/{key}",
                     f"{s3_blobs.prefix}/chunks/{key[:2]}/{key}.idx"}
    # lost: built again from the blob, its digest checked
    seaweed.client().delete_object(Bucket=s3_blobs.bucket,
                                   Key=f"{s3_blobs.prefix}/chunks/{key[:2]}/{key}.idx")
    index = s3_blobs.chunk_index(digest)
    assert index is not None and index.count == 3


def test_s3_urls() -> None:
    assert parse_s3_url("s3://bucket/a/b/") == ("bucket", "a/b")
    assert parse_s3_url("s3://bucket") == ("bucket", "")
    for bad in ("file:///x", "s3:///prefix", "s3://b/p?endpoint=x", "bucket/prefix"):
        with pytest.raises(InvalidName):
            parse_s3_url(bad)


# ---- uploads straight to storage, with presigned URLs ------------------------------------------


def _put_parts(plan: dict, data: bytes, *, tamper: int | None = None) -> list[int]:
    statuses = []
    for part in plan["parts"]:
        body = data[part["start"]:part["end"]]
        if tamper == part["number"]:
            body = bytes([body[0] ^ 1]) + body[1:]
        statuses.append(httpx.put(part["url"], content=body, headers=part["headers"],
                                  timeout=30).status_code)
    return statuses


def test_presigned_single_put(s3_blobs: S3BlobStore) -> None:
    data = rand_bytes(3000, seed=1)
    digest = md5_b64(data)
    plan = s3_blobs.start_upload(digest, len(data), lifetime=60).to_dict()
    assert len(plan["parts"]) == 1 and plan["parts"][0]["headers"] == {"Content-MD5": digest}
    assert _put_parts(plan, data) == [200]
    assert not s3_blobs.has(digest)  # not before the server has looked
    result = s3_blobs.finish_upload(digest, plan["upload_id"])
    assert (result.digest, result.size) == (digest, len(data))
    assert s3_blobs.read(digest) == data
    assert list(s3_blobs.keys()) == [digest]  # the upload's own object is gone


def test_presigned_put_of_other_bytes_is_refused_by_storage(s3_blobs: S3BlobStore) -> None:
    data = rand_bytes(3000, seed=2)
    digest = md5_b64(data)
    plan = s3_blobs.start_upload(digest, len(data), lifetime=60).to_dict()
    part = plan["parts"][0]
    # other bytes under the right header: storage checks the MD5 (400 BadDigest)
    liar = httpx.put(part["url"], content=data[:-1] + b"!", headers=part["headers"])
    assert liar.status_code == 400
    # another MD5 header: not what was signed (403)
    other = base64.b64encode(hashlib.md5(b"x").digest()).decode()
    assert httpx.put(part["url"], content=b"x", headers={"Content-MD5": other}
                     ).status_code == 403
    with pytest.raises(NotFound):
        s3_blobs.finish_upload(digest, plan["upload_id"])
    assert not s3_blobs.has(digest)


def test_multipart_upload_checked_before_visible(s3_blobs: S3BlobStore) -> None:
    data = rand_bytes(9 << 20, seed=3)  # two parts of 8 MiB and 1 MiB
    digest = md5_b64(data)
    plan = s3_blobs.start_upload(digest, len(data), lifetime=60).to_dict()
    assert [p["number"] for p in plan["parts"]] == [1, 2]
    # a client that sends other bytes in a part: storage takes them (a part carries no
    # digest the server knew), the server's check does not
    assert _put_parts(plan, data, tamper=2) == [200, 200]
    with pytest.raises(DigestMismatch):
        s3_blobs.finish_upload(digest, plan["upload_id"])
    assert not s3_blobs.has(digest) and list(s3_blobs.keys()) == []
    # honest this time
    plan = s3_blobs.start_upload(digest, len(data), lifetime=60).to_dict()
    assert _put_parts(plan, data) == [200, 200]
    result = s3_blobs.finish_upload(digest, plan["upload_id"])
    assert result.chunk_index is not None
    assert s3_blobs.chunk_index(digest) == result.chunk_index
    assert s3_blobs.read(digest, 8 << 20, (8 << 20) + 10) == data[8 << 20:(8 << 20) + 10]


def test_parts_that_cannot_be_joined_are_a_client_error(s3_blobs: S3BlobStore) -> None:
    data = rand_bytes(9 << 20, seed=4)
    digest = md5_b64(data)
    plan = s3_blobs.start_upload(digest, len(data), lifetime=60).to_dict()
    first, second = plan["parts"]
    # a first part of one byte: S3 joins no part under 5 MiB but the last
    assert httpx.put(first["url"], content=data[:1]).status_code == 200
    assert httpx.put(second["url"], content=data[second["start"]:]).status_code == 200
    with pytest.raises((InvalidRequest, DigestMismatch)):
        s3_blobs.finish_upload(digest, plan["upload_id"])
    assert not s3_blobs.has(digest)


def test_finish_of_an_upload_never_made(s3_blobs: S3BlobStore) -> None:
    digest = md5_b64(b"abc")
    with pytest.raises(InvalidRequest):
        s3_blobs.finish_upload(digest, "../../blobs/x")
    with pytest.raises(NotFound):
        s3_blobs.finish_upload(digest, "A" * 24)
