"""The registry's HTTP API against a real ``artifactfs serve`` process, over plain httpx.

Every route's happy path, Range edge cases, bad input (which must answer a 4xx JSON error
and leave the server serving), interrupted uploads, blob redirects and a clean SIGTERM.
"""

from __future__ import annotations

import contextlib
import json
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from helpers import free_port, rand_bytes, wait_until

from artifactfs.core.chunks import CHUNK_SIZE, ChunkIndex
from artifactfs.core.digests import ContentHasher, blob_key, md5_b64
from artifactfs.core.manifest import Manifest
from artifactfs.core.wire import BATCH_MAX_BLOBS, BATCH_MAX_BYTES, split_batch
from artifactfs.registry.http import HttpRegistry
from artifactfs.server import MAX_JSON_BYTES

ENTITY = "team"


@pytest.fixture(params=["sqlite", "postgresql"])
def reg(request: pytest.FixtureRequest) -> Any:
    """The module's registry: every route's test runs on SQLite and on PostgreSQL."""
    if request.param == "sqlite":
        return request.getfixturevalue("shared_registry")
    return request.getfixturevalue("pg_shared_registry")


def assert_error(r: httpx.Response, status: int, kind: str | None = None) -> dict[str, Any]:
    """``r`` is a JSON error ``{"error": {"type", "message"}}`` with this status."""
    assert r.status_code == status, (r.status_code, r.text)
    assert r.headers["content-type"].startswith("application/json"), r.headers
    body = r.json()
    assert set(body) == {"error"}, body
    err = body["error"]
    assert isinstance(err, dict) and set(err) >= {"type", "message"}, body
    assert isinstance(err["type"], str) and err["type"], body
    assert isinstance(err["message"], str) and err["message"], body
    if kind is not None:
        assert err["type"] == kind, body
    return dict(err)


# ---- listing ---------------------------------------------------------------------------------


def test_list_projects_types_and_collections(reg: Any) -> None:
    project = reg.unique("proj")
    reg.commit(project, "images", {"a.txt": b"a"}, type_="dataset")
    reg.commit(project, "net", {"w.bin": b"weights"}, type_="model")
    reg.commit(project, "images", {"a.txt": b"a2"}, type_="dataset")

    r = reg.rw.get(f"/entities/{ENTITY}/projects")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/json")
    assert project in r.json()
    assert r.json() == sorted(r.json())

    r = reg.rw.get(f"/entities/{ENTITY}/projects/{project}/types")
    assert r.status_code == 200
    assert r.json() == ["dataset", "model"]

    r = reg.rw.get(f"/entities/{ENTITY}/projects/{project}/collections")
    assert r.status_code == 200
    got = [(c["entity"], c["project"], c["name"], c["type"], c["version_count"])
           for c in r.json()]
    assert got == [(ENTITY, project, "images", "dataset", 2), (ENTITY, project, "net", "model", 1)]
    assert all(isinstance(c["created_at"], float) for c in r.json())

    r = reg.rw.get(f"/entities/{ENTITY}/projects/{project}/collections", params={"type": "model"})
    assert [c["name"] for c in r.json()] == ["net"]

    nothing = reg.unique("none")
    assert reg.rw.get(f"/entities/{ENTITY}/projects/{nothing}/types").json() == []
    assert reg.rw.get(f"/entities/{ENTITY}/projects/{nothing}/collections").json() == []


def test_collection_type(reg: Any) -> None:
    project = reg.unique("proj")
    reg.commit(project, "net", {"w.bin": b"w"}, type_="model")
    r = reg.rw.get(reg.collection(project, "net"))
    assert r.status_code == 200
    assert r.json() == {"entity": ENTITY, "project": project, "name": "net", "type": "model"}
    assert_error(reg.rw.get(reg.collection(project, "absent")), 404, "NotFound")


def test_list_versions(reg: Any) -> None:
    project = reg.unique("proj")
    v0 = reg.commit(project, "data", {"a": b"0"}, aliases=["best"])
    v1 = reg.commit(project, "data", {"a": b"1"})
    r = reg.rw.get(reg.collection(project, "data") + "/versions")
    assert r.status_code == 200
    got = r.json()
    assert [v["index"] for v in got] == [0, 1]
    assert [v["id"] for v in got] == [v0["id"], v1["id"]]
    assert got[0]["aliases"] == ["best"]
    assert got[1]["aliases"] == ["latest"]
    assert reg.rw.get(reg.collection(project, "absent") + "/versions").json() == []


# ---- commit, resolve, versions ----------------------------------------------------------------


def test_commit_numbers_versions_and_moves_latest(reg: Any) -> None:
    project = reg.unique("proj")
    files = {"train/a.txt": b"hello", "b.bin": rand_bytes(500, 1)}
    v0 = reg.commit(project, "data", files, aliases=["best"], description="first",
                    metadata={"rows": 2})
    assert v0["index"] == 0
    assert v0["state"] == "COMMITTED"
    assert (v0["entity"], v0["project"], v0["name"], v0["type"]) == (
        ENTITY, project, "data", "dataset")
    assert sorted(v0["aliases"]) == ["best", "latest"]
    assert v0["file_count"] == 2
    assert v0["size"] == 5 + 500
    assert v0["digest"] == Manifest.from_dict(reg.manifest_for(files)).digest()
    assert v0["description"] == "first"
    assert v0["metadata"] == {"rows": 2}

    v1 = reg.commit(project, "data", {"x": b"second"})
    assert v1["index"] == 1
    assert v1["aliases"] == ["latest"]
    assert v1["id"] != v0["id"]

    base = reg.collection(project, "data") + "/resolve/"
    assert reg.rw.get(base + "latest").json()["id"] == v1["id"]
    assert reg.rw.get(base + "best").json()["id"] == v0["id"]
    assert reg.rw.get(base + "v0").json()["id"] == v0["id"]
    assert reg.rw.get(base + "v1").json()["id"] == v1["id"]
    assert reg.rw.get(f"/versions/{v0['id']}").json()["aliases"] == ["best"]

    v2 = reg.commit(project, "data", {"x": b"third"})
    assert v2["index"] == 2
    assert reg.rw.get(base + "latest").json()["id"] == v2["id"]


