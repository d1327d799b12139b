"""Runs as the registry knows them: what a run is, and the two ways it touches a version.

A run (W&B's ``wandb.init``) is one job of an entity's project: it *logs* the versions it
made (the first run to log a version is its producer) and *uses* the versions it read (any
number of runs may use one version). Together these links are the lineage that
``artifactfs lineage`` walks. ``RunInfo`` crosses the transport boundary as JSON, as
``VersionInfo`` does, so the embedded store and the HTTP client return the same objects.
"""

from __future__ import annotations

import re
import secrets
import string
from dataclasses import asdict, dataclass, field
from typing import Any

from artifactfs.core.errors import InvalidName, InvalidRequest
from artifactfs.core.limits import check_json, escaped

__all__ = [
    "FAILED",
    "FINISHED",
    "LINKS",
    "LOGGED",
    "MAX_CONFIG_BYTES",
    "RUNNING",
    "RUN_STATES",
    "USED",
    "RunInfo",
    "check_config",
    "new_run_id",
    "validate_link",
    "validate_run_id",
    "validate_run_state",
]

RUNNING, FINISHED, FAILED = "running", "finished", "failed"
"""W&B's run states (``run.state``) that a run here can be in."""
RUN_STATES = (RUNNING, FINISHED, FAILED)
LOGGED, USED = "logged", "used"
"""A run logged (made) a version, or used (read) one."""
LINKS = (LOGGED, USED)
MAX_CONFIG_BYTES = 1 << 20
"""A run's config is bounded as a version's metadata is (core.limits)."""

# W&B's run ids are 8 characters of lowercase letters and digits; a run id is also a path
# segment of the API and a word of the lineage tree, so nothing else is allowed in one
_ID_ALPHABET = string.ascii_lowercase + string.digits
_ID_RE = re.compile(r"[a-z0-9]{1,64}")


def new_run_id() -> str:
    """A fresh run id as W&B makes them: 8 lowercase letters and digits (41 bits; ids are
    also unique in the database, so a clash is refused, never merged)."""
    return "".join(secrets.choice(_ID_ALPHABET) for _ in range(8))


def validate_run_id(run_id: object) -> str:
    """Check a run id; InvalidName saying what one looks like."""
    if not isinstance(run_id, str) or not _ID_RE.fullmatch(run_id):
        shown = escaped(run_id) if isinstance(run_id, str) else type(run_id).__name__
        raise InvalidName(f"run id {shown!r} is not a run id (1 to 64 lowercase letters and "
                          "digits, such as the 8 that artifactfs.init() makes)")
    return run_id


def validate_run_state(state: object) -> str:
    if state not in RUN_STATES:
        raise InvalidRequest(f"run state must be one of {', '.join(RUN_STATES)}")
    return str(state)


def validate_link(kind: object) -> str:
    if kind not in LINKS:
        raise InvalidRequest(f"a run's link to a version is one of {', '.join(LINKS)}")
    return str(kind)


def check_config(config: Any) -> dict[str, Any]:
    """A run's config: a JSON object within the bounds metadata has."""
    if not isinstance(config, dict):
        raise InvalidRequest("a run's config must be a JSON object (a dict)")
    check_json(config, "run config", max_bytes=MAX_CONFIG_BYTES)
    return config


@dataclass(frozen=True, slots=True)
class RunInfo:
    """One run: ``id`` unique in the registry, ``name`` free (defaults to the id)."""

    id: str
    entity: str
    project: str
    name: str
    job_type: str | None
    state: str
    created_at: float
    finished_at: float | None = None
    config: dict[str, Any] = field(default_factory=dict)

    @property
    def path(self) -> str:
        """``ENTITY/PROJECT/ID``, as W&B writes a run's path."""
        return f"{self.entity}/{self.project}/{self.id}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> RunInfo:
        return cls(**raw)
