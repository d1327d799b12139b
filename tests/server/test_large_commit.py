"""Commits whose manifest is larger than a JSON body may be, against real ``artifactfs serve``.

A manifest past the registry's JSON limit (``--max-json-bytes``, 64 MiB by default: ImageNet's
1.28 million files take 120 MB) is uploaded as a blob and named by the commit
(``manifest_blob``). The clients here send at most 16 KiB inline, and the limits are checked
on a server started with a JSON limit of 64 KiB and a manifest limit of 1 MiB, so that a
manifest of a few thousand entries takes that path: the same code as at full size, in well
under a second. Checked: it commits end to end
(HTTP client, SDK), reads back the same, keeps commit keys exactly-once, and every bad
reference (not a digest, not uploaded, another entity's, not JSON, not a manifest, too large,
an upload cut short) answers 4xx with a message and leaves no version behind.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from helpers import wait_until

from artifactfs.config import Config
from artifactfs.core.digests import blob_key, md5_b64
from artifactfs.core.errors import InvalidManifest
from artifactfs.core.manifest import Manifest, ManifestEntry
from artifactfs.registry.http import INLINE_MANIFEST_MAX, HttpRegistry
from artifactfs.sdk import Api, Artifact

ENTITY, OTHER = "team", "other"  # the entities of the keys tests/server/conftest.py makes
JSON_LIMIT = 64 << 10
INLINE_MAX = 16 << 10
FILES = 2000  # ~150 KB of manifest JSON: past both bounds above
Registry = Any  # tests/server/conftest.py's Registry: a server, its store and its keys


@pytest.fixture
def small_limits(start_registry: Any) -> Registry:
    """A registry taking JSON bodies of at most 64 KiB and manifests of at most 1 MiB."""
    return start_registry("--max-json-bytes", "64K", "--max-manifest-bytes", "1M")


@pytest.fixture
def reg(shared_registry: Registry) -> Registry:
    """A registry with the default limits: the client's bound alone decides the path."""
    return shared_registry


@pytest.fixture
def client(reg: Registry) -> Iterator[HttpRegistry]:
    c = HttpRegistry(reg.url, reg.rw_key, inline_manifest_max=INLINE_MAX)
    try:
        yield c
    finally:
        c.close()


def many_files(reg: Registry, n: int = FILES, blobs: int = 10) -> Manifest:
    """``n`` entries in folders of 100 over ``blobs`` distinct uploaded blobs."""
    data = [f"blob {i}\n".encode() for i in range(blobs)]
    for d in data:
        reg.upload(d)
    return Manifest(
        ManifestEntry(f"n{i // 100:08d}/n{i // 100:08d}_{i}.JPEG", md5_b64(data[i % blobs]),
                      len(data[i % blobs]))
        for i in range(n)
    )


def versions(reg: Registry, project: str, name: str = "data") -> list[dict[str, Any]]:
    r = reg.rw.get(reg.collection(project, name) + "/versions")
    if r.status_code == 404:
        return []
    assert r.status_code == 200, r.text
    return list(r.json())


def commit_by_ref(reg: Registry, project: str, ref: Any, *, client: httpx.Client | None = None,
                  **extra: Any) -> httpx.Response:
    body = {"type": "dataset", "manifest_blob": ref, **extra}
    return (client or reg.rw).post(reg.collection(project, "data") + "/versions", json=body)


def assert_error(r: httpx.Response, status: int, kind: str, words: str) -> None:
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert error["type"] == kind, error
    assert words in error["message"], error


def manifest_json(manifest: Manifest) -> bytes:
    return manifest.to_json().encode()


# ---- end to end ------------------------------------------------------------------------------


def test_manifest_past_the_json_limit_commits_by_reference(small_limits: Registry) -> None:
    reg = small_limits
    client = HttpRegistry(reg.url, reg.rw_key, inline_manifest_max=INLINE_MAX)
    project = reg.unique("big")
    manifest = many_files(reg)
    text = manifest_json(manifest)
    assert len(text) > JSON_LIMIT
    # sent inline, the registry refuses it, and says what to do instead
    r = reg.rw.post(reg.collection(project, "data") + "/versions",
                    content=b'{"type":"dataset","manifest":' + text + b"}",
                    headers={"Content-Type": "application/json"})
    assert_error(r, 413, "TooLarge", "manifest_blob")
    assert versions(reg, project) == []

    info = client.commit(entity=ENTITY, project=project, name="data", type_="dataset",
                         manifest=manifest, aliases=["full"], metadata={"files": FILES})
    assert (info.version, info.file_count, info.digest) == ("v0", FILES, manifest.digest())
    assert set(info.aliases) == {"latest", "full"}
    back = client.manifest(info.id)
    client.close()
    assert back.to_json() == manifest.to_json()
    # the version reaches its entries' blobs, as an inline commit's does
    entry = next(iter(back))
    assert reg.rw.get(f"/blobs/{blob_key(entry.digest)}").content == f"blob {0}\n".encode()


