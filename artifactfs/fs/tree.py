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

import enum
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import trio
from cachetools import LRUCache, TTLCache

from artifactfs.core.errors import InvalidName, NotFound, RegistryUnavailable
from artifactfs.core.manifest import ManifestEntry
from artifactfs.core.names import validate_alias, validate_name
from artifactfs.core.records import VersionInfo
from artifactfs.fs.listing import VersionListing
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
    entry: ManifestEntry | None = None

    @property
    def is_dir(self) -> bool:
        return self.kind is not Kind.FILE

    @property
    def is_alias_folder(self) -> bool:
        return self.kind is Kind.VERSION and self.version is not None and (
            self.label != self.version.version
        )


class Tree:
    def __init__(
        self, registry: Registry, entity: str, blocking: Blocking, listing_ttl: float
    ) -> None:
        self.registry = registry
        self.entity = entity
        self._blocking = blocking
        self._nodes: dict[int, Node] = {ROOT_INODE: Node(ROOT_INODE, Kind.ROOT, "")}
        self._inodes: dict[tuple[Any, ...], int] = {}
        self._next_inode = ROOT_INODE + 1
        self._listings: LRUCache[str, VersionListing] = LRUCache(maxsize=64)
        self._fresh: TTLCache[tuple[Any, ...], Any] = TTLCache(maxsize=4096, ttl=listing_ttl)
        self._last: dict[tuple[Any, ...], Any] = {}  # last answers, for when it is down
        self._down_until = 0.0
        self.manifest_fetches = 0

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

    def _type(self, project: str, type_: str) -> Node:
        return self._node_for(
            ("t", project, type_),
            lambda i: Node(i, Kind.TYPE, type_, project=project, type=type_),
        )

    def _version(self, project: str, label: str, info: VersionInfo) -> Node:
        name = f"{info.name}:{label}"
        key = ("v", project, info.type, info.name, label, info.id)
        node = self._node_for(
            key,
            lambda i: Node(
                i, Kind.VERSION, name, project=project, type=info.type, label=label,
                version=info,
            ),
        )
        node.version = info  # aliases may have changed since the node was made
        return node

    def _in_version(self, folder: Node, path: str, entry: ManifestEntry | None) -> Node:
        kind = Kind.FILE if entry is not None else Kind.DIR
        return self._node_for(
            ("e", folder.inode, path),
            lambda i: Node(
                i, kind, path.rsplit("/", 1)[-1], project=folder.project, type=folder.type,
                version=folder.version, folder=folder.inode, path=path, entry=entry,
            ),
        )

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
            return self._fresh[key]  # type: ignore[no-any-return]
        if trio.current_time() >= self._down_until:
            try:
                answer = await self._blocking(query, *args)
            except (RegistryUnavailable, trio.TooSlowError):
                self._down_until = trio.current_time() + _DOWN_SECONDS
                log.warning("registry unreachable; answering %s from memory if possible", key)
            else:
                self._last[key] = answer
                if fresh:
                    self._fresh[key] = answer
                return answer  # type: ignore[no-any-return]
        if key in self._last:
            return self._last[key]  # type: ignore[no-any-return]
        raise RegistryUnavailable(f"registry unreachable and {key} never seen")

    async def projects(self) -> list[str]:
        return await self._ask(("projects",), self.registry.list_projects, self.entity)

    async def types(self, project: str) -> list[str]:
        return await self._ask(
            ("types", project), self.registry.list_types, self.entity, project
        )

    async def listing(self, folder: Node) -> VersionListing:
        """The version's manifest as folders; fetched once per version and kept (LRU)."""
        assert folder.version is not None
        vid = folder.version.id
        found = self._listings.get(vid)
        if found is None:
            manifest = await self._blocking(self.registry.manifest, vid)
            self.manifest_fetches += 1
            found = VersionListing(manifest)
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
            folder = parent if parent.kind is Kind.VERSION else self.node(parent.folder)
            listing = await self.listing(folder)
            path = f"{parent.path}/{name}" if parent.path else name
            if path in listing.files:
                return self._in_version(folder, path, listing.files[path])
            if path in listing.dirs:
                return self._in_version(folder, path, None)
        raise NotFound(name)

    async def _lookup_version(self, parent: Node, name: str) -> Node:
        collection, sep, label = name.partition(":")
        if not sep:
            raise NotFound(name)
        try:
            validate_name(collection)
            validate_alias(label, allow_version=True)
        except InvalidName:
            raise NotFound(name) from None
        info: VersionInfo = await self._ask(
            ("resolve", parent.project, collection, label), self.registry.resolve,
            self.entity, parent.project, collection, label, fresh=False,
        )
        if info.type != parent.type:
            raise NotFound(name)
        return self._version(parent.project, label, info)

    async def children(self, parent: Node) -> list[Node]:
        """Every child of a folder, in a stable order."""
        if parent.kind is Kind.ROOT:
            return [self._project(p) for p in await self.projects()]
        if parent.kind is Kind.PROJECT:
            return [self._type(parent.project, t) for t in await self.types(parent.project)]
        if parent.kind is Kind.TYPE:
            return await self._version_folders(parent)
        folder = parent if parent.kind is Kind.VERSION else self.node(parent.folder)
        listing = await self.listing(folder)
        out = []
        for child in listing.dirs.get(parent.path, ()):
            path = f"{parent.path}/{child}" if parent.path else child
            out.append(self._in_version(folder, path, listing.files.get(path)))
        return out

    async def _version_folders(self, parent: Node) -> list[Node]:
        def query() -> list[VersionInfo]:
            out: list[VersionInfo] = []
            for c in self.registry.list_collections(self.entity, parent.project, parent.type):
                out.extend(self.registry.list_versions(self.entity, parent.project, c.name))
            return out

        nodes = []
        for info in await self._ask(("versions", parent.project, parent.type), query):
            nodes.append(self._version(parent.project, info.version, info))
            nodes.extend(self._version(parent.project, a, info) for a in info.aliases)
        nodes.sort(key=lambda n: n.name)
        return nodes
