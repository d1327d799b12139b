"""The registry's answers a mount's folders are made of, remembered.

Each question is a small typed key (``ProjectList``, ``TypeList``, ``VersionList``,
``Resolution``). Listings are reused for the listing TTL (``--alias-timeout``); an alias is
asked again every time the kernel asks (its entry timeout already bounds how often), and a
``vN`` once known is never asked again (a committed version never changes). When the
registry cannot be reached, the last answer to the same question is used, so cached files
stay reachable through their folders, and further questions skip the registry for a few
seconds instead of each waiting out the read timeout.

A version's files come one folder at a time (``FolderListing``, core/folders.py): a folder
is fetched when first looked into and kept in an LRU bounded by the entries it holds, so
the first ``ls`` of a version of a million files fetches the thousand names of its root,
not its 106 MB manifest. ``find`` goes through a folder's sub-folders in order; when it does,
each fetch takes the next few sub-folders with it, twice as many each time
(``FolderSweep``), so a thousand folders cost some twenty requests rather than a thousand.
A whole manifest is fetched only to begin staging an alias folder.

After this mount saves or discards a folder, the tree tells this layer so (``saved``,
``staging_ended``): the listings it changed are asked again, the new version is known at
once.

All registry calls go through ``blocking`` (a worker thread); this state is touched only on
the event loop.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import trio
from cachetools import LRUCache, TTLCache

from artifactfs.core.errors import RegistryFault, RegistryUnavailable
from artifactfs.core.folders import FOLDER_BATCH_MAX, FolderListing, folder_listings
from artifactfs.core.manifest import Manifest
from artifactfs.core.names import parse_version_label
from artifactfs.core.records import VersionInfo
from artifactfs.fs.staging import FolderKey
from artifactfs.registry import Registry

__all__ = [
    "FolderSweep",
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
# entries of folder listings kept (an entry in a listing is some 150 bytes beside its node,
# which keeps the entry itself): 40 MB, 200 of ImageNet's folders
FOLDER_ENTRIES_KEPT = 262_144
_SWEEPS_KEPT = 1024


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


class FolderSweep:
    """How many sub-folders of one folder to fetch together: one, unless the one asked for
    comes right after the last batch in name order (``find``, ``du``, ``ls -R``), and then
    twice as many as last time, up to FOLDER_BATCH_MAX. A reader that opens one file here
    and one there pays for one folder at a time, so its first read stays one small fetch.
    """

    def __init__(self, most: int = FOLDER_BATCH_MAX) -> None:
        self.most = most
        # (version id, parent folder) -> (index the sweep would ask next, last batch size)
        self._at: LRUCache[tuple[str, str], tuple[int, int]] = LRUCache(maxsize=_SWEEPS_KEPT)

    def batch(self, version_id: str, parent: str, index: int) -> int:
        """How many sub-folders to fetch, from the one at ``index`` on; noted as fetched."""
        key = (version_id, parent)
        expected, size = self._at.get(key, (-1, 0))
        size = min(size * 2, self.most) if index == expected else 1
        self._at[key] = (index + size, size)
        return size


class RegistryAnswers:
    def __init__(
        self, registry: Registry, entity: str, blocking: Blocking, listing_ttl: float,
        *, folder_entries: int = FOLDER_ENTRIES_KEPT,
    ) -> None:
        self.registry = registry
        self.entity = entity
        self._blocking = blocking
        self._folders: LRUCache[tuple[str, str], FolderListing] = LRUCache(
            maxsize=folder_entries, getsizeof=lambda f: len(f.names) + 1)
        self._largest: tuple[tuple[str, str], FolderListing] | None = None  # past the LRU
        self._fetching: dict[tuple[str, str], trio.Event] = {}
        self.sweep = FolderSweep()
        self._fresh: TTLCache[Question, Any] = TTLCache(maxsize=4096, ttl=listing_ttl)
        self._last: dict[Question, Any] = {}  # last answers, for when it is down
        self._down_until = 0.0
        self.manifest_fetches = 0
        self.folder_fetches = 0  # folders fetched
        self.folder_requests = 0  # registry calls that fetched them

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

    def folder_in_memory(self, version_id: str, path: str) -> FolderListing | None:
        """Folder ``path`` of a version if it is at hand, never asking the registry."""
        key = (version_id, path)
        found = self._folders.get(key)
        if found is None and self._largest is not None and self._largest[0] == key:
            return self._largest[1]
        return found

    def _keep(self, version_id: str, listing: FolderListing) -> None:
        key = (version_id, listing.path)
        try:
            self._folders[key] = listing
        except ValueError:  # one folder larger than the whole LRU: kept alone, beside it
            self._largest = (key, listing)

    async def folder(self, version_id: str, path: str,
                     siblings: Sequence[str] = ()) -> FolderListing:
        """Folder ``path`` of a version, fetched once and kept (LRU). ``siblings``: other
        folders of the version to fetch in the same request if they are not at hand (the
        next ones of a sweep). A folder another task is fetching is waited for, not fetched
        twice. Raises NotFound when the version has no such folder, and the registry's
        other errors."""
        while True:
            found = self.folder_in_memory(version_id, path)
            if found is not None:
                return found
            pending = self._fetching.get((version_id, path))
            if pending is None:
                break
            await pending.wait()  # then look again: that fetch may have failed
        wanted = [path]
        for other in siblings:
            key = (version_id, other)
            if (other != path and key not in self._fetching
                    and self.folder_in_memory(version_id, other) is None):
                wanted.append(other)
        events = {p: trio.Event() for p in wanted}
        for p, event in events.items():
            self._fetching[(version_id, p)] = event
        try:
            # parsing a large folder takes a while: not on the event loop
            got: list[FolderListing] = await self._blocking(
                self.registry.folder_listings, version_id, wanted
            )
        finally:
            for p, event in events.items():
                del self._fetching[(version_id, p)]
                event.set()
        self.folder_requests += 1
        self.folder_fetches += len(got)
        for listing in reversed(got):  # the one asked for last: the LRU's freshest
            self._keep(version_id, listing)
        return got[0]

    async def manifest(self, version_id: str) -> Manifest:
        """A version's whole manifest, asked for each time (staged folders keep their own):
        what staging an alias folder needs as its base."""
        manifest: Manifest = await self._blocking(self.registry.manifest, version_id)
        self.manifest_fetches += 1
        return manifest

    def saved(self, key: FolderKey, info: VersionInfo,
              manifest: Manifest) -> dict[str, FolderListing]:
        """This mount just saved folder ``key`` as ``info`` (whose manifest is
        ``manifest``): the registry is up, ``NAME:ALIAS`` now names ``info``, and the
        listings that may show it (its type's versions, the project's types, the projects)
        are asked again. Returns the new version's folders, built from ``manifest`` and
        kept (as many as the LRU holds), not fetched."""
        self._down_until = 0.0  # the registry just answered a commit
        listings = folder_listings(manifest)
        for listing in listings.values():
            self._keep(info.id, listing)
        self._last[Resolution(key.project, key.name, key.alias)] = info
        for question in (VersionList(key.project, key.type), TypeList(key.project),
                         ProjectList()):
            self._fresh.pop(question, None)
        return listings

    def staging_ended(self, key: FolderKey) -> None:
        """Folder ``key``'s staged changes were dropped (or it never existed in the
        registry): what ``NAME:ALIAS`` names and its type's versions are asked again."""
        self._last.pop(Resolution(key.project, key.name, key.alias), None)
        self._fresh.pop(VersionList(key.project, key.type), None)
