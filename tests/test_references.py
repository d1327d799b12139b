"""References (issue 18): ``add_reference`` for ``file://``, ``http(s)://`` and ``s3://``, read
lazily and verified through the content layer, on real sources: files on disk, a real HTTP
server on loopback (tests/refsources.py) and SeaweedFS's S3 gateway (tests/seaweed.py).
Through the SDK on the embedded store and through a real server (the ``transport`` fixture).
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
from refsources import HttpSource, serving
from seaweed import SeaweedS3

from artifactfs.cache import ContentCache
from artifactfs.config import Config
from artifactfs.core.chunks import CHUNK_SIZE
from artifactfs.core.errors import (
    InvalidManifest,
    NotFound,
    ReferenceChanged,
    ReferenceUnavailable,
)
from artifactfs.core.references import clean_uri, reference_cache_name
from artifactfs.sdk import Api, Artifact

BIG = 3 * CHUNK_SIZE + 4321


@pytest.fixture
def http_source() -> Iterator[HttpSource]:
    with serving() as source:
        yield source


def md5_b64(data: bytes) -> str:
    return base64.b64encode(hashlib.md5(data).digest()).decode()


def draft(api: Api, name: str = "refs") -> Artifact:
    return Artifact(name, "dataset", api=api)


def fresh(config: Config, tmp_path: Path, ref: str = "p/refs:latest") -> tuple[Api, Artifact]:
    """Another client with a cache of its own: nothing of the first one's read is cached."""
    other = Api(config=config.replace(cache_dir=tmp_path / f"cache-{secrets.token_hex(4)}"))
    return other, other.artifact(ref)


def drop_cached_chunk(api: Api, art: Artifact, path: str, n: int) -> None:
    """Remove chunk ``n`` of a reference's cached bytes, as eviction would."""
    name = reference_cache_name(art.manifest[path])
    ContentCache(api.config.cache_dir, 1 << 30).path(f"{name}.c{n}").unlink()


# ---- pure -------------------------------------------------------------------------------------


def test_clean_uri_strips_passwords_and_signatures() -> None:
    assert clean_uri("https://bob:hunter2@example.com/a/b.bin?x=1") == \
        "https://example.com/a/b.bin?x=1"
    signed = ("https://bucket.s3.amazonaws.com/k.bin?X-Amz-Algorithm=AWS4-HMAC-SHA256"
              "&X-Amz-Credential=AKIA%2F&X-Amz-Signature=abcdef&partNumber=2")
    assert clean_uri(signed) == "https://bucket.s3.amazonaws.com/k.bin?partNumber=2"
    sas = "https://acct.blob.core.windows.net/c/b?sv=2020&se=2030&sp=r&sig=SECRET&comp=x"
    assert clean_uri(sas) == "https://acct.blob.core.windows.net/c/b?comp=x"
    assert clean_uri("https://h/f?token=t0k&v=2") == "https://h/f?v=2"
    kept = "https://h/f?v=2&se=1"  # no "sig": an Azure-looking field alone is kept
    assert clean_uri(kept) == kept
    assert clean_uri("file:///data/x") == "file:///data/x"


# ---- file:// ----------------------------------------------------------------------------------


def test_file_references_take_wandbs_entry_forms(api: Api, tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "a.txt").write_bytes(b"hello\n")
    (src / "empty.bin").write_bytes(b"")
    (src / "sub/b.txt").write_bytes(b"world")
    art = draft(api)
    [one] = art.add_reference(f"file://{src}/a.txt")
    assert (one.path, one.digest, one.size, one.ref) == (
        "a.txt", "sZRqySSS0jR8YjW00mERhA==", 6, f"file://{src}/a.txt")
    entries = art.add_reference(f"file://{src}", name="tree")
    assert {e.path: (e.ref, e.digest, e.size) for e in entries} == {
        "tree/a.txt": (f"file://{src}/a.txt", "sZRqySSS0jR8YjW00mERhA==", 6),
        "tree/empty.bin": (f"file://{src}/empty.bin", "1B2M2Y8AsgTpgAmY7PhCfg==", 0),
        "tree/sub/b.txt": (f"file://{src}/sub/b.txt", "fXkwN6B2AYZXSwKC8vQ15w==", 5),
    }
    [unchecked] = art.add_reference(f"file://{src}/sub/b.txt", name="u.txt", checksum=False)
    assert unchecked.digest == md5_b64((src / "sub/b.txt").resolve().as_uri().encode())
    assert unchecked.size == 5 and not unchecked.extra
    spaced = tmp_path / "my data.txt"
    spaced.write_bytes(b"hello\n")
    [encoded] = art.add_reference(spaced.as_uri())  # Path.as_uri() writes %20
    assert (encoded.path, encoded.digest) == ("my data.txt", "sZRqySSS0jR8YjW00mERhA==")
    with pytest.raises(ValueError, match="more than max_objects=2"):
        art.add_reference(f"file://{src}", name="t2", max_objects=2)
    with pytest.raises(ValueError, match="no file or folder"):
        art.add_reference(f"file://{src}/nope")
    with pytest.raises(ValueError, match="SCHEME://"):
        art.add_reference(str(src / "a.txt"))
    with pytest.raises(ValueError, match="not ftp://"):
        art.add_reference("ftp://h/x")


