"""Mount options as ``/etc/fstab``, ``mount -o`` and systemd mount units write them.

``mount -t fuse.artifactfs SOURCE DIR -o ro,readahead=32,keyfile=/etc/artifactfs/key``
runs ``/sbin/mount.fuse.artifactfs`` (util-linux looks for ``mount.TYPE.SUBTYPE`` first),
which is ``mount.artifactfs`` (cli/mount_helper.py); it and ``artifactfs mount -o ...``
read the comma-separated list here into three parts:

- the mount command's own options (``readahead=32`` is ``--readahead 32``);
- where the registry is and how to reach it (``registry=``, ``store=``, ``keyfile=``...),
  which take the place of the environment a login shell would have set: a mount made at
  boot by systemd has none of it;
- options that belong to mount(8) or systemd (``_netdev``, ``noauto``, ``x-systemd.*``...),
  which only say when and how to mount and are skipped, as mount(8) itself skips them.

The API key is never an option: an fstab line is world-readable (mode 0644), and so is
``/proc/PID/cmdline`` of the helper. It is read from a key file only its owner can read,
named by ``keyfile=`` (``read_key_file``).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from artifactfs.config import Config, parse_cache_size
from artifactfs.core.errors import InvalidName
from artifactfs.core.names import validate_name

__all__ = [
    "KERNEL_FLAGS",
    "MountOptionError",
    "ParsedMountOptions",
    "apply_settings",
    "fsname_for",
    "parse_mount_options",
    "read_key_file",
]


class MountOptionError(InvalidName):
    """An ``-o`` option is unknown, misspelt, lacks its value or has one of the wrong form;
    or the key file it names cannot be used. The message is one line for the terminal."""


def _whole(text: str) -> int:
    value = int(text)
    if value < 0:
        raise ValueError
    return value


def _seconds(text: str) -> float:
    value = float(text)
    if not value >= 0:  # also refuses nan
        raise ValueError
    return value


_FLAG = None
"""An option that takes no value (``ro``): its table entry's parser."""

_COMMAND: dict[str, tuple[str, Callable[[str], Any] | None, Any]] = {
    # -o name: (the mount command's parameter, value parser or _FLAG, value of a flag)
    "ro": ("read_only", _FLAG, True),
    "read_only": ("read_only", _FLAG, True),
    "rw": ("read_only", _FLAG, False),
    "allow_other": ("allow_other", _FLAG, True),
    "open_per_file": ("open_per_file", _FLAG, True),
    "nonempty": ("allow_non_empty", _FLAG, True),  # libfuse 2's name for it
    "allow_non_empty": ("allow_non_empty", _FLAG, True),
    "debug": ("debug", _FLAG, True),
    "alias_timeout": ("alias_timeout", _seconds, None),
    "read_timeout": ("read_timeout", _seconds, None),
    "threads": ("threads", _whole, None),
    "memory": ("memory_mb", _whole, None),
    "readahead": ("readahead", _whole, None),
    "request_size": ("request_size", _whole, None),
    "prefetch_files": ("prefetch_files", _whole, None),
    "kernel_readahead": ("kernel_readahead", _whole, None),
    "staging_dir": ("staging_dir", Path, None),
    "log_file": ("log_file", Path, None),
    "run": ("run_id", str, None),
    "metrics_port": ("metrics_port", _whole, None),
}
"""``-o`` names of the mount command's options. ``-`` in a name is read as ``_``, so
``read-only`` and ``read_only`` are one option."""

_SETTINGS = ("registry", "store", "keyfile", "entity", "cache_dir", "cache_size")
"""``-o`` names of what the environment sets otherwise (``apply_settings``)."""

KERNEL_FLAGS = frozenset({
    "nosuid", "suid", "nodev", "dev", "noexec", "exec", "noatime", "atime",
    "nodiratime", "diratime", "relatime", "norelatime", "strictatime", "lazytime",
    "sync", "async", "dirsync",
})
"""Generic mount flags (mount(8), "FILESYSTEM-INDEPENDENT MOUNT OPTIONS") that mount(8)
hands to a helper and libfuse applies to the FUSE mount: passed on to it as given."""

