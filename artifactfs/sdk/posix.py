"""Putting symlinks and executable bits of a download on disk (see core/posix.py).

A download recreates a symlink entry only when its target stays inside the download root;
every link is checked before any byte is written, so a version holding a link that would
lead out is refused whole instead of half written.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable
from pathlib import Path

from artifactfs.core.errors import InvalidManifest
from artifactfs.core.manifest import ManifestEntry
from artifactfs.core.posix import link_escape, symlink_target
from artifactfs.sdk.paths import safe_join

__all__ = ["check_links", "current_umask", "local_link_matches", "place_link", "set_executable"]


def check_links(entries: Iterable[ManifestEntry]) -> None:
    """Refuse (InvalidManifest) the first symlink entry whose target could lead out."""
    for entry in entries:
        target = symlink_target(entry)
        if target is None:
            continue
        reason = link_escape(entry.path, target)
        if reason is not None:
            raise InvalidManifest(
                f"symlink {entry.path!r} -> {target!r} is not downloaded: {reason}; a link "
                "must stay inside the folder it is downloaded to"
            )


def place_link(root: Path, entry: ManifestEntry) -> Path:
    """Make ``root/entry.path`` the entry's symlink, replacing a file or link there.

    Raises InvalidManifest when a folder is in the way or the target would lead out.
    """
    check_links([entry])
    target = symlink_target(entry)
    assert target is not None
    dest = safe_join(root, entry.path)
    if dest.is_symlink():
        if os.readlink(dest) == target:
            return dest
    elif dest.is_dir():
        raise InvalidManifest(f"cannot make symlink {entry.path!r}: {dest} is a folder")
    dest.parent.mkdir(parents=True, exist_ok=True)
    # made beside it, then renamed over: never a moment without the link or the old file
    temporary = dest.with_name(f".{dest.name}.{os.getpid()}.link")
    with contextlib.suppress(FileNotFoundError):
        temporary.unlink()
    os.symlink(target, temporary)
    os.replace(temporary, dest)
    return dest


def local_link_matches(path: Path, entry: ManifestEntry) -> bool:
    """True when ``path`` is the symlink ``entry`` describes."""
    return path.is_symlink() and os.readlink(path) == symlink_target(entry)


def set_executable(path: Path, executable: bool, umask: int) -> None:
    """Give a downloaded file the mode git gives a checked-out one: 0o777 (executable) or
    0o666, less the umask. The bytes were written to a private temporary file first (0o600),
    so without this every file would be readable by its owner only."""
    wanted = (0o777 if executable else 0o666) & ~umask
    if os.stat(path).st_mode & 0o7777 != wanted:
        os.chmod(path, wanted)


def current_umask() -> int:
    """The process's umask, read without changing it (os.umask would, for every thread)."""
    with contextlib.suppress(OSError, ValueError, StopIteration):
        with open("/proc/self/status") as status:
            line = next(x for x in status if x.startswith("Umask:"))
        return int(line.split()[1], 8)
    mask = os.umask(0o022)  # kernels before 4.7 do not show it
    os.umask(mask)
    return mask