def test_file_references_download_verified_and_a_changed_file_is_a_clear_error(
        api: Api, config: Config, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    small, big = os.urandom(5000), os.urandom(BIG)
    (src / "small.bin").write_bytes(small)
    (src / "big.bin").write_bytes(big)
    (src / "later.bin").write_bytes(b"as logged")
    art = draft(api)
    art.add_reference(f"file://{src}")
    art.save(project="p")
    assert not (api.config.cache_dir.exists() and any(api.config.cache_dir.rglob("*.c0")))

    other, got = fresh(config, tmp_path)
    out = Path(got.get_path("big.bin").download(str(tmp_path / "one")))
    assert out.read_bytes() == big
    assert got.verify is not None  # verify() skips references: the folder check alone
    root = tmp_path / "all"
    (src / "later.bin").write_bytes(b"as changed")  # never read before: caught
    with pytest.raises(ReferenceChanged) as caught:
        got.download(str(root))
    assert "'later.bin'" in str(caught.value) and f"file://{src}/later.bin" in str(caught.value)
    (src / "later.bin").write_bytes(b"as logged")
    assert Path(got.download(str(root)), "small.bin").read_bytes() == small
    got.verify(str(root))

    # a chunk the cache lost is read again by range and checked against the index the
    # first (whole, MD5-checked) read built: the changed file is caught there too
    changed = bytearray(big)
    changed[CHUNK_SIZE + 7] ^= 1
    (src / "big.bin").write_bytes(bytes(changed))
    entry = got.manifest["big.bin"]
    assert bytes(other.content.read(entry, 2 * CHUNK_SIZE, 10)) == big[2 * CHUNK_SIZE:][:10]
    drop_cached_chunk(other, got, "big.bin", 1)
    with pytest.raises(ReferenceChanged, match=r"big\.bin"):
        other.content.read(entry, CHUNK_SIZE, 10)
    (src / "small.bin").unlink()
    _, again = fresh(config, tmp_path)
    with pytest.raises(ReferenceUnavailable, match=r"small\.bin"):
        again.get_path("small.bin").download(str(tmp_path / "gone"))
    kept = again.download(str(tmp_path / "partial"), allow_missing_references=True,
                          path_prefix="s")
    assert not Path(kept, "small.bin").exists()
    other.close()
    again._api.close()


# ---- http(s):// -------------------------------------------------------------------------------


def test_http_reference_by_etag_pinned_with_if_match(
        api: Api, config: Config, tmp_path: Path, http_source: HttpSource) -> None:
    data = os.urandom(20_000)
    url = http_source.put("/d/model.bin", data, etag='"v1"')
    art = draft(api)
    [entry] = art.add_reference(url)
    assert (entry.path, entry.digest, entry.size, entry.extra, entry.ref) == (
        "model.bin", "v1", 20_000, {"etag": '"v1"'}, url)
    art.save(project="p")
    other, got = fresh(config, tmp_path)
    assert Path(got.download(str(tmp_path / "a")), "model.bin").read_bytes() == data
    assert http_source.requests_for("/d/model.bin")[-1].headers.get("If-Match") == '"v1"'

    http_source.put("/d/model.bin", b"other bytes", etag='"v2"')
    _, cold = fresh(config, tmp_path)
    with pytest.raises(ReferenceChanged, match=r"'model.bin' \(http://.*/d/model.bin\).*412"):
        cold.download(str(tmp_path / "b"))
    # a server that ignores If-Match: the ETag it answers with is compared
    http_source.put("/d/model.bin", b"other bytes", etag='"v2"', if_match=False)
    _, cold = fresh(config, tmp_path)
    with pytest.raises(ReferenceChanged, match='ETag "v2" where "v1" was logged'):
        cold.download(str(tmp_path / "c"))
    # what the first client cached is the logged bytes: still served, never the new ones
    assert Path(got.download(str(tmp_path / "a2")), "model.bin").read_bytes() == data
    other.close()


def test_http_reference_without_etag_is_checked_by_md5(
        api: Api, config: Config, tmp_path: Path, http_source: HttpSource) -> None:
    data = b"no etag here\n" * 100
    url = http_source.put("/plain.txt", data)
    art = draft(api)
    [entry] = art.add_reference(url, name="docs/plain.txt")
    assert (entry.digest, entry.size, entry.extra) == (md5_b64(data), len(data), {})
    art.save(project="p")
    _, got = fresh(config, tmp_path)
    assert Path(got.download(str(tmp_path / "a")), "docs/plain.txt").read_bytes() == data
    http_source.put("/plain.txt", data.upper())
    _, cold = fresh(config, tmp_path)
    with pytest.raises(ReferenceChanged, match="MD5"):
        cold.download(str(tmp_path / "b"))


def test_http_large_reference_is_fetched_whole_then_read_by_range(
        api: Api, config: Config, tmp_path: Path, http_source: HttpSource) -> None:
    data = os.urandom(BIG)
    url = http_source.put("/big.bin", data, etag='"big-1"')
    art = draft(api)
    art.add_reference(url)
    art.save(project="p")
    other, got = fresh(config, tmp_path)
    entry = got.manifest["big.bin"]
    before = len(http_source.requests_for("/big.bin"))
    assert bytes(other.content.read(entry, CHUNK_SIZE + 5, 100)) == data[CHUNK_SIZE + 5:][:100]
    whole = http_source.requests_for("/big.bin")[before:]
    assert len(whole) == 1 and "Range" not in whole[0].headers  # fetched and checked whole
    assert bytes(other.content.read(entry, 3 * CHUNK_SIZE, 50)) == data[3 * CHUNK_SIZE:][:50]
    assert len(http_source.requests_for("/big.bin")) == before + 1  # from the cache since

    # a cached chunk with other bytes under a good cache checksum (what another process's
    # fetch of a changed source writes before its check fails) is checked and not served
    name = reference_cache_name(entry)
    ContentCache(other.config.cache_dir, 1 << 30).put(f"{name}.c1", os.urandom(CHUNK_SIZE))
    assert bytes(other.content.read(entry, CHUNK_SIZE, 10)) == data[CHUNK_SIZE:][:10]
    assert http_source.requests_for("/big.bin")[-1].headers["Range"] == \
        f"bytes={CHUNK_SIZE}-{2 * CHUNK_SIZE - 1}"

    drop_cached_chunk(other, got, "big.bin", 2)
    assert bytes(other.content.read(entry, 2 * CHUNK_SIZE, 10)) == data[2 * CHUNK_SIZE:][:10]
    ranged = http_source.requests_for("/big.bin")[-1].headers
    assert ranged["Range"] == f"bytes={2 * CHUNK_SIZE}-{3 * CHUNK_SIZE - 1}"
    assert ranged["If-Match"] == '"big-1"'
    http_source.put("/big.bin", data, etag='"big-2"')  # same bytes, new ETag: not those logged
    drop_cached_chunk(other, got, "big.bin", 2)
    with pytest.raises(ReferenceChanged, match=r"big\.bin"):
        other.content.read(entry, 2 * CHUNK_SIZE, 10)
    # served without range support, a chunk comes out of the whole answer
    http_source.put("/big.bin", data, etag='"big-1"', ranges=False)
    assert bytes(other.content.read(entry, 2 * CHUNK_SIZE, 10)) == data[2 * CHUNK_SIZE:][:10]
    other.close()


def test_http_reference_credentials_never_enter_the_manifest_or_the_log(
        api: Api, config: Config, tmp_path: Path, http_source: HttpSource,
        caplog: pytest.LogCaptureFixture) -> None:
    data = b"secret-protected bytes"
    http_source.put("/s/f.bin", data, etag='"e"')
    host = http_source.url.removeprefix("http://")
    url = f"http://bob:hunter2@{host}/s/f.bin?X-Amz-Signature=deadbeef&X-Amz-Credential=AKIA&v=3"
    art = draft(api)
    with caplog.at_level(logging.DEBUG):
        [entry] = art.add_reference(url)
        [unchecked] = art.add_reference(url, name="u.bin", checksum=False)
        art.save(project="p")
    # the request that read it now used what the URI holds
    sent = http_source.requests_for("/s/f.bin")[-1]
    assert sent.headers["Authorization"] == "Basic " + base64.b64encode(b"bob:hunter2").decode()
    assert "X-Amz-Signature=deadbeef" in sent.path
    assert entry.ref == f"http://{host}/s/f.bin?v=3"
    assert unchecked.ref == unchecked.digest == entry.ref and unchecked.size == 0
    stored = api.artifact("p/refs:latest").manifest.to_json()
    for secret in ("hunter2", "deadbeef", "AKIA"):
        assert secret not in stored
        assert secret not in caplog.text
    assert "/s/f.bin" in caplog.text or not caplog.text  # httpx's line, redacted, if any


# ---- s3:// ------------------------------------------------------------------------------------


@pytest.fixture
def s3_env(seaweed: SeaweedS3, monkeypatch: pytest.MonkeyPatch) -> SeaweedS3:
    """The standard AWS configuration of this client, pointing at SeaweedFS."""
    for name, value in seaweed.env.items():
        monkeypatch.setenv(name, value)
    return seaweed


@pytest.mark.parametrize("transport", ["embedded"])
def test_s3_references_by_etag(api: Api, config: Config, tmp_path: Path,
                               s3_env: SeaweedS3) -> None:
    s3 = s3_env.client()
    bucket, prefix = s3_env.bucket, f"refs-{secrets.token_hex(4)}"
    files = {"a.bin": os.urandom(3000), "sub/b.bin": os.urandom(BIG), "empty.bin": b""}
    for key, body in files.items():
        s3.put_object(Bucket=bucket, Key=f"{prefix}/{key}", Body=body)
    art = draft(api)
    [one] = art.add_reference(f"s3://{bucket}/{prefix}/a.bin")
    etag = s3.head_object(Bucket=bucket, Key=f"{prefix}/a.bin")["ETag"]
    assert (one.path, one.digest, one.size, one.extra["etag"], one.ref) == (
        "a.bin", etag.strip('"'), 3000, etag.strip('"'), f"s3://{bucket}/{prefix}/a.bin")
    under = art.add_reference(f"s3://{bucket}/{prefix}", name="all")
    assert sorted(e.path for e in under) == ["all/a.bin", "all/sub/b.bin"]  # empty skipped
    with pytest.raises(ValueError, match="max_objects=1"):
        art.add_reference(f"s3://{bucket}/{prefix}/", name="x", max_objects=1)
    with pytest.raises(ValueError, match="no such object"):
        art.add_reference(f"s3://{bucket}/{prefix}-nothing/")
    [unchecked] = art.add_reference(f"s3://{bucket}/{prefix}/a.bin", name="u", checksum=False)
    assert unchecked.digest == unchecked.ref == f"s3://{bucket}/{prefix}/a.bin"
    art.save(project="p")

    other, got = fresh(config, tmp_path)
    root = Path(got.download(str(tmp_path / "out"), path_prefix="all/"))
    assert (root / "all/sub/b.bin").read_bytes() == files["sub/b.bin"]
    s3.put_object(Bucket=bucket, Key=f"{prefix}/a.bin", Body=b"overwritten")
    _, cold = fresh(config, tmp_path)
    with pytest.raises(ReferenceChanged, match=rf"'a.bin' \(s3://{bucket}/{prefix}/a.bin\)"):
        cold.get_path("a.bin").download(str(tmp_path / "b"))
    # checksum=False: whatever the object holds now, as W&B downloads it
    assert Path(cold.get_path("u").download(str(tmp_path / "c"))).read_bytes() == b"overwritten"
    other.close()


@pytest.mark.parametrize("transport", ["embedded"])
def test_s3_reference_in_a_versioned_bucket_reads_its_version(
        api: Api, config: Config, tmp_path: Path, s3_env: SeaweedS3) -> None:
    s3 = s3_env.client()
    bucket = f"versioned-{secrets.token_hex(4)}"
    s3.create_bucket(Bucket=bucket)
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    first = os.urandom(4000)
    put = s3.put_object(Bucket=bucket, Key="w.bin", Body=first)
    assert put.get("VersionId"), "SeaweedFS gave no version id"
    art = draft(api)
    [entry] = art.add_reference(f"s3://{bucket}/w.bin")
    assert entry.extra["versionID"] == put["VersionId"]
    [listed] = art.add_reference(f"s3://{bucket}/", name="listed")
    assert listed.extra["versionID"] == put["VersionId"]
    art.save(project="p")
    s3.put_object(Bucket=bucket, Key="w.bin", Body=b"a later version")
    _, got = fresh(config, tmp_path)
    # the logged version is still there: it is what is read, not the latest
    assert Path(got.download(str(tmp_path / "out")), "w.bin").read_bytes() == first
    s3.delete_object(Bucket=bucket, Key="w.bin", VersionId=put["VersionId"])
    _, cold = fresh(config, tmp_path)
    with pytest.raises(ReferenceChanged, match="version"):
        cold.get_path("w.bin").download(str(tmp_path / "b"))


# ---- the server never reads references ---------------------------------------------------------


@pytest.mark.parametrize("transport", ["server"])
def test_server_stores_a_file_reference_and_never_reads_it(
        api: Api, config: Config, tmp_path: Path, env: dict[str, str]) -> None:
    from inotify import OpenWatch

    target = tmp_path / "private.txt"
    target.write_bytes(b"the client's own file\n")
    art = draft(api)
    art.add_reference("file:///etc/passwd", name="passwd")
    with OpenWatch(target) as watch:
        art.add_reference(target.as_uri(), name="private.txt")
        assert watch.opened()  # hashing it now, here, in the client: the watch sees opens
        art.save(project="p")
        got = api.artifact("p/refs:latest")
        stored = json.loads(got.manifest.to_json())["contents"]
        assert stored["passwd"]["ref"] == "file:///etc/passwd"
        assert stored["private.txt"]["ref"] == target.as_uri()
        # every route a client has that names bytes by digest: the server holds none of them
        reg = api.registry
        for path in ("passwd", "private.txt"):
            digest = stored[path]["digest"]
            assert reg.missing_blobs([digest]) == {digest}
            with pytest.raises(NotFound):
                reg.read_blob(digest, 0, 5)
        assert not watch.opened(), "the server process opened the referenced file"
        # a client reading it reads its own disk
        _, mine = fresh(config, tmp_path)
        assert Path(mine.get_path("private.txt").download(str(tmp_path / "o"))).read_bytes() \
            == b"the client's own file\n"
        assert watch.opened()


# ---- artifactfs verify --references ------------------------------------------------------------


@pytest.mark.parametrize("transport", ["embedded"])
def test_cli_verify_references_reads_each_source_again(
        api: Api, tmp_path: Path, run_cli, http_source: HttpSource) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.txt").write_bytes(b"logged\n")
    url = http_source.put("/w.bin", b"weights", etag='"w1"')
    art = draft(api)
    art.add_reference(src.as_uri())
    art.add_reference(url)
    art.add_reference(url, name="loose.bin", checksum=False)
    art.save(project="p")
    api.artifact("p/refs:latest").download(str(tmp_path / "got"))  # now in the cache

    proc = run_cli("verify", "p/refs:latest", "--references")
    assert proc.returncode == 0, proc.stderr
    assert "ok: 2 references of p/refs:v0 match their sources (1 logged with " \
        "checksum=False" in proc.stdout
    # the folder check alone skips references, as W&B's verify() does
    assert run_cli("verify", "p/refs:latest", "--root", str(tmp_path / "got")).returncode == 0
    (src / "a.txt").write_bytes(b"LOGGED\n")  # the cache holds the logged bytes: not read
    proc = run_cli("verify", "p/refs:latest", "--references")
    assert proc.returncode == 1
    assert proc.stderr.startswith("error: reference 'a.txt' (file://") and "MD5" in proc.stderr
    assert "Traceback" not in proc.stderr
    (src / "a.txt").write_bytes(b"logged\n")
    http_source.put("/w.bin", b"weights", etag='"w2"')
    proc = run_cli("verify", "p/refs:latest", "--references")
    assert proc.returncode == 1 and "'w.bin'" in proc.stderr and "412" in proc.stderr


@pytest.mark.parametrize("transport", ["embedded"])
def test_references_in_an_xxh128_artifact_keep_md5_or_etag_digests(
        api: Api, config: Config, tmp_path: Path, http_source: HttpSource) -> None:
    from artifactfs.core.digests import XXH128, artifact_digest

    (tmp_path / "a.txt").write_bytes(b"hello\n")
    url = http_source.put("/e.bin", b"etagged", etag='"e1"')
    art = Artifact("refs", "dataset", digest_algorithm="XXH128", api=api)
    [file_ref] = art.add_reference((tmp_path / "a.txt").as_uri())
    [http_ref] = art.add_reference(url)
    # W&B: references never get XXH128, even in an XXH128 artifact (no extra.alg)
    assert (file_ref.digest, file_ref.extra) == ("sZRqySSS0jR8YjW00mERhA==", {})
    assert "alg" not in http_ref.extra
    art.save(project="p")
    got = api.artifact("p/refs:latest")
    assert got.digest == artifact_digest(
        [("a.txt", "sZRqySSS0jR8YjW00mERhA=="), ("e.bin", "e1")], XXH128)
    _, cold = fresh(config, tmp_path)
    root = Path(cold.download(str(tmp_path / "out")))
    assert (root / "a.txt").read_bytes() == b"hello\n"
    assert (root / "e.bin").read_bytes() == b"etagged"


@pytest.mark.parametrize("transport", ["embedded"])
def test_a_signed_uri_logged_elsewhere_is_refused_and_never_shown(
        api: Api, tmp_path: Path, http_source: HttpSource,
        caplog: pytest.LogCaptureFixture) -> None:
    """A manifest made elsewhere (wandb's, its entries added as they are) that keeps a
    presigned URI is refused by save, before anything is stored: a manifest is read by every
    key holder of its entity and kept for ever. No message or log line shows the secret."""
    from artifactfs.core.manifest import ManifestEntry

    signed = http_source.put("/signed.bin", b"signed bytes", etag='"s1"') + \
        "?X-Amz-Signature=SECRETSIG&v=1"
    for entry in (ManifestEntry("signed.bin", "s1", 12, ref=signed, extra={"etag": '"s1"'}),
                  ManifestEntry("loose.bin", signed, 0, ref=signed)):  # checksum=False
        art = draft(api)
        art._draft().add(entry)
        with caplog.at_level(logging.DEBUG), pytest.raises(InvalidManifest,
                                                           match="holds credentials") as info:
            art.save(project="p")
        assert "SECRETSIG" not in str(info.value) and "v=1" in str(info.value)
    assert "SECRETSIG" not in caplog.text
    assert not http_source.requests_for("/signed.bin")  # never read either
    assert api.registry.list_projects("local") == []


@pytest.mark.parametrize("transport", ["embedded"])
def test_readers_of_one_reference_share_its_whole_fetch(
        api: Api, config: Config, tmp_path: Path, http_source: HttpSource) -> None:
    from concurrent.futures import ThreadPoolExecutor

    data = os.urandom(BIG)
    url = http_source.put("/shared.bin", data, etag='"sh"')
    art = draft(api)
    art.add_reference(url)
    art.save(project="p")
    other, got = fresh(config, tmp_path)
    entry = got.manifest["shared.bin"]
    before = len(http_source.requests_for("/shared.bin"))
    offsets = [n * CHUNK_SIZE + 17 for n in range(4)] * 2
    with ThreadPoolExecutor(8) as pool:
        pieces = list(pool.map(lambda off: bytes(other.content.read(entry, off, 64)), offsets))
    assert pieces == [data[off : off + 64] for off in offsets]
    seen = http_source.requests_for("/shared.bin")[before:]
    assert len(seen) == 1, [s.headers.get("Range") for s in seen]
    other.close()


@pytest.mark.parametrize("uri", [
    "https://user:hunter2@example.com/data.bin",
    "https://example.com/data.bin?X-Amz-Signature=abc&X-Amz-Credential=k",
    "s3://bucket/key?token=secret",
])
def test_a_manifest_bringing_credentials_is_refused(api: Api, uri: str) -> None:
    """add_reference strips credentials; a manifest made elsewhere (wandb's, committed as
    it is) is refused rather than keep them, and the message does not repeat them."""
    from artifactfs.core.manifest import Manifest, ManifestEntry

    entry = ManifestEntry("data.bin", uri, 0, ref=uri)  # checksum=False: digest = URI
    with pytest.raises(InvalidManifest, match="holds credentials") as info:
        api.registry.commit(entity="local", project="p", name="n", type_="dataset",
                            manifest=Manifest([entry]))
    assert "hunter2" not in str(info.value) and "abc" not in str(info.value)
    assert "secret" not in str(info.value).replace("secrets", "")