def test_small_manifest_stays_inline(reg: Registry, client: HttpRegistry) -> None:
    """Below the client's bound nothing is uploaded besides the entries' blobs."""
    project = reg.unique("small")
    manifest = many_files(reg, n=20)
    assert len(manifest_json(manifest)) < INLINE_MAX
    info = client.commit(entity=ENTITY, project=project, name="data", type_="dataset",
                         manifest=manifest)
    assert info.file_count == 20
    assert not reg.blob_path(md5_b64(manifest_json(manifest))).exists()


def test_default_inline_bound_is_well_below_the_server_limit() -> None:
    from artifactfs.server import MAX_JSON_BYTES

    assert INLINE_MANIFEST_MAX * 2 <= MAX_JSON_BYTES


def test_keyed_commit_by_reference_is_exactly_once(
    reg: Registry, client: HttpRegistry
) -> None:
    project = reg.unique("keyed")
    manifest = many_files(reg)
    kwargs: dict[str, Any] = {"entity": ENTITY, "project": project, "name": "data",
                              "type_": "dataset", "manifest": manifest, "commit_key": "k" * 32}
    first = client.commit(**kwargs)
    again = client.commit(**kwargs)
    assert again.id == first.id
    assert [v["id"] for v in versions(reg, project)] == [first.id]
    assert client.version_by_commit_key(ENTITY, "k" * 32).id == first.id  # type: ignore[union-attr]


