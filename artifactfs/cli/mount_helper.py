"""``mount.artifactfs``: the helper mount(8) runs for ``-t fuse.artifactfs`` and fstab lines.

For a type ``fuse.SUBTYPE`` util-linux's mount(8) runs ``/sbin/mount.fuse.SUBTYPE`` when
it exists (and only otherwise ``mount.fuse``, which would run a program named SUBTYPE,
our CLI, with arguments it does not take), as::

    /sbin/mount.fuse.artifactfs SOURCE DIR [-s] [-f] [-n] [-v] [-o OPTIONS] [-t TYPE]

``scripts/install-mount-helper.sh`` (run by ``make``) links that name to this console
script. It is ``artifactfs mount DIR -o OPTIONS`` with SOURCE read as where the registry
is: an ``http(s)://`` URL is a server (``registry=``), an absolute path an embedded store
(``store=``), and any other word (``artifactfs``, say) only a label, the registry then
coming from the options or the environment. The helper returns once the mount answers, as
mount(8) expects; the daemon goes on in its own session, and ``umount DIR`` ends it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import click

from artifactfs.cli.output import fail
from artifactfs.config import Config
from artifactfs.core.errors import ArtifactFSError
from artifactfs.fs.fstab import apply_settings, fsname_for, parse_mount_options

__all__ = ["main"]

_TYPES = ("fuse.artifactfs", "artifactfs")


class _Arguments(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        """One ``error:`` line and exit 1 (mount(8)'s "incorrect invocation"), as every
        other refusal of the CLI, in place of argparse's usage block and exit 2."""
        fail(f"{message}; usage: mount.artifactfs SOURCE DIR [-o OPTIONS]")


def _parser() -> argparse.ArgumentParser:
    parser = _Arguments(prog="mount.artifactfs", add_help=False)
    parser.add_argument("source")
    parser.add_argument("mountpoint")
    parser.add_argument("-o", dest="options", action="append", default=[])
    parser.add_argument("-t", dest="type", default="fuse.artifactfs")
    parser.add_argument("-s", dest="sloppy", action="store_true")
    parser.add_argument("-f", dest="fake", action="store_true")
    parser.add_argument("-n", dest="no_mtab", action="store_true")  # no mtab: nothing to skip
    parser.add_argument("-v", dest="verbose", action="store_true")
    return parser


def source_option(source: str) -> str | None:
    """The ``-o`` option SOURCE stands for: ``registry=URL``, ``store=DIR``, or None."""
    if source.startswith(("http://", "https://")):
        return f"registry={source}"
    if source.startswith("/"):
        return f"store={source}"
    return None


def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(sys.argv[1:] if argv is None else argv)
    if args.type not in _TYPES:
        fail(f"-t {args.type}: this helper mounts fuse.artifactfs only")
    options = [o for o in args.options if o]
    try:
        parsed = parse_mount_options(options, sloppy=args.sloppy)
        if args.sloppy:  # what -s tolerated is not handed on, where it would be refused
            options = [",".join(o for o in text.split(",") if o.strip() not in parsed.skipped)
                       for text in options]
        implied = source_option(args.source)
        named = sorted({"registry", "store"} & parsed.settings.keys())
        if implied is not None:
            if named:
                fail(f"the source {args.source} and -o {named[0]}= both say where the "
                     "registry is; give one (the source may be a label such as artifactfs)")
            options.append(implied)
        if parsed.fsname is None and fsname_for(args.source) is not None:
            options.append(f"fsname={fsname_for(args.source)}")  # so mount -a sees it mounted
        # every check the mount makes before it starts, the key file's mode included, so
        # that "mount -f" (and "mount -a --fake") answer for a line without mounting it
        apply_settings(Config.from_env(), parse_mount_options(options).settings)
    except ArtifactFSError as exc:
        fail(str(exc))
    if args.fake:
        if args.verbose:
            click.echo(f"mount.artifactfs: would mount {args.source} on {args.mountpoint}")
        return
    from artifactfs.cli.mount import mount

    command = [str(Path(args.mountpoint)), *(f"-o{o}" for o in options if o)]
    mount.main(args=command, prog_name="mount.artifactfs")
