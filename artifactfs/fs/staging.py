"""Staged writes: copy-on-write changes to alias folders, journaled on disk.

Each alias folder written in a mount has its own staging folder::

    STAGING/<mount id>/<project>/<type>/<name>:<alias>/
        journal.jsonl   one JSON line per change, replayed on load
        upper/          the bytes of every file created or changed (flat, by number)
        reserve         64 KiB given up when the disk is full, so removals still journal

The journal's first line names the base version (the one the alias named when staging
began; none for a new collection). Every later line is one of ``put`` (a path now has the
bytes of an upper file), ``rm``, ``mkdir``, ``rmdir``, ``mv``, ``swap`` (rename with
RENAME_EXCHANGE), ``link`` (a symlink) and ``meta`` (a path's mode, times or user
extended attributes; a staged file's times are its upper file's instead). Lines are
appended with one ``write`` each, so a daemon killed at any moment (even by SIGKILL)
leaves a journal whose lines all replay; ``sync`` (run on fsync and before a save) makes it
survive a power loss too. Upper files are never renamed, so a rename is a journal line,
whatever the file's size.

The merged view (``files`` and ``dirs``) is the base manifest with the journal applied, kept
in memory and changed in step with the journal under one lock.
"""

from __future__ import annotations

import base64
import contextlib
import errno
import itertools
import json
import os
import secrets
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from artifactfs.core.errors import InvalidManifest
from artifactfs.core.manifest import Manifest, ManifestEntry
from artifactfs.core.posix import (
    is_executable,
    link_escape,
    symlink_entry,
    symlink_target,
    with_executable,
)
from artifactfs.core.records import VersionInfo
from artifactfs.files import hash_file, private_folder

__all__ = ["FILE_MODE", "FolderKey", "PathMeta", "StagedFile", "StagedFolder", "Staging"]

FILE_MODE = 0o644
"""Permission bits of a file nobody chmod-ed (0o755 when its entry is executable)."""
DIR_MODE = 0o755

_RESERVE = "reserve"
_RESERVE_BYTES = 64 * 1024
"""Room kept back in each staging folder so a removal can be journaled on a full disk."""


@dataclass(frozen=True, slots=True)
class FolderKey:
    project: str
    type: str
    name: str
    alias: str

    def relpath(self) -> Path:
        return Path(self.project, self.type, f"{self.name}:{quote(self.alias, safe='')}")

    def __str__(self) -> str:
        return f"{self.project}/{self.type}/{self.name}:{self.alias}"


@dataclass(slots=True)
class StagedFile:
    """A file whose bytes are in ``upper/<upper>``."""

    upper: str
    size: int = 0
    mtime_ns: int = field(default_factory=time.time_ns)
    atime_ns: int = 0  # 0: the same as mtime_ns


@dataclass(slots=True)
class PathMeta:
    """What chmod, utimensat and setxattr set on a path that is not kept in its bytes.

    ``None`` means "as the entry says" (a mode) or "the folder's time" (times).
    """

    mode: int | None = None
    atime_ns: int | None = None
    mtime_ns: int | None = None
    xattrs: dict[str, bytes] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return not (self.mode is None and self.atime_ns is None and self.mtime_ns is None
                    and not self.xattrs)


FileRef = ManifestEntry | StagedFile


@dataclass(frozen=True, slots=True)
class Changes:
    added: list[str]
    modified: list[str]
    deleted: list[str]

    def __bool__(self) -> bool:
        return bool(self.added or self.modified or self.deleted)

    def as_dict(self) -> dict[str, list[str]]:
        return {"added": self.added, "modified": self.modified, "deleted": self.deleted}


def _parent(path: str) -> tuple[str, str]:
    head, _, tail = path.rpartition("/")
    return head, tail


