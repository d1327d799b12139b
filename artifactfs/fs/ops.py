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
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import pyfuse3
import trio
from cachetools import LRUCache

from artifactfs.core.errors import (
    DigestMismatch,
    InvalidManifest,
    NotFound,
    PermissionDenied,
    ReferenceUnavailable,
    RegistryUnavailable,
)
from artifactfs.core.manifest import ManifestEntry
from artifactfs.core.posix import is_executable, link_escape, symlink_target
from artifactfs.core.records import VersionInfo
from artifactfs.core.references import clean_uri
from artifactfs.fs.metrics import ReadTimes
from artifactfs.fs.mounts import set_readahead
from artifactfs.fs.options import MountOptions
from artifactfs.fs.reader import ReadAhead, SiblingWindow, VerifiedReader
from artifactfs.fs.staging import StagedFile, StagedFolder
from artifactfs.fs.tree import Kind, Node, Tree
from artifactfs.fs.uses import UseRecorder
from artifactfs.fs.writes import FolderWriter

__all__ = ["ArtifactOperations"]

log = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Awaitable[Any]])

XATTR_PREFIX = "user.artifactfs."
_OWN_XATTRS = XATTR_PREFIX.encode()
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_TRUNC
_LONG = 24 * 3600.0  # immutable content: the kernel may keep it as long as it likes


def barrier(func: F) -> F:
    name = func.__name__

    @functools.wraps(func)
    async def wrapper(self: ArtifactOperations, *args: Any) -> Any:
        self.requests[name] += 1
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
        except OSError as exc:  # the writes layer speaks errno already (ENOSPC, EEXIST...)
            if exc.errno is None:
                log.exception("%s%r failed", func.__name__, args)
            raise pyfuse3.FUSEError(exc.errno or errno.EIO) from None
        except NotImplementedError as exc:
            log.error("%s: %s", func.__name__, exc)
            raise pyfuse3.FUSEError(errno.EIO) from None
        except Exception:
            log.exception("%s%r failed unexpectedly", func.__name__, args)
            raise pyfuse3.FUSEError(errno.EIO) from None

    return wrapper  # type: ignore[return-value]


@dataclass(frozen=True, slots=True)
class _Profile:
    """What the attributes of one NAME:LABEL folder's entries share."""

    version: VersionInfo | None  # the version it was made for
    writable: bool
    mtime_ns: int
    timeout: float  # entry and attribute timeout of its files and folders
    file_mode: int
    dir_mode: int

    @classmethod
    def of(cls, writable: bool, mtime_ns: int, version: VersionInfo | None) -> _Profile:
        # writable: changes come through this mount, so the kernel sees them; a short
        # timeout all the same, so a save or discard (which replace the folder) never
        # leaves stale sizes
        return cls(
            version, writable, mtime_ns, 1.0 if writable else _LONG,
            stat.S_IFREG | (0o644 if writable else 0o444),
            stat.S_IFDIR | (0o755 if writable else 0o555),
        )


# Entries of a folder listed with attributes before the rest may come by name alone (see
# ArtifactOperations.readdir): an ``ls -l`` of a small folder costs no lookups
UNLINKED_AFTER = 128

_UnlinkedReply = Callable[[pyfuse3.ReaddirToken, bytes, int, int, int], bool]


@dataclass(slots=True)
class _Listing:
    """An open folder: the node listed and its children when it was opened."""

    node: Node
    children: list[Node]


@dataclass(slots=True)
class OpenFile:
    node: Node
    readahead: ReadAhead
    entry: ManifestEntry | None = None  # reads of a version's bytes
    staged: StagedFile | None = None  # reads and writes of a staged copy...
    fd: int = -1  # ...through this descriptor of its upper file
    folder: Node | None = None
    writable: bool = False


