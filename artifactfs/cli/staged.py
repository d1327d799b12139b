"""``artifactfs save``, ``status`` and ``discard``: staged writes under a live mount."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from artifactfs.cli.output import emit_json, fail, progress_factory
from artifactfs.fs.mounts import FSTYPE, fuse_mount_type

__all__ = ["discard", "save", "status"]

_LOGS = "~/.local/state/artifactfs/logs/, or the --log-file it was given"


def _locate(path: Path) -> tuple[Path, str]:
    """The artifactfs mount holding ``path`` and the path inside it."""
    target = Path(os.path.abspath(path))
    for candidate in (target, *target.parents):
        if fuse_mount_type(candidate) == FSTYPE:
            return candidate, target.relative_to(candidate).as_posix()
    fail(f"{path} is not inside an artifactfs mount; mount one with 'artifactfs mount DIR'")
    raise AssertionError


def _ask(path: Path, body: dict[str, Any],
         on_progress: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Send ``body`` to the daemon of the mount holding ``path``; its final answer.

    Every way the daemon can fail to answer ends in one line saying what happened and what
    to look at next, never a traceback.
    """
    from artifactfs.fs.control_client import ControlError, request

    mountpoint, rel = _locate(path)
    try:
        address = os.getxattr(mountpoint, "user.artifactfs.control").decode()
    except OSError as exc:
        fail(f"the mount at {mountpoint} does not answer ({exc.strerror}); is its daemon "
             "alive? 'artifactfs mount' on it again recovers a dead mount")
    after = (" The save may or may not have been committed: 'artifactfs status "
             f"{path}' shows whether the changes are still staged, and 'artifactfs ls' "
             "the versions." if body["op"] == "save" else "")
    try:
        answer = request(address, {**body, "path": rel}, on_progress=on_progress)
    except ControlError as exc:
        fail(f"the daemon of {mountpoint} did not answer: {exc}; it may have stopped (see "
             f"its log under {_LOGS}).{after}")
    except OSError as exc:
        fail(f"cannot reach the daemon of {mountpoint} ({exc.strerror or exc}); it may have "
             f"stopped (see its log under {_LOGS}); 'artifactfs mount {mountpoint}' again "
             "recovers a dead mount")
    if not answer.get("ok"):
        fail(str(answer.get("error", "the mount refused without saying why")))
    return answer


def _field(answer: dict[str, Any], name: str, kind: type = str) -> Any:
    """``answer[name]`` when it has the type expected, else one line saying so."""
    value = answer.get(name)
    if not isinstance(value, kind):
        fail(f"the mount's daemon answered without a valid {name!r}; see its log under "
             f"{_LOGS}")
    return value


class _SaveProgress:
    """A progress bar of a save's uploads, on a terminal only."""

    def __init__(self) -> None:
        self._advance: Callable[[int], None] | None = None
        self._shown = 0
        self._make = progress_factory()

    def __call__(self, event: dict[str, Any]) -> None:
        if self._make is None or event.get("phase") != "upload":
            return
        total, done = event.get("bytes"), event.get("bytes_done")
        if not isinstance(total, int) or not isinstance(done, int) or total <= 0:
            return
        if self._advance is None:
            self._advance = self._make("uploading", total)
        if done > self._shown:
            self._advance(done - self._shown)
            self._shown = done


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
      cp -r new-images/. /mnt/art/vision/dataset/mnist:latest/images/
      artifactfs save /mnt/art/vision/dataset/mnist:latest --alias reviewed -m "more images"
    """
    body = {"op": "save", "aliases": list(aliases), "message": message, "force": force}
    try:
        answer = _ask(path, body, on_progress=_SaveProgress())
    except KeyboardInterrupt:
        fail("interrupted; the mount's daemon goes on with the save. 'artifactfs status "
             f"{path}' shows when the changes are no longer staged (then they are saved)",
             code=130)
    click.echo(_field(answer, "version"))
    if answer.get("still_staged"):
        click.echo(f"note: files in {path} changed while it was being saved; those changes "
                   "stay staged: run 'artifactfs save' again to make the next version",
                   err=True)


@click.command()
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
def status(path: Path, as_json: bool) -> None:
    """List the paths added (A), modified (M) and deleted (D) in an alias folder."""
    answer = _ask(path, {"op": "status"})
    for name in ("added", "modified", "deleted"):
        if not all(isinstance(p, str) for p in _field(answer, name, list)):
            fail(f"the mount's daemon answered a bad {name!r} list; see its log under {_LOGS}")
    _field(answer, "folder")
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
    count = _field(answer, "discarded", int)
    click.echo(f"discarded {count} change{'' if count == 1 else 's'} in "
               f"{_field(answer, 'folder')}")