_MOUNT_ONLY = frozenset({
    "_netdev", "nofail", "noauto", "auto", "user", "nouser", "users", "owner", "group",
    "defaults", "loud", "silent",
})
"""Options that tell mount(8), ``mount -a`` or systemd when and by whom to mount. mount(8)
drops some before it runs the helper (``noauto``, ``x-*``) and hands on others (``_netdev``,
``nofail``); run by hand, the helper may see any of them. They change nothing here."""

_ALWAYS = frozenset({"default_permissions", "auto_unmount"})
"""FUSE options every artifactfs mount has already: accepted, changing nothing."""

_SECRETS = frozenset({"key", "api_key", "apikey", "password", "token", "secret"})


@dataclass(frozen=True, slots=True)
class ParsedMountOptions:
    command: dict[str, Any] = field(default_factory=dict)
    """The mount command's parameters the options set, by parameter name."""
    settings: dict[str, str] = field(default_factory=dict)
    """``registry``, ``store``, ``keyfile``, ``entity``, ``cache_dir``, ``cache_size``."""
    kernel_flags: tuple[str, ...] = ()
    """Generic mount flags for the kernel's mount (``KERNEL_FLAGS``), in the order given."""
    skipped: tuple[str, ...] = ()
    """Options of mount(8) and systemd, and with ``sloppy`` unknown ones: not used."""
    fsname: str | None = None
    """``fsname=``: the source the mount table shows (the helper sets it to SOURCE)."""


def parse_mount_options(texts: Iterable[str], *, sloppy: bool = False) -> ParsedMountOptions:
    """Read ``-o`` lists (``"ro,readahead=32"``; several are read in order, and a later
    option wins, as with mount(8)).

    ``sloppy`` (``mount -s``) skips unknown options instead of refusing them. Raises
    MountOptionError naming the option: unknown, a flag given a value, a value missing or
    of the wrong form, or a secret given in the clear.
    """
    command: dict[str, Any] = {}
    settings: dict[str, str] = {}
    kernel: list[str] = []
    skipped: list[str] = []
    fsname = None
    for text in texts:
        for item in text.split(","):
            item = item.strip()
            if not item:
                continue
            name, has_value, value = item.partition("=")
            key = name.replace("-", "_")
            if key in _SECRETS:
                raise MountOptionError(
                    f"-o {name}=... : an API key is never taken from the mount options (an "
                    "fstab line can be read by every user); write it to a file only its "
                    "owner can read (chmod 600 FILE) and give -o keyfile=FILE")
            if key in _MOUNT_ONLY or key in _ALWAYS or key.startswith(("x_", "comment")):
                skipped.append(item)
            elif key == "fsname":
                fsname = fsname_for(value)
                if fsname is None:
                    raise MountOptionError(f"-o {item}: fsname must be printable ASCII "
                                           "without commas, backslashes or spaces")
            elif key in KERNEL_FLAGS:
                if has_value:
                    raise MountOptionError(f"-o {item}: {name} takes no value")
                kernel.append(key)
            elif key in _SETTINGS:
                if not value:
                    raise MountOptionError(f"-o {name} needs a value: {name}=...")
                settings[key] = value
            elif key in _COMMAND:
                param, parse, flag_value = _COMMAND[key]
                if parse is _FLAG:
                    if has_value:
                        raise MountOptionError(f"-o {item}: {name} takes no value")
                    command[param] = flag_value
                    continue
                if not value:
                    raise MountOptionError(f"-o {name} needs a value: {name}=...")
                try:
                    command[param] = parse(value)
                except ValueError:
                    kind = ("a whole number, 0 or more" if parse is _whole
                            else "a number of seconds, 0 or more" if parse is _seconds
                            else "a value")
                    raise MountOptionError(f"-o {item}: {name} must be {kind}") from None
            elif sloppy:
                skipped.append(item)
            else:
                raise MountOptionError(
                    f"-o {item}: unknown mount option {name!r}; artifactfs takes "
                    f"{', '.join(sorted({*_COMMAND, *_SETTINGS}))}, the generic flags "
                    "(nosuid, noexec, noatime...) and mount(8)'s own (_netdev, noauto, "
                    "nofail, x-systemd.*); see docs/mount.md")
    return ParsedMountOptions(command, settings, tuple(dict.fromkeys(kernel)), tuple(skipped),
                              fsname)


