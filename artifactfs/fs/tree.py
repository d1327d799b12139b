"""The folder tree a mount shows, with no FUSE in it: what FUSE asks of it.

::

    /                           projects of the mount's entity
    PROJECT/                    types used in the project
    PROJECT/TYPE/               NAME:vN for each committed version, NAME:ALIAS for each alias
    PROJECT/TYPE/NAME:LABEL/    the manifest's paths as folders and files

Three parts, each with its own job: ``InodeTable`` (fs/inodes.py) gives every node its
stable inode number; ``RegistryAnswers`` (fs/answers.py) remembers what the registry said,
for when it is slow or down; ``Tree`` here puts them together for lookups and listings, and
follows a folder's staging from its beginning to its save or discard, telling both parts
what changed.

All registry calls go through ``blocking`` (a worker thread); the tree's own state is only
touched on the event loop, so it needs no lock.
"""

from __future__ import annotations

import bisect
import errno
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from cachetools import LRUCache

from artifactfs.core.errors import InvalidName, NotFound
from artifactfs.core.folders import FolderListing
from artifactfs.core.manifest import Manifest, ManifestEntry
from artifactfs.core.names import validate_alias, validate_name
from artifactfs.core.posix import SYMLINK_EXTRA_KEY
from artifactfs.core.records import VersionInfo
from artifactfs.fs.answers import RegistryAnswers
from artifactfs.fs.inodes import (
    ROOT_INODE,
    FolderNodeKey,
    InodeTable,
    Kind,
    Node,
    ProjectKey,
    TypeKey,
)
from artifactfs.fs.staging import FolderKey, StagedFile, StagedFolder, Staging
from artifactfs.registry import Registry

__all__ = ["ROOT_INODE", "Kind", "Node", "Tree"]

log = logging.getLogger(__name__)

Blocking = Callable[..., Awaitable[Any]]


def _never(_: str) -> bool:
    return False


