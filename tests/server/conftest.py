"""Real ``artifactfs serve`` processes for the server's tests, each with its own store and keys.

Every registry is a separate process on a free loopback port, talked to with plain
``httpx.Client`` objects (no ASGI test client, no mocks), and is always stopped by its pid.

- ``registry``: a fresh store and server in the test's ``tmp_path``;
- ``shared_registry``: one per test module, for the many tests that only need their own
  project names (started once to keep the suite fast);
- ``start_registry(*serve_options)``: a factory for servers with extra ``serve`` options.

Each registry holds three keys: ``rw`` (read-write, entity ``team``), ``ro`` (read-only,
``team``) and ``other`` (read-write, entity ``other``), with a client for each and ``anon``,
a client sending no key.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from helpers import RegistryServer

from artifactfs.core.digests import blob_key, md5_b64
from artifactfs.store import Store

API = "/api/v1"
ENTITY = "team"
OTHER = "other"


@dataclass
class Registry:
    """A running registry server, its store folder, its keys and a client per key."""

    server: RegistryServer
    store: Path
    rw_key: str
    ro_key: str
    other_key: str
    clients: list[httpx.Client] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.rw = self.client(self.rw_key)
        self.ro = self.client(self.ro_key)
        self.other = self.client(self.other_key)
        self.anon = self.client(None)

    @property
    def url(self) -> str:
        return self.server.url

    def client(self, key: str | None, **kwargs: Any) -> httpx.Client:
        """An ``httpx.Client`` on ``/api/v1`` sending ``key`` (none when None)."""
        headers = {"Authorization": f"Bearer {key}"} if key is not None else {}
        c = httpx.Client(base_url=self.url + API, headers=headers, timeout=60.0, **kwargs)
        self.clients.append(c)
        return c

    def close(self) -> None:
        for c in self.clients:
            c.close()

    # ---- shortcuts used by many tests -------------------------------------------------------

    @staticmethod
    def unique(prefix: str) -> str:
        return f"{prefix}-{uuid.uuid4().hex[:10]}"

    @staticmethod
    def collection(project: str, name: str, entity: str = ENTITY) -> str:
        return f"/entities/{entity}/projects/{project}/collections/{name}"

    def blob_path(self, digest: str) -> Path:
        key = blob_key(digest)
        return self.store / "blobs" / key[:2] / key

    def tmp_files(self) -> set[str]:
        return {p.name for p in (self.store / "tmp").iterdir()}

    def upload(self, data: bytes, client: httpx.Client | None = None) -> str:
        """PUT ``data`` as a blob; return its entry digest."""
        digest = md5_b64(data)
        r = (client or self.rw).put(f"/blobs/{blob_key(digest)}", content=data)
        assert r.status_code in (200, 201), r.text
        return digest

    @staticmethod
    def manifest_for(files: dict[str, bytes]) -> dict[str, Any]:
        return {
            "version": 1,
            "storagePolicy": "wandb-storage-policy-v1",
            "storagePolicyConfig": {"storageLayout": "V2"},
            "contents": {p: {"digest": md5_b64(d), "size": len(d)} for p, d in files.items()},
        }

    def commit(
        self,
        project: str,
        name: str,
        files: dict[str, bytes],
        *,
        type_: str = "dataset",
        aliases: Iterable[str] = (),
        client: httpx.Client | None = None,
        **extra: Any,
    ) -> dict[str, Any]:
        """Upload ``files`` and commit them as the next version; return the version JSON."""
        for data in files.values():
            self.upload(data)
        body = {"type": type_, "manifest": self.manifest_for(files), "aliases": list(aliases),
                **extra}
        r = (client or self.rw).post(self.collection(project, name) + "/versions", json=body)
        assert r.status_code == 201, r.text
        return dict(r.json())

    def alive(self) -> None:
        """The server still answers a plain request correctly."""
        r = self.rw.get(f"/entities/{ENTITY}/projects")
        assert r.status_code == 200, r.text
        assert isinstance(r.json(), list)
        assert self.server.proc.poll() is None


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("ARTIFACTFS_")}


@contextlib.contextmanager
def running_registry(root: Path, *serve_options: str, db_url: str | None = None,
                     blobs_url: str | None = None, env: dict[str, str] | None = None
                     ) -> Iterator[Registry]:
    """A store folder under ``root`` with three keys, served by a real process until exit.

    With ``db_url`` (PostgreSQL), the metadata is in that database and ``root/store`` holds
    the blobs alone; with ``blobs_url`` the blobs are there (an S3 bucket) instead; ``env``
    adds to the server's environment.
    """
    store_dir = root / "store"
    store = Store(db=db_url, blobs=store_dir.as_uri()) if db_url else Store(store_dir)
    db = store.db
    rw = db.create_key(ENTITY)
    ro = db.create_key(ENTITY, read_only=True)
    other = db.create_key(OTHER)
    db.close()
    server = RegistryServer(store_dir, root / "server.log", *serve_options,
                            env={**clean_env(), **(env or {})}, db_url=db_url,
                            blobs_url=blobs_url)
    reg = None
    try:
        reg = Registry(server, store_dir, rw, ro, other)
        yield reg
    finally:
        if reg is not None:
            reg.close()
        server.stop()


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[Registry]:
    """A fresh store in ``tmp_path`` served by its own ``artifactfs serve``."""
    with running_registry(tmp_path) as reg:
        yield reg


@pytest.fixture(scope="module")
def shared_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """One registry for a whole test module; tests keep apart by unique project names."""
    with running_registry(tmp_path_factory.mktemp("registry")) as reg:
        yield reg


@pytest.fixture(scope="module")
def pg_shared_registry(tmp_path_factory: pytest.TempPathFactory,
                       pg_cluster: Any) -> Iterator[Registry]:
    """``shared_registry`` with its metadata in a PostgreSQL database of its own."""
    name = pg_cluster.new_database()
    try:
        with running_registry(tmp_path_factory.mktemp("pg-registry"),
                              db_url=pg_cluster.url(name, password="s3cret-pw")) as reg:
            yield reg
    finally:
        pg_cluster.drop_database(name)


@pytest.fixture
def pg_registry(pg_cluster: Any, tmp_path: Path) -> Iterator[Registry]:
    """A server of its own on a fresh PostgreSQL database, whose URL holds the password
    ``s3cret-pw`` (the cluster trusts loopback, so any password is taken)."""
    name = pg_cluster.new_database()
    try:
        with running_registry(tmp_path,
                              db_url=pg_cluster.url(name, password="s3cret-pw")) as reg:
            yield reg
    finally:
        pg_cluster.drop_database(name)


@pytest.fixture
def start_registry(tmp_path: Path) -> Iterator[Callable[..., Registry]]:
    """``start_registry(*serve_options)`` starts another registry; all stop at teardown."""
    counter = itertools.count()
    with contextlib.ExitStack() as stack:

        def start(*serve_options: str) -> Registry:
            root = tmp_path / f"registry{next(counter)}"
            root.mkdir()
            return stack.enter_context(running_registry(root, *serve_options))

        yield start
