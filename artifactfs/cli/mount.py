"""``artifactfs mount`` and ``artifactfs umount``: starting, finding and stopping daemons.

Without ``--foreground`` the command starts the daemon as a new session (the same command
with ``--foreground``, output to the log file), waits until the mount answers, prints where
it is, its pid and its log, and returns. A mount left behind by a daemon that died is
detected (the kernel answers ENOTCONN) and unmounted before mounting again.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import logging.handlers
import os
import signal
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

import click
from click.core import ParameterSource

from artifactfs.cli.output import fail
from artifactfs.config import Config
from artifactfs.core.errors import ArtifactFSError
from artifactfs.core.runs import validate_run_id
from artifactfs.files import private_folder
from artifactfs.fs.fstab import ParsedMountOptions, apply_settings, parse_mount_options
from artifactfs.fs.mounts import FSTYPE, fuse_mount_type, is_stale, unmount
from artifactfs.fs.options import MountOptions, option_default

__all__ = ["mount", "mount_options", "umount"]

_READY_TIMEOUT = 60.0


_LOG_BYTES = 10 << 20
"""A daemon's log is rotated at this size, keeping ``_LOG_KEPT`` older files beside it."""
_LOG_KEPT = 3
_LOG_DAYS = 30
"""Mount logs in the default folder untouched this many days are removed by the next mount:
each mount point has a log of its own, and mounts of short-lived folders (a job's scratch
space) would otherwise leave one each, for ever."""


def _prune_logs(folder: Path, keep: Path) -> None:
    """Remove ``folder``'s mount logs (rotated ones too) older than ``_LOG_DAYS``."""
    cutoff = time.time() - _LOG_DAYS * 86400
    for old in folder.glob("mount-*.log*"):
        with contextlib.suppress(OSError):
            if old.name.startswith(keep.name):
                continue
            if old.lstat().st_mtime < cutoff:
                old.unlink()


def _log_path(config: Config, mountpoint: Path) -> Path:
    tag = hashlib.sha256(str(mountpoint).encode()).hexdigest()[:10]
    name = "".join(c if c.isalnum() else "_" for c in mountpoint.name)[:40] or "root"
    return config.state_dir / "logs" / f"mount-{name}-{tag}.log"


def _check_mountpoint(mountpoint: Path, allow_non_empty: bool) -> None:
    """Refuse a live mount; recover a stale one; refuse what is not a folder, and a folder
    with files in it unless told (the mount would hide them, as if they were gone)."""
    kind = fuse_mount_type(mountpoint)
    if kind is not None:
        if not is_stale(mountpoint):
            if kind == FSTYPE:
                fail(f"{mountpoint} is already mounted by artifactfs; "
                     f"run 'artifactfs umount {mountpoint}' first")
            fail(f"{mountpoint} already has a {kind} file system mounted on it")
        click.echo(f"{mountpoint}: found a mount left by a stopped daemon; unmounting it", err=True)
        if (unmount(mountpoint).returncode != 0 and unmount(mountpoint, lazy=True).returncode
                and fuse_mount_type(mountpoint) is not None):  # auto_unmount may have won
            fail(f"could not clear the dead mount at {mountpoint}; run "
                 f"'fusermount3 -uz {mountpoint}' and try again")
    if not mountpoint.is_dir():
        fail(f"mount point {mountpoint} is not a folder; create it with mkdir -p {mountpoint}")
    if not allow_non_empty:
        try:
            with os.scandir(mountpoint) as found:
                held = next(found, None)
        except OSError as exc:
            fail(f"cannot read the mount point {mountpoint}: {exc.strerror}")
        if held is not None:
            fail(f"mount point {mountpoint} is not empty (it holds {held.name!r}, which the "
                 "mount would hide); mount on an empty folder, or pass --allow-non-empty")


