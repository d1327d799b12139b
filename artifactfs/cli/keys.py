"""``artifactfs key list`` and ``artifactfs key revoke``: the API keys of a store.

They work on the store's database, as ``key create`` does (run them where it is reachable:
the server's machine, or with ``--db`` on PostgreSQL). A key itself is never shown again
after ``key create``: the store keeps only its SHA-256, and a list shows each key's id and
the first 12 hex digits of that hash (its fingerprint), which identify a key without being
one. A key's holder finds its id with ``key revoke -`` reading the key from stdin, or by
its fingerprint (``printf %s "$KEY" | sha256sum``).

A running server refuses a revoked key (401) once it stops trusting what it last found:
``serve --key-cache-seconds`` after it last checked the key (60 s by default; 0 checks
every request against the database).
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path

import click

from artifactfs.cli.common import confirm, user_errors
from artifactfs.cli.output import emit_json, table
from artifactfs.cli.stores import StoreChoice, store_options
from artifactfs.core.errors import InvalidName, NotFound
from artifactfs.core.names import validate_name

__all__ = ["key_list", "key_revoke"]


@click.command("list")
@click.option("--entity", default=None, help="Only the keys of this entity.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@store_options(blobs=False)
@user_errors
def key_list(entity: str | None, as_json: bool, store_dir: Path | None,
             db_url: str | None) -> None:
    """List the API keys of a store: id, entity, access, when made, fingerprint.

    The fingerprint is the start of the key's SHA-256; the key itself is not kept.

    \b
    Examples:
      artifactfs key list --store /srv/artifacts
      artifactfs key list --db postgresql://afs@db:5432/afs --entity team --json
    """
    if entity is not None:
        validate_name(entity, "entity")
    db = StoreChoice.of(store_dir, db_url).metadata()
    keys = [k for k in db.api_keys() if entity is None or k.entity == entity]
    if as_json:
        emit_json([k.to_dict() for k in keys])
        return
    table([(str(k.id), k.entity, "read-only" if k.read_only else "read-write",
            _when(k.created_at), k.fingerprint) for k in keys],
          ("ID", "ENTITY", "ACCESS", "CREATED", "FINGERPRINT"))


@click.command("revoke")
@click.argument("ids", nargs=-1, required=True, metavar="ID...")
@click.option("--yes", "-y", is_flag=True,
              help="Do not ask for confirmation (needed when stdin is not a terminal).")
@store_options(blobs=False)
@user_errors
def key_revoke(ids: tuple[str, ...], yes: bool, store_dir: Path | None,
               db_url: str | None) -> None:
    """Revoke API keys by their ids ('key list'), or '-': the key read from stdin.

    A running server refuses a revoked key within its --key-cache-seconds (60 s by
    default). Every id is checked before any key is revoked. Reading the key from stdin
    keeps it off the command line, which every local user can see; revoking it that way
    asks nothing (whoever holds the key may end it).

    \b
    Examples:
      artifactfs key revoke 3 --store /srv/artifacts
      artifactfs key revoke 3 4 --yes --db postgresql://afs@db:5432/afs
      printf %s "$LEAKED_KEY" | artifactfs key revoke - --store /srv/artifacts
    """
    db = StoreChoice.of(store_dir, db_url).metadata()
    if ids == ("-",):
        text = sys.stdin.readline().strip()
        if not text:
            raise InvalidName("key revoke -: no key on stdin")
        found = db.key_info(key=text)
        if found is None:
            raise NotFound("the key on stdin is not a key of this store (revoked already?)")
        db.revoke_key(found.id)
        click.echo(f"revoked key {found.id} ({found.entity})")
        return
    wanted = []
    for raw in dict.fromkeys(ids):
        if not raw.isdigit():
            raise InvalidName(f"key id {raw!r} is not a number: give the ID column of "
                              "'artifactfs key list', or - to read the key from stdin")
        info = db.key_info(key_id=int(raw))
        if info is None:
            raise NotFound(f"no key with id {raw} (artifactfs key list shows them)")
        wanted.append(info)
    if not yes:
        which = ", ".join(f"{k.id} ({k.entity})" for k in wanted)
        confirm(f"revoke key{'s' if len(wanted) > 1 else ''} {which}?", yes=yes,
                what="key revoke")
    for info in wanted:
        db.revoke_key(info.id)
        click.echo(f"revoked key {info.id} ({info.entity})")


def _when(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S")
