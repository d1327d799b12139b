"""Blobs do not leak across entities, against real ``artifactfs serve`` processes.

Storage is shared (one copy of each file, content-addressed), access is not: an entity reads,
probes and names in its commits only the blobs it uploaded itself, with their bytes, or that its
own versions reference. A blob it may not reach is answered exactly like one that does not
exist. Checked here as a matrix (every blob route, for the read-write and read-only keys of
entity ``team`` and the key of entity ``other``, on the asker's own blob, another entity's and
one that does not exist), then the upgrade of a store written by the previous schema, then the
signed ``--blob-url-base`` redirects, whose signatures a real nginx checks when one is
installed (``scripts/install-system-deps.sh`` installs it).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import secrets
import shutil
import socket
import sqlite3
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from helpers import ARTIFACTFS, RegistryServer, free_port, rand_bytes, stop_process, wait_until

from artifactfs.core.chunks import CHUNK_SIZE
from artifactfs.core.digests import blob_key, md5_b64
from artifactfs.core.manifest import Manifest
from artifactfs.core.wire import split_batch
from artifactfs.registry.http import HttpRegistry
from artifactfs.store.blobs import signed_blob_url
from artifactfs.store.legacy import SCHEMA_0

TEAM, OTHER = "team", "other"


@pytest.fixture
def reg(shared_registry: Any) -> Any:
    return shared_registry


def manifest_for(files: dict[str, bytes]) -> dict[str, Any]:
    return Manifest.from_dict({
        "version": 1, "storagePolicy": "wandb-storage-policy-v1", "storagePolicyConfig": {},
        "contents": {p: {"digest": md5_b64(d), "size": len(d)} for p, d in files.items()},
    }).to_dict()


def versions_path(entity: str, project: str, name: str = "data") -> str:
    return f"/entities/{entity}/projects/{project}/collections/{name}/versions"


def commit(client: httpx.Client, entity: str, project: str,
           files: dict[str, bytes]) -> httpx.Response:
    """Commit ``files`` by reference only: nothing is uploaded first."""
    return client.post(versions_path(entity, project),
                       json={"type": "dataset", "manifest": manifest_for(files)})


def upload(client: httpx.Client, data: bytes) -> httpx.Response:
    return client.put(f"/blobs/{blob_key(md5_b64(data))}", content=data)


def normalized(r: httpx.Response, *digests: str) -> tuple[Any, ...]:
    """An answer with the digests and keys it names replaced by placeholders, so the answers
    for two different blobs can be compared: status, content type, length and body."""
    text = r.content.decode("latin-1")
    for n, digest in enumerate(digests):
        text = text.replace(digest, f"<digest{n}>").replace(blob_key(digest), f"<key{n}>")
    length = r.headers.get("content-length")
    return r.status_code, r.headers.get("content-type"), length and int(length), text


def probe(client: httpx.Client, digest: str) -> dict[str, tuple[Any, ...]]:
    """What every blob read route answers ``client`` for ``digest``."""
    key = blob_key(digest)
    body = {"digests": [digest]}
    answers = {
        "GET": client.get(f"/blobs/{key}"),
        "HEAD": client.head(f"/blobs/{key}"),
        "Range": client.get(f"/blobs/{key}", headers={"Range": "bytes=10-19"}),
        "suffix Range": client.get(f"/blobs/{key}", headers={"Range": "bytes=-5"}),
        "chunks": client.get(f"/blobs/{key}/chunks"),
        "batch": client.post("/blobs/batch", json=body),
        "missing": client.post("/blobs/missing", json=body),
    }
    return {route: normalized(r, digest) for route, r in answers.items()}


@dataclass
class Blobs:
    """Blobs of both entities in one shared registry, each larger than a chunk (so that
    ``/chunks`` has an index to give)."""

    team: bytes  # uploaded and committed by team
    team_upload_only: bytes  # uploaded by team, in no version
    other: bytes  # uploaded and committed by other
    absent: bytes  # never uploaded

    def digest(self, name: str) -> str:
        return md5_b64(getattr(self, name))


@pytest.fixture(scope="module")
def blobs(shared_registry: Any) -> Blobs:
    reg = shared_registry
    made = Blobs(*(rand_bytes(CHUNK_SIZE + 3000) for _ in range(4)))
    project = reg.unique("iso")
    for client, entity, data in ((reg.rw, TEAM, made.team), (reg.other, OTHER, made.other)):
        assert upload(client, data).status_code == 201
        r = commit(client, entity, project, {"f.bin": data})
        assert r.status_code == 201, r.text
    assert upload(reg.rw, made.team_upload_only).status_code == 201
    return made


def assert_reaches(client: httpx.Client, data: bytes) -> None:
    """``client`` reads ``data`` by every route."""
    digest = md5_b64(data)
    key = blob_key(digest)
    r = client.get(f"/blobs/{key}")
    assert r.status_code == 200 and r.content == data
    r = client.head(f"/blobs/{key}")
    assert r.status_code == 200 and r.headers["content-length"] == str(len(data))
    r = client.get(f"/blobs/{key}", headers={"Range": "bytes=10-19"})
    assert r.status_code == 206 and r.content == data[10:20]
    r = client.get(f"/blobs/{key}/chunks")
    assert r.status_code == 200 and r.content  # the index of a blob of two chunks
    r = client.post("/blobs/batch", json={"digests": [digest]})
    assert r.status_code == 200 and [bytes(b) for b in split_batch(r.content, 1)] == [data]
    r = client.post("/blobs/missing", json={"digests": [digest]})
    assert r.status_code == 200 and r.json() == {"missing": []}


def assert_cannot_tell_from_absent(client: httpx.Client, data: bytes) -> None:
    """Every read route answers ``client`` for ``data`` exactly as for a blob that does not
    exist: 404 where a read is refused, -1 in a batch, listed as missing."""
    seen = probe(client, md5_b64(data))
    absent = probe(client, md5_b64(rand_bytes(len(data))))
    assert seen == absent
    assert {route: answer[0] for route, answer in seen.items()} == {
        "GET": 404, "HEAD": 404, "Range": 404, "suffix Range": 404, "chunks": 404,
        "batch": 200, "missing": 200,
    }
    assert '{"sizes":[-1]}' in seen["batch"][3].replace(" ", "")
    assert json.loads(seen["missing"][3]) == {"missing": ["<digest0>"]}


# ---- the matrix -------------------------------------------------------------------------------


@pytest.mark.parametrize("key", ["rw", "ro"])
def test_team_keys_reach_the_teams_blobs(reg: Any, blobs: Blobs, key: str) -> None:
    client = getattr(reg, key)
    assert_reaches(client, blobs.team)
    assert_reaches(client, blobs.team_upload_only)  # uploaded in no version: still its own


@pytest.mark.parametrize("key", ["rw", "ro"])
def test_team_keys_cannot_reach_another_entitys_blob(reg: Any, blobs: Blobs, key: str) -> None:
    assert_cannot_tell_from_absent(getattr(reg, key), blobs.other)


def test_other_entity_reaches_its_own_blob_only(reg: Any, blobs: Blobs) -> None:
    assert_reaches(reg.other, blobs.other)
    assert_cannot_tell_from_absent(reg.other, blobs.team)
    assert_cannot_tell_from_absent(reg.other, blobs.team_upload_only)


@pytest.mark.parametrize("key", ["rw", "ro", "other"])
def test_nonexistent_blob_is_refused_alike(reg: Any, blobs: Blobs, key: str) -> None:
    assert_cannot_tell_from_absent(getattr(reg, key), blobs.absent)


def test_batch_mixes_reachable_and_unreachable(reg: Any, blobs: Blobs) -> None:
    asked = [blobs.digest(n) for n in ("team", "other", "absent", "team_upload_only", "team")]
    r = reg.rw.post("/blobs/batch", json={"digests": asked})
    assert r.status_code == 200
    got = split_batch(r.content, len(asked))
    assert [None if g is None else bytes(g) for g in got] == [
        blobs.team, None, None, blobs.team_upload_only, blobs.team]
    r = reg.other.post("/blobs/missing", json={"digests": asked})
    assert sorted(r.json()["missing"]) == sorted(
        {blobs.digest(n) for n in ("team", "absent", "team_upload_only")})


def test_batch_size_limit_counts_only_reachable_blobs(reg: Any) -> None:
    """Another entity's large blobs in a batch read as absent; they do not push it over its
    16 MiB limit (a 413 would tell them from absent ones)."""
    big = [rand_bytes(6 << 20) for _ in range(3)]
    for data in big:
        assert upload(reg.rw, data).status_code == 201
    digests = [md5_b64(d) for d in big]
    assert reg.rw.post("/blobs/batch", json={"digests": digests}).status_code == 413
    r = reg.other.post("/blobs/batch", json={"digests": digests})
    assert r.status_code == 200 and split_batch(r.content, 3) == [None, None, None]


@pytest.mark.parametrize(("client_key", "entity", "owner_key"), [
    ("other", OTHER, "rw"),  # other names team's blob
    ("rw", TEAM, "other"),  # team names other's blob
])
def test_commit_naming_anothers_blob_is_refused_like_an_unuploaded_one(
    reg: Any, client_key: str, entity: str, owner_key: str,
) -> None:
    theirs = rand_bytes(5000)
    assert upload(getattr(reg, owner_key), theirs).status_code == 201
    never = rand_bytes(5000)
    client = getattr(reg, client_key)
    project = reg.unique("ref")
    refused = commit(client, entity, project, {"f": theirs})
    absent = commit(client, entity, project, {"f": never})
    assert refused.status_code == 400 and refused.json()["error"]["type"] == "InvalidManifest"
    assert normalized(refused, md5_b64(theirs)) == normalized(absent, md5_b64(never))
    assert client.get(f"/entities/{entity}/projects").json().count(project) == 0
    assert_cannot_tell_from_absent(client, theirs)  # and the attempt gave no access either


def test_commit_by_read_only_key_is_refused(reg: Any, blobs: Blobs) -> None:
    r = commit(reg.ro, TEAM, reg.unique("ro"), {"f": blobs.team})
    assert r.status_code == 403


def test_commit_references_own_blobs_without_uploading_again(reg: Any, blobs: Blobs) -> None:
    project = reg.unique("own")
    r = commit(reg.rw, TEAM, project, {"a": blobs.team, "b": blobs.team_upload_only})
    assert r.status_code == 201, r.text
    r = commit(reg.other, OTHER, project, {"a": blobs.other})
    assert r.status_code == 201, r.text


# ---- uploads: access only with the bytes ------------------------------------------------------


def test_claiming_a_stored_blob_needs_its_bytes(reg: Any) -> None:
    data = rand_bytes(CHUNK_SIZE + 777)
    digest, key = md5_b64(data), blob_key(md5_b64(data))
    assert upload(reg.rw, data).status_code == 201
    path = reg.blob_path(digest)
    before = path.stat()
    absent = rand_bytes(len(data))
    absent_key = blob_key(md5_b64(absent))

    wrong = bytearray(data)
    wrong[-1] ^= 1
    for body in (b"", bytes(wrong), data[:-1], data + b"x"):
        claimed = reg.other.put(f"/blobs/{key}", content=body)
        as_if_absent = reg.other.put(f"/blobs/{absent_key}", content=body)
        assert claimed.status_code == 400 and claimed.json()["error"]["type"] == "DigestMismatch"
        assert normalized(claimed, digest) == normalized(as_if_absent, md5_b64(absent))
        assert_cannot_tell_from_absent(reg.other, data)
        assert commit(reg.other, OTHER, reg.unique("claim"), {"f": data}).status_code == 400

    assert reg.ro.put(f"/blobs/{key}", content=data).status_code == 403  # read-only key

    r = reg.other.put(f"/blobs/{key}", content=data)  # the whole file: now other's too
    assert r.status_code == 201 and r.json() == {"digest": digest, "stored": True}
    assert_reaches(reg.other, data)
    assert_reaches(reg.rw, data)
    after = path.stat()  # checked, not written again
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert path.read_bytes() == data
    r = reg.other.put(f"/blobs/{key}", content=data)
    assert r.status_code == 200 and r.json() == {"digest": digest, "stored": False}
    assert commit(reg.other, OTHER, reg.unique("claim"), {"f": data}).status_code == 201
    assert reg.tmp_files() == set()


def test_upload_answer_does_not_tell_whether_another_entity_holds_the_blob(reg: Any) -> None:
    """``stored`` says whether the blob is now the uploader's, whoever else holds it."""
    held, fresh = rand_bytes(3000), rand_bytes(3000)
    assert upload(reg.rw, held).status_code == 201
    a, b = upload(reg.other, held), upload(reg.other, fresh)
    assert normalized(a, md5_b64(held)) == normalized(b, md5_b64(fresh))