def fsname_for(source: str) -> str | None:
    """``source`` as the mount table's source column may show it, or None if it cannot.

    mount(8) (``mount -a`` above all) takes a line of fstab for mounted when the table
    shows its source and mount point, so the mount shows SOURCE: otherwise a second
    ``mount -a`` would mount every artifactfs line again and fail. libfuse splits options at
    commas and pyfuse3 sends them as ASCII, hence the limits; a URL's user and password, if
    any, are left out (the table is world-readable).
    """
    if "@" in source and "://" in source:
        scheme, _, rest = source.partition("://")
        host, slash, path = rest.partition("/")
        source = f"{scheme}://{host.rpartition('@')[2]}{slash}{path}"
    if (not source or not source.isascii() or not source.isprintable()
            or any(c in source for c in ", \\\t")):
        return None
    return source


_KEY_BYTES = 4096
"""A key file is one line (keys are 40-odd characters); a larger file is not one."""


def read_key_file(path: Path) -> str:
    """The API key in ``path``: its first line, without surrounding white space.

    Refused (MountOptionError) unless it is a regular file owned by the user reading it or
    by root, that neither its group nor others may read or write (mode 0600 or 0400): a
    key others can read is a key others hold, and saying so at mount time is the moment it
    can still be fixed. A symlink is followed (``/etc/artifactfs/key`` may be a link into a
    secrets mount); the file it leads to is what is checked.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOCTTY | os.O_NONBLOCK)
    except OSError as exc:
        raise MountOptionError(f"-o keyfile={path}: cannot open it: {exc.strerror}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise MountOptionError(f"-o keyfile={path}: not a regular file")
        if st.st_mode & 0o077:
            raise MountOptionError(
                f"-o keyfile={path}: the key file may be read by others (mode "
                f"{stat.S_IMODE(st.st_mode):04o}); make it private: chmod 600 {path}")
        if st.st_uid not in (os.geteuid(), 0):
            raise MountOptionError(
                f"-o keyfile={path}: owned by uid {st.st_uid}, neither this user nor root; "
                f"chown it to the user who mounts")
        data = os.read(fd, _KEY_BYTES + 1)
    finally:
        os.close(fd)
    if len(data) > _KEY_BYTES:
        raise MountOptionError(f"-o keyfile={path}: more than {_KEY_BYTES} bytes; a key file "
                               "holds one key, on one line")
    lines = data.decode(errors="replace").strip().splitlines()
    key = lines[0].strip() if lines else ""
    if not key:
        raise MountOptionError(f"-o keyfile={path}: the file is empty")
    return key


def apply_settings(config: Config, settings: dict[str, str]) -> Config:
    """``config`` with the registry, store, key, entity and cache the options name.

    ``registry=`` and ``store=`` name two different registries, so not both. ``store=``
    takes the place of ARTIFACTFS_DB and ARTIFACTFS_BLOBS as ``--store`` would. Raises
    MountOptionError, or InvalidName for a bad entity or cache size.
    """
    if "registry" in settings and "store" in settings:
        raise MountOptionError("-o registry= and -o store= name two registries; give one")
    changes: dict[str, object] = {}
    if "registry" in settings:
        url = settings["registry"]
        if not url.startswith(("http://", "https://")):
            raise MountOptionError(f"-o registry={url}: not an http:// or https:// URL")
        changes["registry_url"] = url
    if "store" in settings:
        folder = Path(settings["store"])
        if not folder.is_absolute():
            raise MountOptionError(f"-o store={folder}: give an absolute path (mount(8) and "
                                   "systemd run the helper from /)")
        changes.update(registry_url=None, store_dir=folder, db_url=None, blobs_url=None)
    if "keyfile" in settings:
        changes["api_key"] = read_key_file(Path(settings["keyfile"]))
    if "entity" in settings:
        changes["entity"] = validate_name(settings["entity"], "-o entity")
    if "cache_dir" in settings:
        changes["cache_dir"] = Path(settings["cache_dir"])
    if "cache_size" in settings:
        parse_cache_size(settings["cache_size"], "-o cache_size")
        changes["cache_size_setting"] = settings["cache_size"]
    return config.replace(**changes) if changes else config
