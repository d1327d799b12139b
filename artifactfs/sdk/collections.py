"""W&B's ``Project``, ``ArtifactType`` and ``ArtifactCollection``: the levels above a version.

Kept apart from ``api.py`` so that ``Artifact.collection`` can hand one out: ``artifact.py``
must not import ``api.py`` (which imports it). They work through a ``Client``, and reach
``Artifact`` by a late import, as ``run.py`` does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from artifactfs.sdk.client import Client

if TYPE_CHECKING:
    from artifactfs.sdk.artifact import Artifact

__all__ = ["ArtifactCollection", "ArtifactType", "Project"]


@dataclass(frozen=True)
class Project:
    """A project of an entity (W&B's ``Api().projects()`` items)."""

    entity: str
    name: str


@dataclass(frozen=True)
class ArtifactType:
    """A type used in a project (``dataset``, ``model``, ...)."""

    api: Client
    entity: str
    project: str
    name: str

    def collections(self) -> list[ArtifactCollection]:
        """The project's collections of this type, by name."""
        return [
            ArtifactCollection(self.api, c.entity, c.project, c.name, c.type, c.version_count)
            for c in self.api.registry.list_collections(self.entity, self.project, self.name)
        ]


@dataclass(frozen=True)
class ArtifactCollection:
    """A collection: the versions v0, v1, ... of one artifact name in a project."""

    api: Client
    entity: str
    project: str
    name: str
    type: str
    version_count: int

    def artifacts(self) -> list[Artifact]:
        """Every committed version, oldest first."""
        from artifactfs.sdk.artifact import Artifact  # artifact.py imports this module

        found = self.api.registry.list_versions(self.entity, self.project, self.name)
        return [Artifact._from_info(self.api, v) for v in found]

    versions = artifacts

    @property
    def aliases(self) -> list[str]:
        """Every alias held by a version of the collection (``latest`` included), sorted."""
        found = self.api.registry.list_versions(self.entity, self.project, self.name)
        return sorted({a for v in found for a in v.aliases})

    def is_sequence(self) -> bool:
        """True: a collection here is always W&B's sequence (versions logged to it), never
        a portfolio of links."""
        return True

    def __repr__(self) -> str:
        return f"<ArtifactCollection {self.entity}/{self.project}/{self.name} ({self.type})>"
