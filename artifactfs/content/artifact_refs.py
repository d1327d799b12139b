"""Reading ``wandb-artifact://`` references: an entry of one version naming an entry of
another (W&B's artifact-to-artifact references, docs/wandb-format.md section 5).

Such an entry holds no bytes of its own: ``ArtifactReferences.resolve`` looks the version
it names up through the registry (NotFound there, for a version deleted, missing, or not
readable with this client's key, is an ``UnresolvedReference``), takes the named entry
from that version's folder listing (not its whole manifest: a reference into ImageNet reads
one folder), follows a chain of such references to a concrete entry, and answers with the
entry to read in its place. ``VerifiedContent`` then reads that one as any other, checked
against its digest or chunk index: the reference's own digest must equal the target's
(W&B copies it), so a target that is not what was referenced is refused, never served.

The answers are kept in a small LRU: versions never change, and a mount reads a file by
chunks, each of which asks. Thread-safe.
"""

from __future__ import annotations

import threading

from cachetools import LRUCache

from artifactfs.core.artifact_refs import (
    MAX_CHAIN,
    UnresolvedReference,
    is_artifact_ref,
    parse_artifact_ref,
)
from artifactfs.core.errors import DigestMismatch, NotFound
from artifactfs.core.limits import shown
from artifactfs.core.manifest import ManifestEntry
from artifactfs.registry.base import Registry

__all__ = ["ArtifactReferences", "UnresolvedReference"]


class ArtifactReferences:
    """Resolves ``wandb-artifact://`` entries through one registry."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self._lock = threading.Lock()  # cachetools caches are not thread-safe
        self._resolved: LRUCache[tuple[str, str], ManifestEntry] = LRUCache(maxsize=4096)

    def resolve(self, entry: ManifestEntry) -> ManifestEntry:
        """The entry to read for ``entry``: itself unless it is a ``wandb-artifact://``
        reference, else the entry that reference names (its digest, size, ``extra`` and,
        if it is an external reference itself, its ``ref``), under ``entry``'s path so that
        messages name what was read. Raises UnresolvedReference, or DigestMismatch for a
        target whose digest is not the one referenced."""
        if not is_artifact_ref(entry.ref):
            return entry
        target = self.target(entry)
        return ManifestEntry(entry.path, target.digest, target.size, target.ref,
                             target.birth_artifact_id, target.extra)

    def target(self, entry: ManifestEntry) -> ManifestEntry:
        """The concrete entry (not a ``wandb-artifact://`` one) a reference names, as its
        own version holds it; see ``resolve``."""
        assert entry.ref is not None
        memo = (entry.ref, entry.digest)
        with self._lock:
            found = self._resolved.get(memo)
        if found is not None:
            return found
        found = self._follow(entry)
        if found.digest != entry.digest:
            raise DigestMismatch(
                f"entry {shown(entry.path)} refers to {shown(entry.ref)}, whose digest is "
                f"{found.digest}, not the {entry.digest} it was added with")
        if entry.size not in (0, found.size):  # 0: W&B writes no size for these
            raise UnresolvedReference(
                f"entry {shown(entry.path)} says {entry.size} bytes, but the entry it refers "
                f"to ({shown(entry.ref)}) has {found.size}")
        with self._lock:
            self._resolved[memo] = found
        return found

    def _follow(self, entry: ManifestEntry) -> ManifestEntry:
        ref = entry.ref
        for _ in range(MAX_CHAIN):
            assert ref is not None
            version_id, path = parse_artifact_ref(ref)
            target = self.lookup(version_id, path, what=f"entry {shown(entry.path)}")
            if not is_artifact_ref(target.ref):
                return target
            ref = target.ref
        raise UnresolvedReference(
            f"entry {shown(entry.path)} refers to {shown(entry.ref or '')}, a chain of more than "
            f"{MAX_CHAIN} wandb-artifact:// references")

    def lookup(self, version_id: str, path: str, *, what: str) -> ManifestEntry:
        """Entry ``path`` of committed version ``version_id``; raises UnresolvedReference
        naming ``what`` referred to it when there is none."""
        ref = f"wandb-artifact://{version_id}/{path}"
        try:
            version = self.registry.version(version_id)
        except NotFound:
            raise UnresolvedReference(
                f"{what} refers to {shown(ref)}: no artifact version {version_id} (it was "
                "deleted, never existed here, or is not readable with this key)") from None
        parent = path.rpartition("/")[0]
        try:
            listing = self.registry.folder_listing(version_id, parent)
        except NotFound:
            listing = None
        found = listing.files.get(path) if listing is not None else None
        if found is None:
            raise UnresolvedReference(
                f"{what} refers to {shown(ref)}: {version.qualified_name} has no file "
                f"{shown(path)}")
        return found
