"""Changes to alias folders, on top of the tree and the staging: no FUSE in here.

Every method raises OSError with the errno a file system would give (EROFS outside alias
folders, ENOENT, EEXIST, ENOTEMPTY, EXDEV, ENAMETOOLONG...), which the FUSE layer passes on.
What an artifact cannot hold is refused with EPERM, the errno of a file system that does not
do that one thing (hard links, device nodes, FIFOs, sockets, symlinks that lead out of the
artifact): EROFS would tell tools such as ``cp -a`` that nothing here can be written.
Disk work (copying a file up, creating upper files, the journal) runs in worker threads.
"""

from __future__ import annotations

import errno
import functools
import logging
import os
from collections.abc import Awaitable, Callable
from typing import Any

import pyfuse3

from artifactfs.content import VerifiedContent
from artifactfs.core.errors import InvalidName, NotFound
from artifactfs.core.manifest import ManifestEntry
from artifactfs.core.names import validate_alias, validate_name
from artifactfs.core.posix import link_escape
from artifactfs.fs.staging import DIR_MODE, FILE_MODE, StagedFile, StagedFolder
from artifactfs.fs.tree import Kind, Node, Tree

__all__ = ["FolderWriter", "fail"]

log = logging.getLogger(__name__)

Blocking = Callable[..., Awaitable[Any]]
MAX_NAME_BYTES = 255
MAX_XATTR_BYTES = 64 * 1024
"""User extended attributes one path may hold (names and values): past it, ENOSPC, as a
file system whose attribute block is full answers."""


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
        if not self.tree.writable(folder):
            fail(errno.EROFS)
        return folder

    async def staged(self, node: Node) -> tuple[Node, StagedFolder]:
        folder = self.folder(node)
        return folder, await self.tree.begin_staging(folder)

    async def current(self, folder: Node, path: str) -> ManifestEntry | StagedFile | None:
        return await self.tree.entry(folder, path)

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

    async def create(self, parent: Node, raw_name: bytes,
                     mode: int = FILE_MODE) -> tuple[Node, StagedFile]:
        """A new empty file; ``mode`` is what open(O_CREAT) asked for, umask applied."""
        name = check_name(raw_name)
        folder, staged = await self.staged(parent)
        path = child_path(parent, name)
        if staged.kind(path) is not None:
            fail(errno.EEXIST)
        ref = await self.local(staged.new_upper)
        await self.local(staged.put, path, ref)
        if mode & 0o7777 != FILE_MODE:
            await self.local(functools.partial(staged.set_meta, path, mode=mode & 0o7777))
        self.tree.forget_path(folder, path)
        return self.tree.in_folder(folder, path, is_file=True), ref

    async def mkdir(self, parent: Node, raw_name: bytes, mode: int = DIR_MODE) -> Node:
        name = check_name(raw_name)
        if parent.kind is Kind.TYPE:
            return await self._new_collection(parent, name)
        folder, staged = await self.staged(parent)
        path = child_path(parent, name)
        if staged.kind(path) is not None:
            fail(errno.EEXIST)
        await self.local(staged.mkdir, path)
        if mode & 0o7777 != DIR_MODE:
            await self.local(functools.partial(staged.set_meta, path, mode=mode & 0o7777))
        self.tree.forget_path(folder, path)
        return self.tree.in_folder(folder, path, is_file=False)

    async def symlink(self, parent: Node, raw_name: bytes, raw_target: bytes) -> Node:
        """A symlink that stays inside the artifact; EPERM for any other (absolute, or
        climbing above the alias folder), since a version could not be downloaded safely."""
        name = check_name(raw_name)
        folder, staged = await self.staged(parent)
        path = child_path(parent, name)
        if staged.kind(path) is not None:
            fail(errno.EEXIST)
        try:
            target = raw_target.decode("utf-8")
        except UnicodeDecodeError:
            fail(errno.EINVAL)
        reason = link_escape(path, target)
        if reason is not None:
            log.info("symlink %s/%s -> %r refused: %s", staged.key, path, target, reason)
            fail(errno.EPERM)
        await self.local(staged.symlink, path, target)
        self.tree.forget_path(folder, path)
        return self.tree.in_folder(folder, path, is_file=True)

    async def chmod(self, node: Node, mode: int) -> None:
        """Kept while staged; a version keeps whether a file is executable."""
        _, staged = await self.staged(node)
        if staged.kind(node.path) is None:
            fail(errno.ENOENT)
        if staged.mode(node.path) != mode & 0o7777:
            await self.local(functools.partial(staged.set_meta, node.path, mode=mode & 0o7777))

    async def set_times(self, node: Node, atime_ns: int | None, mtime_ns: int | None,
                        shown: tuple[int, int]) -> None:
        """utimensat: kept while staged. ``None`` leaves that time as ``shown`` (the
        access and modification times the node shows now)."""
        _, staged = await self.staged(node)
        ref = staged.files.get(node.path)
        if ref is None and node.path not in staged.dirs:
            fail(errno.ENOENT)
        times = (atime_ns if atime_ns is not None else shown[0],
                 mtime_ns if mtime_ns is not None else shown[1])
        if isinstance(ref, StagedFile):
            await self.local(staged.set_file_times, ref, *times)
        else:
            await self.local(functools.partial(staged.set_meta, node.path, times=times))

    async def set_xattr(self, node: Node, name: str, value: bytes | None) -> None:
        """setxattr (``value``) or removexattr (None) of a ``user.*`` attribute."""
        _, staged = await self.staged(node)
        if staged.kind(node.path) is None:
            fail(errno.ENOENT)
        meta = staged.meta.get(node.path)
        held = meta.xattrs if meta is not None else {}
        if value is None:
            if name not in held:
                fail(errno.ENODATA)
        else:
            total = sum(len(k) + len(v) for k, v in held.items() if k != name)
            if total + len(name) + len(value) > MAX_XATTR_BYTES:
                fail(errno.ENOSPC)
        await self.local(functools.partial(staged.set_meta, node.path, xattr=(name, value)))

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
        exchange = bool(flags & pyfuse3.RENAME_EXCHANGE)
        if flags & ~(pyfuse3.RENAME_EXCHANGE | pyfuse3.RENAME_NOREPLACE) or (
            exchange and flags & pyfuse3.RENAME_NOREPLACE
        ):
            fail(errno.EINVAL)  # RENAME_WHITEOUT is for overlay file systems
        staged = await self.tree.begin_staging(folder)
        src, dst = child_path(old_parent, old_name), child_path(new_parent, new_name)
        src_kind, dst_kind = staged.kind(src), staged.kind(dst)
        if src_kind is None:
            fail(errno.ENOENT)
        if exchange:
            await self._exchange(folder, staged, src, dst, dst_kind)
            return
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

    async def _exchange(self, folder: Node, staged: StagedFolder, src: str, dst: str,
                        dst_kind: str | None) -> None:
        if dst_kind is None:
            fail(errno.ENOENT)
        if src == dst:
            return
        if dst.startswith(src + "/") or src.startswith(dst + "/"):
            fail(errno.EINVAL)
        await self.local(staged.exchange, src, dst)
        parking = src + "\x00"
        self.tree.moved(folder, src, parking)
        self.tree.moved(folder, dst, src)
        self.tree.moved(folder, parking, dst)

    async def truncate(self, node: Node, size: int) -> StagedFile:
        ref = await self.staged_file(node, truncate=size == 0)
        folder = self.tree.folder_of(node)
        assert folder.staged is not None
        await self.local(os.truncate, folder.staged.upper_path(ref), size)
        folder.staged.resized(ref, size)
        return ref
