"""Committing content a version of the collection holds already returns that version, as W&B
does (docs/api.md, "Identical content"): on the store (SQLite and PostgreSQL), the SDK and
``push`` on both transports. The server's own answers (200, not 201) are in
tests/server/test_server_identical_content.py, the mount's save in tests/fs/test_mount_identical.py.
"""

from __future__ import annotations

import io
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from helpers import make_tree

from artifactfs import Api, Artifact
from artifactfs.core.digests import md5_b64
from artifactfs.core.manifest import Manifest, ManifestEntry
from artifactfs.core.records import CommittedVersion
from artifactfs.store import Store

ENTITY, PROJECT = "local", "proj"
FILES = {"a.txt": b"alpha\n", "b/c.bin": bytes(range(256)) * 8}


@pytest.fixture
def store(open_store: Callable[[], Store]) -> Store:
    """The test's store, on SQLite and on PostgreSQL (``engine_name``)."""
    return open_store()


def manifest_of(store: Store, files: dict[str, bytes],
                extra: dict[str, dict[str, object]] | None = None) -> Manifest:
    entries = []
    for path, data in files.items():
        digest = md5_b64(data)
        store.blobs.put_stream(io.BytesIO(data), digest)
        entries.append(ManifestEntry(path, digest, len(data), extra=(extra or {}).get(path, {})))
    return Manifest(entries)


def commit(store: Store, manifest: Manifest, *, aliases: tuple[str, ...] = (),
           commit_key: str | None = None, description: str | None = None
           ) -> CommittedVersion:
    return store.commit(entity=ENTITY, project=PROJECT, name="data", type_="dataset",
                        manifest=manifest, aliases=aliases, commit_key=commit_key,
                        description=description)


def holders(store: Store) -> dict[str, str]:
    """Each alias of the collection and the version it names."""
    return {alias: v.version for v in store.db.list_versions(ENTITY, PROJECT, "data")
            for alias in v.aliases}


def test_identical_content_returns_the_version_that_holds_it(store: Store) -> None:
    v0 = commit(store, manifest_of(store, FILES), description="first")
    assert (v0.version, v0.unchanged) == ("v0", False)
    again = commit(store, manifest_of(store, FILES), aliases=("prod",), description="second")
    assert (again.id, again.version, again.unchanged) == (v0.id, "v0", True)
    assert again.description == "first"  # the version is as it was, its aliases aside
    assert holders(store) == {"latest": "v0", "prod": "v0"}
    assert [v.version for v in store.db.list_versions(ENTITY, PROJECT, "data")] == ["v0"]


def test_latest_stays_on_the_newest_when_an_older_version_matches(store: Store) -> None:
    v0 = commit(store, manifest_of(store, FILES))
    v1 = commit(store, manifest_of(store, {**FILES, "new.txt": b"more\n"}))
    assert v1.version == "v1"
    back = commit(store, manifest_of(store, FILES), aliases=("best",))
    assert (back.id, back.unchanged) == (v0.id, True)
    # W&B would move latest to v0 too; here latest always names the newest version
    assert holders(store) == {"latest": "v1", "best": "v0"}
    assert sorted(back.aliases) == ["best"]
    assert [v.version for v in store.db.list_versions(ENTITY, PROJECT, "data")] == ["v0", "v1"]


def test_the_same_digest_with_other_entries_is_a_new_version(store: Store) -> None:
    """The artifact digest counts paths and digests only: a change it does not see (a
    file's mode, kept in ``extra``) is still a change."""
    plain = manifest_of(store, FILES)
    marked = manifest_of(store, FILES, extra={"a.txt": {"mode": "0755"}})
    assert plain.digest() == marked.digest()
    v0 = commit(store, plain)
    v1 = commit(store, marked)
    assert (v1.version, v1.unchanged) == ("v1", False)
    assert v1.digest == v0.digest


