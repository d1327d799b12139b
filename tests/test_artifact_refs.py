"""Artifact-to-artifact references (``wandb-artifact://<id>/<path>``, docs/wandb-format.md
section 5): added from another artifact's entry or its ``ref_url()``, resolved through the
registry, read verified, and ``download(recursive=True)``; on both transports. What a
server lets a key reference and read is in tests/server/test_artifact_refs.py, a mount
reading one in tests/fs/test_mount_artifact_refs.py.
"""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from helpers import rand_bytes

from artifactfs import Api, Artifact, DigestMismatch
from artifactfs.core.artifact_refs import UnresolvedReference
from artifactfs.core.chunks import CHUNK_SIZE
from artifactfs.core.digests import md5_b64
from artifactfs.core.errors import InvalidManifest
from artifactfs.core.manifest import Manifest, ManifestEntry
from artifactfs.store import Store

PROJECT = "proj"
BIG = rand_bytes(2 * CHUNK_SIZE + 123, seed=18)  # read by chunk through the reference
FILES = {"labels.txt": b"cat\ndog\n", "deep/big.bin": BIG}


@pytest.fixture(autouse=True)
def _environment(environ: dict[str, str], monkeypatch: pytest.MonkeyPatch,
                 tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)  # default download roots (./artifacts/...) land here


def saved(files: dict[str, bytes], name: str) -> Artifact:
    art = Artifact(name, "dataset")
    for path, data in files.items():
        with art.new_file(path, mode="wb") as f:
            f.write(data)
    return art.save(project=PROJECT)


def test_a_reference_to_another_artifacts_entry_reads_its_bytes(
        api: Api, tmp_path: Path) -> None:
    source = saved(FILES, "source")
    derived = Artifact("derived", "dataset")
    (by_entry,) = derived.add_reference(source.get_entry("deep/big.bin"))
    (by_url,) = derived.add_reference(source.get_entry("labels.txt").ref_url(), name="l.txt")
    with derived.new_file("own.txt", mode="w") as f:
        f.write("mine\n")
    # W&B's entry: the target's digest and its ref URL; its size kept (W&B writes 0)
    assert (by_entry.path, by_entry.ref, by_entry.digest, by_entry.size) == (
        "big.bin", f"wandb-artifact://{source.id}/deep/big.bin", md5_b64(BIG), len(BIG))
    assert by_url.ref == f"wandb-artifact://{source.id}/labels.txt"
    derived.save(project=PROJECT)

    back = api.artifact(f"{PROJECT}/derived:v0")
    assert back.manifest["l.txt"].ref == by_url.ref
    root = Path(back.download(tmp_path / "dl"))
    assert (root / "big.bin").read_bytes() == BIG
    assert (root / "l.txt").read_bytes() == FILES["labels.txt"]
    assert (root / "own.txt").read_bytes() == b"mine\n"
    back.verify(root)  # references are skipped by verify, as W&B documents
    one = back.get_entry("l.txt").download(str(tmp_path / "one"))
    assert Path(one).read_bytes() == FILES["labels.txt"]
    # the target is stored in the registry: its own reference URL is what it names
    assert back.get_entry("l.txt").ref_target() == by_url.ref
    # the core manifest's JSON keeps it as W&B writes it
    assert back.manifest.to_manifest_json()["contents"]["l.txt"] == {
        "digest": md5_b64(FILES["labels.txt"]), "ref": by_url.ref,
        "size": len(FILES["labels.txt"])}


def test_a_chain_of_references_is_stored_as_its_end(api: Api) -> None:
    """As W&B: a reference to an entry that is itself a reference names the entry at the
    end of the chain."""
    source = saved(FILES, "source")
    middle = Artifact("middle", "dataset")
    middle.add_reference(source.get_entry("labels.txt"))
    middle.save(project=PROJECT)
    last = Artifact("last", "dataset")
    (entry,) = last.add_reference(middle.get_entry("labels.txt"), name="x/labels.txt")
    assert entry.ref == f"wandb-artifact://{source.id}/labels.txt"
    last.save(project=PROJECT)
    got = Path(api.artifact(f"{PROJECT}/last:v0").get_entry("x/labels.txt").download())
    assert got.read_bytes() == FILES["labels.txt"]
    assert got == Path.cwd() / "artifacts/last:v0/x/labels.txt"  # absolute, as W&B


def test_download_recursive_fetches_the_artifacts_it_depends_on(api: Api) -> None:
    source = saved(FILES, "source")
    middle = Artifact("middle", "dataset")
    middle.add_reference(source.get_entry("labels.txt"))
    with middle.new_file("m.txt", mode="w") as f:
        f.write("m\n")
    middle.save(project=PROJECT)
    top = Artifact("top", "dataset")
    top.add_reference(middle.get_entry("m.txt"))
    top.save(project=PROJECT)
    root = api.artifact(f"{PROJECT}/top:latest").download(recursive=True)
    assert Path(root, "m.txt").read_bytes() == b"m\n"
    # each dependency whole, at its own default root, and theirs in turn
    assert Path("artifacts/middle:v0/m.txt").read_bytes() == b"m\n"
    assert Path("artifacts/middle:v0/labels.txt").read_bytes() == FILES["labels.txt"]
    assert Path("artifacts/source:v0/deep/big.bin").read_bytes() == BIG
    assert not Path("artifacts/other").exists()


