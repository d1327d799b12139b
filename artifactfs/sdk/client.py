"""``Client``: what an ``Artifact`` works through (configuration, registry, verified content,
progress bars), below ``Api``.

Kept apart from ``Api`` so that the SDK's modules depend one way: ``client`` <- ``artifact``
<- ``api``. An ``Artifact`` needs a registry and content, never the listing methods that return
artifacts; ``Api`` returns artifacts, so it is the one to import ``Artifact``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from artifactfs.config import Config
from artifactfs.content import VerifiedContent, open_content
from artifactfs.core.names import Ref, parse_ref, validate_name
from artifactfs.registry import Registry, open_registry, with_key_entity

__all__ = ["Client", "ProgressFactory"]

ProgressFactory = Callable[[str, int], Callable[[int], None]]
"""Given what is being done and its total bytes, the function each transfer tells its bytes.
That function may also have ``expect_files(count)`` and ``file_done()``: a download of many
files then says how many it will write, and each one written (the CLI's bar shows them)."""


class Client:
    """A registry as the configuration names it, opened on first use.

    ``Client()`` reads the environment once (``ARTIFACTFS_STORE``, ``ARTIFACTFS_REGISTRY``,
    ``ARTIFACTFS_ENTITY`` ...); ``config=`` takes an explicit configuration, and
    ``overrides`` may set ``entity`` and ``project`` as in W&B.
    """

    def __init__(
        self,
        overrides: dict[str, Any] | None = None,
        *,
        config: Config | None = None,
        progress: ProgressFactory | None = None,
    ) -> None:
        config = config or Config.from_env()
        overrides = overrides or {}
        if "entity" in overrides:
            config = config.replace(entity=validate_name(overrides["entity"], "entity"))
        if "project" in overrides:
            config = config.replace(project=validate_name(overrides["project"], "project"))
        self._config = config
        self._entity_known = False  # with a server's key and no entity: the key's, once asked
        self.progress = progress
        self._registry: Registry | None = None
        self._content: VerifiedContent | None = None
        # threads share a client (downloads run in several): each part is made once, or
        # two readers would each get a content layer (and a cache, a fetch) of their own
        self._opening = threading.RLock()

    @property
    def config(self) -> Config:
        """The configuration; with a server's key and no ARTIFACTFS_ENTITY, its entity is
        the key's (one request, the first time it is read)."""
        if not self._entity_known:
            with self._opening:
                if not self._entity_known:
                    self._config = with_key_entity(self._config, self.registry)
                    self._entity_known = True
        return self._config

    @config.setter
    def config(self, value: Config) -> None:
        self._config = value
        self._entity_known = False

    @property
    def default_entity(self) -> str:
        return self.config.entity

    @property
    def registry(self) -> Registry:
        if self._registry is None:
            with self._opening:
                if self._registry is None:
                    self._registry = open_registry(self._config)
        return self._registry

    @property
    def content(self) -> VerifiedContent:
        if self._content is None:
            with self._opening:
                if self._content is None:
                    self._content = open_content(self._config, self.registry)
        return self._content

    def close(self) -> None:
        if self._content is not None:
            self._content.close()  # the references' HTTP connections
        if self._registry is not None:
            self._registry.close()

    def parse_ref(self, name: str) -> Ref:
        return parse_ref(name, default_project=self.config.project).with_entity(
            self.config.entity
        )
