"""Changes to alias folders, on top of the tree and the staging: no FUSE in here.

Every method raises OSError with the errno a file system would give (EROFS outside alias
folders, ENOENT, EEXIST, ENOTEMPTY, EXDEV, ENAMETOOLONG...), which the FUSE layer passes on.
Disk work (copying a file up, creating upper files, the journal) runs in worker threads.
"""

from __future__ import annotations

import errno
import logging
import os
from collections.abc import Awaitable, Callable
from typing import Any

import pyfuse3

from artifactfs.core.errors import InvalidName, NotFound
from artifactfs.core.manifest import ManifestEntry
from artifactfs.core.names import validate_alias, validate_name
from artifactfs.fs.staging import StagedFile, StagedFolder
from artifactfs.fs.tree import Kind, Node, Tree
from artifactfs.registry import VerifiedContent

__all__ = ["FolderWriter", "fail"]

log = logging.getLogger(__name__)

Blocking = Callable[..., Awaitable[Any]]
MAX_NAME_BYTES = 255


def fail(code: int) -> None:
    raise OSError(code, os.strerror(code))


def child_path(parent: Node, name: str) -> str:
    return f"{parent.path}/{name}" if parent.path else name


def check_name(raw: bytes) -> str:
    """A new entry's name: ENAMETOOLONG past 255 bytes, EINVAL when it is not UTF-8."""
    if len(raw) > MAX_NAME_BYTES:
        fail(errno.ENAMETOOLONG)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        fail(errno.EINVAL)
    raise AssertionError


class FolderWriter:
    def __init__(self, tree: Tree, content: VerifiedContent, blocking: Blocking,
                 unbounded: Blocking, local: Blocking) -> None:
        self.tree = tree
        self.content = content
        self.blocking = blocking  # registry calls
        self._unbounded = unbounded  # copying a large file up may take longer than a read
        self.local = local  # the staging folder's files

    def folder(self, node: Node) -> Node:
        """The alias folder ``node`` is in; EROFS when it is not in one."""
        if node.kind in (Kind.ROOT, Kind.PROJECT, Kind.TYPE):
            fail(errno.EROFS)
        folder = self.tree.folder_of(node)
        if not folder.is_alias_folder:
            fail(errno.EROFS)
        return folder

    async def staged(self, node: Node) -> tuple[Node, StagedFolder]:
        folder = self.folder(node)
        return folder, await self.tree.begin_staging(folder)

    async def current(self, folder: Node, path: str) -> ManifestEntry | StagedFile | None:
        listing = await self.tree.listing(folder)
        return listing.files.get(path)

    async def staged_file(self, node: Node, *, truncate: bool) -> StagedFile:
        """The staged copy of a file, copying the version's bytes up on first write."""
        _, staged = await self.staged(node)
        ref = staged.files.get(node.path)
        if isinstance(ref, StagedFile):
            return ref
        if ref is None:
            fail(errno.ENOENT)
        assert isinstance(ref, ManifestEntry)
        fresh = await self.local(staged.new_upper)
        if not truncate and ref.size:
            await self._unbounded(self.content.download, ref, staged.upper_path(fresh))
        size = 0 if truncate else ref.size
        staged.resized(fresh, size)
        await self.local(staged.put, node.path, fresh)
        log.info("copied %s/%s up for writing (%d bytes)", staged.key, node.path, size)
        return fresh

    async def create(self, parent: Node, raw_name: bytes) -> tuple[Node, StagedFile]:
        name = check_name(raw_name)
        folder, staged = await self.staged(parent)
        path = child_path(parent, name)
        if staged.kind(path) is not None:
            fail(errno.EEXIST)
        ref = await self.local(staged.new_upper)
        await self.local(staged.put, path, ref)
        self.tree.forget_path(folder, path)
        return self.tree.in_folder(folder, path, is_file=True), ref

    async def mkdir(self, parent: Node, raw_name: bytes) -> Node:
        name = check_name(raw_name)
        if parent.kind is Kind.TYPE:
            return await self._new_collection(parent, name)
        folder, staged = await self.staged(parent)
        path = child_path(parent, name)
        if staged.kind(path) is not None:
            fail(errno.EEXIST)
        await self.local(staged.mkdir, path)
        self.tree.forget_path(folder, path)
        return self.tree.in_folder(folder, path, is_file=False)

    async def _new_collection(self, parent: Node, name: str) -> Node:
        collection, sep, label = name.partition(":")
        try:
            validate_name(collection)
            validate_alias(label, allow_version=True)
        except InvalidName:
            fail(errno.EINVAL)
        if not sep or label != "latest":
            fail(errno.EROFS)  # only NAME:latest starts a collection
        try:
            await self.tree.lookup(parent, name)
        except NotFound:
            pass
        else:
            fail(errno.EEXIST)
        found = await self.blocking(
            self.tree.registry.collection_type, self.tree.entity, parent.project, collection
        )
        if found is not None:
            fail(errno.EEXIST)
        return await self.tree.new_collection(parent, name)

    async def unlink(self, parent: Node, raw_name: bytes) -> None:
        await self._remove(parent, raw_name, want="file")

    async def rmdir(self, parent: Node, raw_name: bytes) -> None:
        await self._remove(parent, raw_name, want="dir")

    async def _remove(self, parent: Node, raw_name: bytes, *, want: str) -> None:
        """unlink (``want="file"``) or rmdir (``"dir"``), with their errnos."""
        folder, staged = await self.staged(parent)
        path = child_path(parent, check_name(raw_name))
        kind = staged.kind(path)
        if kind is None:
            fail(errno.ENOENT)
        if kind != want:
            fail(errno.EISDIR if want == "file" else errno.ENOTDIR)
        if want == "dir" and staged.children(path):
            fail(errno.ENOTEMPTY)
        await self.local(staged.remove if want == "file" else staged.rmdir, path)
        self.tree.forget_path(folder, path)

    async def rename(self, old_parent: Node, old_raw: bytes, new_parent: Node, new_raw: bytes,
                     flags: int) -> None:
        old_name, new_name = check_name(old_raw), check_name(new_raw)
        folder = self.folder(old_parent)
        if self.folder(new_parent).inode != folder.inode:
            fail(errno.EXDEV)  # mv falls back to copying across alias folders
        if flags & pyfuse3.RENAME_EXCHANGE:
            fail(errno.EINVAL)
        staged = await self.tree.begin_staging(folder)
        src, dst = child_path(old_parent, old_name), child_path(new_parent, new_name)
        src_kind, dst_kind = staged.kind(src), staged.kind(dst)
        if src_kind is None:
            fail(errno.ENOENT)
        if src == dst:
            return
        if dst_kind is not None and flags & pyfuse3.RENAME_NOREPLACE:
            fail(errno.EEXIST)
        if src_kind == "file" and dst_kind == "dir":
            fail(errno.EISDIR)
        if src_kind == "dir":
            if dst_kind == "file":
                fail(errno.ENOTDIR)
            if dst.startswith(src + "/"):
                fail(errno.EINVAL)
            if dst_kind == "dir" and staged.children(dst):
                fail(errno.ENOTEMPTY)
        await self.local(staged.rename, src, dst)
        self.tree.forget_path(folder, dst)
        self.tree.moved(folder, src, dst)

    async def truncate(self, node: Node, size: int) -> StagedFile:
        ref = await self.staged_file(node, truncate=size == 0)
        folder = self.tree.folder_of(node)
        assert folder.staged is not None
        await self.local(os.truncate, folder.staged.upper_path(ref), size)
        folder.staged.resized(ref, size)
        return ref
