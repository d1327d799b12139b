"""VersionListing: a manifest's paths as folders, each with its sorted names."""

from __future__ import annotations

import random

import pytest

from artifactfs.core.manifest import Manifest, ManifestEntry
from artifactfs.fs.listing import VersionListing

HELLO = "XUFAKrxLKna5cZ2REBfFkg=="


def _folders_by_parts(paths: list[str]) -> dict[str, list[str]]:
    """Every folder's names, found the slow way: each path split into all its parts."""
    children: dict[str, set[str]] = {"": set()}
    for path in paths:
        parts = path.split("/")
        for depth in range(len(parts)):
            children.setdefault("/".join(parts[:depth]), set()).add(parts[depth])
    return {folder: sorted(names) for folder, names in children.items()}


def _manifest(paths: list[str]) -> Manifest:
    return Manifest(ManifestEntry(p, HELLO, 5) for p in paths)


def test_folders_and_files_of_a_small_tree() -> None:
    listing = VersionListing(_manifest(["b.txt", "a/x/1", "a/x/2", "a/y", "c/z/w/v"]))
    assert listing.dirs == {
        "": ["a", "b.txt", "c"], "a": ["x", "y"], "a/x": ["1", "2"], "c": ["z"],
        "c/z": ["w"], "c/z/w": ["v"],
    }
    assert set(listing.files) == {"b.txt", "a/x/1", "a/x/2", "a/y", "c/z/w/v"}


def test_an_empty_version_has_an_empty_root() -> None:
    assert VersionListing(_manifest([])).dirs == {"": []}


@pytest.mark.parametrize("seed", range(5))
def test_random_trees_in_any_order_list_like_the_slow_way(seed: int) -> None:
    rng = random.Random(seed)
    paths: set[str] = set()
    while len(paths) < 300:
        depth = rng.randint(1, 5)
        paths.add("/".join(f"{rng.choice('abc')}{rng.randint(0, 3)}" for _ in range(depth)))
    # a path may not also be another path's folder: keep the deepest ones
    kept = [p for p in paths if not any(q.startswith(p + "/") for q in paths)]
    rng.shuffle(kept)
    listing = VersionListing(_manifest(kept))
    assert listing.dirs == _folders_by_parts(kept)
    for names in listing.dirs.values():
        assert len(names) == len(set(names))  # each folder named once in its parent
