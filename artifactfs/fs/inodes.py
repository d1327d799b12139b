"""The inode table of a mount: what each inode number shows, stable for the mount's life.

Every node is made under a key that says what it shows, and a key keeps its inode for as
long as the mount runs: ``ls`` twice, or a shell's working folder, sees the same numbers,
and the kernel's cached pages of an inode stay those of one file. Files and folders inside
a ``NAME:LABEL`` folder are keyed by their path in it (one table per folder, so a rename
re-keys only that folder's paths); everything above by the typed keys below. An alias
folder's key holds the version it resolved to, so an alias that moved is looked up to a
new inode and the kernel cannot mix two versions' pages.

Touched only on the event loop: no lock.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple

from artifactfs.core.collector import collector_paused
from artifactfs.core.errors import NotFound
from artifactfs.core.manifest import ManifestEntry
from artifactfs.core.records import VersionInfo
from artifactfs.fs.staging import FolderKey, StagedFolder

__all__ = [
    "ROOT_INODE",
    "FolderNodeKey",
    "InodeTable",
    "Kind",
    "Node",
    "NodeKey",
    "ProjectKey",
    "TypeKey",
]

ROOT_INODE = 1


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


class ProjectKey(NamedTuple):
    """``PROJECT/``."""

    project: str


class TypeKey(NamedTuple):
    """``PROJECT/TYPE/``."""

    project: str
    type: str


class FolderNodeKey(NamedTuple):
    """``PROJECT/TYPE/NAME:LABEL/``: the version it shows (None: a collection not committed
    yet), and how many times its staging ended (a discard must give it fresh inodes)."""

    folder: FolderKey
    version_id: str | None
    epoch: int


NodeKey = ProjectKey | TypeKey | FolderNodeKey


class InodeTable:
    """Keys to inode numbers and inode numbers to nodes; numbers are never reused."""

    def __init__(self) -> None:
        self._nodes: dict[int, Node] = {ROOT_INODE: Node(ROOT_INODE, Kind.ROOT, "")}
        self._keys: dict[NodeKey, int] = {}
        # NAME:LABEL folder's inode -> path inside it -> inode: the bulk of a large version,
        # kept as plain strings (a tuple per key cost time and memory at 1.28M entries)
        self._paths: dict[int, dict[str, int]] = {}
        self._next_inode = ROOT_INODE + 1

    def node(self, inode: int) -> Node:
        """The node of ``inode``. Raises NotFound for a number this table never gave."""
        try:
            return self._nodes[inode]
        except KeyError:
            raise NotFound(f"inode {inode} is unknown") from None

    def __len__(self) -> int:
        return len(self._nodes)

    def nodes(self) -> Iterator[Node]:
        """Every node ever made (a forgotten path's node too: an open file may hold it)."""
        return iter(self._nodes.values())

    def node_for(self, key: NodeKey, make: Callable[[int], Node]) -> Node:
        """The node ``key`` names, made by ``make(inode)`` the first time."""
        inode = self._keys.get(key)
        if inode is None:
            inode = self._next_inode
            self._next_inode += 1
            self._keys[key] = inode
            self._nodes[inode] = make(inode)
        return self._nodes[inode]

    def rekey(self, old: NodeKey, new: NodeKey) -> None:
        """The node known as ``old`` is known as ``new`` from now on (same inode): a saved
        folder now shows its new version. Raises KeyError when ``old`` names no node."""
        self._keys[new] = self._keys.pop(old)

    def entry_nodes(
        self, folder: Node, prefix: str, names: Sequence[str],
        entries: Mapping[str, ManifestEntry | None] | None, is_file: Callable[[str], bool],
    ) -> list[Node]:
        """The nodes of ``names`` in the folder ``prefix`` of the NAME:LABEL ``folder``,
        made if needed. ``entries`` gives a file's manifest entry (kept on its node); a path
        without one is a file when ``is_file`` says so.

        A listing of 100,000 entries comes through here once: the lookup is written out and
        ``Node`` built from positional arguments, a third less time per entry.
        """
        nodes = self._nodes
        finode, project, type_, version = folder.inode, folder.project, folder.type, folder.version
        paths = self._paths.get(finode)
        if paths is None:
            paths = self._paths[finode] = {}
        get = entries.get if entries is not None else None
        with collector_paused(objects=len(names)):  # many long-lived objects at once
            out = []
            for name in names:
                path = prefix + name
                entry = get(path) if get is not None else None
                inode = paths.get(path)
                if inode is None:
                    inode = self._next_inode
                    self._next_inode += 1
                    paths[path] = inode
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

    def entry_inode(self, folder: int, path: str) -> int | None:
        """The inode ``path`` of the NAME:LABEL folder ``folder`` has now, if any."""
        paths = self._paths.get(folder)
        return paths.get(path) if paths is not None else None

    def moved(self, folder: int, src: str, dst: str) -> None:
        """Re-key the nodes of a renamed file or folder (and all below it) so their inodes
        follow them; a node ``dst`` held before the rename no longer answers to it."""
        paths = self._paths.get(folder)
        if not paths:
            return
        prefix = src + "/"
        for path in [p for p in paths if p == src or p.startswith(prefix)]:
            inode = paths.pop(path)
            new_path = dst + path[len(src):]
            paths[new_path] = inode
            node = self._nodes[inode]
            node.path = new_path
            node.name = new_path.rsplit("/", 1)[-1]
        held = paths.get(dst)
        if held is not None and self._nodes[held].path != dst:
            del paths[dst]

    def forget_path(self, folder: int, path: str) -> None:
        """A removed path: a later file of the same name gets a new inode. Its node stays
        (an open file may still read it)."""
        paths = self._paths.get(folder)
        if paths is not None:
            paths.pop(path, None)
