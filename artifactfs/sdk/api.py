"""``Api``: the entry point of the public Python API, configured from the environment."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from artifactfs.config import Config
from artifactfs.content import VerifiedContent, open_content
from artifactfs.core.errors import InvalidName, NotFound
from artifactfs.core.names import Ref, parse_ref, validate_name
from artifactfs.registry import Registry, open_registry

if TYPE_CHECKING:
    from artifactfs.sdk.artifact import Artifact
    from artifactfs.sdk.run import Run

__all__ = ["Api", "ArtifactCollection", "ArtifactType", "Project"]

ProgressFactory = Callable[[str, int], Callable[[int], None]]


@dataclass(frozen=True)
class Project:
    entity: str
    name: str


@dataclass(frozen=True)
class ArtifactType:
    api: Api
    entity: str
    project: str
    name: str

    def collections(self) -> list[ArtifactCollection]:
        return self.api.artifact_collections(self.project, self.name)


@dataclass(frozen=True)
class ArtifactCollection:
    api: Api
    entity: str
    project: str
    name: str
    type: str
    version_count: int

    def artifacts(self) -> list[Artifact]:
        return self.api.artifacts(self.type, f"{self.project}/{self.name}")


class Api:
    """Reads and manages artifacts in the configured registry.

    ``Api()`` reads the environment once (``ARTIFACTFS_STORE``, ``ARTIFACTFS_REGISTRY``,
    ``ARTIFACTFS_ENTITY`` ...); ``Api(config=...)`` takes an explicit configuration, and
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
        self.config = config
        self.progress = progress
        self._registry: Registry | None = None
        self._content: VerifiedContent | None = None

    @property
    def default_entity(self) -> str:
        return self.config.entity

    @property
    def registry(self) -> Registry:
        if self._registry is None:
            self._registry = open_registry(self.config)
        return self._registry

    @property
    def content(self) -> VerifiedContent:
        if self._content is None:
            self._content = open_content(self.config, self.registry)
        return self._content

    def close(self) -> None:
        if self._registry is not None:
            self._registry.close()

    def parse_ref(self, name: str) -> Ref:
        return parse_ref(name, default_project=self.config.project).with_entity(
            self.config.entity
        )

    def artifact(self, name: str, type: str | None = None) -> Artifact:
        """The committed artifact ``[ENTITY/]PROJECT/NAME[:ALIAS]`` (``latest`` by default).

        Raises NotFound naming what was looked for, ValueError when ``type`` differs.
        """
        from artifactfs.sdk.artifact import Artifact

        ref = self.parse_ref(name)
        assert ref.entity is not None
        info = self.registry.resolve(ref.entity, ref.project, ref.name, ref.alias)
        if type is not None and info.type != type:
            raise ValueError(f"artifact {ref} has type {info.type!r}, not {type!r}")
        return Artifact._from_info(self, info)

    def artifact_exists(self, name: str, type: str | None = None) -> bool:
        try:
            self.artifact(name, type)
        except (NotFound, ValueError):
            return False
        return True

    def projects(self, entity: str | None = None) -> list[Project]:
        entity = entity or self.config.entity
        return [Project(entity, p) for p in self.registry.list_projects(entity)]

    def artifact_types(self, project: str | None = None) -> list[ArtifactType]:
        project = project or self.config.project
        entity = self.config.entity
        return [
            ArtifactType(self, entity, project, t)
            for t in self.registry.list_types(entity, project)
        ]

    def artifact_collections(
        self, project_name: str, type_name: str | None = None
    ) -> list[ArtifactCollection]:
        entity = self.config.entity
        return [
            ArtifactCollection(self, entity, c.project, c.name, c.type, c.version_count)
            for c in self.registry.list_collections(entity, project_name, type_name)
        ]

    def artifacts(self, type_name: str | None, name: str) -> list[Artifact]:
        """Every committed version of ``PROJECT/NAME``, oldest first."""
        from artifactfs.sdk.artifact import Artifact

        ref = self.parse_ref(name)
        assert ref.entity is not None
        versions = self.registry.list_versions(ref.entity, ref.project, ref.name)
        if type_name is not None:
            versions = [v for v in versions if v.type == type_name]
        return [Artifact._from_info(self, v) for v in versions]

    artifact_versions = artifacts

    def run(self, path: str) -> Run:
        """The run ``[[ENTITY/]PROJECT/]RUN_ID`` (W&B's ``Api.run``); NotFound when the
        entity has no such run, or it is of another project."""
        from artifactfs.sdk.run import Run

        parts = path.split("/") if isinstance(path, str) else []
        if not 1 <= len(parts) <= 3:
            raise InvalidName(f"run path {path!r} must have the form "
                              "[[ENTITY/]PROJECT/]RUN_ID")
        entity = validate_name(parts[0], "entity") if len(parts) == 3 else self.config.entity
        info = self.registry.run(entity, parts[-1])
        if len(parts) >= 2 and info.project != validate_name(parts[-2], "project"):
            raise NotFound(f"run {info.id} is of project {info.project}, not {parts[-2]}")
        return Run(self, info)
