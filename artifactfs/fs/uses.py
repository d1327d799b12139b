"""What a mount started with ``--run RUN_ID`` records: that the run read from a version.

A training job mounts its data read-only and reads it as files; the registry learns which
versions that run used from the mount, since the job never calls ``use_artifact``. Once per
version and mount, at the version's first read of file bytes (listing a folder reads no
data, and records nothing), one registry call records the use, in a worker thread and
started beside the read, never awaited by it: the read's answer does not wait on the
registry, and a failed record fails no read. It is logged; a registry that could not be
reached or used now (RegistryUnavailable, a call past ``--read-timeout``) is asked again at
a later read of that version, so an outage loses no use that is read again after it, while
a refusal (a run deleted since the mount started, a key without the right) is logged once
and not asked again: every read would otherwise cost a call and a warning line.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import trio

from artifactfs.core.errors import ArtifactFSError, RegistryUnavailable
from artifactfs.core.records import VersionInfo
from artifactfs.core.runs import USED
from artifactfs.registry import Registry

__all__ = ["UseRecorder"]

log = logging.getLogger(__name__)

Blocking = Callable[..., Awaitable[Any]]


class UseRecorder:
    """Records, for one run, each version a mount reads from (see the module)."""

    def __init__(self, registry: Registry, entity: str, run_id: str,
                 blocking: Blocking) -> None:
        self.registry = registry
        self.entity = entity
        self.run_id = run_id
        self._blocking = blocking  # the daemon's: a worker thread, bounded by --read-timeout
        self._started: set[str] = set()  # versions recorded, or being recorded now
        self.recorded = 0  # uses the registry took (for the stats attribute and tests)
        self.failed = 0

    def read_from(self, nursery: trio.Nursery, version: VersionInfo | None) -> None:
        """Called at every read of a version's bytes; costs a set lookup after the first."""
        if version is None or version.id in self._started:
            return
        self._started.add(version.id)
        nursery.start_soon(self._record, version)

    async def _record(self, version: VersionInfo) -> None:
        try:
            await self._blocking(self.registry.link_run, self.entity, self.run_id,
                                 version.id, USED)
        except (RegistryUnavailable, trio.TooSlowError, OSError) as exc:
            self._started.discard(version.id)  # a later read of it tries again
            self.failed += 1
            log.warning("could not record that run %s used %s (reads go on; tried again at "
                        "a later read): %s", self.run_id, version.qualified_name,
                        exc or "no answer within --read-timeout")
            return
        except ArtifactFSError as exc:  # refused: asking again would be refused again
            self.failed += 1
            log.warning("could not record that run %s used %s (reads go on; not tried "
                        "again): %s", self.run_id, version.qualified_name, exc)
            return
        self.recorded += 1
        log.info("run %s used %s", self.run_id, version.qualified_name)
