"""The on-disk content cache shared by every mount and download on the machine.

Objects are named by content, so two processes writing the same name write the same bytes and
need no coordination beyond atomic renames::

    ROOT/objects.v2/<hex[:2]>/<hex>        a whole small blob
    ROOT/objects.v2/<hex[:2]>/<hex>.c<N>   chunk N of a large blob
    ROOT/objects.v2/<hex[:2]>/<hex>.idx    the chunk index of a large blob

Each file holds the object's bytes and then a 16-byte trailer: a magic naming this layout and
the XXH3-64 of the bytes, seeded with the object's name (so a good file under another
object's name fails too).

Rules:

- Only verified bytes are put here (callers check them against MD5 or SHA-256 before
  ``put``), and the trailer is computed from those bytes as they are written: it is a
  checksum of good bytes. Every ``get`` checks it again, on every read, in the thread that
  reads the file: bit rot keeps a file's size, inode and mtime, so nothing but the bytes can
  tell. XXH3 costs about 30 ms of CPU per GiB here (MD5 1.6 s, SHA-256 0.7 s), with the GIL
  released. A file whose bytes or trailer do not match, or that was cut short or grown, is
  deleted, logged with its name and reported as a miss, so the caller fetches and verifies
  it again.
- Files of the older layout (``ROOT/objects/``, trusted by a size-and-mtime stamp and no
  checksum) are never read; the first scan of a process removes them.
- Recency is the file's atime, set explicitly on a hit (at most once a minute per file), so
  least-recently-used eviction works across processes and restarts with no index to corrupt.
- Before a write that would take this process's running total (bytes being written
  included) past the bound, it takes ``ROOT/evict.lock`` (flock), scans the real usage and
  deletes the least recently used files down to 90% of the bound. Within one process the
  bound then holds at every moment, once the first scan (started in the background by the
  first put, so that no read waits for it) has counted what earlier processes left;
  processes sharing a folder may overshoot it by what the others are writing at that
  moment. The bound counts files as they are on disk, trailers included.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import logging
import os
import shutil
import struct
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import xxhash

from artifactfs.core.chunks import BytesLike
from artifactfs.files import open_announced, private_folder, write_atomically

__all__ = ["LAYOUT", "LOW_WATER", "TRAILER_SIZE", "CacheSummary", "ContentCache", "Pruned"]

log = logging.getLogger(__name__)

LAYOUT = "objects.v2"
"""The folder under the cache root that holds this layout's files."""
_OLDER_LAYOUTS = ("objects",)  # never read: their files carry no checksum

_TRAILER = struct.Struct("<8sQ")  # magic, XXH3-64 of the bytes seeded with the name
_MAGIC = b"afsxxh3\n"
TRAILER_SIZE = _TRAILER.size
"""Bytes each cache file holds past its object's own."""

_TOUCH_EVERY_NS = 60 * 1_000_000_000
_LEFTOVER_AGE = 3600.0  # seconds: a temporary file this old has no writer left
LOW_WATER = 0.9
"""Eviction brings the cache down to this share of its bound, so that it is not run again
at the next write."""


