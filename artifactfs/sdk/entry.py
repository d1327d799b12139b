"""``ArtifactManifestEntry``: one file of an artifact, as W&B's public API shows it."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from artifactfs.core.manifest import ManifestEntry

if TYPE_CHECKING:
    from artifactfs.sdk.artifact import Artifact

__all__ = ["ArtifactManifestEntry"]


class ArtifactManifestEntry:
    def __init__(
        self, artifact: Artifact, entry: ManifestEntry, local_path: Path | None = None
    ) -> None:
        self._artifact = artifact
        self._entry = entry
        self.local_path = str(local_path) if local_path else None

    @property
    def path(self) -> str:
        return self._entry.path

    @property
    def digest(self) -> str:
        return self._entry.digest

    @property
    def size(self) -> int:
        return self._entry.size

    @property
    def ref(self) -> str | None:
        return self._entry.ref

    @property
    def birth_artifact_id(self) -> str | None:
        return self._entry.birth_artifact_id

    @property
    def extra(self) -> dict[str, Any]:
        return self._entry.extra

    def download(self, root: str | None = None, skip_cache: bool | None = None) -> str:
        """Download this one file under ``root`` (the artifact's default root if None)."""
        return self._artifact._download_entries([self._entry], root)[0]

    def ref_target(self) -> str:
        if self.ref is None:
            raise ValueError(f"entry {self.path!r} is not a reference")
        return self.ref

    def ref_url(self) -> str:
        return self.ref_target()

    def __repr__(self) -> str:
        return (
            f"ArtifactManifestEntry(path={self.path!r}, digest={self.digest!r}, "
            f"size={self.size})"
        )
