"""The registry's answers a mount's folders are made of, remembered.

Each question is a small typed key (``ProjectList``, ``TypeList``, ``VersionList``,
``Resolution``). Listings are reused for the listing TTL (``--alias-timeout``); an alias is
asked again every time the kernel asks (its entry timeout already bounds how often), and a
``vN`` once known is never asked again (a committed version never changes). When the
registry cannot be reached, the last answer to the same question is used, so cached files
stay reachable through their folders, and further questions skip the registry for a few
seconds instead of each waiting out the read timeout. A version's manifest is fetched once
and kept, as a ``VersionListing``, in an LRU.

After this mount saves or discards a folder, the tree tells this layer so (``saved``,
``staging_ended``): the listings it changed are asked again, the new version is known at
once.

All registry calls go through ``blocking`` (a worker thread); this state is touched only on
the event loop.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import trio
from cachetools import LRUCache, TTLCache

from artifactfs.core.errors import RegistryFault, RegistryUnavailable
from artifactfs.core.manifest import Manifest
from artifactfs.core.names import parse_version_label
from artifactfs.core.records import VersionInfo
from artifactfs.fs.listing import VersionListing
from artifactfs.fs.staging import FolderKey
from artifactfs.registry import Registry

__all__ = [
    "ProjectList",
    "Question",
    "RegistryAnswers",
    "Resolution",
    "TypeList",
    "VersionList",
]

log = logging.getLogger(__name__)

T = TypeVar("T")
Blocking = Callable[..., Awaitable[Any]]

_DOWN_SECONDS = 5.0
_LISTINGS_KEPT = 64  # parsed manifests (a large one is hundreds of MB: kept few)


@dataclass(frozen=True, slots=True)
class ProjectList:
    """The entity's projects."""


@dataclass(frozen=True, slots=True)
class TypeList:
    """The types used in a project."""

    project: str


@dataclass(frozen=True, slots=True)
class VersionList:
    """Every committed version of a project's collections of one type."""

    project: str
    type: str


@dataclass(frozen=True, slots=True)
class Resolution:
    """What ``NAME:LABEL`` (an alias or ``vN``) of a project names."""

    project: str
    name: str
    label: str


Question = ProjectList | TypeList | VersionList | Resolution


class RegistryAnswers:
    def __init__(
        self, registry: Registry, entity: str, blocking: Blocking, listing_ttl: float
    ) -> None:
        self.registry = registry
        self.entity = entity
        self._blocking = blocking
        self._listings: LRUCache[str, VersionListing] = LRUCache(maxsize=_LISTINGS_KEPT)
        self._fresh: TTLCache[Question, Any] = TTLCache(maxsize=4096, ttl=listing_ttl)
        self._last: dict[Question, Any] = {}  # last answers, for when it is down
        self._down_until = 0.0
        self.manifest_fetches = 0

    async def _ask(
        self, question: Question, query: Callable[..., T], *args: Any, fresh: bool = True
    ) -> T:
        """Ask the registry, remembering the answer.

        ``fresh`` answers are reused for the listing TTL. Raises the registry's error when
        it answered with one and this question was never answered before, and
        RegistryUnavailable when it cannot be reached and the question was never answered.
        """
        if fresh and question in self._fresh:
            return self._fresh[question]
        if trio.current_time() >= self._down_until:
            try:
                answer = await self._blocking(query, *args)
            except RegistryFault as exc:
                # it answered: only this question is broken, not the registry
                log.warning("registry failed to answer %s: %s", question, exc)
                if question in self._last:
                    return self._last[question]
                raise
            except (RegistryUnavailable, trio.TooSlowError):
                self._down_until = trio.current_time() + _DOWN_SECONDS
                log.warning("registry unreachable; answering %s from memory if possible",
                            question)
            else:
                self._last[question] = answer
                if fresh:
                    self._fresh[question] = answer
                return answer
        if question in self._last:
            return self._last[question]
        raise RegistryUnavailable(f"registry unreachable and {question} never seen")

    async def projects(self) -> list[str]:
        return await self._ask(ProjectList(), self.registry.list_projects, self.entity)

    async def types(self, project: str) -> list[str]:
        return await self._ask(
            TypeList(project), self.registry.list_types, self.entity, project
        )

    async def versions(self, project: str, type_: str) -> list[VersionInfo]:
        """Every version of the project's collections of ``type_``. A collection the
        registry fails to list is left out (logged), so the others still show."""
        def query() -> list[VersionInfo]:
            out: list[VersionInfo] = []
            for c in self.registry.list_collections(self.entity, project, type_):
                try:
                    out.extend(self.registry.list_versions(self.entity, project, c.name))
                except RegistryFault as exc:  # one broken collection; the others still list
                    log.warning("leaving %s/%s out of %s/%s: %s", project, c.name,
                                project, type_, exc)
            return out

        found: list[VersionInfo] = await self._ask(VersionList(project, type_), query)
        for info in found:  # vN, listed, need not be asked again
            self._last[Resolution(project, info.name, info.version)] = info
        return found

    async def resolve(self, project: str, name: str, label: str) -> VersionInfo:
        """The version ``NAME:LABEL`` names; a ``vN`` seen once is not asked again.
        Raises NotFound (and the registry's other errors) as ``Registry.resolve`` does."""
        question = Resolution(project, name, label)
        known = self._last.get(question)
        if known is not None and parse_version_label(label) is not None:
            return known
        return await self._ask(
            question, self.registry.resolve, self.entity, project, name, label, fresh=False
        )

    async def listing(self, version_id: str) -> VersionListing:
        """The version's manifest as folders; fetched once per version and kept (LRU)."""
        found = self._listings.get(version_id)
        if found is None:
            # parsing and indexing a large manifest takes a while: not on the event loop
            found = await self._blocking(
                lambda: VersionListing(self.registry.manifest(version_id))
            )
            self.manifest_fetches += 1
            self._listings[version_id] = found
        return found

    def listing_in_memory(self, version_id: str) -> VersionListing | None:
        """The version's listing if it is at hand, never asking the registry."""
        return self._listings.get(version_id)

    async def manifest(self, version_id: str) -> Manifest:
        """A version's manifest, asked for each time (staged folders keep their own)."""
        manifest: Manifest = await self._blocking(self.registry.manifest, version_id)
        return manifest

    def saved(self, key: FolderKey, info: VersionInfo, manifest: Manifest) -> VersionListing:
        """This mount just saved folder ``key`` as ``info`` (whose manifest is
        ``manifest``): the registry is up, ``NAME:ALIAS`` now names ``info``, and the
        listings that may show it (its type's versions, the project's types, the projects)
        are asked again. Returns the new version's listing."""
        self._down_until = 0.0  # the registry just answered a commit
        listing = self._listings[info.id] = VersionListing(manifest)
        self._last[Resolution(key.project, key.name, key.alias)] = info
        for question in (VersionList(key.project, key.type), TypeList(key.project),
                         ProjectList()):
            self._fresh.pop(question, None)
        return listing

    def staging_ended(self, key: FolderKey) -> None:
        """Folder ``key``'s staged changes were dropped (or it never existed in the
        registry): what ``NAME:ALIAS`` names and its type's versions are asked again."""
        self._last.pop(Resolution(key.project, key.name, key.alias), None)
        self._fresh.pop(VersionList(key.project, key.type), None)