class ContentCache:
    def __init__(self, root: Path, max_bytes: int, *, block_size: int | None = None) -> None:
        """A cache folder at ``root`` holding at most ``max_bytes`` on disk. What a file
        takes is counted in whole blocks of ``block_size`` (the file system's, when None):
        a 64 KiB object and its trailer take 68 KiB of a 4 KiB-block file system, and
        counted by their length, 10,000 of them held 6% more than the bound."""
        self.root = root
        self.max_bytes = max_bytes
        self.objects = root / LAYOUT
        self.tmp = root / "tmp"
        # string paths on the hot paths: a Path per lookup cost more than the lookup
        self._objects = os.fspath(self.objects)
        self._tmp = os.fspath(self.tmp)
        # what every entity this user read holds: no other local user may read it, plant
        # files in it (a checksum is no signature) or hold its eviction lock
        private_folder(self.objects)
        private_folder(self.tmp)
        self._block = block_size or _block_size(self.objects)
        self._lock = threading.Lock()  # guards the counts
        self._usage: int | None = None  # this process's estimate; None until first scanned
        self._scanning = False
        self._written = 0  # bytes put by this process, ever: what a scan may have missed
        # while an eviction runs: the files this process put meanwhile, which its scan
        # may or may not have seen (counted once either way)
        self._landed: list[tuple[str, int]] | None = None
        self._pending = 0  # bytes being written by puts of this process
        self.hits = 0
        self.misses = 0
        self.damaged = 0  # files found not to match their checksum, and dropped

    def path(self, name: str) -> Path:
        return Path(self._where(name))

    def _where(self, name: str) -> str:
        return f"{self._objects}/{name[:2]}/{name}"

    def get(self, name: str) -> bytes | None:
        """Bytes of ``name`` if cached and matching the checksum they were put with; else
        None. A file that does not match is deleted, so it is fetched again rather than
        served. Call it from a worker thread: it reads the disk and hashes every byte."""
        fd = self._open(name)
        return None if fd is None else self._read_open(name, fd)

    def get_many(self, names: list[str]) -> list[bytes | None]:
        """``get`` of several objects, with the disk asked for all of them first
        (``open_announced``): the chunks of a read-ahead run come from the disk at once
        instead of one read after another."""
        out: list[bytes | None] = []
        with open_announced(self._where(name) for name in names) as fds:
            self.misses += fds.count(None)
            for i, name in enumerate(names):
                fd, fds[i] = fds[i], None  # _read_open closes it, whatever happens
                out.append(None if fd is None else self._read_open(name, fd))
        return out

    def _open(self, name: str) -> int | None:
        try:
            return os.open(self._where(name), os.O_RDONLY)
        except FileNotFoundError:
            self.misses += 1
            return None

    def _read_open(self, name: str, fd: int) -> bytes | None:
        """The rest of ``get`` for an opened file; closes ``fd``."""
        try:
            st = os.fstat(fd)
            data, tail = _read_object(fd, st.st_size)
            damage = _damage(name, data, tail)
            if damage is not None:
                path = self._where(name)
                log.warning("cache file %s is damaged (%s); dropped it, to be fetched and "
                            "verified again", path, damage)
                self._drop(path, self._taken(st.st_size))
                with self._lock:
                    self.misses += 1
                    self.damaged += 1
                return None
            now = time.time_ns()
            if now - st.st_atime_ns > _TOUCH_EVERY_NS:
                with contextlib.suppress(OSError):
                    os.utime(fd, ns=(now, st.st_mtime_ns))
        finally:
            os.close(fd)
        self.hits += 1
        return data

    def contains(self, name: str) -> bool:
        return os.path.isfile(self._where(name))

    def put(self, name: str, data: BytesLike) -> None:
        """Store verified bytes under ``name`` atomically, within the bound.

        Room is made before the bytes are written, and bytes being written count against
        the bound, so the folder never holds more than the bound as this process counts
        it, not even between a write and the eviction it would cause. Bytes that cannot fit
        (larger than the bound, too many other writes in flight, or an eviction that
        failed) are not cached; the read that fetched them has them anyway.
        """
        size = self._taken(len(data) + TRAILER_SIZE)
        if not self._reserve(size):
            log.debug("not caching %s: %d bytes do not fit in the bound", name, size)
            return
        path = self._where(name)
        # the checksum of the bytes the caller just verified, written after them
        add_trailer = functools.partial(_write_all, _trailer(name, data))
        try:
            try:
                write_atomically(path, data, tmp_dir=self._tmp, before_rename=add_trailer,
                                 mode=0o600)
            except FileNotFoundError:  # a new fan-out folder, or someone emptied the cache
                private_folder(Path(os.path.dirname(path)))
                private_folder(self.tmp)
                write_atomically(path, data, tmp_dir=self._tmp, before_rename=add_trailer,
                                 mode=0o600)
        except OSError as exc:  # a full disk must not fail the read that fetched the bytes
            with self._lock:
                self._pending -= size
            log.warning("could not cache %s: %s", name, exc)
            return
        with self._lock:
            self._pending -= size
            self._written += size
            if self._landed is not None:
                self._landed.append((path, size))
            if self._usage is None:
                # the first puts of this process: count what is on disk in the background,
                # since a large cache takes a while to scan and a read is waiting on us
                first = not self._scanning
                self._scanning = True
            else:
                self._usage += size
                first = False
        if first:
            threading.Thread(target=self._first_evict, name="artifactfs-cache-scan",
                             daemon=True).start()

    def _reserve(self, size: int) -> bool:
        """Count ``size`` bytes about to be written against the bound, evicting first if
        they would not fit; False (nothing reserved) when they cannot fit."""
        if size > self.max_bytes:  # could never fit: evicting for it would only empty
            return False
        with self._lock:
            self._pending += size
            over = self._held() > self.max_bytes
        if over:
            try:
                self.evict(only_if_over=True)
            except OSError as exc:  # the bytes are not cached; the read that has them goes on
                log.warning("could not make room in the cache at %s: %s", self.root, exc)
        with self._lock:
            if self._held() <= self.max_bytes:
                return True
            self._pending -= size
            return False

    def _held(self) -> int:
        """Bytes this process counts against the bound: on disk (or put since the first
        put, until the first scan ends) and being written. Call with ``_lock`` held."""
        on_disk = self._written if self._usage is None else self._usage
        return on_disk + self._pending

    def _first_evict(self) -> None:
        try:
            self._remove_older_layouts()
            self.evict()
            with self._lock:
                over = self._held() > self.max_bytes
            if over:
                self.evict()
        except OSError as exc:
            log.warning("could not scan the cache at %s: %s", self.root, exc)
        finally:
            with self._lock:
                self._scanning = False

    def _remove_older_layouts(self) -> None:
        """Delete the files of older layouts: never read (they carry no checksum), they
        would only take room outside the bound. A process of an older version still
        using them finds them gone and fetches again."""
        for layout in _OLDER_LAYOUTS:
            folder = self.root / layout
            if folder.is_dir() and _fanned_out(folder):
                log.info("removing %s: cache files of an older layout, without checksums",
                         folder)
                shutil.rmtree(folder, ignore_errors=True)

    def discard(self, name: str) -> None:
        path = self._where(name)
        with contextlib.suppress(FileNotFoundError):
            self._drop(path, self._taken(os.stat(path).st_size))

    def _drop(self, path: str, size: int) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        with self._lock:
            if self._usage is not None:
                self._usage -= size

    def _taken(self, size: int) -> int:
        """What a file of ``size`` bytes takes on disk: whole blocks."""
        return -(-size // self._block) * self._block

    def usage(self) -> int:
        """Bytes held now, counted on disk (whole blocks)."""
        return sum(size for _, _, size in self._scan())

    def evict(self, *, only_if_over: bool = False) -> None:
        """Bring the cache under its bound, oldest access first, across all processes;
        bytes this process is writing count as held. ``only_if_over``: not when, by this
        process's count, the bound already holds once the lock is ours."""
        with self._eviction_lock():
            with self._lock:
                if only_if_over and self._usage is not None and (
                        self._held() <= self.max_bytes):
                    # another thread of this process evicted while this one waited: a
                    # second scan of a large cache would only keep this read waiting
                    return
                self._landed = []
            try:
                self._evict_locked()
            finally:
                with self._lock:
                    self._landed = None

    @contextlib.contextmanager
    def _eviction_lock(self) -> Iterator[None]:
        """``ROOT/evict.lock``, held (flock) by one eviction, prune or clear at a time across
        every process sharing the folder."""
        self.root.mkdir(parents=True, exist_ok=True)
        with open(os.open(self.root / "evict.lock", os.O_WRONLY | os.O_CREAT, 0o600),
                  "wb") as lock:
            os.fchmod(lock.fileno(), 0o600)  # one made wider before: nobody else may hold it
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield

    def prune(self, target: int) -> Pruned:
        """Delete least recently used files until the folder holds at most ``target`` bytes
        (0: every file); what went and what is left.

        Safe while other processes use the folder (``artifactfs cache prune`` and ``clear``
        while mounts read): it holds the eviction lock, so no eviction runs meanwhile; it
        only unlinks files, never folders, so a put landing meanwhile still finds its
        fan-out folder; a reader that has a file open reads all of it (an unlinked file's
        bytes stay until it is closed) and checks it as always; a reader that finds a file
        gone takes it as a miss and fetches and verifies the bytes again. A process that
        counted the removed files keeps counting them until its next scan, which makes it
        scan sooner than it needed to, and nothing worse. Files put while it runs may stay.
        """
        with self._eviction_lock():
            files = self._scan()
            total = sum(size for _, _, size in files)
            files.sort()
            removed = freed = 0
            for _, path, size in files:
                if total <= target:
                    break
                try:
                    os.unlink(path)
                except FileNotFoundError:  # evicted by another process meanwhile
                    pass
                else:
                    removed += 1
                    freed += size
                total -= size
            with self._lock:
                self._usage = total
        if target == 0:
            self._remove_older_layouts()
            removed += self._remove_leftovers()
        return Pruned(removed, freed, total)

    def _remove_leftovers(self) -> int:
        """Delete temporary files a killed process left in ``ROOT/tmp`` (a put that ends,
        well or not, removes its own): they take disk outside the bound. Only files older
        than ``_LEFTOVER_AGE``: a put writes its file in milliseconds, so one that old has
        no writer left. How many went."""
        gone = 0
        cutoff = time.time() - _LEFTOVER_AGE
        with contextlib.suppress(FileNotFoundError), os.scandir(self.tmp) as found:
            for entry in found:
                with contextlib.suppress(FileNotFoundError):
                    if entry.is_file(follow_symlinks=False) and (
                            entry.stat(follow_symlinks=False).st_mtime < cutoff):
                        os.unlink(entry.path)
                        gone += 1
        return gone

    def summary(self) -> CacheSummary:
        """What the folder holds now, counted as eviction counts it (whole blocks)."""
        whole = chunks = indexes = used = 0
        for _, path, size in self._scan():
            used += size
            if path.endswith(".idx"):
                indexes += 1
            elif ".c" in os.path.basename(path):
                chunks += 1
            else:
                whole += 1
        return CacheSummary(used, whole, chunks, indexes)

    def _evict_locked(self) -> None:
        """``evict`` with the lock held. A put that lands while the scan runs may or may
        not be seen by it, and counts once either way: counted on top of the scan as well,
        it would count twice, and the first scan, which runs alongside a mount's first
        reads, would evict files still worth keeping."""
        files = self._scan()
        total = sum(size for _, _, size in files)
        seen = {path for _, path, _ in files}

        def missed() -> int:  # call with _lock held
            assert self._landed is not None
            return sum(size for path, size in self._landed if path not in seen)

        with self._lock:
            pending, landed = self._pending, missed()
        if total + landed + pending > self.max_bytes:
            target = int(self.max_bytes * LOW_WATER) - pending - landed
            files.sort()
            for _, path, size in files:
                if total <= target:
                    break
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)
                total -= size
        with self._lock:
            self._usage = total + missed()

    def _scan(self) -> list[tuple[int, str, int]]:
        out: list[tuple[int, str, int]] = []
        if not self.objects.is_dir():
            return out
        for sub in os.scandir(self.objects):
            if not sub.is_dir():
                continue
            for entry in os.scandir(sub.path):
                with contextlib.suppress(FileNotFoundError):
                    st = entry.stat()
                    out.append((st.st_atime_ns, entry.path, self._taken(st.st_size)))
        return out