class ArtifactOperations(pyfuse3.Operations):
    """The registry as folders: ``PROJECT/TYPE/NAME:LABEL/...``; alias folders take writes."""

    supports_dot_lookup = False
    enable_writeback_cache = False
    enable_acl = False

    def __init__(self, tree: Tree, reader: VerifiedReader, writer: FolderWriter,
                 options: MountOptions, *, no_open: bool = False) -> None:
        super().__init__()
        # no-open (see daemon.no_open_reads): OPEN is answered ENOSYS, so the kernel sends
        # no OPEN or RELEASE for files, and every READ carries the file's inode instead of
        # a handle; the read-ahead state a handle would hold is then kept per inode
        self.no_open = no_open
        self._inode_reads: LRUCache[int, ReadAhead] = LRUCache(maxsize=4096)
        self.requests: Counter[str] = Counter()  # by operation, for the stats attribute
        self.tree = tree
        self.reader = reader
        self.writer = writer
        self.options = options
        self.nursery: trio.Nursery | None = None  # set by the daemon before serving
        self.uses: UseRecorder | None = None  # --run: set by the daemon (fs/uses.py)
        self.control_address = ""
        self.read_times = ReadTimes()  # version reads' latency (fs/metrics.py)
        self.metrics_address: str | None = None  # --metrics-port: set by the daemon
        self._handles: dict[int, OpenFile] = {}
        self._dir_handles: dict[int, _Listing] = {}
        # readdir: files past the first entries by name alone, where pyfuse3 can say so
        self._unlinked_reply: _UnlinkedReply | None = getattr(
            pyfuse3, "readdir_reply_unlinked", None)
        self._stat_folders: set[int] = set()  # folders something was looked up in
        self._fh = itertools.count(1)
        self._uid, self._gid = os.getuid(), os.getgid()
        self._mounted_at = time.time_ns()
        self._tuned = False
        self.siblings = SiblingWindow(options.prefetch_files)
        self._profiles: dict[int, _Profile] = {}  # _folder_profile
        self._top_profile = _Profile.of(False, self._mounted_at, None)  # root, projects, types
        tree.invalidate_entry = _invalidate_entry

    # ---- attributes ----------------------------------------------------------------------

    def _attrs(self, node: Node) -> pyfuse3.EntryAttributes:
        # A listing asks once per entry (100,000 times for a large version), so fields that
        # a fresh EntryAttributes already holds (generation 0) are not set again, and what
        # depends only on the folder comes from its profile.
        a = pyfuse3.EntryAttributes()
        a.st_ino = node.inode
        a.st_uid = self._uid
        a.st_gid = self._gid
        a.st_blksize = 128 * 1024
        kind = node.kind
        folder: Node | None
        if kind is Kind.FILE:
            folder = self.tree.node(node.folder)
            profile = self._folder_profile(folder)
            a.entry_timeout = a.attr_timeout = profile.timeout
            a.st_nlink = 1
            if folder.staged is not None:
                return self._staged_attrs(a, folder.staged, node.path, profile)
            entry = node.entry
            size = entry.size if entry is not None else 0
            a.st_mode = profile.file_mode
            if entry is not None and entry.extra:  # most entries have no extra at all
                target = symlink_target(entry)
                if target is not None:
                    a.st_mode = stat.S_IFLNK | 0o777
                    size = len(target.encode("utf-8", "surrogateescape"))
                elif is_executable(entry):
                    a.st_mode |= 0o111
            a.st_size = size
            a.st_blocks = -(-size // 512)
            a.st_atime_ns = a.st_mtime_ns = a.st_ctime_ns = profile.mtime_ns
            return a
        if kind is Kind.DIR:
            folder = self.tree.node(node.folder)
            profile = self._folder_profile(folder)
            a.entry_timeout = a.attr_timeout = profile.timeout
        elif kind is Kind.VERSION:
            folder = node
            profile = self._folder_profile(node)
            # an alias folder: the name NAME:ALIAS may soon mean another inode; the inode
            # itself never changes
            a.entry_timeout = self.options.alias_timeout if node.is_alias_folder else _LONG
            a.attr_timeout = _LONG
        else:
            folder = None
            profile = self._top_profile
            a.entry_timeout = a.attr_timeout = self.options.alias_timeout
        a.st_nlink = 2
        a.st_size = 0
        if folder is not None and folder.staged is not None:
            return self._staged_attrs(a, folder.staged, node.path, profile)
        a.st_mode = profile.dir_mode
        a.st_atime_ns = a.st_mtime_ns = a.st_ctime_ns = profile.mtime_ns
        return a

    @staticmethod
    def _file_type(node: Node) -> int:
        """The type bits of a FILE node of a folder that is not staged, as ``_attrs`` gives
        them."""
        entry = node.entry
        if entry is not None and entry.extra and symlink_target(entry) is not None:
            return stat.S_IFLNK
        return stat.S_IFREG

    @staticmethod
    def _staged_attrs(a: pyfuse3.EntryAttributes, staged: StagedFolder, path: str,
                      profile: _Profile) -> pyfuse3.EntryAttributes:
        """Mode, size and times of a path of a staged folder (file, symlink or folder):
        what chmod and utimensat set is shown until the folder is saved or discarded."""
        ref = staged.files.get(path)
        meta = staged.meta.get(path)
        mtime = profile.mtime_ns
        atime = 0
        size = 0
        if isinstance(ref, StagedFile):
            size, mtime, atime = ref.size, ref.mtime_ns, ref.atime_ns
        else:
            if ref is not None:
                size = ref.size
            if meta is not None and meta.mtime_ns is not None:
                mtime, atime = meta.mtime_ns, meta.atime_ns or 0
        target = symlink_target(ref) if isinstance(ref, ManifestEntry) else None
        if target is not None:
            a.st_mode = stat.S_IFLNK | 0o777
            size = len(target.encode("utf-8", "surrogateescape"))
        elif ref is not None:
            a.st_mode = stat.S_IFREG | staged.mode(path, ref)
        else:
            a.st_mode = stat.S_IFDIR | staged.mode(path)
        a.st_size = size
        a.st_blocks = -(-size // 512)
        a.st_mtime_ns = a.st_ctime_ns = mtime
        a.st_atime_ns = atime or mtime
        return a

    def _folder_profile(self, folder: Node) -> _Profile:
        """What the attributes of a NAME:LABEL folder's entries share: whether it is
        writable (an alias folder), its time stamp, modes and cache timeout.

        Every entry of a listing asks, so the answer is remembered per folder inode, for
        as long as the folder shows the same version (a save keeps the inode and moves the
        folder to the version it made).
        """
        version = folder.version
        cached = self._profiles.get(folder.inode)
        if cached is not None and cached.version is version:
            return cached
        mtime = int(version.created_at * 1e9) if version is not None else self._mounted_at
        profile = self._profiles[folder.inode] = _Profile.of(
            self.tree.writable(folder), mtime, version
        )
        return profile

    def _after_init(self) -> None:
        """Once the kernel has applied the INIT reply (any later request proves it), raise
        its read-ahead: INIT would reset a value set earlier."""
        if self._tuned or self.nursery is None or not self.options.kernel_readahead_kib:
            return
        self._tuned = True

        async def tune() -> None:
            done = await self.writer.local(
                set_readahead, self.options.mountpoint, self.options.kernel_readahead_kib
            )
            if not done:
                log.info("kernel read-ahead left at its default (needs root)")

        self.nursery.start_soon(tune)

    @barrier
    async def getattr(self, inode: int, ctx: pyfuse3.RequestContext) -> pyfuse3.EntryAttributes:
        self._after_init()
        return self._attrs(self.tree.node(inode))

    @barrier
    async def lookup(
        self, parent_inode: int, name: bytes, ctx: pyfuse3.RequestContext
    ) -> pyfuse3.EntryAttributes:
        self._after_init()
        if len(name) > 255:
            raise pyfuse3.FUSEError(errno.ENAMETOOLONG)  # as ext4 answers, not ENOENT
        text = _decode(name)
        if text is None:
            raise pyfuse3.FUSEError(errno.ENOENT)
        node = await self.tree.lookup(self.tree.node(parent_inode), text)
        self._stat_folders.add(parent_inode)  # see readdir
        return self._attrs(node)

    async def forget(self, inode_list: Sequence[tuple[int, int]]) -> None:
        """Nodes are kept for the life of the mount, so inode numbers stay stable."""

    # ---- folders -------------------------------------------------------------------------

    @barrier
    async def opendir(self, inode: int, ctx: pyfuse3.RequestContext) -> int:
        node = self.tree.node(inode)
        if not node.is_dir:
            raise pyfuse3.FUSEError(errno.ENOTDIR)
        fh = next(self._fh)
        self._dir_handles[fh] = _Listing(node, await self.tree.children(node))
        return fh

    @barrier
    async def readdir(self, fh: int, start_id: int, token: pyfuse3.ReaddirToken) -> None:
        # Every entry's attributes (READDIRPLUS) make the kernel build a dentry and an inode
        # per entry, which costs more than the listing itself: a walk of a large folder that
        # never stats its files (find, os.walk) pays for nothing. So, like the kernel's own
        # "readdirplus auto": the first entries of a folder come with attributes; past
        # UNLINKED_AFTER, names alone (with inode number and type), until something in the
        # folder is looked up, which says it is being stat'ed: from then on, attributes.
        listing = self._dir_handles[fh]
        children = listing.children
        unlinked = self._unlinked_reply if self._names_alone(listing.node) else None
        for index in range(start_id, len(children)):
            child = children[index]
            name = child.name.encode("utf-8", "surrogateescape")
            if unlinked is not None and index >= UNLINKED_AFTER and child.kind is Kind.FILE:
                if not unlinked(token, name, child.inode, self._file_type(child), index + 1):
                    break
            elif not pyfuse3.readdir_reply(token, name, self._attrs(child), index + 1):
                break

    def _names_alone(self, folder: Node) -> bool:
        """Whether a listing of ``folder`` may give files past UNLINKED_AFTER by name alone:
        not once a lookup in it was seen, and never in staged folders (whose files' types
        can change under a listing)."""
        if folder.kind not in (Kind.VERSION, Kind.DIR) or folder.inode in self._stat_folders:
            return False
        return self.tree.folder_of(folder).staged is None

    async def releasedir(self, fh: int) -> None:
        self._dir_handles.pop(fh, None)

    # ---- files ---------------------------------------------------------------------------

    @barrier
    async def open(self, inode: int, flags: int, ctx: pyfuse3.RequestContext) -> pyfuse3.FileInfo:
        node = self.tree.node(inode)
        if node.kind is not Kind.FILE:
            raise pyfuse3.FUSEError(errno.EISDIR)
        folder = self.tree.folder_of(node)
        writing = bool(flags & _WRITE_FLAGS)
        writable = self.tree.writable(folder)
        if writing and not writable:
            raise pyfuse3.FUSEError(errno.EROFS)
        if self.no_open:
            # the first open of the mount; the kernel opens every later file itself
            raise pyfuse3.FUSEError(errno.ENOSYS)
        ref = await self.writer.current(folder, node.path) if writable else None
        if writing or isinstance(ref, StagedFile):
            if writing and not isinstance(ref, StagedFile):
                ref = await self.writer.staged_file(node, truncate=bool(flags & os.O_TRUNC))
            assert isinstance(ref, StagedFile) and folder.staged is not None
            handle = await self._open_staged(node, folder, ref)
            handle.writable = writing
            if flags & os.O_TRUNC and ref.size:
                await self.writer.truncate(node, 0)
            return pyfuse3.FileInfo(fh=self._add_handle(handle), keep_cache=False)
        entry = ref if isinstance(ref, ManifestEntry) else node.entry
        if entry is None:
            raise pyfuse3.FUSEError(errno.ENOENT)
        handle = OpenFile(node, ReadAhead(cap=self.reader.readahead_cap), entry=entry)
        if self.nursery is not None and self.options.prefetch_files:
            self._look_ahead(folder, node)
        return pyfuse3.FileInfo(fh=self._add_handle(handle), keep_cache=True)

    def _look_ahead(self, folder: Node, node: Node) -> None:
        """Prefetch small files of an opened file's folder when the window says it is time:
        the siblings after it for reads in listing order, the folder's next files in a
        sweep for reads in any other order (see SiblingWindow)."""
        position = self.tree.file_position(folder, node.path)
        if position is None or self.nursery is None:
            return
        parent, index = position
        key = (folder.inode, parent)
        look = self.siblings.look(key, index)
        if look is None:
            return
        after, sweeping = look
        entries = self.tree.files_after(folder, parent, after, self.options.prefetch_files)
        went = self.reader.schedule_small(self.nursery, entries, sweep=sweeping)
        if sweeping:
            self.siblings.swept(key, after + went)

    async def _open_staged(self, node: Node, folder: Node, ref: StagedFile) -> OpenFile:
        assert folder.staged is not None
        # O_NOATIME: reads through the mount must not move the access time the upper file
        # keeps for the staged file (the daemon owns the upper files, so it may ask)
        fd = await self.writer.local(os.open, folder.staged.upper_path(ref),
                                     os.O_RDWR | os.O_NOATIME)
        return OpenFile(node, ReadAhead(), staged=ref, fd=fd, folder=folder)

    def writers(self, folder: Node) -> list[str]:
        """Paths open for writing in an alias folder (a save must not race them)."""
        return sorted(
            h.node.path for h in self._handles.values()
            if h.writable and h.folder is not None and h.folder.inode == folder.inode
        )

    def _add_handle(self, handle: OpenFile) -> int:
        fh = next(self._fh)
        self._handles[fh] = handle
        return fh

    @barrier
    async def create(
        self, parent_inode: int, name: bytes, mode: int, flags: int,
        ctx: pyfuse3.RequestContext,
    ) -> tuple[pyfuse3.FileInfo, pyfuse3.EntryAttributes]:
        node, ref = await self.writer.create(self.tree.node(parent_inode), name, mode)
        handle = await self._open_staged(node, self.tree.folder_of(node), ref)
        handle.writable = True
        info = pyfuse3.FileInfo(fh=self._add_handle(handle), keep_cache=False)
        return info, self._attrs(node)

    @barrier
    # pyfuse3 sends any buffer; its stubs say bytes, and a copy per read would cost more
    async def read(  # type: ignore[override]
        self, fh: int, off: int, size: int
    ) -> bytes | bytearray | memoryview:
        handle = self._handles.get(fh)
        if handle is None:
            if not self.no_open:
                raise pyfuse3.FUSEError(errno.EBADF)
            node, entry, ahead = await self._unopened(fh)  # fh is the inode
        elif handle.fd >= 0:
            return await self.writer.local(os.pread, handle.fd, size, off)
        else:
            assert handle.entry is not None
            node, entry, ahead = handle.node, handle.entry, handle.readahead
        started = time.perf_counter()
        try:
            return await self._read_version(node, entry, ahead, off, size)
        finally:  # failed reads too: a read that gives up after --read-timeout shows
            self.read_times.observe(time.perf_counter() - started)

    async def _unopened(self, inode: int) -> tuple[Node, ManifestEntry, ReadAhead]:
        """The file, entry and read-ahead state of a read under no-open, where the kernel
        names the file by inode; its first read does what an open would (prefetching the
        files listed after it)."""
        node = self.tree.node(inode)
        if node.kind is not Kind.FILE:
            raise pyfuse3.FUSEError(errno.EISDIR)
        entry = node.entry
        folder = self.tree.folder_of(node)
        if entry is None:  # the node was made before its folder's listing was at hand
            entry = await self.tree.version_entry(folder, node.path)
            if entry is None:
                raise pyfuse3.FUSEError(errno.ENOENT)
            node.entry = entry
        ahead = self._inode_reads.get(inode)
        if ahead is None:
            ahead = self._inode_reads[inode] = ReadAhead(cap=self.reader.readahead_cap)
            if self.nursery is not None and self.options.prefetch_files:
                self._look_ahead(folder, node)
        return node, entry, ahead

    async def _read_version(
        self, node: Node, entry: ManifestEntry, ahead: ReadAhead, off: int, size: int
    ) -> bytes | bytearray | memoryview:
        """A read of a version's bytes, verified, with read-ahead."""
        # Read-ahead is decided when a read arrives, since reads may complete out of order;
        # but a file's first read is answered before anything is fetched ahead of it, so
        # that it does not share the first round trip (time to first byte).
        nursery = self.nursery
        # a small file is one piece: nothing to read ahead within it, nothing to track
        tracked = nursery is not None and self.reader.content.is_chunked(entry)
        first_read = ahead.next_offset == -1
        # Recorded as it arrives, the first read too: the reads the kernel sends while the
        # first one is fetched then continue it and fetch ahead, where each of them, taken
        # for a first read as well, fetched its own chunk alone.
        sequential = tracked and ahead.advance(off, size)
        if nursery is not None and sequential and not first_read:
            self.reader.schedule_readahead(nursery, entry, ahead, off, size)
        try:
            data = await self.reader.read(entry, off, size)
        # a missing blob, or a reference's source gone or changed, is an I/O error
        except (DigestMismatch, NotFound, OSError, ReferenceUnavailable) as exc:
            version = node.version
            log.error(
                "EIO: %s path %r digest %s: %s",
                version.qualified_name if version else "?", entry.path,
                # a reference's digest may be its URI (checksum=False), credentials and all
                entry.digest if entry.ref is None else clean_uri(entry.digest), exc,
            )
            raise pyfuse3.FUSEError(errno.EIO) from None
        except trio.TooSlowError:
            if entry.ref is None:
                raise  # the registry's (the barrier says so)
            # a reference is fetched whole before its first byte is served: a large one may
            # take longer than --read-timeout, and the fetch goes on for the reads after it
            log.error("EIO: path %r: reference %s still being fetched and checked after "
                      "--read-timeout; it goes on, and later reads wait for it", entry.path,
                      clean_uri(entry.ref))
            raise pyfuse3.FUSEError(errno.EIO) from None
        if nursery is not None and sequential and first_read:
            self.reader.schedule_readahead(nursery, entry, ahead, off, size)
        if self.uses is not None and nursery is not None:
            self.uses.read_from(nursery, node.version)
        return data

    @barrier
    async def write(self, fh: int, off: int, buf: bytes) -> int:
        handle = self._handles[fh]
        if handle.fd < 0 or handle.staged is None or handle.folder is None:
            raise pyfuse3.FUSEError(errno.EBADF)
        written = await self.writer.local(os.pwrite, handle.fd, buf, off)
        staged = handle.folder.staged
        if staged is not None:
            staged.resized(handle.staged, max(handle.staged.size, off + written))
        return int(written)

    @barrier
    async def fsync(self, fh: int, datasync: bool) -> None:
        handle = self._handles[fh]
        if handle.fd >= 0:
            await self.writer.local(os.fsync, handle.fd)
            if handle.folder is not None and handle.folder.staged is not None:
                await self.writer.local(handle.folder.staged.sync)

    async def flush(self, fh: int) -> None:
        """Writes go straight to the staged copy; nothing is buffered here. ENOSYS tells
        the kernel so, once, and it stops asking on every close (a round trip per file)."""
        self.requests["flush"] += 1
        raise pyfuse3.FUSEError(errno.ENOSYS)

    @barrier
    async def release(self, fh: int) -> None:
        handle = self._handles.pop(fh, None)
        if handle is not None and handle.fd >= 0:
            await self.writer.local(os.close, handle.fd)

    @barrier
    async def setattr(
        self, inode: int, attr: pyfuse3.EntryAttributes, fields: pyfuse3.SetattrFields,
        fh: int | None, ctx: pyfuse3.RequestContext,
    ) -> pyfuse3.EntryAttributes:
        node = self.tree.node(inode)
        self.writer.folder(node)  # EROFS outside alias folders
        if fields.update_size:
            if node.kind is not Kind.FILE:
                raise pyfuse3.FUSEError(errno.EISDIR)
            await self.writer.truncate(node, attr.st_size)
        if fields.update_mode:
            await self.writer.chmod(node, attr.st_mode)
        if fields.update_atime or fields.update_mtime:
            shown = self._attrs(node)
            await self.writer.set_times(
                node, attr.st_atime_ns if fields.update_atime else None,
                attr.st_mtime_ns if fields.update_mtime else None,
                (shown.st_atime_ns, shown.st_mtime_ns),
            )
        # owners: artifacts have none, so a chown (by root; the kernel refuses anyone else)
        # is accepted and not kept, as on a file system mounted with uid= and gid=
        return self._attrs(node)

    @barrier
    async def mkdir(
        self, parent_inode: int, name: bytes, mode: int, ctx: pyfuse3.RequestContext
    ) -> pyfuse3.EntryAttributes:
        return self._attrs(await self.writer.mkdir(self.tree.node(parent_inode), name, mode))

    @barrier
    async def symlink(
        self, parent_inode: int, name: bytes, target: bytes, ctx: pyfuse3.RequestContext
    ) -> pyfuse3.EntryAttributes:
        return self._attrs(await self.writer.symlink(self.tree.node(parent_inode), name, target))

    @barrier
    async def readlink(self, inode: int, ctx: pyfuse3.RequestContext) -> bytes:
        node = self.tree.node(inode)
        if node.kind is not Kind.FILE:
            raise pyfuse3.FUSEError(errno.EINVAL)
        folder = self.tree.folder_of(node)
        ref = folder.staged.files.get(node.path) if folder.staged else node.entry
        target = symlink_target(ref) if isinstance(ref, ManifestEntry) else None
        if target is None:
            raise pyfuse3.FUSEError(errno.EINVAL)
        reason = link_escape(node.path, target)
        if reason is not None:  # a version stored before links were checked
            log.error("readlink: %s path %r -> %r refused: %s",
                      folder.version.qualified_name if folder.version else folder.name,
                      node.path, target, reason)
            raise pyfuse3.FUSEError(errno.EIO)
        return target.encode("utf-8", "surrogateescape")

    @barrier
    async def mknod(
        self, parent_inode: int, name: bytes, mode: int, rdev: int, ctx: pyfuse3.RequestContext
    ) -> pyfuse3.EntryAttributes:
        """mknod(S_IFREG) makes an empty file, as on any disk; device nodes, FIFOs and
        sockets cannot be kept in an artifact (EPERM in alias folders)."""
        parent = self.tree.node(parent_inode)
        self.writer.folder(parent)  # EROFS outside alias folders
        if not stat.S_ISREG(mode):
            raise pyfuse3.FUSEError(errno.EPERM)
        node, _ = await self.writer.create(parent, name, mode)
        return self._attrs(node)

    @barrier
    async def link(
        self, inode: int, new_parent_inode: int, new_name: bytes, ctx: pyfuse3.RequestContext
    ) -> pyfuse3.EntryAttributes:
        """Hard links cannot be kept in an artifact (a manifest maps paths to bytes, not
        paths to files): EPERM in alias folders, as ext4 answers for a directory."""
        self.writer.folder(self.tree.node(new_parent_inode))  # EROFS outside alias folders
        raise pyfuse3.FUSEError(errno.EPERM)

    @barrier
    async def unlink(self, parent_inode: int, name: bytes, ctx: pyfuse3.RequestContext) -> None:
        await self.writer.unlink(self.tree.node(parent_inode), name)

    @barrier
    async def rmdir(self, parent_inode: int, name: bytes, ctx: pyfuse3.RequestContext) -> None:
        await self.writer.rmdir(self.tree.node(parent_inode), name)

    @barrier
    async def rename(
        self, parent_inode_old: int, name_old: bytes, parent_inode_new: int, name_new: bytes,
        flags: int, ctx: pyfuse3.RequestContext,
    ) -> None:
        await self.writer.rename(
            self.tree.node(parent_inode_old), name_old, self.tree.node(parent_inode_new),
            name_new, flags,
        )

    # ---- extended attributes -------------------------------------------------------------

    def _xattrs(self, node: Node) -> dict[str, Callable[[], str]]:
        """The node's attributes, each computed only when asked for (``getfattr -d`` lists
        them, then asks for each: counting a large staging once per name would add up)."""
        out: dict[str, str | Callable[[], str]] = {}
        staged = node.staged if node.kind is Kind.VERSION else None
        if staged is not None:

            def summary() -> str:
                c = staged.changes()
                return f"{len(c.added)} added, {len(c.modified)} modified, {len(c.deleted)} deleted"

            out["staged"] = summary
        if node.kind is Kind.VERSION and node.version is not None:
            v = node.version
            out |= {
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
            if v.tags:  # W&B's tags; a tag holds no comma
                out["tags"] = ",".join(v.tags)
        elif node.kind is Kind.FILE:
            folder = self.tree.node(node.folder)
            # a staged file has no digest until saved; a file of the base has its entry's
            entry = folder.staged.files.get(node.path) if folder.staged else node.entry
            if isinstance(entry, ManifestEntry) and symlink_target(entry) is None:
                out = {"digest": entry.digest, "size": str(entry.size)}
                if entry.ref:
                    out["ref"] = entry.ref
        elif node.kind is Kind.ROOT:
            out = {"stats": lambda: json.dumps(self.stats(), sort_keys=True),
                   "control": self.control_address}
        return {
            XATTR_PREFIX + k: v if callable(v) else functools.partial(str, v)
            for k, v in out.items()
        }

    def stats(self) -> dict[str, Any]:
        """Counters for tests, benchmarks, ``artifactfs stats`` and the metrics
        (``getfattr -n user.artifactfs.stats MNT``; fs/metrics.py). Safe in any thread:
        the scrapes of --metrics-port call it from theirs."""
        content = self.reader.content
        staged_folders, staged_files, staged_bytes = self.tree.staging.totals()
        return {
            **{f"fetch_{k}": v for k, v in content.stats.as_dict().items()},
            "verification_failures": content.stats.failures,
            "staged_folders": staged_folders,
            "staged_files": staged_files,
            "staged_bytes": staged_bytes,
            "read_seconds": self.read_times.as_dict(),
            "mountpoint": str(self.options.mountpoint),
            "metrics_address": self.metrics_address,
            "cache_hits": content.cache.hits,
            "cache_misses": content.cache.misses,
            "cache_damaged": content.cache.damaged,
            "cache_dir": str(content.cache.root),  # which cache 'artifactfs cache info' counts
            "manifest_fetches": self.tree.manifest_fetches,
            "folder_fetches": self.tree.folder_fetches,
            "folder_requests": self.tree.folder_requests,
            "read_requests": self.requests["read"],
            "requests": dict(self.requests),
            "no_open": self.no_open,
            "read_only": self.tree.read_only,
            "pid": os.getpid(),
            # --run: the run, and the uses recorded and failed (fs/uses.py)
            "run": self.uses.run_id if self.uses else None,
            "uses_recorded": self.uses.recorded if self.uses else 0,
            "uses_failed": self.uses.failed if self.uses else 0,
        }

    def _user_xattrs(self, node: Node) -> dict[str, bytes]:
        """The ``user.*`` attributes set on a path of a staged folder (setfattr, cp -a)."""
        if node.kind in (Kind.ROOT, Kind.PROJECT, Kind.TYPE):
            return {}
        staged = self.tree.folder_of(node).staged
        meta = staged.meta.get(node.path) if staged is not None else None
        return meta.xattrs if meta is not None else {}

    @barrier
    async def getxattr(self, inode: int, name: bytes, ctx: pyfuse3.RequestContext) -> bytes:
        if not name.startswith(b"user."):
            # ACLs and security labels are not supported; saying so (rather than "no such
            # attribute") lets ls and friends stop asking for every file of the mount
            raise pyfuse3.FUSEError(errno.ENOTSUP)
        node = self.tree.node(inode)
        text = name.decode("utf-8", "surrogateescape")
        if name.startswith(_OWN_XATTRS):
            found = self._xattrs(node).get(text)
            if found is None:
                raise pyfuse3.FUSEError(pyfuse3.ENOATTR)
            if text == XATTR_PREFIX + "stats":  # counts staged files: not on the loop
                return (await trio.to_thread.run_sync(found)).encode()
            return found().encode()
        value = self._user_xattrs(node).get(text)
        if value is None:
            raise pyfuse3.FUSEError(pyfuse3.ENOATTR)
        return value

    @barrier
    async def listxattr(self, inode: int, ctx: pyfuse3.RequestContext) -> list[bytes]:
        node = self.tree.node(inode)
        own = [k.encode() for k in self._xattrs(node)]
        return own + [k.encode("utf-8", "surrogateescape") for k in self._user_xattrs(node)]

    def _settable_xattr(self, inode: int, name: bytes) -> tuple[Node, str]:
        """The node and name of a setxattr or removexattr the mount takes, else its errno:
        ENOTSUP for any namespace but ``user.`` (so ``cp -a`` and ``tar --xattrs`` go on
        without ACLs), EPERM for the mount's own read-only ``user.artifactfs.*``."""
        if not name.startswith(b"user."):
            raise pyfuse3.FUSEError(errno.ENOTSUP)
        if name.startswith(_OWN_XATTRS):
            raise pyfuse3.FUSEError(errno.EPERM)
        node = self.tree.node(inode)
        self.writer.folder(node)  # EROFS outside alias folders
        return node, name.decode("utf-8", "surrogateescape")

    @barrier
    async def setxattr(
        self, inode: int, name: bytes, value: bytes, ctx: pyfuse3.RequestContext
    ) -> None:
        node, text = self._settable_xattr(inode, name)
        await self.writer.set_xattr(node, text, value)

    @barrier
    async def removexattr(self, inode: int, name: bytes, ctx: pyfuse3.RequestContext) -> None:
        node, text = self._settable_xattr(inode, name)
        await self.writer.set_xattr(node, text, None)

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
        """Only asked without ``default_permissions`` (the kernel checks modes itself)."""
        node = self.tree.node(inode)
        if mode & os.W_OK:
            self.writer.folder(node)  # EROFS outside alias folders
        return True


def _invalidate_entry(parent_inode: int, name: str) -> None:
    """Make the kernel forget a name (blocking: from worker threads only, never a handler)."""
    try:
        pyfuse3.invalidate_entry(parent_inode, name.encode("utf-8", "surrogateescape"))
    except OSError as exc:  # ENOENT: the kernel did not have it cached; nothing to drop
        log.debug("invalidating %r in inode %d: %s", name, parent_inode, exc)


def _decode(name: bytes) -> str | None:
    try:
        return name.decode("utf-8")
    except UnicodeDecodeError:
        return None
