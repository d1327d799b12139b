"""A version's manifest one folder at a time: what a mount needs to list a folder or look a
name up in it, without the rest of the manifest.

A version shaped like ImageNet's train split (1,281,167 files in 1,000 folders) has a
106 MB manifest; fetching and parsing all of it before the first ``ls`` of the version took
10-13 s, where its root holds 1,000 names. So the registry keeps each version's folders as
rows of their own (built once, when the version is committed) and serves them by path; a
mount asks for a folder when it is first looked into.

The stored and wire form of one folder is compact JSON with sorted keys::

    {"files": {"NAME": {...an entry, as in the manifest...}, ...},
     "folders": ["NAME", ...], "path": "a/b"}

``path`` is ``""`` for the version's root; ``folders`` are sub-folder names, sorted;
``files`` maps each file's name (not its path) to its manifest entry. Every folder of a
version has a listing, the root always, so an empty version has one with nothing in it.
The registry gives folders by the batch (``GET /versions/{id}/folders?path=A&path=B``,
answered with a JSON list of these): ``find`` lists every folder, and one request per
folder would be a round trip each.

Pure functions and data: the store, the server, both registry transports and the mount
share them.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

from artifactfs.core.collector import collector_paused
from artifactfs.core.errors import InvalidManifest, InvalidRequest
from artifactfs.core.limits import shown
from artifactfs.core.manifest import (
    MAX_PART_BYTES,
    Manifest,
    ManifestEntry,
    entries_from_contents,
    validate_entry_path,
)

__all__ = [
    "FOLDER_BATCH_BYTES",
    "FOLDER_BATCH_MAX",
    "MAX_FOLDER_PATH",
    "FolderListing",
    "check_folder_path",
    "folder_listings",
    "folder_rows",
    "join_rows",
    "parse_folder",
    "parse_folders",
    "parse_stored",
]

FOLDER_BATCH_MAX = 64
"""Folders one request may ask for: 64 of ImageNet's (1,281 files each) are 7 MB of JSON."""
FOLDER_BATCH_BYTES = 16 << 20
"""A registry stops adding folders to an answer once it holds this many bytes (it always
gives the first one asked, however large): the client asks again for the rest."""
MAX_FOLDER_PATH = 4096
"""Longest folder path a request may name: the longest path the kernel gives a mount."""


class FolderListing:
    """One folder of a version: its sub-folders, its files, and all its names in order.

    ``files`` is keyed by each file's path in the version (what the mount's nodes are keyed
    by), in name order; ``names`` are the folder's names, files and sub-folders together,
    sorted (the order a listing shows, which sibling prefetch follows); ``folder_order``
    the sub-folders' names sorted, ``folders`` the same as a set.
    """

    __slots__ = ("files", "folder_order", "folders", "names", "path")

    def __init__(self, path: str, folders: Iterable[str], files: Mapping[str, ManifestEntry],
                 *, file_names: Sequence[str] | None = None) -> None:
        """``file_names``: the names of ``files`` in the same order, if at hand."""
        self.path = path
        self.folder_order: tuple[str, ...] = tuple(sorted(folders))
        self.folders: frozenset[str] = frozenset(self.folder_order)
        self.files: Mapping[str, ManifestEntry] = files
        if file_names is None:
            cut = len(path) + 1 if path else 0
            file_names = [p[cut:] for p in files]
        self.names: list[str] = sorted([*self.folder_order, *file_names])

    def __len__(self) -> int:
        return len(self.names)

    def __repr__(self) -> str:
        return (f"FolderListing({self.path!r}: {len(self.folders)} folders, "
                f"{len(self.files)} files)")

    def child_path(self, name: str) -> str:
        return f"{self.path}/{name}" if self.path else name


def _parent_and_name(path: str) -> tuple[str, str]:
    parent, _, name = path.rpartition("/")
    return parent, name


def _group(manifest: Manifest) -> tuple[dict[str, list[ManifestEntry]], dict[str, set[str]]]:
    """Each folder's entries and each folder's sub-folder names, every folder of the
    version (the root always) a key of both."""
    files: dict[str, list[ManifestEntry]] = {"": []}
    subs: dict[str, set[str]] = {"": set()}
    for entry in manifest:
        parent = entry.path.rpartition("/")[0]
        found = files.get(parent)
        if found is None:
            found = files[parent] = []
            # the first file of its folder: the folder, and any folders above it not seen
            # yet, become names in their parents
            folder = parent
            if folder not in subs:
                subs[folder] = set()
            while folder:
                up, _, name = folder.rpartition("/")
                above = subs.get(up)
                if above is not None:
                    above.add(name)
                    break
                subs[up] = {name}
                files[up] = []
                folder = up
        found.append(entry)
    return files, subs


def folder_listings(manifest: Manifest) -> dict[str, FolderListing]:
    """Every folder of ``manifest`` by path (the root is ``""``), built from its entries
    (a mount that just saved a version knows its manifest: no need to ask for them)."""
    files, subs = _group(manifest)
    out = {}
    for path, entries in files.items():
        entries.sort(key=lambda e: e.path)
        out[path] = FolderListing(path, subs[path], {e.path: e for e in entries})
    return out


