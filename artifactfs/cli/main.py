"""The ``artifactfs`` command.

Every command reads its configuration from the environment (see ``artifactfs --help``) and
turns user errors into one ``error: ...`` line and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from artifactfs import __version__
from artifactfs.cli.aliases import alias as alias_group
from artifactfs.cli.cache import cache
from artifactfs.cli.common import confirm, make_api, user_errors
from artifactfs.cli.db import db
from artifactfs.cli.gc import gc
from artifactfs.cli.keys import key_list, key_revoke
from artifactfs.cli.lineage import lineage
from artifactfs.cli.migrate import migrate
from artifactfs.cli.mount import mount, umount
from artifactfs.cli.output import (
    emit_json,
    fail,
    human_size,
    log_to_stderr,
    shown_ref,
    table,
)
from artifactfs.cli.serve import key, serve
from artifactfs.cli.staged import discard, save, status
from artifactfs.cli.stats import stats
from artifactfs.cli.wandb_io import export, import_
from artifactfs.core.errors import Conflict, NotFound
from artifactfs.core.limits import check_tags
from artifactfs.core.names import LATEST, parse_ref, validate_alias

if TYPE_CHECKING:
    pass

F = TypeVar("F", bound=Callable[..., Any])

ENV_HELP = """\b
Environment:
  ARTIFACTFS_REGISTRY    registry server URL (unset: the embedded store)
  ARTIFACTFS_STORE       embedded store folder (~/.local/share/artifactfs/store)
  ARTIFACTFS_DB          a store's database URL instead (sqlite:///PATH, postgresql://...)
  ARTIFACTFS_BLOBS       and its blob folder (file:///PATH)
  ARTIFACTFS_API_KEY     API key for the server
  ARTIFACTFS_ENTITY      entity to work in (local)
  ARTIFACTFS_CACHE_DIR   shared content cache (~/.cache/artifactfs)
  ARTIFACTFS_CACHE_SIZE  cache bound, e.g. 20G (10G)
"""


@click.group(epilog=ENV_HELP, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="artifactfs")
@click.option("--verbose", "-v", is_flag=True,
              help="Also print what artifactfs and its libraries log at INFO level (serve "
                   "and a mount's daemon keep logs of their own).")
def cli(verbose: bool) -> None:
    """Versioned ML artifacts: push, list, download, verify, and mount them as folders.

    \b
    Quick start (embedded store, no server needed):
      artifactfs push data/ vision/mnist --type dataset
      artifactfs ls vision
      artifactfs download vision/mnist:latest --root ./mnist
      artifactfs verify vision/mnist:latest --root ./mnist
    """
    # warnings of the cache, the S3 store and libraries as "warning: ..." lines, once, for
    # every command (serve and mount's daemon set up their own log over it)
    log_to_stderr(verbose=verbose)


@cli.command()
@click.argument("sources", nargs=-1, required=True, type=click.Path(exists=True))
@click.argument("target")
@click.option("--type", "type_", required=True, help="Artifact type, e.g. dataset or model.")
@click.option("--alias", "aliases", multiple=True, help="Alias to give the new version (repeat).")
@click.option("--tag", "tags", multiple=True,
              help="Tag (W&B's free label, e.g. 'needs review') for the new version (repeat).")
@click.option("--description", "-d", default=None, help="Description of the new version.")
@click.option("--metadata", default=None, help="Metadata as a JSON object.")
@click.option("--digest-algorithm", type=click.Choice(["MD5", "XXH128"], case_sensitive=False),
              default="MD5", show_default=True,
              help="Hash of the file digests and the artifact digest (W&B's choice: XXH128 "
              "is many times quicker on large files; wandb 0.29 and later read it).")
@user_errors
def push(
    sources: tuple[str, ...], target: str, type_: str, aliases: tuple[str, ...],
    tags: tuple[str, ...], description: str | None, metadata: str | None,
    digest_algorithm: str,
) -> None:
    """Upload files and folders as the next version of PROJECT/NAME.

    A folder's contents go to the artifact's root; a file keeps its base name. Only bytes
    the registry lacks are uploaded. Prints the new version as PROJECT/NAME:vN, or
    "unchanged: PROJECT/NAME:vN" when a version of it holds these very files already (no
    version is made; the --alias labels move to it).

    \b
    Example:
      artifactfs push train/ labels.csv vision/mnist --type dataset --alias best
      artifactfs push model.pt vision/resnet --type model --tag baseline --tag "needs review"
    """
    ref = parse_ref(target)
    if ":" in target:
        fail(f"push target {target!r} takes no alias; use --alias to label the new version")
    for alias in aliases:
        if alias != LATEST:
            validate_alias(alias)
    meta = _json_object(metadata) if metadata else None
    checked_tags = check_tags(list(tags))  # refused before a byte is uploaded
    api = make_api()
    working_in = api.config.entity  # what the printed name is relative to
    if ref.entity:
        api.config = api.config.replace(entity=ref.entity)
    from artifactfs.sdk import Artifact

    art = Artifact(ref.name, type_, description=description, metadata=meta,
                   digest_algorithm=digest_algorithm.upper())
    art._client = api
    for source in sources:
        path = Path(source)
        if path.is_dir():
            art.add_dir(path)
        else:
            art.add_file(path)
    if not art.manifest.entries:
        fail("nothing to push: the sources hold no files")
    art.aliases = list(aliases)
    art.tags = checked_tags
    art.save(project=ref.project)
    # identical content: the version that holds it, no new one (W&B does the same)
    click.echo(("unchanged: " if art._unchanged else "")
               + shown_ref(art.entity, art.project, art.name, working_in))


def _json_object(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise ValueError(f"--metadata is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise ValueError("--metadata must be a JSON object, such as '{\"rows\": 10}'")
    return value


@cli.command(name="ls")
@click.argument("path", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@user_errors
def ls_(path: str | None, as_json: bool) -> None:
    """List projects, a project's artifacts, an artifact's versions, or a version's files.

    \b
    artifactfs ls                       projects
    artifactfs ls vision                artifacts of project vision
    artifactfs ls vision/mnist          versions of vision/mnist with their aliases
    artifactfs ls vision/mnist:latest   files of that version
    """
    api = make_api()
    registry, entity = api.registry, api.config.entity
    if not path:
        projects = registry.list_projects(entity)
        if as_json:
            emit_json([{"entity": entity, "project": p} for p in projects])
        elif not projects:  # on stderr: a script reading the list sees an empty one
            click.echo(f"no artifacts in entity {entity} of {registry.description} yet; "
                       "add some with 'artifactfs push DIR PROJECT/NAME --type TYPE'",
                       err=True)
        else:
            for p in projects:
                click.echo(p)
        return
    if "/" not in path and ":" not in path:
        ref_project = path
        parse_ref(f"{path}/x")  # validates the project name
        collections = registry.list_collections(entity, ref_project)
        if not collections and ref_project not in registry.list_projects(entity):
            raise NotFound(f"project {entity}/{ref_project} not found")
        if as_json:
            emit_json([c.to_dict() for c in collections])
        else:
            table([(c.name, c.type, str(c.version_count)) for c in collections],
                  ("NAME", "TYPE", "VERSIONS"))
        return
    ref = api.parse_ref(path)
    if ":" not in path:
        assert ref.entity is not None
        versions = registry.list_versions(ref.entity, ref.project, ref.name)
        if not versions:
            raise NotFound(f"artifact {ref.entity}/{ref.project}/{ref.name} not found")
        if as_json:
            emit_json([v.to_dict() for v in versions])
        else:
            table(
                [(v.version, ",".join(v.aliases), ",".join(v.tags), human_size(v.size),
                  str(v.file_count), _when(v.created_at), v.digest) for v in versions],
                ("VERSION", "ALIASES", "TAGS", "SIZE", "FILES", "CREATED", "DIGEST"),
            )
        return
    art = api.artifact(path)
    if as_json:
        emit_json({"version": art.json_encode(), "manifest": art.manifest.to_dict()})
    else:
        table([(e.path, human_size(e.size), e.digest) for e in art.manifest],
              ("PATH", "SIZE", "DIGEST"))


def _when(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S")


@cli.command()
@click.argument("ref")
@click.option("--root", type=click.Path(file_okay=False), default=None,
              help="Folder to download into (default ./artifacts/NAME:vN).")
@user_errors
def download(ref: str, root: str | None) -> None:
    """Download REF ([ENTITY/]PROJECT/NAME[:ALIAS]) and verify every file written.

    Files already present with the right digest are not fetched again. Prints the folder.
    """
    art = make_api().artifact(ref)
    click.echo(art.download(root))


@cli.command()
@click.argument("ref")
@click.option("--root", type=click.Path(file_okay=False), default=None,
              help="Folder to check (default ./artifacts/NAME:vN).")
@click.option("--references", is_flag=True,
              help="Also read every reference's source (file, http(s), s3) again and check "
                   "it against the digest logged; without --root, only the references.")
@user_errors
def verify(ref: str, root: str | None, references: bool) -> None:
    """Check that a folder holds exactly REF's files with matching digests.

    Exits 0 when it does; exits 1 naming the first missing, extra or changed file. The
    folder check skips what references hold, as W&B's does; --references checks them at
    their sources, from this machine and with its configuration for each scheme.
    """
    api = make_api()
    art = api.artifact(ref)
    shown = shown_ref(art.entity, art.project, art.name, api.config.entity)
    if root is not None or not references:
        art.verify(root)
        click.echo(f"ok: {root or art._default_root()} matches {shown}")
    if references:
        checked, unchecked = art.verify_references()
        note = f" ({unchecked} logged with checksum=False, not checkable)" if unchecked else ""
        click.echo(f"ok: {checked} references of {shown} match their sources{note}")


@cli.command()
@click.argument("ref")
@click.option("--delete-aliases", is_flag=True, help="Also drop the aliases it holds.")
@click.option("--yes", "-y", is_flag=True,
              help="Do not ask for confirmation (needed when stdin is not a terminal).")
@user_errors
def delete(ref: str, delete_aliases: bool, yes: bool) -> None:
    """Delete one version; refused while it holds aliases unless --delete-aliases.

    On a terminal it asks first; in a script pass --yes.

    \b
    Examples:
      artifactfs delete vision/mnist:v2
      artifactfs delete vision/mnist:best --delete-aliases --yes
    """
    api = make_api()
    art = api.artifact(ref)
    shown = shown_ref(art.entity, art.project, art.name, api.config.entity)
    held = art.aliases
    if held and not delete_aliases:  # refused before asking: no answer could change that
        raise Conflict(f"{shown} holds aliases {', '.join(held)}; remove them first "
                       "(artifactfs alias rm) or pass --delete-aliases")
    if not yes:
        labels = f", aliases {', '.join(held)}" if held else ""
        confirm(f"delete {shown} ({art.file_count} files, {human_size(art.size)}{labels})?",
                yes=yes, what="delete")
    art.delete(delete_aliases=delete_aliases)
    click.echo(f"deleted {shown_ref(art.entity, art.project, art.name, api.config.entity)}")


cli.add_command(mount)
cli.add_command(umount)
cli.add_command(serve)
cli.add_command(key)
cli.add_command(db)
cli.add_command(gc)
cli.add_command(migrate)
cli.add_command(save)
cli.add_command(status)
cli.add_command(discard)
cli.add_command(import_)
cli.add_command(export)
cli.add_command(alias_group)
cli.add_command(cache)
key.add_command(key_list)
key.add_command(key_revoke)
cli.add_command(lineage)
cli.add_command(stats)


def main() -> None:
    try:
        cli(prog_name="artifactfs")
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(130)


if __name__ == "__main__":
    main()
