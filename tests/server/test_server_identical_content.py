"""A commit of content a version holds already, through a real server on SQLite and on
PostgreSQL: answered 200 with that version (201 is a new one), the aliases moved, and one
version made however many identical commits arrive at once."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from server.conftest import ENTITY

from artifactfs.core.manifest import Manifest
from artifactfs.registry.http import HttpRegistry

FILES = {"a.txt": b"alpha\n", "sub/b.txt": b"beta\n"}


@pytest.fixture(params=["sqlite", "postgresql"])
def reg(request: pytest.FixtureRequest) -> Any:
    if request.param == "sqlite":
        return request.getfixturevalue("shared_registry")
    return request.getfixturevalue("pg_shared_registry")


def test_identical_commit_answers_200_with_the_version(reg: Any) -> None:
    project = reg.unique("same")
    v0 = reg.commit(project, "data", FILES)
    for data in FILES.values():
        reg.upload(data)
    body = {"type": "dataset", "manifest": reg.manifest_for(FILES), "aliases": ["prod"]}
    r = reg.rw.post(reg.collection(project, "data") + "/versions", json=body)
    assert r.status_code == 200, r.text
    same = r.json()
    assert (same["id"], same["index"]) == (v0["id"], 0)
    assert sorted(same["aliases"]) == ["latest", "prod"]
    assert "unchanged" not in same  # the status says it; the body is the version
    listed = reg.rw.get(reg.collection(project, "data") + "/versions").json()
    assert [v["index"] for v in listed] == [0]


def test_identical_commits_at_once_through_the_server_make_one_version(reg: Any) -> None:
    project = reg.unique("same-at-once")
    for data in FILES.values():
        reg.upload(data)
    manifest = Manifest.from_dict(reg.manifest_for(FILES))
    clients = [HttpRegistry(reg.url, api_key=reg.rw_key) for _ in range(6)]
    try:
        with ThreadPoolExecutor(len(clients)) as pool:
            made = list(pool.map(lambda c: c.commit(
                entity=ENTITY, project=project, name="data", type_="dataset",
                manifest=manifest), clients))
    finally:
        for client in clients:
            client.close()
    assert len({v.id for v in made}) == 1
    assert sorted(v.unchanged for v in made) == [False] + [True] * 5
    listed = reg.rw.get(reg.collection(project, "data") + "/versions").json()
    assert [v["index"] for v in listed] == [0]
