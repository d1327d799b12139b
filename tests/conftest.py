"""Fixtures shared by every layer's tests: a private store, cache and environment per test."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from artifactfs.config import Config
from artifactfs.sdk import Api

from helpers import ARTIFACTFS


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """Environment for a CLI run against this test's own store and cache."""
    out = {k: v for k, v in os.environ.items() if not k.startswith("ARTIFACTFS_")}
    out.update(
        ARTIFACTFS_STORE=str(tmp_path / "store"),
        ARTIFACTFS_CACHE_DIR=str(tmp_path / "cache"),
        HOME=str(tmp_path / "home"),
    )
    return out


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
