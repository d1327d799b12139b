"""API keys on a real registry server: who may see and change what, and what gets logged.

A key belongs to one entity: a path naming another entity answers 403 saying whose the key
is (the same for any other entity, existing or not), and another entity's versions by id
answer 404 as if absent; a read-only
key may read (and ask which blobs are missing) but changing anything answers 403. The key
itself is never logged; every request is, in one line. ``artifactfs key create`` prints a
key once and the store keeps only its hash.
"""

from __future__ import annotations

import hashlib
import os
import random
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from helpers import ARTIFACTFS, RegistryServer

from artifactfs.core.digests import blob_key, md5_b64
from artifactfs.store import Store

ENTITY = "team"


@pytest.fixture
def reg(shared_registry: Any) -> Any:
    return shared_registry


def assert_error(r: httpx.Response, status: int, kind: str | None = None) -> None:
    assert r.status_code == status, (r.status_code, r.text)
    body = r.json()
    assert set(body) == {"error"}, body
    assert isinstance(body["error"]["type"], str) and body["error"]["message"], body
    if kind is not None:
        assert body["error"]["type"] == kind, body


@pytest.fixture
def team_version(reg: Any) -> dict[str, Any]:
    """A committed version of the entity ``team``, with an extra alias ``prod``."""
    project = reg.unique("proj")
    return reg.commit(project, "data", {"a.txt": b"team data"}, aliases=["prod"],
                      description="keep me")


def unchanged(reg: Any, version: dict[str, Any]) -> None:
    now = reg.rw.get(f"/versions/{version['id']}")
    assert now.status_code == 200, now.text
    assert now.json() == version
    listing = reg.rw.get(reg.collection(version["project"], "data") + "/versions").json()
    assert [v["id"] for v in listing] == [version["id"]]


# ---- no key, wrong key -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/entities/team/projects"),
        ("GET", "/entities/team/projects/p/collections/data/resolve/latest"),
        ("GET", "/versions/0123456789abcdef01234567/manifest"),
        ("POST", "/blobs/missing"),
        ("GET", "/blobs/5d41402abc4b2a76b9719d911017c592"),
        ("PUT", "/blobs/5d41402abc4b2a76b9719d911017c592"),
        ("GET", "/no/such/endpoint"),
    ],
)
@pytest.mark.parametrize(
    "authorization",
    [None, "", "Bearer", "Bearer afs_", "Basic dGVhbTpzZWNyZXQ=", "afs_no_scheme",
     "Bearer afs_not-a-key-this-store-made", "Token afs_x"],
)
def test_missing_or_unknown_key_is_401(
    reg: Any, method: str, path: str, authorization: str | None
) -> None:
    headers = {} if authorization is None else {"Authorization": authorization}
    content = b"hello" if method == "PUT" else None
    r = reg.anon.request(method, path, headers=headers, content=content)
    assert_error(r, 401, "Unauthorized")
    assert not (reg.store / "blobs" / "5d" / "5d41402abc4b2a76b9719d911017c592").exists()


def test_401_names_the_scheme(reg: Any) -> None:
    # RFC 9110 15.5.2: a 401 response MUST send a WWW-Authenticate challenge
    r = reg.anon.get("/entities/team/projects")
    assert r.status_code == 401
    assert r.headers.get("www-authenticate", "").lower().startswith("bearer"), r.headers


def test_key_of_a_valid_store_still_works_after_401s(reg: Any) -> None:
    for _ in range(3):
        assert reg.anon.get("/entities/team/projects").status_code == 401
    reg.alive()


# ---- another entity --------------------------------------------------------------------------


def test_other_entity_sees_nothing_of_team(reg: Any, team_version: dict[str, Any]) -> None:
    v = team_version
    project, vid = v["project"], v["id"]
    coll = reg.collection(project, "data")
    # a path naming another entity: refused saying whose the key is, the same words for
    # an entity that exists and one that does not
    for path in (
        "/entities/team/projects",
        f"/entities/team/projects/{project}/types",
        f"/entities/team/projects/{project}/collections",
        coll,
        coll + "/versions",
        coll + "/resolve/latest",
        coll + "/resolve/v0",
    ):
        assert_error(reg.other.get(path), 403, "PermissionDenied")
        message = reg.other.get(path).json()["error"]["message"]
        assert message.startswith("this API key is for entity 'other', not 'team'"), message
        assert "ARTIFACTFS_ENTITY=other" in message
        nowhere = reg.other.get(path.replace("/entities/team/", "/entities/nobody/"))
        assert nowhere.json()["error"]["message"] == message.replace("'team'", "'nobody'")
    # a version by its id: absent, as if it did not exist
    for path in (f"/versions/{vid}", f"/versions/{vid}/manifest"):
        assert_error(reg.other.get(path), 404, "NotFound")
    assert reg.other.get("/whoami").json() == {"entity": "other", "read_only": False}
    # its own entity is a different, empty world
    r = reg.other.get("/entities/other/projects")
    assert r.status_code == 200
    assert project not in r.json()
    # and the team's things look exactly as if they did not exist
    assert reg.other.get(f"/versions/{vid}").json()["error"]["message"] == reg.rw.get(
        "/versions/000000000000000000000000").json()["error"]["message"].replace(
        "000000000000000000000000", vid)


