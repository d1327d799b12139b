"""A registry's store: its metadata database and its blob folder.

The embedded form is one folder holding ``registry.sqlite3`` and the blob folders
(``Store(DIR)``); a shared one names its database and blob folder by URL
(``Store(db="postgresql://...", blobs="file:///srv/blobs")``, see ``store.database``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from artifactfs.core.digests import blob_key
from artifactfs.core.errors import InvalidManifest, InvalidName
from artifactfs.core.folders import folder_rows
from artifactfs.core.limits import check_description, check_metadata, check_tags
from artifactfs.core.manifest import Manifest, ManifestEntry, validate_for_commit
from artifactfs.core.names import (
    validate_alias,
    validate_commit_key,
    validate_name,
    validate_type,
)
from artifactfs.core.posix import SYMLINK_EXTRA_KEY, check_symlink_entry
from artifactfs.core.records import CommittedVersion
from artifactfs.core.references import check_no_credentials
from artifactfs.store.artifact_refs import check_artifact_refs
from artifactfs.store.blobs import BlobAccess, BlobDir
from artifactfs.store.blobstore import BlobStore
from artifactfs.store.database import blobs_folder, parse_db_url, shown_url, sqlite_url
from artifactfs.store.metadata import MetadataDB
from artifactfs.store.runs import RunRecords
from artifactfs.store.sweeplock import sweep_lock

__all__ = ["Store"]


class Store:
    """Metadata and blobs of one registry; safe to share between processes.

    ``Store(DIR)`` is the embedded store folder; ``Store(db=URL, blobs=URL)`` names the two
    parts (``DIR`` means ``db="sqlite:///DIR/registry.sqlite3", blobs="file:///DIR"``);
    ``blobs`` is ``file:///PATH`` or ``s3://BUCKET/PREFIX`` (docs/storage.md), or a
    ``BlobStore`` itself (beside a folder's database, too). ``upgrade``: see MetadataDB
    (default: SQLite upgrades at open, PostgreSQL only by ``artifactfs db upgrade``).
    Raises InvalidName for a bad folder or URL, SchemaMismatch and RegistryUnavailable as
    MetadataDB does.
    """

    def __init__(self, root: str | Path | None = None, *, db: str | None = None,
                 blobs: str | BlobStore | None = None, upgrade: bool | None = None) -> None:
        if root is not None and (db is not None or isinstance(blobs, str)):
            raise InvalidName("a store is either a folder (--store) or a database and a blob "
                              "store (--db and --blobs), not both")
        folder: Path | None = None
        store_blobs = blobs if not isinstance(blobs, str) else None
        if root is not None:
            folder = Path(root).expanduser()
            db_url = sqlite_url(folder / "registry.sqlite3")
        elif db is None or blobs is None:
            raise InvalidName("a store named by URL needs both --db and --blobs "
                              "(or ARTIFACTFS_DB and ARTIFACTFS_BLOBS)")
        else:
            db_url = parse_db_url(db)
            if isinstance(blobs, str):
                if urlsplit(blobs.strip()).scheme == "s3":
                    from artifactfs.store.s3 import S3BlobStore  # boto3 only when asked for

                    store_blobs = S3BlobStore.from_url(blobs)
                else:
                    folder = blobs_folder(blobs).expanduser()
        self.db_url = db_url
        # the folder of the blobs (and, for a store folder, of its database), if any
        self.root = folder
        if folder is not None:
            try:
                folder.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise InvalidName(f"cannot use {folder} as a store folder: {exc.strerror}"
                                  ) from None
        if store_blobs is None:
            assert folder is not None
            blob_dir = BlobDir(folder)
            blob_dir.remove_tmp_leftovers()  # what writers that crashed a day ago left behind
            store_blobs = blob_dir
        self.blobs: BlobStore = store_blobs
        self.db = MetadataDB(db_url, upgrade=upgrade)
        self.access = BlobAccess(self.blobs, self.db)  # the blob folder as one entity sees it
        self.runs = RunRecords(self.db)  # runs and lineage (store/runs.py)
        # held by a commit from its blob check to its version's insert (store/sweeplock.py)
        self.sweep_lock = sweep_lock(self.db.engine)

    @property
    def blobs_in_folder(self) -> bool:
        """Whether blob bytes are files in a folder (which a static server can serve too)."""
        return isinstance(self.blobs, BlobDir)

    @property
    def location(self) -> str:
        """What this store is, for messages: its folder, or its database and blob store
        (a password in the URL masked)."""
        if (self.root is not None and self.blobs_in_folder
                and self.db_url == sqlite_url(self.root / "registry.sqlite3")):
            return str(self.root)
        return f"{shown_url(self.db_url)}, blobs in {self.blobs.description}"

    def commit(
        self,
        *,
        entity: str,
        project: str,
        name: str,
        type_: str,
        manifest: Manifest,
        description: str | None = None,
        metadata: dict[str, Any] | None = None,
        aliases: Sequence[str] = (),
        caller: str | None = None,
        commit_key: str | None = None,
        tags: Sequence[str] = (),
    ) -> CommittedVersion:
        """Make ``manifest`` the next version of ``entity/project/name``.

        Every stored (non-reference) entry's blob must already be here, and reachable by
        ``caller`` (the entity of a server's API key; None for the store folder's owner, who
        reaches every blob): a blob it may not reach counts as not uploaded, so a digest alone
        never lets one entity take another's file into its versions. The version becomes
        visible in one transaction, after its bytes are durable, and ``entity`` reaches its
        blobs from then on. Raises InvalidManifest naming the first missing blob, InvalidName
        on a bad name, Conflict on a type clash.

        A ``commit_key`` makes the commit idempotent: sent again (a retry after a crash or a
        lost answer), it returns the version the first one made (see MetadataDB).

        Content a committed version of the collection holds already (the same manifest)
        makes no new version: that one is returned (``unchanged``), the requested aliases
        moved to it, as W&B does; ``latest`` stays on the newest version. ``tags`` (W&B's
        free labels) are the new version's; an unchanged one gains those it lacks.
        """
        validate_name(entity, "entity")
        validate_name(project, "project")
        validate_name(name, "artifact name")
        validate_type(type_)
        for alias in aliases:
            validate_alias(alias)
        if commit_key is not None:
            validate_commit_key(commit_key)
        tags = check_tags(tags)
        # what is stored must be readable back and printable (InvalidManifest, InvalidRequest)
        check_description(description)
        check_metadata(metadata or {})
        validate_for_commit(manifest)
        check_no_credentials(manifest)
        # wandb-artifact:// entries name versions the caller reads (store/artifact_refs.py)
        check_artifact_refs(self.db, manifest, caller)
        links = [e for e in manifest if SYMLINK_EXTRA_KEY in e.extra]
        for link in links:  # a symlink has no blob (core/posix.py)
            check_symlink_entry(link)
        stored_entries = [e for e in manifest if e.ref is None and SYMLINK_EXTRA_KEY not in e.extra]
        # each distinct blob is checked once: a version of a million entries over a few
        # thousand blobs (ImageNet's shape, many copies of a file) took a stat per entry
        # (validate_for_commit proved each one's stored digest a base64 MD5: an XXH128
        # entry's is its extra.md5)
        digests = {_stored(e) for e in stored_entries}
        # gc removes no blob while a commit is between its check of the blobs and its
        # version's insert: without this, one could land naming bytes just removed
        with self.sweep_lock.shared():
            return self._commit_checked(
                entity=entity, project=project, name=name, type_=type_, manifest=manifest,
                description=description, metadata=metadata, aliases=aliases, caller=caller,
                commit_key=commit_key, stored_entries=stored_entries, digests=digests,
                tags=tags)

    def _commit_checked(
        self, *, entity: str, project: str, name: str, type_: str, manifest: Manifest,
        description: str | None, metadata: dict[str, Any] | None, aliases: Sequence[str],
        caller: str | None, commit_key: str | None, stored_entries: list[ManifestEntry],
        digests: set[str], tags: Sequence[str],
    ) -> CommittedVersion:
        """``commit`` once the manifest is checked: its blobs are there, then the version."""
        reachable = self.access.readable(caller, digests)
        # one call for all: a bucket answers each with a round trip, so it asks in parallel
        sizes = {d: None for d in digests - reachable} | self.blobs.sizes(reachable)
        for entry in stored_entries:
            blob = _stored(entry)
            stored = sizes[blob]
            if stored is None:
                raise InvalidManifest(
                    f"entry {entry.path!r}: blob {blob} was not uploaded"
                )
            if stored != entry.size:
                raise InvalidManifest(
                    f"entry {entry.path!r} says {entry.size} bytes, but blob {blob} "
                    f"has {stored}"
                )
        # made before the transaction, which holds the store's write lock: seconds at a
        # million entries
        folders = list(folder_rows(manifest))
        return self.db.commit_version(
            entity=entity,
            project=project,
            name=name,
            type_=type_,
            manifest_json=manifest.to_json(),
            digest=manifest.digest(),
            size=manifest.size,
            file_count=len(manifest),
            description=description,
            metadata=metadata or {},
            aliases=aliases,
            blob_keys={blob_key(d) for d in digests},
            commit_key=commit_key,
            folders=folders,
            tags=tags,
        )


def _stored(entry: ManifestEntry) -> str:
    """The MD5 naming a stored entry's blob (validate_for_commit made sure it has one)."""
    digest = entry.stored_digest
    assert digest is not None, entry.path
    return digest