class Pruned(NamedTuple):
    """What ``prune`` did: files removed, the bytes they took, and the bytes left."""

    removed: int
    freed: int
    left: int


class CacheSummary(NamedTuple):
    """What a cache folder holds: bytes on disk, and files by kind."""

    used: int
    whole: int
    """Small blobs, each in one file."""
    chunks: int
    """Chunks of large blobs."""
    indexes: int
    """Chunk indexes of large blobs."""

    @property
    def files(self) -> int:
        return self.whole + self.chunks + self.indexes


def _block_size(folder: Path) -> int:
    """The allocation unit of the file system ``folder`` is on (4 KiB on ext4)."""
    try:
        st = os.statvfs(folder)
    except OSError:
        return 4096
    return st.f_frsize or st.f_bsize or 4096


def _fanned_out(folder: Path) -> bool:
    """Whether ``folder`` holds only fan-out folders (two hex digits), as the cache's own
    object folders do: a cache root set to a folder of other things (a git folder has an
    ``objects`` too) must not lose them."""
    with os.scandir(folder) as entries:
        return all(e.is_dir(follow_symlinks=False) and len(e.name) == 2
                   and all(c in "0123456789abcdef" for c in e.name) for e in entries)


def _checksum(name: str, data: BytesLike) -> int:
    """XXH3-64 of ``data``, seeded with the object's name."""
    return xxhash.xxh3_64_intdigest(data, xxhash.xxh3_64_intdigest(name.encode()))


