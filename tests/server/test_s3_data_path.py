"""The data path with blobs in S3: a real ``artifactfs serve`` whose blobs are in a real
SeaweedFS, reached through a loopback relay that records what storage received.

Reads are redirected (307) to presigned URLs that clients follow without the API key; uploads
go straight to storage by presigned PUT (with Content-MD5) or multipart, checked by the server
before the blob counts; a client that lies about its bytes never gets a blob under the digest
it claimed. Entity isolation holds as behind a blob folder. Storage stopped: a clear error and
no partial version. No signature or secret ever reaches a log.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from helpers import ARTIFACTFS, rand_bytes
from relay import TcpRelay
from seaweed import SeaweedS3
from server.conftest import ENTITY, Registry, clean_env, running_registry

from artifactfs.core.chunks import CHUNK_SIZE
from artifactfs.core.digests import ContentDigest, ContentHasher, blob_key, md5_b64
from artifactfs.core.errors import DigestMismatch, InvalidManifest, RegistryUnavailable
from artifactfs.core.manifest import Manifest
from artifactfs.registry.http import HttpRegistry

SMALL = b"small file\n"
MEDIUM = rand_bytes(3 * CHUNK_SIZE + 7, seed=11)  # one presigned PUT, read back for its index
LARGE = rand_bytes(9 << 20, seed=12)  # multipart: 8 MiB and 1 MiB


@pytest.fixture
def storage(seaweed: SeaweedS3) -> Iterator[TcpRelay]:
    proxy = TcpRelay(seaweed.port)
    try:
        yield proxy
    finally:
        proxy.stop()


def _s3_env(seaweed: SeaweedS3, storage: TcpRelay) -> dict[str, str]:
    return {**seaweed.env, "AWS_ENDPOINT_URL": storage.endpoint}


@pytest.fixture
def s3_registry(tmp_path: Path, seaweed: SeaweedS3, storage: TcpRelay,
                s3_url: str) -> Iterator[Registry]:
    with running_registry(tmp_path, blobs_url=s3_url, env=_s3_env(seaweed, storage)) as reg:
        yield reg


@pytest.fixture
def client(s3_registry: Registry) -> Iterator[HttpRegistry]:
    c = HttpRegistry(s3_registry.url, s3_registry.rw_key)
    try:
        yield c
    finally:
        c.close()


def _files(tmp_path: Path, files: dict[str, bytes]) -> dict[str, Path]:
    out = {}
    for name, data in files.items():
        out[name] = tmp_path / name
        out[name].write_bytes(data)
    return out


def _manifest(files: dict[str, bytes]) -> Manifest:
    return Manifest.from_dict(Registry.manifest_for(files))


def _hashed(data: bytes) -> ContentDigest:
    hasher = ContentHasher()
    hasher.update(data)
    return hasher.result()


def _no_secrets(text: str, seaweed: SeaweedS3, *keys: str) -> None:
    assert seaweed.secret_key not in text
    assert "X-Amz-Signature=" not in text
    for key in keys:
        assert key not in text


def test_blobs_go_to_storage_and_back_by_presigned_url(
    s3_registry: Registry, client: HttpRegistry, storage: TcpRelay, seaweed: SeaweedS3,
    tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    files = {"small.txt": SMALL, "medium.bin": MEDIUM, "large.bin": LARGE}
    for name, path in _files(tmp_path, files).items():
        client.upload_blob(path, md5_b64(files[name]))
    info = client.commit(entity=ENTITY, project="p", name="data", type_="dataset",
                         manifest=_manifest(files))
    assert info.version == "v0"
    # the bytes went to storage, not through the server: no PUT of a blob in its log
    log = s3_registry.server.log_text()
    assert '"PUT /api/v1/blobs/' not in log
    assert log.count("/uploaded") == 3
    sent = storage.sent().lower()
    assert sent.count(b"put /") >= 4  # one single PUT each for two, two parts for one

    medium, large = md5_b64(MEDIUM), md5_b64(LARGE)
    r = s3_registry.rw.get(f"/blobs/{blob_key(large)}", follow_redirects=False)
    assert r.status_code == 307 and r.headers["location"].startswith(storage.endpoint)
    assert r.headers["cache-control"] == "no-store"
    assert client.read_blob(large, 8 << 20, (8 << 20) + 100) == LARGE[8 << 20:(8 << 20) + 100]
    assert client.read_blob(medium, 5, CHUNK_SIZE + 5) == MEDIUM[5:CHUNK_SIZE + 5]
    # chunk indexes built by the server from what storage holds
    assert client.chunk_index(large) == _hashed(LARGE).chunk_index
    assert client.chunk_index(md5_b64(SMALL)) is None
    # small files in batches still come from the server
    assert client.read_blobs([md5_b64(SMALL), medium]) == [SMALL, MEDIUM]
    head = s3_registry.rw.head(f"/blobs/{blob_key(medium)}")
    assert head.status_code == 200 and head.headers["content-length"] == str(len(MEDIUM))

    sent = storage.sent()
    assert b"range: bytes=8388608-8388707" in sent.lower()  # the client's Range went along
    assert b"authorization: bearer" not in sent.lower()
    assert s3_registry.rw_key.encode() not in sent
    _no_secrets(s3_registry.server.log_text(), seaweed, s3_registry.rw_key)
    _no_secrets(caplog.text, seaweed, s3_registry.rw_key)
    assert "HTTP Request: GET" in caplog.text  # httpx did log the redirect it followed


def test_entity_isolation_holds_for_blobs_in_s3(s3_registry: Registry) -> None:
    s3_registry.commit("p", "mine", {"a": SMALL})
    digest = md5_b64(SMALL)
    path = f"/blobs/{blob_key(digest)}"
    other = s3_registry.other
    assert other.get(path, follow_redirects=False).status_code == 404  # no redirect
    assert other.get(path + "/chunks").status_code == 404
    assert other.post("/blobs/missing", json={"digests": [digest]}).json() == {
        "missing": [digest]}
    # a digest alone does not let another entity name it in a commit
    body = {"type": "dataset", "manifest": Registry.manifest_for({"a": SMALL})}
    r = other.post(Registry.collection("p", "theirs", "other") + "/versions", json=body)
    assert r.status_code == 400 and "was not uploaded" in r.text
    # nor does an upload it never made: the plan's upload id is the uploader's alone
    plan = other.post(path + "/uploads", json={"size": len(SMALL)}).json()
    assert plan["method"] == "direct"
    r = other.post(path + "/uploaded", json={"upload_id": plan["upload_id"]})
    assert r.status_code == 404
    assert other.post("/blobs/missing", json={"digests": [digest]}).json()["missing"]
    # the owner is told there is nothing to upload
    assert s3_registry.rw.post(path + "/uploads", json={"size": len(SMALL)}).json() == {
        "digest": digest, "stored": False}
    # a read-only key gets no upload addresses
    assert s3_registry.ro.post(path + "/uploads", json={"size": 1}).status_code == 403


def test_a_lying_client_never_gets_a_blob_under_the_claimed_digest(
    s3_registry: Registry, client: HttpRegistry, tmp_path: Path,
) -> None:
    rw = s3_registry.rw
    # a single PUT: other bytes under the promised Content-MD5 are refused by storage
    claimed = md5_b64(SMALL)
    plan = rw.post(f"/blobs/{blob_key(claimed)}/uploads", json={"size": len(SMALL)}).json()
    part = plan["parts"][0]
    assert part["headers"] == {"Content-MD5": claimed}
    lie = httpx.put(part["url"], content=b"not the small file", headers=part["headers"])
    assert lie.status_code == 400 and b"BadDigest" in lie.content
    other_md5 = base64.b64encode(hashlib.md5(b"lie").digest()).decode()
    assert httpx.put(part["url"], content=b"lie", headers={"Content-MD5": other_md5}
                     ).status_code == 403  # the signed header cannot be swapped
    r = rw.post(f"/blobs/{blob_key(claimed)}/uploaded", json={"upload_id": plan["upload_id"]})
    assert r.status_code == 404
    # multipart: a part with other bytes is taken by storage, and caught by the server
    big = md5_b64(LARGE)
    plan = rw.post(f"/blobs/{blob_key(big)}/uploads", json={"size": len(LARGE)}).json()
    assert len(plan["parts"]) == 2
    for p in plan["parts"]:
        body = LARGE[p["start"]:p["end"]]
        if p["number"] == 2:
            body = b"X" + body[1:]
        assert httpx.put(p["url"], content=body, headers=p["headers"]).status_code == 200
    r = rw.post(f"/blobs/{blob_key(big)}/uploaded", json={"upload_id": plan["upload_id"]})
    assert r.status_code == 400 and r.json()["error"]["type"] == "DigestMismatch"
    assert rw.post("/blobs/missing", json={"digests": [claimed, big]}).json()[
        "missing"] == sorted([claimed, big])
    for name, data in (("small", SMALL), ("large", LARGE)):
        with pytest.raises(InvalidManifest, match="not uploaded"):
            client.commit(entity=ENTITY, project="p", name=name, type_="dataset",
                          manifest=_manifest({name: data}))
    # the client, asked to upload a file under a digest it does not have
    path = tmp_path / "changed"
    path.write_bytes(b"changed after hashing")
    with pytest.raises(DigestMismatch):
        client.upload_blob(path, claimed)
    assert client.missing_blobs([claimed]) == {claimed}
    # a malformed request is a 400, not a 500
    assert rw.post(f"/blobs/{blob_key(big)}/uploaded", json={"upload_id": "../x"}
                   ).status_code == 400
    assert rw.post(f"/blobs/{blob_key(big)}/uploads", json={"size": -1}).status_code == 400
    assert rw.post(f"/blobs/{blob_key(big)}/uploads", json={}).status_code == 400


@pytest.fixture
def short_lived(tmp_path: Path, seaweed: SeaweedS3, storage: TcpRelay, s3_url: str
                ) -> Iterator[tuple[Registry, HttpRegistry]]:
    """A server whose blob addresses live 1 s, holding MEDIUM, and a client of it."""
    with running_registry(tmp_path, "--blob-url-lifetime", "1", blobs_url=s3_url,
                          env=_s3_env(seaweed, storage)) as reg:
        reg.commit("p", "d", {"m": MEDIUM})
        client = HttpRegistry(reg.url, reg.rw_key)
        try:
            yield reg, client
        finally:
            client.close()


def _redirects(reg: Registry, digest: str) -> int:
    return reg.server.log_text().count(f"GET /api/v1/blobs/{blob_key(digest)}\" 307")


def test_an_expired_address_is_asked_for_again(
    short_lived: tuple[Registry, HttpRegistry],
) -> None:
    reg, client = short_lived
    digest = md5_b64(MEDIUM)
    assert client.read_blob(digest, 0, 10) == MEDIUM[:10]
    time.sleep(2.1)  # the remembered address has expired: storage answers 403
    assert client.read_blob(digest, 10, 20) == MEDIUM[10:20]
    assert _redirects(reg, digest) == 2


def test_an_address_expired_on_the_way_is_asked_for_again_once(
    short_lived: tuple[Registry, HttpRegistry], storage: TcpRelay,
) -> None:
    reg, client = short_lived
    storage.delay_next = 2.0  # the first address reaches storage expired: 403
    digest = md5_b64(MEDIUM)
    assert client.read_blob(digest, 0, 10) == MEDIUM[:10]
    assert _redirects(reg, digest) == 2


def test_storage_stopped_is_a_clear_error_and_no_partial_version(
    s3_registry: Registry, client: HttpRegistry, storage: TcpRelay, seaweed: SeaweedS3,
    tmp_path: Path,
) -> None:
    s3_registry.commit("p", "d", {"a": SMALL})
    storage.stop()
    path = tmp_path / "new"
    path.write_bytes(MEDIUM)
    started = time.monotonic()
    with pytest.raises(RegistryUnavailable, match="blob storage"):
        client.upload_blob(path, md5_b64(MEDIUM))
    with pytest.raises(RegistryUnavailable, match="blob storage"):
        client.commit(entity=ENTITY, project="p", name="d", type_="dataset",
                      manifest=_manifest({"a": SMALL, "new": MEDIUM}))
    with pytest.raises(RegistryUnavailable):
        client.read_blob(md5_b64(SMALL), 0, 5)
    assert time.monotonic() - started < 60
    assert [v.version for v in client.list_versions(ENTITY, "p", "d")] == ["v0"]
    log = s3_registry.server.log_text()
    assert "Traceback" not in log and " 500 " not in log
    _no_secrets(log, seaweed, s3_registry.rw_key)


def test_serve_refuses_a_bad_blob_store_clearly(tmp_path: Path) -> None:
    env = {**clean_env(), "ARTIFACTFS_DB": f"sqlite:///{tmp_path / 'registry.sqlite3'}",
           "ARTIFACTFS_BLOBS": "ftp://bucket/prefix"}
    cmd = [ARTIFACTFS, "serve", "--port", "1"]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode != 0 and "s3://BUCKET/PREFIX" in done.stderr
    assert "Traceback" not in done.stderr
    env["ARTIFACTFS_BLOBS"] = "s3://bucket/prefix"
    env["ARTIFACTFS_BLOB_URL_SECRET"] = "a-secret-of-enough-length"
    done = subprocess.run([*cmd, "--blob-url-base", "http://127.0.0.1:1/"], env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode != 0 and "presigned URL" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_large_upload_gets_addresses_that_outlive_it(s3_registry: Registry) -> None:
    """Every part's address is signed when the upload starts: for 5 GB the last must still
    work after 1,000 s at 5 MB/s, past the 600 s a read's address gets."""
    size = 5 * 10**9
    key = blob_key(md5_b64(b"a large file, never sent"))
    plan = s3_registry.rw.post(f"/blobs/{key}/uploads", json={"size": size}).json()
    parts = plan["parts"]
    assert parts[-1]["end"] == size and len(parts) == -(-size // (8 << 20))
    assert "X-Amz-Expires=1060&" in parts[-1]["url"]


def test_a_manifest_committed_by_reference_goes_to_storage_too(
    s3_registry: Registry, storage: TcpRelay, tmp_path: Path,
) -> None:
    """A manifest past the client's inline bound is a blob like any other: uploaded by
    presigned PUT, checked, then read from the bucket by the server for the commit."""
    client = HttpRegistry(s3_registry.url, s3_registry.rw_key, inline_manifest_max=16 << 10)
    try:
        client.upload_blob(_files(tmp_path, {"small.txt": SMALL})["small.txt"], md5_b64(SMALL))
        manifest = Manifest.from_dict(Registry.manifest_for(
            {f"d{i // 100:04d}/{i}.txt": SMALL for i in range(2000)}))
        assert len(manifest.to_json()) > 16 << 10  # past the bound: committed by reference
        info = client.commit(entity=ENTITY, project="p", name="many", type_="dataset",
                             manifest=manifest)
        assert client.manifest(info.id).to_dict() == manifest.to_dict()
    finally:
        client.close()
    log = s3_registry.server.log_text()
    assert '"PUT /api/v1/blobs/' not in log, "a blob went through the server"
    assert log.count("/uploaded") == 2  # the file, then the manifest
    assert storage.sent().lower().count(b"put /") >= 2
