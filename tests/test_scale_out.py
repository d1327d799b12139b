"""What the scale-out subset (tests/scale_out.py) reaches only here, since no other test of the
SDK, CLI and mount suites does it: a file large enough for a multipart upload to S3, a
manifest committed by reference, and blobs uploaded and looked at (HEAD) through the server,
as a client other than ours (curl, an older artifactfs) does. And the route check itself, on
a real server's log.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import httpx
import pytest
from helpers import rand_bytes
from scale_out import (
    SCALE_OUT,
    answered_requests,
    never_answered,
    scale_out,
    servers_and_scale_out,
)

from artifactfs.core.chunks import CHUNK_SIZE
from artifactfs.core.digests import blob_key, md5_b64
from artifactfs.core.manifest import Manifest, ManifestEntry
from artifactfs.registry.http import HttpRegistry
from artifactfs.sdk import Api, Artifact
from artifactfs.store.s3 import SINGLE_PUT_MAX

PROJECT = "proj"


def _files_under(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@scale_out
def test_a_file_past_one_presigned_put_saves_and_reads_back(
    api: Api, tmp_path: Path, transport: str
) -> None:
    """On S3 a blob past SINGLE_PUT_MAX goes up in parts, each to its own presigned URL; the
    server reads it back to check its digest and build its chunk index before it counts."""
    big = rand_bytes(SINGLE_PUT_MAX + 3 * CHUNK_SIZE + 5, seed=17)  # two parts: 8 + 3 MiB
    source = tmp_path / "src" / "weights.bin"
    source.parent.mkdir()
    source.write_bytes(big)
    art = Artifact("big", "model")
    art._client = api
    art.add_file(source)
    art.save(project=PROJECT)
    # another machine: nothing in its cache
    reader = Api(config=api.config.replace(cache_dir=tmp_path / "other-cache"))
    try:
        found = reader.artifact(f"{PROJECT}/big:latest")
        root = Path(found.download(root=str(tmp_path / "dl")))
        got = (root / "weights.bin").read_bytes()
        assert hashlib.sha256(got).digest() == hashlib.sha256(big).digest()
        found.verify(root)
    finally:
        reader.close()
    if transport == SCALE_OUT:
        log = (tmp_path / "server.log").read_text()
        key = blob_key(md5_b64(big))
        assert f'"POST /api/v1/blobs/{key}/uploaded" 201' in log
        assert f'"PUT /api/v1/blobs/{key}"' not in log  # the bytes went straight to storage
        assert f'"GET /api/v1/blobs/{key}" 307' in log  # and came back from there
        assert f'"GET /api/v1/blobs/{key}" 206' not in log


@servers_and_scale_out
def test_blobs_put_through_the_server_and_a_manifest_committed_by_reference(
    api: Api, env: dict[str, str], tmp_path: Path
) -> None:
    """A client that does not ask for upload URLs PUTs its blobs to the server, which checks
    them on the way into storage, and asks a blob's size by HEAD; a manifest too large to
    send inline is uploaded as a blob and named by the commit (the client's inline bound is
    1 KiB here, so that 40 entries take that path)."""
    url, key = env["ARTIFACTFS_REGISTRY"], env["ARTIFACTFS_API_KEY"]
    files = {f"part{i:02d}.txt": f"line {i}\n".encode() * (i + 1) for i in range(40)}
    with httpx.Client(base_url=url + "/api/v1", timeout=30,
                      headers={"Authorization": f"Bearer {key}"}) as http:
        for data in files.values():
            r = http.put(f"/blobs/{blob_key(md5_b64(data))}", content=data)
            assert r.status_code == 201, r.text
        one = files["part07.txt"]
        r = http.head(f"/blobs/{blob_key(md5_b64(one))}")
        assert r.status_code == 200, r.text
        assert (r.headers["content-length"], r.content) == (str(len(one)), b"")
        # bytes that are not the digest's are refused, and nothing is stored under it
        claimed = blob_key(md5_b64(b"what was claimed"))
        r = http.put(f"/blobs/{claimed}", content=b"something else")
        assert 400 <= r.status_code < 500, r.text
        assert r.json()["error"]["type"] == "DigestMismatch", r.text
        assert http.head(f"/blobs/{claimed}").status_code == 404
    manifest = Manifest(ManifestEntry(path, md5_b64(data), len(data))
                        for path, data in files.items())
    assert len(manifest.to_json()) > 1 << 10
    client = HttpRegistry(url, key, inline_manifest_max=1 << 10)
    try:
        made = client.commit(entity="local", project=PROJECT, name="byref", type_="dataset",
                             manifest=manifest)
    finally:
        client.close()
    assert made.version == "v0"
    art = api.artifact(f"{PROJECT}/byref:v0")
    assert art.digest == manifest.digest()
    root = Path(art.download(root=str(tmp_path / "dl")))
    assert _files_under(root) == files
    log = (tmp_path / "server.log").read_text()
    for data in files.values():
        assert f'"PUT /api/v1/blobs/{blob_key(md5_b64(data))}" 201' in log
    # the commit named its manifest by reference: a blob this entity holds now
    text = manifest.to_json().encode("ascii")
    assert api.registry.missing_blobs([md5_b64(text)]) == set()


@pytest.mark.parametrize("transport", ["server"], indirect=True)
def test_the_route_check_counts_only_what_a_route_answered(
    env: dict[str, str], tmp_path: Path
) -> None:
    """Read from a real server's access log: a refused key (401) and a method a path does not
    take (405) reached no route; HEAD is a route apart only on the blob route."""
    url, key = env["ARTIFACTFS_REGISTRY"] + "/api/v1", env["ARTIFACTFS_API_KEY"]
    auth = {"Authorization": f"Bearer {key}"}
    projects = "/entities/local/projects"
    assert httpx.get(url + projects, headers={"Authorization": "Bearer nope"}).status_code == 401
    assert httpx.delete(url + "/blobs/" + "0" * 32, headers=auth).status_code == 405
    assert httpx.head(url + projects, headers=auth).status_code == 200
    assert httpx.get(url + "/blobs/" + "0" * 32 + "/chunks", headers=auth).status_code == 404
    answered = answered_requests((tmp_path / "server.log").read_text())
    assert answered == {("HEAD", "/api/v1" + projects),
                        ("GET", "/api/v1/blobs/" + "0" * 32 + "/chunks")}
    missing = never_answered(answered)
    assert "GET /api/v1/blobs/{key}/chunks" not in missing
    assert {"GET /api/v1/entities/{entity}/projects", "HEAD /api/v1/blobs/{key}",
            "DELETE /api/v1/versions/{vid}"} <= set(missing)
    assert not any(m.startswith("HEAD /api/v1/entities") for m in missing)
