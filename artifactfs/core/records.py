"""Plain records the registry hands out: what a version is, what a collection is.

They cross the transport boundary as JSON (``to_dict``/``from_dict``) so the embedded store
and the HTTP client return the same objects.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

from artifactfs.core.names import version_label

__all__ = ["CollectionInfo", "CommittedVersion", "VersionInfo"]

PENDING, COMMITTED, DELETED = "PENDING", "COMMITTED", "DELETED"


@dataclass(frozen=True, slots=True)
class CollectionInfo:
    entity: str
    project: str
    name: str
    type: str
    created_at: float
    version_count: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> CollectionInfo:
        return cls(**raw)


@dataclass(frozen=True, slots=True)
class VersionInfo:
    """One artifact version as the registry knows it (its manifest is fetched separately)."""

    id: str
    entity: str
    project: str
    name: str
    type: str
    index: int
    state: str
    digest: str
    size: int
    file_count: int
    created_at: float
    updated_at: float
    description: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    aliases: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()

    @property
    def version(self) -> str:
        return version_label(self.index)

    @property
    def qualified_name(self) -> str:
        return f"{self.entity}/{self.project}/{self.name}:{self.version}"

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["aliases"] = list(self.aliases)
        out["tags"] = list(self.tags)
        return out

    def to_wire(self) -> dict[str, Any]:
        """``to_dict()`` as the server answers with it: ``tags`` only when there are some,
        so that a client older than tags (whose ``from_dict`` took no unknown field) still
        reads every version without them."""
        out = self.to_dict()
        if not self.tags:
            del out["tags"]
        return out

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> VersionInfo:
        """The version a server answered with. Fields this version does not know are left
        out, so a client keeps working against a newer server that sends more."""
        known = {f.name for f in fields(VersionInfo)}
        out = {k: v for k, v in raw.items() if k in known}
        out["aliases"] = tuple(out.get("aliases", ()))
        out["tags"] = tuple(out.get("tags", ()))
        return cls(**out)


@dataclass(frozen=True, slots=True)
class CommittedVersion(VersionInfo):
    """What a commit answers: the version, and whether it already held that content.

    ``unchanged``: a committed version of the collection had the very manifest committed,
    so no version was made and this is that one (the requested aliases moved to it;
    ``Store.commit``). Not part of ``to_dict``: it says what one commit did, not what the
    version is; the HTTP API tells it by status (200 for an existing version, 201 for a
    new one).
    """

    unchanged: bool = False

    def to_dict(self) -> dict[str, Any]:
        out = VersionInfo.to_dict(self)
        del out["unchanged"]
        return out

    @classmethod
    def of(cls, info: VersionInfo, *, unchanged: bool) -> CommittedVersion:
        return cls(**{**VersionInfo.to_dict(info), "aliases": info.aliases,
                      "tags": info.tags, "unchanged": unchanged})
