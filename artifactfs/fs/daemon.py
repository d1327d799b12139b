"""Running one mount: wiring registry, cache, tree and reader to pyfuse3 on trio.

pyfuse3 keeps its session in module globals, so a process serves one mount. The daemon
unmounts cleanly when ``artifactfs umount`` (fusermount3) detaches it, and on SIGTERM and
SIGINT; ``auto_unmount`` makes the kernel drop the mount even if the process is killed.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import hashlib
import logging
import os
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyfuse3
import trio

from artifactfs.config import Config
from artifactfs.content import open_content
from artifactfs.core.collector import rarer_full_passes
from artifactfs.fs.control import control_socket_path, serve_control
from artifactfs.fs.metrics import MetricsExporter
from artifactfs.fs.ops import ArtifactOperations
from artifactfs.fs.options import MountOptions
from artifactfs.fs.reader import VerifiedReader
from artifactfs.fs.saving import FolderCommands
from artifactfs.fs.staging import Staging
from artifactfs.fs.tree import Tree
from artifactfs.fs.uses import UseRecorder
from artifactfs.fs.writes import FolderWriter
from artifactfs.registry import open_registry, with_key_entity

__all__ = ["serve_mount"]

log = logging.getLogger(__name__)


_M_ARENA_MAX = -8  # glibc's mallopt parameter number


def _limit_malloc_arenas(arenas: int = 2) -> None:
    """Let the worker threads share two malloc arenas instead of one per thread.

    Each worker allocates megabyte buffers for fetched runs; with an arena per thread
    (glibc's default, up to eight per core) every arena keeps its own freed megabytes, and
    the daemon's resident size grew by a third with no gain in speed. Must run before the
    threads start; a libc without mallopt is left alone.
    """
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).mallopt(_M_ARENA_MAX, arenas)


def serve_mount(
    config: Config, options: MountOptions, ready: Callable[[], None] | None = None
) -> None:
    """Mount and serve until unmounted or signalled. Blocks."""
    _limit_malloc_arenas()
    rarer_full_passes()
    registry = open_registry(config, read_timeout=options.read_timeout)
    config = with_key_entity(config, registry)  # the folders shown are the key's entity's
    content = open_content(config, registry)
    # the kernel asks again at once for a read that failed: a changed source answers that
    # with the error just found rather than with a second whole fetch
    content.references.keep_failures(1.0)
    if options.allow_other:
        # other users read through this daemon with its user's rights: a manifest's
        # file:///home/me/.ssh/id_rsa, or an object only this user's AWS keys reach, must
        # not become theirs to read (http(s) references carry no credentials)
        for scheme, what in (("file", "files"), ("s3", "AWS credentials")):
            content.references.refused[scheme] = (
                f"{scheme}:// references are not read by a mount shared with other users "
                f"(--allow-other): the daemon would use its own user's {what} for them")
    limiter = trio.CapacityLimiter(options.threads)

    async def blocking(func: Callable[..., Any], *args: Any) -> Any:
        with trio.fail_after(options.read_timeout):
            return await trio.to_thread.run_sync(
                functools.partial(func, *args), limiter=limiter, abandon_on_cancel=True
            )

    async def unbounded(func: Callable[..., Any], *args: Any) -> Any:
        """For work whose length grows with the data (copy-up, hashing, uploads on save)."""
        return await trio.to_thread.run_sync(functools.partial(func, *args), limiter=limiter)

    local_limiter = trio.CapacityLimiter(options.threads)

    async def local(func: Callable[..., Any], *args: Any) -> Any:
        """For the staging folder's files: threads of their own, so fetches stuck on a
        registry that hangs cannot fail a write, and no time limit (a staging disk that
        hangs holds writes up, as any local disk would), since an open or close given up
        on would leak its descriptor."""
        return await trio.to_thread.run_sync(
            functools.partial(func, *args), limiter=local_limiter
        )

    mount_id = hashlib.sha256(
        f"{registry.description}|{config.entity}|{options.mountpoint}".encode()
    ).hexdigest()[:16]
    staging = Staging(options.staging_dir / mount_id)
    tree = Tree(registry, config.entity, blocking, options.alias_timeout, staging, local,
                read_only=options.read_only)
    reader = VerifiedReader(
        content, blocking, memory_bytes=options.memory_bytes,
        readahead_cap=options.readahead_chunks, run_chunks=options.request_chunks,
    )
    writer = FolderWriter(tree, content, blocking, unbounded, local)
    ops = ArtifactOperations(tree, reader, writer, options, no_open=no_open_reads(options))
    if options.run_id is not None:
        # the run must be there (and the key's entity's) before the mount is: a job whose
        # uses could never be recorded is told at once, not by a warning per version
        run = registry.run(config.entity, options.run_id)
        ops.uses = UseRecorder(registry, config.entity, run.id, blocking)
        log.info("recording the versions read as used by run %s (%s)", run.id, run.path)
    commands = FolderCommands(tree, blocking, unbounded, local, ops.writers)
    control_path, control_folder = control_socket_path(config.runtime_dir, mount_id)
    ops.control_address = str(control_path)
    fuse_options = set(pyfuse3.default_options)
    fuse_options |= {f"fsname={options.fsname}", "subtype=artifactfs", "auto_unmount"}
    if options.read_only:
        fuse_options.add("ro")  # the kernel refuses every change before it reaches us
    if options.allow_other:
        fuse_options.add("allow_other")
    if options.debug:
        fuse_options.add("debug")
    # bound before the mount exists: a port in use fails the start, not a running mount
    exporter = (MetricsExporter.start(options.metrics_port, ops.stats, ops.read_times)
                if options.metrics_port is not None else None)
    if exporter is not None:
        ops.metrics_address = exporter.address
    fuse_options.update(options.kernel_flags)
    try:
        pyfuse3.init(ops, str(options.mountpoint), fuse_options)
    except BaseException:
        if exporter is not None:
            exporter.stop()
        raise
    log.info(
        "mounted %s (%s, entity %s) pid %d", options.mountpoint, registry.description,
        config.entity, os.getpid(),
    )
    if options.read_only:
        log.info(
            "read-only: %s", "files are opened by the kernel alone (no-open)" if ops.no_open
            else "every open reaches the daemon (--open-per-file)" if options.open_per_file
            else "the installed pyfuse3 lacks the inode-aware read "
                 "(scripts/install-pyfuse3.sh), so every open reaches the daemon",
        )

    detached = False
    try:
        detached = trio.run(_serve, ops, commands, control_path, ready)
    finally:
        if exporter is not None:
            exporter.stop()
        pyfuse3.close(unmount=not detached)
        registry.close()
        with contextlib.suppress(OSError):
            control_path.unlink()
            if control_folder is not None:
                control_folder.rmdir()
        log.info("unmounted %s", options.mountpoint)


def no_open_reads(options: MountOptions) -> bool:
    """Whether this mount answers OPEN with ENOSYS, so that the kernel opens and closes
    files without a round trip through the daemon (and keeps their pages cached).

    The kernel then reads every file with handle 0, so the daemon must be told the inode:
    pyfuse3 does so only with the project's patch, which says so in
    ``NO_HANDLE_READ_GIVES_INODE``. Only read-only mounts use it: writes into alias folders
    need their handles (an open descriptor of the staged copy, and knowing when the last
    writer closed before a save).
    """
    patched = bool(getattr(pyfuse3, "NO_HANDLE_READ_GIVES_INODE", False))
    return options.read_only and not options.open_per_file and patched


async def _serve(
    ops: ArtifactOperations, commands: FolderCommands, control_path: Path,
    ready: Callable[[], None] | None,
) -> bool:
    """Serve requests; True when the kernel detached the mount, False when signalled."""
    detached = False
    async with trio.open_nursery() as nursery:
        ops.nursery = nursery
        nursery.start_soon(_stop_on_signal, nursery.cancel_scope)
        await nursery.start(serve_control, commands, control_path)
        if ready:
            ready()
        await pyfuse3.main()
        detached = True
        nursery.cancel_scope.cancel()
    return detached


async def _stop_on_signal(scope: trio.CancelScope) -> None:
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async for signum in signals:
            log.info("received %s; unmounting", signal.Signals(signum).name)
            scope.cancel()
            return
