"""What a commit's ``wandb-artifact://`` references may name (``Store.commit``).

A reference to another version's entry is resolved through the registry each time it is
read (content/artifact_refs.py); the commit checks it once, so that a version never
names what its committer could not read:

- the version must be committed (not deleted, not missing) and, for a server's key,
  belong to the key's entity: the same answer, "no such version", for all three, so a
  key cannot learn what other entities hold;
- it must hold the named entry, a concrete one (W&B stores the end of a chain, and so
  does ``Artifact.add_reference``), with the referencing entry's digest;
- a size of 0 (what W&B writes for these) is filled in with the target's, so that a
  mount shows the file's real length; any other size must be the target's.
"""

from __future__ import annotations

from artifactfs.core.artifact_refs import (
    UnresolvedReference,
    is_artifact_ref,
    parse_artifact_ref,
)
from artifactfs.core.errors import InvalidManifest, NotFound
from artifactfs.core.folders import parse_stored
from artifactfs.core.limits import shown
from artifactfs.core.manifest import Manifest, ManifestEntry
from artifactfs.store.metadata import MetadataDB

__all__ = ["check_artifact_refs"]


def check_artifact_refs(db: MetadataDB, manifest: Manifest, caller: str | None) -> None:
    """Check (and complete the sizes of) the manifest's ``wandb-artifact://`` entries.

    ``caller``: the entity of a server's key, None for the store folder's owner (who reads
    every version). Raises UnresolvedReference or InvalidManifest naming the entry.
    """
    by_version: dict[str, list[tuple[ManifestEntry, str]]] = {}
    # one pass in a comprehension: most manifests (of a million entries, some) hold none
    for entry in [e for e in manifest if e.ref is not None and is_artifact_ref(e.ref)]:
        assert entry.ref is not None
        version_id, path = parse_artifact_ref(entry.ref)
        by_version.setdefault(version_id, []).append((entry, path))
    for version_id, wanted in by_version.items():
        try:
            info = db.version_by_id(version_id)
        except NotFound:
            info = None
        if info is None or (caller is not None and info.entity != caller):
            entry = wanted[0][0]
            raise UnresolvedReference(
                f"entry {shown(entry.path)} refers to {shown(entry.ref or '')}: no artifact "
                f"version {version_id} (deleted, never made, or not readable with this key)")
        folders: dict[str, dict[str, ManifestEntry]] = {}
        for entry, path in wanted:
            parent = path.rpartition("/")[0]
            if parent not in folders:
                try:
                    (listing,) = parse_stored(db.folder_texts(version_id, [parent]), [parent])
                    folders[parent] = dict(listing.files)
                except NotFound:
                    folders[parent] = {}
            target = folders[parent].get(path)
            _check_one(entry, target, f"{info.qualified_name}", path)


def _check_one(entry: ManifestEntry, target: ManifestEntry | None, version: str,
               path: str) -> None:
    named = f"entry {shown(entry.path)} refers to {shown(entry.ref or '')}"
    if target is None:
        raise UnresolvedReference(f"{named}: {version} has no file {shown(path)}")
    if is_artifact_ref(target.ref):
        raise InvalidManifest(f"{named}, itself a reference to {shown(target.ref or '')}: "
                              "refer to the entry at the end of the chain")
    if target.digest != entry.digest:
        raise InvalidManifest(f"{named}, whose digest is {target.digest}, not "
                              f"{shown(entry.digest)}")
    if entry.size == 0:
        entry.size = target.size
    elif entry.size != target.size:
        raise InvalidManifest(f"{named} with {entry.size} bytes, but that file has "
                              f"{target.size}")
