"""The folder tree a mount shows, with no FUSE in it.

::

    /                           projects of the mount's entity
    PROJECT/                    types used in the project
    PROJECT/TYPE/               NAME:vN for each committed version, NAME:ALIAS for each alias
    PROJECT/TYPE/NAME:LABEL/    the manifest's paths as folders and files

Inodes are stable for the life of the mount: each node is keyed by what it shows, and a key
keeps its inode number. An alias folder's key includes the version it resolved to, so when
the alias moves, ``NAME:ALIAS`` is looked up to a *new* inode while files already open keep
reading the version they opened, and the kernel's cached pages can never mix two versions.

All registry calls go through ``blocking`` (a worker thread); the tree's own state is only
touched on the event loop, so it needs no lock.
"""

from __future__ import annotations

import bisect
import enum
import errno
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import trio
from cachetools import LRUCache, TTLCache

from artifactfs.core.collector import collector_paused
from artifactfs.core.errors import InvalidName, NotFound, RegistryFault, RegistryUnavailable
from artifactfs.core.manifest import Manifest, ManifestEntry
from artifactfs.core.names import parse_version_label, validate_alias, validate_name
from artifactfs.core.posix import SYMLINK_EXTRA_KEY
from artifactfs.core.records import VersionInfo
from artifactfs.fs.listing import VersionListing
from artifactfs.fs.staging import FolderKey, StagedFolder, Staging
from artifactfs.registry import Registry

__all__ = ["Kind", "Node", "Tree"]

log = logging.getLogger(__name__)

T = TypeVar("T")
Blocking = Callable[..., Awaitable[Any]]

ROOT_INODE = 1
_DOWN_SECONDS = 5.0


class Kind(enum.Enum):
    ROOT = "root"
    PROJECT = "project"
    TYPE = "type"
    VERSION = "version"  # NAME:vN or NAME:ALIAS
    DIR = "dir"
    FILE = "file"