class Tree:
    def __init__(
        self, registry: Registry, entity: str, blocking: Blocking, listing_ttl: float,
        staging: Staging, local: Blocking, *, read_only: bool = False,
    ) -> None:
        self.registry = registry
        self.entity = entity
        self.staging = staging
        # a read-only mount shows the registry's versions only: changes staged by an earlier
        # writable mount stay on disk, untouched, for the next one
        self.read_only = read_only
        self.inodes = InodeTable()
        self.answers = RegistryAnswers(registry, entity, blocking, listing_ttl)
        self._local = local  # the staging folder's files
        # staged folders a previous daemon left, loaded when first looked up
        self._left: dict[FolderKey, tuple[VersionInfo | None, Path]] = {
            key: (base, path) for key, base, path in staging.on_disk()
        } if not read_only else {}
        self._epochs: dict[FolderKey, int] = {}  # bumped when a folder's staging ends
        # whole manifests of alias folders listed in a writable mount, by version id: the
        # base a first write stages on, fetched while the registry answers (few: a manifest
        # of a million entries is half a gigabyte)
        self._bases: LRUCache[str, Manifest] = LRUCache(maxsize=4)
        # drops the kernel's cached entry NAME of folder INODE; blocking, so called only from
        # worker threads (set by the FUSE layer; None without a kernel, as in unit tests)
        self.invalidate_entry: Callable[[int, str], None] | None = None

    # ---- nodes ---------------------------------------------------------------------------

    def node(self, inode: int) -> Node:
        """The node of ``inode``. Raises NotFound for a number never given."""
        return self.inodes.node(inode)

    @property
    def node_count(self) -> int:
        return len(self.inodes)

    @property
    def manifest_fetches(self) -> int:
        return self.answers.manifest_fetches

    @property
    def folder_fetches(self) -> int:
        return self.answers.folder_fetches

    @property
    def folder_requests(self) -> int:
        return self.answers.folder_requests

    def _project(self, name: str) -> Node:
        return self.inodes.node_for(
            ProjectKey(name), lambda i: Node(i, Kind.PROJECT, name, project=name)
        )

    def type_node(self, project: str, type_: str) -> Node:
        return self.inodes.node_for(
            TypeKey(project, type_),
            lambda i: Node(i, Kind.TYPE, type_, project=project, type=type_),
        )

    def _version(
        self, project: str, type_: str, collection: str, label: str, info: VersionInfo | None,
        staged: StagedFolder | None = None,
    ) -> Node:
        key = self._folder_node_key(FolderKey(project, type_, collection, label), info)
        node = self.inodes.node_for(
            key,
            lambda i: Node(
                i, Kind.VERSION, f"{collection}:{label}", project=project, type=type_,
                label=label, version=info,
            ),
        )
        if info is not None and node.staged is None:
            node.version = info  # aliases may have changed since the node was made
        if staged is not None:
            node.staged = staged
        return node

    def _folder_node_key(self, key: FolderKey, info: VersionInfo | None) -> FolderNodeKey:
        """What a NAME:LABEL folder node is keyed by: the version it shows, and how many
        times its staging ended (a discard must give it fresh inodes)."""
        return FolderNodeKey(key, info.id if info else None, self._epochs.get(key, 0))

    # ---- registry answers -----------------------------------------------------------------

    async def projects(self) -> list[str]:
        return await self.answers.projects()

    async def types(self, project: str) -> list[str]:
        return await self.answers.types(project)

    async def folder_listing(self, folder: Node, path: str) -> FolderListing:
        """Folder ``path`` of the version a NAME:LABEL folder shows (its staged changes
        aside), fetched when first needed and kept (LRU). When its parent is at hand and
        the fetch continues a sweep through the parent's sub-folders, the next ones come in
        the same request (see fs/answers.py). Raises NotFound for a path that is not one
        of the version's folders."""
        assert folder.version is not None
        version_id = folder.version.id
        siblings: list[str] = []
        if path and self.answers.folder_in_memory(version_id, path) is None:
            up, _, name = path.rpartition("/")
            parent = self.answers.folder_in_memory(version_id, up)
            if parent is not None:
                order = parent.folder_order
                index = bisect.bisect_left(order, name)
                if index < len(order) and order[index] == name:
                    count = self.answers.sweep.batch(version_id, up, index)
                    siblings = [parent.child_path(n) for n in order[index + 1 : index + count]]
        return await self.answers.folder(version_id, path, siblings)

    def _folder_in_memory(self, folder: Node, path: str) -> FolderListing | None:
        if folder.version is None:
            return None
        return self.answers.folder_in_memory(folder.version.id, path)

    async def version_entry(self, folder: Node, path: str) -> ManifestEntry | None:
        """The version's entry of file ``path`` (staged changes aside), None if it has none."""
        try:
            listing = await self.folder_listing(folder, path.rpartition("/")[0])
        except NotFound:
            return None
        return listing.files.get(path)

    async def entry(self, folder: Node, path: str) -> ManifestEntry | StagedFile | None:
        """What file ``path`` of a NAME:LABEL folder is now: its staged state if staging
        began, else the version's entry; None when it is no file there."""
        if folder.staged is not None:
            return folder.staged.files.get(path)
        return await self.version_entry(folder, path)

    # ---- what FUSE asks -------------------------------------------------------------------

    async def lookup(self, parent: Node, name: str) -> Node:
        """The child ``name`` of ``parent``; NotFound when there is none."""
        if parent.kind is Kind.ROOT:
            if name in await self.projects():
                return self._project(name)
        elif parent.kind is Kind.PROJECT:
            if name in await self.types(parent.project):
                return self.type_node(parent.project, name)
        elif parent.kind is Kind.TYPE:
            return await self._lookup_version(parent, name)
        elif parent.kind in (Kind.VERSION, Kind.DIR):
            folder = self.folder_of(parent)
            path = f"{parent.path}/{name}" if parent.path else name
            staged = folder.staged
            if staged is not None:
                if path in staged.files:
                    return self.in_folder(folder, path, is_file=True)
                if path in staged.dirs:
                    return self.in_folder(folder, path, is_file=False)
                raise NotFound(name)
            # a node made for this path of this version: a version never changes, so the
            # path is still there (the kernel asks again after it dropped its entries)
            known = self.inodes.entry_inode(folder.inode, path)
            if known is not None:
                return self.node(known)
            listing = await self.folder_listing(folder, parent.path)
            if path in listing.files:
                return self.in_folder(folder, path, is_file=True)
            if name in listing.folders:
                return self.in_folder(folder, path, is_file=False)
        raise NotFound(name)

    def file_position(self, folder: Node, path: str) -> tuple[str, int] | None:
        """The folder ``path`` is in and its index in that folder's listing order; None
        for staged folders, whose listing changes, and when the listing is not in memory
        (a hint for prefetching must not wait on the registry: the lookup that came before
        the open loaded it, unless many versions read since have pushed it out)."""
        if folder.staged is not None or folder.version is None:
            return None
        parent, _, name = path.rpartition("/")
        listing = self._folder_in_memory(folder, parent)
        if listing is None:
            return None
        return parent, bisect.bisect_left(listing.names, name)

    def files_after(
        self, folder: Node, parent: str, index: int, count: int
    ) -> list[ManifestEntry]:
        """Up to ``count`` files that follow position ``index`` of folder ``parent`` (after
        ``file_position``, which found the listing in memory)."""
        listing = self._folder_in_memory(folder, parent)
        if listing is None:
            return []
        prefix = f"{parent}/" if parent else ""
        files = listing.files
        out = []
        for sibling in listing.names[index + 1 : index + 1 + count]:
            entry = files.get(prefix + sibling)
            if entry is not None and SYMLINK_EXTRA_KEY not in entry.extra:  # links: no blob
                out.append(entry)
        return out

    def folder_of(self, node: Node) -> Node:
        """The NAME:LABEL folder a node lives in."""
        return node if node.kind is Kind.VERSION else self.node(node.folder)

    def in_folder(self, folder: Node, path: str, *, is_file: bool) -> Node:
        """The node of ``path`` in a folder, made if needed (inodes follow renames)."""
        entries = None
        parent, _, name = path.rpartition("/")
        if is_file and folder.staged is None:
            listing = self._folder_in_memory(folder, parent)
            entries = listing.files if listing else None
        return self.inodes.entry_nodes(
            folder, f"{parent}/" if parent else "", (name,), entries, lambda _: is_file
        )[0]

    def moved(self, folder: Node, src: str, dst: str) -> None:
        """Re-key the nodes of a renamed file or folder so their inodes follow them."""
        self.inodes.moved(folder.inode, src, dst)

    def forget_path(self, folder: Node, path: str) -> None:
        """A removed path: a later file of the same name gets a new inode."""
        self.inodes.forget_path(folder.inode, path)

    async def _lookup_version(self, parent: Node, name: str) -> Node:
        collection, sep, label = name.partition(":")
        if not sep:
            raise NotFound(name)
        try:
            validate_name(collection)
            validate_alias(label, allow_version=True)
        except InvalidName:
            raise NotFound(name) from None
        fkey = FolderKey(parent.project, parent.type, collection, label)
        staged = await self._staged(fkey)
        if staged is not None:
            return self._version(parent.project, parent.type, collection, label, staged.base,
                                 staged)
        info = await self.answers.resolve(parent.project, collection, label)
        if info.type != parent.type:
            raise NotFound(name)
        return self._version(parent.project, parent.type, collection, label, info)

    async def _staged(self, key: FolderKey) -> StagedFolder | None:
        """The staged folder for ``key``, loading one a previous daemon left."""
        found = self.staging.folders.get(key)
        if found is not None or key not in self._left:
            return found
        base, path = self._left[key]
        manifest = await self.answers.manifest(base.id) if base else Manifest()
        found = await self._local(StagedFolder.load, path, manifest)
        self.staging.folders[key] = found
        del self._left[key]
        log.info("recovered staged changes of %s", key)
        return found

    async def begin_staging(self, folder: Node) -> StagedFolder:
        """Make an alias folder writable: its current version becomes the staging base."""
        if folder.staged is not None:
            return folder.staged
        self._check_writable()
        key = folder.folder_key
        # the base's whole manifest: what a save builds the next version's on
        assert folder.version is not None
        manifest = await self._base_manifest(folder.version.id)
        staged = await self._local(
            StagedFolder.begin, self.staging.path_for(key), key, folder.version, manifest
        )
        self.staging.folders[key] = staged
        folder.staged = staged
        log.info("staging began for %s on %s", key,
                 folder.version.qualified_name if folder.version else "a new collection")
        return staged

    async def new_collection(self, parent: Node, name: str) -> Node:
        """``mkdir PROJECT/TYPE/NAME:latest``: stage a collection that does not exist yet."""
        self._check_writable()
        collection, _, label = name.partition(":")
        key = FolderKey(parent.project, parent.type, collection, label)
        staged = await self._local(
            StagedFolder.begin, self.staging.path_for(key), key, None, Manifest()
        )
        self.staging.folders[key] = staged
        return self._version(parent.project, parent.type, collection, label, None, staged)

    def writable(self, folder: Node) -> bool:
        """Whether writes into this NAME:LABEL folder are taken: an alias folder, on a mount
        that is not read-only."""
        return folder.is_alias_folder and not self.read_only

    def _check_writable(self) -> None:
        if self.read_only:
            raise OSError(errno.EROFS, "the mount is read-only (--read-only)")

    def saved(
        self, folder: Node, info: VersionInfo, manifest: Manifest
    ) -> Callable[[], None]:
        """After a save: the folder now shows ``info``, with the same inodes.

        The new version holds exactly the bytes the folder showed, so the folder and its
        files keep their inode numbers (and the kernel its cached pages), and a shell whose
        working directory is the folder sees the saved state.
        """
        key = folder.folder_key
        cleanup = self.staging.detach(key)
        self.inodes.rekey(self._folder_node_key(key, folder.version),
                          self._folder_node_key(key, info))
        folder.version = info
        folder.staged = None
        listings = self.answers.saved(key, info, manifest)
        vanished: list[Node] = []  # empty folders: a version has none
        for node in self.inodes.nodes():
            if node.folder == folder.inode:
                node.version = info
                if node.kind is Kind.FILE:
                    node.entry = manifest.get(node.path)
                elif (node.path not in listings
                      and self.inodes.entry_inode(folder.inode, node.path) == node.inode):
                    vanished.append(node)
        entries = [self._entry_of(folder, node) for node in vanished]
        for node in vanished:
            self.forget_path(folder, node.path)
        return self._then_invalidate(cleanup, entries)

    def _entry_of(self, folder: Node, node: Node) -> tuple[int, str]:
        """(parent inode, name): how the kernel knows a node of a NAME:LABEL folder."""
        parent_path, _, name = node.path.rpartition("/")
        parent = self.inodes.entry_inode(folder.inode, parent_path) if parent_path else None
        return (parent if parent is not None else folder.inode), name

    def _then_invalidate(self, cleanup: Callable[[], None],
                         entries: list[tuple[int, str]]) -> Callable[[], None]:
        """``cleanup``, then drop the kernel's cached ``entries``: both in a worker thread,
        before the command that caused them answers, so its caller never sees a name that is
        gone (the loop goes on serving meanwhile, which the kernel may need to let go)."""
        invalidate = self.invalidate_entry
        if invalidate is None or not entries:
            return cleanup

        def run() -> None:
            cleanup()
            for parent, name in entries:
                invalidate(parent, name)

        return run

    def end_staging(self, folder: Node) -> Callable[[], None]:
        """Forget a folder's staged state; its next lookup gets a fresh node.

        Returns the removal of the staged files, for a worker thread to run.
        """
        key = folder.folder_key
        cleanup = self.staging.detach(key)
        self._epochs[key] = self._epochs.get(key, 0) + 1
        self.answers.staging_ended(key)
        folder.staged = None
        return self._then_invalidate(
            cleanup, [(self.type_node(key.project, key.type).inode, folder.name)]
        )

    async def children(self, parent: Node) -> list[Node]:
        """Every child of a folder, in a stable order."""
        if parent.kind is Kind.ROOT:
            return [self._project(p) for p in await self.projects()]
        if parent.kind is Kind.PROJECT:
            return [self.type_node(parent.project, t) for t in await self.types(parent.project)]
        if parent.kind is Kind.TYPE:
            return await self._version_folders(parent)
        folder = self.folder_of(parent)
        prefix = f"{parent.path}/" if parent.path else ""
        staged = folder.staged
        if staged is not None:
            return self.inodes.entry_nodes(folder, prefix, sorted(staged.dirs.get(parent.path, ())),
                                           None, staged.files.__contains__)
        listing = await self.folder_listing(folder, parent.path)
        if not parent.path and self.writable(folder):
            # may be written: have the base a first write stages on, so that writing begins
            # even when the registry stops answering later (as local work should)
            assert folder.version is not None
            await self._base_manifest(folder.version.id)
        # already sorted, and the entries are at hand
        return self.inodes.entry_nodes(folder, prefix, listing.names, listing.files, _never)

    async def _base_manifest(self, version_id: str) -> Manifest:
        found = self._bases.get(version_id)
        if found is None:
            found = self._bases[version_id] = await self.answers.manifest(version_id)
        return found

    async def _version_folders(self, parent: Node) -> list[Node]:
        nodes: dict[str, Node] = {}
        for info in await self.answers.versions(parent.project, parent.type):
            for label in (info.version, *info.aliases):
                fkey = FolderKey(parent.project, parent.type, info.name, label)
                if fkey in self.staging.folders or fkey in self._left:
                    node = await self._lookup_version(parent, f"{info.name}:{label}")
                else:
                    node = self._version(parent.project, parent.type, info.name, label, info)
                nodes[node.name] = node
        for key in [*self.staging.folders, *self._left]:
            if (key.project, key.type) == (parent.project, parent.type):
                node = await self._lookup_version(parent, f"{key.name}:{key.alias}")
                nodes[node.name] = node
        return [nodes[n] for n in sorted(nodes)]