def _trailer(name: str, data: BytesLike) -> bytes:
    return _TRAILER.pack(_MAGIC, _checksum(name, data))


def _write_all(data: bytes, fd: int) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _read_object(fd: int, size: int) -> tuple[bytes, bytes]:
    """An open cache file of ``size`` bytes as (the object's bytes, what follows them).

    Two reads, no copy: the first returns the object's bytes as one bytes object of the
    right length; the second asks for one byte more than a trailer, so a file that grew
    since ``size`` was taken shows it.
    """
    want = max(0, size - TRAILER_SIZE)
    data = os.read(fd, want) if want else b""
    while len(data) < want:  # only a file cut short meanwhile
        more = os.read(fd, want - len(data))
        if not more:
            break
        data += more
    return data, os.read(fd, TRAILER_SIZE + 1)


def _damage(name: str, data: bytes, tail: bytes) -> str | None:
    """Why ``data`` and ``tail`` are not what ``put`` wrote for ``name``; None if they are."""
    if len(tail) != TRAILER_SIZE:
        return "its length changed while it was read"
    magic, expected = _TRAILER.unpack(tail)
    if magic != _MAGIC:
        return "no checksum trailer at its end: cut short, grown, or not written by this cache"
    if _checksum(name, data) != expected:
        return "its bytes do not match their checksum"
    return None
