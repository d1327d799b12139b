"""One interface to a registry; the embedded store and the HTTP client both implement it.

The interface is synchronous. The SDK calls it directly; the FUSE daemon calls it from
worker threads (``trio.to_thread.run_sync`` with a limiter), which keeps the event loop free
and lets one implementation serve both. httpx's sync client and SQLite are thread-safe
in the way it is used here (one pooled client; one SQLite connection per thread).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from artifactfs.core.chunks import ChunkIndex
from artifactfs.core.folders import FolderListing
from artifactfs.core.manifest import Manifest
from artifactfs.core.records import CollectionInfo, CommittedVersion, VersionInfo
from artifactfs.core.runs import RunInfo

__all__ = ["Registry"]


class Registry(ABC):
    """What the SDK, the CLI and the mount need from a registry.

    Errors: NotFound for absent things, InvalidName/InvalidManifest for bad input,
    Conflict for clashes, PermissionDenied, RegistryUnavailable when it cannot be reached.
    """

    description: str

    def key_entity(self) -> str | None:
        """The entity the credentials in use belong to, where the registry ties them to
        one (a server's API key); None where it does not (the embedded store)."""
        return None

    # listing
    @abstractmethod
    def list_projects(self, entity: str) -> list[str]:
        """The entity's project names, sorted; empty for an entity with none."""

    @abstractmethod
    def list_types(self, entity: str, project: str) -> list[str]:
        """The types the project's collections have, sorted (the mount's second level)."""

    @abstractmethod
    def list_collections(
        self, entity: str, project: str, type_: str | None = None
    ) -> list[CollectionInfo]:
        """The project's collections by name, with their type and version count; only
        those of ``type_`` when it is given."""

    @abstractmethod
    def list_versions(self, entity: str, project: str, name: str) -> list[VersionInfo]:
        """The collection's committed versions, oldest first, each with its aliases."""

    @abstractmethod
    def collection_type(self, entity: str, project: str, name: str) -> str | None:
        """The collection's type, or None where there is no such collection (a new name,
        which a commit may create)."""

    # versions
    @abstractmethod
    def resolve(self, entity: str, project: str, name: str, alias: str) -> VersionInfo:
        """The committed version ``alias`` (an alias or ``vN``) names now; NotFound saying
        which name is missing."""

    @abstractmethod
    def version(self, version_id: str) -> VersionInfo:
        """The version with this id, as it is now (aliases move); NotFound if none."""

    @abstractmethod
    def manifest(self, version_id: str) -> Manifest:
        """The whole manifest of a committed version (a version's files never change, so
        callers may keep it as long as they like)."""

    @abstractmethod
    def folder_listings(self, version_id: str, paths: Sequence[str]) -> list[FolderListing]:
        """The listings of folders ``paths`` (``""`` is the root) of a committed version,
        in the order asked, without the rest of its manifest (core/folders.py): a mount
        lists a version of a million files one folder at a time. Raises NotFound for a
        version that is not there and for a path that is not one of its folders,
        InvalidRequest for a path that cannot name a folder."""

    def folder_listing(self, version_id: str, path: str) -> FolderListing:
        """One folder's listing (``folder_listings`` of one path)."""
        return self.folder_listings(version_id, [path])[0]

    @abstractmethod
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
        commit_key: str | None = None,
        tags: Sequence[str] = (),
    ) -> CommittedVersion:
        """Commit ``manifest`` as the next version. A ``commit_key`` (a random id made once
        per change) makes it idempotent: sent again, it returns the version it made.
        A manifest a committed version of the collection holds already makes no version:
        that one comes back, ``unchanged``, with the requested aliases moved to it and
        the tags it lacks added (W&B's tags: free labels, checked as ``check_tags`` does)."""

    @abstractmethod
    def version_by_commit_key(self, entity: str, commit_key: str) -> VersionInfo | None:
        """The version a commit with this key made (None if none was made, or deleted)."""

    @abstractmethod
    def add_alias(self, version_id: str, alias: str) -> VersionInfo:
        """Point ``alias`` at the version, moving it off the collection's other versions;
        InvalidName for ``latest`` (always the newest) or a malformed alias."""

    @abstractmethod
    def remove_alias(self, version_id: str, alias: str) -> VersionInfo:
        """Take ``alias`` off the version (a no-op where it is not there); InvalidName for
        ``latest``."""

    @abstractmethod
    def update_version(
        self,
        version_id: str,
        *,
        description: str | None = None,
        metadata: dict[str, Any] | None = None,
        tags: Sequence[str] | None = None,
    ) -> VersionInfo:
        """Change a committed version's description, metadata or tags (None leaves a field
        as it is; ``tags`` replaces them all, in order); its files never change.
        InvalidRequest past their bounds or for a tag W&B would refuse."""

    @abstractmethod
    def delete_version(self, version_id: str, *, delete_aliases: bool = False) -> None:
        """Delete a version (its number is never reused; gc reclaims its blobs). Conflict
        while it holds aliases, ``latest`` included, unless ``delete_aliases``."""

    # blobs
    @abstractmethod
    def missing_blobs(self, digests: Iterable[str]) -> set[str]:
        """Those of ``digests`` the registry cannot serve to this caller: what a push must
        upload before its commit."""

    @abstractmethod
    def upload_blob(
        self, path: Path, digest: str, on_bytes: Callable[[int], None] | None = None
    ) -> None:
        """Store a local file as blob ``digest``; DigestMismatch (nothing stored) if it differs."""

    @abstractmethod
    def read_blob(self, digest: str, start: int, end: int) -> bytes | bytearray:
        """Bytes ``[start, end)`` of a blob, unverified: callers check them."""

    @abstractmethod
    def read_blobs(self, digests: Sequence[str]) -> list[bytes | memoryview | None]:
        """Whole blobs, unverified, in the order asked; None for one the registry lacks.
        For small blobs: the HTTP transport asks for all of them in one request."""

    @abstractmethod
    def chunk_index(self, digest: str) -> ChunkIndex | None:
        """The per-chunk digests of a blob larger than one chunk, which let a reader check
        each chunk on its own; None for a blob of one chunk (checked whole by its MD5)."""

    # runs and lineage (core/runs.py; the store's side: store/runs.py)
    @abstractmethod
    def create_run(self, entity: str, project: str, *, name: str | None = None,
                   job_type: str | None = None, config: dict[str, Any] | None = None,
                   run_id: str | None = None) -> RunInfo:
        """A new run of ``entity``'s ``project``, running; ``run_id`` None: a fresh id.
        Sending the same creation again returns the run it made (store/runs.py)."""

    @abstractmethod
    def run(self, entity: str, run_id: str) -> RunInfo:
        """The run; NotFound for one that is not the entity's."""

    @abstractmethod
    def finish_run(self, entity: str, run_id: str, state: str) -> RunInfo:
        """End a running run as ``finished`` or ``failed`` (an ended one stays as it is)."""

    @abstractmethod
    def link_run(self, entity: str, run_id: str, version_id: str, kind: str) -> None:
        """Record that the run ``logged`` or ``used`` a version (once; again is a no-op).
        A read-only key may record a use, of a version its entity can read: a training
        job's mount reads with one."""

    @abstractmethod
    def run_versions(self, entity: str, run_id: str, kind: str) -> list[VersionInfo]:
        """The committed versions the run logged or used."""

    @abstractmethod
    def version_runs(self, entity: str, version_id: str, kind: str) -> list[RunInfo]:
        """The runs that logged or used the version, in the order they did (the first to
        log it is its producer)."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""