def test_sdk_client_uploads_what_only_another_entity_holds(reg: Any, tmp_path: Path) -> None:
    data = rand_bytes(CHUNK_SIZE * 2 + 5)
    digest = md5_b64(data)
    assert upload(reg.rw, data).status_code == 201
    src = tmp_path / "f.bin"
    src.write_bytes(data)
    client = HttpRegistry(reg.url, reg.other_key)
    try:
        assert client.missing_blobs([digest]) == {digest}
        client.upload_blob(src, digest)
        assert client.missing_blobs([digest]) == set()
        project = reg.unique("sdk")
        manifest = Manifest.from_dict(manifest_for({"f.bin": data}))
        client.commit(entity=OTHER, project=project, name="data", type_="dataset",
                      manifest=manifest)
        assert client.read_blob(digest, 5, 100) == data[5:100]
        assert client.chunk_index(digest) is not None
        assert [bytes(b) for b in client.read_blobs([digest]) if b is not None] == [data]
    finally:
        client.close()


# ---- a store written by the previous schema ---------------------------------------------------

# the schema before blob access was recorded (user_version 0): the frozen copy the upgrade
# itself starts from (store/legacy.py), so there is one text of it
OLD_SCHEMA = SCHEMA_0


class OldStore:
    """A store folder written the way the previous code wrote one: its schema, its rows and
    blob files, and API keys, without ever being opened by the current code."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir()
        self.db = root / "registry.sqlite3"
        with contextlib.closing(sqlite3.connect(self.db, isolation_level=None)) as conn:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.executescript(OLD_SCHEMA)
        self._versions = 0

    def _sql(self, sql: str, args: tuple[Any, ...] = ()) -> int:
        with contextlib.closing(sqlite3.connect(self.db, isolation_level=None)) as conn:
            return int(conn.execute(sql, args).lastrowid or 0)

    def key(self, entity: str, *, read_only: bool = False) -> str:
        key = "afs_" + secrets.token_urlsafe(32)
        self._sql("INSERT INTO api_keys (entity, key_hash, read_only, created_at) "
                  "VALUES (?,?,?,?)",
                  (entity, hashlib.sha256(key.encode()).hexdigest(), int(read_only), 0.0))
        return key

    def blob(self, data: bytes) -> str:
        key = blob_key(md5_b64(data))
        path = self.root / "blobs" / key[:2] / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return md5_b64(data)

    def version(self, entity: str, contents: dict[str, Any] | str, *,
                state: str = "COMMITTED") -> None:
        """A version of ``entity/proj/data`` whose manifest holds ``contents`` (or is the
        raw text given)."""
        self._sql("INSERT OR IGNORE INTO entities (name) VALUES (?)", (entity,))
        with contextlib.closing(sqlite3.connect(self.db)) as conn:
            (entity_id,) = conn.execute("SELECT id FROM entities WHERE name = ?",
                                        (entity,)).fetchone()
        project_id = self._sql("INSERT INTO projects (entity_id, name) VALUES (?, ?)",
                               (entity_id, f"proj{self._versions}"))
        collection_id = self._sql(
            "INSERT INTO collections (project_id, name, type, created_at) VALUES (?,?,?,?)",
            (project_id, "data", "dataset", 0.0))
        manifest = contents if isinstance(contents, str) else json.dumps({
            "version": 1, "storagePolicy": "wandb-storage-policy-v1",
            "storagePolicyConfig": {}, "contents": contents})
        vid = f"{self._versions:024x}"
        self._versions += 1
        self._sql("INSERT INTO versions (id, collection_id, idx, state, digest, size, "
                  "file_count, created_at, updated_at, description, metadata, manifest) "
                  "VALUES (?,?,0,?,?,0,1,0,0,NULL,'{}',?)",
                  (vid, collection_id, state, "0" * 32, manifest))
        if state == "COMMITTED":
            self._sql("INSERT INTO aliases (collection_id, alias, version_id) VALUES (?,?,?)",
                      (collection_id, "latest", vid))

    def user_version(self) -> int:
        with contextlib.closing(sqlite3.connect(self.db)) as conn:
            return int(conn.execute("PRAGMA user_version").fetchone()[0])

    def access_rows(self) -> set[tuple[str, str]]:
        with contextlib.closing(sqlite3.connect(self.db)) as conn:
            return set(conn.execute("SELECT entity, blob_key FROM blob_access"))


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("ARTIFACTFS_")}


def entry(data: bytes, **extra: Any) -> dict[str, Any]:
    return {"digest": md5_b64(data), "size": len(data), **extra}


def test_upgrade_backfills_access_from_each_entitys_versions(tmp_path: Path) -> None:
    old = OldStore(tmp_path / "store")
    team_file, other_file, deleted_file, orphan, via_ref = (
        rand_bytes(4000) for _ in range(5))
    for data in (team_file, other_file, deleted_file, orphan, via_ref):
        old.blob(data)
    shared = rand_bytes(4000)  # in a version of each entity
    old.blob(shared)
    old.version(TEAM, {"a.bin": entry(team_file), "s.bin": entry(shared),
                       # a reference whose digest happens to name a stored blob: no access
                       "r.bin": entry(via_ref, ref="s3://bucket/r.bin")})
    old.version(OTHER, {"b.bin": entry(other_file), "s.bin": entry(shared)})
    old.version(OTHER, {"d.bin": entry(deleted_file)}, state="DELETED")
    old.version("broken", "{not json")  # a row this code cannot read must not stop the start
    keys = {"rw": old.key(TEAM), "ro": old.key(TEAM, read_only=True), "other": old.key(OTHER)}
    assert old.user_version() == 0

    server = RegistryServer(old.root, tmp_path / "server.log", env=clean_env())
    clients = {n: httpx.Client(base_url=server.url + "/api/v1", timeout=60.0,
                               headers={"Authorization": f"Bearer {k}"})
               for n, k in keys.items()}
    try:
        upgraded = old.user_version()
        assert upgraded >= 1  # blob access is schema change 1; later ones may follow
        reach = {
            "rw": [team_file, shared], "ro": [team_file, shared],
            "other": [other_file, shared, deleted_file],  # a deleted version's blobs stay its
        }
        every = [team_file, other_file, deleted_file, orphan, via_ref, shared]
        for name, client in clients.items():
            for data in every:
                if data in reach[name]:
                    r = client.get(f"/blobs/{blob_key(md5_b64(data))}")
                    assert r.status_code == 200 and r.content == data, (name, r.text)
                else:
                    assert_cannot_tell_from_absent(client, data)
        # what the old store let anyone do is gone: claim an orphan by its digest alone
        r = commit(clients["other"], OTHER, "new", {"o.bin": orphan})
        assert r.status_code == 400, r.text
        assert upload(clients["other"], orphan).status_code == 201  # with its bytes: fine
        assert commit(clients["other"], OTHER, "new", {"o.bin": orphan}).status_code == 201
        assert "Traceback" not in server.log_text()
    finally:
        for client in clients.values():
            client.close()
        server.stop()

    rows = old.access_rows()
    server = RegistryServer(old.root, tmp_path / "server2.log", env=clean_env())
    try:  # opened again: the migration does not run twice
        assert old.user_version() == upgraded and old.access_rows() == rows
    finally:
        server.stop()


# ---- signed redirects to a static server ------------------------------------------------------

SECRET = "isolation-test-" + "s3cr3t" * 4


def test_signed_blob_url_has_nginx_secure_link_form() -> None:
    digest = md5_b64(b"hello")
    key = blob_key(digest)
    url = signed_blob_url("http://files.example:8081/store/", digest, secret=SECRET,
                          expires=2147483647)
    parts = urlsplit(url)
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == (
        f"http://files.example:8081/store/blobs/{key[:2]}/{key}")
    query = parse_qs(parts.query, strict_parsing=True)
    assert query["expires"] == ["2147483647"]
    # secure_link_md5 "$secure_link_expires$uri SECRET", base64url without padding
    text = f"2147483647/store/blobs/{key[:2]}/{key} {SECRET}".encode()
    expected = base64.b64encode(hashlib.md5(text).digest()).decode()
    expected = expected.replace("+", "-").replace("/", "_").rstrip("=")
    assert query["md5"] == [expected]
    other = signed_blob_url("http://files.example:8081/store/", digest, secret=SECRET + "x",
                            expires=2147483647)
    assert other != url


def test_blob_url_base_needs_a_secret_and_never_logs_it(tmp_path: Path) -> None:
    def serve(*options: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        return subprocess.run(
            [ARTIFACTFS, "serve", "--store", str(tmp_path / "store"), "--port",
             str(free_port()), *options], capture_output=True, text=True, timeout=60,
            env={**clean_env(), **(env or {})})

    done = serve("--blob-url-base", "http://127.0.0.1:1/")
    assert done.returncode != 0 and "--blob-url-secret-file" in done.stderr
    assert "Traceback" not in done.stderr
    short = {"ARTIFACTFS_BLOB_URL_SECRET": "short"}
    done = serve("--blob-url-base", "http://127.0.0.1:1/", env=short)
    assert done.returncode != 0 and "16 or more" in done.stderr and "short" not in done.stderr
    done = serve(env={"ARTIFACTFS_BLOB_URL_SECRET": SECRET})
    assert done.returncode != 0 and "only used with --blob-url-base" in done.stderr
    assert SECRET not in done.stderr
    # a file others may read is refused; the command line takes no secret at all
    secret_file = tmp_path / "secret"
    secret_file.write_text(SECRET + "\n")
    secret_file.chmod(0o644)
    done = serve("--blob-url-base", "http://127.0.0.1:1/", "--blob-url-secret-file",
                 str(secret_file))
    assert done.returncode != 0 and "chmod 600" in done.stderr and SECRET not in done.stderr
    done = serve("--blob-url-base", "http://127.0.0.1:1/", "--blob-url-secret", SECRET)
    assert done.returncode != 0 and "No such option" in done.stderr


class Nginx:
    """A real nginx in the foreground on a free loopback port, serving a store's ``blobs/``
    behind secure_link as docs/api.md describes; stopped by its pid."""

    def __init__(self, root: Path, store: Path, secret: str, port: int) -> None:
        self.dir = root / "nginx"
        (self.dir / "tmp").mkdir(parents=True)
        self.port = port
        self.url = f"http://127.0.0.1:{self.port}"
        conf = self.dir / "nginx.conf"
        # blob files are mode 0600: workers read them only as the same user (root in CI)
        user = "user root;" if os.geteuid() == 0 else ""
        conf.write_text(f"""{user}
