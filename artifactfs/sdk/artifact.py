"""``Artifact``: a versioned set of files, following W&B's public ``Artifact`` class.

A new ``Artifact(name, type)`` is a draft (state PENDING): files are added, then ``save()``
uploads the blobs the registry lacks and commits the manifest as the next version in one
atomic step. An artifact fetched with ``Api().artifact(ref)`` is committed; changing its
files turns it into a draft based on that version, whose ``save()`` makes a new version that
inherits the unchanged entries (their blobs are already stored, so nothing is uploaded for
them). Changing only ``description``, ``metadata`` or ``aliases`` of a committed artifact
and calling ``save()`` updates that version in place, as in W&B.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import secrets
import shutil
import tempfile
import weakref
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from artifactfs.core.artifact_refs import (
    MAX_CHAIN,
    UnresolvedReference,
    artifact_ref_url,
    is_artifact_ref,
    parse_artifact_ref,
)
from artifactfs.core.digests import DIGEST_ALGORITHMS, MD5
from artifactfs.core.errors import (
    ArtifactFSError,
    InvalidManifest,
    InvalidName,
    NotFound,
    ReferenceUnavailable,
)
from artifactfs.core.limits import check_description, check_metadata, check_tags
from artifactfs.core.manifest import (
    Manifest,
    ManifestEntry,
    validate_entry_path,
    validate_for_commit,
)
from artifactfs.core.names import LATEST, validate_alias, validate_name, validate_type
from artifactfs.core.posix import is_executable, symlink_target
from artifactfs.core.records import COMMITTED, DELETED, PENDING, VersionInfo
from artifactfs.files import hash_file
from artifactfs.sdk.client import Client
from artifactfs.sdk.collections import ArtifactCollection
from artifactfs.sdk.entry import ArtifactManifestEntry
from artifactfs.sdk.manifest import ArtifactManifest
from artifactfs.sdk.paths import safe_join
from artifactfs.sdk.posix import (
    check_links,
    current_umask,
    local_link_matches,
    place_link,
    set_executable,
)
from artifactfs.sdk.references import reference_entries

if TYPE_CHECKING:
    from artifactfs.sdk.run import Run

__all__ = ["Artifact"]

log = logging.getLogger(__name__)


class Artifact:
    """A W&B-style artifact: ``Artifact(name, type, description=None, metadata=None,
    digest_algorithm="MD5")``.

    ``api`` is the ``Api`` (or any ``Client``) whose registry it is saved to and read from;
    by default one configured from the environment, made when first needed.

    ``digest_algorithm`` is W&B's (wandb 0.29 and later): ``"MD5"``, or ``"XXH128"``, a
    hash many times quicker to compute on large files. Files added to an XXH128 artifact get
    XXH128 digests (marked ``extra.alg``), and its artifact digest is an XXH128 hash; a
    version made from it (by ``save()`` of a changed copy, or a save in a mount) keeps it.
    """

    def __init__(
        self,
        name: str,
        type: str,
        description: str | None = None,
        metadata: dict[str, Any] | None = None,
        incremental: bool = False,
        use_as: str | None = None,
        digest_algorithm: str = MD5,
        *,
        api: Client | None = None,
    ) -> None:
        if digest_algorithm not in DIGEST_ALGORITHMS:
            raise ValueError(
                f"digest_algorithm {digest_algorithm!r} is not one of "
                f"{', '.join(DIGEST_ALGORITHMS)}"
            )
        self._name = validate_name(name, "artifact name")
        self._type = validate_type(type)
        self._description = description
        self._metadata = _checked_metadata(metadata)
        self._client = api
        self._info: VersionInfo | None = None
        self._base: VersionInfo | None = None  # the committed version a draft started from
        # (any Manifest: ``manifest`` hands it out as this artifact's ArtifactManifest)
        self._manifest: Manifest | None = Manifest(digest_algorithm=digest_algorithm)
        self._local: dict[str, Path] = {}  # entry path -> local file to upload on save
        self._aliases: list[str] = []
        self._tags: list[str] = []
        self._staging: Path | None = None
        self._unchanged = False  # the last save found its content in a version already
        self._incremental = incremental
        self._use_as = use_as
        self._distributed_id: str | None = None
        self._final = False
        self._added: dict[str, str] = {}  # local path as given -> entry path

    # ---- construction from the registry ---------------------------------------------------

    @classmethod
    def _from_info(cls, client: Client, info: VersionInfo) -> Artifact:
        self = cls.__new__(cls)
        self._name = info.name
        self._type = info.type
        self._client = client
        self._base = None
        self._manifest = None  # fetched on first use
        self._local = {}
        self._staging = None
        self._unchanged = False
        self._incremental = False
        self._use_as = None
        self._distributed_id = None
        self._final = False
        self._added = {}
        self._load_info(info)
        return self

    def _load_info(self, info: VersionInfo) -> None:
        self._info = info
        self._description = info.description
        self._metadata = dict(info.metadata)
        self._aliases = list(info.aliases)
        self._tags = list(info.tags)

    @classmethod
    def from_id(cls, artifact_id: str, client: Client) -> Artifact:
        """The committed version with this id; raises NotFound."""
        return cls._from_info(client, client.registry.version(artifact_id))

    @staticmethod
    def expected_type(
        client: Client, name: str, entity_name: str, project_name: str
    ) -> str | None:
        """The type of collection ``name`` (an alias may follow it), or None if it is new."""
        collection = name.split(":", 1)[0]
        return client.registry.collection_type(entity_name, project_name, collection)

    # ---- attributes -----------------------------------------------------------------------

    @property
    def id(self) -> str | None:
        """The registry's id of the saved version; None for a draft."""
        return self._info.id if self._committed and self._info else None

    @property
    def entity(self) -> str | None:
        """The entity the version belongs to; None until it is saved (or fetched)."""
        return self._info.entity if self._info else None

    @property
    def project(self) -> str | None:
        """The project the version belongs to; None until it is saved (or fetched)."""
        return self._info.project if self._info else None

    @property
    def name(self) -> str:
        """``NAME:vN`` once saved (deleted too), the bare name for a new draft (as in W&B)."""
        if self._info is not None and self._base is None:
            return f"{self._name}:{self._info.version}"
        return self._name

    @property
    def collection_name(self) -> str:
        """The collection's name, without ``:vN`` (``mnist``)."""
        return self._name

    @property
    def source_name(self) -> str:
        """``NAME:vN``, as W&B names the version in its source collection (the same as
        ``name``: artifactfs has no portfolios)."""
        return self.name

    @property
    def version(self) -> str:
        """``vN`` of a saved version; ArtifactFSError for a draft, which has none yet."""
        if not self._committed:
            raise ArtifactFSError("a draft artifact has no version until it is saved")
        assert self._info is not None
        return self._info.version

    @property
    def qualified_name(self) -> str:
        """``ENTITY/PROJECT/NAME:vN`` once saved; the bare name for a new draft."""
        if not self._info:
            return self._name
        return f"{self._info.entity}/{self._info.project}/{self.name}"

    @property
    def type(self) -> str:
        """The artifact's type (``dataset``, ``model``, ...), the same for every version of
        its collection."""
        return self._type

    @property
    def description(self) -> str | None:
        """Free text about the version; settable, and saved by ``save()`` (its files are
        not changed by it)."""
        return self._description

    @description.setter
    def description(self, value: str | None) -> None:
        self._description = value

    @property
    def metadata(self) -> dict[str, Any]:
        """JSON-serialisable facts about the version; settable (checked for its bounds
        when set), and saved by ``save()``."""
        return self._metadata

    @metadata.setter
    def metadata(self, value: dict[str, Any]) -> None:
        self._metadata = _checked_metadata(value)

    @property
    def aliases(self) -> list[str]:
        """The aliases on the version (``latest`` on the newest); settable before
        ``save()``, which moves them here."""
        return self._aliases

    @aliases.setter
    def aliases(self, value: Sequence[str]) -> None:
        self._aliases = [validate_alias(a) if a != LATEST else a for a in value]

    @property
    def tags(self) -> list[str]:
        """W&B's tags: free labels on the version (``"resnet"``, ``"needs review"``), kept
        in the order set; unlike aliases, many versions may carry one, and none names a
        version. Settable, on a draft too (checked when set: words of letters, digits,
        ``_`` and ``-``, spaces between; a string is one tag), and saved by ``save()``."""
        return self._tags

    @tags.setter
    def tags(self, value: Sequence[str] | str) -> None:
        # InvalidRequest, a ValueError; a string is one tag, as in W&B
        self._tags = check_tags(value)

    @property
    def state(self) -> str:
        """``PENDING`` for a draft (or a changed copy), else the version's state
        (``COMMITTED``, ``DELETED``)."""
        if self._info is None or self._base is not None:
            return PENDING
        return self._info.state

    @property
    def manifest(self) -> ArtifactManifest:
        """The manifest (core ``Manifest`` with W&B's ``get_entry_by_path`` handing out
        entries that can download themselves, sdk/manifest.py)."""
        if self._manifest is None:
            assert self._info is not None
            self._manifest = self._api.registry.manifest(self._info.id)
        if not isinstance(self._manifest, ArtifactManifest):
            self._manifest = ArtifactManifest.of(self._manifest, self)
        return self._manifest

    @property
    def digest(self) -> str:
        """W&B's artifact digest: a hash of the sorted ``path:digest`` lines, with the
        manifest's digest algorithm. Equal digests mean equal content."""
        if self._committed:
            assert self._info is not None
            return self._info.digest
        return self.manifest.digest()

    @property
    def digest_algorithm(self) -> str:
        """``"MD5"`` or ``"XXH128"``: the algorithm of the artifact digest and of the
        digests of files added to it (the constructor's ``digest_algorithm``)."""
        return self.manifest.digest_algorithm

    @property
    def size(self) -> int:
        """Bytes of all the entries, references included."""
        if self._committed:
            assert self._info is not None
            return self._info.size
        return self.manifest.size

    @property
    def file_count(self) -> int:
        """The number of entries in the manifest."""
        return len(self.manifest)

    @property
    def created_at(self) -> str | None:
        """When the version was committed (ISO 8601, UTC); None for a draft."""
        return _iso(self._info.created_at) if self._committed and self._info else None

    @property
    def updated_at(self) -> str | None:
        """When the version last changed (aliases, description, metadata); None for a
        draft."""
        return _iso(self._info.updated_at) if self._committed and self._info else None

    @property
    def commit_hash(self) -> str | None:
        """The saved version's digest (W&B's commit hash); None for a draft."""
        return self.digest if self._committed else None

    def finalize(self) -> None:
        """Freeze this object's files, as W&B does before logging: adding or removing
        files afterwards raises ArtifactFSError. ``save()`` still commits it, and its
        description, metadata and aliases stay changeable."""
        self._final = True

    def new_draft(self) -> Artifact:
        """A new draft holding this saved version's files, description and metadata (no
        aliases or tags, as in W&B), whose ``save()`` makes the next version of the
        collection (this object is left as it is). ArtifactFSError for a draft."""
        info = self._logged("new_draft")
        draft = Artifact._from_info(self._api, info)
        draft._manifest = self.manifest.copy()
        draft._draft()
        return draft

    def is_draft(self) -> bool:
        """Whether this artifact has not been saved as it is (a new one, or a changed
        copy of a version)."""
        return not self._committed

    @property
    def incremental(self) -> bool:
        """W&B's flag for an artifact made to add to its collection's latest version; kept
        as given to the constructor (a change to a saved version is always saved as a new
        version holding the unchanged entries, so it changes nothing here)."""
        return self._incremental

    @property
    def use_as(self) -> str | None:
        """Deprecated in W&B: the ``use_as`` given to the constructor."""
        import warnings

        warnings.warn("Artifact.use_as is deprecated", DeprecationWarning, stacklevel=2)
        return self._use_as

    @property
    def distributed_id(self) -> str | None:
        """W&B's id shared by the runs of a distributed artifact; settable, kept on this
        object only (artifactfs has no distributed upserts: one ``save()`` commits)."""
        return self._distributed_id

    @distributed_id.setter
    def distributed_id(self, value: str | None) -> None:
        self._distributed_id = value

    @property
    def history_step(self) -> int | None:
        """The history step of the producing run at which this was logged: None, since
        artifactfs runs keep no metric history."""
        return None

    @property
    def url(self) -> str | None:
        """The version's page in the web view of the server it is kept on
        (``REGISTRY/web/p/PROJECT/NAME/vN``); None for a draft or an embedded store,
        which has no web view."""
        base = self._api.config.registry_url
        if not self._committed or base is None:
            return None
        assert self._info is not None
        return f"{base.rstrip('/')}/web/p/{self._info.project}/{self._name}/{self.version}"

    # ---- the source and collection (W&B's links: none here, every version is its own)

    @property
    def is_link(self) -> bool:
        """False: artifactfs keeps no links between collections (W&B's registry links);
        every version is the source version itself."""
        return False

    @property
    def linked_artifacts(self) -> list[Artifact]:
        """The links to this version in other collections: none (see ``is_link``)."""
        self._logged("linked_artifacts")
        return []

    @property
    def linked_at(self) -> str | None:
        """When a link was made: None, as for W&B's source versions."""
        return None

    @property
    def source_artifact(self) -> Artifact:
        """The version this one was logged as: itself (``is_link`` is False)."""
        self._logged("source_artifact")
        return self

    @property
    def source_entity(self) -> str:
        """The entity of the source version (this one's)."""
        return self._logged("source_entity").entity

    @property
    def source_project(self) -> str:
        """The project of the source version (this one's)."""
        return self._logged("source_project").project

    @property
    def source_version(self) -> str:
        """``vN`` of the source version (this one's)."""
        return self._logged("source_version").version

    @property
    def source_qualified_name(self) -> str:
        """``ENTITY/PROJECT/NAME:vN`` of the source version."""
        info = self._logged("source_qualified_name")
        return f"{info.entity}/{info.project}/{info.name}:{info.version}"

    @property
    def collection(self) -> ArtifactCollection:
        """The collection this version belongs to."""
        info = self._logged("collection")
        found = {c.name: c for c in self._api.registry.list_collections(
            info.entity, info.project, info.type)}
        count = found[info.name].version_count if info.name in found else 0
        return ArtifactCollection(self._api, info.entity, info.project, info.name,
                                  info.type, count)

    source_collection = collection

    def _logged(self, what: str) -> VersionInfo:
        """This version's record; ArtifactFSError for a draft, which W&B refuses the same
        way (ArtifactNotLoggedError)."""
        if self._info is None or self._base is not None:
            raise ArtifactFSError(f"Artifact.{what} needs a saved artifact; call save() first")
        return self._info

    @property
    def _committed(self) -> bool:
        return self._info is not None and self._base is None and self._info.state == COMMITTED

    @property
    def _api(self) -> Client:
        if self._client is None:
            self._client = Client()
        return self._client

    def __repr__(self) -> str:
        return f"<Artifact {self.qualified_name} type={self._type} state={self.state}>"

    # ---- adding files ---------------------------------------------------------------------

    def _draft(self, *, change: bool = True) -> Manifest:
        """Make this object a draft (a committed one becomes a draft based on itself);
        ``change``: to change its files, which a finalized artifact refuses."""
        if self._info is not None and self._info.state == DELETED:
            raise ArtifactFSError(f"artifact {self.qualified_name} is deleted")
        if self._final and change:
            raise ArtifactFSError(
                f"artifact {self.qualified_name} is finalized: its files cannot change; "
                "make a new draft (new_draft()) or a new Artifact to change them")
        if self._committed:
            base_manifest = self.manifest.copy()
            self._base = self._info
            self._manifest = base_manifest
            # labels of the version it came from, not of the one it will make (W&B's
            # new_draft copies neither; a mount's save does not either)
            self._aliases = []
            self._tags = []
        assert self._manifest is not None
        return self._manifest

    def add_file(
        self,
        local_path: str | os.PathLike[str],
        name: str | None = None,
        is_tmp: bool | None = False,
        skip_cache: bool | None = False,
        policy: str | None = "mutable",
        overwrite: bool = False,
    ) -> ArtifactManifestEntry:
        """Add one local file as entry ``name`` (its base name by default).

        The file is hashed now and checked again when uploaded on ``save()``: changing it in
        between makes ``save()`` fail rather than store bytes that differ from the manifest.
        Raises ValueError for a missing file, an unsafe entry path, or an entry of the same
        name added before with other bytes (unless ``overwrite``).
        """
        path = Path(local_path)
        if not path.is_file():
            raise ValueError(f"{local_path} is not a file")
        entry_name = validate_entry_path(name if name is not None else path.name)
        return self._add_local(path, entry_name, overwrite=overwrite)

    def _add_local(self, path: Path, entry_name: str, *, overwrite: bool) -> ArtifactManifestEntry:
        manifest = self._draft()
        content = hash_file(path, manifest.digest_algorithm)
        old = manifest.get(entry_name)
        changed = old is not None and old.digest != content.digest
        if changed and entry_name in self._local and not overwrite:
            raise ValueError(
                f"entry {entry_name!r} was already added with other contents; "
                "pass overwrite=True to replace it"
            )
        entry = ManifestEntry(entry_name, content.digest, content.size,
                              extra=content.entry_extra())
        manifest.add(entry)
        self._local[entry_name] = path
        self._added[os.fspath(path)] = entry_name
        return ArtifactManifestEntry(self, entry, path)

    def get_added_local_path_name(self, local_path: str) -> str | None:
        """The entry path a local file was added under (by ``add_file``, ``add_dir`` or
        ``add``), given the path it was added from; None for one not added."""
        for key in (os.fspath(local_path), os.path.abspath(local_path)):
            if key in self._added:
                return self._added[key]
        wanted = os.path.abspath(local_path)
        return next((e for p, e in self._added.items() if os.path.abspath(p) == wanted), None)

    def add_dir(
        self,
        local_path: str | os.PathLike[str],
        name: str | None = None,
        skip_cache: bool | None = False,
        policy: str | None = "mutable",
        merge: bool = False,
    ) -> None:
        """Add every file under a folder, keeping its layout (under ``name`` if given)."""
        root = Path(local_path)
        if not root.is_dir():
            raise ValueError(f"{local_path} is not a folder")
        prefix = validate_entry_path(name.strip("/")) + "/" if name else ""
        for folder, dirs, files in os.walk(root):
            dirs.sort()
            rel = Path(folder).relative_to(root)
            for file in sorted(files):
                source = Path(folder) / file
                if not source.is_file():  # sockets, fifos, dangling links
                    continue
                entry_path = prefix + (rel / file).as_posix()
                validate_entry_path(entry_path)
                self._add_local(source, entry_path, overwrite=True)

    @contextlib.contextmanager
    def new_file(
        self, name: str, mode: str | None = None, encoding: str | None = None
    ) -> Iterator[IO[Any]]:
        """Open a new file to write into the artifact as entry ``name``.

        ``mode`` None is W&B's default, ``"x"`` (text, the name must be new); ``encoding``
        None is Python's default for text. ::

            with artifact.new_file("labels.txt") as f:
                f.write("cat\\ndog\\n")
        """
        if mode is None:
            mode = "x"
        validate_entry_path(name)
        if "r" in mode or "+" in mode:
            raise ValueError(f"new_file opens files for writing; mode {mode!r} is not allowed")
        if name in self._draft() and "a" not in mode and "w" not in mode:
            raise ValueError(f"file {name!r} already exists in the artifact")
        staging = self._staging_dir()
        tmp = staging / str(len(list(staging.iterdir()))) / Path(name).name
        tmp.parent.mkdir(parents=True)
        binary = "b" in mode
        with open(tmp, "xb" if binary else "x", encoding=None if binary else encoding) as f:
            yield f
        self._add_local(tmp, name, overwrite=True)

    def _staging_dir(self) -> Path:
        if self._staging is None:
            self._staging = Path(tempfile.mkdtemp(prefix="artifactfs-new-file-"))
            weakref.finalize(self, shutil.rmtree, self._staging, True)
        return self._staging

    def add_reference(
        self,
        uri: str | ArtifactManifestEntry,
        name: str | None = None,
        checksum: bool = True,
        max_objects: int | None = None,
    ) -> list[ArtifactManifestEntry]:
        """Add entries whose bytes stay at ``uri`` (``file://``, ``http(s)://``, ``s3://``).

        The source is read now, by this client with its own configuration for the scheme, to
        take its digest (MD5, ETag, version id), unless ``checksum=False``, which stores
        the URI alone; a folder or an S3 prefix becomes one entry per file or object, up
        to ``max_objects``. Credentials in the URI (``user:password@``, signed query
        strings) never enter the manifest. Reads check the source against what is recorded
        here (docs/architecture.md, "References"). Raises ValueError for a bad URI or a
        missing source, ReferenceUnavailable for one that cannot be read now.

        ``uri`` may also be another saved artifact's entry (``other.get_entry("x")``) or
        its ``ref_url()``, ``wandb-artifact://<HEX>/<path>``: the entry then names that one
        (a chain of such references is followed to a concrete entry, as W&B does), with its
        digest and, unlike W&B's 0, its size, so that a mount shows the file's length.
        Reading it reads the target's bytes, verified. Raises UnresolvedReference (an
        InvalidManifest) for a version deleted, missing or not readable, or no such entry.
        """
        # resolved through the registry (another artifact's entry), before the schemes
        # read at their source
        if isinstance(uri, ArtifactManifestEntry):
            uri = uri.ref_url()
        if is_artifact_ref(uri):
            return [self._add_artifact_reference(uri, name)]
        entries = reference_entries(uri, name, checksum=checksum, max_objects=max_objects)
        manifest = self._draft()
        for entry in entries:
            manifest.add(entry)
            self._local.pop(entry.path, None)  # a file added before under that name goes
        return [ArtifactManifestEntry(self, entry) for entry in entries]

    def _add_artifact_reference(self, uri: str, name: str | None) -> ArtifactManifestEntry:
        version_id, path = parse_artifact_ref(uri)
        entry_name = validate_entry_path(name if name is not None else path.rpartition("/")[2])
        manifest = self._draft()
        references = self._api.content.artifact_refs
        # what W&B stores: the concrete entry's artifact and path, not the chain's start
        target_vid, target_path = version_id, path
        target = references.lookup(version_id, path, what=f"reference {entry_name!r}")
        for _ in range(MAX_CHAIN):
            if not is_artifact_ref(target.ref):
                break
            assert target.ref is not None
            target_vid, target_path = parse_artifact_ref(target.ref)
            target = references.lookup(target_vid, target_path,
                                       what=f"reference {entry_name!r}")
        else:
            raise InvalidManifest(f"{uri}: a chain of more than {MAX_CHAIN} references")
        entry = ManifestEntry(entry_name, target.digest, target.size,
                              ref=artifact_ref_url(target_vid, target_path))
        manifest.add(entry)
        self._local.pop(entry_name, None)
        return ArtifactManifestEntry(self, entry)

    def add(self, obj: Any, name: str, overwrite: bool = False) -> ArtifactManifestEntry:
        """Store ``obj`` as an ordinary file of the artifact and return its entry, as W&B's
        ``add``: an ``artifactfs.Table`` as ``NAME.table.json`` (W&B's table JSON), a numpy
        array as ``NAME.npy``, any JSON value as ``NAME.json`` (see ``sdk/media.py``).

        ``get(name)`` gives the object back. Raises TypeError for an object of none of
        these kinds, ValueError for a bad name, or for an entry of that name added before
        with other contents (unless ``overwrite``).
        """
        from artifactfs.sdk import media

        path, data = media.encode(obj, name)
        validate_entry_path(path)
        tmp = self._staging_dir() / f"obj-{secrets.token_hex(8)}" / Path(path).name
        tmp.parent.mkdir(parents=True)
        tmp.write_bytes(data)
        return self._add_local(tmp, path, overwrite=overwrite)

    def remove(self, item: str | ArtifactManifestEntry) -> None:
        """Remove an entry (or every entry under a folder) from a draft."""
        path = item.path if isinstance(item, ArtifactManifestEntry) else str(item).strip("/")
        manifest = self._draft()
        doomed = [p for p in manifest.entries if p == path or p.startswith(path + "/")]
        if not doomed:
            raise FileNotFoundError(f"no entry {path!r} in the artifact")
        for p in doomed:
            manifest.remove(p)
            self._local.pop(p, None)

    # ---- reading entries ------------------------------------------------------------------

    def get_entry(self, name: str) -> ArtifactManifestEntry:
        """The entry at path ``name``; KeyError naming the artifact if there is none."""
        entry = self.manifest.get(name)
        if entry is None:
            raise KeyError(f"no entry {name!r} in artifact {self.qualified_name}")
        return ArtifactManifestEntry(self, entry, self._local.get(name))

    get_path = get_entry

    def get(self, name: str) -> Any:
        """The object ``add(obj, name)`` stored: a ``Table``, a numpy array or a JSON value;
        None when the artifact holds none under ``name`` (as W&B's ``get``).

        ``name`` is the name given to ``add`` (``NAME.table.json``, ``NAME.npy`` and
        ``NAME.json`` are looked for) or a whole entry path with its suffix. The bytes are
        verified as every read is. Raises ValueError when two of those entries exist (name
        the one meant, with its suffix), InvalidManifest when an entry's bytes are not what
        its suffix says.
        """
        from artifactfs.sdk import media

        manifest = self.manifest
        found = [p for p in media.entry_names(name) if p in manifest]
        if not found:
            return None
        if len(found) > 1:
            raise ValueError(f"artifact {self.qualified_name} holds {' and '.join(found)}: "
                             "get one of them by its whole name")
        entry = manifest[found[0]]
        return media.decode(entry.path, media.read_entry(self, entry))

    def files(self) -> list[ArtifactManifestEntry]:
        """Every entry, in the manifest's (path) order."""
        return [ArtifactManifestEntry(self, e, self._local.get(e.path)) for e in self.manifest]

    def logged_by(self) -> Run | None:
        """The run that logged (made) this version (``Run.log_artifact``): the first, when
        later runs logged the same content again; None when none did, or for a draft."""
        from artifactfs.sdk.run import Run  # run.py imports this module

        if not self._committed:
            return None
        assert self._info is not None
        found = self._api.registry.version_runs(self._info.entity, self._info.id, "logged")
        return Run(self._api, found[0]) if found else None

    def used_by(self) -> list[Run]:
        """The runs that used (read) this version, oldest first: by ``Run.use_artifact``
        or a mount with ``--run``. Empty for a draft."""
        from artifactfs.sdk.run import Run

        if not self._committed:
            return []
        assert self._info is not None
        found = self._api.registry.version_runs(self._info.entity, self._info.id, "used")
        return [Run(self._api, info) for info in found]

    # ---- saving ---------------------------------------------------------------------------

    def save(self, project: str | None = None, settings: Any = None) -> Artifact:
        """Commit a draft as the next version, or store changed aliases/description/metadata.

        Uploads only the blobs the registry does not have; the version becomes visible in one
        atomic step, so an error or crash midway leaves the registry as it was.
        """
        # what the registry would refuse, refused before anything is uploaded
        check_metadata(self._metadata)
        check_description(self._description)
        self._tags = check_tags(self._tags)  # a list changed in place since it was set
        if self._committed:
            self._save_fields()
            return self
        api = self._api
        base = self._base
        entity = base.entity if base else api.config.entity
        if base:
            if project is not None and project != base.project:
                raise ValueError(
                    f"this artifact belongs to project {base.project!r}, not {project!r}"
                )
            project = base.project
        else:
            project = validate_name(project or api.config.project, "project")
        manifest = self._draft(change=False)
        validate_for_commit(manifest)
        self._upload_missing(manifest)
        aliases = [a for a in self._aliases if a != LATEST]
        info = api.registry.commit(
            entity=entity, project=project, name=self._name, type_=self._type,
            manifest=manifest, description=self._description, metadata=self._metadata,
            aliases=aliases, tags=self._tags,
            # one key per save: the HTTP client may then resend a commit whose answer was
            # lost without making a second version
            commit_key=secrets.token_hex(16),
        )
        self._base = None
        self._local = {}
        self._unchanged = info.unchanged
        self._load_info(info)
        return self

    def wait(self, timeout: int | None = None) -> Artifact:
        """This artifact: ``save()`` returns once the version is committed, so there is
        nothing to wait for (W&B's ``log`` is asynchronous, hence the method)."""
        return self

    def _upload_missing(self, manifest: Manifest) -> None:
        registry = self._api.registry
        needed: dict[str, Path] = {}
        for path, local in self._local.items():
            entry = manifest.get(path)
            if entry is not None and entry.stored_digest is not None:
                needed.setdefault(entry.stored_digest, local)
        missing = registry.missing_blobs(needed)
        total = sum(manifest[p].size for p in self._local
                    if manifest[p].stored_digest in missing)
        progress = self._progress("upload", total)

        def upload(digest: str) -> None:
            try:
                registry.upload_blob(needed[digest], digest, progress)
            except FileNotFoundError:
                raise ValueError(
                    f"{needed[digest]} was removed before the artifact was saved"
                ) from None

        run_parallel(upload, sorted(missing))

    def _save_fields(self) -> None:
        assert self._info is not None
        registry = self._api.registry
        info = self._info
        tags_changed = tuple(self._tags) != info.tags
        if (self._description != info.description or self._metadata != info.metadata
                or tags_changed):
            info = registry.update_version(
                info.id, description=self._description or "", metadata=self._metadata,
                tags=self._tags if tags_changed else None,
            )
        wanted, held = set(self._aliases) - {LATEST}, set(info.aliases) - {LATEST}
        for alias in sorted(held - wanted):
            info = registry.remove_alias(info.id, alias)
        for alias in sorted(wanted - held):
            info = registry.add_alias(info.id, alias)
        self._load_info(info)

    def delete(self, delete_aliases: bool = False) -> None:
        """Delete this version; refused (Conflict) while it holds aliases unless told."""
        if not self._committed:
            raise ArtifactFSError("only a saved artifact can be deleted")
        assert self._info is not None
        self._api.registry.delete_version(self._info.id, delete_aliases=delete_aliases)
        self._info = dataclasses.replace(self._info, state=DELETED, aliases=())
        self._aliases = []

    # ---- downloading and verifying --------------------------------------------------------

    def _default_root(self) -> Path:
        return Path("artifacts") / self.name

    def download(
        self,
        root: str | os.PathLike[str] | None = None,
        allow_missing_references: bool = False,
        skip_cache: bool | None = None,
        path_prefix: str | None = None,
        recursive: bool = False,
    ) -> str:
        """Download every file to ``root`` (default ``./artifacts/NAME:vN``); return ``root``.

        Files already there with the right digest are kept; every file written is verified
        (a ``wandb-artifact://`` reference's with the bytes of the entry it names).
        References to URIs are read from their sources, checked against what was logged
        (ReferenceChanged when a source changed); ``allow_missing_references`` skips those
        whose source cannot be read (ReferenceUnavailable) instead of failing.
        ``recursive``: first download each artifact this one refers to through
        ``wandb-artifact://`` references (and theirs), each whole to its own default root,
        as W&B does.
        """
        if recursive:
            self._download_dependencies(set())
        entries = [
            e for e in self.manifest if path_prefix is None or e.path.startswith(path_prefix)
        ]
        self._download_entries(entries, root, allow_missing_references=allow_missing_references)
        return str(Path(root) if root is not None else self._default_root())

    def _download_dependencies(self, done: set[str]) -> None:
        """Download every version this one refers to, and theirs, once each."""
        wanted: list[str] = []
        for entry in self.manifest:
            if is_artifact_ref(entry.ref):
                assert entry.ref is not None
                version_id = parse_artifact_ref(entry.ref)[0]
                if version_id not in done and version_id != self.id:
                    done.add(version_id)
                    wanted.append(version_id)
        for version_id in wanted:
            try:
                other = Artifact.from_id(version_id, self._api)
            except NotFound:
                raise UnresolvedReference(
                    f"{self.qualified_name} refers to version {version_id}, which is deleted, "
                    "missing, or not readable with this key") from None
            other._download_dependencies(done)
            other.download()

    def checkout(self, root: str | None = None) -> str:
        """Make ``root`` (default ``./artifacts/NAME``, no version) hold this version's
        files and nothing else, as W&B's ``checkout`` does: every file under it that is
        not an entry is **deleted**, then the entries are downloaded (those already there
        with the right digest are kept). Folders are left. Returns ``root``.

        Symbolic links are removed as links, never followed: a link to a folder outside
        ``root`` loses nothing there.
        """
        # everything that would refuse the download, refused before a file is deleted
        if not self._committed:
            raise ArtifactFSError("Artifact.checkout needs a saved artifact; call save() "
                                  "first (nothing was deleted)")
        top = Path(root) if root is not None else Path("artifacts") / self._name
        if top.exists() and not top.is_dir():
            raise ArtifactFSError(f"cannot check out into {top}: it is not a folder")
        check_links([e for e in self.manifest if symlink_target(e) is not None])
        paths = {e.path for e in self.manifest}
        for folder, dirs, names in os.walk(top):
            here = Path(folder)
            # a link to a folder is listed among dirs and not walked: it is not an entry
            for name in [*names, *(d for d in dirs if (here / d).is_symlink())]:
                rel = (here / name).relative_to(top).as_posix()
                if rel not in paths:
                    (here / name).unlink()
        return self.download(top)

    def _download_entries(
        self, entries: list[ManifestEntry], root: str | os.PathLike[str] | None, *,
        allow_missing_references: bool = False,
    ) -> list[str]:
        if not self._committed:
            raise ArtifactFSError("save the artifact before downloading it")
        base = Path(root) if root is not None else self._default_root()
        base.mkdir(parents=True, exist_ok=True)
        content = self._api.content
        links = [e for e in entries if symlink_target(e) is not None]
        check_links(links)  # before anything is written: refused whole, not half written
        todo: list[tuple[ManifestEntry, Path]] = []
        placed: list[tuple[ManifestEntry, Path]] = []
        written = []
        for entry in entries:
            if symlink_target(entry) is not None:
                continue
            dest = safe_join(base, entry.path)
            written.append(str(dest))
            placed.append((entry, dest))
            if _already_there(dest, entry):
                continue
            todo.append((entry, dest))
        progress = self._progress("download", sum(e.size for e, _ in todo))
        # a bar that counts files too (the CLI's) is told how many, and each one done
        expect_files = getattr(progress, "expect_files", None)
        file_done = getattr(progress, "file_done", None)
        if expect_files is not None:
            expect_files(len(todo))
        for entry, dest in todo:
            dest.parent.mkdir(parents=True, exist_ok=True)
            if dest.is_dir():
                raise InvalidManifest(f"cannot write {entry.path!r}: {dest} is a folder")
        skipped: set[str] = set()

        def fetch(job: tuple[ManifestEntry, Path]) -> None:
            try:
                content.download(job[0], job[1], progress)
            except ReferenceUnavailable as exc:
                if not allow_missing_references:
                    raise
                log.warning("skipped %s: %s", job[0].path, exc)
                skipped.add(job[0].path)
            if file_done is not None:
                file_done()

        run_parallel(fetch, todo)
        umask = current_umask()
        for entry, dest in placed:
            if entry.path in skipped:
                written.remove(str(dest))
                continue
            set_executable(dest, is_executable(entry), umask)
        written.extend(str(place_link(base, entry)) for entry in links)
        return written

    def file(self, root: str | os.PathLike[str] | None = None) -> str:
        """Download a single-file artifact and return the file's path."""
        if len(self.manifest) != 1:
            raise ValueError(
                f"artifact {self.qualified_name} holds {len(self.manifest)} files; file() is "
                "for single-file artifacts: use download(), or get_entry(NAME).download()"
            )
        return self._download_entries(list(self.manifest), root)[0]

    def verify(self, root: str | os.PathLike[str] | None = None) -> None:
        """Check that ``root`` holds exactly this artifact's files with their digests.

        Raises ValueError naming the first missing, extra or mismatching file.
        """
        base = Path(root) if root is not None else self._default_root()
        if not base.is_dir():
            raise ValueError(f"{base} is not a folder; download the artifact first")
        expected = self.manifest.entries
        present = set()
        for folder, dirs, files in os.walk(base):
            dirs.sort()
            for file in files + [d for d in dirs if os.path.islink(os.path.join(folder, d))]:
                present.add((Path(folder) / file).relative_to(base).as_posix())
        for path in sorted(set(expected) | present):
            entry = expected.get(path)
            if entry is None:
                raise ValueError(f"extra file {path!r} in {base} is not in the artifact")
            local = base / path
            if path not in present:
                raise ValueError(f"missing file {path!r} in {base}")
            if entry.ref is not None:
                continue
            if symlink_target(entry) is not None or local.is_symlink():
                if not local_link_matches(local, entry):
                    raise ValueError(f"{path!r} in {base} is not the symlink the artifact holds")
                continue
            if hash_file(local, entry.algorithm).digest != entry.digest:
                raise ValueError(
                    f"file {path!r} in {base} does not match digest {entry.digest}"
                )

    def verify_references(self) -> tuple[int, int]:
        """Read every reference's source again, past the cache, and check it against what
        was logged (``verify()`` skips references, as in W&B); ``(checked, unchecked)``,
        the second counting ``checksum=False`` references, which hold nothing to check.

        Raises ReferenceChanged or ReferenceUnavailable naming the first reference whose
        source differs or cannot be read.
        """
        content = self._api.content
        checked = unchecked = 0
        for entry in self.manifest:
            if entry.ref is None:
                continue
            if content.references.check_source(entry):
                checked += 1
            else:
                unchecked += 1
        return checked, unchecked

    def _progress(self, verb: str, total: int) -> Callable[[int], None] | None:
        factory = self._api.progress
        return factory(f"{verb} {self._name}", total) if factory and total else None

    def json_encode(self) -> dict[str, Any]:
        """A small JSON-serialisable summary: id, name, type and digest."""
        return {"id": self.id, "name": self.name, "type": self.type, "digest": self.digest}