def test_concurrent_commits_get_distinct_numbers(reg: Any) -> None:
    project = reg.unique("proj")
    files = [{"f": f"file {i}".encode()} for i in range(8)]
    for f in files:
        reg.upload(f["f"])
    path = reg.collection(project, "data") + "/versions"

    def one(f: dict[str, bytes]) -> httpx.Response:
        return reg.rw.post(path, json={"type": "dataset", "manifest": reg.manifest_for(f)})

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(one, files))
    assert [r.status_code for r in answers] == [201] * 8, [r.text for r in answers]
    assert sorted(r.json()["index"] for r in answers) == list(range(8))
    latest = reg.rw.get(reg.collection(project, "data") + "/resolve/latest").json()
    assert latest["index"] == 7


def test_resolve_unknown_alias_or_version(reg: Any) -> None:
    project = reg.unique("proj")
    reg.commit(project, "data", {"a": b"a"})
    base = reg.collection(project, "data") + "/resolve/"
    assert_error(reg.rw.get(base + "nope"), 404, "NotFound")
    assert_error(reg.rw.get(base + "v9"), 404, "NotFound")
    assert_error(reg.rw.get(reg.collection(project, "absent") + "/resolve/latest"), 404)


def test_version_by_id(reg: Any) -> None:
    project = reg.unique("proj")
    v = reg.commit(project, "data", {"a": b"a"}, aliases=["x"], metadata={"k": "v"})
    r = reg.rw.get(f"/versions/{v['id']}")
    assert r.status_code == 200
    assert r.json() == v
    assert_error(reg.rw.get("/versions/0123456789abcdef01234567"), 404, "NotFound")


def test_manifest_has_strong_etag_long_cache_and_304(reg: Any) -> None:
    project = reg.unique("proj")
    files = {"a/b.txt": b"hello", "c.txt": b"world"}
    v = reg.commit(project, "data", files)
    path = f"/versions/{v['id']}/manifest"
    r = reg.rw.get(path)
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/json")
    manifest = Manifest.from_json(r.content)
    assert {e.path: e.digest for e in manifest} == {p: md5_b64(d) for p, d in files.items()}
    assert manifest.digest() == v["digest"]

    etag = r.headers["etag"]
    assert etag.startswith('"') and etag.endswith('"') and len(etag) > 2  # strong: no W/
    cache = [p.strip() for p in r.headers["cache-control"].split(",")]
    assert "immutable" in cache
    max_age = [int(p.split("=", 1)[1]) for p in cache if p.startswith("max-age=")]
    assert max_age and max_age[0] >= 30 * 86400

    again = reg.rw.get(path)
    assert again.headers["etag"] == etag and again.content == r.content

    cached = reg.rw.get(path, headers={"If-None-Match": etag})
    assert cached.status_code == 304
    assert cached.content == b""
    assert cached.headers["etag"] == etag

    listed = reg.rw.get(path, headers={"If-None-Match": f'"something-else", {etag}'})
    assert listed.status_code == 304

    stale = reg.rw.get(path, headers={"If-None-Match": '"something-else"'})
    assert stale.status_code == 200
    assert stale.content == r.content


def test_patch_description_and_metadata(reg: Any) -> None:
    project = reg.unique("proj")
    v = reg.commit(project, "data", {"a": b"a"}, description="first", metadata={"a": 1})
    manifest_etag = reg.rw.get(f"/versions/{v['id']}/manifest").headers["etag"]

    r = reg.rw.patch(f"/versions/{v['id']}", json={"description": "second"})
    assert r.status_code == 200, r.text
    got = r.json()
    assert got["description"] == "second"
    assert got["metadata"] == {"a": 1}
    assert got["updated_at"] >= v["updated_at"]
    assert (got["index"], got["digest"], got["created_at"]) == (
        v["index"], v["digest"], v["created_at"])

    r = reg.rw.patch(f"/versions/{v['id']}", json={"metadata": {"b": [1, 2], "c": None}})
    assert r.status_code == 200, r.text
    assert r.json()["metadata"] == {"b": [1, 2], "c": None}
    assert r.json()["description"] == "second"

    fetched = reg.rw.get(f"/versions/{v['id']}").json()
    assert fetched["description"] == "second"
    assert fetched["metadata"] == {"b": [1, 2], "c": None}
    assert reg.rw.get(f"/versions/{v['id']}/manifest").headers["etag"] == manifest_etag


def test_put_and_delete_alias(reg: Any) -> None:
    project = reg.unique("proj")
    v0 = reg.commit(project, "data", {"a": b"0"})
    v1 = reg.commit(project, "data", {"a": b"1"})
    resolve = reg.collection(project, "data") + "/resolve/prod"

    r = reg.rw.put(f"/versions/{v0['id']}/aliases/prod")
    assert r.status_code == 200, r.text
    assert r.json()["aliases"] == ["prod"]
    assert reg.rw.get(resolve).json()["id"] == v0["id"]

    r = reg.rw.put(f"/versions/{v1['id']}/aliases/prod")  # moves it
    assert r.status_code == 200
    assert sorted(r.json()["aliases"]) == ["latest", "prod"]
    assert reg.rw.get(resolve).json()["id"] == v1["id"]
    assert reg.rw.get(f"/versions/{v0['id']}").json()["aliases"] == []

    r = reg.rw.delete(f"/versions/{v1['id']}/aliases/prod")
    assert r.status_code == 200, r.text
    assert r.json()["aliases"] == ["latest"]
    assert_error(reg.rw.get(resolve), 404, "NotFound")

    # latest is the registry's to move; vN is a version index, not a label
    assert_error(reg.rw.put(f"/versions/{v0['id']}/aliases/latest"), 400, "InvalidName")
    assert_error(reg.rw.delete(f"/versions/{v1['id']}/aliases/latest"), 400, "InvalidName")
    assert_error(reg.rw.put(f"/versions/{v0['id']}/aliases/v5"), 400, "InvalidName")
    assert reg.rw.get(reg.collection(project, "data") + "/resolve/latest").json()["id"] == v1["id"]


