"""Options of one mount, built once by the CLI and passed down."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

__all__ = ["MountOptions"]


@dataclass(frozen=True, slots=True)
class MountOptions:
    mountpoint: Path
    staging_dir: Path
    """Where writes into alias folders are staged until saved (kept across restarts)."""
    alias_timeout: float = 5.0
    """Seconds the kernel may keep ``NAME:ALIAS -> vN`` and folder listings."""
    read_timeout: float = 30.0
    """Seconds a read may wait on the registry (retries included) before it fails with EIO."""
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