def test_a_deleted_version_is_no_match(store: Store) -> None:
    v0 = commit(store, manifest_of(store, FILES), aliases=("prod",))
    store.db.delete_version(v0.id, delete_aliases=True)
    made = commit(store, manifest_of(store, FILES))
    assert (made.version, made.unchanged) == ("v1", False)


def test_a_keyed_commit_of_identical_content_names_the_old_version(store: Store) -> None:
    v0 = commit(store, manifest_of(store, FILES))
    key = "k" * 32
    first = commit(store, manifest_of(store, FILES), commit_key=key, aliases=("x",))
    retry = commit(store, manifest_of(store, FILES), commit_key=key, aliases=("x",))
    assert first.id == retry.id == v0.id
    assert first.unchanged and retry.unchanged  # the retry says what the first did
    made_key = "m" * 32
    v1 = commit(store, manifest_of(store, {"n.txt": b"new\n"}), commit_key=made_key)
    v1_again = commit(store, manifest_of(store, {"n.txt": b"new\n"}), commit_key=made_key)
    assert (v1.unchanged, v1_again.unchanged, v1_again.id) == (False, False, v1.id)
    found = store.db.version_by_commit_key(ENTITY, key)
    assert found is not None and found.id == v0.id
    assert len(store.db.list_versions(ENTITY, PROJECT, "data")) == 2


def test_identical_commits_at_once_make_one_version(open_store: Callable[[], Store]) -> None:
    """Eight writers, each with its own store object (connections), commit the same
    manifest at the same moment: the check runs under the collection's lock, so one
    version is made and the seven others get it."""
    stores = [open_store() for _ in range(8)]
    manifest = manifest_of(stores[0], FILES)
    start = threading.Barrier(len(stores))

    def one(store: Store) -> CommittedVersion:
        start.wait()
        return commit(store, manifest)

    with ThreadPoolExecutor(len(stores)) as pool:
        made = list(pool.map(one, stores))
    assert len({v.id for v in made}) == 1
    assert sorted(v.unchanged for v in made) == [False] + [True] * 7
    assert [v.version for v in stores[0].db.list_versions(ENTITY, PROJECT, "data")] == ["v0"]


# ---- the SDK and push, on both transports ---------------------------------------------------


@pytest.fixture(autouse=False)
def user_env(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    for key in list(os.environ):
        if key.startswith("ARTIFACTFS_"):
            monkeypatch.delenv(key)
    for key, value in env.items():
        if key.startswith("ARTIFACTFS_") or key == "HOME":
            monkeypatch.setenv(key, value)
    return env


def test_save_of_identical_content_returns_the_old_version(
        user_env: dict[str, str], api: Api, tmp_path: Path) -> None:
    src = make_tree(tmp_path / "src", FILES)
    first = Artifact("data", "dataset")
    first.add_dir(src)
    first.save(project=PROJECT)
    other = Artifact("data", "dataset")
    other.add_file(str(src / "a.txt"))
    other.save(project=PROJECT)
    again = Artifact("data", "dataset")
    again.add_dir(src)
    again.aliases = ["again"]
    again.save(project=PROJECT)
    assert (again.version, again.id, again.name) == ("v0", first.id, "data:v0")
    assert again._unchanged and not other._unchanged
    assert sorted(api.artifact(f"{PROJECT}/data:again").aliases) == ["again"]
    assert api.artifact(f"{PROJECT}/data:latest").version == "v1"


def test_push_of_identical_content_says_unchanged(run_cli, tmp_path: Path) -> None:
    src = make_tree(tmp_path / "src", FILES)
    first = run_cli("push", str(src), f"{PROJECT}/data", "--type", "dataset", check=True)
    assert first.stdout.strip() == f"{PROJECT}/data:v0"
    again = run_cli("push", str(src), f"{PROJECT}/data", "--type", "dataset", "--alias",
                    "prod", check=True)
    assert again.stdout.strip() == f"unchanged: {PROJECT}/data:v0"
    listed = run_cli("ls", f"{PROJECT}/data", check=True).stdout
    assert "v1" not in listed and "prod" in listed