@dataclass(slots=True)
class Node:
    inode: int
    kind: Kind
    name: str
    project: str = ""
    type: str = ""
    label: str = ""  # vN or the alias, for VERSION nodes
    version: VersionInfo | None = None
    folder: int = 0  # the VERSION node's inode, for DIR and FILE nodes
    path: str = ""  # path inside the version, for DIR and FILE nodes
    entry: ManifestEntry | None = None  # for FILE nodes of read-only folders
    staged: StagedFolder | None = None  # for VERSION nodes with staged writes

    @property
    def is_dir(self) -> bool:
        return self.kind is not Kind.FILE

    @property
    def is_alias_folder(self) -> bool:
        """``NAME:ALIAS`` (writable), as opposed to ``NAME:vN`` (never changes)."""
        return self.kind is Kind.VERSION and (
            self.version is None or self.label != self.version.version
        )

    @property
    def folder_key(self) -> FolderKey:
        return FolderKey(self.project, self.type, self.name.split(":", 1)[0], self.label)


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
        self._blocking = blocking  # registry calls
        self._local = local  # the staging folder's files
        # staged folders a previous daemon left, loaded when first looked up
        self._left: dict[FolderKey, tuple[VersionInfo | None, Path]] = {
            key: (base, path) for key, base, path in staging.on_disk()
        } if not read_only else {}
        self._epochs: dict[FolderKey, int] = {}  # bumped when a folder's staging ends
        self._nodes: dict[int, Node] = {ROOT_INODE: Node(ROOT_INODE, Kind.ROOT, "")}
        self._inodes: dict[tuple[Any, ...], int] = {}
        self._next_inode = ROOT_INODE + 1
        self._listings: LRUCache[str, VersionListing] = LRUCache(maxsize=64)
        self._fresh: TTLCache[tuple[Any, ...], Any] = TTLCache(maxsize=4096, ttl=listing_ttl)
        self._last: dict[tuple[Any, ...], Any] = {}  # last answers, for when it is down
        self._down_until = 0.0
        self.manifest_fetches = 0
        # drops the kernel's cached entry NAME of folder INODE; blocking, so called only from
        # worker threads (set by the FUSE layer; None without a kernel, as in unit tests)
        self.invalidate_entry: Callable[[int, str], None] | None = None

    # ---- nodes ---------------------------------------------------------------------------

    def node(self, inode: int) -> Node:
        try:
            return self._nodes[inode]
        except KeyError:
            raise NotFound(f"inode {inode} is unknown") from None

    @property
    def node_count(self) -> int:
        return len(self._nodes)

    def _node_for(self, key: tuple[Any, ...], make: Callable[[int], Node]) -> Node:
        inode = self._inodes.get(key)
        if inode is None:
            inode = self._next_inode
            self._next_inode += 1
            self._inodes[key] = inode
            self._nodes[inode] = make(inode)
        return self._nodes[inode]

    def _project(self, name: str) -> Node:
        return self._node_for(("p", name), lambda i: Node(i, Kind.PROJECT, name, project=name))

    def type_node(self, project: str, type_: str) -> Node:
        return self._type(project, type_)

    def _type(self, project: str, type_: str) -> Node:
        return self._node_for(
            ("t", project, type_),
            lambda i: Node(i, Kind.TYPE, type_, project=project, type=type_),
        )

    def _version(
        self, project: str, type_: str, collection: str, label: str, info: VersionInfo | None,
        staged: StagedFolder | None = None,
    ) -> Node:
        key = self._folder_node_key(FolderKey(project, type_, collection, label), info)
        node = self._node_for(
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

    def _folder_node_key(self, key: FolderKey, info: VersionInfo | None) -> tuple[Any, ...]:
        """What a NAME:LABEL folder node is keyed by: the version it shows, and how many
        times its staging ended (a discard must give it fresh inodes)."""
        epoch = self._epochs.get(key, 0)
        return ("v", key.project, key.type, key.name, key.alias, info.id if info else None,
                epoch)

    def _entry_nodes(
        self, folder: Node, prefix: str, names: Iterable[str],
        entries: Mapping[str, ManifestEntry | None] | None, is_file: Callable[[str], bool],
    ) -> list[Node]:
        """The nodes of ``names`` in the folder ``prefix`` of a NAME:LABEL folder, made if
        needed. ``entries`` gives a file's manifest entry (kept on its node); a path without
        one is a file when ``is_file`` says so.

        A listing of 100,000 entries comes through here once: ``_node_for`` is written out
        and ``Node`` built from positional arguments, a third less time per entry.
        """
        inodes, nodes = self._inodes, self._nodes
        finode, project, type_, version = folder.inode, folder.project, folder.type, folder.version
        get = entries.get if entries is not None else None
        with collector_paused():  # many long-lived objects at once
            out = []
            for name in names:
                path = prefix + name
                entry = get(path) if get is not None else None
                key = ("e", finode, path)
                inode = inodes.get(key)
                if inode is None:
                    inode = self._next_inode
                    self._next_inode += 1
                    inodes[key] = inode
                    kind = Kind.FILE if entry is not None or is_file(path) else Kind.DIR
                    node = nodes[inode] = Node(
                        inode, kind, name, project, type_, "", version, finode, path, entry
                    )
                else:
                    node = nodes[inode]
                    if entry is not None:
                        node.entry = entry
                out.append(node)
        return out

    # ---- registry queries, cached briefly --------------------------------------------------

    async def _ask(
        self, key: tuple[Any, ...], query: Callable[..., T], *args: Any, fresh: bool = True
    ) -> T:
        """Ask the registry, remembering answers.

        ``fresh`` answers are reused for the listing timeout. When the registry cannot be
        reached, the last answer to the same question is used (so cached files stay
        reachable through their folders), and further questions skip the registry for a few
        seconds instead of each waiting out the timeout.
        """
        if fresh and key in self._fresh:
            return self._fresh[key]
        if trio.current_time() >= self._down_until:
            try:
                answer = await self._blocking(query, *args)
            except RegistryFault as exc:
                # it answered: only this question is broken, not the registry
                log.warning("registry failed to answer %s: %s", key, exc)
                if key in self._last:
                    return self._last[key]
                raise
            except (RegistryUnavailable, trio.TooSlowError):
                self._down_until = trio.current_time() + _DOWN_SECONDS
                log.warning("registry unreachable; answering %s from memory if possible", key)
            else:
                self._last[key] = answer
                if fresh:
                    self._fresh[key] = answer
                return answer
        if key in self._last:
            return self._last[key]
        raise RegistryUnavailable(f"registry unreachable and {key} never seen")

    async def projects(self) -> list[str]:
        return await self._ask(("projects",), self.registry.list_projects, self.entity)

    async def types(self, project: str) -> list[str]:
        return await self._ask(
            ("types", project), self.registry.list_types, self.entity, project
        )

    async def listing(self, folder: Node) -> VersionListing | StagedFolder:
        """The folder's files and folders: staged state, or the manifest (fetched once)."""
        if folder.staged is not None:
            return folder.staged
        return await self.version_listing(folder)

    async def version_listing(self, folder: Node) -> VersionListing:
        """The version's manifest as folders; fetched once per version and kept (LRU)."""
        assert folder.version is not None
        vid = folder.version.id
        found = self._listings.get(vid)
        if found is None:
            # parsing and indexing a large manifest takes a while: not on the event loop
            found = await self._blocking(lambda: VersionListing(self.registry.manifest(vid)))
            self.manifest_fetches += 1
            self._listings[vid] = found
        return found

    # ---- what FUSE asks -------------------------------------------------------------------

    async def lookup(self, parent: Node, name: str) -> Node:
        """The child ``name`` of ``parent``; NotFound when there is none."""
        if parent.kind is Kind.ROOT:
            if name in await self.projects():
                return self._project(name)
        elif parent.kind is Kind.PROJECT:
            if name in await self.types(parent.project):
                return self._type(parent.project, name)
        elif parent.kind is Kind.TYPE:
            return await self._lookup_version(parent, name)
        elif parent.kind in (Kind.VERSION, Kind.DIR):
            folder = self.folder_of(parent)
            listing = await self.listing(folder)
            path = f"{parent.path}/{name}" if parent.path else name
            if path in listing.files:
                return self.in_folder(folder, path, is_file=True)
            if path in listing.dirs:
                return self.in_folder(folder, path, is_file=False)
        raise NotFound(name)

    def file_position(self, folder: Node, path: str) -> tuple[str, int] | None:
        """The folder ``path`` is in and its index in that folder's listing order; None
        for staged folders, whose listing changes, and when the listing is not in memory
        (a hint for prefetching must not wait on the registry: the lookup that came before
        the open loaded it, unless many versions read since have pushed it out)."""
        if folder.staged is not None or folder.version is None:
            return None
        listing = self._listings.get(folder.version.id)
        if listing is None:
            return None
        parent, _, name = path.rpartition("/")
        return parent, bisect.bisect_left(listing.dirs.get(parent, ()), name)

    def files_after(
        self, folder: Node, parent: str, index: int, count: int
    ) -> list[ManifestEntry]:
        """Up to ``count`` files that follow position ``index`` of folder ``parent`` (after
        ``file_position``, which found the listing in memory)."""
        listing = self._listings.get(folder.version.id) if folder.version else None
        if listing is None:
            return []
        prefix = f"{parent}/" if parent else ""
        files = listing.files
        out = []
        for sibling in listing.dirs.get(parent, [])[index + 1 : index + 1 + count]:
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
        if is_file and folder.staged is None:
            listing = self._listings.get(folder.version.id) if folder.version else None
            entries = listing.files if listing else None
        parent, _, name = path.rpartition("/")
        return self._entry_nodes(
            folder, f"{parent}/" if parent else "", (name,), entries, lambda _: is_file
        )[0]

    def moved(self, folder: Node, src: str, dst: str) -> None:
        """Re-key the nodes of a renamed file or folder so their inodes follow them."""
        prefix = src + "/"
        for key in [k for k in self._inodes if k[0] == "e" and k[1] == folder.inode
                    and (k[2] == src or k[2].startswith(prefix))]:
            inode = self._inodes.pop(key)
            new_path = dst + key[2][len(src):]
            self._inodes[("e", folder.inode, new_path)] = inode
            node = self._nodes[inode]
            node.path = new_path
            node.name = new_path.rsplit("/", 1)[-1]
        for key in [k for k in self._inodes if k[0] == "e" and k[1] == folder.inode
                    and k[2] == dst and self._nodes[self._inodes[k]].path != dst]:
            del self._inodes[key]

    def forget_path(self, folder: Node, path: str) -> None:
        """A removed path: a later file of the same name gets a new inode."""
        self._inodes.pop(("e", folder.inode, path), None)

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
        question = ("resolve", parent.project, collection, label)
        known = self._last.get(question)
        if known is not None and parse_version_label(label) is not None:
            info: VersionInfo = known  # vN never changes: no need to ask again
        else:
            info = await self._ask(
                question, self.registry.resolve, self.entity, parent.project, collection,
                label, fresh=False,
            )
        if info.type != parent.type:
            raise NotFound(name)
        return self._version(parent.project, parent.type, collection, label, info)

    async def _staged(self, key: FolderKey) -> StagedFolder | None:
        """The staged folder for ``key``, loading one a previous daemon left."""
        found = self.staging.folders.get(key)
        if found is not None or key not in self._left:
            return found
        base, path = self._left[key]
        manifest = (
            await self._blocking(self.registry.manifest, base.id) if base else Manifest()
        )
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
        listing = await self.version_listing(folder)
        manifest = Manifest(listing.files.values())
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
        del self._inodes[self._folder_node_key(key, folder.version)]
        self._inodes[self._folder_node_key(key, info)] = folder.inode
        folder.version = info
        folder.staged = None
        self._down_until = 0.0  # the registry just answered a commit
        listing = self._listings[info.id] = VersionListing(manifest)
        self._last[("resolve", key.project, key.name, key.alias)] = info
        self._fresh.pop(("versions", key.project, key.type), None)
        self._fresh.pop(("types", key.project), None)
        self._fresh.pop(("projects",), None)
        vanished: list[Node] = []  # empty folders: a version has none
        for node in self._nodes.values():
            if node.folder == folder.inode:
                node.version = info
                if node.kind is Kind.FILE:
                    node.entry = manifest.get(node.path)
                elif (node.path not in listing.dirs
                      and self._inodes.get(("e", folder.inode, node.path)) == node.inode):
                    vanished.append(node)
        entries = [self._entry_of(folder, node) for node in vanished]
        for node in vanished:
            self.forget_path(folder, node.path)
        return self._then_invalidate(cleanup, entries)

    def _entry_of(self, folder: Node, node: Node) -> tuple[int, str]:
        """(parent inode, name): how the kernel knows a node of a NAME:LABEL folder."""
        parent_path, _, name = node.path.rpartition("/")
        parent = self._inodes.get(("e", folder.inode, parent_path)) if parent_path else None
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
        self._last.pop(("resolve", key.project, key.name, key.alias), None)
        self._fresh.pop(("versions", key.project, key.type), None)
        folder.staged = None
        return self._then_invalidate(
            cleanup, [(self.type_node(key.project, key.type).inode, folder.name)]
        )

    async def children(self, parent: Node) -> list[Node]:
        """Every child of a folder, in a stable order."""
        if parent.kind is Kind.ROOT:
            return [self._project(p) for p in await self.projects()]
        if parent.kind is Kind.PROJECT:
            return [self._type(parent.project, t) for t in await self.types(parent.project)]
        if parent.kind is Kind.TYPE:
            return await self._version_folders(parent)
        folder = self.folder_of(parent)
        listing = await self.listing(folder)
        prefix = f"{parent.path}/" if parent.path else ""
        names = listing.dirs.get(parent.path, ())
        if not isinstance(listing, VersionListing):
            return self._entry_nodes(folder, prefix, sorted(names), None,
                                     listing.files.__contains__)
        # already sorted, and the entries are at hand
        return self._entry_nodes(folder, prefix, names, listing.files, _never)

    async def _version_folders(self, parent: Node) -> list[Node]:
        def query() -> list[VersionInfo]:
            out: list[VersionInfo] = []
            for c in self.registry.list_collections(self.entity, parent.project, parent.type):
                try:
                    out.extend(self.registry.list_versions(self.entity, parent.project, c.name))
                except RegistryFault as exc:  # one broken collection; the others still list
                    log.warning("leaving %s/%s out of %s/%s: %s", parent.project, c.name,
                                parent.project, parent.type, exc)
            return out

        nodes: dict[str, Node] = {}
        for info in await self._ask(("versions", parent.project, parent.type), query):
            self._last[("resolve", parent.project, info.name, info.version)] = info
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
