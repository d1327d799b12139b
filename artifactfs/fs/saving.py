"""save, status and discard of staged alias folders: what the control channel asks for.

Concurrency rules: one ``trio.Lock`` per folder serializes saves and discards of it, and a
save re-checks after taking the lock that the staging it is about to commit still exists,
so two saves of one folder can never commit the same staging twice. Nothing touches the
staging until the new version is committed, but for one journal line naming the commit's
key; a save that fails at any earlier point (registry gone, upload refused, conflict) leaves
the staging's contents exactly as they were, ready to run again. Between the commit's
answer and the staging's end there is no await, so no write can slip in between the check
that nothing changed meanwhile and the staging's end (the design notes: "A save is applied
once").
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import trio

from artifactfs.core.errors import ArtifactFSError, Conflict, NotFound
from artifactfs.core.manifest import Manifest
from artifactfs.core.names import LATEST, validate_alias
from artifactfs.core.records import VersionInfo
from artifactfs.fs.reader import first_error
from artifactfs.fs.staging import FolderKey, StagedFolder
from artifactfs.fs.tree import ROOT_INODE, Node, Tree

__all__ = ["FolderCommands", "staging_commit_key"]

log = logging.getLogger(__name__)

Blocking = Callable[..., Awaitable[Any]]
Progress = Callable[[dict[str, Any]], None]
_UPLOADS_AT_ONCE = 8


def _no_progress(event: dict[str, Any]) -> None:
    """Nobody is listening."""


def _same(a: Manifest, b: Manifest) -> bool:
    """Whether two manifests hold the same entries, extras included (the W&B digest leaves
    out modes and links)."""
    return a.to_json() == b.to_json()


def staging_commit_key(session: str | None, manifest: Manifest) -> str | None:
    """The commit's idempotency key: the staging's session and what is committed. The same
    staging saved again unchanged sends the same key (and finds its version); with more
    written since, another (and makes the next version). None for a journal from before
    sessions."""
    if session is None:
        return None
    return hashlib.sha256(f"{session}\n{manifest.to_json()}".encode()).hexdigest()[:48]


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
        if self.tree.read_only:
            raise ArtifactFSError(
                "this mount is read-only (--read-only): nothing is staged in it; mount "
                "without --read-only to write into NAME:ALIAS folders"
            )
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
            made = await self._earlier_commit(staged)  # by a save that did not finish
            current = await self._current(key)
            base = made or staged.base
            self._check_conflict(key, base, current, force)
            target = (
                await self._blocking(self.tree.registry.manifest, current.id)
                if current else Manifest()
            )
            generation = staged.generation
            manifest, uploads = await self._unbounded(staged.build_manifest, target)
            if (made is not None and current is not None and current.id == made.id
                    and await self._unbounded(_same, manifest, target)):
                return await self._already_saved(folder, made, target)
            # (a large manifest's JSON takes a while: not on the event loop)
            commit_key = await self._unbounded(staging_commit_key, staged.session, manifest)
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
            if commit_key is not None:  # first in the journal, so a retry can look for it
                await self._local(staged.note_commit, commit_key)
            labels = sorted({key.alias, *aliases} - {LATEST})
            origin = current or base
            info: VersionInfo = await self._unbounded(
                lambda: registry.commit(
                    entity=self.tree.entity, project=key.project, name=key.name,
                    type_=key.type, manifest=manifest,
                    description=message if message is not None else (
                        origin.description if origin else None),
                    metadata=origin.metadata if origin else {},
                    aliases=labels, commit_key=commit_key,
                )
            )
            # no await from this check to the staging's end: a change made while the save
            # ran (a write, or a file still open for writing) keeps the whole staging, which
            # the next save then commits on top of this version (found by its key)
            changed = staged.generation != generation or bool(self._writers(folder))
            if not changed:
                await self._local(self.tree.saved(folder, info, manifest))
        log.info("saved %s as %s (%d blobs uploaded)%s%s", key, info.qualified_name, len(missing),
                 ", content it held already" if getattr(info, "unchanged", False) else "",
                 "; changes made meanwhile stay staged" if changed else "")
        return {"folder": str(key), "version": f"{key.project}/{key.name}:{info.version}",
                "id": info.id, "uploaded": len(missing), "uploaded_bytes": sent,
                "still_staged": changed, "unchanged": getattr(info, "unchanged", False)}

    async def _earlier_commit(self, staged: StagedFolder) -> VersionInfo | None:
        """The version a save of this staging committed before it could clear the staging
        (its daemon was killed, or it found the folder changed meanwhile), if any."""
        for commit_key in reversed(staged.commit_keys):
            made: VersionInfo | None = await self._blocking(
                self.tree.registry.version_by_commit_key, self.tree.entity, commit_key)
            if made is not None:
                return made
        return None

    async def _already_saved(self, folder: Node, made: VersionInfo,
                             manifest: Manifest) -> dict[str, Any]:
        """Finish a save whose commit reached the registry before its daemon died (or its
        answer was lost): the staging holds exactly the version ``made`` (its
        ``manifest``), nothing more; clear it and say so."""
        key = folder.folder_key
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

