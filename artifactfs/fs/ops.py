"""The FUSE operations: a thin translation from kernel requests to the tree and the reader.

Every handler runs behind ``barrier``: a ``FUSEError`` passes, a known error becomes its errno,
anything else is logged with context and becomes EIO. pyfuse3 ends the whole mount when a
handler raises anything else, so nothing may slip past.
"""

from __future__ import annotations

import errno
import functools
import itertools
import json
import logging
import os
import stat
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import pyfuse3
import trio

from artifactfs.core.errors import (
    DigestMismatch,
    InvalidManifest,
    NotFound,
    PermissionDenied,
    RegistryUnavailable,
)
from artifactfs.fs.options import MountOptions
from artifactfs.fs.reader import ReadAhead, VerifiedReader
from artifactfs.fs.tree import Kind, Node, Tree

__all__ = ["ArtifactOperations"]

log = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Awaitable[Any]])

XATTR_PREFIX = "user.artifactfs."
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_TRUNC
_LONG = 24 * 3600.0  # immutable content: the kernel may keep it as long as it likes


def barrier(func: F) -> F:
    @functools.wraps(func)
    async def wrapper(self: ArtifactOperations, *args: Any) -> Any:
        try:
            return await func(self, *args)
        except pyfuse3.FUSEError:
            raise
        except NotFound:
            raise pyfuse3.FUSEError(errno.ENOENT) from None
        except PermissionDenied:
            raise pyfuse3.FUSEError(errno.EACCES) from None
        except (DigestMismatch, InvalidManifest) as exc:
            log.error("%s: %s", func.__name__, exc)
            raise pyfuse3.FUSEError(errno.EIO) from None
        except (RegistryUnavailable, trio.TooSlowError) as exc:
            log.error("%s: registry unavailable: %s", func.__name__, exc or "timed out")
            raise pyfuse3.FUSEError(errno.EIO) from None
        except NotImplementedError as exc:
            log.error("%s: %s", func.__name__, exc)
            raise pyfuse3.FUSEError(errno.EIO) from None
        except Exception:
            log.exception("%s%r failed unexpectedly", func.__name__, args)
            raise pyfuse3.FUSEError(errno.EIO) from None

    return wrapper  # type: ignore[return-value]


@dataclass(slots=True)
class OpenFile:
    node: Node
    readahead: ReadAhead


