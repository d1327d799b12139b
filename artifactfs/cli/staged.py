"""``artifactfs save``, ``status`` and ``discard``: staged writes under a live mount."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import click

from artifactfs.cli.output import emit_json, fail
from artifactfs.fs.mounts import FSTYPE, fuse_mount_type

__all__ = ["discard", "save", "status"]


def _locate(path: Path) -> tuple[Path, str]:
    """The artifactfs mount holding ``path`` and the path inside it."""
    target = Path(os.path.abspath(path))
    for candidate in (target, *target.parents):
        if fuse_mount_type(candidate) == FSTYPE:
            return candidate, target.relative_to(candidate).as_posix()
    fail(f"{path} is not inside an artifactfs mount; mount one with 'artifactfs mount DIR'")
    raise AssertionError


def _ask(path: Path, body: dict[str, Any]) -> dict[str, Any]:
    from artifactfs.fs.control_client import request

    mountpoint, rel = _locate(path)
    try:
        address = os.getxattr(mountpoint, "user.artifactfs.control").decode()
    except OSError as exc:
        fail(f"the mount at {mountpoint} does not answer ({exc.strerror}); is its daemon "
             "alive? 'artifactfs mount' on it again recovers a dead mount")
    try:
        answer = request(address, {**body, "path": rel})
    except OSError as exc:
        fail(f"cannot reach the daemon of {mountpoint}: {exc.strerror or exc}")
    if not answer.get("ok"):
        fail(str(answer.get("error", "the mount refused")))
    return answer


@click.command()
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--alias", "aliases", multiple=True, help="Also give the new version this alias.")
@click.option("-m", "--message", default=None, help="Description of the new version.")
@click.option("--force", is_flag=True,
              help="Commit even if the alias moved since staging began (on top of its new "
                   "version).")
def save(path: Path, aliases: tuple[str, ...], message: str | None, force: bool) -> None:
    """Commit the changes staged in an alias folder as a new version.

    PATH is a NAME:ALIAS folder under a mount, or anything inside one. Only the bytes the
    registry lacks are uploaded; the new version inherits every unchanged file. The folder's
    alias and 'latest' move to it. Prints PROJECT/NAME:vN.

    \b
    Example:
      cp -r new-images/ /mnt/art/vision/dataset/mnist:latest/images/
      artifactfs save /mnt/art/vision/dataset/mnist:latest --alias reviewed -m "more images"
    """
    answer = _ask(path, {"op": "save", "aliases": list(aliases), "message": message,
                         "force": force})
    click.echo(answer["version"])


@click.command()
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
def status(path: Path, as_json: bool) -> None:
    """List the paths added (A), modified (M) and deleted (D) in an alias folder."""
    answer = _ask(path, {"op": "status"})
    if as_json:
        emit_json({k: answer[k] for k in ("folder", "base", "added", "modified", "deleted")})
        return
    base = answer["base"] or "nothing (new collection)"
    click.echo(f"{answer['folder']}: changes on top of {base}")
    lines = [("A", p) for p in answer["added"]] + [("M", p) for p in answer["modified"]] + [
        ("D", p) for p in answer["deleted"]
    ]
    for mark, p in sorted(lines, key=lambda x: x[1]):
        click.echo(f"{mark} {p}")
    if not lines:
        click.echo("nothing staged")


@click.command()
@click.argument("path", type=click.Path(path_type=Path))
def discard(path: Path) -> None:
    """Drop every change staged in an alias folder; it shows its version again."""
    answer = _ask(path, {"op": "discard"})
    click.echo(f"discarded {answer['discarded']} changes in {answer['folder']}")