def test_a_reference_to_a_missing_or_deleted_version_is_a_clear_error(
        api: Api, tmp_path: Path) -> None:
    draft = Artifact("d", "dataset")
    with pytest.raises(UnresolvedReference, match="no artifact version 0123456789abcdef"):
        draft.add_reference("wandb-artifact://0123456789abcdef01234567/a.txt")
    source = saved(FILES, "source")
    with pytest.raises(UnresolvedReference, match=r"has no file 'nope\.txt'"):
        draft.add_reference(f"wandb-artifact://{source.id}/nope.txt")
    with pytest.raises(InvalidManifest):
        draft.add_reference("wandb-artifact://not-hex/a.txt")
    draft.add_reference(source.get_entry("labels.txt"))
    draft.save(project=PROJECT)
    api.artifact(f"{PROJECT}/source:v0").delete(delete_aliases=True)
    fresh = Api(config=api.config)
    try:
        with pytest.raises(UnresolvedReference, match=f"no artifact version {source.id}"):
            fresh.artifact(f"{PROJECT}/d:v0").download(tmp_path / "gone")
        with pytest.raises(UnresolvedReference):
            fresh.artifact(f"{PROJECT}/d:v0").download(tmp_path / "gone2", recursive=True)
    finally:
        fresh.close()
    # and a new commit may not name it either
    again = Artifact("again", "dataset")
    again._manifest.add(ManifestEntry(  # type: ignore[union-attr]
        "l.txt", md5_b64(FILES["labels.txt"]), len(FILES["labels.txt"]),
        ref=f"wandb-artifact://{source.id}/labels.txt"))
    with pytest.raises(InvalidManifest, match="no artifact version"):
        again.save(project=PROJECT)


@pytest.mark.parametrize("transport", ["embedded"], indirect=True)
def test_a_commit_checks_what_its_references_name(env: dict[str, str]) -> None:
    """On the store: the digest must be the target's; a size of 0 (W&B's) is filled in
    with the target's, any other must be it; no reference to a reference."""
    store = Store(env["ARTIFACTFS_STORE"])
    data = b"target bytes\n"
    digest = md5_b64(data)
    store.blobs.put_stream(io.BytesIO(data), digest)
    target = store.commit(entity="local", project=PROJECT, name="t", type_="dataset",
                          manifest=Manifest([ManifestEntry("f.txt", digest, len(data))]))
    ref = f"wandb-artifact://{target.id}/f.txt"

    def commit(*entries: ManifestEntry) -> Manifest:
        manifest = Manifest(entries)
        store.commit(entity="local", project=PROJECT, name="r", type_="dataset",
                     manifest=manifest)
        return manifest

    with pytest.raises(InvalidManifest, match="whose digest is"):
        commit(ManifestEntry("x", md5_b64(b"other"), len(data), ref=ref))
    with pytest.raises(InvalidManifest, match="bytes, but that file has"):
        commit(ManifestEntry("x", digest, 3, ref=ref))
    made = commit(ManifestEntry("x", digest, 0, ref=ref))
    assert made["x"].size == len(data)
    stored = store.db.resolve("local", PROJECT, "r", "latest")
    assert stored.size == len(data)
    first = store.db.resolve("local", PROJECT, "r", "v0")
    chain = f"wandb-artifact://{first.id}/x"
    with pytest.raises(InvalidManifest, match="end of the chain"):
        commit(ManifestEntry("y", digest, len(data), ref=chain))


def test_a_reference_whose_digest_is_not_the_targets_is_refused_on_read(
        api: Api, tmp_path: Path, env: dict[str, str]) -> None:
    """What the commit checks is checked again when read: a manifest holding a reference
    with another digest (written before, or by a registry gone wrong) reads no bytes."""
    source = saved(FILES, "source")
    entry = ManifestEntry("l.txt", md5_b64(b"not these"), 8,
                          ref=f"wandb-artifact://{source.id}/labels.txt")
    with pytest.raises(DigestMismatch, match="whose digest is"):
        api.content.read(entry, 0, 8)


def test_a_reference_to_an_xxh128_entry_reads_it(api: Api, tmp_path: Path) -> None:
    """As W&B, the reference takes the target's digest (XXH128 here) and no ``extra``; the
    bytes are read by the target's own entry, which names its blob by MD5."""
    source = Artifact("fast", "dataset", digest_algorithm="XXH128")
    for path, data in FILES.items():
        with source.new_file(path, mode="wb") as f:
            f.write(data)
    source.save(project=PROJECT)
    target = source.get_entry("deep/big.bin")
    assert target.extra.get("alg") == "XXH128"
    derived = Artifact("plain", "dataset")
    (entry,) = derived.add_reference(target)
    assert entry.digest == target.digest and not entry.extra
    derived.save(project=PROJECT)
    root = Path(api.artifact(f"{PROJECT}/plain:v0").download(tmp_path / "x"))
    assert (root / "big.bin").read_bytes() == BIG
