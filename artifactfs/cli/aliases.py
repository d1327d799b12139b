"""``artifactfs alias add`` and ``artifactfs alias rm``: moving a collection's labels.

An alias names one version of a collection at a time; adding one that another version holds
moves it. ``latest`` always names the newest version and is never moved or removed by hand
(the registry refuses, as it does for the SDK). Every alias given is checked before any is
changed, so a typo in the third leaves the first two as they were.
"""

from __future__ import annotations

import click

from artifactfs.cli.common import make_api, user_errors
from artifactfs.cli.output import shown_ref
from artifactfs.core.errors import InvalidName, NotFound
from artifactfs.core.names import LATEST, validate_alias
from artifactfs.core.records import VersionInfo

__all__ = ["alias"]

_LATEST_RULE = "'latest' always names the newest version; it cannot be {}"


@click.group()
def alias() -> None:
    """Give a version an alias, or take one away ('ls PROJECT/NAME' shows them)."""


def _shown(info: VersionInfo, working_in: str) -> str:
    return shown_ref(info.entity, info.project, f"{info.name}:{info.version}", working_in)


def _checked(aliases: tuple[str, ...], verb: str) -> list[str]:
    for name in aliases:
        if name == LATEST:
            raise InvalidName(_LATEST_RULE.format(verb))
        validate_alias(name)
    return list(dict.fromkeys(aliases))  # each once, in the order given


@alias.command("add")
@click.argument("ref")
@click.argument("aliases", nargs=-1, required=True)
@user_errors
def alias_add(ref: str, aliases: tuple[str, ...]) -> None:
    """Point each ALIAS at the version REF names ([ENTITY/]PROJECT/NAME[:ALIAS_OR_VERSION],
    latest by default), moving it off the version that held it.

    Prints one line per alias: 'ALIAS -> PROJECT/NAME:vN', and the version it moved from.

    \b
    Examples:
      artifactfs alias add vision/mnist:v3 best prod
      artifactfs alias add vision/mnist staging      # the newest version
    """
    wanted = _checked(aliases, "moved")
    api = make_api()
    target = api.parse_ref(ref)
    assert target.entity is not None
    registry = api.registry
    info = registry.resolve(target.entity, target.project, target.name, target.alias)
    held_before = {}
    for name in wanted:
        try:
            held_before[name] = registry.resolve(info.entity, info.project, info.name, name)
        except NotFound:
            continue
    for name in wanted:
        registry.add_alias(info.id, name)
        before = held_before.get(name)
        moved = f" (moved from {before.version})" if before and before.id != info.id else ""
        click.echo(f"{name} -> {_shown(info, api.config.entity)}{moved}")


@alias.command("rm")
@click.argument("collection")
@click.argument("aliases", nargs=-1, required=True)
@user_errors
def alias_rm(collection: str, aliases: tuple[str, ...]) -> None:
    """Remove each ALIAS from the version of [ENTITY/]PROJECT/NAME that holds it.

    The versions stay; only the labels go. An alias no version holds is an error, and then
    none is removed.

    \b
    Examples:
      artifactfs alias rm vision/mnist staging
      artifactfs alias rm team/vision/mnist best prod
    """
    if ":" in collection:
        raise InvalidName(f"alias rm takes PROJECT/NAME, not {collection!r}: an alias is "
                          "removed from whichever version holds it")
    unwanted = _checked(aliases, "removed")
    api = make_api()
    target = api.parse_ref(collection)
    assert target.entity is not None
    registry = api.registry
    if registry.collection_type(target.entity, target.project, target.name) is None:
        raise NotFound(f"artifact {target.entity}/{target.project}/{target.name} not found")
    holders = {}
    for name in unwanted:  # every one found before any is removed
        try:
            holders[name] = registry.resolve(target.entity, target.project, target.name, name)
        except NotFound:
            raise NotFound(f"no version of {target.entity}/{target.project}/{target.name} "
                           f"holds alias {name!r}") from None
    for name, info in holders.items():
        registry.remove_alias(info.id, name)
        click.echo(f"removed {name} from {_shown(info, api.config.entity)}")