def test_other_entity_cannot_change_team(reg: Any, team_version: dict[str, Any]) -> None:
    v = team_version
    vid, coll = v["id"], reg.collection(v["project"], "data")
    assert_error(reg.other.put(f"/versions/{vid}/aliases/stolen"), 404, "NotFound")
    assert_error(reg.other.delete(f"/versions/{vid}/aliases/prod"), 404, "NotFound")
    assert_error(reg.other.patch(f"/versions/{vid}", json={"description": "mine"}), 404)
    assert_error(reg.other.delete(f"/versions/{vid}", params={"delete_aliases": "true"}), 404)
    body = {"type": "dataset", "manifest": reg.manifest_for({"a.txt": b"team data"})}
    assert_error(reg.other.post(coll + "/versions", json=body), 403, "PermissionDenied")
    unchanged(reg, v)


def test_other_entity_commits_in_its_own_entity(reg: Any) -> None:
    project = reg.unique("proj")
    reg.upload(b"other data", reg.other)  # its own upload: another entity's would not do
    body = {"type": "dataset", "manifest": reg.manifest_for({"f": b"other data"})}
    r = reg.other.post(reg.collection(project, "data", "other") + "/versions", json=body)
    assert r.status_code == 201, r.text
    assert r.json()["entity"] == "other"
    assert project in reg.other.get("/entities/other/projects").json()
    assert project not in reg.rw.get("/entities/team/projects").json()
    assert_error(reg.rw.get(f"/versions/{r.json()['id']}"), 404)


# ---- read-only keys --------------------------------------------------------------------------


def test_read_only_key_reads(reg: Any, team_version: dict[str, Any]) -> None:
    v = team_version
    project, vid = v["project"], v["id"]
    coll = reg.collection(project, "data")
    for path in (
        "/entities/team/projects",
        f"/entities/team/projects/{project}/types",
        f"/entities/team/projects/{project}/collections",
        coll,
        coll + "/versions",
        coll + "/resolve/prod",
        f"/versions/{vid}",
        f"/versions/{vid}/manifest",
    ):
        r = reg.ro.get(path)
        assert r.status_code == 200, (path, r.text)
    assert reg.ro.get(coll + "/resolve/latest").json()["id"] == vid
    digest = md5_b64(b"team data")
    r = reg.ro.get(f"/blobs/{blob_key(digest)}")
    assert r.status_code == 200 and r.content == b"team data"
    assert reg.ro.head(f"/blobs/{blob_key(digest)}").status_code == 200
    assert reg.ro.get(f"/blobs/{blob_key(digest)}/chunks").status_code == 204
    absent = md5_b64(b"absent for ro")
    r = reg.ro.post("/blobs/missing", json={"digests": [digest, absent]})
    assert r.status_code == 200, r.text
    assert r.json() == {"missing": [absent]}


def test_read_only_key_cannot_change_anything(reg: Any, team_version: dict[str, Any]) -> None:
    v = team_version
    vid, coll = v["id"], reg.collection(v["project"], "data")
    assert_error(reg.ro.put(f"/versions/{vid}/aliases/ro-alias"), 403, "PermissionDenied")
    assert_error(reg.ro.delete(f"/versions/{vid}/aliases/prod"), 403, "PermissionDenied")
    assert_error(reg.ro.patch(f"/versions/{vid}", json={"description": "x"}), 403)
    assert_error(reg.ro.delete(f"/versions/{vid}"), 403, "PermissionDenied")
    assert_error(reg.ro.delete(f"/versions/{vid}", params={"delete_aliases": "true"}), 403)
    body = {"type": "dataset", "manifest": reg.manifest_for({"a.txt": b"team data"})}
    assert_error(reg.ro.post(coll + "/versions", json=body), 403, "PermissionDenied")
    unchanged(reg, v)

    data = random.Random().randbytes(2000)
    tmp_before = reg.tmp_files()
    r = reg.ro.put(f"/blobs/{blob_key(md5_b64(data))}", content=data)
    assert_error(r, 403, "PermissionDenied")
    assert not reg.blob_path(md5_b64(data)).exists()
    assert reg.tmp_files() <= tmp_before
    reg.alive()