TRANSFER_THREADS = 8
"""Files moved at once: small files are bound by round trips, which overlap in threads."""


def run_parallel(func: Callable[[Any], None], items: Sequence[Any]) -> None:
    """Run ``func`` over ``items`` in a few threads; the first error stops the rest."""
    if len(items) <= 1:
        for item in items:
            func(item)
        return
    with ThreadPoolExecutor(TRANSFER_THREADS, thread_name_prefix="artifactfs") as pool:
        futures = [pool.submit(func, item) for item in items]
        try:
            for future in futures:
                future.result()
        except BaseException:
            for future in futures:
                future.cancel()
            raise


def _already_there(dest: Path, entry: ManifestEntry) -> bool:
    """True when ``dest`` already holds the entry's bytes, so a download can skip it."""
    return (
        dest.is_file()
        and not dest.is_symlink()
        and dest.stat().st_size == entry.size
        and hash_file(dest, entry.algorithm).digest == entry.digest
    )


def _checked_metadata(metadata: dict[str, Any] | None) -> dict[str, Any]:
    if metadata is None:
        return {}
    if not isinstance(metadata, dict):
        raise InvalidName("metadata must be a dict")
    try:
        json.dumps(metadata)
    except (TypeError, ValueError) as exc:
        raise InvalidName(f"metadata must be JSON-serializable: {exc}") from None
    return dict(metadata)


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
