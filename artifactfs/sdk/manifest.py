"""``ArtifactManifest``: an SDK artifact's manifest, as W&B's public API shows it.

The core ``Manifest`` (pure, no I/O) holds the entries and writes W&B's JSON
(``to_manifest_json``); W&B's manifest also hands out entries that know their artifact, so
that ``artifact.manifest.get_entry_by_path("x").download()`` works. This subclass adds that,
and W&B's manifest methods the core one names otherwise (``add_entry``, ``remove_entry``,
``get_entries_in_directory``, ``version``), on the same entries.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from artifactfs.core.digests import MD5, check_algorithm
from artifactfs.core.errors import ArtifactFSError
from artifactfs.core.manifest import (
    DIGEST_ALGORITHM_KEY,
    Manifest,
    ManifestEntry,
    validate_entry_path,
)
from artifactfs.files import hash_file
from artifactfs.sdk.entry import ArtifactManifestEntry, EntryOwner

__all__ = ["ArtifactManifest"]


class ArtifactManifest(Manifest):
    """The manifest of one ``Artifact``; made with ``ArtifactManifest.of``."""

    _artifact: EntryOwner

    manifest_version = 1
    """The manifest format's version, W&B's ``manifestVersion`` (only 1 exists)."""

    @classmethod
    def version(cls) -> int:
        """The manifest format's version: 1."""
        return cls.manifest_version

    @classmethod
    def from_manifest_json(cls, manifest_json: Mapping[str, Any],
                           digest_algorithm: Any = None) -> Manifest:
        """A manifest from W&B's JSON form (``to_manifest_json()``, a parsed
        ``wandb_manifest.json``); InvalidManifest saying what is wrong. ``digest_algorithm``
        is the one its entries were hashed with, as in wandb 0.31 (``"MD5"``, ``"XXH128"``
        or wandb's own enum): W&B's JSON does not carry it, and without it a manifest
        saying none is MD5. The manifest stands alone: ``Artifact``s make their own views."""
        raw = dict(manifest_json)
        if digest_algorithm is not None:
            raw[DIGEST_ALGORITHM_KEY] = _algorithm_name(digest_algorithm)
        return Manifest.from_dict(raw)

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

    def _changeable(self, what: str) -> None:
        """A draft's current manifest may change; a saved version's never does."""
        owner = self._artifact
        if not owner.is_draft():
            raise ArtifactFSError(
                f"manifest.{what}: a saved version's files never change; call "
                "artifact.new_draft() (or add files to the artifact) to make a new version")
        if owner._draft() is not self:
            raise ArtifactFSError(
                f"manifest.{what}: this is an older manifest of the artifact; use "
                "artifact.manifest again")

    def add_entry(self, entry: ArtifactManifestEntry | ManifestEntry,
                  overwrite: bool = False) -> None:
        """Add an entry as it is (its digest is not checked until ``save()`` commits it:
        the registry then refuses one whose bytes it lacks). ValueError for a path taken
        by an entry of other content, unless ``overwrite``."""
        self._changeable("add_entry")
        core = entry._entry if isinstance(entry, ArtifactManifestEntry) else entry
        validate_entry_path(core.path)
        old = self.get(core.path)
        if old is not None and old.digest != core.digest and not overwrite:
            raise ValueError(f"cannot add the same path twice: {core.path!r}")
        self.add(core)

    def remove_entry(self, entry: ArtifactManifestEntry | ManifestEntry) -> None:
        """Remove an entry; FileNotFoundError for one the manifest does not hold."""
        self._changeable("remove_entry")
        if entry.path not in self:
            raise FileNotFoundError(f"cannot remove missing entry: {entry.path!r}")
        self.remove(entry.path)
        self._artifact._local.pop(entry.path, None)

    def get_entries_in_directory(self, directory: str) -> list[ArtifactManifestEntry]:
        """The entries anywhere under folder ``directory`` (``""`` or ``/`` for none)."""
        prefix = directory.strip("/") + "/"
        local = self._artifact._local
        return [ArtifactManifestEntry(self._artifact, e, local.get(e.path))
                for e in self if e.path.startswith(prefix)]

    def hash_contents_with_md5(self) -> None:
        """Give the entries added from local files MD5 digests, as W&B does for a server
        that takes no other (their ``extra.alg`` goes); others keep theirs."""
        self._changeable("hash_contents_with_md5")
        for path, local in list(self._artifact._local.items()):
            entry = self.get(path)
            if entry is None or entry.algorithm == MD5:
                continue
            content = hash_file(local, MD5)
            self.add(ManifestEntry(path, content.digest, content.size,
                                   extra=content.entry_extra()))


def _algorithm_name(algorithm: Any) -> str:
    """``"MD5"``/``"XXH128"`` from ours or wandb's ``ArtifactDigestAlgorithm`` (a str enum
    whose values are ``MANIFEST_MD5`` and ``MANIFEST_XXH128``); InvalidManifest else."""
    name = str(getattr(algorithm, "value", algorithm))
    return check_algorithm(name.removeprefix("MANIFEST_"))