@click.command()
@click.argument("mountpoint", type=click.Path(file_okay=False, path_type=Path))
@click.option("--foreground", "-f", is_flag=True, help="Stay in the foreground; log to stderr.")
@click.option("--alias-timeout", type=float, default=option_default("alias_timeout"),
              show_default=True,
              help="Seconds NAME:ALIAS and folder listings are trusted before asked again.")
@click.option("--read-timeout", type=float, default=option_default("read_timeout"),
              show_default=True,
              help="Seconds a read waits on an unreachable registry (retries included) "
                   "before failing with EIO.")
@click.option("--threads", type=int, default=option_default("threads"), show_default=True,
              help="Worker threads for fetching, hashing and cache I/O (staged writes "
                   "get as many of their own).")
@click.option("--memory", "memory_mb", type=int,
              default=option_default("memory_bytes") >> 20, show_default=True,
              help="MiB of verified chunks kept in memory for re-reads and read-ahead.")
@click.option("--readahead", type=int, default=option_default("readahead_chunks"),
              show_default=True,
              help="Maximum sequential read-ahead window, in 1 MiB chunks (at most half "
                   "of --memory).")
@click.option("--request-size", type=int, default=option_default("request_chunks"),
              show_default=True,
              help="MiB one range request may ask for while reading ahead.")
@click.option("--prefetch-files", type=int, default=option_default("prefetch_files"),
              show_default=True,
              help="Small files after the one opened (listing order) to fetch ahead.")
@click.option("--kernel-readahead", type=int, default=option_default("kernel_readahead_kib"),
              show_default=True,
              help="KiB the kernel reads ahead on the mount (root only); 0 keeps its default.")
@click.option("--read-only", is_flag=True,
              help="Show every folder read-only, NAME:ALIAS included (for training jobs). "
                   "Opens and closes then never reach the daemon: a warm epoch is served "
                   "from the kernel's page cache alone.")
@click.option("--open-per-file", is_flag=True,
              help="With --read-only: still send every open and close to the daemon, as "
                   "with a pyfuse3 that lacks the project's patch (for comparison).")
@click.option("--allow-other", is_flag=True,
              help="Let other users read the mount (needs user_allow_other for non-root); "
                   "file:// and s3:// references are then not read (EIO).")
@click.option("--staging-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where writes wait until saved (default ~/.local/state/artifactfs/staging).")
@click.option("--log-file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Daemon log (default under ~/.local/state/artifactfs/logs/).")
@click.option("--allow-non-empty", is_flag=True,
              help="Mount over a folder that holds files (they are hidden while mounted).")
@click.option("--run", "run_id", envvar="ARTIFACTFS_RUN_ID", default=None,
              help="Record that this run (an id from artifactfs.init()) used each version "
                   "read, once per version at its first read. A read-only key may record "
                   "it. Default: $ARTIFACTFS_RUN_ID; unset, nothing is recorded.")
@click.option("--metrics-port", type=click.IntRange(0, 65535), default=None,
              help="Serve Prometheus metrics at http://127.0.0.1:PORT/metrics (loopback "
                   "only; 0 picks a free port, shown by 'artifactfs stats'). Default: none "
                   "(docs/metrics.md).")
@click.option("--debug", is_flag=True, help="Log every request (very verbose).")
@click.option("-o", "fstab_options", multiple=True, metavar="OPT[,OPT...]",
              help="Options as /etc/fstab and mount -o write them: ro, allow_other, "
                   "readahead=N and the other options above by name (read_only, "
                   "alias_timeout=S...); registry=URL, store=DIR, keyfile=FILE (the key, "
                   "mode 0600), entity=, cache_dir=, cache_size=; nosuid, noexec, noatime; "
                   "_netdev, noauto, nofail and x-systemd.* are skipped (docs/mount.md).")
