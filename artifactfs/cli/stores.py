"""How a command that works on a store names it: ``--store DIR``, or ``--db URL`` and
``--blobs URL``, else the environment (ARTIFACTFS_DB and ARTIFACTFS_BLOBS, else
ARTIFACTFS_STORE).

``--store DIR`` means ``--db sqlite:///DIR/registry.sqlite3 --blobs file:///DIR``. Options
win over the environment; a store folder and URLs together are refused, not guessed at.
The store package is imported only when a command runs: every command loads this module.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit

import click

from artifactfs.config import Config
from artifactfs.core.errors import InvalidName

if TYPE_CHECKING:
    from sqlalchemy.engine import URL

    from artifactfs.store import MetadataDB, Store

__all__ = ["StoreChoice", "store_options"]

F = TypeVar("F", bound=Callable[..., Any])


def store_options(*, blobs: bool = True) -> Callable[[F], F]:
    """``--store``, ``--db`` (and with ``blobs``, ``--blobs``), passed to the command as
    ``store_dir``, ``db_url`` and ``blobs_url``; ``StoreChoice.of`` makes one choice of them."""

    def decorate(func: F) -> F:
        func = click.option("--db", "db_url", default=None, metavar="URL",
                            help="Database URL: sqlite:///PATH or "
                                 "postgresql://USER@HOST:PORT/DB (default $ARTIFACTFS_DB).")(
            func)
        if blobs:
            func = click.option("--blobs", "blobs_url", default=None, metavar="URL",
                                help="Blob store: file:///PATH or s3://BUCKET/PREFIX "
                                     "(endpoint and credentials from the AWS "
                                     "configuration; default $ARTIFACTFS_BLOBS).")(
                func)
        return click.option("--store", "store_dir", default=None,
                            type=click.Path(file_okay=False, path_type=Path),
                            help="Store folder, the same as --db sqlite:///DIR/registry.sqlite3 "
                                 "--blobs file:///DIR (default $ARTIFACTFS_STORE).")(func)

    return decorate


@dataclass(frozen=True, slots=True)
class StoreChoice:
    """The store a command's options and the environment name."""

    store_dir: Path | None
    db_url: str | None
    blobs_url: str | None

    @classmethod
    def of(cls, store_dir: Path | None, db_url: str | None,
           blobs_url: str | None = None, *, config: Config | None = None) -> StoreChoice:
        """Options first, then the environment. Raises InvalidName when a folder and URLs
        are both given as options."""
        if store_dir is not None and (db_url or blobs_url):
            raise InvalidName("give either --store or --db/--blobs, not both")
        if store_dir is not None or db_url or blobs_url:
            return cls(store_dir, db_url, blobs_url)
        config = config or Config.from_env()
        if config.db_url or config.blobs_url:
            return cls(None, config.db_url, config.blobs_url)
        return cls(config.store_dir, None, None)

    @property
    def blobs_in_bucket(self) -> bool:
        """Whether the blobs are named as an S3 bucket: known before the store is opened
        (which, for a bucket, asks storage whether the bucket and credentials work), so a
        command can refuse options that do not go with one without waiting on storage."""
        return self.store_dir is None and bool(self.blobs_url) and (
            urlsplit(str(self.blobs_url).strip()).scheme == "s3")

    def metadata(self) -> MetadataDB:
        """The database alone (``key create``: no blob folder needed); a store folder is
        made if it is not there, as opening it always did."""
        from artifactfs.store import MetadataDB

        if self.store_dir is not None:
            return self.open().db
        return MetadataDB(self.database_url())

    def open(self, *, upgrade: bool | None = None) -> Store:
        """The store, opened. Blobs in a bucket are checked first (one LIST: the bucket is
        there, the credentials work, storage answers), so that a wrong ``--blobs`` or key
        is one ``error:`` line before anything is written; see ``S3BlobStore.check_bucket``.
        Raises InvalidName, NotFound, PermissionDenied, RegistryUnavailable, SchemaMismatch.
        """
        from artifactfs.store import Store

        if self.store_dir is not None:
            return Store(self.store_dir, upgrade=upgrade)
        if not self.db_url or not self.blobs_url:
            raise InvalidName("a store named by URL needs both --db and --blobs "
                              "(or ARTIFACTFS_DB and ARTIFACTFS_BLOBS)")
        return Store(db=self.db_url, blobs=self.blobs_url, upgrade=upgrade)

    def database_url(self) -> URL:
        """The database alone (``key``, ``db``: no blob folder needed)."""
        from artifactfs.store.database import parse_db_url, sqlite_url

        if self.store_dir is not None:
            return sqlite_url(self.store_dir.expanduser() / "registry.sqlite3")
        if not self.db_url:
            raise InvalidName("name the database: --db URL or --store DIR")
        return parse_db_url(self.db_url)
