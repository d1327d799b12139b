"""The registry interface over an embedded store folder (no server)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from artifactfs.core.chunks import ChunkIndex
from artifactfs.core.folders import FolderListing, check_folder_path, parse_stored
from artifactfs.core.manifest import Manifest
from artifactfs.core.records import CollectionInfo, CommittedVersion, VersionInfo
from artifactfs.core.runs import RunInfo
from artifactfs.registry.base import Registry

if TYPE_CHECKING:  # the caller opens the store: a client of a server never loads it
    from artifactfs.store import Store

__all__ = ["LocalRegistry"]


class LocalRegistry(Registry):
    def __init__(self, store: Store) -> None:
        self.store = store
        self.description = f"embedded store {store.location}"

    def list_projects(self, entity: str) -> list[str]:
        return self.store.db.list_projects(entity)

    def list_types(self, entity: str, project: str) -> list[str]:
        return self.store.db.list_types(entity, project)

    def list_collections(
        self, entity: str, project: str, type_: str | None = None
    ) -> list[CollectionInfo]:
        return self.store.db.list_collections(entity, project, type_)

    def list_versions(self, entity: str, project: str, name: str) -> list[VersionInfo]:
        return self.store.db.list_versions(entity, project, name)

    def collection_type(self, entity: str, project: str, name: str) -> str | None:
        return self.store.db.collection_type(entity, project, name)

    def resolve(self, entity: str, project: str, name: str, alias: str) -> VersionInfo:
        return self.store.db.resolve(entity, project, name, alias)

    def version(self, version_id: str) -> VersionInfo:
        return self.store.db.version_by_id(version_id)

    def manifest(self, version_id: str) -> Manifest:
        return Manifest.from_json(self.store.db.manifest_json(version_id))

    def folder_listings(self, version_id: str, paths: Sequence[str]) -> list[FolderListing]:
        wanted = [check_folder_path(p) for p in paths]
        texts = self.store.db.folder_texts(version_id, wanted)
        return parse_stored(texts, wanted)

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
        return self.store.commit(
            entity=entity, project=project, name=name, type_=type_, manifest=manifest,
            description=description, metadata=metadata, aliases=aliases,
            commit_key=commit_key, tags=tags,
        )

    def version_by_commit_key(self, entity: str, commit_key: str) -> VersionInfo | None:
        return self.store.db.version_by_commit_key(entity, commit_key)

    def add_alias(self, version_id: str, alias: str) -> VersionInfo:
        return self.store.db.add_alias(version_id, alias)

    def remove_alias(self, version_id: str, alias: str) -> VersionInfo:
        return self.store.db.remove_alias(version_id, alias)

    def update_version(
        self,
        version_id: str,
        *,
        description: str | None = None,
        metadata: dict[str, Any] | None = None,
        tags: Sequence[str] | None = None,
    ) -> VersionInfo:
        return self.store.db.update_version(
            version_id, description=description, metadata=metadata, tags=tags
        )

    def delete_version(self, version_id: str, *, delete_aliases: bool = False) -> None:
        self.store.db.delete_version(version_id, delete_aliases=delete_aliases)

    # Blobs are reached as the store folder's owner (entity None in store.blobs.BlobAccess):
    # this process opens the files itself, so limiting it to one entity's blobs would protect
    # nothing, and would keep it from reading the versions of every entity the folder holds.
    # Its commits still record their entity's access, for a server later given the folder.

    def missing_blobs(self, digests: Iterable[str]) -> set[str]:
        return self.store.access.missing(None, digests)

    def upload_blob(
        self, path: Path, digest: str, on_bytes: Callable[[int], None] | None = None
    ) -> None:
        self.store.access.put_file(None, path, digest, on_bytes=on_bytes)

    def read_blob(self, digest: str, start: int, end: int) -> bytes:
        return self.store.access.read(None, digest, start, end)

    def read_blobs(self, digests: Sequence[str]) -> list[bytes | memoryview | None]:
        return list(self.store.access.read_many(None, digests))

    def chunk_index(self, digest: str) -> ChunkIndex | None:
        return self.store.access.chunk_index(None, digest)

    # runs: the store's own entity checks (store/runs.py); an embedded store has no keys

    def create_run(self, entity: str, project: str, *, name: str | None = None,
                   job_type: str | None = None, config: dict[str, Any] | None = None,
                   run_id: str | None = None) -> RunInfo:
        return self.store.runs.create(entity, project, name=name, job_type=job_type,
                                      config=config, run_id=run_id)

    def run(self, entity: str, run_id: str) -> RunInfo:
        return self.store.runs.get(entity, run_id)

    def finish_run(self, entity: str, run_id: str, state: str) -> RunInfo:
        return self.store.runs.finish(entity, run_id, state)

    def link_run(self, entity: str, run_id: str, version_id: str, kind: str) -> None:
        self.store.runs.link(entity, run_id, version_id, kind)

    def run_versions(self, entity: str, run_id: str, kind: str) -> list[VersionInfo]:
        return self.store.runs.versions_of(entity, run_id, kind)

    def version_runs(self, entity: str, version_id: str, kind: str) -> list[RunInfo]:
        return self.store.runs.runs_of(entity, version_id, kind)