# ---- logging ---------------------------------------------------------------------------------


def test_log_has_one_line_per_request_and_never_a_key(registry: Any) -> None:
    bad_key = "afs_" + "Q" * 43
    requests = {
        "rw-marker": registry.rw,
        "ro-marker": registry.ro,
        "other-marker": registry.other,
        "anon-marker": registry.anon,
        "bad-marker": registry.client(bad_key),
    }
    for marker, client in requests.items():
        client.get(f"/entities/team/projects/{marker}/types")
    digest = registry.upload(b"logged upload")
    registry.ro.put(f"/blobs/{blob_key(md5_b64(b'refused'))}", content=b"refused")

    def lines() -> list[str]:
        return registry.server.log_text().splitlines()

    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and not any("PUT" in line and "403" in line
                                                  for line in lines()):
        time.sleep(0.05)
    text = registry.server.log_text()
    for key in (registry.rw_key, registry.ro_key, registry.other_key, bad_key):
        assert key not in text
        assert key.removeprefix("afs_") not in text
        assert hashlib.sha256(key.encode()).hexdigest() not in text

    expected = {"rw-marker": (ENTITY, 200), "ro-marker": (ENTITY, 200),
                "other-marker": ("other", 403), "anon-marker": ("-", 401),
                "bad-marker": ("-", 401)}
    for marker, (entity, status) in expected.items():
        found = [line for line in lines() if marker in line]
        assert len(found) == 1, (marker, found)
        line = found[0]
        assert f'"GET /api/v1/entities/team/projects/{marker}/types" {status} ' in line, line
        assert f" {entity} " in line, line
    put_lines = [line for line in lines() if f"PUT /api/v1/blobs/{blob_key(digest)}" in line]
    assert len(put_lines) == 1 and '" 201 ' in put_lines[0], put_lines
    refused = [line for line in lines() if "PUT /api/v1/blobs/" in line and '" 403 ' in line]
    assert len(refused) == 1, refused


# ---- artifactfs key create -------------------------------------------------------------------


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("ARTIFACTFS_")}


def key_create(store: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([ARTIFACTFS, "key", "create", *args, "--store", str(store)],
                          capture_output=True, text=True, timeout=60, env=clean_env())


def test_key_create_prints_key_once_and_keeps_only_a_hash(tmp_path: Path) -> None:
    store = tmp_path / "store"
    made = key_create(store, "team")
    assert made.returncode == 0, made.stderr
    rw_key = made.stdout.strip()
    assert made.stdout == rw_key + "\n"  # the key and nothing else
    assert rw_key.startswith("afs_") and len(rw_key) >= 40
    assert rw_key not in made.stderr

    made = key_create(store, "team", "--read-only")
    assert made.returncode == 0, made.stderr
    ro_key = made.stdout.strip()
    assert ro_key.startswith("afs_") and ro_key != rw_key

    stored = b"".join(p.read_bytes() for p in store.glob("registry.sqlite3*"))
    for key in (rw_key, ro_key):
        assert key.encode() not in stored
        assert key.removeprefix("afs_").encode() not in stored
        assert hashlib.sha256(key.encode()).hexdigest().encode() in stored

    db = Store(store).db
    assert db.check_key(rw_key) == ("team", False)
    assert db.check_key(ro_key) == ("team", True)
    assert db.check_key(rw_key + "x") is None

    server = RegistryServer(store, tmp_path / "server.log", env=clean_env())
    try:
        data = b"written with a created key"
        put = f"{server.url}/api/v1/blobs/{blob_key(md5_b64(data))}"
        with httpx.Client(headers={"Authorization": f"Bearer {rw_key}"}) as rw, \
                httpx.Client(headers={"Authorization": f"Bearer {ro_key}"}) as ro:
            assert rw.get(f"{server.url}/api/v1/entities/team/projects").status_code == 200
            assert ro.get(f"{server.url}/api/v1/entities/team/projects").status_code == 200
            assert ro.put(put, content=data).status_code == 403
            assert rw.put(put, content=data).status_code == 201
            assert ro.get(put).content == data
        assert rw_key not in server.log_text() and ro_key not in server.log_text()
    finally:
        server.stop()


@pytest.mark.parametrize("entity", ["bad name", "a/b", "x" * 129, ""])
def test_key_create_refuses_bad_entity(tmp_path: Path, entity: str) -> None:
    made = key_create(tmp_path / "store", entity)
    assert made.returncode != 0
    assert "afs_" not in made.stdout
    assert "error" in made.stderr.lower()
    assert "Traceback" not in made.stderr
