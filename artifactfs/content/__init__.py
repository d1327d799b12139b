"""Verified bytes of manifest entries: the one place the SDK and the mount read them from.

Above the registry's transports (``artifactfs.registry``, which fetch a blob's bytes from a
store or a server) and the shared disk cache: every byte handed out here was checked against
its entry's digest or its chunk index first. References (bytes kept outside the registry)
are to go through here too.
"""

from __future__ import annotations

from artifactfs.cache import ContentCache
from artifactfs.config import Config
from artifactfs.content.verified import FetchStats, Piece, VerifiedContent
from artifactfs.registry.base import Registry

__all__ = ["FetchStats", "Piece", "VerifiedContent", "open_content"]


def open_content(config: Config, registry: Registry) -> VerifiedContent:
    """Verified content through ``registry``, cached in the cache ``config`` names."""
    return VerifiedContent(registry, ContentCache(config.cache_dir, config.cache_size))