def test_delete_version_refused_while_aliases_held(reg: Any) -> None:
    project = reg.unique("proj")
    v0 = reg.commit(project, "data", {"a": b"0"}, aliases=["prod"])
    v1 = reg.commit(project, "data", {"a": b"1"})
    v2 = reg.commit(project, "data", {"a": b"2"})
    coll = reg.collection(project, "data")

    # v2 holds latest
    assert_error(reg.rw.delete(f"/versions/{v2['id']}"), 409, "Conflict")
    assert reg.rw.get(f"/versions/{v2['id']}").status_code == 200
    r = reg.rw.delete(f"/versions/{v2['id']}", params={"delete_aliases": "true"})
    assert r.status_code == 204
    assert r.content == b""
    assert_error(reg.rw.get(f"/versions/{v2['id']}"), 404, "NotFound")
    assert_error(reg.rw.get(f"/versions/{v2['id']}/manifest"), 404, "NotFound")
    assert reg.rw.get(coll + "/resolve/latest").json()["id"] == v1["id"]

    # v0 holds prod
    assert_error(reg.rw.delete(f"/versions/{v0['id']}"), 409, "Conflict")
    assert reg.rw.get(coll + "/resolve/prod").json()["id"] == v0["id"]
    assert reg.rw.delete(f"/versions/{v0['id']}?delete_aliases=true").status_code == 204
    assert_error(reg.rw.get(coll + "/resolve/prod"), 404)
    assert_error(reg.rw.get(coll + "/resolve/v0"), 404)
    assert [v["index"] for v in reg.rw.get(coll + "/versions").json()] == [1]

    # a version without aliases goes at once, and numbers are never reused
    r = reg.rw.put(f"/versions/{v0['id']}/aliases/again")
    assert_error(r, 404, "NotFound")
    v3 = reg.commit(project, "data", {"a": b"3"})
    assert v3["index"] == 3
    assert reg.rw.delete(f"/versions/{v1['id']}").status_code == 204
    assert [v["index"] for v in reg.rw.get(coll + "/versions").json()] == [3]


# ---- blobs -----------------------------------------------------------------------------------


def test_blobs_missing(reg: Any) -> None:
    present = reg.upload(rand_bytes(100))
    absent = md5_b64(rand_bytes(100))
    r = reg.rw.post("/blobs/missing", json={"digests": [present, absent, absent]})
    assert r.status_code == 200, r.text
    assert r.json() == {"missing": [absent]}
    r = reg.rw.post("/blobs/missing", json={"digests": []})
    assert r.json() == {"missing": []}


def test_blob_batch_answers_whole_blobs_in_the_order_asked(reg: Any) -> None:
    blobs = [rand_bytes(n) for n in (10, 70_000, 0, 3000)]
    digests = [reg.upload(b) for b in blobs]
    absent = md5_b64(b"not stored anywhere")
    asked = [digests[1], absent, digests[0], digests[2], digests[3], digests[1]]
    r = reg.rw.post("/blobs/batch", json={"digests": asked})
    assert r.status_code == 200, r.text
    parts = split_batch(r.content, len(asked))
    want = [blobs[1], None, blobs[0], blobs[2], blobs[3], blobs[1]]
    assert [None if p is None else bytes(p) for p in parts] == want
    head = r.content.split(b"\n", 1)[0]
    assert json.loads(head) == {"sizes": [70_000, -1, 10, 0, 3000, 70_000]}
    # one body of known length, so a client reads it in one go rather than chunk by chunk
    assert r.headers["content-length"] == str(len(r.content))
    assert "transfer-encoding" not in r.headers
    assert split_batch(reg.rw.post("/blobs/batch", json={"digests": []}).content, 0) == []


def test_a_fault_of_the_server_is_a_json_500_logged_with_its_bytes(registry: Any) -> None:
    reg = registry
    good, broken = reg.upload(rand_bytes(300, 1)), reg.upload(rand_bytes(400, 2))
    # a real fault under the server: the blob's file is now a folder, which opens but
    # cannot be read
    path = reg.blob_path(broken)
    path.unlink()
    path.mkdir()
    r = reg.rw.post("/blobs/batch", json={"digests": [good, broken]})
    assert_error(r, 500, "InternalError")
    assert "server log" in r.json()["error"]["message"]
    # the access line counts the bytes really sent (it said 0 when the answer came from
    # outside it); it is written once the answer is out, so it may come just after it
    line = f'"POST /api/v1/blobs/batch" 500 {len(r.content)} '
    assert wait_until(lambda: line in reg.server.log_text()), reg.server.log_text()
    text = reg.server.log_text()
    assert "internal error on POST /api/v1/blobs/batch" in text
    assert "IsADirectoryError" in text  # the traceback, for whoever runs the server
    # and the server goes on serving, on the same connection
    r = reg.rw.post("/blobs/batch", json={"digests": [good]})
    assert r.status_code == 200 and split_batch(r.content, 1)[0] is not None


@pytest.mark.parametrize("body", [
    b"no header line", b"[1, 2]\n", b'{"sizes": [5]}\nabc', b'{"sizes": [1]}\nab',
    b'{"sizes": [2, 1]}\nab', b"not json\n",
])
def test_malformed_batch_answers_are_refused_as_value_errors(body: bytes) -> None:
    # HttpRegistry turns ValueError into RegistryUnavailable: nothing else may escape
    with pytest.raises(ValueError):
        split_batch(body, 1)


def test_blob_batch_refuses_bad_requests(reg: Any) -> None:
    present = reg.upload(rand_bytes(100))
    assert_error(reg.rw.post("/blobs/batch", json={"digests": ["nope"]}), 400, "InvalidRequest")
    assert_error(reg.rw.post("/blobs/batch", json={"digests": "x"}), 400, "InvalidRequest")
    assert_error(reg.rw.post("/blobs/batch", json={}), 400, "InvalidRequest")
    too_many = [present] * (BATCH_MAX_BLOBS + 1)
    assert_error(reg.rw.post("/blobs/batch", json={"digests": too_many}), 400, "InvalidRequest")
    assert_error(reg.anon.post("/blobs/batch", json={"digests": [present]}), 401)
    r = reg.ro.post("/blobs/batch", json={"digests": [present]})  # reading: a read key will do
    assert r.status_code == 200, r.text


