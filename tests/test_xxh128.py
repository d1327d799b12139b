"""XXH128 digests (W&B's ``digest_algorithm="XXH128"``): entry and artifact digests equal to
wandb's (the vectors of docs/wandb-format.md, computed there by wandb 0.31 itself), the blob
named by the MD5 beside the XXH128 digest, and every read checking both.

Through the SDK on both transports, the CLI and gc; a real mount in
tests/fs/test_mount_xxh128.py.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import io
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import xxhash
from helpers import make_tree, rand_bytes

from artifactfs.config import Config
from artifactfs.core.chunks import CHUNK_INDEX_EXTRA_KEY, CHUNK_SIZE
from artifactfs.core.digests import (
    MD5,
    XXH128,
    ContentHasher,
    artifact_digest,
    blob_key,
    md5_b64,
    xxh128_b64,
)
from artifactfs.core.errors import DigestMismatch, InvalidManifest
from artifactfs.core.manifest import Manifest, ManifestEntry, validate_for_commit
from artifactfs.sdk import Api, Artifact
from artifactfs.store import Store

FILES = {"a.txt": b"hello\n", "empty.bin": b"", "sub/b.txt": b"world"}
# docs/wandb-format.md section 3: what wandb 0.31 gives for FILES
WANDB_MD5_DIGEST = "7b3aacded2e9ac3d284f56f37fb8a278"
WANDB_XXH128_DIGEST = "122caba8543812319f8ee487bf15c6a3"
WANDB_XXH128_ENTRIES = {"a.txt": "a7qGx+Bp9W1aELQ18cjknA==",
                        "empty.bin": "maoG0wFHmNhgAcMkRo1Jfw==",
                        "sub/b.txt": "+g04qbOCgNCJHkmFvbJYPg=="}


# ---- pure: digests and the manifest ---------------------------------------------------


def test_xxh128_vectors_match_wandb() -> None:
    assert xxh128_b64(b"a") == "qW+vcFrxaDTmxjK2HpZOHw=="
    assert base64.b64decode(xxh128_b64(b"")).hex() == "99aa06d3014798d86001c324468d497f"
    assert {p: xxh128_b64(d) for p, d in FILES.items()} == WANDB_XXH128_ENTRIES
    assert artifact_digest([], XXH128) == "f13c5dd8602ab5d18a0c87ce730a735e"
    assert artifact_digest([], MD5) == "64e7c61456b10382e2f3b571ac24b659"
    pairs = list(WANDB_XXH128_ENTRIES.items())
    assert artifact_digest(pairs, XXH128) == WANDB_XXH128_DIGEST
    assert artifact_digest([(p, md5_b64(d)) for p, d in FILES.items()]) == WANDB_MD5_DIGEST


def test_hasher_gives_both_digests_and_the_index_in_one_pass() -> None:
    data = rand_bytes(2 * CHUNK_SIZE + 5, seed=3)
    hasher = ContentHasher(algorithm=XXH128)
    for i in range(0, len(data), 100_000):
        hasher.update(data[i : i + 100_000])
    result = hasher.result()
    assert result.digest == base64.b64encode(xxhash.xxh128_digest(data)).decode()
    assert result.md5 == md5_b64(data)
    assert result.key == hashlib.md5(data).hexdigest()
    assert result.chunk_index is not None and result.chunk_index.count == 3
    assert result.entry_extra() == {"alg": "XXH128", "md5": md5_b64(data),
                                    CHUNK_INDEX_EXTRA_KEY: result.chunk_index.sha256()}
    plain = ContentHasher()
    plain.update(b"hello\n")
    assert plain.result().entry_extra() == {}
    assert plain.result().md5 == plain.result().digest == md5_b64(b"hello\n")
    with pytest.raises(InvalidManifest, match="use MD5 or XXH128"):
        ContentHasher(algorithm="SHA1")


def xxh_entry(path: str, data: bytes) -> ManifestEntry:
    return ManifestEntry(path, xxh128_b64(data), len(data),
                         extra={"alg": "XXH128", "md5": md5_b64(data)})


def test_manifest_records_its_algorithm_only_when_not_md5() -> None:
    plain = Manifest([ManifestEntry("a.txt", md5_b64(b"hello\n"), 6)])
    assert "digestAlgorithm" not in plain.to_dict()  # MD5 manifests are as they were
    xxh = Manifest([xxh_entry(p, d) for p, d in FILES.items()], digest_algorithm=XXH128)
    assert xxh.digest() == WANDB_XXH128_DIGEST
    for text in (xxh.to_json(), json.dumps(xxh.to_dict())):
        loaded = Manifest.from_json(text)
        assert loaded.digest_algorithm == XXH128 and loaded.digest() == WANDB_XXH128_DIGEST
        assert "digestAlgorithm" not in loaded.unknown
    assert xxh.copy().digest() == WANDB_XXH128_DIGEST
    entry = xxh["a.txt"]
    assert entry.algorithm == XXH128 and entry.stored_digest == md5_b64(b"hello\n")
    assert plain["a.txt"].algorithm == MD5 and plain["a.txt"].stored_digest == plain[
        "a.txt"].digest
    bad = json.loads(xxh.to_json()) | {"digestAlgorithm": "SHA1"}
    with pytest.raises(InvalidManifest, match="'SHA1' is not one artifactfs knows"):
        Manifest.from_json(json.dumps(bad))


def test_commit_refuses_xxh128_entries_it_could_not_name_the_bytes_of() -> None:
    """W&B's XXH128 entry carries no MD5; committing it as it is was refused with "was not
    uploaded" (its digest also passes the base64-MD5 shape check). Now it is named."""
    data = b"hello\n"
    wandb_form = ManifestEntry("a.txt", xxh128_b64(data), 6, extra={"alg": "XXH128"})
    with pytest.raises(InvalidManifest, match=r"no extra\.md5.*artifactfs import"):
        validate_for_commit(Manifest([wandb_form], digest_algorithm=XXH128))
    odd = ManifestEntry("a.txt", md5_b64(data), 6, extra={"alg": "SHA256"})
    with pytest.raises(InvalidManifest, match="digest algorithm 'SHA256'"):
        validate_for_commit(Manifest([odd]))
    validate_for_commit(Manifest([xxh_entry("a.txt", data)], digest_algorithm=XXH128))


