"""Configuration: one typed object built once from options and the environment.

No other module reads ``os.environ``; the CLI, the SDK and the daemon build a ``Config`` and
pass it down.

- ARTIFACTFS_REGISTRY: server URL; unset means the embedded store
- ARTIFACTFS_STORE: embedded store folder (``~/.local/share/artifactfs/store``)
- ARTIFACTFS_DB, ARTIFACTFS_BLOBS: a store named by its two parts instead, a database URL
  (``sqlite:///PATH``, ``postgresql://USER@HOST:PORT/DB``) and a blob folder
  (``file:///PATH``); set, they take the place of ARTIFACTFS_STORE
- ARTIFACTFS_API_KEY: key for the server
- ARTIFACTFS_ENTITY: default entity (``local``; with a server and a key, the key's entity)
- ARTIFACTFS_PROJECT: default project for ``Artifact.save()`` (``uncategorized``)
- ARTIFACTFS_CACHE_DIR: shared content cache (``~/.cache/artifactfs``)
- ARTIFACTFS_CACHE_SIZE: cache bound such as ``20G``, ``20GiB`` or ``512M``, in powers of
  1024 (``10G``); at least ``1M``. Read only by what uses the cache, so a bad value does
  not stop ``ls`` or ``push``.

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

__all__ = ["MIN_CACHE_SIZE", "Config", "parse_cache_size", "parse_size"]

_SIZE_RE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*(?:([kmgtp])(ib|b)?|(b)?)\s*", re.IGNORECASE)
_UNITS = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50}
MIN_CACHE_SIZE = 1 << 20
"""The smallest cache bound: one chunk. Below it nothing read by chunk could be kept, and a
bound of 0 would read as "no cache" when it means "keep nothing"."""


def parse_size(text: str) -> int:
    """``"10G"`` and ``"10GiB"`` -> 10737418240; ``"512"`` and ``"512B"`` are bytes.

    Units are powers of 1024. ``"10GB"`` is refused rather than guessed at: some tools read
    it as 10**10 bytes and others as 10 GiB. Raises InvalidName saying what to write.
    """
    m = _SIZE_RE.fullmatch(text)
    if not m:
        raise InvalidName(f"size {text!r} is not a number with an optional unit: write it "
                          "as 512M, 20G or 20GiB (powers of 1024)")
    number, unit, suffix = m.group(1), m.group(2), m.group(3)
    if unit and suffix and suffix.lower() == "b":
        raise InvalidName(f"size {text!r} is ambiguous (powers of 1000 or of 1024?): write "
                          f"{number}{unit.upper()} or {number}{unit.upper()}iB for "
                          f"{number} x 1024^{'kmgtp'.index(unit.lower()) + 1} bytes")
    return int(float(number) * (_UNITS[unit.lower()] if unit else 1))


def parse_cache_size(text: str, name: str = "ARTIFACTFS_CACHE_SIZE") -> int:
    """A cache bound from setting ``name``; InvalidName naming it when unreadable or too
    small (a bound of 0 would keep nothing, not turn the cache off)."""
    try:
        size = parse_size(text)
    except InvalidName as exc:
        raise InvalidName(f"{name}={text!r}: {exc}") from None
    if size < MIN_CACHE_SIZE:
        raise InvalidName(f"{name}={text!r} is less than the smallest cache, 1M (one chunk; "
                          "the cache cannot be turned off)")
    return size


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
    cache_size_setting: str
    """ARTIFACTFS_CACHE_SIZE as given: read (``cache_size``) only by what uses the cache."""
    state_dir: Path
    runtime_dir: Path
    """Where running mounts keep their control sockets (a folder only this user enters)."""
    entity_given: bool = False
    """``entity`` was set (ARTIFACTFS_ENTITY), not the default: a server's key then does not
    choose it (``artifactfs.registry.with_key_entity``)."""

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
            cache_size_setting=env.get("ARTIFACTFS_CACHE_SIZE") or "10G",
            state_dir=state_home / "artifactfs",
            runtime_dir=(Path(runtime_home) / "artifactfs" if runtime_home
                         else state_home / "artifactfs" / "run"),
            entity_given=bool(env.get("ARTIFACTFS_ENTITY")),
        )

    @property
    def cache_size(self) -> int:
        """The cache bound in bytes; raises InvalidName naming ARTIFACTFS_CACHE_SIZE."""
        return parse_cache_size(self.cache_size_setting)

    def replace(self, **changes: object) -> Config:
        """A copy with ``changes``; an entity set this way counts as told (``entity_given``)."""
        if "entity" in changes:
            changes.setdefault("entity_given", True)
        return replace(self, **changes)  # type: ignore[arg-type]

    def __repr__(self) -> str:  # keep the key and a database password out of logs
        key = "set" if self.api_key else "unset"
        db = "set" if self.db_url else "unset"
        return (
            f"Config(registry_url={self.registry_url!r}, store_dir={str(self.store_dir)!r}, "
            f"db_url={db}, blobs_url={self.blobs_url!r}, "
            f"api_key={key}, entity={self.entity!r}, project={self.project!r}, "
            f"cache_dir={str(self.cache_dir)!r}, cache_size={self.cache_size_setting!r})"
        )