def test_blob_batch_over_the_byte_limit_is_refused(reg: Any) -> None:
    big = reg.upload(rand_bytes(BATCH_MAX_BYTES // 3 + 1, 8))
    r = reg.rw.post("/blobs/batch", json={"digests": [big, big, big]})
    assert_error(r, 413, "TooLarge")
    r = reg.rw.post("/blobs/batch", json={"digests": [big, big]})
    assert r.status_code == 200 and len(r.content) > 2 * (BATCH_MAX_BYTES // 3)


def test_http_client_reads_blobs_in_batches(reg: Any) -> None:
    blobs = [rand_bytes(500 + n, n) for n in range(BATCH_MAX_BLOBS + 5)]
    digests = [reg.upload(b) for b in blobs]
    client = HttpRegistry(reg.url, reg.rw_key)
    try:
        got = client.read_blobs([*digests, md5_b64(b"absent")])
    finally:
        client.close()
    assert [bytes(g) for g in got[:-1]] == blobs and got[-1] is None
    assert reg.server.log_text().count('"POST /api/v1/blobs/batch" 200') >= 2


def test_put_blob_then_get_it(reg: Any) -> None:
    data = rand_bytes(3000)
    digest, key = md5_b64(data), blob_key(md5_b64(data))
    r = reg.rw.put(f"/blobs/{key}", content=data)
    assert r.status_code == 201, r.text
    assert r.json() == {"digest": digest, "stored": True}
    assert reg.blob_path(digest).read_bytes() == data

    r = reg.rw.put(f"/blobs/{key}", content=data)  # already there
    assert r.status_code == 200, r.text
    assert r.json() == {"digest": digest, "stored": False}

    r = reg.rw.get(f"/blobs/{key}")
    assert r.status_code == 200
    assert r.content == data
    assert r.headers["accept-ranges"] == "bytes"
    assert r.headers["content-length"] == "3000"
    assert r.headers["content-type"] == "application/octet-stream"
    assert r.headers["etag"] == f'"{key}"'
    assert "immutable" in r.headers["cache-control"]
    assert "content-range" not in r.headers


def test_get_large_blob_streams_whole(reg: Any) -> None:
    # past the size the server reads in one go (16 MiB): whole answers and long ranges are
    # streamed, short ranges read at once; every byte must land where it belongs
    data = rand_bytes(17 * CHUNK_SIZE + 17, 3)
    url = f"/blobs/{blob_key(reg.upload(data))}"
    r = reg.rw.get(url)
    assert r.status_code == 200
    assert r.headers["content-length"] == str(len(data))
    assert r.content == data
    for start, end in [(5, 17 * CHUNK_SIZE + 17), (CHUNK_SIZE - 3, 9 * CHUNK_SIZE + 1),
                       (16 * CHUNK_SIZE + 1, 17 * CHUNK_SIZE + 17)]:
        r = reg.rw.get(url, headers={"Range": f"bytes={start}-{end - 1}"})
        assert r.status_code == 206
        assert r.headers["content-range"] == f"bytes {start}-{end - 1}/{len(data)}"
        assert r.content == data[start:end]


def test_head_blob(reg: Any) -> None:
    data = rand_bytes(777)
    key = blob_key(reg.upload(data))
    r = reg.rw.head(f"/blobs/{key}")
    assert r.status_code == 200
    assert r.content == b""
    assert r.headers["content-length"] == "777"
    assert r.headers["accept-ranges"] == "bytes"
    r = reg.rw.head(f"/blobs/{key}", headers={"Range": "bytes=1-2"})
    assert r.status_code == 206
    assert r.headers["content-range"] == "bytes 1-2/777"
    assert r.headers["content-length"] == "2"
    assert reg.rw.head(f"/blobs/{blob_key(md5_b64(b'absent head'))}").status_code == 404
    reg.alive()


def test_get_unknown_blob(reg: Any) -> None:
    assert_error(reg.rw.get(f"/blobs/{blob_key(md5_b64(b'never stored'))}"), 404, "NotFound")


def test_chunk_index_of_large_blob(reg: Any) -> None:
    data = rand_bytes(2 * CHUNK_SIZE + 12345, 2)
    key = blob_key(reg.upload(data))
    r = reg.rw.get(f"/blobs/{key}/chunks")
    assert r.status_code == 200, r.text
    assert "immutable" in r.headers["cache-control"]
    index = ChunkIndex.from_bytes(r.content)
    assert (index.chunk_size, index.size, index.count) == (CHUNK_SIZE, len(data), 3)
    for n in range(index.count):
        start, end = index.bounds(n)
        assert index.check(n, data[start:end])
    assert not index.check(0, b"\0" + data[1:CHUNK_SIZE])
    hasher = ContentHasher()
    hasher.update(data)
    expected = hasher.result().chunk_index
    assert expected is not None and r.content == expected.to_bytes()


def test_chunk_index_of_small_blob_is_204(reg: Any) -> None:
    for data in (b"tiny", rand_bytes(CHUNK_SIZE, 4)):  # one chunk or less: no index
        key = blob_key(reg.upload(data))
        r = reg.rw.get(f"/blobs/{key}/chunks")
        assert r.status_code == 204, (len(data), r.status_code)
        assert r.content == b""
    assert_error(reg.rw.get(f"/blobs/{blob_key(md5_b64(b'no chunks'))}/chunks"), 404)


# ---- ranges ----------------------------------------------------------------------------------

TEN = b"0123456789"


@pytest.fixture
def ten(reg: Any) -> str:
    return f"/blobs/{blob_key(reg.upload(TEN))}"


@pytest.mark.parametrize(
    ("header", "start", "end"),
    [
        ("bytes=0-0", 0, 1),
        ("bytes=5-", 5, 10),
        ("bytes=-3", 7, 10),
        ("bytes=2-5", 2, 6),
        ("bytes=9-9", 9, 10),
        ("bytes=3-100", 3, 10),  # end past the size is clamped
        ("bytes=0-9", 0, 10),
        ("bytes=-100", 0, 10),  # suffix longer than the blob: all of it
    ],
)
def test_range(reg: Any, ten: str, header: str, start: int, end: int) -> None:
    r = reg.rw.get(ten, headers={"Range": header})
    assert r.status_code == 206, r.text
    assert r.content == TEN[start:end]
    assert r.headers["content-range"] == f"bytes {start}-{end - 1}/10"
    assert r.headers["content-length"] == str(end - start)
    assert r.headers["accept-ranges"] == "bytes"


@pytest.mark.parametrize("header", ["bytes=10-", "bytes=10-20", "bytes=11-", "bytes=-0"])
def test_range_not_satisfiable(reg: Any, ten: str, header: str) -> None:
    r = reg.rw.get(ten, headers={"Range": header})
    assert_error(r, 416)
    assert r.headers["content-range"] == "bytes */10"
    reg.alive()


@pytest.mark.parametrize(
    "header",
    ["bytes=abc", "items=0-1", "bytes=0-1,3-4", "bytes=5-3", "bytes=-", "bytes 0-1", "bytes=",
     "bytes=0x1-2", "bytes=1-2-3"],
)
def test_malformed_range_sends_whole_body(reg: Any, ten: str, header: str) -> None:
    r = reg.rw.get(ten, headers={"Range": header})
    assert r.status_code == 200, r.text
    assert r.content == TEN
    assert r.headers["content-length"] == "10"
    assert "content-range" not in r.headers


def test_ranges_on_empty_blob(reg: Any) -> None:
    key = blob_key(reg.upload(b""))
    whole = reg.rw.get(f"/blobs/{key}")
    assert whole.status_code == 200 and whole.content == b""
    assert whole.headers["content-length"] == "0"
    r = reg.rw.get(f"/blobs/{key}", headers={"Range": "bytes=0-"})
    assert r.status_code == 416 and r.headers["content-range"] == "bytes */0"
    # a suffix range of an empty blob has no bytes to name: 200 (whole, empty) or 416,
    # never a 206 with an impossible Content-Range such as "bytes 0--1/0"
    r = reg.rw.get(f"/blobs/{key}", headers={"Range": "bytes=-3"})
    assert r.status_code in (200, 416), (r.status_code, r.headers.get("content-range"))
    assert r.content == b"" or r.status_code == 416


# ---- bad input -------------------------------------------------------------------------------


def post_commit(reg: Any, project: str, name: str, **kwargs: Any) -> httpx.Response:
    return reg.rw.post(reg.collection(project, name) + "/versions", **kwargs)


def assert_nothing_committed(reg: Any, project: str, name: str) -> None:
    assert reg.rw.get(reg.collection(project, name)).status_code == 404
    assert reg.rw.get(reg.collection(project, name) + "/versions").json() == []
    assert project not in reg.rw.get(f"/entities/{ENTITY}/projects").json()


@pytest.mark.parametrize(
    "body",
    [b"{", b"not json", b"", b'{"type": "dataset",}', b'{"type": "\xff"}', b"\x00\x01",
     b'{"type": "dataset"} trailing'],
)
def test_malformed_json(reg: Any, body: bytes) -> None:
    project = reg.unique("bad")
    headers = {"Content-Type": "application/json"}
    assert_error(post_commit(reg, project, "data", content=body, headers=headers), 400)
    assert_error(reg.rw.post("/blobs/missing", content=body, headers=headers), 400)
    reg.alive()


@pytest.mark.parametrize("value", [[], [1, 2], "text", 5, None, True])
def test_non_object_json(reg: Any, value: Any) -> None:
    project = reg.unique("bad")
    v = reg.commit(reg.unique("ok"), "data", {"a": b"a"})
    assert_error(post_commit(reg, project, "data", json=value), 400)
    assert_error(reg.rw.post("/blobs/missing", json=value), 400)
    assert_error(reg.rw.patch(f"/versions/{v['id']}", json=value), 400)
    assert_nothing_committed(reg, project, "data")
    reg.alive()


def test_deeply_nested_json(reg: Any) -> None:
    depth = 200_000
    body = b'{"digests": ' + b"[" * depth + b"]" * depth + b"}"
    with reg.client(reg.rw_key) as own:  # a 500 would also close its connection
        r = own.post("/blobs/missing", content=body,
                     headers={"Content-Type": "application/json"})
    assert 400 <= r.status_code < 500, (r.status_code, r.text[:200])
    assert_error(r, r.status_code)
    reg.alive()


GOOD_FILES = {"a.txt": b"good file"}


@pytest.mark.parametrize(
    "change",
    [
        {"type": 5},
        {"type": True},
        {"type": ["dataset"]},
        {"manifest": []},
        {"manifest": "{}"},
        {"aliases": "prod"},
        {"aliases": [1]},
        {"aliases": [["prod"]]},
        {"description": 5},
        {"description": ["x"]},
        {"metadata": [1]},
        {"metadata": "x"},
    ],
)
def test_commit_wrong_field_types(reg: Any, change: dict[str, Any]) -> None:
    project = reg.unique("bad")
    reg.upload(GOOD_FILES["a.txt"])
    body = {"type": "dataset", "manifest": reg.manifest_for(GOOD_FILES), **change}
    assert_error(post_commit(reg, project, "data", json=body), 400)
    assert_nothing_committed(reg, project, "data")
    reg.alive()


@pytest.mark.parametrize("drop", ["type", "manifest"])
def test_commit_missing_fields(reg: Any, drop: str) -> None:
    project = reg.unique("bad")
    reg.upload(GOOD_FILES["a.txt"])
    body = {"type": "dataset", "manifest": reg.manifest_for(GOOD_FILES)}
    del body[drop]
    err = assert_error(post_commit(reg, project, "data", json=body), 400)
    assert drop in err["message"]
    assert_nothing_committed(reg, project, "data")


def test_patch_and_missing_wrong_field_types(reg: Any) -> None:
    v = reg.commit(reg.unique("ok"), "data", {"a": b"a"}, description="keep",
                   metadata={"k": 1})
    for body in ({"description": 5}, {"metadata": [1]}, {"metadata": "x"}):
        assert_error(reg.rw.patch(f"/versions/{v['id']}", json=body), 400)
    after = reg.rw.get(f"/versions/{v['id']}").json()
    assert (after["description"], after["metadata"]) == ("keep", {"k": 1})

    for body in ({}, {"digests": "x"}, {"digests": [5]}, {"digests": ["not-a-digest"]},
                 {"digests": {"a": 1}}, {"digests": [blob_key(md5_b64(b"hex, not b64"))]}):
        assert_error(reg.rw.post("/blobs/missing", json=body), 400)
    reg.alive()


@pytest.mark.parametrize(
    ("project", "name", "type_", "aliases"),
    [
        ("bad name", "data", "dataset", []),
        ("x" * 129, "data", "dataset", []),
        ("bad*project", "data", "dataset", []),
        ("ok", "bad name", "dataset", []),
        ("ok", "n" * 129, "dataset", []),
        ("ok", "bad:name", "dataset", []),
        ("ok", "data", "bad type", []),
        ("ok", "data", "", []),
        ("ok", "data", "a/b", []),
        ("ok", "data", "t" * 129, []),
        ("ok", "data", "dataset", ["v3"]),
        ("ok", "data", "dataset", ["a:b"]),
        ("ok", "data", "dataset", ["a/b"]),
        ("ok", "data", "dataset", [""]),
        ("ok", "data", "dataset", ["a" * 129]),
        ("ok", "data", "dataset", ["tab\there"]),
    ],
)
def test_commit_invalid_names(
    reg: Any, project: str, name: str, type_: str, aliases: list[str]
) -> None:
    if project == "ok":
        project = reg.unique("ok")
    reg.upload(GOOD_FILES["a.txt"])
    body = {"type": type_, "manifest": reg.manifest_for(GOOD_FILES), "aliases": aliases}
    assert_error(post_commit(reg, project, name, json=body), 400, "InvalidName")
    projects = reg.rw.get(f"/entities/{ENTITY}/projects").json()
    assert project not in projects
    reg.alive()


def test_invalid_alias_in_urls(reg: Any) -> None:
    project = reg.unique("proj")
    v = reg.commit(project, "data", {"a": b"a"})
    for alias in ("a:b", "v1", "latest", "x" * 129, "%01"):
        assert_error(reg.rw.put(f"/versions/{v['id']}/aliases/{alias}"), 400, "InvalidName")
    for alias in ("a:b", "x" * 129):
        r = reg.rw.get(reg.collection(project, "data") + f"/resolve/{alias}")
        assert_error(r, 400, "InvalidName")
    assert reg.rw.get(f"/versions/{v['id']}").json()["aliases"] == ["latest"]


@pytest.mark.parametrize("path", ["../x", "/abs", "a/../b", "a//b", "./a", "a/", "", "a/./b",
                                  "nul\x00byte"])
def test_manifest_with_escaping_path(reg: Any, path: str) -> None:
    project = reg.unique("bad")
    digest = reg.upload(b"payload")
    manifest = reg.manifest_for({})
    manifest["contents"] = {path: {"digest": digest, "size": 7}}
    r = post_commit(reg, project, "data", json={"type": "dataset", "manifest": manifest})
    assert_error(r, 400, "InvalidManifest")
    assert_nothing_committed(reg, project, "data")
    reg.alive()


@pytest.mark.parametrize(
    "manifest_change",
    [
        {"version": 2},
        {"contents": []},
        {"contents": {"a": {"size": 1}}},  # no digest
        {"contents": {"a": {"digest": "not-an-md5", "size": 1}}},
        {"contents": {"a": {"digest": md5_b64(b"payload"), "size": -1}}},
        {"contents": {"a": {"digest": md5_b64(b"payload"), "size": 7},
                      "a/b": {"digest": md5_b64(b"payload"), "size": 7}}},
    ],
)
def test_invalid_manifest(reg: Any, manifest_change: dict[str, Any]) -> None:
    project = reg.unique("bad")
    reg.upload(b"payload")
    manifest = {**reg.manifest_for({}), **manifest_change}
    r = post_commit(reg, project, "data", json={"type": "dataset", "manifest": manifest})
    assert_error(r, 400, "InvalidManifest")
    assert_nothing_committed(reg, project, "data")


def test_oversized_json_body_with_content_length(reg: Any) -> None:
    body = b'{"digests": [' + b" " * (MAX_JSON_BYTES + (1 << 20)) + b"]}"
    r = reg.rw.post("/blobs/missing", content=body, headers={"Content-Type": "application/json"})
    assert_error(r, 413)
    project = reg.unique("big")
    r = post_commit(reg, project, "data", content=body,
                    headers={"Content-Type": "application/json"})
    assert_error(r, 413)
    assert_nothing_committed(reg, project, "data")
    reg.alive()


def test_oversized_json_body_chunked(reg: Any) -> None:
    def body() -> Iterator[bytes]:
        yield b'{"digests": ['
        block = b" " * (1 << 20)
        for _ in range((MAX_JSON_BYTES >> 20) + 1):
            yield block
        yield b"]}"

    r = reg.rw.post("/blobs/missing", content=body(), headers={"Content-Type": "application/json"})
    assert "content-length" not in r.request.headers  # really streamed, size undeclared
    assert_error(r, 413)
    reg.alive()


def test_commit_of_blob_never_uploaded(reg: Any) -> None:
    project = reg.unique("bad")
    files = {"kept.txt": b"kept", "lost.bin": rand_bytes(64)}
    reg.upload(files["kept.txt"])
    body = {"type": "dataset", "manifest": reg.manifest_for(files), "aliases": ["prod"]}
    err = assert_error(post_commit(reg, project, "data", json=body), 400, "InvalidManifest")
    assert md5_b64(files["lost.bin"]) in err["message"]
    assert_nothing_committed(reg, project, "data")
    assert_error(reg.rw.get(reg.collection(project, "data") + "/resolve/latest"), 404)
    reg.alive()


@pytest.mark.parametrize("size", [100, 2 * CHUNK_SIZE + 5])
def test_upload_not_matching_digest_stores_nothing(reg: Any, size: int) -> None:
    data = rand_bytes(size)
    claimed = md5_b64(rand_bytes(size))
    tmp_before = reg.tmp_files()
    r = reg.rw.put(f"/blobs/{blob_key(claimed)}", content=data)
    assert 400 <= r.status_code < 500
    assert_error(r, r.status_code, "DigestMismatch")
    for digest in (claimed, md5_b64(data)):
        key = blob_key(digest)
        assert not reg.blob_path(digest).exists()
        assert not (reg.store / "chunks" / key[:2] / f"{key}.idx").exists()
        assert_error(reg.rw.get(f"/blobs/{key}"), 404)
    assert reg.tmp_files() <= tmp_before
    assert reg.rw.post("/blobs/missing", json={"digests": [claimed]}).json() == {
        "missing": [claimed]}
    reg.alive()


@pytest.mark.parametrize(
    "key", ["zz", "g" * 32, "5d41402abc4b2a76b9719d911017c59", "5d41402abc4b2a76b9719d911017c59200",
            "XUFAKrxLKna5cZ2REBfFkg=="],
)
def test_bad_blob_key(reg: Any, key: str) -> None:
    assert_error(reg.rw.get(f"/blobs/{key}"), 400, "InvalidName")
    assert_error(reg.rw.put(f"/blobs/{key}", content=b"x"), 400, "InvalidName")
    assert_error(reg.rw.get(f"/blobs/{key}/chunks"), 400, "InvalidName")
    reg.alive()


@pytest.mark.parametrize(
    "path", ["/api/v1/nothing", "/api/v1/entities/team", "/api/v2/entities/team/projects",
             "/nothing-here", "/api/v1/blobs/5d41402abc4b2a76b9719d911017c592/chunks/0"],
)
def test_unknown_endpoint(reg: Any, path: str) -> None:
    """(``/`` itself is the web view's: tests/test_web.py.)"""
    assert_error(reg.rw.get(reg.url + path), 404, "NotFound")
    reg.alive()


WRONG_METHODS = [
    ("DELETE", "/blobs/missing"),
    ("GET", "/blobs/missing/x"),
    ("POST", "/versions/{vid}"),
    ("PUT", "/versions/{vid}/manifest"),
    ("PUT", "/entities/team/projects"),
    ("DELETE", "/entities/team/projects/{project}/collections/data"),
    ("PATCH", "/entities/team/projects/{project}/collections/data/versions"),
    ("POST", "/blobs/5d41402abc4b2a76b9719d911017c592/chunks"),
    ("POST", "/blobs/5d41402abc4b2a76b9719d911017c592"),
]


@pytest.mark.parametrize(("method", "path"), WRONG_METHODS)
def test_wrong_method(reg: Any, method: str, path: str) -> None:
    project = reg.unique("proj")
    v = reg.commit(project, "data", {"a": b"a"})
    path = path.format(vid=v["id"], project=project)
    r = reg.rw.request(method, path)
    if path == "/blobs/missing/x":
        assert_error(r, 404)
    else:
        assert_error(r, 405, "MethodNotAllowed")
    reg.alive()


def test_wrong_method_names_allowed_methods(reg: Any) -> None:
    # RFC 9110 15.5.6: a 405 response MUST carry an Allow header listing the methods
    r = reg.rw.request("DELETE", "/blobs/missing")
    assert_error(r, 405)
    assert "POST" in r.headers.get("allow", ""), r.headers


def test_non_finite_numbers_are_refused(reg: Any) -> None:
    """NaN/Infinity are not JSON: accepting them stores a version no one can read back."""
    project = reg.unique("nan")
    reg.upload(GOOD_FILES["a.txt"])
    text = json.dumps({"type": "dataset", "manifest": reg.manifest_for(GOOD_FILES),
                       "metadata": {"loss": float("nan")}})
    # a client per request: the server drops a connection after a 500
    with reg.client(reg.rw_key) as own:
        r = own.post(reg.collection(project, "data") + "/versions", content=text.encode(),
                     headers={"Content-Type": "application/json"})
    with reg.client(reg.rw_key) as own:
        listing = own.get(reg.collection(project, "data") + "/versions")
    assert 400 <= r.status_code < 500, (r.status_code, r.text[:200])
    assert listing.status_code == 200, listing.text
    assert_nothing_committed(reg, project, "data")
    reg.alive()


def test_non_finite_metadata_patch_keeps_version_readable(reg: Any) -> None:
    v = reg.commit(reg.unique("nan"), "data", {"a": b"a"})
    # a client per request: the server drops a connection after a 500
    with reg.client(reg.rw_key) as own:
        r = own.patch(f"/versions/{v['id']}", content=b'{"metadata": {"loss": Infinity}}',
                      headers={"Content-Type": "application/json"})
    with reg.client(reg.rw_key) as own:
        after = own.get(f"/versions/{v['id']}")
    assert 400 <= r.status_code < 500, (r.status_code, r.text[:200])
    assert after.status_code == 200, after.text
    assert after.json()["metadata"] == {}


# ---- interrupted uploads ---------------------------------------------------------------------


def test_client_disconnect_mid_upload_leaves_nothing(registry: Any) -> None:
    data = b"complete later"
    digest = md5_b64(data)
    key = blob_key(digest)
    head = (
        f"PUT /api/v1/blobs/{key} HTTP/1.1\r\nHost: 127.0.0.1:{registry.server.port}\r\n"
        f"Authorization: Bearer {registry.rw_key}\r\n"
        "Content-Type: application/octet-stream\r\nContent-Length: 50000000\r\n\r\n"
    )
    block = b"\0" * (1 << 20)
    with socket.create_connection(("127.0.0.1", registry.server.port), timeout=10) as sock:
        sock.sendall(head.encode())
        for _ in range(5):
            sock.sendall(block)
        # the upload is under way: its temporary file exists
        assert wait_until(registry.tmp_files, 10), "no temporary file appeared"
    assert wait_until(lambda: not registry.tmp_files(), 10), registry.tmp_files()
    assert not registry.blob_path(digest).exists()
    assert not any(p.is_file() for p in (registry.store / "blobs").rglob("*"))
    registry.alive()
    r = registry.rw.post("/blobs/missing", json={"digests": [digest]})
    assert r.json() == {"missing": [digest]}
    r = registry.rw.put(f"/blobs/{key}", content=data)  # a whole upload still works
    assert r.status_code == 201 and r.json()["stored"] is True
    assert registry.blob_path(digest).read_bytes() == data
    assert registry.tmp_files() == set()


# ---- redirects to a static blob server -------------------------------------------------------

STATIC_SERVER = textwrap.dedent(
    """
    import functools, http.server, json, sys

    root, port, record = sys.argv[1], int(sys.argv[2]), sys.argv[3]

    class Handler(http.server.SimpleHTTPRequestHandler):
        def do_GET(self):
            with open(record, "a") as f:
                f.write(json.dumps({"path": self.path,
                                    "authorization": self.headers.get("Authorization"),
                                    "range": self.headers.get("Range")}) + "\\n")
            super().do_GET()

    handler = functools.partial(Handler, directory=root)
    http.server.ThreadingHTTPServer(("127.0.0.1", port), handler).serve_forever()
    """
)


@dataclass
class Static:
    url: str
    record: Path
    log: Path

    def requests(self) -> list[dict[str, Any]]:
        if not self.record.exists():
            return []
        return [json.loads(line) for line in self.record.read_text().splitlines()]


# the signatures themselves are checked by a real nginx in test_blob_isolation.py; this static
# server serves any address
BLOB_URL_SECRET = "redirect-test-secret-0123456789"


def unsigned(url: str | None) -> str:
    """A redirect address without its signature and expiry."""
    return (url or "").partition("?")[0]


@pytest.fixture
def redirecting(start_registry: Any, tmp_path: Path) -> Iterator[tuple[Any, Static]]:
    """A registry started with --blob-url-base pointing at a static server of its store."""
    port = free_port()
    static = Static(f"http://127.0.0.1:{port}", tmp_path / "static.jsonl", tmp_path / "static.log")
    secret_file = tmp_path / "blob-url-secret"
    secret_file.write_text(BLOB_URL_SECRET)
    secret_file.chmod(0o600)
    reg = start_registry("--blob-url-base", static.url + "/", "--blob-url-secret-file",
                         str(secret_file))
    script = tmp_path / "static_server.py"
    script.write_text(STATIC_SERVER)
    with open(static.log, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, str(script), str(reg.store), str(port), str(static.record)],
            stdout=log, stderr=subprocess.STDOUT,
        )
    try:
        def up() -> bool:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
                return True
            return proc.poll() is not None

        assert wait_until(up, 10) and proc.poll() is None, static.log.read_text()
        yield reg, static
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_blob_get_redirects_to_blob_url_base(redirecting: tuple[Any, Static]) -> None:
    reg, static = redirecting
    data = rand_bytes(3000)
    digest = reg.upload(data)
    key = blob_key(digest)
    location = f"{static.url}/blobs/{key[:2]}/{key}"

    r = reg.rw.get(f"/blobs/{key}")
    assert r.status_code == 307
    assert unsigned(r.headers["location"]) == location
    assert "?md5=" in r.headers["location"] and "&expires=" in r.headers["location"]
    r = reg.rw.get(f"/blobs/{key}", headers={"Range": "bytes=0-9"})
    assert r.status_code == 307
    assert unsigned(r.headers["location"]) == location

    assert httpx.get(r.headers["location"]).content == data  # the static server holds it
    assert_error(reg.rw.get(f"/blobs/{blob_key(md5_b64(b'not here'))}"), 404, "NotFound")
    assert_error(reg.anon.get(f"/blobs/{key}"), 401)  # the redirect itself needs a key


def test_http_client_reads_through_redirect(redirecting: tuple[Any, Static]) -> None:
    reg, static = redirecting
    data = rand_bytes(CHUNK_SIZE + 5000, 5)
    digest = reg.upload(data)
    key = blob_key(digest)
    client = HttpRegistry(reg.url, reg.rw_key)
    try:
        assert client.read_blob(digest, 0, len(data)) == data
        assert client.read_blob(digest, 100, 5000) == data[100:5000]
        assert client.read_blob(digest, len(data) - 10, len(data)) == data[-10:]
        index = client.chunk_index(digest)
        assert index is not None and index.count == 2
        assert index.check(1, data[CHUNK_SIZE:])
    finally:
        client.close()

    seen = static.requests()
    assert [unsigned(s["path"]) for s in seen] == [f"/blobs/{key[:2]}/{key}"] * 3
    assert [s["authorization"] for s in seen] == [None] * 3  # the key stayed home
    assert "bytes=100-4999" in [s["range"] for s in seen]  # the Range went along
    served = wait_until(lambda: any(
        f"GET /blobs/{key[:2]}/{key}?" in line and 'HTTP/1.1" 200' in line
        for line in static.log.read_text().splitlines()))
    assert served, static.log.read_text()
    # (an access line is written once its answer is out)
    assert wait_until(lambda: f'"GET /api/v1/blobs/{key}" 307' in reg.server.log_text())
    assert reg.rw_key not in reg.server.log_text()


def test_http_client_remembers_where_blob_reads_were_sent(
    redirecting: tuple[Any, Static],
) -> None:
    reg, static = redirecting
    data = rand_bytes(3 * CHUNK_SIZE, 6)
    digest = reg.upload(data)
    key = blob_key(digest)
    client = HttpRegistry(reg.url, reg.rw_key)
    try:
        for n in range(3):
            assert client.read_blob(digest, n * CHUNK_SIZE, (n + 1) * CHUNK_SIZE) == (
                data[n * CHUNK_SIZE : (n + 1) * CHUNK_SIZE]
            )
        wait_until(lambda: f'"GET /api/v1/blobs/{key}" 307' in reg.server.log_text())
        asked = reg.server.log_text().count(f'"GET /api/v1/blobs/{key}" 307')
        assert asked == 1  # the later reads went straight to the static server
        seen = static.requests()
        assert len(seen) == 3 and all(s["authorization"] is None for s in seen)

        # a remembered place that stopped answering: back to the registry, which redirects
        dead = f"http://127.0.0.1:{free_port()}/blobs/{key[:2]}/{key}"
        client._redirects[key] = dead
        assert client.read_blob(digest, 5, 500) == data[5:500]
        assert unsigned(client._redirects.get(key)) == f"{static.url}/blobs/{key[:2]}/{key}"
        # the server writes a request's log line once its answer is sent: give it the
        # moment (a loaded machine had not yet, and this read 1)
        assert wait_until(lambda: reg.server.log_text().count(
            f'"GET /api/v1/blobs/{key}" 307') >= 2)
        assert reg.server.log_text().count(f'"GET /api/v1/blobs/{key}" 307') == 2
    finally:
        client.close()
    assert reg.rw_key not in reg.server.log_text()


def test_redirect_of_uppercase_blob_key(redirecting: tuple[Any, Static]) -> None:
    reg, _ = redirecting
    data = b"upper and lower"
    key = blob_key(reg.upload(data))
    assert reg.rw.get(f"/blobs/{key.upper()}", follow_redirects=True).content == data


def test_uppercase_blob_key_without_redirect(reg: Any) -> None:
    data = b"upper and lower, served here"
    key = blob_key(reg.upload(data))
    r = reg.rw.get(f"/blobs/{key.upper()}")
    assert r.status_code == 200 and r.content == data


# ---- process life ----------------------------------------------------------------------------


def test_sigterm_stops_the_server_cleanly(registry: Any) -> None:
    registry.alive()  # leaves an idle keep-alive connection open
    started = time.monotonic()
    registry.server.proc.send_signal(signal.SIGTERM)
    code = registry.server.proc.wait(timeout=10)
    assert time.monotonic() - started < 5
    assert code == 0, (code, registry.server.log_text()[-2000:])
    assert "Traceback" not in registry.server.log_text()
