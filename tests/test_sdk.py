"""The public Python API (Api, Artifact), on both transports, end to end.

New ``Artifact`` objects pick their client the way a user's script does: ``Api()`` built
from the environment, which the autouse fixture points at this test's own store (or server).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from datetime import datetime
from pathlib import Path

import pytest
from helpers import make_tree
from scale_out import scale_out

from artifactfs import (
    Api,
    Artifact,
    ArtifactFSError,
    Conflict,
    DigestMismatch,
    InvalidName,
    NotFound,
)
from artifactfs.cache.disk import LAYOUT
from artifactfs.core.chunks import CHUNK_INDEX_EXTRA_KEY, CHUNK_SIZE
from artifactfs.core.digests import blob_key, md5_b64
from artifactfs.store import Store

PROJECT = "proj"
embedded_only = pytest.mark.parametrize("transport", ["embedded"], indirect=True)


@pytest.fixture(autouse=True)
def _environment(environ: dict[str, str]) -> None:
    """The SDK reads the environment, as a user's program does (conftest's ``environ``)."""


@pytest.fixture
def src(tmp_path: Path) -> Path:
    return make_tree(
        tmp_path / "src",
        {
            "a.txt": b"alpha\n",
            "b/c.txt": b"gamma gamma\n",
            "b/d/e.bin": bytes(range(256)) * 4,
        },
    )


@pytest.fixture
def work(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "work"
    folder.mkdir()
    monkeypatch.chdir(folder)
    return folder


def store_dir(api: Api) -> Path:
    return api.config.store_dir


def blob_files(api: Api) -> list[Path]:
    return sorted(p for p in (store_dir(api) / "blobs").rglob("*") if p.is_file())


def files_under(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def save_dir(src: Path, name: str = "data", type_: str = "dataset", **kwargs) -> Artifact:
    aliases = kwargs.pop("aliases", [])
    art = Artifact(name, type_, **kwargs)
    art.add_dir(src)
    art.aliases = aliases
    art.save(project=PROJECT)
    return art


def save_bytes(tmp_path: Path, files: dict[str, bytes], name: str = "data",
               aliases: tuple[str, ...] = ()) -> Artifact:
    folder = make_tree(Path(tempfile.mkdtemp(prefix="files-", dir=tmp_path)), files)
    art = Artifact(name, "dataset")
    art.add_dir(folder)
    art.aliases = list(aliases)
    return art.save(project=PROJECT)


def versions(api: Api, name: str = "data") -> list[str]:
    return [a.version for a in api.artifacts(None, f"{PROJECT}/{name}")]


# ---- the client -------------------------------------------------------------------------


@scale_out
def test_new_artifact_saves_through_the_configured_registry(api: Api, src: Path) -> None:
    art = Artifact("data", "dataset")
    art.add_file(src / "a.txt")
    assert art.save(project=PROJECT) is art
    found = api.artifact(f"{PROJECT}/data:latest")
    assert found.id == art.id
    assert found.name == "data:v0"
    other = Api({"project": PROJECT})  # a bare name uses the configured project
    try:
        assert other.artifact("data:v0", type="dataset").id == art.id
    finally:
        other.close()


@pytest.mark.parametrize("transport", ["s3"], indirect=True)
def test_download_of_a_version_whose_blobs_are_in_s3(api: Api, src: Path, tmp_path: Path
                                                     ) -> None:
    """Blobs in a bucket behind the server: saved by presigned upload, downloaded by
    presigned URL, verified."""
    big = os.urandom(2 * (1 << 20) + 99)
    (src / "big.bin").write_bytes(big)
    save_dir(src)
    # another machine: nothing in its cache yet (saving kept the files in this one's)
    reader = Api(config=api.config.replace(cache_dir=tmp_path / "other-cache"))
    try:
        path = reader.artifact(f"{PROJECT}/data:latest").download(root=str(tmp_path / "dl"))
        assert files_under(Path(path)) == files_under(src)
        reader.artifact(f"{PROJECT}/data:latest").verify(path)
    finally:
        reader.close()
    log = (tmp_path / "server.log").read_text()
    assert '"PUT /api/v1/blobs/' not in log and "/uploaded" in log
    reads = [line for line in log.splitlines()
             if '"GET /api/v1/blobs/' in line and "/chunks" not in line]
    assert reads and all('" 307 ' in line for line in reads)  # every byte from storage


@embedded_only
def test_save_uses_the_default_project(api: Api, src: Path, monkeypatch) -> None:
    monkeypatch.setenv("ARTIFACTFS_PROJECT", "defaultproj")
    art = Artifact("data", "dataset")
    art.add_file(src / "a.txt")
    art.save()
    assert art.project == "defaultproj"
    assert api.artifact("defaultproj/data").id == art.id


# ---- adding files -----------------------------------------------------------------------


@embedded_only
def test_add_file_add_dir_and_new_file_build_the_manifest(src: Path) -> None:
    art = Artifact("data", "dataset")
    entry = art.add_file(src / "a.txt")
    assert (entry.path, entry.size, entry.digest) == ("a.txt", 6, md5_b64(b"alpha\n"))
    art.add_file(src / "b" / "c.txt", name="renamed/c.txt")
    art.add_dir(src / "b", name="sub")
    with art.new_file("notes.txt", mode="w") as f:
        f.write("first cut\n")
    with art.new_file("raw/bytes.bin", mode="wb") as f:
        f.write(b"\x00\x01\x02")
    assert sorted(art.manifest.entries) == [
        "a.txt", "notes.txt", "raw/bytes.bin", "renamed/c.txt", "sub/c.txt", "sub/d/e.bin",
    ]
    assert art.manifest["notes.txt"].digest == md5_b64(b"first cut\n")
    assert art.manifest["raw/bytes.bin"].size == 3
    assert art.get_entry("sub/d/e.bin").digest == md5_b64(bytes(range(256)) * 4)
    assert art.file_count == 6


@embedded_only
def test_add_refusals(src: Path, tmp_path: Path) -> None:
    art = Artifact("data", "dataset")
    with pytest.raises(ValueError, match="is not a file"):
        art.add_file(src / "missing.txt")
    with pytest.raises(ValueError, match="is not a file"):
        art.add_file(src / "b")
    with pytest.raises(ValueError, match="is not a folder"):
        art.add_dir(src / "a.txt")
    for bad in ("../escape.txt", "/abs.txt", "a//b", "x/./y"):
        with pytest.raises(ValueError):
            art.add_file(src / "a.txt", name=bad)
    with pytest.raises(ValueError):
        art.add_dir(src, name="../up")
    art.add_file(src / "a.txt", name="same.txt")
    with pytest.raises(ValueError, match="overwrite=True"):
        art.add_file(src / "b" / "c.txt", name="same.txt")
    art.add_file(src / "b" / "c.txt", name="same.txt", overwrite=True)
    assert art.manifest["same.txt"].digest == md5_b64(b"gamma gamma\n")
    with pytest.raises(ValueError):  # file vs folder clash
        art.add_file(src / "a.txt", name="same.txt/inner")
    with art.new_file("n.txt", mode="w") as f:
        f.write("x")
    with pytest.raises(ValueError, match="already exists"), art.new_file("n.txt"):
        pass
    with pytest.raises(ValueError, match="not allowed"), art.new_file("r.txt", mode="r"):
        pass
    assert sorted(art.manifest.entries) == ["n.txt", "same.txt"]


@embedded_only
def test_draft_attributes() -> None:
    art = Artifact("data", "dataset", description="d", metadata={"rows": 3})
    assert art.state == "PENDING"
    assert art.is_draft()
    assert art.id is None
    assert art.name == "data"
    assert art.type == "dataset"
    assert art.created_at is None
    assert art.description == "d"
    assert art.metadata == {"rows": 3}
    assert art.size == 0
    assert art.digest == hashlib.md5(b"wandb-artifact-manifest-v1\n").hexdigest()
    with pytest.raises(ArtifactFSError):
        _ = art.version
    with pytest.raises(ArtifactFSError, match="save the artifact"):
        art.download()


@embedded_only
@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"name": "bad name", "type": "dataset"}, "artifact name"),
        ({"name": "a/b", "type": "dataset"}, "artifact name"),
        ({"name": "x" * 129, "type": "dataset"}, "128"),
        ({"name": "ok", "type": "bad type"}, "type"),
        ({"name": "ok", "type": "dataset", "metadata": {"f": object()}}, "JSON"),
    ],
)
def test_artifact_checks_its_arguments(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Artifact(**kwargs)


@embedded_only
def test_alias_rules_apply_when_set() -> None:
    art = Artifact("data", "dataset")
    for bad in ("v1", "a/b", "a:b", ""):
        with pytest.raises(InvalidName):
            art.aliases = [bad]
    art.aliases = ["best", "latest"]
    assert art.aliases == ["best", "latest"]


# ---- saving and attributes --------------------------------------------------------------


@scale_out
def test_committed_attributes(api: Api, src: Path) -> None:
    art = save_dir(src, description="first", metadata={"rows": 3}, aliases=["best"])
    got = api.artifact(f"{PROJECT}/data:best")
    files = {"a.txt": b"alpha\n", "b/c.txt": b"gamma gamma\n",
             "b/d/e.bin": bytes(range(256)) * 4}
    expected_digest = hashlib.md5(
        b"wandb-artifact-manifest-v1\n"
        + "".join(f"{p}:{md5_b64(d)}\n" for p, d in sorted(files.items())).encode()
    ).hexdigest()
    for a in (art, got):
        assert a.state == "COMMITTED"
        assert not a.is_draft()
        assert a.version == "v0"
        assert a.name == "data:v0"
        assert a.qualified_name == f"local/{PROJECT}/data:v0"
        assert a.type == "dataset"
        assert a.digest == expected_digest
        assert a.size == sum(len(d) for d in files.values())
        assert a.file_count == 3
        assert a.description == "first"
        assert a.metadata == {"rows": 3}
        assert set(a.aliases) == {"best", "latest"}
        assert a.id == art.id
        assert a.manifest.digest() == expected_digest
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", a.created_at)
        created = datetime.fromisoformat(a.created_at.replace("Z", "+00:00"))
        assert created.timestamp() == pytest.approx(api.registry.version(art.id).created_at,
                                                    abs=1e-5)
        assert a.updated_at is not None
    assert got.created_at == art.created_at


@embedded_only
def test_versions_count_up_and_latest_follows(api: Api, tmp_path: Path) -> None:
    for i in range(3):
        art = save_bytes(tmp_path, {"f.txt": f"v{i}".encode()})
        assert art.version == f"v{i}"
        assert api.artifact(f"{PROJECT}/data").version == f"v{i}"
    assert versions(api) == ["v0", "v1", "v2"]
    assert api.artifact(f"{PROJECT}/data:latest").aliases == ["latest"]
    assert api.artifact(f"{PROJECT}/data:v0").aliases == []


@scale_out
def test_aliases_set_and_saved_move_them(api: Api, tmp_path: Path) -> None:
    v0 = save_bytes(tmp_path, {"f.txt": b"0"}, aliases=("best", "prod"))
    v1 = save_bytes(tmp_path, {"f.txt": b"1"})
    v1.aliases = [*v1.aliases, "best"]
    v1.save()
    assert api.artifact(f"{PROJECT}/data:best").version == "v1"
    assert set(v1.aliases) == {"best", "latest"}
    assert api.artifact(f"{PROJECT}/data:v0").aliases == ["prod"]
    # dropping an alias from the list removes it
    fresh_v0 = api.artifact(f"{PROJECT}/data:v0")
    fresh_v0.aliases = []
    fresh_v0.save()
    with pytest.raises(NotFound, match="prod"):
        api.artifact(f"{PROJECT}/data:prod")
    assert api.artifact(f"{PROJECT}/data:latest").version == "v1"  # never moved by hand
    assert versions(api) == ["v0", "v1"]  # no new version for alias changes
    assert v0.id == fresh_v0.id
    # a new version saved with an alias takes it over
    save_bytes(tmp_path, {"f.txt": b"2"}, aliases=("best",))
    assert api.artifact(f"{PROJECT}/data:best").version == "v2"
    assert api.artifact(f"{PROJECT}/data:v1").aliases == []


@scale_out
def test_description_and_metadata_change_in_place(api: Api, tmp_path: Path) -> None:
    save_bytes(tmp_path, {"f.txt": b"0"})
    art = api.artifact(f"{PROJECT}/data:latest")
    digest, created = art.digest, art.created_at
    art.description = "now described"
    art.metadata = {"acc": 0.91, "tags": ["a", "b"]}
    art.save()
    assert art.version == "v0"
    again = api.artifact(f"{PROJECT}/data:v0")
    assert again.description == "now described"
    assert again.metadata == {"acc": 0.91, "tags": ["a", "b"]}
    assert again.digest == digest
    assert again.created_at == created
    assert versions(api) == ["v0"]
    with pytest.raises(ValueError, match="JSON"):
        again.metadata = {"bad": {1, 2}}


def test_changed_artifact_becomes_a_new_version_inheriting_entries(
    api: Api, src: Path, tmp_path: Path
) -> None:
    save_dir(src)
    blobs_before = blob_files(api)
    assert len(blobs_before) == 3
    art = api.artifact(f"{PROJECT}/data:latest")
    extra = tmp_path / "extra.csv"
    extra.write_bytes(b"x,y\n1,2\n")
    art.add_file(extra)
    assert art.state == "PENDING"
    art.save()
    assert art.version == "v1"
    assert art.state == "COMMITTED"
    assert versions(api) == ["v0", "v1"]
    v0 = api.artifact(f"{PROJECT}/data:v0")
    v1 = api.artifact(f"{PROJECT}/data:v1")
    assert sorted(v1.manifest.entries) == ["a.txt", "b/c.txt", "b/d/e.bin", "extra.csv"]
    assert sorted(v0.manifest.entries) == ["a.txt", "b/c.txt", "b/d/e.bin"]
    for path, entry in v0.manifest.entries.items():
        assert v1.manifest[path].digest == entry.digest
    # only the new blob was uploaded
    blobs_after = blob_files(api)
    assert len(blobs_after) == 4
    assert set(blobs_before) < set(blobs_after)
    [new] = set(blobs_after) - set(blobs_before)
    assert new.name == blob_key(md5_b64(b"x,y\n1,2\n"))
    assert api.artifact(f"{PROJECT}/data:latest").version == "v1"


@embedded_only
def test_removing_and_replacing_entries_of_a_committed_artifact(
    api: Api, src: Path, tmp_path: Path
) -> None:
    save_dir(src)
    art = api.artifact(f"{PROJECT}/data:latest")
    art.remove("b")
    changed = tmp_path / "a.txt"
    changed.write_bytes(b"ALPHA\n")
    art.add_file(changed)
    art.save()
    v1 = api.artifact(f"{PROJECT}/data:v1")
    assert sorted(v1.manifest.entries) == ["a.txt"]
    assert v1.manifest["a.txt"].digest == md5_b64(b"ALPHA\n")
    assert len(api.artifact(f"{PROJECT}/data:v0").manifest) == 3


@embedded_only
def test_type_clash_is_a_conflict(api: Api, tmp_path: Path) -> None:
    save_bytes(tmp_path, {"f": b"0"})
    art = Artifact("data", "model")
    art.add_file(make_tree(tmp_path / "m", {"w.bin": b"w"}) / "w.bin")
    with pytest.raises(Conflict, match="dataset"):
        art.save(project=PROJECT)
    assert versions(api) == ["v0"]
    with pytest.raises(ValueError, match="model"):
        api.artifact(f"{PROJECT}/data", type="model")
    assert api.artifact(f"{PROJECT}/data", type="dataset").version == "v0"


@embedded_only
def test_listing_through_the_api(api: Api, tmp_path: Path) -> None:
    save_bytes(tmp_path, {"f": b"0"})
    save_bytes(tmp_path, {"f": b"1"})
    save_bytes(tmp_path, {"g": b"0"}, name="other")
    assert [p.name for p in api.projects()] == [PROJECT]
    assert [t.name for t in api.artifact_types(PROJECT)] == ["dataset"]
    collections = api.artifact_collections(PROJECT, "dataset")
    assert [(c.name, c.version_count) for c in collections] == [("data", 2), ("other", 1)]
    assert [a.version for a in collections[0].artifacts()] == ["v0", "v1"]
    assert api.artifact_exists(f"{PROJECT}/data:v1")
    assert not api.artifact_exists(f"{PROJECT}/data:v2")


# ---- looking artifacts up ---------------------------------------------------------------


@embedded_only
def test_not_found_names_what_was_looked_for(api: Api, tmp_path: Path) -> None:
    with pytest.raises(NotFound, match=f"local/{PROJECT}/nothing:latest"):
        api.artifact(f"{PROJECT}/nothing")
    save_bytes(tmp_path, {"f": b"0"})
    with pytest.raises(NotFound, match=f"local/{PROJECT}/data:v5"):
        api.artifact(f"{PROJECT}/data:v5")
    with pytest.raises(NotFound, match="nope"):
        api.artifact(f"{PROJECT}/data:nope")
    with pytest.raises(InvalidName):
        api.artifact(f"{PROJECT}/data:a/b")


@scale_out
def test_from_id_and_expected_type(api: Api, tmp_path: Path) -> None:
    art = save_bytes(tmp_path, {"f": b"0"})
    same = Artifact.from_id(art.id, api)
    assert (same.name, same.digest, same.type) == ("data:v0", art.digest, "dataset")
    assert same.qualified_name == art.qualified_name
    with pytest.raises(NotFound):
        Artifact.from_id("0" * 24, api)
    assert Artifact.expected_type(api, "data", "local", PROJECT) == "dataset"
    assert Artifact.expected_type(api, "data:v0", "local", PROJECT) == "dataset"
    assert Artifact.expected_type(api, "unknown", "local", PROJECT) is None


# ---- deleting ---------------------------------------------------------------------------


@scale_out
def test_delete_rules(api: Api, tmp_path: Path) -> None:
    save_bytes(tmp_path, {"f": b"0"}, aliases=("best",))
    save_bytes(tmp_path, {"f": b"1"})
    save_bytes(tmp_path, {"f": b"2"})
    v0 = api.artifact(f"{PROJECT}/data:v0")
    with pytest.raises(Conflict, match="best"):
        v0.delete()
    latest = api.artifact(f"{PROJECT}/data:latest")
    with pytest.raises(Conflict, match="latest"):
        latest.delete()
    assert versions(api) == ["v0", "v1", "v2"]
    # a version without aliases goes without asking
    api.artifact(f"{PROJECT}/data:v1").delete()
    assert versions(api) == ["v0", "v2"]
    # the newest, with its aliases: latest moves back
    latest.delete(delete_aliases=True)
    assert latest.state == "DELETED"
    assert latest.aliases == []
    assert api.artifact(f"{PROJECT}/data:latest").version == "v0"
    assert versions(api) == ["v0"]
    with pytest.raises(NotFound):
        api.artifact(f"{PROJECT}/data:v2")
    with pytest.raises(NotFound):
        Artifact.from_id(latest.id or "", api)
    some_file = make_tree(tmp_path / "later", {"g": b"g"}) / "g"
    with pytest.raises(ArtifactFSError, match="deleted"):
        latest.add_file(some_file)
    # numbers are never reused
    assert save_bytes(tmp_path, {"f": b"3"}).version == "v3"
    assert api.artifact(f"{PROJECT}/data:latest").version == "v3"


@embedded_only
def test_a_draft_cannot_be_deleted(tmp_path: Path) -> None:
    art = Artifact("data", "dataset")
    with pytest.raises(ArtifactFSError, match="saved"):
        art.delete()


# ---- downloading and verifying ----------------------------------------------------------


@embedded_only
def test_download_to_the_default_root(api: Api, src: Path, work: Path) -> None:
    save_dir(src)
    art = api.artifact(f"{PROJECT}/data:latest")
    root = art.download()
    assert Path(root) == Path("artifacts") / "data:v0"
    assert (work / "artifacts" / "data:v0").is_dir()
    assert files_under(work / "artifacts" / "data:v0") == files_under(src)
    art.verify()
    art.verify(root)


@embedded_only
def test_download_to_a_given_root(api: Api, src: Path, tmp_path: Path) -> None:
    save_dir(src)
    dest = tmp_path / "out" / "deep"
    assert api.artifact(f"{PROJECT}/data").download(dest) == str(dest)
    assert files_under(dest) == files_under(src)
    assert api.artifact(f"{PROJECT}/data").download(str(dest), path_prefix="b/") == str(dest)


def test_large_and_empty_files_round_trip(api: Api, tmp_path: Path) -> None:
    big = os.urandom(2 * CHUNK_SIZE + 123)
    art = save_bytes(tmp_path, {"big.bin": big, "empty.txt": b""})
    entry = art.manifest["big.bin"]
    assert entry.extra[CHUNK_INDEX_EXTRA_KEY] == Store(
        api.config.store_dir
    ).blobs.chunk_index(entry.digest).sha256()
    assert CHUNK_INDEX_EXTRA_KEY not in art.manifest["empty.txt"].extra
    dest = tmp_path / "dl"
    api.artifact(f"{PROJECT}/data").download(dest)
    assert (dest / "big.bin").read_bytes() == big
    assert (dest / "empty.txt").read_bytes() == b""


@embedded_only
def test_verify_names_missing_extra_and_changed_files(api: Api, src: Path, tmp_path: Path) -> None:
    save_dir(src)
    art = api.artifact(f"{PROJECT}/data")
    dest = Path(art.download(tmp_path / "dl"))
    art.verify(dest)
    (dest / "b" / "c.txt").write_bytes(b"gamma gamma!")
    with pytest.raises(ValueError, match=r"file 'b/c.txt' .* does not match"):
        art.verify(dest)
    (dest / "b" / "c.txt").write_bytes(b"gamma gamma\n")
    art.verify(dest)
    (dest / "a.txt").unlink()
    with pytest.raises(ValueError, match=r"missing file 'a\.txt'"):
        art.verify(dest)
    (dest / "a.txt").write_bytes(b"alpha\n")
    (dest / "b" / "stray.tmp").write_bytes(b"?")
    with pytest.raises(ValueError, match=r"extra file 'b/stray\.tmp'"):
        art.verify(dest)
    with pytest.raises(ValueError, match="not a folder"):
        art.verify(tmp_path / "nowhere")


@embedded_only
def test_file_on_single_and_multi_file_artifacts(api: Api, src: Path, tmp_path: Path,
                                                 work: Path) -> None:
    single = Artifact("one", "model")
    single.add_file(src / "b" / "c.txt")
    single.save(project=PROJECT)
    path = api.artifact(f"{PROJECT}/one").file()
    assert Path(path) == (work / "artifacts" / "one:v0" / "c.txt").resolve()
    assert Path(path).read_bytes() == b"gamma gamma\n"
    path = api.artifact(f"{PROJECT}/one").file(tmp_path / "elsewhere")
    assert Path(path).read_bytes() == b"gamma gamma\n"
    assert Path(path).parent == (tmp_path / "elsewhere").resolve()
    save_dir(src)
    with pytest.raises(ValueError, match="holds 3 files"):
        api.artifact(f"{PROJECT}/data").file()


@embedded_only
def test_get_path_downloads_one_file(api: Api, src: Path, work: Path) -> None:
    save_dir(src)
    art = api.artifact(f"{PROJECT}/data")
    entry = art.get_path("b/d/e.bin")
    assert entry.size == 1024
    assert entry.digest == md5_b64(bytes(range(256)) * 4)
    path = Path(entry.download())
    assert path == (work / "artifacts" / "data:v0" / "b" / "d" / "e.bin").resolve()
    assert path.read_bytes() == bytes(range(256)) * 4
    assert files_under(work / "artifacts" / "data:v0") == {"b/d/e.bin": bytes(range(256)) * 4}
    with pytest.raises(KeyError):
        art.get_path("nope.txt")


@embedded_only
def test_download_skips_correct_files_and_refetches_a_corrupted_one(
    api: Api, src: Path, tmp_path: Path
) -> None:
    save_dir(src)
    art = api.artifact(f"{PROJECT}/data")
    dest = Path(art.download(tmp_path / "dl"))
    old = 1_000_000_000 * 10**9  # a fixed mtime: rewriting a file would change it
    for p in dest.rglob("*"):
        if p.is_file():
            os.utime(p, ns=(old, old))
    before = api.content.stats.requests
    art.download(dest)
    assert api.content.stats.requests == before
    assert {p.stat().st_mtime_ns for p in dest.rglob("*") if p.is_file()} == {old}
    # damage one file (same size), then download again
    target = dest / "b" / "c.txt"
    target.write_bytes(b"gamma GAMMA\n")
    os.utime(target, ns=(old, old))
    art.download(dest)
    assert target.read_bytes() == b"gamma gamma\n"
    assert (dest / "a.txt").stat().st_mtime_ns == old
    assert (dest / "b" / "d" / "e.bin").stat().st_mtime_ns == old
    art.verify(dest)


@embedded_only
def test_download_does_not_follow_a_symlinked_folder_out_of_its_root(
    api: Api, tmp_path: Path
) -> None:
    save_bytes(tmp_path, {"sub/secret.txt": b"inside only", "top.txt": b"top"})
    outside = tmp_path / "outside"
    outside.mkdir()
    root = tmp_path / "dl"
    root.mkdir()
    (root / "sub").symlink_to(outside, target_is_directory=True)
    try:
        api.artifact(f"{PROJECT}/data").download(root)
    except (ArtifactFSError, ValueError, OSError) as exc:  # refusing is fine
        assert "sub/secret.txt" in str(exc)
    assert list(outside.iterdir()) == []


@embedded_only
def test_checkout_leaves_the_version_and_nothing_else(api: Api, src: Path, work: Path,
                                                      tmp_path: Path) -> None:
    """W&B's checkout: files under the root that are not entries are deleted, entries are
    downloaded (a correct one kept as it is), folders stay; a link is removed as a link."""
    save_dir(src)
    art = api.artifact(f"{PROJECT}/data:latest")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.txt").write_bytes(b"not the artifact's")
    root = work / "artifacts" / "data"  # the default root: no version in it
    (root / "b").mkdir(parents=True)
    (root / "a.txt").write_bytes(b"alpha\n")
    kept = (root / "a.txt").stat().st_ino
    (root / "stale.txt").write_bytes(b"from an older version")
    (root / "b" / "old.bin").write_bytes(b"old")
    (root / "empty").mkdir()
    (root / "linked").symlink_to(outside, target_is_directory=True)
    assert Path(art.checkout()) == Path("artifacts") / "data"
    assert files_under(root) == files_under(src)
    assert (root / "a.txt").stat().st_ino == kept
    assert (root / "empty").is_dir()
    assert not (root / "linked").exists() and not (root / "linked").is_symlink()
    assert (outside / "keep.txt").read_bytes() == b"not the artifact's"
    art.verify(root)


@embedded_only
def test_checkout_of_a_draft_or_a_changed_copy_deletes_nothing(
        api: Api, src: Path, tmp_path: Path) -> None:
    """W&B's checkout needs a logged artifact; one that is not is refused before the walk
    that deletes what is not an entry."""
    save_dir(src)
    root = tmp_path / "mine"
    root.mkdir()
    (root / "precious.txt").write_bytes(b"not an entry")
    changed = api.artifact(f"{PROJECT}/data:latest")
    changed.add_file(str(src / "a.txt"), name="again.txt")
    for art in (Artifact("fresh", "dataset"), changed):
        with pytest.raises(ArtifactFSError, match="nothing was deleted"):
            art.checkout(str(root))
    assert (root / "precious.txt").read_bytes() == b"not an entry"


@embedded_only
def test_checkout_into_a_file_is_refused(api: Api, src: Path, tmp_path: Path) -> None:
    save_dir(src)
    target = tmp_path / "a-file"
    target.write_bytes(b"precious")
    with pytest.raises(ArtifactFSError, match="not a folder"):
        api.artifact(f"{PROJECT}/data").checkout(str(target))
    assert target.read_bytes() == b"precious"


@embedded_only
def test_download_does_not_write_through_a_symlinked_file(api: Api, tmp_path: Path) -> None:
    save_bytes(tmp_path, {"top.txt": b"artifact bytes"})
    outside = tmp_path / "outside.txt"
    outside.write_bytes(b"precious")
    root = tmp_path / "dl"
    root.mkdir()
    (root / "top.txt").symlink_to(outside)
    try:
        api.artifact(f"{PROJECT}/data").download(root)
    except (ArtifactFSError, ValueError, OSError) as exc:
        assert "top.txt" in str(exc)
    assert outside.read_bytes() == b"precious"


@embedded_only
def test_download_result_matches_even_with_a_symlink_inside_the_root(
    api: Api, tmp_path: Path
) -> None:
    """A link from one entry's path to another's inside the root must not mix them up."""
    save_bytes(tmp_path, {"a.txt": b"AAAA", "b.txt": b"BBBB"})
    root = tmp_path / "dl"
    root.mkdir()
    (root / "b.txt").write_bytes(b"old")
    (root / "a.txt").symlink_to(root / "b.txt")
    art = api.artifact(f"{PROJECT}/data")
    try:
        art.download(root)
    except (ArtifactFSError, ValueError) as exc:  # refusing is fine too
        assert "a.txt" in str(exc)
        return
    assert (root / "a.txt").read_bytes() == b"AAAA"
    assert (root / "b.txt").read_bytes() == b"BBBB"
    art.verify(root)


@embedded_only
def test_download_result_matches_even_with_a_linked_folder_inside_the_root(
    api: Api, tmp_path: Path
) -> None:
    """A link from one entry's folder to another's inside the root must not mix them up."""
    save_bytes(tmp_path, {"x/f.txt": b"XXXX", "y/f.txt": b"YYYY"})
    root = tmp_path / "dl"
    (root / "y").mkdir(parents=True)
    (root / "x").symlink_to(root / "y", target_is_directory=True)
    art = api.artifact(f"{PROJECT}/data")
    try:
        art.download(root)
    except (ArtifactFSError, ValueError) as exc:  # refusing is fine too
        assert "x/f.txt" in str(exc)
        return
    assert (root / "x" / "f.txt").read_bytes() == b"XXXX"
    assert (root / "y" / "f.txt").read_bytes() == b"YYYY"
    art.verify(root)


def _corrupt_blob(api: Api, data: bytes, offset: int) -> None:
    path = store_dir(api) / "blobs" / blob_key(md5_b64(data))[:2] / blob_key(md5_b64(data))
    raw = bytearray(path.read_bytes())
    raw[offset] ^= 0xFF
    path.write_bytes(bytes(raw))


def _cache_files(api: Api) -> list[Path]:
    objects = api.config.cache_dir / LAYOUT
    return sorted(p for p in objects.rglob("*") if p.is_file()) if objects.exists() else []


def test_corrupted_blob_gives_digest_mismatch_and_leaves_nothing(
    api: Api, tmp_path: Path
) -> None:
    data = b"precious bytes " * 100
    save_bytes(tmp_path, {"only.bin": data})
    _corrupt_blob(api, data, 700)
    dest = tmp_path / "dl"
    with pytest.raises(DigestMismatch):
        api.artifact(f"{PROJECT}/data").download(dest)
    assert files_under(dest) == {}
    assert _cache_files(api) == []


@embedded_only
def test_corrupted_chunk_gives_digest_mismatch_and_leaves_nothing(
    api: Api, tmp_path: Path
) -> None:
    data = os.urandom(2 * CHUNK_SIZE + 10)
    save_bytes(tmp_path, {"big.bin": data})
    _corrupt_blob(api, data, CHUNK_SIZE + 5)  # inside chunk 1
    dest = tmp_path / "dl"
    with pytest.raises(DigestMismatch):
        api.artifact(f"{PROJECT}/data").download(dest)
    assert files_under(dest) == {}
    key = blob_key(md5_b64(data))
    assert [p.name for p in _cache_files(api) if p.name in (key, f"{key}.c1")] == []


# ---- what is not supported --------------------------------------------------------------


@embedded_only
def test_a_draft_has_no_runs(api: Api, tmp_path: Path) -> None:
    art = Artifact("data", "dataset")
    # runs are implemented (tests/test_runs_sdk.py): a draft has no producer and no users
    assert art.logged_by() is None and art.used_by() == []


# ---- failures midway --------------------------------------------------------------------


@scale_out
def test_save_failing_midway_leaves_no_version_and_no_moved_alias(
    api: Api, tmp_path: Path
) -> None:
    save_bytes(tmp_path, {"f": b"0"}, aliases=("prod",))
    folder = make_tree(tmp_path / "next", {"keep.txt": b"keep", "gone.txt": b"gone"})
    art = Artifact("data", "dataset")
    art.add_file(folder / "keep.txt")
    art.add_file(folder / "gone.txt")
    art.aliases = ["prod"]
    (folder / "gone.txt").unlink()
    with pytest.raises(ValueError, match=r"gone\.txt"):
        art.save(project=PROJECT)
    assert versions(api) == ["v0"]
    assert api.artifact(f"{PROJECT}/data:prod").version == "v0"
    assert api.artifact(f"{PROJECT}/data:latest").version == "v0"
    assert art.state == "PENDING"


@embedded_only
def test_save_of_a_changed_committed_artifact_failing_midway(api: Api, tmp_path: Path) -> None:
    save_bytes(tmp_path, {"f": b"0"}, aliases=("prod",))
    art = api.artifact(f"{PROJECT}/data:prod")
    extra = tmp_path / "extra.txt"
    extra.write_bytes(b"extra")
    art.add_file(extra)
    art.aliases = ["prod"]
    extra.unlink()
    with pytest.raises(ValueError, match=r"extra\.txt"):
        art.save()
    assert versions(api) == ["v0"]
    assert api.artifact(f"{PROJECT}/data:prod").version == "v0"


def test_file_changed_after_add_is_refused_on_save(api: Api, tmp_path: Path) -> None:
    save_bytes(tmp_path, {"f": b"0"})
    blobs_before = blob_files(api)
    source = tmp_path / "changing.txt"
    source.write_bytes(b"as added")
    art = Artifact("data", "dataset")
    art.add_file(source)
    source.write_bytes(b"changed!")
    with pytest.raises(DigestMismatch):
        art.save(project=PROJECT)
    assert versions(api) == ["v0"]
    assert blob_files(api) == blobs_before


@embedded_only
def test_ls_style_json_of_an_artifact(api: Api, tmp_path: Path) -> None:
    art = save_bytes(tmp_path, {"f": b"0"})
    encoded = api.artifact(f"{PROJECT}/data").json_encode()
    assert encoded == {"id": art.id, "name": "data:v0", "type": "dataset", "digest": art.digest}
    assert json.loads(json.dumps(encoded)) == encoded
