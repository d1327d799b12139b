"""The registry's HTTP API over a store folder (``artifactfs serve``)."""

from artifactfs.server.app import MAX_JSON_BYTES, create_app

__all__ = ["MAX_JSON_BYTES", "create_app"]