class ArtifactOperations(pyfuse3.Operations):
    """Read-only view of a registry: ``PROJECT/TYPE/NAME:LABEL/...``."""

    supports_dot_lookup = False
    enable_writeback_cache = False
    enable_acl = False

    def __init__(self, tree: Tree, reader: VerifiedReader, options: MountOptions) -> None:
        super().__init__()
        self.tree = tree
        self.reader = reader
        self.options = options
        self.nursery: trio.Nursery | None = None  # set by the daemon before serving
        self._handles: dict[int, OpenFile] = {}
        self._dir_handles: dict[int, list[Node]] = {}
        self._fh = itertools.count(1)
        self._uid, self._gid = os.getuid(), os.getgid()
        self._mounted_at = time.time_ns()
        self.read_requests = 0

    # ---- attributes ----------------------------------------------------------------------

    def _attrs(self, node: Node) -> pyfuse3.EntryAttributes:
        a = pyfuse3.EntryAttributes()
        a.st_ino = node.inode
        a.generation = 0
        a.st_uid, a.st_gid = self._uid, self._gid
        a.st_blksize = 128 * 1024
        if node.version is not None:
            mtime = int(node.version.created_at * 1e9)
        else:
            mtime = self._mounted_at
        a.st_atime_ns = a.st_mtime_ns = a.st_ctime_ns = mtime
        if node.kind is Kind.FILE:
            assert node.entry is not None
            a.st_mode = stat.S_IFREG | 0o444
            a.st_nlink = 1
            a.st_size = node.entry.size
            a.st_blocks = -(-node.entry.size // 512)
        else:
            a.st_mode = stat.S_IFDIR | 0o555
            a.st_nlink = 2
            a.st_size = 0
        if node.kind in (Kind.ROOT, Kind.PROJECT, Kind.TYPE):
            a.entry_timeout = a.attr_timeout = self.options.alias_timeout
        elif node.is_alias_folder:
            # the name NAME:ALIAS may soon mean another inode; the inode itself never changes
            a.entry_timeout, a.attr_timeout = self.options.alias_timeout, _LONG
        else:
            a.entry_timeout = a.attr_timeout = _LONG
        return a

    @barrier
    async def getattr(self, inode: int, ctx: pyfuse3.RequestContext) -> pyfuse3.EntryAttributes:
        return self._attrs(self.tree.node(inode))

    @barrier
    async def lookup(
        self, parent_inode: int, name: bytes, ctx: pyfuse3.RequestContext
    ) -> pyfuse3.EntryAttributes:
        text = _decode(name)
        if text is None:
            raise pyfuse3.FUSEError(errno.ENOENT)
        node = await self.tree.lookup(self.tree.node(parent_inode), text)
        return self._attrs(node)

    async def forget(self, inode_list: list[tuple[int, int]]) -> None:
        """Nodes are kept for the life of the mount, so inode numbers stay stable."""

    # ---- folders -------------------------------------------------------------------------

    @barrier
    async def opendir(self, inode: int, ctx: pyfuse3.RequestContext) -> int:
        node = self.tree.node(inode)
        if not node.is_dir:
            raise pyfuse3.FUSEError(errno.ENOTDIR)
        fh = next(self._fh)
        self._dir_handles[fh] = await self.tree.children(node)
        return fh

    @barrier
    async def readdir(self, fh: int, start_id: int, token: pyfuse3.ReaddirToken) -> None:
        children = self._dir_handles[fh]
        for index in range(start_id, len(children)):
            child = children[index]
            if not pyfuse3.readdir_reply(
                token, child.name.encode("utf-8", "surrogateescape"), self._attrs(child),
                index + 1,
            ):
                break

    async def releasedir(self, fh: int) -> None:
        self._dir_handles.pop(fh, None)

    # ---- files ---------------------------------------------------------------------------

    @barrier
    async def open(self, inode: int, flags: int, ctx: pyfuse3.RequestContext) -> pyfuse3.FileInfo:
        node = self.tree.node(inode)
        if node.kind is not Kind.FILE:
            raise pyfuse3.FUSEError(errno.EISDIR)
        if flags & _WRITE_FLAGS:
            raise pyfuse3.FUSEError(errno.EROFS)
        fh = next(self._fh)
        self._handles[fh] = OpenFile(node, ReadAhead(cap=self.reader.readahead_cap))
        return pyfuse3.FileInfo(fh=fh, keep_cache=True)

    @barrier
    async def read(self, fh: int, off: int, size: int) -> bytes:
        self.read_requests += 1
        handle = self._handles[fh]
        entry = handle.node.entry
        assert entry is not None
        try:
            data = await self.reader.read(entry, off, size)
        except (DigestMismatch, NotFound, OSError) as exc:  # a missing blob is an I/O error
            version = handle.node.version
            log.error(
                "EIO: %s path %r digest %s: %s",
                version.qualified_name if version else "?", entry.path, entry.digest, exc,
            )
            raise pyfuse3.FUSEError(errno.EIO) from None
        if self.nursery is not None:
            self.reader.schedule_readahead(self.nursery, entry, handle.readahead, off, len(data))
        return data

    async def release(self, fh: int) -> None:
        self._handles.pop(fh, None)

    # ---- extended attributes -------------------------------------------------------------

    def _xattrs(self, node: Node) -> dict[str, bytes]:
        out: dict[str, str] = {}
        if node.kind is Kind.VERSION and node.version is not None:
            v = node.version
            out = {
                "id": v.id,
                "name": v.qualified_name,
                "version": v.version,
                "type": v.type,
                "digest": v.digest,
                "aliases": ",".join(v.aliases),
                "state": v.state,
                "size": str(v.size),
                "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(v.created_at)),
            }
            if v.description:
                out["description"] = v.description
        elif node.kind is Kind.FILE and node.entry is not None:
            out = {"digest": node.entry.digest, "size": str(node.entry.size)}
            if node.entry.ref:
                out["ref"] = node.entry.ref
        elif node.kind is Kind.ROOT:
            out = {"stats": json.dumps(self.stats(), sort_keys=True)}
        return {XATTR_PREFIX + k: v.encode() for k, v in out.items()}

    def stats(self) -> dict[str, Any]:
        """Counters for tests and benchmarks (``getfattr -n user.artifactfs.stats MNT``)."""
        content = self.reader.content
        return {
            **{f"fetch_{k}": v for k, v in content.stats.as_dict().items()},
            "cache_hits": content.cache.hits,
            "cache_misses": content.cache.misses,
            "manifest_fetches": self.tree.manifest_fetches,
            "read_requests": self.read_requests,
            "pid": os.getpid(),
        }

    @barrier
    async def getxattr(self, inode: int, name: bytes, ctx: pyfuse3.RequestContext) -> bytes:
        found = self._xattrs(self.tree.node(inode)).get(_decode(name) or "")
        if found is None:
            raise pyfuse3.FUSEError(pyfuse3.ENOATTR)
        return found

    @barrier
    async def listxattr(self, inode: int, ctx: pyfuse3.RequestContext) -> list[bytes]:
        return [k.encode() for k in self._xattrs(self.tree.node(inode))]

    # ---- the rest ------------------------------------------------------------------------

    @barrier
    async def statfs(self, ctx: pyfuse3.RequestContext) -> pyfuse3.StatvfsData:
        s = pyfuse3.StatvfsData()
        s.f_bsize = s.f_frsize = 4096
        s.f_blocks = s.f_bfree = s.f_bavail = 0
        s.f_files = self.tree.node_count
        s.f_ffree = s.f_favail = 0
        s.f_namemax = 255
        return s

    @barrier
    async def access(self, inode: int, mode: int, ctx: pyfuse3.RequestContext) -> bool:
        self.tree.node(inode)
        if mode & os.W_OK:
            raise pyfuse3.FUSEError(errno.EROFS)
        return True

    async def _read_only(self, *args: Any) -> Any:
        raise pyfuse3.FUSEError(errno.EROFS)

    setattr = create = mkdir = mknod = symlink = link = _read_only
    unlink = rmdir = rename = write = setxattr = removexattr = _read_only


def _decode(name: bytes) -> str | None:
    try:
        return name.decode("utf-8")
    except UnicodeDecodeError:
        return None
