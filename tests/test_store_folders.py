"""The store's per-folder listings (schema 3): written by a commit in its own transaction,
read without the manifest, and made once, on first use, for the versions of a store an
older artifactfs wrote (which gets the table when it is opened)."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from helpers import RegistryServer

from artifactfs.core.digests import md5_b64
from artifactfs.core.errors import NotFound
from artifactfs.core.folders import folder_listings
from artifactfs.core.manifest import Manifest, ManifestEntry
from artifactfs.registry import LocalRegistry
from artifactfs.store import Store
from artifactfs.store.schema import version_folders

FILES = {"a/1": b"one", "a/2": b"two", "b/c/3": b"three", "top": b"top"}


def _commit(store: Store, files: dict[str, bytes] = FILES) -> str:
    registry = LocalRegistry(store)
    for data in files.values():
        path = store.root / "src"
        path.write_bytes(data)
        registry.upload_blob(path, md5_b64(data))
    manifest = Manifest(ManifestEntry(p, md5_b64(d), len(d)) for p, d in files.items())
    return registry.commit(entity="team", project="p", name="data", type_="dataset",
                           manifest=manifest).id


def _rows(root: Path, vid: str) -> list[str]:
    db = sqlite3.connect(root / "registry.sqlite3")
    try:
        return [r[0] for r in db.execute(
            "SELECT path FROM version_folders WHERE version_id = ? ORDER BY path", (vid,))]
    finally:
        db.close()


def _as_old_store(root: Path) -> None:
    """The store as artifactfs wrote it before schema 3: no folder rows, version 2 (and,
    being older than Alembic, no revision)."""
    db = sqlite3.connect(root / "registry.sqlite3")
    try:
        db.execute("DROP TABLE version_folders")
        db.execute("DROP TABLE alembic_version")
        db.execute("DROP TABLE version_tags")  # and what later revisions added (0003, 0002)
        db.execute("DROP TABLE run_links")
        db.execute("DROP TABLE runs")
        db.execute("PRAGMA user_version = 2")
        db.commit()
    finally:
        db.close()


def _stored_paths(store: Store, vid: str) -> list[str]:
    """The version's folder rows, read through the store's own engine (either kind)."""
    with store.db.engine.connect() as conn:
        return list(conn.execute(
            sa.select(version_folders.c.path).where(version_folders.c.version_id == vid)
            .order_by(version_folders.c.path)).scalars())


def test_a_commit_stores_every_folder_of_its_version(
        open_store: Callable[[], Store]) -> None:
    store = open_store()
    vid = _commit(store)
    assert _stored_paths(store, vid) == ["", "a", "b", "b/c"]
    texts = store.db.folder_texts(vid, ["b/c", "a", ""])
    assert [t.count('"path"') for t in texts] == [1, 1, 1]
    # a byte budget gives the first folders that fit, the first however large
    assert len(store.db.folder_texts(vid, ["a", "b", ""], max_bytes=1)) == 1
    assert len(store.db.folder_texts(vid, ["a", "b"], max_bytes=len(texts[1]) + 1)) == 1
    with pytest.raises(NotFound, match="no folder 'top'"):
        store.db.folder_texts(vid, ["top"])
    with pytest.raises(NotFound):
        store.db.folder_texts("f" * 24, [""])


def test_an_old_store_is_upgraded_and_its_versions_get_their_folders_on_first_use(
        tmp_path: Path) -> None:
    root = tmp_path / "store"
    vid = _commit(Store(root))
    _as_old_store(root)
    store = Store(root)  # the migration runs
    db = sqlite3.connect(root / "registry.sqlite3")
    assert db.execute("PRAGMA user_version").fetchone() == (5,)  # 0003_version_tags sets it past 3
    db.close()
    assert _rows(root, vid) == []  # the upgrade itself parses no manifest
    registry = LocalRegistry(store)
    manifest = registry.manifest(vid)
    want = folder_listings(manifest)
    got = registry.folder_listings(vid, ["b/c", ""])
    assert [g.names for g in got] == [want["b/c"].names, want[""].names]
    assert got[0].files == want["b/c"].files
    assert _rows(root, vid) == ["", "a", "b", "b/c"]  # made once, kept
    with pytest.raises(NotFound):
        registry.folder_listing(vid, "nope")
    # a version committed after the upgrade has its rows from the start
    assert _rows(root, _commit(store, {"x/y": b"y"})) == ["", "x"]


def test_a_server_on_an_upgraded_store_lists_its_old_versions(tmp_path: Path) -> None:
    root = tmp_path / "store"
    store = Store(root)
    vid = _commit(store)
    key = store.db.create_key("team")
    _as_old_store(root)
    server = RegistryServer(root, tmp_path / "server.log")
    try:
        r = httpx.get(f"{server.url}/api/v1/versions/{vid}/folders",
                      params=[("path", "a"), ("path", "b")],
                      headers={"Authorization": f"Bearer {key}"}, timeout=30)
        assert r.status_code == 200, r.text
        assert [(f["path"], sorted(f["files"]), f["folders"]) for f in r.json()] == [
            ("a", ["1", "2"], []), ("b", [], ["c"])]
    finally:
        server.stop()
