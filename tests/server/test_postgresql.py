"""A real ``artifactfs serve --db postgresql://... --blobs file:///...`` process, pushed to and
read from by the SDK, and by 8 clients at once.

Every route's own tests run on PostgreSQL too (tests/server/test_api.py, ``reg``); these are
the SDK's round trip, the exactly-once commit through the server, commits racing on one
collection through one server, and a database password that never reaches the log.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from helpers import make_tree
from pg import PgCluster

from artifactfs import Api, Artifact
from artifactfs.config import Config
from artifactfs.core.digests import md5_b64
from artifactfs.core.manifest import Manifest, ManifestEntry
from artifactfs.registry.http import HttpRegistry
from artifactfs.store import Store

ENTITY = "team"
PASSWORD = "s3cret-pw"  # what the pg_registry fixture puts in its database URL
Registry = Any


@pytest.fixture
def sdk_env(pg_registry: Registry, tmp_path: Path,
            monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The environment of a user's script talking to that server."""
    for key in list(os.environ):
        if key.startswith("ARTIFACTFS_"):
            monkeypatch.delenv(key)
    env = {"ARTIFACTFS_REGISTRY": pg_registry.url, "ARTIFACTFS_API_KEY": pg_registry.rw_key,
           "ARTIFACTFS_ENTITY": ENTITY, "ARTIFACTFS_CACHE_DIR": str(tmp_path / "cache"),
           "HOME": str(tmp_path / "home")}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env


def test_the_sdk_pushes_to_and_reads_from_a_server_on_postgresql(
        pg_registry: Registry, sdk_env: dict[str, str], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    src = make_tree(tmp_path / "src", {"a.txt": b"alpha\n", "b/c.txt": b"gamma\n",
                                       "b/d/e.bin": bytes(range(256)) * 64})
    art = Artifact("mnist", type="dataset", metadata={"rows": 3})
    art.add_dir(str(src))
    art.aliases = ["baseline"]
    art.save(project="vision")
    api = Api(config=Config.from_env(sdk_env))
    try:
        v0 = api.artifact("vision/mnist:baseline")
        assert (v0.version, sorted(v0.aliases)) == ("v0", ["baseline", "latest"])
        assert v0.metadata == {"rows": 3}
        monkeypatch.chdir(tmp_path)
        path = v0.download(root=str(tmp_path / "down"))
        v0.verify(path)
        assert (Path(path) / "b/d/e.bin").read_bytes() == bytes(range(256)) * 64

        extra = tmp_path / "extra.csv"
        extra.write_bytes(b"x,y\n")
        draft = api.artifact("vision/mnist:latest")
        draft.add_file(str(extra))
        draft.save()
        v1 = api.artifact("vision/mnist:latest")
        assert v1.version == "v1" and sorted(v1.manifest.to_dict()["contents"]) == [
            "a.txt", "b/c.txt", "b/d/e.bin", "extra.csv"]
        assert [a.version for a in api.artifacts("dataset", "vision/mnist")] == ["v0", "v1"]
        assert [p.name for p in api.projects()] == ["vision"]

        registry = HttpRegistry(pg_registry.url, pg_registry.rw_key)
        try:
            listing = registry.folder_listings(v1.id, ["b"])[0]
            assert listing.names == ["c.txt", "d"]
        finally:
            registry.close()
        v0.delete(delete_aliases=True)
        assert [a.version for a in api.artifacts("dataset", "vision/mnist")] == ["v1"]
    finally:
        api.close()
    log = pg_registry.server.log_text()
    assert PASSWORD not in log
    assert "serving postgresql://afs:***@127.0.0.1" in log, log


def _commit_through(reg: Registry, worker: int, key: str | None) -> tuple[int, str]:
    registry = HttpRegistry(reg.url, reg.rw_key)
    try:
        data = f"client {worker}".encode()
        path = Path(reg.store).parent / f"upload{worker}"
        path.write_bytes(data)
        registry.upload_blob(path, md5_b64(data))
        info = registry.commit(
            entity=ENTITY, project="race", name="shared", type_="dataset",
            manifest=Manifest([ManifestEntry("f.txt", md5_b64(data), len(data))]),
            commit_key=key)
        return info.index, info.id
    finally:
        registry.close()


def test_eight_clients_commit_through_a_server_on_postgresql_at_once(
        pg_registry: Registry) -> None:
    """v0..v7, no gap or duplicate, latest on v7; each commit sent twice with its key (a
    retry racing the first send) makes one version, not two."""
    with ThreadPoolExecutor(16) as pool:
        firsts = [pool.submit(_commit_through, pg_registry, w, f"commit-key-{w:08d}")
                  for w in range(8)]
        agains = [pool.submit(_commit_through, pg_registry, w, f"commit-key-{w:08d}")
                  for w in range(8)]
        made = [f.result() for f in firsts]
        retried = [f.result() for f in agains]
    assert sorted(index for index, _ in made) == list(range(8))
    assert made == retried
    versions: Any = pg_registry.rw.get(
        pg_registry.collection("race", "shared") + "/versions").json()
    assert [v["index"] for v in versions] == list(range(8))
    assert [v["index"] for v in versions if "latest" in v["aliases"]] == [7]


def test_keys_made_through_one_store_are_seen_by_another_on_the_database(
        pg_cluster: PgCluster, tmp_path: Path) -> None:
    """The API keys and commit keys live in the shared database: a second store object on
    the same database (another server's) sees the first one's keys at once."""
    name = pg_cluster.new_database()
    try:
        url = pg_cluster.url(name)
        one = Store(db=url, blobs=(tmp_path / "b").as_uri())
        two = Store(db=url, blobs=(tmp_path / "b").as_uri())
        key = one.db.create_key("team", read_only=True)
        assert two.db.check_key(key) == ("team", True)
        one.db.close()
        two.db.close()
    finally:
        pg_cluster.drop_database(name)
