"""The manifest API a W&B user touches: ``manifest.to_manifest_json()``,
``manifest.get_entry_by_path()``, ``entry.download()``, ``entry.ref_url()``, and
``new_file(name, mode=None, encoding=None)`` (docs/wandb-format.md sections 1 and 5)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from artifactfs import Api, Artifact
from artifactfs.core.artifact_refs import artifact_ref_url, parse_artifact_ref
from artifactfs.core.digests import md5_b64
from artifactfs.core.errors import InvalidManifest
from artifactfs.core.manifest import Manifest, ManifestEntry

PROJECT = "proj"


@pytest.fixture(autouse=True)
def _environment(environ: dict[str, str]) -> None:
    """The SDK reads the environment, as a user's program does (conftest's ``environ``)."""


# ---- pure: the core manifest ----------------------------------------------------------------


@pytest.mark.parametrize("transport", ["embedded"], indirect=True)
def test_to_manifest_json_is_wandbs_form() -> None:
    """W&B's four keys, entries in insertion order (not sorted, as the registry's text is),
    each entry's keys in wandb's order, extra kept, unknown keys (local_path, skip_cache)
    and unknown top-level keys dropped; and it loads back with the same digest."""
    raw = {
        "version": 1, "storagePolicy": "wandb-storage-policy-v1",
        "storagePolicyConfig": {"storageLayout": "V2"}, "someday": {"x": 1},
        "contents": {
            "z.txt": {"size": 3, "digest": md5_b64(b"zzz"), "local_path": "/tmp/z",
                      "skip_cache": False},
            "a/ref.bin": {"extra": {"etag": '"e1"'}, "size": 9, "ref": "s3://b/k",
                          "digest": "e1", "birthArtifactID": "QXJ0aWZhY3Q6MQ=="},
            "big.bin": {"digest": md5_b64(b"b"), "size": 1, "extra": {"chunkIndexSha256": "ab"}},
        },
    }
    manifest = Manifest.from_dict(json.loads(json.dumps(raw)))
    out = manifest.to_manifest_json()
    assert list(out) == ["version", "storagePolicy", "storagePolicyConfig", "contents"]
    assert list(out["contents"]) == ["z.txt", "a/ref.bin", "big.bin"]
    assert out["contents"]["z.txt"] == {"digest": md5_b64(b"zzz"), "size": 3}
    assert list(out["contents"]["a/ref.bin"]) == ["digest", "ref", "birthArtifactID", "size",
                                                 "extra"]
    assert out["contents"]["big.bin"]["extra"] == {"chunkIndexSha256": "ab"}
    assert json.loads(json.dumps(out)) == out  # plain JSON
    again = Manifest.from_dict(out)
    assert again.digest() == manifest.digest()
    # the registry's own text keeps what it was given (sorted, unknown keys kept)
    assert "someday" in json.loads(manifest.to_json())


@pytest.mark.parametrize("transport", ["embedded"], indirect=True)
def test_artifact_refs_round_trip_and_bad_ones_are_refused() -> None:
    url = artifact_ref_url("0123456789abcdef01234567", "sub/x.bin")
    assert url == "wandb-artifact://0123456789abcdef01234567/sub/x.bin"
    assert parse_artifact_ref(url) == ("0123456789abcdef01234567", "sub/x.bin")
    # W&B's ids are base64 of a few bytes: their hex parses the same way
    assert parse_artifact_ref("wandb-artifact://41727469666163743a31/a")[0] == (
        "41727469666163743a31")
    for bad in ("wandb-artifact://xyz/a", "wandb-artifact://0a", "wandb-artifact://0a/",
                "wandb-artifact://0a/../etc/passwd", "wandb-artifact://abc/a",
                "s3://bucket/key"):
        with pytest.raises(InvalidManifest):
            parse_artifact_ref(bad)


# ---- the SDK, on both transports ------------------------------------------------------------


def saved(tmp_path: Path, files: dict[str, bytes], name: str = "data") -> Artifact:
    art = Artifact(name, "dataset")
    for path, data in files.items():
        with art.new_file(path, mode="wb") as f:
            f.write(data)
    return art.save(project=PROJECT)


def test_get_entry_by_path_and_entry_download(api: Api, tmp_path: Path) -> None:
    saved(tmp_path, {"a.txt": b"alpha\n", "sub/b.bin": b"\x00beta"})
    art = api.artifact(f"{PROJECT}/data:latest")
    assert art.manifest.get_entry_by_path("nope") is None
    assert art.manifest.get_entry_by_path("sub") is None  # a folder is no entry
    entry = art.manifest.get_entry_by_path("sub/b.bin")
    assert entry is not None and entry.digest == md5_b64(b"\x00beta")
    path = entry.download(str(tmp_path / "one"))
    assert path == str(tmp_path / "one" / "sub" / "b.bin")
    assert Path(path).read_bytes() == b"\x00beta"
    assert not (tmp_path / "one" / "a.txt").exists()
    # the core manifest's JSON form of a saved artifact
    out = art.manifest.to_manifest_json()
    assert out["contents"]["a.txt"] == {"digest": md5_b64(b"alpha\n"), "size": 6}


def test_ref_url_names_the_saved_version(api: Api, tmp_path: Path) -> None:
    art = saved(tmp_path, {"x/y.txt": b"y\n"})
    url = art.get_entry("x/y.txt").ref_url()
    assert url == f"wandb-artifact://{art.id}/x/y.txt"
    assert parse_artifact_ref(url) == (art.id, "x/y.txt")
    assert api.artifact(f"{PROJECT}/data:v0").id == art.id
    draft = Artifact("other", "dataset")
    with draft.new_file("n.txt") as f:
        f.write("n")
    with pytest.raises(ValueError, match="saved"):
        draft.get_entry("n.txt").ref_url()
    with pytest.raises(ValueError, match="not a reference"):
        draft.get_entry("n.txt").ref_target()


def test_new_file_takes_wandbs_default_mode_and_encoding(api: Api, tmp_path: Path) -> None:
    art = Artifact("texts", "dataset")
    with art.new_file("a.txt", mode=None, encoding=None) as f:  # W&B's defaults, said
        f.write("plain\n")
    with art.new_file("b.txt", None, "utf-16") as f:
        f.write("wide")
    art.save(project=PROJECT)
    root = Path(api.artifact(f"{PROJECT}/texts:v0").download(tmp_path / "dl"))
    assert (root / "a.txt").read_text() == "plain\n"
    assert (root / "b.txt").read_bytes() == "wide".encode("utf-16")
    # mode None is "x": a name the artifact holds already is refused, as W&B does
    again = api.artifact(f"{PROJECT}/texts:v0")
    with pytest.raises(ValueError, match="already exists"), again.new_file("a.txt", mode=None):
        pass
    entry = ManifestEntry("x", md5_b64(b""), 0)
    assert entry.to_manifest_json() == {"digest": md5_b64(b""), "size": 0}
