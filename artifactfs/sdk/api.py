"""``Api``: the entry point of the public Python API, configured from the environment."""

from __future__ import annotations

import difflib
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from artifactfs.core.errors import ArtifactFSError, InvalidName, NotFound
from artifactfs.core.names import Ref, validate_name
from artifactfs.sdk.artifact import Artifact
from artifactfs.sdk.client import Client, ProgressFactory
from artifactfs.sdk.collections import ArtifactCollection, ArtifactType, Project
from artifactfs.sdk.run import Run
from artifactfs.sdk.wandb_io import export_wandb, import_wandb

__all__ = ["Api", "ArtifactCollection", "ArtifactType", "ProgressFactory", "Project"]


class Api(Client):
    """Reads and manages artifacts in the configured registry.

    ``Api()`` reads the environment once (``ARTIFACTFS_STORE``, ``ARTIFACTFS_REGISTRY``,
    ``ARTIFACTFS_ENTITY`` ...); ``Api(config=...)`` takes an explicit configuration, and
    ``overrides`` may set ``entity`` and ``project`` as in W&B.
    """

    def artifact(self, name: str, type: str | None = None) -> Artifact:
        """The committed artifact ``[ENTITY/]PROJECT/NAME[:ALIAS]`` (``latest`` by default).

        Raises NotFound naming what was looked for (and the name meant, when one is close:
        ``vision/mnsit`` -> ``vision/mnist``), ValueError when ``type`` differs.
        """
        ref = self.parse_ref(name)
        assert ref.entity is not None
        try:
            info = self.registry.resolve(ref.entity, ref.project, ref.name, ref.alias)
        except NotFound as exc:
            meant = self._close_to(ref)
            if meant is None:
                raise
            raise NotFound(f"{exc}; did you mean {meant}?") from None
        if type is not None and info.type != type:
            raise ValueError(f"artifact {ref} has type {info.type!r}, not {type!r}")
        return Artifact._from_info(self, info)

    def _close_to(self, ref: Ref) -> str | None:
        """A name that exists and is close to ``ref``'s first part that does not: its
        project, else its collection, else its alias (as ``PROJECT/NAME:ALIAS``)."""
        assert ref.entity is not None
        registry = self.registry
        try:
            projects = registry.list_projects(ref.entity)
            if ref.project not in projects:
                close = difflib.get_close_matches(ref.project, projects, n=1)
                return f"{close[0]}/{ref.name}:{ref.alias}" if close else None
            names = [c.name for c in registry.list_collections(ref.entity, ref.project)]
            if ref.name not in names:
                close = difflib.get_close_matches(ref.name, names, n=1)
                return f"{ref.project}/{close[0]}:{ref.alias}" if close else None
            labels = [label for v in registry.list_versions(ref.entity, ref.project, ref.name)
                      for label in (v.version, *v.aliases)]
            close = difflib.get_close_matches(ref.alias, labels, n=1)
            return f"{ref.project}/{ref.name}:{close[0]}" if close else None
        except ArtifactFSError:  # no hint is better than a second error
            return None

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
        ref = self.parse_ref(name)
        assert ref.entity is not None
        versions = self.registry.list_versions(ref.entity, ref.project, ref.name)
        if type_name is not None:
            versions = [v for v in versions if v.type == type_name]
        return [Artifact._from_info(self, v) for v in versions]

    artifact_versions = artifacts

    def import_wandb(
        self,
        manifest_json: Mapping[str, Any] | str | os.PathLike[str],
        root: str | os.PathLike[str],
        name: str,
        *,
        type: str,
        aliases: Sequence[str] = (),
        digest_algorithm: str | None = None,
        description: str | None = None,
        metadata: dict[str, Any] | None = None,
        extra_files: str = "refuse",
    ) -> Artifact:
        """Commit an artifact made by wandb as the next version of ``[ENTITY/]PROJECT/NAME``.

        ``manifest_json`` is ``artifact.manifest.to_manifest_json()`` (or the path of a
        file holding it, a W&B server's ``wandb_manifest.json`` too), ``root`` the folder
        its files were downloaded to. Every file is checked before anything is uploaded;
        the version's digest is wandb's. See ``artifactfs.sdk.wandb_io.import_wandb``.
        """
        return import_wandb(self, manifest_json, root, name, type=type, aliases=aliases,
                            digest_algorithm=digest_algorithm, description=description,
                            metadata=metadata, extra_files=extra_files)

    def export_wandb(self, name: str, root: str | os.PathLike[str],
                     manifest_path: str | os.PathLike[str] | None = None) -> Path:
        """Write version ``name``'s files into ``root`` and its manifest JSON (beside
        ``root`` unless ``manifest_path`` says where) for wandb's ``from_manifest_json``;
        return the manifest's path. See ``artifactfs.sdk.wandb_io.export_wandb``."""
        return export_wandb(self.artifact(name), root, manifest_path)

    def run(self, path: str) -> Run:
        """The run ``[[ENTITY/]PROJECT/]RUN_ID`` (W&B's ``Api.run``); NotFound when the
        entity has no such run, or it is of another project."""
        parts = path.split("/") if isinstance(path, str) else []
        if not 1 <= len(parts) <= 3:
            raise InvalidName(f"run path {path!r} must have the form "
                              "[[ENTITY/]PROJECT/]RUN_ID")
        entity = validate_name(parts[0], "entity") if len(parts) == 3 else self.config.entity
        info = self.registry.run(entity, parts[-1])
        if len(parts) >= 2 and info.project != validate_name(parts[-2], "project"):
            raise NotFound(f"run {info.id} is of project {info.project}, not {parts[-2]}")
        return Run(self, info)
