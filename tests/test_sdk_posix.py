"""Executable bits and symlinks in versions: the store's commit check and ``download``.

A symlink entry has no blob (core/posix.py); the store takes one only in its exact shape and
with a target that stays inside the artifact. ``download`` recreates links and executable
bits, and refuses, before writing anything, a version whose link would lead out of the
download folder (such a version can only come from a store written without the check).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from artifactfs.config import Config
from artifactfs.core.digests import md5_b64
from artifactfs.core.errors import InvalidManifest
from artifactfs.core.manifest import Manifest, ManifestEntry
from artifactfs.core.posix import link_escape, symlink_entry
from artifactfs.sdk import Api
from artifactfs.store import Store


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(tmp_path / "store")


@pytest.fixture
def api(tmp_path: Path, store: Store) -> Api:
    env = {"ARTIFACTFS_STORE": str(store.root), "ARTIFACTFS_CACHE_DIR": str(tmp_path / "cache"),
           "HOME": str(tmp_path / "home")}
    client = Api(config=Config.from_env(env))
    yield client
    client.close()


def commit(store: Store, *entries: ManifestEntry) -> None:
    store.commit(entity="local", project="p", name="links", type_="dataset",
                 manifest=Manifest(entries))


def blob(store: Store, tmp_path: Path, path: str, data: bytes, **extra: str) -> ManifestEntry:
    local = tmp_path / f"blob-{md5_b64(data).replace('/', '_')}"
    local.write_bytes(data)
    store.blobs.put_file(local, md5_b64(data))
    return ManifestEntry(path, md5_b64(data), len(data), extra=dict(extra))


@pytest.mark.parametrize(("path", "target", "escapes"), [
    ("l", "a.txt", False),
    ("d/l", "../a.txt", False),
    ("d/e/l", "../../d/x/./y", False),
    ("l", "../a.txt", True),
    ("d/l", "../../a.txt", True),
    ("l", "/etc/passwd", True),
    ("d/l", "x/../../a.txt", True),  # through a linked x, '..' could climb out
    ("l", "", True),
])
def test_which_links_stay_inside(path: str, target: str, escapes: bool):
    assert (link_escape(path, target) is not None) is escapes


def test_store_takes_links_without_blobs_and_refuses_bad_ones(store: Store, tmp_path: Path):
    data = blob(store, tmp_path, "data/a.txt", b"a\n")
    commit(store, data, symlink_entry("latest", "data/a.txt"))  # no blob for the link
    with pytest.raises(InvalidManifest, match="stay inside"):
        commit(store, data, symlink_entry("data/up", "../../etc/passwd"))
    forged = ManifestEntry("l", md5_b64(b"x"), 0, extra={"symlink": "data/a.txt"})
    with pytest.raises(InvalidManifest, match="MD5 of its target"):
        commit(store, data, forged)
    sized = ManifestEntry("l", md5_b64(b"data/a.txt"), 10, extra={"symlink": "data/a.txt"})
    with pytest.raises(InvalidManifest, match="size 0"):
        commit(store, data, sized)


def test_download_makes_links_and_executable_bits(store: Store, api: Api, tmp_path: Path):
    commit(store, blob(store, tmp_path, "bin/run.sh", b"#!/bin/sh\n", mode="0755"),
           blob(store, tmp_path, "data/a.txt", b"a\n"),
           symlink_entry("data/link", "a.txt"), symlink_entry("up", "data"))
    art = api.artifact("p/links:v0")
    root = tmp_path / "download"
    old_umask = os.umask(0o022)
    try:
        art.download(root=str(root))
    finally:
        os.umask(old_umask)
    assert os.stat(root / "bin/run.sh").st_mode & 0o777 == 0o755
    assert os.stat(root / "data/a.txt").st_mode & 0o777 == 0o644
    assert os.readlink(root / "data/link") == "a.txt"
    assert (root / "up/link").read_bytes() == b"a\n"
    art.verify(str(root))
    art.download(root=str(root))  # again: what is there already is kept
    art.verify(str(root))
    os.unlink(root / "data/link")
    os.symlink("elsewhere", root / "data/link")
    with pytest.raises(ValueError, match="data/link"):
        art.verify(str(root))
    art.download(root=str(root))  # puts the right link back
    art.verify(str(root))


def test_download_refuses_a_link_out_before_writing_anything(store: Store, api: Api,
                                                             tmp_path: Path):
    """A row the commit check never saw (a store from before it): refused, clearly."""
    data = blob(store, tmp_path, "a.txt", b"a\n")
    escaping = ManifestEntry("out", md5_b64(b"../../../etc/passwd"), 0,
                             extra={"symlink": "../../../etc/passwd"})
    manifest = Manifest([data, escaping])
    store.db.commit_version(
        entity="local", project="p", name="old", type_="dataset",
        manifest_json=manifest.to_json(), digest=manifest.digest(), size=manifest.size,
        file_count=len(manifest), description=None, metadata={}, blob_keys=[],
    )
    root = tmp_path / "download"
    with pytest.raises(InvalidManifest, match=r"symlink 'out' .* is not downloaded"):
        api.artifact("p/old:v0").download(root=str(root))
    assert not (root / "a.txt").exists() and not (root / "out").is_symlink()
