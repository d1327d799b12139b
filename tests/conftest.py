"""Fixtures shared by every layer's tests: a private store, cache and environment per test."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from helpers import ARTIFACTFS, RegistryServer
from pg import PgCluster

from artifactfs.config import Config
from artifactfs.sdk import Api
from artifactfs.store import Store


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


@pytest.fixture(params=["embedded", "server"])
def transport(request: pytest.FixtureRequest) -> str:
    """Which registry transport a test runs on: every SDK, CLI and mount test runs on both."""
    return str(request.param)


@pytest.fixture
def env(tmp_path: Path, transport: str) -> Iterator[dict[str, str]]:
    """Environment for a CLI run against this test's own store (or server) and cache.

    With the server transport, ``ARTIFACTFS_STORE`` still names the folder the server
    serves, so tests can inspect or damage it from outside the way an operator could.
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
    key = Store(store).db.create_key("local")
    server = RegistryServer(store, tmp_path / "server.log", env=out)
    try:
        yield {**out, "ARTIFACTFS_REGISTRY": server.url, "ARTIFACTFS_API_KEY": key}
    finally:
        server.stop()


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