def test_sdk_save_of_a_large_artifact(reg: Registry, tmp_path: Path) -> None:
    """The SDK commits through the same client: a large artifact saves unchanged."""
    project = reg.unique("sdk")
    folder = tmp_path / "data"
    for i in range(FILES // 2):
        (folder / f"d{i // 100}").mkdir(parents=True, exist_ok=True)
        (folder / f"d{i // 100}" / f"f{i}.txt").write_bytes(f"{i % 7}".encode())
    config = Config.from_env({"ARTIFACTFS_REGISTRY": reg.url, "ARTIFACTFS_API_KEY": reg.rw_key,
                              "ARTIFACTFS_ENTITY": ENTITY,
                              "ARTIFACTFS_CACHE_DIR": str(tmp_path / "cache"),
                              "ARTIFACTFS_STORE": str(tmp_path / "unused")})
    api = Api(config=config)
    try:
        api._registry = HttpRegistry(reg.url, reg.rw_key, inline_manifest_max=INLINE_MAX)
        art = Artifact("data", type="dataset")
        art._client = api
        art.add_dir(str(folder))
        art.save(project=project)
        assert art.version == "v0"
        got = api.artifact(f"{project}/data:latest")
        assert len(got.manifest) == FILES // 2
        assert got.manifest["d3/f321.txt"].digest == md5_b64(b"6")
    finally:
        api.close()


# ---- bad references --------------------------------------------------------------------------


@pytest.mark.parametrize("ref", ["", "not-a-digest", 42, ["x"], "AAAA"])
def test_reference_that_is_not_a_digest(reg: Registry, ref: Any) -> None:
    project = reg.unique("ref")
    r = commit_by_ref(reg, project, ref)
    assert_error(r, 400, "InvalidRequest", "base64 MD5")
    assert versions(reg, project) == []


def test_both_or_neither_manifest_field(reg: Registry) -> None:
    project = reg.unique("both")
    ref = reg.upload(manifest_json(Manifest()))
    for body in ({"type": "dataset"},
                 {"type": "dataset", "manifest_blob": ref, "manifest": Manifest().to_dict()}):
        r = reg.rw.post(reg.collection(project, "data") + "/versions", json=body)
        assert_error(r, 400, "InvalidRequest", "exactly one of 'manifest' and 'manifest_blob'")
    assert versions(reg, project) == []


def test_reference_never_uploaded(reg: Registry) -> None:
    project = reg.unique("lost")
    digest = md5_b64(b"a manifest nobody uploaded")
    r = commit_by_ref(reg, project, digest)
    assert_error(r, 400, "InvalidRequest", "was not uploaded")
    assert versions(reg, project) == []


def test_reference_to_another_entitys_manifest(reg: Registry) -> None:
    """Naming a manifest another entity uploaded is answered as naming one never uploaded:
    its list of files is that entity's business."""
    manifest = many_files(reg, n=5)
    digest = reg.upload(manifest_json(manifest))  # uploaded by entity team
    project = reg.unique("theirs")
    r = reg.other.post(reg.collection(project, "data", OTHER) + "/versions",
                       json={"type": "dataset", "manifest_blob": digest})
    assert_error(r, 400, "InvalidRequest", "was not uploaded")
    r = reg.other.get(reg.collection(project, "data", OTHER) + "/versions")
    assert r.status_code in (200, 404) and (r.status_code == 404 or r.json() == [])
    # and team itself may use it
    assert commit_by_ref(reg, project, digest).status_code == 201


def test_read_only_key_cannot_commit_by_reference(reg: Registry) -> None:
    digest = reg.upload(manifest_json(Manifest()))
    project = reg.unique("ro")
    assert commit_by_ref(reg, project, digest, client=reg.ro).status_code == 403
    assert versions(reg, project) == []


@pytest.mark.parametrize(("text", "kind", "words"), [
    (b"\x00\xff not json", "InvalidJSON", "not valid JSON"),
    (b"[1, 2, 3]", "InvalidJSON", "must be a JSON object"),
    (b'{"version": 1, "contents": {"x": NaN}}', "InvalidJSON", "NaN is not allowed"),
    (b'{"version": 2, "contents": {}}', "InvalidManifest", "version 2"),
    (b'{"version": 1, "contents": {"../etc/passwd": {"digest": "XUFAKrxLKna5cZ2REBfFkg==",'
     b' "size": 5}}}', "InvalidManifest", "'..'"),
    (b'{"version": 1, "contents": {"a.txt": {"digest": "XUFAKrxLKna5cZ2REBfFkg==",'
     b' "size": 5}}}', "InvalidManifest", "was not uploaded"),
])
def test_reference_to_a_bad_manifest(reg: Registry, text: bytes, kind: str,
                                     words: str) -> None:
    digest = reg.upload(text)
    project = reg.unique("badref")
    r = commit_by_ref(reg, project, digest)
    assert_error(r, 400, kind, words)
    assert digest in r.json()["error"]["message"] or kind == "InvalidManifest"
    assert versions(reg, project) == []
    reg.alive()


def test_reference_past_the_manifest_limit(small_limits: Registry) -> None:
    reg = small_limits
    text = b'{"version": 1, "contents": {}, "pad": "' + b"x" * (1 << 20) + b'"}'
    digest = reg.upload(text)
    project = reg.unique("huge")
    r = commit_by_ref(reg, project, digest)
    assert_error(r, 413, "TooLarge", "at most 1048576")
    assert versions(reg, project) == []


def test_interrupted_manifest_upload_leaves_no_version(reg: Registry) -> None:
    """An upload of the manifest cut off halfway stores nothing: the commit naming it is
    refused, no version appears, and the half-written file is removed."""
    text = manifest_json(many_files(reg, n=FILES + 1))  # a manifest not uploaded before
    digest = md5_b64(text)
    with socket.create_connection(("127.0.0.1", reg.server.port)) as sock:
        sock.sendall(
            f"PUT /api/v1/blobs/{blob_key(digest)} HTTP/1.1\r\nHost: x\r\n"
            f"Authorization: Bearer {reg.rw_key}\r\nContent-Length: {len(text)}\r\n"
            "Content-Type: application/octet-stream\r\n\r\n".encode() + text[: len(text) // 2])
        wait_until(lambda: reg.tmp_files(), timeout=5)  # the server has begun writing it
    assert wait_until(lambda: not reg.tmp_files(), timeout=10)
    project = reg.unique("cut")
    r = commit_by_ref(reg, project, digest)
    assert_error(r, 400, "InvalidRequest", "was not uploaded")
    assert versions(reg, project) == []
    assert not reg.blob_path(digest).exists()


def test_client_errors_are_the_registrys(reg: Registry, client: HttpRegistry) -> None:
    """The HTTP client raises the domain errors the registry answered with."""
    manifest = many_files(reg)
    manifest.add(ManifestEntry("zz/never-uploaded.bin", md5_b64(b"nope"), 4))
    project = reg.unique("client")
    with pytest.raises(InvalidManifest, match="was not uploaded"):
        client.commit(entity=ENTITY, project=project, name="data", type_="dataset",
                      manifest=manifest)
    assert versions(reg, project) == []
