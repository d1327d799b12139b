"""save, status and discard of staged alias folders: what the control channel asks for.

Concurrency rules: one ``trio.Lock`` per folder serializes saves and discards of it, and a
save re-checks after taking the lock that the staging it is about to commit still exists,
so two saves of one folder can never commit the same staging twice. Nothing touches the
staging until the new version is committed; a save that fails at any earlier point (registry
gone, upload refused, conflict) leaves the staging exactly as it was, ready to run again.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import trio

from artifactfs.core.errors import ArtifactFSError, Conflict, NotFound
from artifactfs.core.manifest import Manifest
from artifactfs.core.names import LATEST, validate_alias
from artifactfs.core.records import VersionInfo
from artifactfs.fs.reader import first_error
from artifactfs.fs.staging import FolderKey
from artifactfs.fs.tree import ROOT_INODE, Node, Tree

__all__ = ["FolderCommands"]

log = logging.getLogger(__name__)

Blocking = Callable[..., Awaitable[Any]]
Progress = Callable[[dict[str, Any]], None]
_UPLOADS_AT_ONCE = 8


def _no_progress(event: dict[str, Any]) -> None:
    """Nobody is listening."""


class FolderCommands:
    def __init__(
        self, tree: Tree, blocking: Blocking, unbounded: Blocking, local: Blocking,
        writers: Callable[[Node], list[str]] = lambda folder: [],
    ) -> None:
        self.tree = tree
        self._writers = writers
        self._blocking = blocking  # registry calls
        self._unbounded = unbounded
        # the staging folder's files: a save that committed must not be reported as failed
        # because removing its staged copy waited on threads held by a hanging registry
        self._local = local
        self._locks: dict[FolderKey, trio.Lock] = {}
        self.uploaded_bytes = 0

    async def folder(self, rel: str) -> Node:
        """The alias folder ``PROJECT/TYPE/NAME:ALIAS[/...]`` names."""
        parts = [p for p in rel.split("/") if p]
        if len(parts) < 3:
            raise ArtifactFSError(
                f"{rel or '/'} is above the artifact folders; give PROJECT/TYPE/NAME:ALIAS "
                "or a path inside one"
            )
        node = self.tree.node(ROOT_INODE)
        for part in parts[:3]:
            try:
                node = await self.tree.lookup(node, part)
            except NotFound:
                raise NotFound(f"{'/'.join(parts[:3])} does not exist in this mount") from None
        if not node.is_alias_folder:
            raise ArtifactFSError(
                f"{'/'.join(parts[:3])} is a version folder and never changes; "
                "write into NAME:ALIAS instead"
            )
        return node

    def _lock(self, key: FolderKey) -> trio.Lock:
        return self._locks.setdefault(key, trio.Lock())

    async def status(self, rel: str) -> dict[str, Any]:
        folder = await self.folder(rel)
        base = folder.staged.base if folder.staged else folder.version
        changes = folder.staged.changes().as_dict() if folder.staged else {
            "added": [], "modified": [], "deleted": []
        }
        return {"folder": str(folder.folder_key), "base": base.version if base else None,
                **changes}

    async def discard(self, rel: str) -> dict[str, Any]:
        folder = await self.folder(rel)
        async with self._lock(folder.folder_key):
            if folder.staged is None:
                return {"folder": str(folder.folder_key), "discarded": 0}
            changes = folder.staged.changes()
            await self._end(folder)
        count = len(changes.added) + len(changes.modified) + len(changes.deleted)
        log.info("discarded %d staged changes of %s", count, folder.folder_key)
        return {"folder": str(folder.folder_key), "discarded": count}

    async def save(self, rel: str, aliases: Sequence[str], message: str | None,
                   force: bool, progress: Progress = _no_progress) -> dict[str, Any]:
        """Commit the folder's staging as a new version; see the module's concurrency rules.

        ``progress`` hears ``{"phase": "upload", "files", "files_done", "bytes",
        "bytes_done"}`` as blobs go up, then ``{"phase": "commit"}``; it must not block.
        """
        for alias in aliases:
            if alias != LATEST:
                validate_alias(alias)
        folder = await self.folder(rel)
        key = folder.folder_key
        async with self._lock(key):
            staged = folder.staged
            if staged is None or not staged.changes():
                raise ArtifactFSError(f"nothing is staged in {key}; write files there first")
            busy = self._writers(folder)
            if busy:
                shown = ", ".join(busy[:5]) + (" ..." if len(busy) > 5 else "")
                raise ArtifactFSError(
                    f"{len(busy)} file(s) in {key} are still open for writing ({shown}); "
                    "close them, then save (their next writes would not be in the version)"
                )
            registry = self.tree.registry
            if staged.session is not None:
                made: VersionInfo | None = await self._blocking(
                    registry.version_by_commit_key, self.tree.entity, staged.session)
                if made is not None:
                    return await self._already_saved(folder, made)
            current = await self._current(key)
            base = staged.base
            self._check_conflict(key, base, current, force)
            target = (
                await self._blocking(self.tree.registry.manifest, current.id)
                if current else Manifest()
            )
            manifest, uploads = await self._unbounded(staged.build_manifest, target)
            missing = await self._blocking(registry.missing_blobs, list(uploads))
            sizes: dict[str, int] = await self._local(
                lambda: {d: uploads[d].stat().st_size for d in missing})
            total = sum(sizes.values())
            log.info("saving %s: %d of %d blobs (%d bytes) to upload", key, len(missing),
                     len(uploads), total)
            sent = done = 0
            parallel = trio.CapacityLimiter(_UPLOADS_AT_ONCE)

            def report() -> None:
                progress({"phase": "upload", "files": len(missing), "files_done": done,
                          "bytes": total, "bytes_done": sent})

            async def upload(digest: str) -> None:
                nonlocal sent, done
                async with parallel:
                    await self._unbounded(registry.upload_blob, uploads[digest], digest)
                sent += sizes[digest]
                done += 1
                report()

            report()

            try:
                async with trio.open_nursery() as nursery:  # a failure cancels the rest
                    for digest in sorted(missing):
                        nursery.start_soon(upload, digest)
            except BaseExceptionGroup as group:
                raise first_error(group) from None
            self.uploaded_bytes += sent
            progress({"phase": "commit"})
            labels = sorted({key.alias, *aliases} - {LATEST})
            origin = current or base
            info: VersionInfo = await self._unbounded(
                lambda: registry.commit(
                    entity=self.tree.entity, project=key.project, name=key.name,
                    type_=key.type, manifest=manifest,
                    description=message if message is not None else (
                        origin.description if origin else None),
                    metadata=origin.metadata if origin else {},
                    aliases=labels, commit_key=staged.session,
                )
            )
            await self._local(self.tree.saved(folder, info, manifest))
        log.info("saved %s as %s (%d blobs uploaded)", key, info.qualified_name, len(missing))
        return {"folder": str(key), "version": f"{key.project}/{key.name}:{info.version}",
                "id": info.id, "uploaded": len(missing), "uploaded_bytes": sent}

    async def _already_saved(self, folder: Node, made: VersionInfo) -> dict[str, Any]:
        """Finish a save whose commit reached the registry before its daemon died (or its
        answer was lost): the staging is the version ``made``; clear it and say so."""
        key = folder.folder_key
        manifest = await self._blocking(self.tree.registry.manifest, made.id)
        await self._local(self.tree.saved(folder, made, manifest))
        log.info("%s had been saved as %s already (the save was retried); staging cleared",
                 key, made.qualified_name)
        return {"folder": str(key), "version": f"{key.project}/{key.name}:{made.version}",
                "id": made.id, "uploaded": 0, "uploaded_bytes": 0, "already_saved": True}

    async def _current(self, key: FolderKey) -> VersionInfo | None:
        try:
            info: VersionInfo = await self._blocking(
                self.tree.registry.resolve, self.tree.entity, key.project, key.name, key.alias
            )
        except NotFound:
            return None
        return info

    @staticmethod
    def _check_conflict(key: FolderKey, base: VersionInfo | None, current: VersionInfo | None,
                        force: bool) -> None:
        if force or (base is None and current is None):
            return
        if base is not None and current is not None and base.id == current.id:
            return
        was = base.version if base else "nothing (a new collection)"
        now = current.version if current else "nothing"
        raise Conflict(
            f"{key}: alias {key.alias!r} moved from {was} to {now} since staging began; "
            f"nothing was saved. Use --force to commit these changes on top of {now}, or "
            "discard them"
        )

    async def _end(self, folder: Node) -> None:
        """Drop the folder's staging; the kernel looks the alias up again (end_staging's
        cleanup drops its cached name before this returns)."""
        await self._local(self.tree.end_staging(folder))

