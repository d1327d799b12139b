"""``GET /versions/{id}/folders?path=...``: a version's folders one at a time, from their own
rows, against a real ``artifactfs serve``: what it answers, who may ask, and every bad
request answered 4xx with a message. Both registry transports give the same listings."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from artifactfs.core.errors import InvalidRequest, NotFound
from artifactfs.core.folders import FOLDER_BATCH_MAX, MAX_FOLDER_PATH, folder_listings
from artifactfs.core.manifest import Manifest
from artifactfs.registry import LocalRegistry
from artifactfs.registry.http import HttpRegistry
from artifactfs.store import Store

Registry = Any  # tests/server/conftest.py's Registry: a server, its store and its keys

FILES = {
    "top.txt": b"top",
    "train/a/1.jpg": b"a1",
    "train/a/2.jpg": b"a2",
    "train/b/1.jpg": b"b1",
    "val/x.jpg": b"vx",
}


@pytest.fixture
def reg(shared_registry: Registry) -> Registry:
    return shared_registry


@pytest.fixture
def version(reg: Registry) -> dict[str, Any]:
    return reg.commit(reg.unique("folders"), "data", FILES)


def folders(client: httpx.Client, vid: str, *paths: str, **params: Any) -> httpx.Response:
    query: list[tuple[str, Any]] = [("path", p) for p in paths] + list(params.items())
    return client.get(f"/versions/{vid}/folders", params=query)


def error_of(r: httpx.Response, status: int) -> str:
    assert r.status_code == status, (r.status_code, r.text)
    assert r.headers["content-type"].startswith("application/json")
    message = r.json()["error"]["message"]
    assert message and "Traceback" not in message
    return str(message)


def test_the_root_and_a_batch_list_like_the_manifest(reg: Registry,
                                                     version: dict[str, Any]) -> None:
    r = folders(reg.rw, version["id"], "")
    assert r.status_code == 200, r.text
    assert "immutable" in r.headers["cache-control"]
    (root,) = r.json()
    assert root == {"path": "", "folders": ["train", "val"],
                    "files": {"top.txt": {"digest": root["files"]["top.txt"]["digest"],
                                          "size": 3}}}
    r = folders(reg.rw, version["id"], "train/b", "train", "train/a")
    assert r.status_code == 200, r.text
    got = r.json()
    assert [f["path"] for f in got] == ["train/b", "train", "train/a"]
    assert got[1]["folders"] == ["a", "b"] and got[1]["files"] == {}
    assert sorted(got[2]["files"]) == ["1.jpg", "2.jpg"]


def test_a_read_only_key_may_list_another_entity_may_not(reg: Registry,
                                                          version: dict[str, Any]) -> None:
    assert folders(reg.ro, version["id"], "train").status_code == 200
    message = error_of(folders(reg.other, version["id"], "train"), 404)
    assert version["id"] in message
    assert folders(reg.anon, version["id"], "train").status_code == 401


def test_a_path_that_is_no_folder_of_the_version_is_not_found(
        reg: Registry, version: dict[str, Any]) -> None:
    for path in ("nope", "top.txt", "train/a/1.jpg", "train/c"):
        assert path in error_of(folders(reg.rw, version["id"], path), 404)
    # one absent folder fails the batch: a mount asks only for folders it was told of
    error_of(folders(reg.rw, version["id"], "train", "nope"), 404)
    error_of(folders(reg.rw, "0" * 24, ""), 404)


def test_a_deleted_version_has_no_folders(reg: Registry) -> None:
    project = reg.unique("folders-del")
    v0 = reg.commit(project, "data", FILES)
    reg.commit(project, "data", {"other.txt": b"o"})
    r = reg.rw.delete(f"/versions/{v0['id']}")
    assert r.status_code in (200, 204), r.text
    error_of(folders(reg.rw, v0["id"], ""), 404)


@pytest.mark.parametrize("query, said", [
    ([], "name the folders"),
    ([("path", "/abs")], "absolute"),
    ([("path", "a/../b")], "'..'"),
    ([("path", "a//b")], "empty"),
    ([("path", "a\x00b")], "NUL"),
    ([("path", "x" * (MAX_FOLDER_PATH + 1))], "longer than"),
    ([("path", "")] * (FOLDER_BATCH_MAX + 1), "at most"),
    ([("path", ""), ("depth", "2")], "unknown query parameter"),
])
def test_bad_requests_are_400_saying_what_is_wrong(
        reg: Registry, version: dict[str, Any], query: list[tuple[str, str]], said: str,
) -> None:
    r = reg.rw.get(f"/versions/{version['id']}/folders", params=query)
    assert said in error_of(r, 400)
    reg.alive()


def test_only_get_is_allowed(reg: Registry, version: dict[str, Any]) -> None:
    r = reg.rw.post(f"/versions/{version['id']}/folders", json={"paths": [""]})
    assert r.status_code == 405


@pytest.fixture
def http(reg: Registry) -> Iterator[HttpRegistry]:
    client = HttpRegistry(reg.url, reg.rw_key)
    try:
        yield client
    finally:
        client.close()


def test_both_transports_give_the_listings_the_manifest_makes(
        reg: Registry, http: HttpRegistry) -> None:
    """150 folders with long names: more than one request may ask for (and than fits in
    one URL), so the client asks in parts and gives them all back in order."""
    files = {f"{'d' * 200}{i:03d}/f{j}": bytes([i, j]) for i in range(150) for j in range(3)}
    v = reg.commit(reg.unique("folders-many"), "data", files)
    manifest = http.manifest(v["id"])
    expected = folder_listings(manifest)
    paths = sorted(expected, reverse=True)
    local = LocalRegistry(Store(reg.store))
    try:
        for registry in (http, local):
            got = registry.folder_listings(v["id"], paths)
            assert [f.path for f in got] == paths
            for listing in got:
                want = expected[listing.path]
                assert listing.names == want.names and listing.files == want.files
            assert registry.folder_listing(v["id"], "").names == expected[""].names
            with pytest.raises(NotFound):
                registry.folder_listing(v["id"], "nope")
            with pytest.raises(InvalidRequest):
                registry.folder_listing(v["id"], "../up")
    finally:
        local.close()


def test_an_empty_version_has_an_empty_root(reg: Registry, http: HttpRegistry) -> None:
    v = reg.commit(reg.unique("folders-empty"), "data", {})
    root = http.folder_listing(v["id"], "")
    assert root.names == [] and not root.files
    assert Manifest().digest() == v["digest"]
