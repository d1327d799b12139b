"""Configuration: one typed object built once from options and the environment.

No other module reads ``os.environ``; the CLI, the SDK and the daemon build a ``Config`` and
pass it down.

- ARTIFACTFS_REGISTRY: server URL; unset means the embedded store
- ARTIFACTFS_STORE: embedded store folder (``~/.local/share/artifactfs/store``)
- ARTIFACTFS_DB, ARTIFACTFS_BLOBS: a store named by its two parts instead, a database URL
  (``sqlite:///PATH``, ``postgresql://USER@HOST:PORT/DB``) and a blob folder
  (``file:///PATH``); set, they take the place of ARTIFACTFS_STORE
- ARTIFACTFS_API_KEY: key for the server
- ARTIFACTFS_ENTITY: default entity (``local``)
- ARTIFACTFS_PROJECT: default project for ``Artifact.save()`` (``uncategorized``)
- ARTIFACTFS_CACHE_DIR: shared content cache (``~/.cache/artifactfs``)
- ARTIFACTFS_CACHE_SIZE: cache bound such as ``20G`` or ``512M`` (``10G``)

``XDG_RUNTIME_DIR`` (``/run/user/UID`` under systemd) holds the mounts' control sockets when
set; otherwise they go under the state folder.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path

from artifactfs.core.errors import InvalidName
from artifactfs.core.names import validate_name

__all__ = ["Config", "parse_size"]

_SIZE_RE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([kmgtp]?)(i?b)?\s*", re.IGNORECASE)
_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50}


def parse_size(text: str) -> int:
    """``"10G"`` -> 10737418240. Units are powers of 1024; raises InvalidName when unreadable."""
    m = _SIZE_RE.fullmatch(text)
    if not m:
        raise InvalidName(f"size {text!r} is not a number with an optional unit (K, M, G, T)")
    return int(float(m.group(1)) * _UNITS[m.group(2).lower()])


@dataclass(frozen=True, slots=True)
class Config:
    registry_url: str | None
    store_dir: Path
    db_url: str | None
    """A database URL (``store.database``); may hold a password, so never shown as is."""
    blobs_url: str | None
    api_key: str | None
    entity: str
    project: str
    cache_dir: Path
    cache_size: int
    state_dir: Path
    runtime_dir: Path
    """Where running mounts keep their control sockets (a folder only this user enters)."""

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Config:
        env = os.environ if env is None else env
        home = Path(env.get("HOME") or Path.home())
        data_home = Path(env.get("XDG_DATA_HOME") or home / ".local" / "share")
        cache_home = Path(env.get("XDG_CACHE_HOME") or home / ".cache")
        state_home = Path(env.get("XDG_STATE_HOME") or home / ".local" / "state")
        runtime_home = env.get("XDG_RUNTIME_DIR")
        entity = env.get("ARTIFACTFS_ENTITY") or "local"
        project = env.get("ARTIFACTFS_PROJECT") or "uncategorized"
        validate_name(entity, "ARTIFACTFS_ENTITY")
        validate_name(project, "ARTIFACTFS_PROJECT")
        return cls(
            registry_url=env.get("ARTIFACTFS_REGISTRY") or None,
            store_dir=Path(env.get("ARTIFACTFS_STORE") or data_home / "artifactfs" / "store"),
            db_url=env.get("ARTIFACTFS_DB") or None,
            blobs_url=env.get("ARTIFACTFS_BLOBS") or None,
            api_key=env.get("ARTIFACTFS_API_KEY") or None,
            entity=entity,
            project=project,
            cache_dir=Path(env.get("ARTIFACTFS_CACHE_DIR") or cache_home / "artifactfs"),
            cache_size=parse_size(env.get("ARTIFACTFS_CACHE_SIZE") or "10G"),
            state_dir=state_home / "artifactfs",
            runtime_dir=(Path(runtime_home) / "artifactfs" if runtime_home
                         else state_home / "artifactfs" / "run"),
        )

    def replace(self, **changes: object) -> Config:
        return replace(self, **changes)  # type: ignore[arg-type]

    def __repr__(self) -> str:  # keep the key and a database password out of logs
        key = "set" if self.api_key else "unset"
        db = "set" if self.db_url else "unset"
        return (
            f"Config(registry_url={self.registry_url!r}, store_dir={str(self.store_dir)!r}, "
            f"db_url={db}, blobs_url={self.blobs_url!r}, "
            f"api_key={key}, entity={self.entity!r}, project={self.project!r}, "
            f"cache_dir={str(self.cache_dir)!r}, cache_size={self.cache_size})"
        )
