"""The registry's web view: server-rendered pages at ``/`` (docs/web.md)."""

from artifactfs.server.web.pages import WEB_PREFIX, is_web_path, web_routes

__all__ = ["WEB_PREFIX", "is_web_path", "web_routes"]