class StagedFolder:
    """The staged state of one alias folder; every method is thread-safe."""

    def __init__(self, root: Path, key: FolderKey, base: VersionInfo | None,
                 base_manifest: Manifest) -> None:
        self.root = root
        self.key = key
        self.base = base
        self.upper = root / "upper"
        self._base_entries = dict(base_manifest.entries)
        self.files: dict[str, FileRef] = dict(self._base_entries)
        self.dirs: dict[str, set[str]] = {"": set()}
        self.meta: dict[str, PathMeta] = {}  # by path, moved along by renames
        for path in self.files:
            self._link(path)
        self._lock = threading.RLock()
        self._counter = itertools.count(1)
        self._journal_fd = -1
        # names this staging at the registry, so a save retried after a crash (or a lost
        # answer) finds the version it already made instead of making another; None for a
        # journal begun by a version of artifactfs that wrote none
        self.session: str | None = None
        # the keys of commits a save of this staging sent (journal lines ``commit``), so a
        # later save finds the version an earlier one made even if more was written since
        self.commit_keys: list[str] = []
        # moves on with every change (journaled, or a write): a save compares it before
        # and after, and keeps the staging if anything changed while it ran
        self.generation = 0

    # ---- life ---------------------------------------------------------------------------

    @classmethod
    def begin(cls, root: Path, key: FolderKey, base: VersionInfo | None,
              base_manifest: Manifest) -> StagedFolder:
        """Start staging: a journal whose first line names the base version."""
        (root / "upper").mkdir(parents=True, exist_ok=True)
        folder = cls(root, key, base, base_manifest)
        folder.session = secrets.token_hex(16)
        header = {"op": "begin", "key": [key.project, key.type, key.name, key.alias],
                  "base": base.to_dict() if base else None, "session": folder.session}
        folder._open_journal(truncate=True)
        folder._append(header)
        folder.keep_reserve()
        folder.sync()
        return folder

    @classmethod
    def read_header(cls, root: Path) -> tuple[FolderKey, VersionInfo | None]:
        with open(root / "journal.jsonl", "rb") as f:
            header = json.loads(f.readline())
        key = FolderKey(*header["key"])
        base = VersionInfo.from_dict(header["base"]) if header["base"] else None
        return key, base

    @classmethod
    def load(cls, root: Path, base_manifest: Manifest) -> StagedFolder:
        """Rebuild the state a previous daemon left: base manifest plus the journal."""
        key, base = cls.read_header(root)
        folder = cls(root, key, base, base_manifest)
        highest = 0
        with open(root / "journal.jsonl", "rb") as f:
            header = f.readline()
            session = json.loads(header).get("session")
            folder.session = session if isinstance(session, str) else None
            whole = len(header)  # where the last line replayed ends
            for line in f:
                try:
                    record = json.loads(line) if line.endswith(b"\n") else None
                except ValueError:
                    record = None
                if record is None:
                    break  # a torn last line: the change it began never completed
                folder._replay(record)
                whole += len(line)
                if record.get("op") == "put":
                    highest = max(highest, int(record["upper"]))
        # cut the torn line off: the next line appended would be glued to it, and every
        # change made from now on would be lost at the next replay
        os.truncate(root / "journal.jsonl", whole)
        folder._counter = itertools.count(highest + 1)
        folder._open_journal(truncate=False)
        return folder

    def _open_journal(self, *, truncate: bool) -> None:
        flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | (os.O_TRUNC if truncate else 0)
        self._journal_fd = os.open(self.root / "journal.jsonl", flags, 0o600)

    def close(self) -> None:
        if self._journal_fd >= 0:
            os.close(self._journal_fd)
            self._journal_fd = -1

    def destroy(self) -> None:
        """Drop everything staged (after a save, or on discard)."""
        with self._lock:
            self.close()
            shutil.rmtree(self.root, ignore_errors=True)

    def sync(self) -> None:
        """Make the journal and the upper folder's entries durable."""
        with self._lock:
            os.fsync(self._journal_fd)
            dir_fd = os.open(self.upper, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)

    def note_commit(self, key: str) -> None:
        """Journal (durably) that a save is about to send a commit with ``key``."""
        with self._lock:
            self._append({"op": "commit", "key": key}, change=False)
            self.commit_keys.append(key)
            os.fsync(self._journal_fd)

    def _append(self, record: dict[str, Any], *, change: bool = True) -> None:
        """Append one journal line, whole or not at all (raises OSError, e.g. ENOSPC).

        A full disk can cut a write short; the torn line is cut off again, so the journal
        never holds half a line that would stop a replay. If there is no room, the folder's
        reserve file is given up, so a change that frees space (rm, truncate) can still be
        recorded.
        """
        line = json.dumps(record, separators=(",", ":")).encode() + b"\n"
        if change:
            self.generation += 1
        try:
            self._write_line(line)
        except OSError as exc:
            if exc.errno != errno.ENOSPC or not self._release_reserve():
                raise
            self._write_line(line)

    def _write_line(self, line: bytes) -> None:
        fd = self._journal_fd
        start = os.lseek(fd, 0, os.SEEK_END)
        view = memoryview(line)
        try:
            while view:
                written = os.write(fd, view)
                if written <= 0:
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
                view = view[written:]
        except OSError:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, start)
            raise

    def _release_reserve(self) -> bool:
        try:
            os.unlink(self.root / _RESERVE)
        except FileNotFoundError:
            return False
        return True

    def keep_reserve(self) -> None:
        """Put back the reserve after space was freed (best effort)."""
        path = self.root / _RESERVE
        if path.exists():
            return
        try:
            with open(path, "wb") as f:
                f.write(bytes(_RESERVE_BYTES))
        except OSError:
            with contextlib.suppress(OSError):
                path.unlink()

    # ---- the merged view ------------------------------------------------------------------

    def _link(self, path: str) -> None:
        parts = path.split("/")
        for i in range(len(parts)):
            parent, name = "/".join(parts[:i]), parts[i]
            self.dirs.setdefault(parent, set()).add(name)

    def _unlink(self, path: str) -> None:
        parent, name = _parent(path)
        self.dirs.get(parent, set()).discard(name)

    def kind(self, path: str) -> str | None:
        """``"file"``, ``"dir"`` or None."""
        if path in self.files:
            return "file"
        if path in self.dirs:
            return "dir"
        return None

    def children(self, path: str) -> list[str]:
        with self._lock:
            return sorted(self.dirs.get(path, ()))

    def upper_path(self, ref: StagedFile) -> Path:
        return self.upper / ref.upper

    # ---- changes --------------------------------------------------------------------------

    def _replay(self, record: dict[str, Any]) -> None:
        op = record.get("op")
        if op == "put":
            upper = str(record["upper"])
            try:
                st = os.stat(self.upper / upper)
                ref = StagedFile(upper, st.st_size, st.st_mtime_ns, st.st_atime_ns)
            except FileNotFoundError:
                ref = StagedFile(upper)
            self._put(record["path"], ref)
        elif op == "rm":
            self._rm(record["path"])
        elif op == "mkdir":
            self._mkdir(record["path"])
        elif op == "rmdir":
            self._rmdir(record["path"])
        elif op == "mv":
            self._mv(record["src"], record["dst"])
        elif op == "swap":
            self._swap(record["src"], record["dst"])
        elif op == "link":
            self._symlink(record["path"], record["target"])
        elif op == "meta":
            self._set_meta(record)
        elif op == "commit":
            self.commit_keys.append(str(record["key"]))

    def new_upper(self) -> StagedFile:
        """A new, empty upper file (not yet part of the view; ``put`` makes it so)."""
        with self._lock:
            upper = str(next(self._counter))
        fd = os.open(self.upper / upper, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.close(fd)
        return StagedFile(upper)

    def put(self, path: str, ref: StagedFile) -> None:
        with self._lock:
            self._append({"op": "put", "path": path, "upper": ref.upper})
            self._put(path, ref)

    def _put(self, path: str, ref: StagedFile) -> None:
        old = self.files.get(path)
        self.files[path] = ref
        self._link(path)
        if isinstance(old, StagedFile) and old.upper != ref.upper:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.upper / old.upper)

    def remove(self, path: str) -> None:
        with self._lock:
            self._append({"op": "rm", "path": path})
            self._rm(path)
            self.keep_reserve()

    def _rm(self, path: str) -> None:
        old = self.files.pop(path, None)
        self.meta.pop(path, None)
        self._unlink(path)
        if isinstance(old, StagedFile):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.upper / old.upper)

    def mkdir(self, path: str) -> None:
        with self._lock:
            self._append({"op": "mkdir", "path": path})
            self._mkdir(path)

    def _mkdir(self, path: str) -> None:
        self.dirs.setdefault(path, set())
        self._link(path)

    def rmdir(self, path: str) -> None:
        with self._lock:
            self._append({"op": "rmdir", "path": path})
            self._rmdir(path)

    def _rmdir(self, path: str) -> None:
        self.dirs.pop(path, None)
        self.meta.pop(path, None)
        self._unlink(path)

    def rename(self, src: str, dst: str) -> None:
        """Move a file or folder; a file at ``dst`` is replaced, a folder there must be empty."""
        with self._lock:
            self._append({"op": "mv", "src": src, "dst": dst})
            self._mv(src, dst)

    def _mv(self, src: str, dst: str) -> None:
        if src in self.files:
            ref = self.files.pop(src)
            meta = self.meta.pop(src, None)
            self._unlink(src)
            if dst in self.dirs:
                self._rmdir(dst)
            if dst in self.files:
                self._rm(dst)
            self.files[dst] = ref
            if meta is not None:
                self.meta[dst] = meta
            self._link(dst)
            return
        if src not in self.dirs:
            return
        if dst in self.dirs:
            self._rmdir(dst)
        self._move_tree(src, dst)
        self._unlink(src)
        self._link(dst)

    def _move_tree(self, src: str, dst: str) -> None:
        """Re-key a folder's files, folders and metadata from ``src`` to ``dst``."""
        prefix = src + "/"
        for path in [p for p in self.files if p.startswith(prefix)]:
            self.files[dst + path[len(src):]] = self.files.pop(path)
        for folder in [d for d in self.dirs if d == src or d.startswith(prefix)]:
            self.dirs[dst + folder[len(src):]] = self.dirs.pop(folder)
        for path in [p for p in self.meta if p == src or p.startswith(prefix)]:
            self.meta[dst + path[len(src):]] = self.meta.pop(path)

    def exchange(self, src: str, dst: str) -> None:
        """rename(2) with RENAME_EXCHANGE: two existing paths trade places."""
        with self._lock:
            self._append({"op": "swap", "src": src, "dst": dst})
            self._swap(src, dst)

    def _swap(self, src: str, dst: str) -> None:
        if self.kind(src) is None or self.kind(dst) is None:
            return
        parking = f"{src}\x00swap"  # no real path holds a NUL
        for one, other in ((src, parking), (dst, src), (parking, dst)):
            if one in self.files:
                self.files[other] = self.files.pop(one)
                meta = self.meta.pop(one, None)
                if meta is not None:
                    self.meta[other] = meta
            else:
                self._move_tree(one, other)

    def symlink(self, path: str, target: str) -> None:
        """A new symlink at ``path`` (the caller checked the target stays inside)."""
        with self._lock:
            self._append({"op": "link", "path": path, "target": target})
            self._symlink(path, target)

    def _symlink(self, path: str, target: str) -> None:
        self.files[path] = symlink_entry(path, target)
        self._link(path)

    def set_meta(self, path: str, *, mode: int | None = None,
                 times: tuple[int, int] | None = None,
                 xattr: tuple[str, bytes | None] | None = None) -> None:
        """Record a chmod, utimensat or set/removexattr of ``path`` (journaled)."""
        record: dict[str, Any] = {"op": "meta", "path": path}
        if mode is not None:
            record["mode"] = mode
        if times is not None:
            record["atime"], record["mtime"] = times
        if xattr is not None:
            name, value = xattr
            record["xattr"] = [name, None if value is None else base64.b64encode(value).decode()]
        with self._lock:
            self._append(record)
            self._set_meta(record)

    def _set_meta(self, record: dict[str, Any]) -> None:
        path = record["path"]
        meta = self.meta.get(path) or PathMeta()
        if "mode" in record:
            meta.mode = int(record["mode"]) & 0o7777
        if "mtime" in record:
            meta.atime_ns, meta.mtime_ns = int(record["atime"]), int(record["mtime"])
        if "xattr" in record:
            name, value = record["xattr"]
            if value is None:
                meta.xattrs.pop(name, None)
            else:
                meta.xattrs[name] = base64.b64decode(value)
        if meta:
            self.meta[path] = meta
        else:
            self.meta.pop(path, None)

    def mode(self, path: str, ref: FileRef | None = None) -> int:
        """The permission bits ``path`` shows: chmod-ed, or as its entry says."""
        meta = self.meta.get(path)
        if meta is not None and meta.mode is not None:
            return meta.mode
        if path in self.dirs and path not in self.files:
            return DIR_MODE
        if ref is None:
            ref = self.files.get(path)
        return 0o755 if isinstance(ref, ManifestEntry) and is_executable(ref) else FILE_MODE

    def staged_totals(self) -> tuple[int, int]:
        """Files staged here (written, not saved) and their bytes, for the stats attribute
        and the metrics; called from threads other than the event loop's, so under the
        lock every change takes. One pass over the folder's paths: base entries too."""
        with self._lock:
            sizes = [ref.size for ref in self.files.values() if isinstance(ref, StagedFile)]
        return len(sizes), sum(sizes)

    def resized(self, ref: StagedFile, size: int) -> None:
        """Record a staged file's new size after a write or truncate (no journal needed:
        the size is read from the upper file on load)."""
        ref.size = size
        ref.mtime_ns = time.time_ns()
        self.generation += 1

    def set_file_times(self, ref: StagedFile, atime_ns: int, mtime_ns: int) -> None:
        """utimensat of a staged file: its upper file keeps the times (read back on load),
        so later writes move them on as they would on any disk, with no journal line."""
        os.utime(self.upper / ref.upper, ns=(atime_ns, mtime_ns))
        ref.atime_ns, ref.mtime_ns = atime_ns, mtime_ns

    def _saved_as(self, path: str, ref: FileRef) -> tuple[bool, str | None]:
        """What a version keeps of ``path`` beyond its bytes: executable, symlink target."""
        target = symlink_target(ref) if isinstance(ref, ManifestEntry) else None
        if target is not None:
            return False, target
        return bool(self.mode(path, ref) & 0o111), None

    # ---- what a save needs ----------------------------------------------------------------

    def changes(self) -> Changes:
        with self._lock:
            base = self._base_entries
            added, modified = [], []
            for path, ref in self.files.items():
                old = base.get(path)
                if old is None:
                    added.append(path)
                elif (isinstance(ref, StagedFile) or ref.digest != old.digest
                      or self._saved_as(path, ref) != (is_executable(old), symlink_target(old))):
                    modified.append(path)
            deleted = [p for p in base if p not in self.files]
        return Changes(sorted(added), sorted(modified), sorted(deleted))

    def build_manifest(
        self, target: Manifest, on_hashed: Callable[[str], None] | None = None
    ) -> tuple[Manifest, dict[str, Path]]:
        """``target`` with this folder's changes applied, and the files to upload by digest.

        ``target`` is the base manifest, or the alias's current one for a forced save.
        Raises InvalidManifest when a change cannot apply to ``target``.
        """
        changes = self.changes()
        with self._lock:
            refs = {p: self.files[p] for p in changes.added + changes.modified}
            kept = {p: self._saved_as(p, r) for p, r in refs.items()}
        for path, (_, link) in kept.items():
            reason = link_escape(path, link) if link is not None else None
            if reason is not None:
                raise InvalidManifest(
                    f"symlink {path!r} -> {link!r} cannot be saved: {reason}; a link must stay "
                    "inside the artifact (it may have been moved since it was made)"
                )
        result = target.copy()
        for path in changes.deleted:
            if path in result:
                result.remove(path)
        uploads: dict[str, Path] = {}
        for path, ref in sorted(refs.items()):
            if isinstance(ref, StagedFile):
                local = self.upper / ref.upper
                # a file saved into an XXH128 version gets an XXH128 digest, as W&B gives
                # every file added to such an artifact
                digest = hash_file(local, target.digest_algorithm)
                entry = ManifestEntry(path, digest.digest, digest.size,
                                      extra=with_executable(digest.entry_extra(), kept[path][0]))
                uploads[digest.md5] = local
                if on_hashed:
                    on_hashed(path)
            else:
                extra = dict(ref.extra)
                if kept[path][1] is None:
                    extra = with_executable(extra, kept[path][0])
                entry = ManifestEntry(path, ref.digest, ref.size, ref.ref, ref.birth_artifact_id,
                                      extra, dict(ref.unknown))
            result.add(entry)  # replaces the entry at ``path``, if any
        return result, uploads


