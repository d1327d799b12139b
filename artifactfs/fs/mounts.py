"""What the kernel says is mounted where: finding live and stale artifactfs mounts."""

from __future__ import annotations

import errno
import os
import subprocess
from pathlib import Path

__all__ = ["FSTYPE", "artifactfs_mounts", "fuse_mount_type", "is_stale", "unmount"]

FSTYPE = "fuse.artifactfs"


def _unescape(field: str) -> str:
    """Mount tables escape space, tab, newline and backslash as octal (``\\040``)."""
    out, i = [], 0
    while i < len(field):
        if field[i] == "\\" and field[i + 1 : i + 4].isdigit():
            out.append(chr(int(field[i + 1 : i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def fuse_mount_type(mountpoint: Path) -> str | None:
    """The file-system type mounted exactly at ``mountpoint``, or None."""
    target = os.path.abspath(mountpoint)
    found = None
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            sep = fields.index("-")
            if _unescape(fields[4]) == target:
                found = fields[sep + 1]  # the last mount on top wins
    return found


def artifactfs_mounts() -> list[Path]:
    """Every artifactfs mount the kernel lists (any user's; only one's own answer)."""
    found = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            if fields[fields.index("-") + 1] == FSTYPE:
                found.append(Path(_unescape(fields[4])))
    return found


def mount_device(mountpoint: Path) -> str | None:
    """``major:minor`` of the file system mounted at ``mountpoint`` (read from mountinfo, so
    asking does not send a request to the mount itself)."""
    target = os.path.abspath(mountpoint)
    found = None
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            if _unescape(fields[4]) == target:
                found = fields[2]
    return found


def set_readahead(mountpoint: Path, kib: int) -> bool:
    """Let the kernel read ahead ``kib`` KiB on this mount (and so send larger requests).

    The FUSE default of 128 KiB splits a sequential read into many small requests; each costs
    a round trip through the daemon. Needs root; returns False where it cannot be set.
    """
    device = mount_device(mountpoint)
    if device is None:
        return False
    try:
        Path(f"/sys/class/bdi/{device}/read_ahead_kb").write_text(f"{kib}\n")
    except OSError:
        return False
    return True


def is_stale(mountpoint: Path) -> bool:
    """True when a FUSE mount is there but its daemon is gone (ENOTCONN).

    Asks with statfs, which always reaches the daemon: a stat may be answered from the
    kernel's attribute cache for a while after the daemon died.
    """
    try:
        os.statvfs(mountpoint)
    except OSError as exc:
        return exc.errno in (errno.ENOTCONN, errno.ECONNABORTED)
    return False


def unmount(mountpoint: Path, *, lazy: bool = False) -> subprocess.CompletedProcess[str]:
    args = ["fusermount3", "-u"] + (["-z"] if lazy else []) + [str(mountpoint)]
    return subprocess.run(args, capture_output=True, text=True, timeout=30)
