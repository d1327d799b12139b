"""core/folders.py: a manifest cut into folders, their stored JSON, and the checks an answer
from a registry goes through before a mount uses it."""

from __future__ import annotations

import json
import random

import pytest

from artifactfs.core.errors import InvalidManifest, InvalidRequest
from artifactfs.core.folders import (
    MAX_FOLDER_PATH,
    check_folder_path,
    folder_listings,
    folder_rows,
    join_rows,
    parse_folder,
    parse_folders,
)
from artifactfs.core.manifest import Manifest, ManifestEntry

HELLO = "XUFAKrxLKna5cZ2REBfFkg=="


def _manifest(paths: list[str]) -> Manifest:
    return Manifest(ManifestEntry(p, HELLO, 5) for p in paths)


def _parsed_rows(manifest: Manifest) -> dict[str, object]:
    return {path: parse_folder(json.loads(text), path) for path, text in folder_rows(manifest)}


def test_every_folder_has_a_listing_with_its_names_in_order() -> None:
    manifest = _manifest(["b.txt", "a/x/1", "a/x/2", "a/y", "c/z/w/v"])
    listings = folder_listings(manifest)
    assert sorted(listings) == ["", "a", "a/x", "c", "c/z", "c/z/w"]
    assert listings[""].names == ["a", "b.txt", "c"]
    assert listings[""].folders == {"a", "c"}
    assert list(listings[""].files) == ["b.txt"]
    assert listings["a"].names == ["x", "y"] and list(listings["a"].files) == ["a/y"]
    assert listings["a/x"].files["a/x/2"] is manifest["a/x/2"]
    assert listings["c/z"].names == ["w"] and not listings["c/z"].files


def test_an_empty_version_has_an_empty_root() -> None:
    assert [p for p, _ in folder_rows(Manifest())] == [""]
    assert folder_listings(Manifest())[""].names == []


@pytest.mark.parametrize("seed", range(4))
def test_stored_rows_parse_to_the_listings_of_the_manifest(seed: int) -> None:
    """The JSON a registry stores and the listings a mount builds itself after a save say
    the same, entries with extra keys and references included."""
    rng = random.Random(seed)
    paths: set[str] = set()
    while len(paths) < 200:
        depth = rng.randint(1, 4)
        paths.add("/".join(f"{rng.choice('abc')}{rng.randint(0, 3)}" for _ in range(depth)))
    kept = sorted(p for p in paths if not any(q.startswith(p + "/") for q in paths))
    rng.shuffle(kept)
    manifest = Manifest()
    for i, path in enumerate(kept):
        if i % 3 == 0:
            manifest.add(ManifestEntry(path, HELLO, 5, extra={"k": [i]}, unknown={"u": 1}))
        elif i % 3 == 1:
            manifest.add(ManifestEntry(path, "etag", 7, ref=f"s3://b/{i}"))
        else:
            manifest.add(ManifestEntry(path, HELLO, i))
    built = folder_listings(manifest)
    parsed = _parsed_rows(manifest)
    assert set(built) == set(parsed)
    for path, listing in built.items():
        other = parsed[path]
        assert other.names == listing.names and other.folders == listing.folders
        assert list(other.files) == list(listing.files)
        assert other.files == listing.files  # dataclass equality: every field
    assert sum(len(x.files) for x in built.values()) == len(manifest)


def test_a_batch_answer_is_a_list_of_the_first_folders_asked() -> None:
    rows = dict(folder_rows(_manifest(["a/1", "b/2", "c/3"])))
    got = parse_folders(join_rows([rows["a"], rows["b"]]), ["a", "b", "c"])
    assert [f.path for f in got] == ["a", "b"]
    with pytest.raises(InvalidManifest, match="list of 1 to 3"):
        parse_folders("[]", ["a", "b", "c"])
    with pytest.raises(InvalidManifest, match="names another folder"):
        parse_folders(join_rows([rows["b"]]), ["a"])
    with pytest.raises(InvalidManifest, match="not valid JSON"):
        parse_folders(b"[{", ["a"])


@pytest.mark.parametrize("raw, why", [
    ({"path": "a", "folders": ["../x"], "files": {}}, "single path part"),
    ({"path": "a", "folders": [".."], "files": {}}, "empty, '.' or '..'"),
    ({"path": "a", "folders": [], "files": {"x/y": {"digest": HELLO, "size": 5}}},
     "single path part"),
    ({"path": "a", "folders": ["x"], "files": {"x": {"digest": HELLO, "size": 5}}}, "twice"),
    ({"path": "a", "folders": [], "files": {"x": {"size": 5}}}, "no digest"),
    ({"path": "a", "folders": [], "files": {"x": {"digest": HELLO, "size": -1}}},
     "invalid size"),
    ({"path": "a", "folders": "x", "files": {}}, "not a list"),
    ({"path": "a", "folders": [1], "files": {}}, "single path part"),
    ([], "not a JSON object"),
])
def test_a_bad_listing_is_refused_saying_why(raw: object, why: str) -> None:
    with pytest.raises(InvalidManifest, match=why.replace(".", r"\.")):
        parse_folder(raw, "a")


@pytest.mark.parametrize("path", ["/abs", "a/../b", "a//b", "a/", ".", "a\x00b",
                                  "x" * (MAX_FOLDER_PATH + 1), 7, None])
def test_a_path_that_cannot_name_a_folder_is_an_invalid_request(path: object) -> None:
    with pytest.raises(InvalidRequest):
        check_folder_path(path)


def test_paths_that_can_name_a_folder_pass() -> None:
    assert check_folder_path("") == ""
    assert check_folder_path("a/b c/.hidden") == "a/b c/.hidden"
