"""Options of one mount, built once by the CLI and passed down.

``MountOptions`` is the one place the mount's defaults are written: ``artifactfs mount``
takes each option's default (and the default its ``--help`` shows) from here, and the
daemon reads nothing else, so a default changed here changes all three.
"""

from __future__ import annotations

from dataclasses import MISSING, dataclass, fields
from pathlib import Path
from typing import Any

__all__ = ["MountOptions", "option_default"]


@dataclass(frozen=True, slots=True)
class MountOptions:
    mountpoint: Path
    staging_dir: Path
    """Where writes into alias folders are staged until saved (kept across restarts)."""
    alias_timeout: float = 5.0
    """Seconds the kernel may keep ``NAME:ALIAS -> vN`` and folder listings."""
    read_timeout: float = 30.0
    """Seconds a read may wait on the registry (retries included) before it fails with EIO;
    also the registry client's own limit, so a worker thread is freed soon after."""
    threads: int = 16
    """Worker threads for registry calls, hashing and cache I/O; as many again for staged
    files."""
    memory_bytes: int = 64 << 20
    """Budget for verified chunks held in memory (recent reads and read-ahead)."""
    readahead_chunks: int = 16
    """Cap of the sequential read-ahead window, in 1 MiB chunks (at most half of memory)."""
    request_chunks: int = 8
    """Most chunks one range request asks for while reading ahead."""
    prefetch_files: int = 64
    """Small files after the one opened, in listing order, fetched ahead in parallel."""
    kernel_readahead_kib: int = 4096
    """Kernel read-ahead on the mount; larger means fewer, larger read requests."""
    read_only: bool = False
    """Every folder read-only, alias folders included: what training jobs mount. With the
    project's pyfuse3 the kernel then opens files without asking the daemon (no-open)."""
    open_per_file: bool = False
    """Keep sending every open to the daemon on a read-only mount (no no-open)."""
    allow_other: bool = False
    debug: bool = False
    run_id: str | None = None
    """``--run``: the run whose reads are recorded, once per version (fs/uses.py)."""
    metrics_port: int | None = None
    """``--metrics-port``: serve Prometheus metrics on this loopback port (0: any free one);
    None, none are served (fs/metrics.py)."""
    kernel_flags: tuple[str, ...] = ()
    """Generic mount flags from ``-o`` (``noexec``, ``noatime``...: fs/fstab.py), handed to
    libfuse for the kernel's mount."""
    fsname: str = "artifactfs"
    """The source the mount table shows: an fstab line's SOURCE when mount(8) mounted it."""


_DEFAULTS: dict[str, Any] = {
    f.name: f.default for f in fields(MountOptions) if f.default is not MISSING
}


def option_default(name: str) -> Any:
    """The default of the ``MountOptions`` field ``name``, for the CLI's options.

    Raises KeyError for a field without a default (``mountpoint``, ``staging_dir``) or a
    name that is no field: a CLI option renamed out of step fails at import, not silently.
    """
    return _DEFAULTS[name]
