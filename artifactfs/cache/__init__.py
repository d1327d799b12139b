"""The shared, bounded, content-addressed cache on local disk."""

from artifactfs.cache.disk import ContentCache

__all__ = ["ContentCache"]