# ---- the SDK, on the embedded store and a server --------------------------------------


@contextlib.contextmanager
def store_api(tmp_path: Path) -> Iterator[Api]:
    """An Api on the store folder ``tmp_path/store`` itself (what tests damage)."""
    env = {"ARTIFACTFS_STORE": str(tmp_path / "store"),
           "ARTIFACTFS_CACHE_DIR": str(tmp_path / "cache"), "HOME": str(tmp_path / "home")}
    api = Api(config=Config.from_env(env))
    try:
        yield api
    finally:
        api.close()


def xxh_artifact(api: Api, tmp_path: Path, files: dict[str, bytes], name: str = "data"
                 ) -> Artifact:
    art = Artifact(name, "dataset", digest_algorithm="XXH128")
    art._client = api
    art.add_dir(make_tree(tmp_path / f"src-{name}", files))
    return art.save(project="proj")


def test_xxh128_artifact_saves_with_wandbs_digest_and_reads_back(
    api: Api, tmp_path: Path, env: dict[str, str]
) -> None:
    art = xxh_artifact(api, tmp_path, FILES)
    assert art.digest == WANDB_XXH128_DIGEST  # as wandb computes it, kept by the registry
    got = api.artifact("proj/data:latest")
    assert got.digest == WANDB_XXH128_DIGEST and got.manifest.digest_algorithm == XXH128
    assert {e.path: e.digest for e in got.manifest} == WANDB_XXH128_ENTRIES
    assert all(e.extra["alg"] == "XXH128" for e in got.manifest)
    root = Path(got.download(str(tmp_path / "out")))
    assert {p: (root / p).read_bytes() for p in FILES} == FILES
    got.verify(str(root))
    (root / "a.txt").write_bytes(b"HELLO\n")
    with pytest.raises(ValueError, match=r"a\.txt.*does not match"):
        got.verify(str(root))
    # a changed copy stays XXH128, and so does the file it adds
    draft = api.artifact("proj/data:v0")
    (tmp_path / "c.txt").write_bytes(b"more")
    draft.add_file(str(tmp_path / "c.txt"))
    v1 = draft.save()
    assert v1.manifest["c.txt"].digest == xxh128_b64(b"more")
    assert v1.digest == artifact_digest(
        [*WANDB_XXH128_ENTRIES.items(), ("c.txt", xxh128_b64(b"more"))], XXH128)