class Staging:
    """Every staged folder of one mount (``root`` is this mount's staging folder)."""

    def __init__(self, root: Path) -> None:
        self.root = private_folder(root)  # staged bytes and names are no one else's
        self.folders: dict[FolderKey, StagedFolder] = {}

    def path_for(self, key: FolderKey) -> Path:
        return self.root / key.relpath()

    def totals(self) -> tuple[int, int, int]:
        """Folders staged, and the files and bytes staged in them (any thread)."""
        folders = list(self.folders.values())  # a copy: the loop may add one meanwhile
        files = size = 0
        for folder in folders:
            n, nbytes = folder.staged_totals()
            files, size = files + n, size + nbytes
        return len(folders), files, size

    def on_disk(self) -> Iterator[tuple[FolderKey, VersionInfo | None, Path]]:
        """Staged folders a previous daemon left (journal present), loaded or not."""
        if not self.root.is_dir():
            return
        for journal in self.root.glob("*/*/*/journal.jsonl"):
            try:
                key, base = StagedFolder.read_header(journal.parent)
            except (OSError, ValueError, KeyError, TypeError):
                continue
            yield key, base, journal.parent

    def detach(self, key: FolderKey) -> Callable[[], None]:
        """Stop tracking a folder's staging; returns the (blocking) removal of its files."""
        folder = self.folders.pop(key, None)
        if folder is not None:
            return folder.destroy
        path = self.path_for(key)
        return lambda: shutil.rmtree(path, ignore_errors=True)

