"""One interface to a registry (embedded store or server) and verified content through it."""

from __future__ import annotations

from artifactfs.cache import ContentCache
from artifactfs.config import Config
from artifactfs.registry.base import Registry
from artifactfs.registry.content import VerifiedContent
from artifactfs.registry.local import LocalRegistry

__all__ = ["LocalRegistry", "Registry", "VerifiedContent", "open_content", "open_registry"]


def open_registry(config: Config) -> Registry:
    """The registry ``config`` names: the server when a URL is set, else the embedded store."""
    if config.registry_url:
        from artifactfs.registry.http import HttpRegistry

        return HttpRegistry(config.registry_url, config.api_key)
    from artifactfs.store import Store

    return LocalRegistry(Store(config.store_dir))


def open_content(config: Config, registry: Registry) -> VerifiedContent:
    return VerifiedContent(registry, ContentCache(config.cache_dir, config.cache_size))