def test_same_bytes_under_both_algorithms_are_one_blob(api: Api, tmp_path: Path,
                                                       env: dict[str, str]) -> None:
    data = rand_bytes(CHUNK_SIZE * 2 + 7, seed=5)  # chunked: read through its index
    xxh_artifact(api, tmp_path, {"big.bin": data}, name="x")
    plain = Artifact("m", "dataset")
    plain._client = api
    plain.add_file(str(make_tree(tmp_path / "m", {"big.bin": data}) / "big.bin"))
    plain.save(project="proj")
    blobs = [p for p in (Path(env["ARTIFACTFS_STORE"]) / "blobs").rglob("*") if p.is_file()]
    assert [p.name for p in blobs] == [hashlib.md5(data).hexdigest()]
    entry = api.artifact("proj/x:v0").manifest["big.bin"]
    assert api.content.read(entry, CHUNK_SIZE - 3, 10) == data[CHUNK_SIZE - 3 : CHUNK_SIZE + 7]


def test_bytes_that_fail_the_xxh128_digest_are_never_served(tmp_path: Path) -> None:
    """An entry whose extra.md5 names real bytes that are not what its XXH128 digest says
    (a hostile or broken manifest): reading it whole fails rather than serve them."""
    store = Store(tmp_path / "store")
    real, claimed = b"the stored bytes", b"other bytes!!!!!"
    store.blobs.put_stream(io.BytesIO(real), md5_b64(real))
    lying = ManifestEntry("f.txt", xxh128_b64(claimed), len(real),
                          extra={"alg": "XXH128", "md5": md5_b64(real)})
    store.commit(entity="local", project="p", name="n", type_="t",
                 manifest=Manifest([lying], digest_algorithm=XXH128))
    with store_api(tmp_path) as api:
        entry = api.artifact("p/n:v0").manifest["f.txt"]
        with pytest.raises(DigestMismatch):
            api.content.whole(entry)
        with pytest.raises(DigestMismatch):
            api.artifact("p/n:v0").download(str(tmp_path / "out"))
        assert not (tmp_path / "out" / "f.txt").exists()
        assert not any((tmp_path / "cache").rglob(blob_key(md5_b64(real))))  # nor cached


def test_a_large_xxh128_download_checks_the_assembled_digest(tmp_path: Path) -> None:
    """Chunks pass their index (built from the real bytes), the MD5 is right, but the
    XXH128 digest is not the bytes': the download is refused."""
    store = Store(tmp_path / "store")
    data = rand_bytes(CHUNK_SIZE + 100, seed=9)
    store.blobs.put_stream(io.BytesIO(data), md5_b64(data))
    lying = ManifestEntry("big.bin", xxh128_b64(data[:-1] + b"x"), len(data),
                          extra={"alg": "XXH128", "md5": md5_b64(data)})
    store.commit(entity="local", project="p", name="n", type_="t",
                 manifest=Manifest([lying], digest_algorithm=XXH128))
    with store_api(tmp_path) as api, pytest.raises(DigestMismatch, match="assembled bytes"):
        api.artifact("p/n:v0").download(str(tmp_path / "out"))


def test_push_with_xxh128_prints_and_stores_wandbs_digest(run_cli, tmp_path: Path,
                                                          api: Api) -> None:
    src = make_tree(tmp_path / "src", FILES)
    proc = run_cli("push", str(src), "proj/cli", "--type", "dataset",
                   "--digest-algorithm", "xxh128")
    assert proc.returncode == 0, proc.stderr
    assert api.artifact("proj/cli:v0").digest == WANDB_XXH128_DIGEST
    proc = run_cli("push", str(src), "proj/cli2", "--type", "dataset",
                   "--digest-algorithm", "sha1")
    assert proc.returncode == 2 and "sha1" in proc.stderr and "Traceback" not in proc.stderr


def test_sdk_refuses_an_unknown_algorithm() -> None:
    with pytest.raises(ValueError, match="'sha1' is not one of MD5, XXH128"):
        Artifact("x", "dataset", digest_algorithm="sha1")


def test_gc_keeps_the_blobs_of_xxh128_entries(tmp_path: Path, run_cli, env: dict[str, str]
                                              ) -> None:
    """gc finds a version's blobs in its stored manifest: an XXH128 entry's blob is named
    by extra.md5, not by its digest."""
    store_dir = Path(env["ARTIFACTFS_STORE"])
    with store_api(tmp_path) as api:
        xxh_artifact(api, tmp_path, {"k.txt": b"kept", "big.bin": rand_bytes(CHUNK_SIZE + 1)})
    proc = run_cli("gc", "--store", str(store_dir), "--grace", "0")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("removed 0 blobs"), proc.stdout
    with store_api(tmp_path) as api:
        api.artifact("proj/data:v0").download(str(tmp_path / "out"))
    assert (tmp_path / "out" / "k.txt").read_bytes() == b"kept"
