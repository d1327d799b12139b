"""The rest of W&B's ``Artifact``, ``ArtifactManifest`` and ``ArtifactManifestEntry`` surface:
source and collection attributes, ``new_draft``, ``finalize``, ``get_added_local_path_name``,
the manifest's ``add_entry``/``remove_entry``/``get_entries_in_directory``, the entry's
``to_json``. On the embedded store and a server (the ``api`` fixture's transports).
tests/interop/test_wandb_surface.py checks against the real wandb that no name is missing.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from artifactfs import Api, Artifact
from artifactfs.core.errors import ArtifactFSError, InvalidManifest, NotFound
from artifactfs.core.manifest import ManifestEntry
from artifactfs.sdk.manifest import ArtifactManifest

PROJECT = "surface"


@pytest.fixture(autouse=True)
def _environment(environ: dict[str, str]) -> None:
    """The SDK reads the environment, as a user's program does (conftest's ``environ``)."""


def saved(tmp_path: Path, files: dict[str, bytes], name: str = "data",
          **kwargs: object) -> Artifact:
    art = Artifact(name, "dataset", **kwargs)  # type: ignore[arg-type]
    for rel, data in files.items():
        path = tmp_path / "src" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        art.add_file(path, name=rel)
    return art.save(project=PROJECT)


def test_a_version_is_its_own_source(api: Api, tmp_path: Path) -> None:
    art = saved(tmp_path, {"a.txt": b"alpha"})
    got = api.artifact(f"{PROJECT}/data:v0")
    assert got.is_link is False
    assert got.linked_artifacts == []
    assert got.linked_at is None
    assert got.source_artifact is got
    assert (got.source_entity, got.source_project) == (art.entity, PROJECT)
    assert got.source_version == "v0"
    assert got.source_name == "data:v0"
    assert got.source_qualified_name == f"{art.entity}/{PROJECT}/data:v0"
    assert got.history_step is None


def test_collection_of_a_version(api: Api, tmp_path: Path) -> None:
    saved(tmp_path, {"a.txt": b"one"})
    saved(tmp_path, {"a.txt": b"two"})
    art = api.artifact(f"{PROJECT}/data:v0")
    art.aliases = ["best"]
    art.save()
    col = art.collection
    assert (col.project, col.name, col.type, col.version_count) == (
        PROJECT, "data", "dataset", 2)
    assert col.is_sequence()
    assert [a.version for a in col.artifacts()] == ["v0", "v1"]
    assert [a.version for a in col.versions()] == ["v0", "v1"]
    assert col.aliases == ["best", "latest"]
    assert art.source_collection == col


def test_a_draft_has_no_source_or_collection(tmp_path: Path) -> None:
    draft = Artifact("data", "dataset")
    for what in ("source_entity", "source_project", "source_version",
                 "source_qualified_name", "collection", "source_artifact",
                 "linked_artifacts"):
        with pytest.raises(ArtifactFSError, match=f"Artifact.{what} needs a saved"):
            getattr(draft, what)
    with pytest.raises(ArtifactFSError, match="new_draft needs a saved"):
        draft.new_draft()


def test_new_draft_makes_the_next_version_and_leaves_the_original(
        api: Api, tmp_path: Path) -> None:
    saved(tmp_path, {"a.txt": b"alpha", "b.txt": b"beta"}, metadata={"rows": 2})
    art = api.artifact(f"{PROJECT}/data:latest")
    draft = art.new_draft()
    assert draft.is_draft() and not art.is_draft()
    assert draft.metadata == {"rows": 2}
    new = tmp_path / "c.txt"
    new.write_bytes(b"gamma")
    draft.add_file(new)
    draft.remove("b.txt")
    draft.save()
    assert draft.version == "v1"
    assert sorted(e.path for e in draft.files()) == ["a.txt", "c.txt"]
    assert art.version == "v0" and sorted(e.path for e in art.files()) == ["a.txt", "b.txt"]
    assert sorted(e.path for e in api.artifact(f"{PROJECT}/data:v0").files()) == [
        "a.txt", "b.txt"]


def test_finalize_freezes_the_files_but_not_the_save(api: Api, tmp_path: Path) -> None:
    src = tmp_path / "a.txt"
    src.write_bytes(b"alpha")
    art = Artifact("data", "dataset")
    art.add_file(src)
    art.finalize()
    for change in (lambda: art.add_file(src, name="b.txt"), lambda: art.remove("a.txt"),
                   lambda: art.add_reference(src.as_uri())):
        with pytest.raises(ArtifactFSError, match="finalized"):
            change()
    art.metadata = {"still": "settable"}
    art.save(project=PROJECT)
    assert [e.path for e in api.artifact(f"{PROJECT}/data").files()] == ["a.txt"]
    assert api.artifact(f"{PROJECT}/data").metadata == {"still": "settable"}


def test_get_added_local_path_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "tree"
    (folder / "sub").mkdir(parents=True)
    (folder / "sub" / "x.bin").write_bytes(b"x")
    one = tmp_path / "one.txt"
    one.write_bytes(b"1")
    art = Artifact("data", "dataset")
    art.add_file(str(one), name="renamed.txt")
    art.add_dir(str(folder), name="under")
    assert art.get_added_local_path_name(str(one)) == "renamed.txt"
    assert art.get_added_local_path_name(os.path.join(str(folder), "sub", "x.bin")) == (
        "under/sub/x.bin")
    monkeypatch.chdir(tmp_path)  # a relative spelling of the same file
    assert art.get_added_local_path_name("one.txt") == "renamed.txt"
    assert art.get_added_local_path_name(str(tmp_path / "never-added")) is None


def test_incremental_use_as_distributed_id_and_url(api: Api, tmp_path: Path) -> None:
    draft = Artifact("data", "dataset", incremental=True, use_as="training")
    assert draft.incremental is True
    with pytest.deprecated_call():
        assert draft.use_as == "training"
    assert draft.distributed_id is None
    draft.distributed_id = "group-7"
    assert draft.distributed_id == "group-7"
    assert draft.url is None
    art = saved(tmp_path, {"a.txt": b"alpha"})
    registry = api.config.registry_url
    if registry is None:  # the embedded store has no web view
        assert art.url is None
    else:
        assert art.url == f"{registry.rstrip('/')}/web/p/{PROJECT}/data/v0"


def test_manifest_add_remove_and_list_entries(api: Api, tmp_path: Path) -> None:
    base = saved(tmp_path, {"d/a.txt": b"alpha", "d/e/b.txt": b"beta", "top.txt": b"t"})
    other = saved(tmp_path, {"c.txt": b"gamma"}, name="other")
    art = Artifact("mixed", "dataset")
    manifest = art.manifest
    assert isinstance(manifest, ArtifactManifest)
    # an entry of another version, whose blob the registry holds: committed as it is
    manifest.add_entry(other.get_entry("c.txt"))
    for entry in base.manifest.get_entries_in_directory("d"):
        manifest.add_entry(entry)
    with pytest.raises(ValueError, match="same path twice"):
        manifest.add_entry(ManifestEntry("c.txt", base.manifest["top.txt"].digest, 1))
    manifest.remove_entry(manifest.get_entry_by_path("d/e/b.txt"))
    with pytest.raises(FileNotFoundError, match="missing entry"):
        manifest.remove_entry(ManifestEntry("nope.txt", base.manifest["top.txt"].digest, 1))
    assert [e.path for e in manifest.get_entries_in_directory("d")] == ["d/a.txt"]
    assert [e.path for e in manifest.get_entries_in_directory("d/")] == ["d/a.txt"]
    art.save(project=PROJECT)
    got = api.artifact(f"{PROJECT}/mixed:v0")
    assert sorted(e.path for e in got.files()) == ["c.txt", "d/a.txt"]
    got.verify(got.download(tmp_path / "out"))
    assert (tmp_path / "out" / "c.txt").read_bytes() == b"gamma"
    assert ArtifactManifest.version() == 1 == got.manifest.manifest_version


def test_a_saved_versions_manifest_does_not_change(api: Api, tmp_path: Path) -> None:
    art = saved(tmp_path, {"a.txt": b"alpha"})
    got = api.artifact(f"{PROJECT}/data:v0")
    with pytest.raises(ArtifactFSError, match="new_draft"):
        got.manifest.add_entry(ManifestEntry("b.txt", art.manifest["a.txt"].digest, 5))
    with pytest.raises(ArtifactFSError, match="new_draft"):
        got.manifest.remove_entry(got.manifest["a.txt"])
    stale = got.manifest
    src = tmp_path / "b.txt"
    src.write_bytes(b"beta")
    got.add_file(src)  # the artifact becomes a draft with a manifest of its own
    with pytest.raises(ArtifactFSError, match="older manifest"):
        stale.add_entry(ManifestEntry("c.txt", art.manifest["a.txt"].digest, 5))
    assert [e.path for e in api.artifact(f"{PROJECT}/data:v0").files()] == ["a.txt"]


def test_an_entry_added_without_its_bytes_is_refused_at_save(api: Api, tmp_path: Path
                                                             ) -> None:
    art = Artifact("data", "dataset")
    art.manifest.add_entry(ManifestEntry("ghost.bin", "AAAAAAAAAAAAAAAAAAAAAA==", 3))
    with pytest.raises((ArtifactFSError, NotFound), match=r"ghost\.bin"):
        art.save(project=PROJECT)
    assert api.artifacts(None, f"{PROJECT}/data") == []


def test_entry_fields_as_wandb_names_them(api: Api, tmp_path: Path) -> None:
    art = saved(tmp_path, {"a.txt": b"alpha"})
    entry = api.artifact(f"{PROJECT}/data:v0").get_entry("a.txt")
    assert entry.name == "a.txt"
    assert entry.digest_algorithm() == "MD5"
    assert entry.parent_artifact().qualified_name == art.qualified_name
    assert entry.skip_cache is False
    assert entry.to_json() == {"path": "a.txt", "digest": entry.digest, "size": 5,
                               "extra": entry.extra, "skip_cache": False,
                               **({"birth_artifact_id": entry.birth_artifact_id}
                                  if entry.birth_artifact_id else {})}
    xxh = Artifact("fast", "dataset", digest_algorithm="XXH128")
    src = tmp_path / "x.bin"
    src.write_bytes(b"x" * 100)
    added = xxh.add_file(src)
    assert added.digest_algorithm() == "XXH128" == xxh.digest_algorithm
    assert art.digest_algorithm == "MD5"
    assert added.to_json()["local_path"] == str(src)


def test_hash_contents_with_md5(api: Api, tmp_path: Path) -> None:
    src = tmp_path / "x.bin"
    src.write_bytes(b"x" * 100)
    art = Artifact("fast", "dataset", digest_algorithm="XXH128")
    art.add_file(src)
    assert art.manifest["x.bin"].algorithm == "XXH128"
    art.manifest.hash_contents_with_md5()
    assert art.manifest["x.bin"].algorithm == "MD5"
    assert "alg" not in art.manifest["x.bin"].extra
    art.save(project=PROJECT)
    got = api.artifact(f"{PROJECT}/fast:v0")
    got.verify(got.download(tmp_path / "out"))


def test_from_manifest_json_reads_what_to_manifest_json_writes(api: Api, tmp_path: Path
                                                               ) -> None:
    art = saved(tmp_path, {"a.txt": b"alpha", "d/b.txt": b"beta"})
    again = ArtifactManifest.from_manifest_json(art.manifest.to_manifest_json())
    assert again.digest() == art.manifest.digest() == art.digest
    assert [e.path for e in again] == ["a.txt", "d/b.txt"]


def test_from_manifest_json_takes_the_digest_algorithm_as_wandb_does(
        api: Api, tmp_path: Path) -> None:
    """wandb 0.31's second argument: W&B's JSON does not carry the algorithm."""
    art = saved(tmp_path, {"a.txt": b"alpha"}, name="fast", digest_algorithm="XXH128")
    written = art.manifest.to_manifest_json()
    for given in ("XXH128", "MANIFEST_XXH128"):  # ours, and the value of wandb's enum
        again = ArtifactManifest.from_manifest_json(written, given)
        assert again.digest_algorithm == "XXH128"
        assert again.digest() == art.digest
    assert ArtifactManifest.from_manifest_json(written).digest_algorithm == "MD5"
    with pytest.raises(InvalidManifest, match="SHA1"):
        ArtifactManifest.from_manifest_json(written, "SHA1")
