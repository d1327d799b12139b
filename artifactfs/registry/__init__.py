"""One interface to a registry: the embedded store or a server (verified bytes through it:
``artifactfs.content``)."""

from __future__ import annotations

from artifactfs.config import Config
from artifactfs.core.errors import ArtifactFSError
from artifactfs.registry.base import Registry
from artifactfs.registry.local import LocalRegistry

__all__ = ["LocalRegistry", "Registry", "open_registry", "with_key_entity"]


def open_registry(config: Config, *, read_timeout: float | None = None) -> Registry:
    """The registry ``config`` names: the server when a URL is set, else the embedded store.

    ``read_timeout``: seconds a read from a server may take, retries included (None: the
    client's own limits). A mount passes its ``--read-timeout``: it fails a read then, and
    a worker thread still waiting on the server would keep one of its slots taken. The
    embedded store has nothing to wait on.
    """
    if config.registry_url:
        from artifactfs.registry.http import HttpRegistry

        return HttpRegistry(config.registry_url, config.api_key, read_timeout=read_timeout)
    from artifactfs.store import Store

    if config.db_url or config.blobs_url:  # a store named by its parts (ARTIFACTFS_DB, _BLOBS)
        return LocalRegistry(Store(db=config.db_url, blobs=config.blobs_url))
    return LocalRegistry(Store(config.store_dir))



def with_key_entity(config: Config, registry: Registry) -> Config:
    """``config`` working in its key's entity when it was not told one: a server's key
    belongs to one entity, and a client that only set ARTIFACTFS_REGISTRY and
    ARTIFACTFS_API_KEY means that one (W&B's default entity is the user's too), where it
    got ``local`` and a refusal. One request; if the registry cannot say (the embedded
    store, an older server, one that does not answer), ``config`` as it was."""
    if config.entity_given or not config.registry_url or not config.api_key:
        return config
    try:
        entity = registry.key_entity()
    except ArtifactFSError:
        return config  # the next request says what is wrong, with what to do
    if entity is None or entity == config.entity:
        return config
    return config.replace(entity=entity)
