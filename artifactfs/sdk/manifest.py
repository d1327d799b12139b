"""``ArtifactManifest``: an SDK artifact's manifest, as W&B's public API shows it.

The core ``Manifest`` (pure, no I/O) holds the entries and writes W&B's JSON
(``to_manifest_json``); W&B's manifest also hands out entries that know their artifact, so
that ``artifact.manifest.get_entry_by_path("x").download()`` works. This subclass adds that,
and nothing else: every other method is the core one, on the same entries.
"""

from __future__ import annotations

from artifactfs.core.manifest import Manifest
from artifactfs.sdk.entry import ArtifactManifestEntry, EntryOwner

__all__ = ["ArtifactManifest"]


class ArtifactManifest(Manifest):
    """The manifest of one ``Artifact``; made with ``ArtifactManifest.of``."""

    _artifact: EntryOwner

    @classmethod
    def of(cls, manifest: Manifest, artifact: EntryOwner) -> ArtifactManifest:
        """``manifest`` as ``artifact``'s: the same entries (taken over, not copied: a
        manifest of a million entries is not built twice), now able to name their artifact.
        The caller no longer uses ``manifest`` itself."""
        if isinstance(manifest, cls) and manifest._artifact is artifact:
            return manifest
        view = cls.__new__(cls)
        view.__dict__.update(manifest.__dict__)
        view._artifact = artifact
        return view

    # W&B's manifest answers with its own entry class, which knows its artifact (download,
    # ref_url); ArtifactManifestEntry shows the same fields as the core entry it wraps
    def get_entry_by_path(self, path: str) -> ArtifactManifestEntry | None:  # type: ignore[override]
        """The entry at ``path`` (one that can ``download()`` itself), or None, as W&B."""
        entry = self.get(path)
        if entry is None:
            return None
        return ArtifactManifestEntry(self._artifact, entry,
                                     self._artifact._local.get(path))
