"""W&B's v1 artifact manifest: read, validate, write; unknown keys are kept.

::

    {"version": 1, "storagePolicy": "wandb-storage-policy-v1", "storagePolicyConfig": {...},
     "contents": {"path/in/artifact": {"digest": "...", "size": 5, "ref": "...",
                                       "birthArtifactID": "...", "extra": {...}}}}

Paths are relative POSIX paths: never absolute, never with ``.``, ``..`` or empty parts, never
with NUL, each part at most 255 bytes (the file-name limit of the file systems the mount and
``download`` write to). A path may not be both a file and a folder. Every check runs when a
manifest is built or loaded, so nothing downstream sees a path that could escape its root.

A manifest to be committed must also pass :func:`validate_for_commit`: what a registry
stores it must be able to give back and show, so paths have no control characters or
surrogates, sizes fit SQLite, references are URIs of a known scheme and every JSON value
is bounded (see ``core.limits``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, cast

from artifactfs.core.chunks import CHUNK_INDEX_EXTRA_KEY
from artifactfs.core.collector import collector_paused
from artifactfs.core.digests import (
    ALG_EXTRA_KEY,
    MD5,
    MD5_EXTRA_KEY,
    XXH128,
    artifact_digest,
    check_algorithm,
    is_md5_digest,
)
from artifactfs.core.errors import InvalidManifest
from artifactfs.core.limits import (
    MAX_EXTRA_BYTES,
    MAX_METADATA_BYTES,
    MAX_SIZE,
    check_json,
    check_text,
    forbidden_char,
    shown,
)

__all__ = [
    "DIGEST_ALGORITHM_KEY",
    "MAX_REF_LENGTH",
    "REF_SCHEMES",
    "STORAGE_POLICY",
    "Manifest",
    "ManifestEntry",
    "entries_from_contents",
    "stored_digest_of",
    "validate_entry_path",
    "validate_for_commit",
]

STORAGE_POLICY = "wandb-storage-policy-v1"
DIGEST_ALGORITHM_KEY = "digestAlgorithm"
"""The manifest key artifactfs records a non-MD5 artifact's digest algorithm under. W&B's
manifest JSON has none (its server keeps the algorithm beside it) and its loader ignores
keys it does not know."""
MAX_PART_BYTES = 255
_ENTRY_KEYS = {"digest", "size", "ref", "birthArtifactID", "extra"}
REF_SCHEMES = frozenset({"file", "http", "https", "s3", "gs", "wandb-artifact"})
"""URI schemes a reference entry may name (W&B's storage handlers that we know of)."""
MAX_REF_LENGTH = 4096
"""Longest reference URI, and longest digest of a reference entry (with ``checksum=False``
W&B's digest of a reference is the URI itself)."""
# entries serialized per json.dumps call in to_json: a few milliseconds of GIL each
_JSON_SLICE = 2000
_MAX_ID_LENGTH = 256  # birthArtifactID, storagePolicy: short identifiers in practice
# a reference's digest is an ETag, an MD5 or the URI: printable, no spaces
# stored entries' digests, one a line: base64 of 16 bytes each (what is_md5_digest accepts)
_MD5_DIGESTS_RE = re.compile(r"(?:[A-Za-z0-9+/]{22}==\n)*")
_REF_DIGEST_FORBIDDEN = re.compile(r"[\s\x00-\x1f\x7f\ud800-\udfff]")


def validate_entry_path(path: object) -> str:
    """Return ``path`` when it is a safe relative POSIX path, else raise InvalidManifest."""
    # Most paths are short ASCII names in plain folders. For those, a few substring tests
    # (each one pass in C) prove the path safe: no empty part (no '//', no '/' at either
    # end), no part starting with '.' (so no '.' or '..'), no NUL, and no part over 255
    # bytes because the whole path is not. A manifest of 100,000 entries runs this 100,000
    # times; it is three times quicker than a regular expression. Anything else, such as
    # '.hidden' or a long path, takes the loop over parts below.
    if (
        type(path) is str
        and 0 < len(path) <= MAX_PART_BYTES
        and path.isascii()
        and path[0] not in "/."
        and path[-1] != "/"
        and "//" not in path
        and "/." not in path
        and "\x00" not in path
    ):
        return path
    if not isinstance(path, str) or not path:
        raise InvalidManifest(f"entry path {path!r} must be a non-empty string")
    if "\x00" in path:
        raise InvalidManifest(f"entry path {path!r} contains a NUL byte")
    if path.startswith("/"):
        raise InvalidManifest(f"entry path {path!r} is absolute; paths must be relative")
    for part in path.split("/"):
        if part in ("", ".", ".."):
            raise InvalidManifest(
                f"entry path {path!r} has an empty, '.' or '..' part; paths may not escape "
                "or repeat their folder"
            )
        try:
            size = len(part.encode("utf-8", "surrogateescape"))
        except UnicodeEncodeError:
            raise InvalidManifest(
                f"entry path {shown(path)} holds an unpaired surrogate; paths are UTF-8 text"
            ) from None
        if size > MAX_PART_BYTES:
            raise InvalidManifest(f"entry path {path!r} has a part longer than 255 bytes")
    return path


# what an entry read without extra or unknown keys holds for both: one read-only empty mapping
# shared by all of them, where two dicts of their own cost 128 bytes an entry (164 MB of the
# 1.28 million of ImageNet's train split, held by every mount that lists it). Code that gives
# such an entry extra keys assigns a new dict (``entry.extra = {...}``); changing the shared
# one in place raises TypeError instead of reaching every other entry.
_NO_KEYS = cast(dict[str, Any], MappingProxyType({}))


@dataclass(slots=True)
class ManifestEntry:
    """One file of an artifact. ``unknown`` keeps keys this version does not understand.

    Entries read from a manifest without ``extra`` (or unknown keys) share one read-only
    empty mapping for it (see ``_NO_KEYS``): assign a new dict to give them some.
    """

    path: str
    digest: str
    size: int
    ref: str | None = None
    birth_artifact_id: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    unknown: dict[str, Any] = field(default_factory=dict)

    @property
    def algorithm(self) -> str:
        """The algorithm of ``digest``: XXH128 when ``extra.alg`` says so, else MD5 (W&B
        reads a missing or unknown ``alg`` as MD5; a commit refuses an unknown one)."""
        return XXH128 if self.extra.get(ALG_EXTRA_KEY) == XXH128 else MD5

    @property
    def stored_digest(self) -> str | None:
        """The base64 MD5 naming this entry's blob in a registry: ``digest`` itself for an
        MD5 entry, ``extra.md5`` for an XXH128 one (None when it lacks it), None for a
        reference (whose bytes are elsewhere)."""
        if self.ref is not None:
            return None
        if self.extra.get(ALG_EXTRA_KEY) == XXH128:
            md5 = self.extra.get(MD5_EXTRA_KEY)
            return md5 if isinstance(md5, str) else None
        return self.digest

    @property
    def chunk_index_sha256(self) -> str | None:
        value = self.extra.get(CHUNK_INDEX_EXTRA_KEY)
        return value if isinstance(value, str) else None

    def to_manifest_json(self) -> dict[str, Any]:
        """The entry as W&B's ``to_manifest_json`` writes it: its keys in wandb's order
        (``digest``, ``ref``, ``birthArtifactID``, ``size``, ``extra``), ``extra`` only when
        not empty, and no unknown keys (wandb drops them: ``local_path``, ``skip_cache``).
        ``extra`` is kept whole, artifactfs's own keys with it: wandb passes it through
        untouched, and the keys let a manifest exported and imported again be read by chunk
        (``chunkIndexSha256``) and keep its symlinks and modes."""
        out: dict[str, Any] = {"digest": self.digest}
        if self.ref is not None:
            out["ref"] = self.ref
        if self.birth_artifact_id is not None:
            out["birthArtifactID"] = self.birth_artifact_id
        out["size"] = self.size
        if self.extra:
            out["extra"] = dict(self.extra)
        return out

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = dict(self.unknown)
        out["digest"] = self.digest
        out["size"] = self.size
        if self.ref is not None:
            out["ref"] = self.ref
        if self.birth_artifact_id is not None:
            out["birthArtifactID"] = self.birth_artifact_id
        if self.extra:
            out["extra"] = self.extra
        return out

    @classmethod
    def from_dict(cls, path: str, raw: object) -> ManifestEntry:
        validate_entry_path(path)
        # ``type(...) is`` first: checks against the Mapping ABC are slow, and a manifest of
        # 100,000 entries from JSON is all plain dicts, most of them only a digest and a size
        if type(raw) is not dict and not isinstance(raw, Mapping):
            raise InvalidManifest(f"entry {path!r} must be an object")
        get = raw.get
        digest, size = get("digest"), get("size", 0)
        if not isinstance(digest, str) or not digest:
            raise InvalidManifest(f"entry {path!r} has no digest")
        if type(size) is not int or size < 0:
            if size is None:
                size = 0
            elif not isinstance(size, int) or isinstance(size, bool) or size < 0:
                raise InvalidManifest(f"entry {path!r} has an invalid size {size!r}")
        if len(raw) == 1 or (len(raw) == 2 and "size" in raw):
            return cls(path, digest, size, None, None, _NO_KEYS, _NO_KEYS)
        ref, birth, extra = get("ref"), get("birthArtifactID"), get("extra") or {}
        if ref is not None and not isinstance(ref, str):
            raise InvalidManifest(f"entry {path!r} has a non-string ref")
        if birth is not None and not isinstance(birth, str):
            raise InvalidManifest(f"entry {path!r} has a non-string birthArtifactID")
        if type(extra) is not dict and not isinstance(extra, Mapping):
            raise InvalidManifest(f"entry {path!r} has a non-object extra")
        unknown = _NO_KEYS if raw.keys() <= _ENTRY_KEYS else {
            k: v for k, v in raw.items() if k not in _ENTRY_KEYS
        }
        return cls(path, digest, size, ref, birth, dict(extra) if extra else _NO_KEYS, unknown)


class Manifest:
    """An ordered mapping of path to entry plus the manifest's own fields.

    Raises InvalidManifest on any entry that breaks the path rules, and when one path is
    both a file and the folder of another.
    """

    def __init__(
        self,
        entries: Iterable[ManifestEntry] = (),
        *,
        storage_policy: str = STORAGE_POLICY,
        storage_policy_config: dict[str, Any] | None = None,
        unknown: dict[str, Any] | None = None,
        digest_algorithm: str = MD5,
    ) -> None:
        self.storage_policy = storage_policy
        # the hash of the artifact digest, and of the digests of files added to it (W&B's
        # ``Artifact(digest_algorithm=...)``)
        self.digest_algorithm = check_algorithm(digest_algorithm)
        self.storage_policy_config: dict[str, Any] = dict(
            storage_policy_config or {"storageLayout": "V2"}
        )
        self.unknown: dict[str, Any] = dict(unknown or {})
        self._entries: dict[str, ManifestEntry] = {}
        self._folders: set[str] = set()
        # removals leave the folder set to be rebuilt when next needed, once: a save that
        # removes or replaces 10,000 entries of a large version rebuilt it 10,000 times
        self._folders_stale = False
        for entry in entries:
            self.add(entry)

    def add(self, entry: ManifestEntry, *, overwrite: bool = True) -> None:
        """Add or replace an entry; raises InvalidManifest on an unusable path."""
        self._add(validate_entry_path(entry.path), entry, overwrite)

    def _add(self, path: str, entry: ManifestEntry, overwrite: bool = True) -> None:
        """``add`` for a path already validated."""
        if self._folders_stale:
            self._folders = {p for e in self._entries for p in _parents(e)}
            self._folders_stale = False
        if path in self._folders:
            raise InvalidManifest(f"entry path {path!r} is already a folder in this artifact")
        if not overwrite and path in self._entries:
            raise InvalidManifest(f"entry {path!r} already exists in this artifact")
        parent = path.rpartition("/")[0]
        if parent and parent not in self._folders:  # most entries share a known folder
            self._add_folders(path, parent)
        self._entries[path] = entry

    def _add_folders(self, path: str, parent: str) -> None:
        """Record ``parent`` and its own parents as folders, from the nearest up, stopping
        at a known folder: its parents were checked when it was added."""
        new: list[str] = []
        while parent and parent not in self._folders:
            if parent in self._entries:
                raise InvalidManifest(
                    f"entry path {path!r} needs {parent!r} to be a folder, but it is a file"
                )
            new.append(parent)
            parent = parent.rpartition("/")[0]
        self._folders.update(new)

    def remove(self, path: str) -> ManifestEntry:
        """Remove and return an entry; raises KeyError when absent."""
        entry = self._entries.pop(path)
        self._folders_stale = True
        return entry

    def __contains__(self, path: object) -> bool:
        return path in self._entries

    def __getitem__(self, path: str) -> ManifestEntry:
        return self._entries[path]

    def get(self, path: str) -> ManifestEntry | None:
        return self._entries.get(path)

    def get_entry_by_path(self, path: str) -> ManifestEntry | None:
        """The entry at ``path``, or None: W&B's name for ``get``."""
        return self._entries.get(path)

    def __iter__(self) -> Iterator[ManifestEntry]:
        return iter(self._entries.values())

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def entries(self) -> Mapping[str, ManifestEntry]:
        return self._entries

    @property
    def size(self) -> int:
        return sum(e.size for e in self._entries.values())

    def digest(self) -> str:
        """The artifact digest (W&B's, in this manifest's algorithm; only paths and digests
        take part)."""
        return artifact_digest(((e.path, e.digest) for e in self._entries.values()),
                               self.digest_algorithm)

    def copy(self) -> Manifest:
        return Manifest(
            (
                ManifestEntry(
                    e.path, e.digest, e.size, e.ref, e.birth_artifact_id, dict(e.extra),
                    dict(e.unknown),
                )
                for e in self._entries.values()
            ),
            storage_policy=self.storage_policy,
            storage_policy_config=self.storage_policy_config,
            unknown=self.unknown,
            digest_algorithm=self.digest_algorithm,
        )

    def _top(self) -> dict[str, Any]:
        """The manifest's own keys: unknown ones kept, the algorithm only when not MD5 (so an
        MD5 manifest's JSON is what it was before there was a choice)."""
        out: dict[str, Any] = dict(self.unknown)
        if self.digest_algorithm != MD5:
            out[DIGEST_ALGORITHM_KEY] = self.digest_algorithm
        return out

    def to_dict(self) -> dict[str, Any]:
        out = self._top()
        out["version"] = 1
        out["storagePolicy"] = self.storage_policy
        out["storagePolicyConfig"] = self.storage_policy_config
        out["contents"] = {p: e.to_dict() for p, e in sorted(self._entries.items())}
        return out

    def to_manifest_json(self) -> dict[str, Any]:
        """The manifest as W&B's ``ArtifactManifestV1.to_manifest_json()`` gives it: exactly
        ``version``, ``storagePolicy``, ``storagePolicyConfig`` and ``contents``, the
        entries in this manifest's order (wandb keeps insertion order; ``to_json``, the
        registry's text, sorts), each as ``ManifestEntry.to_manifest_json``. The
        manifest's unknown top-level keys are left out, as wandb's loader drops them.
        ``ArtifactManifest.from_manifest_json`` loads the result with the same digest."""
        return {
            "version": 1,
            "storagePolicy": self.storage_policy,
            "storagePolicyConfig": dict(self.storage_policy_config),
            "contents": {p: e.to_manifest_json() for p, e in self._entries.items()},
        }

    def to_json(self) -> str:
        """``to_dict()`` as compact JSON with sorted keys: the text a registry stores.

        Made in slices of entries, with the same result as one ``json.dumps``: that one call
        would hold the GIL for the seconds 400,000 entries take, so that a server doing it in
        a worker thread could answer nothing else meanwhile.
        """
        top = self._top()
        top["version"] = 1
        top["storagePolicy"] = self.storage_policy
        top["storagePolicyConfig"] = self.storage_policy_config
        top["contents"] = None  # written below, slice by slice
        entries = self._entries
        paths = sorted(entries)
        slices = []
        for i in range(0, len(paths), _JSON_SLICE):
            part = {p: entries[p].to_dict() for p in paths[i : i + _JSON_SLICE]}
            slices.append(_dumps(part)[1:-1])
        contents = "{" + ",".join(slices) + "}"
        return "{" + ",".join(
            _dumps(k) + ":" + (contents if k == "contents" else _dumps(top[k]))
            for k in sorted(top)
        ) + "}"

    @classmethod
    def from_dict(cls, raw: object, *, consume: bool = False) -> Manifest:
        """The manifest of a parsed JSON object; raises InvalidManifest saying what is wrong.

        ``consume`` (for an object nobody else holds, as ``from_json`` makes): each entry's
        object is emptied once read, so that the parsed JSON and the manifest built from it
        are not both whole in memory at once (120 bytes an entry: 150 MB at ImageNet's 1.28
        million, in a mount daemon or a server at the moment it peaks).
        """
        if not isinstance(raw, Mapping):
            raise InvalidManifest("manifest must be a JSON object")
        if raw.get("version") != 1:
            raise InvalidManifest(f"manifest version {raw.get('version')!r} is not supported")
        contents = raw.get("contents", {})
        if not isinstance(contents, Mapping):
            raise InvalidManifest("manifest 'contents' must be an object")
        config = raw.get("storagePolicyConfig") or {}
        if not isinstance(config, Mapping):
            raise InvalidManifest("manifest 'storagePolicyConfig' must be an object")
        unknown = {
            k: v
            for k, v in raw.items()
            if k not in ("version", "storagePolicy", "storagePolicyConfig", "contents",
                         DIGEST_ALGORITHM_KEY)
        }
        policy = raw.get("storagePolicy", STORAGE_POLICY)
        if not isinstance(policy, str):
            raise InvalidManifest("manifest 'storagePolicy' must be a string")
        manifest = cls(
            storage_policy=policy,
            storage_policy_config=dict(config),
            unknown=unknown,
            digest_algorithm=raw.get(DIGEST_ALGORITHM_KEY, MD5),
        )
        if type(contents) is not dict:
            contents = dict(contents)
        # Most entries are a plain path, a digest and a size: for those the path rules are
        # proved for all paths at once (_all_plain_paths) and the entry made in
        # entries_from_contents; the folders are worked out once at the end. At 1.28
        # million entries this takes a third of the time of adding them one by one.
        with collector_paused():  # entries_from_contents tells the pause its count
            entries = entries_from_contents(contents, plain=_all_plain_paths(contents),
                                            consume=consume)
            manifest._set_entries(entries)
        return manifest

    def _set_entries(self, entries: dict[str, ManifestEntry]) -> None:
        """Take ``entries`` (paths valid, in their order) as this empty manifest's, with
        their folders; raises InvalidManifest when a path is both a file and a folder,
        saying so as ``add`` would have, one entry after the other."""
        folders: set[str] = set()
        for parent in {p.rpartition("/")[0] for p in entries}:
            while parent and parent not in folders:
                folders.add(parent)
                parent = parent.rpartition("/")[0]
        clash = folders.intersection(entries)
        if clash:
            for path in entries:  # the first entry to run into one, as add() would
                if path in clash:
                    inside = next(p for p in entries if p.startswith(path + "/"))
                    raise InvalidManifest(
                        f"entry path {inside!r} needs {path!r} to be a folder, but it is a file"
                        if list(entries).index(inside) > list(entries).index(path) else
                        f"entry path {path!r} is already a folder in this artifact"
                    )
        self._entries = entries
        self._folders = folders
        self._folders_stale = False

    @classmethod
    def from_json(cls, text: str | bytes) -> Manifest:
        """Parse a manifest's JSON text; raises InvalidManifest when it is not valid."""
        try:
            raw = json.loads(text)
        except (ValueError, UnicodeDecodeError) as exc:
            raise InvalidManifest(f"manifest is not valid JSON: {exc}") from None
        del text  # (the caller may hold it still)
        return cls.from_dict(raw, consume=True)


def entries_from_contents(contents: dict[str, Any], *, plain: bool, prefix: str = "",
                          consume: bool = False) -> dict[str, ManifestEntry]:
    """The entries of a manifest's ``contents`` (or of one folder's files: each key then
    a name, and ``prefix`` the folder's path and a slash), in their order.

    ``plain``: the caller proved every ``prefix + key`` a safe path (``_all_plain_paths``,
    or a valid folder and names that are each one plain part); an entry holding only a
    digest and a size is then made right here, where ``ManifestEntry.from_dict`` (which
    checks its path) takes every other. ``consume`` empties each entry's object once read
    (see ``Manifest.from_dict``). Raises InvalidManifest saying what is wrong.
    """
    make_entry, new_entry, none = ManifestEntry.from_dict, ManifestEntry, _NO_KEYS
    entries: dict[str, ManifestEntry] = {}
    with collector_paused(objects=len(contents)):
        for key, value in contents.items():
            path = prefix + key if prefix else key
            if plain and type(value) is dict:
                digest, size, n = value.get("digest"), value.get("size", 0), len(value)
                if (type(digest) is str and digest and type(size) is int and size >= 0
                        and (n == 1 or (n == 2 and "size" in value))):
                    entries[path] = new_entry(path, digest, size, None, None, none, none)
                    if consume:
                        value.clear()
                    continue
            entries[path] = make_entry(path, value)  # validates the path, says what is wrong
            if consume and type(value) is dict:
                value.clear()  # the entry keeps what it needs (strings, copies)
    return entries


def validate_for_commit(manifest: Manifest) -> None:
    """Refuse a manifest a registry could store but not give back, show or use safely.

    On top of the rules every manifest follows: no path with a control character (C0 or
    DEL) or an unpaired surrogate; every size, and their sum, at most ``2**63 - 1``; a
    stored entry's digest is a base64 MD5, or an XXH128 one (``extra.alg``) whose entry
    also names its blob's base64 MD5 (``extra.md5``); ``extra.alg`` is MD5 or XXH128 (W&B
    would read another as MD5, and check bytes by a hash that never made them); a
    reference is a ``SCHEME://...`` URI with a scheme of :data:`REF_SCHEMES`, at most
    :data:`MAX_REF_LENGTH` characters, and its digest is printable without spaces; each
    entry's ``extra`` and unknown keys are bounded JSON (64 levels, 64 KiB), as are the
    manifest's own config and unknown keys (1 MiB). Pure: the server, the embedded store
    and the SDK all run it.

    Raises InvalidManifest naming the entry (escaped) and the rule it breaks.
    """
    entries = manifest.entries
    values = entries.values()
    # a manifest of 400,000 entries is checked in a few passes over lists, each in C, with
    # a slow loop only to name the entry that fails: almost every manifest passes
    if forbidden_char("".join(entries)) is not None:
        for path in entries:
            check_text(path, "entry path", max_length=len(path), error=InvalidManifest)
    sizes = [e.size for e in values]
    total = sum(sizes)
    if sizes and max(sizes) > MAX_SIZE:
        for path, entry in entries.items():
            if entry.size > MAX_SIZE:
                raise InvalidManifest(f"entry {shown(path)} has size {entry.size}; the largest "
                                      f"size is 2**63-1 ({MAX_SIZE})")
    stored = [e.digest for e in values if e.ref is None]
    if stored and not _MD5_DIGESTS_RE.fullmatch("\n".join(stored) + "\n"):
        for path, entry in entries.items():
            if entry.ref is None and not is_md5_digest(entry.digest):
                raise InvalidManifest(
                    f"entry {shown(path)} has digest {shown(entry.digest)}, not a base64 MD5"
                )
    for entry in [e for e in values if e.ref is not None or e.extra or e.unknown
                  or e.birth_artifact_id is not None]:
        path = entry.path
        if entry.ref is not None:
            _check_reference(path, entry)
        if ALG_EXTRA_KEY in entry.extra:
            _check_algorithm(path, entry)
        if entry.extra:
            check_json(entry.extra, f"entry {shown(path)} extra", max_bytes=MAX_EXTRA_BYTES,
                       error=InvalidManifest)
        if entry.unknown:
            check_json(entry.unknown, f"entry {shown(path)} unknown keys",
                       max_bytes=MAX_EXTRA_BYTES, error=InvalidManifest)
        if entry.birth_artifact_id is not None:
            check_text(entry.birth_artifact_id, f"entry {shown(path)} birthArtifactID",
                       max_length=_MAX_ID_LENGTH, error=InvalidManifest)
    if total > MAX_SIZE:
        raise InvalidManifest(
            f"the entries' sizes add up to {total}; a version holds at most 2**63-1 bytes"
        )
    check_text(manifest.storage_policy, "manifest storagePolicy", max_length=_MAX_ID_LENGTH,
               error=InvalidManifest)
    check_json(manifest.storage_policy_config, "manifest storagePolicyConfig",
               max_bytes=MAX_METADATA_BYTES, error=InvalidManifest)
    if manifest.unknown:
        check_json(manifest.unknown, "manifest unknown keys", max_bytes=MAX_METADATA_BYTES,
                   error=InvalidManifest)


def stored_digest_of(raw: object) -> str | None:
    """``ManifestEntry.stored_digest`` of an entry still in its parsed JSON form, read
    leniently (None for anything that is not an entry with a string digest): for code that
    walks stored manifests for their blobs without building them (gc, store upgrades)."""
    if not isinstance(raw, dict) or raw.get("ref") is not None:
        return None
    extra = raw.get("extra")
    if isinstance(extra, dict) and extra.get(ALG_EXTRA_KEY) == XXH128:
        md5 = extra.get(MD5_EXTRA_KEY)
    else:
        md5 = raw.get("digest")
    return md5 if isinstance(md5, str) else None


def _check_algorithm(path: str, entry: ManifestEntry) -> None:
    alg = entry.extra[ALG_EXTRA_KEY]
    if alg not in (MD5, XXH128):
        raise InvalidManifest(
            f"entry {shown(path)} has digest algorithm {shown(str(alg))}; artifactfs reads MD5 "
            "and XXH128 digests"
        )
    if alg == XXH128 and entry.ref is None and not is_md5_digest(entry.stored_digest):
        raise InvalidManifest(
            f"entry {shown(path)} has an XXH128 digest and no extra.md5 naming its stored "
            "bytes; bring W&B artifacts in with 'artifactfs import', which hashes their files"
        )


def _check_reference(path: str, entry: ManifestEntry) -> None:
    ref = check_text(entry.ref or "", f"entry {shown(path)} ref", max_length=MAX_REF_LENGTH,
                     error=InvalidManifest)
    scheme, sep, rest = ref.partition("://")
    if not sep or not rest or scheme.lower() not in REF_SCHEMES:
        raise InvalidManifest(
            f"entry {shown(path)} has ref {shown(ref)}; a reference is a URI SCHEME://... "
            f"with SCHEME one of {', '.join(sorted(REF_SCHEMES))}"
        )
    digest = entry.digest
    if len(digest) > MAX_REF_LENGTH or _REF_DIGEST_FORBIDDEN.search(digest):
        raise InvalidManifest(
            f"entry {shown(path)} has digest {shown(digest)}; a reference's digest is an ETag, "
            f"an MD5 or the URI, at most {MAX_REF_LENGTH} printable characters without spaces"
        )


def _all_plain_paths(contents: dict[Any, Any]) -> bool:
    """True when every key of ``contents`` passes ``validate_entry_path``'s quick test: a
    short ASCII path with no empty part, no part starting with '.', no NUL. Checked on all
    paths joined by newlines, a few passes in C; a path holding a newline itself (then the
    count of newlines is off), or any other doubt, answers False, and each path is then
    checked on its own."""
    try:
        joined = "\n" + "\n".join(contents) + "\n"
    except TypeError:  # a key that is not a string
        return False
    return bool(contents) and (
        joined.isascii()
        and joined.count("\n") == len(contents) + 1
        and max(map(len, contents)) <= MAX_PART_BYTES
        and not any(bad in joined for bad in ("\n\n", "\n/", "\n.", "/\n", "//", "/.", "\x00"))
    )


def _dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def _parents(path: str) -> list[str]:
    parts = path.split("/")
    return ["/".join(parts[:i]) for i in range(1, len(parts))]
