"""Small file-system helpers every layer that writes files uses: atomic writes and hashing."""

from __future__ import annotations

import contextlib
import itertools
import os
import secrets
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

from artifactfs.core.chunks import CHUNK_SIZE
from artifactfs.core.digests import ContentDigest, ContentHasher

__all__ = ["READ_BLOCK", "atomic_writer", "hash_file", "hash_stream", "write_atomically"]

READ_BLOCK = 4 * CHUNK_SIZE

# temporary names for write_atomically: this run, then the pid (which a fork changes)
_RUN = secrets.token_hex(4)
_NEXT = itertools.count()


def hash_stream(
    stream: BinaryIO, on_bytes: Callable[[int], None] | None = None
) -> ContentDigest:
    """Digest, size and chunk index of everything ``stream`` yields, in one pass."""
    hasher = ContentHasher()
    while block := stream.read(READ_BLOCK):
        hasher.update(block)
        if on_bytes:
            on_bytes(len(block))
    return hasher.result()


def hash_file(path: str | os.PathLike[str]) -> ContentDigest:
    with open(path, "rb") as f:
        return hash_stream(f)


@contextlib.contextmanager
def atomic_writer(
    dest: Path, *, tmp_dir: Path | None = None, durable: bool = False
) -> Iterator[BinaryIO]:
    """Write ``dest`` so that readers see either nothing or the whole file.

    The bytes go to a temporary file in ``tmp_dir`` (same file system as ``dest``), which is
    renamed over ``dest`` only when the block ends without an error; on error it is removed.
    ``durable`` adds fsync of the file and its folder, for data that must survive a crash.
    """
    folder = tmp_dir or dest.parent
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            if durable:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, dest)
        if durable:
            dir_fd = os.open(dest.parent, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_atomically(
    dest: str, data: bytes | memoryview, *, tmp_dir: str,
    before_rename: Callable[[int], None] | None = None,
) -> None:
    """``atomic_writer`` for bytes already in memory, with no file object.

    The content cache writes a file for every small file a mount reads; there,
    ``mkstemp``'s random names and a buffered writer took a third of each write. The
    temporary name is this process's own (run token, pid, counter), created exclusively.
    ``before_rename`` gets the descriptor once every byte is written. Raises OSError,
    leaving no temporary file behind.
    """
    while True:
        tmp = f"{tmp_dir}/.tmp-{_RUN}-{os.getpid()}-{next(_NEXT)}"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        except FileExistsError:  # left by a dead process that had this pid
            continue
        break
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            if before_rename is not None:
                before_rename(fd)
        finally:
            os.close(fd)
        os.replace(tmp, dest)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