def folder_rows(manifest: Manifest) -> Iterator[tuple[str, str]]:
    """``(folder path, its JSON)`` for every folder of ``manifest``: what a registry stores
    when it commits the version, and sends as is."""
    files, subs = _group(manifest)
    for path, entries in files.items():
        cut = len(path) + 1 if path else 0
        body = {
            "files": {e.path[cut:]: e.to_dict() for e in entries},
            "folders": sorted(subs[path]),
            "path": path,
        }
        yield path, json.dumps(body, sort_keys=True, separators=(",", ":"))


def check_folder_path(path: object) -> str:
    """``path`` if it can name a folder of a version (``""``, the root, or a path as
    manifests allow, at most MAX_FOLDER_PATH long); InvalidRequest saying why not."""
    if path == "":
        return ""
    if not isinstance(path, str):
        raise InvalidRequest(f"folder path {path!r} must be a string")
    if len(path) > MAX_FOLDER_PATH:
        raise InvalidRequest(f"folder path {shown(path)} is longer than {MAX_FOLDER_PATH} "
                             "characters")
    try:
        return validate_entry_path(path)
    except InvalidManifest as exc:
        raise InvalidRequest(f"folder path {shown(path)} cannot name a folder: {exc}") from None


def _bad(path: str, why: str) -> InvalidManifest:
    return InvalidManifest(f"the listing of folder {shown(path)} {why}")


def _plain_names(names: list[str]) -> bool:
    """True when every name is one plain path part: ASCII, at most 255 characters, not
    empty, no '/', no NUL, not starting with '.'. Proved for all of them at once, a few
    passes in C over the names joined by newlines (a name holding a newline itself, or
    anything else in doubt, answers False, and each is then checked on its own)."""
    if not names:
        return True
    try:
        joined = "\n" + "\n".join(names)
    except TypeError:  # a name that is not a string
        return False
    return (joined.isascii() and joined.count("\n") == len(names) and not joined.endswith("\n")
            and max(map(len, names)) <= MAX_PART_BYTES
            and not any(bad in joined for bad in ("\n\n", "\n.", "/", "\x00")))


def parse_folder(raw: object, path: str) -> FolderListing:
    """The listing of folder ``path`` from its parsed JSON; InvalidManifest when it is not
    one (the registry's answer is checked as strictly as a manifest is: every path that
    comes out of it is safe to join under a mount). ``raw``'s entries are emptied as read.

    ``find`` over ImageNet's train split parses all 1.28 million entries this way, so the
    names are checked all at once and plain entries made without a call each
    (``entries_from_contents``); no folder is worked out, all are ``path``.
    """
    if not isinstance(raw, dict):
        raise _bad(path, "is not a JSON object")
    if raw.get("path") != path:
        raise _bad(path, f"names another folder ({shown(str(raw.get('path')))})")
    folders, files = raw.get("folders", []), raw.get("files", {})
    if not isinstance(folders, list) or not isinstance(files, dict):
        raise _bad(path, "has 'folders' that is not a list or 'files' that is not an object")
    prefix = f"{path}/" if path else ""
    names: list[str] = list(files)
    every = [*folders, *names]
    plain = _plain_names(every)
    if not plain:
        if not all(type(n) is str and n and "/" not in n for n in every):
            name = next(n for n in every if type(n) is not str or not n or "/" in n)
            raise _bad(path, f"holds {shown(str(name))}, a name that is empty or not a "
                       "single path part")
        for name in every:
            validate_entry_path(prefix + name)
    if len(set(every)) != len(every):
        raise _bad(path, "holds a name twice (or as both a file and a folder)")
    entries = entries_from_contents(files, plain=True, prefix=prefix, consume=True)
    if sorted(names) != names:  # a registry stores them sorted; any other is sorted here
        names.sort()
        entries = {prefix + n: entries[prefix + n] for n in names}
    return FolderListing(path, folders, entries, file_names=names)


def parse_folders(text: str | bytes, paths: Sequence[str]) -> list[FolderListing]:
    """A registry's answer to a batch: the listings of the first of ``paths`` (at least
    one, in order). Raises InvalidManifest for anything else."""
    try:
        raw: Any = json.loads(text)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidManifest(f"folder listings are not valid JSON: {exc}") from None
    if not isinstance(raw, list) or not 0 < len(raw) <= len(paths):
        raise InvalidManifest(f"an answer for {len(paths)} folders must be a list of 1 to "
                              f"{len(paths)} listings")
    # one pause for the whole batch: a sweep's batch is a large build (core/collector.py),
    # where a pause per folder let the collector walk the growing heap between folders
    with collector_paused(objects=sum(_files_in(item) for item in raw)):
        return [parse_folder(item, path) for item, path in zip(raw, paths, strict=False)]


def parse_stored(texts: Sequence[str], paths: Sequence[str]) -> list[FolderListing]:
    """Stored listings (``folder_rows``' JSON) of ``paths``, one text each, parsed."""
    raws = [json.loads(t) for t in texts]
    with collector_paused(objects=sum(_files_in(raw) for raw in raws)):
        return [parse_folder(raw, p) for raw, p in zip(raws, paths, strict=True)]


def _files_in(raw: object) -> int:
    """How many entries a folder listing's JSON makes (what its pause is told)."""
    files = raw.get("files") if isinstance(raw, dict) else None
    return len(files) if isinstance(files, dict) else 0


def join_rows(rows: Iterable[str]) -> str:
    """Stored listings as one batch answer (a JSON list), with no parsing on the way."""
    return "[" + ",".join(rows) + "]"