def mount(
    mountpoint: Path, foreground: bool, alias_timeout: float, read_timeout: float,
    threads: int, memory_mb: int, readahead: int, request_size: int, prefetch_files: int,
    kernel_readahead: int, read_only: bool, open_per_file: bool, allow_other: bool,
    staging_dir: Path | None, log_file: Path | None, allow_non_empty: bool, run_id: str | None,
    metrics_port: int | None, debug: bool, fstab_options: tuple[str, ...],
) -> None:
    """Mount the registry at MOUNTPOINT as PROJECT/TYPE/NAME:ALIAS/ folders.

    Bytes are fetched when read, checked against the manifest's digests and kept in the
    shared cache. NAME:vN folders are read-only; writes into NAME:ALIAS folders are staged
    on local disk until 'artifactfs save'. Returns once the mount answers; the daemon keeps
    running in the background until 'artifactfs umount MOUNTPOINT'.

    \b
    Example:
      mkdir -p /mnt/art && artifactfs mount /mnt/art
      ls /mnt/art/vision/dataset/mnist:latest/
      getfattr -d /mnt/art/vision/dataset/mnist:latest
      cp extra.csv /mnt/art/vision/dataset/mnist:latest/
      artifactfs save /mnt/art/vision/dataset/mnist:latest -m "add extra.csv"
      artifactfs umount /mnt/art
      artifactfs mount --read-only /mnt/train   # what a training job reads from
      artifactfs mount --read-only --run 1a2b3c4d /mnt/train   # lineage: records its reads
      artifactfs mount -o ro,registry=https://reg:8080,keyfile=/etc/artifactfs/key /mnt/art
    """
    config = Config.from_env()
    kernel_flags: tuple[str, ...] = ()
    fsname = option_default("fsname")
    if fstab_options:
        try:
            parsed = parse_mount_options(fstab_options)
            config = apply_settings(config, parsed.settings)
        except ArtifactFSError as exc:
            fail(str(exc))
        given = _with_fstab_options(click.get_current_context(), parsed)
        alias_timeout, read_timeout = given["alias_timeout"], given["read_timeout"]
        threads, memory_mb, readahead = given["threads"], given["memory_mb"], given["readahead"]
        request_size, prefetch_files = given["request_size"], given["prefetch_files"]
        kernel_readahead, read_only = given["kernel_readahead"], given["read_only"]
        open_per_file, allow_other = given["open_per_file"], given["allow_other"]
        staging_dir, log_file = given["staging_dir"], given["log_file"]
        allow_non_empty, run_id, debug = (given["allow_non_empty"], given["run_id"],
                                          given["debug"])
        metrics_port = given["metrics_port"]
        kernel_flags, fsname = parsed.kernel_flags, parsed.fsname or fsname
    mountpoint = mountpoint.expanduser().absolute()
    if (alias_timeout < 0 or read_timeout <= 0 or threads < 1 or memory_mb < 1
            or request_size < 1 or readahead < 0 or prefetch_files < 0
            or kernel_readahead < 0):
        fail("timeouts, --threads, --memory and --request-size must be positive; the "
             "read-ahead and prefetch options may be 0 (off)")
    try:
        config.cache_size  # noqa: B018 -- read here, not first in the daemon: said on stderr
    except ArtifactFSError as exc:
        fail(str(exc))
    if run_id is not None:
        try:
            validate_run_id(run_id)
        except ArtifactFSError as exc:
            fail(f"--run: {exc}")
    _check_mountpoint(mountpoint, allow_non_empty)
    if metrics_port:
        _check_metrics_port(metrics_port)
    default_log = log_file is None
    log_file = (log_file or _log_path(config, mountpoint)).absolute()
    try:
        log_file.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        fail(f"cannot make the log folder {log_file.parent}: {exc.strerror}; choose another "
             "place with --log-file")
    if default_log:
        _prune_logs(log_file.parent, log_file)
    staging = (staging_dir or config.state_dir / "staging").absolute()
    try:  # here, where it is one line on the terminal, not a traceback in the daemon's log
        private_folder(staging)
    except (OSError, ArtifactFSError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        fail(f"cannot use the staging folder {staging}: {reason}; choose another with "
             "--staging-dir")
    options = mount_options(
        mountpoint, staging,
        alias_timeout=alias_timeout, read_timeout=read_timeout, threads=threads,
        memory_mb=memory_mb, readahead=readahead, request_size=request_size,
        prefetch_files=prefetch_files, kernel_readahead=kernel_readahead,
        read_only=read_only, open_per_file=open_per_file, allow_other=allow_other,
        debug=debug,
    )
    options = dataclasses.replace(options, run_id=run_id or None, metrics_port=metrics_port,
                                  kernel_flags=kernel_flags, fsname=fsname)

    def serve() -> None:
        from artifactfs.fs.daemon import serve_mount

        # rotated, so that a daemon that runs for months (with --debug, say) cannot fill
        # the disk; stdout and stderr (a crash's traceback) go to the file as it was opened
        handler: logging.Handler = (
            logging.handlers.RotatingFileHandler(log_file, maxBytes=_LOG_BYTES,
                                                 backupCount=_LOG_KEPT)
            if not sys.stderr.isatty() else logging.StreamHandler())
        logging.basicConfig(
            handlers=[handler],
            level=logging.DEBUG if debug else logging.INFO,
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
            force=True,  # the daemon's log, in place of the CLI's "warning:" lines
        )
        if not debug:  # one line per request would cost more than some of the requests
            logging.getLogger("httpx").setLevel(logging.WARNING)
        try:
            serve_mount(config, options)
        except (RuntimeError, ArtifactFSError) as exc:  # pyfuse3.init raises RuntimeError
            fail(f"cannot mount {mountpoint}: {exc}")

    if foreground:
        serve()
    else:
        _start_background(mountpoint, log_file, serve)


def _check_metrics_port(port: int) -> None:
    """Say here, on the terminal, that the --metrics-port is taken, rather than in the
    daemon's log (which checks again when it binds: something may take it meanwhile)."""
    import errno
    import socket

    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server binds
        try:
            probe.bind(("127.0.0.1", port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                fail(f"--metrics-port {port} on 127.0.0.1 is already in use; choose another "
                     "(0 picks a free one)")
            fail(f"--metrics-port {port} cannot be used: {exc.strerror}")


def _with_fstab_options(ctx: click.Context, parsed: ParsedMountOptions) -> dict[str, Any]:
    """The command's parameters with those ``-o`` sets. An option given both ways with two
    values is refused, rather than one silently chosen (``--readahead 8 -o readahead=4``);
    ``$ARTIFACTFS_RUN_ID`` counts as given, as ``--run``'s default."""
    values = dict(ctx.params)
    for name, value in parsed.command.items():
        source = ctx.get_parameter_source(name)
        told = source in (ParameterSource.COMMANDLINE, ParameterSource.ENVIRONMENT)
        if told and values[name] != value:
            flag = next(p.opts[0] for p in ctx.command.params if p.name == name)
            fail(f"{flag} and -o give {name.replace('_', '-')} two values; give one")
        values[name] = value
    return values


def mount_options(
    mountpoint: Path, staging_dir: Path, *, alias_timeout: float, read_timeout: float,
    threads: int, memory_mb: int, readahead: int, request_size: int, prefetch_files: int,
    kernel_readahead: int, read_only: bool, open_per_file: bool, allow_other: bool,
    debug: bool,
) -> MountOptions:
    """The daemon's options from the command's, in the units ``MountOptions`` keeps (MiB
    of memory become bytes; 1 MiB chunks stay chunks). The command's defaults come from
    ``MountOptions``, so its defaults given here build ``MountOptions``'s own."""
    return MountOptions(
        mountpoint=mountpoint, staging_dir=staging_dir,
        alias_timeout=alias_timeout, read_timeout=read_timeout,
        threads=threads, memory_bytes=memory_mb << 20, readahead_chunks=readahead,
        request_chunks=request_size,
        kernel_readahead_kib=kernel_readahead, prefetch_files=prefetch_files,
        read_only=read_only, open_per_file=open_per_file, allow_other=allow_other,
        debug=debug,
    )


def _start_background(mountpoint: Path, log_file: Path, serve: Callable[[], None]) -> None:
    """Fork the daemon and return once the mount answers.

    A fork, not a new interpreter: the daemon starts from this process's imports, which
    saves a Python start-up (about a quarter of a second) on every mount. Nothing here has
    started a thread yet, so forking is safe.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    try:  # what this start writes to the log begins here: older runs' lines are not news
        start = log_file.stat().st_size
    except OSError:
        start = 0
    pid = os.fork()
    if pid == 0:
        _run_daemon(log_file, serve)
    deadline = time.monotonic() + _READY_TIMEOUT
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            tail = _tail(log_file, start)
            fail(f"the mount daemon stopped at start (exit {os.waitstatus_to_exitcode(status)})"
                 f"; its log {log_file} says:\n{tail}")
        if fuse_mount_type(mountpoint) == FSTYPE and not is_stale(mountpoint):
            click.echo(f"mounted {mountpoint} (pid {pid}); log: {log_file}")
            return
        time.sleep(0.02)
    os.kill(pid, signal.SIGTERM)
    fail(f"the mount did not answer within {_READY_TIMEOUT:.0f} s; see {log_file}")


def _run_daemon(log_file: Path, serve: Callable[[], None]) -> NoReturn:
    """The forked child: its own session, output to the log, then serve until unmounted."""
    code = 1
    try:
        os.setsid()
        log = os.open(log_file, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(log, 1)
        os.dup2(log, 2)
        os.close(log)
        os.close(null)
        serve()
        code = 0
    except SystemExit as exc:  # fail() in the daemon: its message went to the log
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:
        traceback.print_exc()
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)


def _tail(path: Path, start: int = 0, lines: int = 15) -> str:
    """The last ``lines`` lines ``path`` gained after byte ``start`` (all of it if it was
    rotated meanwhile and is now shorter)."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(start if f.tell() >= start else 0)
            text = f.read().decode(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:]) or "(nothing)"


@click.command()
@click.argument("mountpoint", type=click.Path(path_type=Path))
@click.option("--lazy", "-z", is_flag=True, help="Detach now even if files are still open.")
def umount(mountpoint: Path, lazy: bool) -> None:
    """Unmount an artifactfs mount (the daemon then exits)."""
    mountpoint = mountpoint.expanduser().absolute()
    kind = fuse_mount_type(mountpoint)
    if kind is None:
        fail(f"{mountpoint} is not mounted")
    if kind != FSTYPE:
        fail(f"{mountpoint} holds a {kind} file system, not artifactfs")
    pid = _daemon_pid(mountpoint)
    result = unmount(mountpoint, lazy=lazy)
    if result.returncode != 0:
        reason = result.stderr.strip() or "fusermount3 failed"
        hint = "; files are still open there: close them, or use --lazy" if "busy" in reason else ""
        fail(f"{reason}{hint}")
    if pid is not None and not lazy:
        _wait_exit(pid)
    click.echo(f"unmounted {mountpoint}")


def _daemon_pid(mountpoint: Path) -> int | None:
    try:
        return int(json.loads(os.getxattr(mountpoint, "user.artifactfs.stats"))["pid"])
    except (OSError, ValueError, KeyError):
        return None  # a dead daemon, or one that does not say


def _wait_exit(pid: int, timeout: float = 10.0) -> None:
    """Wait until the daemon has finished (a zombie awaiting its parent counts as done)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            return
        if stat.rsplit(")", 1)[1].split()[0] in ("Z", "X"):
            return
        time.sleep(0.02)
