"""``artifactfs.init()`` and ``Run``: W&B's runs, for the lineage of artifacts.

::

    with artifactfs.init(project="vision", job_type="train", config={"lr": 0.1}) as run:
        data = run.use_artifact("mnist:latest")      # recorded: this run read it
        path = data.download()
        model = artifactfs.Artifact("resnet", type="model")
        model.add_file("model.pt")
        run.log_artifact(model, aliases=["best"])    # saved; this run made it

A run lives in the registry (the embedded store or a server, under the entity of the key,
as artifacts do). It is ``running`` until ``finish()``, or the end of its ``with`` block:
``finished``, or ``failed`` when the block raised or ``finish(exit_code)`` was not 0. What it
logged and used is what ``Artifact.logged_by()``/``used_by()`` and ``artifactfs lineage``
read. Unlike W&B there are no metrics, history or system stats: only what lineage needs.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any

from artifactfs.config import Config
from artifactfs.core.errors import Conflict
from artifactfs.core.limits import check_tags
from artifactfs.core.names import parse_ref, validate_alias, validate_name
from artifactfs.core.runs import (
    FAILED,
    FINISHED,
    LOGGED,
    RUNNING,
    USED,
    RunInfo,
    check_config,
)
from artifactfs.sdk.artifact import Artifact
from artifactfs.sdk.client import Client

__all__ = ["Run", "init"]


def init(
    project: str | None = None,
    job_type: str | None = None,
    name: str | None = None,
    config: dict[str, Any] | None = None,
    *,
    entity: str | None = None,
    api: Client | None = None,
) -> Run:
    """Start a run, as ``wandb.init``: a new ``Run`` in the registry, ``running``.

    ``project`` defaults to ``ARTIFACTFS_PROJECT``, ``entity`` to ``ARTIFACTFS_ENTITY``;
    ``name`` to the run's id; ``config`` is a JSON object kept with the run (1 MB at
    most). ``api`` (artifactfs only) is the ``Api`` (or any ``Client``) whose registry and
    configuration the run uses; by default one made from the environment. Raises
    InvalidName for a bad project, entity or job type, InvalidRequest for a config that is
    not plain JSON.
    """
    if api is None:
        api = Client(config=Config.from_env())
    entity = validate_name(entity or api.config.entity, "entity")
    project = validate_name(project or api.config.project, "project")
    # checked here as well as by the registry: a value JSON cannot hold would otherwise
    # fail in the HTTP client's encoder, with its TypeError instead of this message
    config = check_config(dict(config or {}))
    info = api.registry.create_run(entity, project, name=name, job_type=job_type,
                                   config=config)
    return Run(api, info)


class Run:
    """One run: its id, name, project, entity, job_type, config, state and created_at
    (W&B's attribute names). Made by ``init()``, or given by ``Artifact.logged_by()``/
    ``used_by()`` for runs that exist."""

    def __init__(self, api: Client, info: RunInfo) -> None:
        self._api = api
        self._info = info

    # ---- what W&B's Run shows --------------------------------------------------------------

    @property
    def id(self) -> str:
        return self._info.id

    @property
    def name(self) -> str:
        return self._info.name

    @property
    def project(self) -> str:
        return self._info.project

    @property
    def entity(self) -> str:
        return self._info.entity

    @property
    def job_type(self) -> str | None:
        return self._info.job_type

    @property
    def config(self) -> dict[str, Any]:
        """The config the run started with (a copy: it is kept as it was given)."""
        return dict(self._info.config)

    @property
    def state(self) -> str:
        """``running``, ``finished`` or ``failed``."""
        return self._info.state

    @property
    def created_at(self) -> str:
        return _iso(self._info.created_at)

    @property
    def path(self) -> list[str]:
        """``[entity, project, id]``, as W&B's ``Run.path``."""
        return [self.entity, self.project, self.id]

    def __repr__(self) -> str:
        return f"<Run {self._info.path} ({self.state})>"

    # ---- lineage ---------------------------------------------------------------------------

    def log_artifact(
        self,
        artifact_or_path: Artifact | str | os.PathLike[str],
        name: str | None = None,
        type: str | None = None,
        aliases: list[str] | None = None,
        tags: list[str] | None = None,
    ) -> Artifact:
        """Save an artifact as this run's output, and record that this run made it.

        ``artifact_or_path``: an ``Artifact`` (a draft is saved into this run's project;
        one saved already is recorded as it is), or a file or folder, made into an
        artifact ``name`` (its base name by default) of ``type`` (required then), as in
        W&B. ``aliases`` are given to the version (``latest`` it gets anyway), and ``tags``
        added to its tags (checked first: a bad one is a ValueError, nothing saved). Content a
        version holds already may be that version (W&B's answer to an identical save):
        this run is then recorded as logging it too, and its producer stays the first run.
        """
        self._check_running("log an artifact")
        for alias in aliases or ():
            validate_alias(alias)
        new_tags = check_tags(tags or [])
        if isinstance(artifact_or_path, Artifact):
            artifact = artifact_or_path
        else:
            artifact = self._artifact_of_path(Path(artifact_or_path), name, type)
        if artifact._client is None:  # a draft made with Artifact(...): this run's registry
            artifact._client = self._api
        if new_tags:
            artifact.tags = [*artifact.tags, *new_tags]
        if artifact.id is None:  # a draft: saved here, with the aliases asked for
            artifact.aliases = [*artifact.aliases, *(aliases or ())]
            artifact.save(project=self.project)
        elif aliases or new_tags:
            artifact.aliases = [*artifact.aliases, *(aliases or ())]
            artifact.save()
        assert artifact.id is not None
        self._api.registry.link_run(self.entity, self.id, artifact.id, LOGGED)
        return artifact

    def _artifact_of_path(self, path: Path, name: str | None, type_: str | None) -> Artifact:
        if type_ is None:
            raise ValueError("log_artifact of a path needs type= (dataset, model ...)")
        artifact = Artifact(name or path.name, type=type_)
        if path.is_dir():
            artifact.add_dir(str(path))
        else:
            artifact.add_file(str(path))
        return artifact

    def use_artifact(self, artifact_or_name: Artifact | str, type: str | None = None,
                     aliases: list[str] | None = None) -> Artifact:
        """The committed artifact ``[[ENTITY/]PROJECT/]NAME[:ALIAS]`` (this run's project
        by default, ``latest`` by default) or a saved ``Artifact``; records that this run
        used it. Raises NotFound naming what was looked for, ValueError when ``type``
        differs or the artifact is a draft not saved yet. ``aliases`` are W&B's, and
        ignored (W&B uses them only for artifacts it has not seen)."""
        self._check_running("use an artifact")
        if isinstance(artifact_or_name, Artifact):
            artifact = artifact_or_name
            if artifact.id is None:
                raise ValueError(f"artifact {artifact.name} is a draft; save it (or "
                                 "log_artifact it) before using it")
            if type is not None and artifact.type != type:
                raise ValueError(f"artifact {artifact.qualified_name} has type "
                                 f"{artifact.type!r}, not {type!r}")
        else:
            ref = parse_ref(artifact_or_name, default_project=self.project)
            ref = ref.with_entity(self.entity)
            assert ref.entity is not None
            info = self._api.registry.resolve(ref.entity, ref.project, ref.name, ref.alias)
            if type is not None and info.type != type:
                raise ValueError(f"artifact {ref} has type {info.type!r}, not {type!r}")
            artifact = Artifact._from_info(self._api, info)
        assert artifact.id is not None
        self._api.registry.link_run(self.entity, self.id, artifact.id, USED)
        return artifact

    def logged_artifacts(self) -> list[Artifact]:
        """The versions this run logged, in the order it did."""
        return [Artifact._from_info(self._api, v)
                for v in self._api.registry.run_versions(self.entity, self.id, LOGGED)]

    def used_artifacts(self) -> list[Artifact]:
        """The versions this run used (read through the SDK or a mount with ``--run``)."""
        return [Artifact._from_info(self._api, v)
                for v in self._api.registry.run_versions(self.entity, self.id, USED)]

    # ---- ending ----------------------------------------------------------------------------

    def finish(self, exit_code: int | None = None) -> None:
        """End the run: ``finished``, or ``failed`` for a non-zero ``exit_code``. A run
        that has ended stays as it ended (a second ``finish()`` does nothing)."""
        if self._info.state != RUNNING:
            return
        state = FAILED if exit_code else FINISHED
        self._info = self._api.registry.finish_run(self.entity, self.id, state)

    def __enter__(self) -> Run:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.finish(exit_code=1 if kind is not None else 0)

    def _check_running(self, what: str) -> None:
        if self._info.state != RUNNING:
            raise Conflict(f"run {self.id} is {self._info.state}: it cannot {what}; start "
                           "a new run with artifactfs.init()")


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
