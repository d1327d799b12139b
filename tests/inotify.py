"""Linux inotify through ctypes, for tests that must show a file was never opened.

The kernel reports every open of a watched file (IN_OPEN), by any process: a test watches a
file a manifest references and checks that the server process, while it stores and serves
that manifest, never opens it. No package wraps inotify in the test environment; these are
four libc calls.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import select
from pathlib import Path
from types import TracebackType

__all__ = ["OpenWatch"]

_IN_OPEN = 0x00000020
_IN_ACCESS = 0x00000001
_IN_NONBLOCK = 0o4000
_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


class OpenWatch:
    """Watches one file for opens and reads; ``opened()`` says whether any came since the
    last call (and forgets them)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.fd = -1

    def __enter__(self) -> OpenWatch:
        fd = _libc.inotify_init1(_IN_NONBLOCK)
        if fd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1")
        self.fd = fd
        if _libc.inotify_add_watch(fd, os.fsencode(self.path), _IN_OPEN | _IN_ACCESS) < 0:
            os.close(fd)
            raise OSError(ctypes.get_errno(), f"inotify_add_watch {self.path}")
        return self

    def opened(self) -> bool:
        seen = False
        while select.select([self.fd], [], [], 0.2)[0]:
            try:
                seen = bool(os.read(self.fd, 65536)) or seen
            except BlockingIOError:
                break
        return seen

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        os.close(self.fd)