worker_processes 1;
pid {self.dir}/nginx.pid;
error_log {self.dir}/error.log warn;
events {{ worker_connections 64; }}
http {{
    access_log {self.dir}/access.log;
    client_body_temp_path {self.dir}/tmp/body;
    proxy_temp_path {self.dir}/tmp/proxy;
    fastcgi_temp_path {self.dir}/tmp/fastcgi;
    uwsgi_temp_path {self.dir}/tmp/uwsgi;
    scgi_temp_path {self.dir}/tmp/scgi;
    server {{
        listen 127.0.0.1:{self.port};
        location /blobs/ {{
            secure_link $arg_md5,$arg_expires;
            secure_link_md5 "$secure_link_expires$uri {secret}";
            if ($secure_link = "") {{ return 403; }}
            if ($secure_link = "0") {{ return 410; }}
            root {store};
        }}
    }}
}}
""")
        self._log = open(self.dir / "stderr.log", "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [NGINX or "nginx", "-p", str(self.dir), "-c", str(conf), "-e",
             str(self.dir / "error.log"), "-g", "daemon off;"],
            stdout=self._log, stderr=subprocess.STDOUT)

        def up() -> bool:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1",
                                                                          self.port), 1):
                return True
            return self.proc.poll() is not None

        if not wait_until(up, 20) or self.proc.poll() is not None:
            self.stop()
            raise RuntimeError("nginx did not start: " + self.log_text())

    def log_text(self) -> str:
        out = []
        for name in ("stderr.log", "error.log"):
            with contextlib.suppress(OSError):
                out.append((self.dir / name).read_text(errors="replace"))
        return "\n".join(out)

    def stop(self) -> None:
        stop_process(self.proc)
        self._log.close()


def nginx_with_secure_link() -> str | None:
    """The nginx binary, if one is installed with its secure_link module built in (Debian's
    is)."""
    found = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx")
                                      else None)
    if found is None:
        return None
    built = subprocess.run([found, "-V"], capture_output=True, text=True, timeout=30)
    return found if "http_secure_link_module" in built.stderr + built.stdout else None


NGINX = nginx_with_secure_link()


@pytest.fixture
def behind_nginx(start_registry: Callable[..., Any], tmp_path: Path) -> Iterator[tuple[Any,
                                                                                      Nginx]]:
    """A registry redirecting blob reads to a real nginx that checks the signatures."""
    if NGINX is None:
        pytest.skip("no nginx with secure_link (scripts/install-system-deps.sh installs it)")
    port = free_port()
    secret_file = tmp_path / "blob-url-secret"
    secret_file.write_text(SECRET)
    secret_file.chmod(0o600)
    reg = start_registry("--blob-url-base", f"http://127.0.0.1:{port}/",
                         "--blob-url-secret-file", str(secret_file))
    nginx = Nginx(tmp_path, reg.store, SECRET, port)
    try:
        yield reg, nginx
    finally:
        nginx.stop()


def test_nginx_serves_signed_redirects_and_refuses_forged_ones(
    behind_nginx: tuple[Any, Nginx],
) -> None:
    reg, nginx = behind_nginx
    data = rand_bytes(CHUNK_SIZE + 4000)
    digest = reg.upload(data)
    key = blob_key(digest)

    for client in (reg.rw, reg.ro):
        r = client.get(f"/blobs/{key}")
        assert r.status_code == 307 and r.headers["cache-control"] == "no-store"
        location = r.headers["location"]
        assert location.startswith(f"{nginx.url}/blobs/{key[:2]}/{key}?md5=")
        assert httpx.get(location).content == data
        ranged = httpx.get(location, headers={"Range": "bytes=5-9"})
        assert ranged.status_code == 206 and ranged.content == data[5:10]
    expires = int(parse_qs(urlsplit(location).query)["expires"][0])
    assert time.time() < expires <= time.time() + 3600  # short-lived

    # another entity gets no address at all, exactly as for a blob that is not stored
    assert_cannot_tell_from_absent(reg.other, data)

    plain = f"{nginx.url}/blobs/{key[:2]}/{key}"
    token = parse_qs(urlsplit(location).query)["md5"][0]
    flipped = ("A" if token[0] != "A" else "B") + token[1:]
    other_key = blob_key(reg.upload(rand_bytes(100)))
    forged = {
        "no signature": plain,
        "expiry only": f"{plain}?expires={expires}",
        "bad signature": f"{plain}?md5={flipped}&expires={expires}",
        "expiry extended": f"{plain}?md5={token}&expires={expires + 3600}",
        "another blob": f"{nginx.url}/blobs/{other_key[:2]}/{other_key}?md5={token}"
                        f"&expires={expires}",
        "wrong secret": signed_blob_url(nginx.url, digest, secret=SECRET + "x",
                                        expires=expires),
    }
    for what, url in forged.items():
        assert httpx.get(url).status_code == 403, what
    past = signed_blob_url(nginx.url, digest, secret=SECRET, expires=int(time.time()) - 60)
    assert httpx.get(past).status_code == 410  # right signature, past its expiry

    client = HttpRegistry(reg.url, reg.rw_key)  # the SDK and mount read through it
    try:
        assert client.read_blob(digest, 100, 5000) == data[100:5000]
        assert client.read_blob(digest, CHUNK_SIZE, len(data)) == data[CHUNK_SIZE:]
    finally:
        client.close()
    assert SECRET not in reg.server.log_text()
    assert "Traceback" not in reg.server.log_text()
