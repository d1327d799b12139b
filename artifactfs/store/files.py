"""Small file-system helpers every layer that writes files uses: atomic writes and hashing."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

from artifactfs.core.chunks import CHUNK_SIZE
from artifactfs.core.digests import ContentDigest, ContentHasher

__all__ = ["READ_BLOCK", "atomic_writer", "hash_file", "hash_stream"]

READ_BLOCK = 4 * CHUNK_SIZE


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
