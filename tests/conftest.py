"""Fixtures shared by every layer's tests: a private store, cache and environment per test."""

from __future__ import annotations

import os
import secrets
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import scale_out
from helpers import ARTIFACTFS, RegistryServer
from pg import PgCluster
from scale_out import SCALE_OUT, TRANSPORTS, pg_s3_registry
from seaweed import SeaweedS3

from artifactfs.config import Config
from artifactfs.sdk import Api
from artifactfs.store import Store
from artifactfs.store.s3 import S3BlobStore


def pytest_configure(config: pytest.Config) -> None:
    # the check that the pg-s3 runs reach every route of the server (tests/scale_out.py)
    config.pluginmanager.register(scale_out, "scale_out")


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PgCluster]:
    """One private PostgreSQL cluster for the session (tests/pg.py), stopped by its pid."""
    cluster = PgCluster()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def pg_url(pg_cluster: PgCluster) -> Iterator[str]:
    """A database URL of this test's own PostgreSQL database, at the head revision."""
    name = pg_cluster.new_database()
    try:
        yield pg_cluster.url(name)
    finally:
        pg_cluster.drop_database(name)


@pytest.fixture(params=["sqlite", "postgresql"])
def engine_name(request: pytest.FixtureRequest) -> str:
    """Which database a store test runs on: the metadata tests run on both."""
    return str(request.param)


@pytest.fixture
def open_store(engine_name: str, tmp_path: Path,
               request: pytest.FixtureRequest) -> Callable[[], Store]:
    """``open_store()`` opens this test's store (again): a folder on SQLite, or a
    PostgreSQL database of its own with the blob folder ``tmp_path/store``."""
    if engine_name == "sqlite":
        return lambda: Store(tmp_path / "store")
    url = request.getfixturevalue("pg_url")
    return lambda: Store(db=url, blobs=(tmp_path / "store").as_uri())


@pytest.fixture(params=TRANSPORTS)
def transport(request: pytest.FixtureRequest) -> str:
    """Which registry transport a test runs on: every SDK, CLI and mount test runs on both,
    and those of the scale-out subset (``@scale_out``, tests/scale_out.py) on pg-s3 too."""
    return str(request.param)


@pytest.fixture
def env(tmp_path: Path, transport: str, request: pytest.FixtureRequest
        ) -> Iterator[dict[str, str]]:
    """Environment for a CLI run against this test's own store (or server) and cache.

    With the server transport, ``ARTIFACTFS_STORE`` still names the folder the server
    serves, so tests can inspect or damage it from outside the way an operator could. The
    ``s3`` transport, which a test asks for by ``@pytest.mark.parametrize("transport",
    ["s3"])``, is a server whose blobs are in a real S3 service (SeaweedFS) under a prefix of
    the test's own; clients read and write them there by presigned URL. On ``pg-s3``
    (tests/scale_out.py) the server's metadata is in PostgreSQL too, and there is no store
    folder: ``ARTIFACTFS_STORE`` is unset.
    """
    out = {k: v for k, v in os.environ.items() if not k.startswith("ARTIFACTFS_")}
    store = tmp_path / "store"
    out.update(
        ARTIFACTFS_STORE=str(store),
        ARTIFACTFS_CACHE_DIR=str(tmp_path / "cache"),
        HOME=str(tmp_path / "home"),
    )
    if transport == "embedded":
        yield out
        return
    if transport == SCALE_OUT:
        with pg_s3_registry(out, tmp_path, request) as clients:
            yield clients
        return
    key = Store(store).db.create_key("local")
    server_env, blobs_url = out, None
    if transport == "s3":
        seaweed: SeaweedS3 = request.getfixturevalue("seaweed")
        server_env = {**out, **seaweed.env}
        blobs_url = request.getfixturevalue("s3_url")
    server = RegistryServer(store, tmp_path / "server.log", env=server_env, blobs_url=blobs_url)
    try:
        yield {**out, "ARTIFACTFS_REGISTRY": server.url, "ARTIFACTFS_API_KEY": key}
    finally:
        server.stop()


@pytest.fixture
def environ(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """This process's environment made the test's (``env``'s ARTIFACTFS_ variables and
    HOME, no others of them): for code that reads it as a user's program does,
    ``Artifact.save()`` or ``artifactfs.init()`` without an Api."""
    for key in list(os.environ):
        if key.startswith("ARTIFACTFS_"):
            monkeypatch.delenv(key)
    for key, value in env.items():
        if key.startswith("ARTIFACTFS_") or key == "HOME":
            monkeypatch.setenv(key, value)
    return env


@pytest.fixture
def config(env: dict[str, str]) -> Config:
    return Config.from_env(env)


@pytest.fixture
def api(config: Config) -> Iterator[Api]:
    client = Api(config=config)
    try:
        yield client
    finally:
        client.close()


@pytest.fixture
def run_cli(env: dict[str, str], tmp_path: Path):
    """Run the installed ``artifactfs`` command; returns the CompletedProcess."""

    def run(*args: str, check: bool = False, cwd: Path | None = None, timeout: float = 120,
            extra_env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [ARTIFACTFS, *args], env={**env, **(extra_env or {})}, cwd=cwd or tmp_path,
            capture_output=True, text=True, timeout=timeout,
        )
        if check and proc.returncode != 0:
            raise AssertionError(f"artifactfs {' '.join(args)} failed:\n{proc.stderr}")
        return proc

    return run


@pytest.fixture(scope="session")
def seaweed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedS3]:
    """One real S3 service (SeaweedFS) for the whole run: it takes seconds to start, and
    each test keeps to a prefix of its own in the bucket (``s3_blobs``)."""
    server = SeaweedS3(tmp_path_factory.mktemp("seaweed"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def s3_url(seaweed: SeaweedS3) -> str:
    """``s3://BUCKET/PREFIX`` of a prefix no other test uses."""
    return f"s3://{seaweed.bucket}/t-{secrets.token_hex(6)}"


@pytest.fixture
def s3_blobs(seaweed: SeaweedS3, s3_url: str, monkeypatch: pytest.MonkeyPatch
             ) -> Iterator[S3BlobStore]:
    """An S3 blob store under this test's own prefix, configured the standard AWS way (the
    environment), as a server process would be."""
    for name, value in seaweed.env.items():
        monkeypatch.setenv(name, value)
    store = S3BlobStore.from_url(s3_url)
    try:
        yield store
    finally:
        store.close()
