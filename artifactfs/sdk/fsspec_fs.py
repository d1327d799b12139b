"""``artifact://``: the registry as an fsspec filesystem, for places without FUSE.

Containers without /dev/fuse, notebooks, Spark and Dask workers and every library that takes
a URL (pandas, pyarrow, polars, datasets, xarray) read through fsspec. This module gives them
the same tree the mount shows, on the same verified content path and cache as the mount
(``VerifiedContent``, artifactfs/content), configured as the CLI is (``ARTIFACTFS_*``, or
keyword arguments). Registered for the protocol ``artifact`` by the entry point in
pyproject.toml, so ``fsspec.filesystem("artifact")`` and ``pd.read_csv("artifact://...")``
find it without an import. See docs/fsspec.md.

Paths (the first part holding a colon is the artifact, ``NAME:vN`` or ``NAME:ALIAS``)::

    ""                              projects of the entity
    PROJECT                         types used in the project
    PROJECT/TYPE                    NAME:vN for each version, NAME:ALIAS for each alias
    PROJECT/NAME:LABEL/path         an artifact's files (the entity configured)
    PROJECT/TYPE/NAME:LABEL/path    the same, as the mount shows it
    ENTITY/PROJECT/NAME:LABEL/path  another entity's
    ENTITY/PROJECT/TYPE/NAME:LABEL/path

``A/B/NAME:LABEL`` is the mount's form (project A, type B) when the entity configured has
a collection NAME of type B in project A, or when neither reading has one (a new artifact
needs its type); otherwise it is entity A's project B.

Writes happen only inside ``fs.transaction``: each artifact written to gets ONE new
version when the transaction ends without an exception (the alias written to names it),
and nothing is committed when it ends with one. Outside a transaction a write raises
``TransactionRequired``. Versions (``NAME:vN``) never change: writing to one is refused.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cachetools import LRUCache
from fsspec.spec import AbstractBufferedFile, AbstractFileSystem, _Cached
from fsspec.transaction import Transaction

from artifactfs.config import Config
from artifactfs.core.errors import ArtifactFSError, NotFound, PermissionDenied
from artifactfs.core.manifest import Manifest, ManifestEntry, validate_entry_path
from artifactfs.core.names import (
    LATEST,
    parse_version_label,
    validate_alias,
    validate_name,
    validate_type,
)
from artifactfs.core.records import VersionInfo
from artifactfs.files import hash_file
from artifactfs.sdk.api import Api
from artifactfs.sdk.artifact import Artifact
from artifactfs.sdk.client import Client

__all__ = ["ArtifactFileSystem", "TransactionRequired", "VersionReadOnly"]

# keyword arguments (fsspec's storage options) and the variables they stand for
_OPTIONS = {
    "store": "ARTIFACTFS_STORE",
    "registry": "ARTIFACTFS_REGISTRY",
    "api_key": "ARTIFACTFS_API_KEY",
    "entity": "ARTIFACTFS_ENTITY",
    "project": "ARTIFACTFS_PROJECT",
    "db": "ARTIFACTFS_DB",
    "blobs": "ARTIFACTFS_BLOBS",
    "cache_dir": "ARTIFACTFS_CACHE_DIR",
    "cache_size": "ARTIFACTFS_CACHE_SIZE",
}


class TransactionRequired(ArtifactFSError, PermissionError):
    """A write outside ``fs.transaction``: a version is one commit of everything written."""


class VersionReadOnly(PermissionDenied, PermissionError):
    """A write to ``NAME:vN``: a version never changes (the mount says EROFS)."""


class _EnvCached(_Cached):
    """fsspec keeps one instance per set of arguments (so that ``pd.read_csv(url)`` finds
    the instance whose transaction is open); the configuration also comes from the
    environment, so a fingerprint of the ``ARTIFACTFS_*`` variables joins the arguments:
    a changed ``ARTIFACTFS_STORE`` gets a filesystem of its own, not the old store's. Only
    a hash of them, so no key lands in ``storage_options``."""

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        if "env_fingerprint" not in kwargs:
            seen = sorted((k, v) for k, v in os.environ.items() if k.startswith("ARTIFACTFS_"))
            kwargs["env_fingerprint"] = hashlib.sha256(repr(seen).encode()).hexdigest()[:16]
        return super().__call__(*args, **kwargs)


@dataclass(frozen=True)
class _Where:
    """A parsed path: which level of the tree, and the artifact's parts when it names one."""

    path: str  # as given, protocol and slashes stripped
    parts: tuple[str, ...]
    entity: str
    project: str | None = None
    type: str | None = None
    name: str | None = None
    label: str | None = None
    inner: str = ""  # the path inside the artifact, "" for its top folder

    @property
    def in_artifact(self) -> bool:
        return self.name is not None

    @property
    def key(self) -> tuple[str, str, str, str]:
        assert self.project is not None and self.name is not None and self.label is not None
        return (self.entity, self.project, self.name, self.label)

    def child(self, rel: str) -> str:
        return f"{self.path}/{rel}" if self.path else rel


class _Pending:
    """One artifact's writes in a transaction: a draft ``Artifact`` (its manifest shows the
    writes, so reads in the transaction see them) and the staged files it will upload."""

    def __init__(self, draft: Artifact, project: str, label: str) -> None:
        self.draft = draft
        self.project = project
        self.label = label
        self.changed = False
        self.own_client: Client | None = None  # made for another entity: closed at the end

    @property
    def manifest(self) -> Manifest:
        return self.draft.manifest

    def local(self, path: str) -> Path | None:
        return self.draft._local.get(path)


class ArtifactTransaction(Transaction):
    """``fs.transaction``: writes are staged (in a temporary folder and a draft per
    artifact) and committed on a clean exit, one version per artifact; discarded on an
    exception."""

    def start(self) -> None:
        super().start()
        self.fs._begin()

    def complete(self, commit: bool = True) -> None:
        fs = self.fs
        try:
            super().complete(commit)
        finally:
            fs._finish(commit)


class _StagedWriter(io.FileIO):
    """A file opened for writing in a transaction: a staging file, added to the artifact's
    draft when closed (once)."""

    def __init__(self, fs: ArtifactFileSystem, where: _Where, local: Path) -> None:
        super().__init__(local, "wb")
        self._fs = fs
        self._where = where
        self._local = local
        self._added = False

    def close(self) -> None:
        if self.closed:
            return
        super().close()
        if not self._added:
            self._added = True
            self._fs._stage_file(self._where, self._local)

    # fsspec's open() hands files written in a transaction to the transaction, which calls
    # one of these at its end; the artifact's draft already holds the file (or the whole
    # draft is dropped), so there is nothing left to do per file
    def commit(self) -> None:
        self.close()

    def discard(self) -> None:
        self._added = True  # closing now must not add it to a draft being dropped
        self.close()


class ArtifactFile(AbstractBufferedFile):
    """Random access to one committed entry: each range fsspec's cache asks for is read
    through ``VerifiedContent.read`` (whole small files, verified chunks of large ones)."""

    def __init__(self, fs: ArtifactFileSystem, path: str, entry: ManifestEntry,
                 **kwargs: Any) -> None:
        self.entry = entry
        super().__init__(fs, path, mode="rb", size=entry.size, **kwargs)

    def _fetch_range(self, start: int, end: int) -> bytes:
        return bytes(self.fs.api.content.read(self.entry, start, end - start))


class ArtifactFileSystem(AbstractFileSystem, metaclass=_EnvCached):
    """The registry as ``artifact://`` (module docstring). ``api=`` takes an ``Api`` to
    work through; otherwise one is made from the environment, with ``store``, ``registry``,
    ``api_key``, ``entity``, ``project``, ``db``, ``blobs``, ``cache_dir`` and
    ``cache_size`` overriding the ``ARTIFACTFS_*`` variable of that name."""

    protocol = "artifact"
    root_marker = ""
    transaction_type = ArtifactTransaction
    # entries of one chunk are read whole and verified by their MD5: a block per chunk
    blocksize = 1 << 20

    def __init__(self, api: Api | None = None, *, env_fingerprint: str = "",
                 **options: Any) -> None:
        unknown = sorted(set(options) - set(_OPTIONS) - {"skip_instance_cache",
                                                          "use_listings_cache",
                                                          "listings_expiry_time",
                                                          "max_paths"})
        if unknown:
            raise TypeError(f"artifact:// takes no option {', '.join(unknown)}; it takes "
                            f"{', '.join(_OPTIONS)} or api=")
        super().__init__()
        if api is None:
            env = dict(os.environ)
            env.update({_OPTIONS[k]: str(v) for k, v in options.items()
                        if k in _OPTIONS and v is not None})
            api = Api(config=Config.from_env(env))
        self.api = api
        self._manifests: LRUCache[str, Manifest] = LRUCache(maxsize=64)
        self._lock = threading.Lock()
        self._pending: dict[tuple[str, str, str, str], _Pending] = {}
        self._staging: Path | None = None

    # ---- paths ---------------------------------------------------------------------------

    def _where(self, path: str) -> _Where:
        path = self._strip_protocol(path)
        parts = tuple(p for p in path.split("/") if p)
        path = "/".join(parts)
        entity = self.api.config.entity
        at = next((i for i, p in enumerate(parts) if ":" in p), None)
        if at is None:
            if len(parts) > 2:
                raise FileNotFoundError(f"artifact://{path}: no such folder (an artifact is "
                                        "NAME:vN or NAME:ALIAS)")
            project = validate_name(parts[0], "project") if parts else None
            type_ = validate_type(parts[1]) if len(parts) > 1 else None
            return _Where(path, parts, entity, project, type_)
        name, _, label = parts[at].partition(":")
        validate_name(name, "artifact name")
        if parse_version_label(label) is None:
            validate_alias(label)
        head = parts[:at]
        inner = "/".join(parts[at + 1:])
        if inner:
            validate_entry_path(inner)
        if len(head) == 1:
            project, type_ = head[0], None
        elif len(head) == 2:
            entity, project, type_ = self._two_parts(head[0], head[1], name)
        elif len(head) == 3:
            entity, project, type_ = head
        else:
            raise FileNotFoundError(
                f"artifact://{path}: a path is [ENTITY/]PROJECT[/TYPE]/NAME:LABEL/...")
        return _Where(path, parts, validate_name(entity, "entity"),
                      validate_name(project, "project"),
                      validate_type(type_) if type_ is not None else None, name, label, inner)

    def _two_parts(self, first: str, second: str, name: str) -> tuple[str, str, str | None]:
        """``A/B/NAME:LABEL``: the mount's PROJECT/TYPE unless only ENTITY/PROJECT has NAME."""
        entity = self.api.config.entity
        registry = self.api.registry
        if registry.collection_type(entity, first, name) is not None:
            return entity, first, second
        try:
            other = registry.collection_type(first, second, name)
        except ArtifactFSError:  # another entity's, not readable with this key
            other = None
        if other is not None:
            return first, second, None
        return entity, first, second

    # ---- what a path names ---------------------------------------------------------------

    def _version(self, where: _Where) -> VersionInfo:
        assert where.project is not None and where.name is not None
        assert where.label is not None
        try:
            info = self.api.registry.resolve(where.entity, where.project, where.name,
                                             where.label)
        except NotFound:
            raise FileNotFoundError(f"artifact://{where.path}: no artifact "
                                    f"{where.entity}/{where.project}/{where.name}:"
                                    f"{where.label}") from None
        if where.type is not None and info.type != where.type:
            raise FileNotFoundError(f"artifact://{where.path}: {info.qualified_name} has "
                                    f"type {info.type}, not {where.type}")
        return info

    def _manifest(self, where: _Where) -> tuple[Manifest, VersionInfo | None, _Pending | None]:
        """The manifest a path inside an artifact reads (a transaction's draft, if it has
        written to it), its version (None for a new artifact's draft), and the draft."""
        pending = self._pending.get(where.key)
        if pending is not None:
            return pending.manifest, pending.draft._base or pending.draft._info, pending
        info = self._version(where)
        with self._lock:
            manifest = self._manifests.get(info.id)
        if manifest is None:
            manifest = self.api.registry.manifest(info.id)  # a version never changes
            with self._lock:
                self._manifests[info.id] = manifest
        return manifest, info, None

    def _entry(self, path: str) -> tuple[_Where, ManifestEntry, _Pending | None]:
        where = self._where(path)
        if not where.in_artifact or not where.inner:
            raise IsADirectoryError(f"artifact://{where.path} is a folder")
        manifest, _, pending = self._manifest(where)
        entry = manifest.get(where.inner)
        if entry is None:
            if self._children(manifest, where.inner):
                raise IsADirectoryError(f"artifact://{where.path} is a folder")
            raise FileNotFoundError(f"artifact://{where.path}: no such file")
        return where, entry, pending

    @staticmethod
    def _children(manifest: Manifest, inner: str) -> dict[str, ManifestEntry | None]:
        """A folder's files (their entries) and folders (None) by name."""
        prefix = inner + "/" if inner else ""
        out: dict[str, ManifestEntry | None] = {}
        for path, entry in manifest.entries.items():
            if not path.startswith(prefix):
                continue
            rest = path[len(prefix):]
            first, slash, _ = rest.partition("/")
            if slash:
                out.setdefault(first, None)
            else:
                out[first] = entry
        return out

    def _file_info(self, name: str, entry: ManifestEntry, info: VersionInfo | None
                   ) -> dict[str, Any]:
        out = {"name": name, "size": entry.size, "type": "file", "digest": entry.digest}
        if info is not None:
            out["version"] = info.version
            out["created"] = info.created_at
        return out

    @staticmethod
    def _dir_info(name: str, **more: Any) -> dict[str, Any]:
        return {"name": name, "size": 0, "type": "directory", **more}

    def _version_info(self, name: str, info: VersionInfo) -> dict[str, Any]:
        return self._dir_info(name, size=info.size, digest=info.digest, version=info.version,
                              id=info.id, aliases=list(info.aliases), tags=list(info.tags),
                              artifact_type=info.type, created=info.created_at)

    # ---- reading -------------------------------------------------------------------------

    def ls(self, path: str, detail: bool = True, **kwargs: Any) -> list[Any]:
        where = self._where(path)
        out = self._ls(where)
        return out if detail else [o["name"] for o in out]

    def _ls(self, where: _Where) -> list[dict[str, Any]]:
        registry = self.api.registry
        if not where.in_artifact:
            if where.project is None:
                return [self._dir_info(p) for p in registry.list_projects(where.entity)]
            if where.type is None:
                types = registry.list_types(where.entity, where.project)
                if not types and where.project not in registry.list_projects(where.entity):
                    raise FileNotFoundError(f"artifact://{where.path}: no such project")
                return [self._dir_info(where.child(t)) for t in types]
            out = []
            for c in registry.list_collections(where.entity, where.project, where.type):
                versions = registry.list_versions(where.entity, where.project, c.name)
                for v in versions:
                    out.append(self._version_info(where.child(f"{c.name}:{v.version}"), v))
                    out.extend(self._version_info(where.child(f"{c.name}:{a}"), v)
                               for a in v.aliases)
            if not out and where.type not in registry.list_types(where.entity, where.project):
                raise FileNotFoundError(f"artifact://{where.path}: no such folder")
            return sorted(out, key=lambda o: o["name"])
        manifest, info, _ = self._manifest(where)
        if where.inner and where.inner in manifest.entries:
            return [self._file_info(where.path, manifest.entries[where.inner], info)]
        children = self._children(manifest, where.inner)
        if not children and where.inner:
            raise FileNotFoundError(f"artifact://{where.path}: no such file or folder")
        return [self._dir_info(where.child(n)) if e is None
                else self._file_info(where.child(n), e, info)
                for n, e in sorted(children.items())]

    def info(self, path: str, **kwargs: Any) -> dict[str, Any]:
        where = self._where(path)
        if not where.in_artifact:
            if where.project is not None:
                self._ls(where)  # FileNotFoundError for a project or type that is not there
            return self._dir_info(where.path)
        manifest, info, _ = self._manifest(where)
        if not where.inner:
            if info is None:  # a new artifact, only in this transaction
                return self._dir_info(where.path, size=manifest.size)
            return self._version_info(where.path, info)
        entry = manifest.get(where.inner)
        if entry is not None:
            return self._file_info(where.path, entry, info)
        if self._children(manifest, where.inner):
            return self._dir_info(where.path)
        raise FileNotFoundError(f"artifact://{where.path}: no such file or folder")

    def exists(self, path: str, **kwargs: Any) -> bool:
        try:
            self.info(path)
        except (FileNotFoundError, ArtifactFSError, ValueError):
            return False
        return True

    def find(self, path: str, maxdepth: int | None = None, withdirs: bool = False,
             detail: bool = False, **kwargs: Any) -> Any:
        """Inside an artifact from its manifest at once (fsspec's walks a folder per
        request); above one through fsspec's walk."""
        where = self._where(path)
        if not where.in_artifact:
            return super().find(path, maxdepth=maxdepth, withdirs=withdirs, detail=detail,
                                **kwargs)
        try:
            manifest, info, _ = self._manifest(where)
        except FileNotFoundError:
            return {} if detail else []  # as fsspec's: nothing found under no folder
        found: dict[str, dict[str, Any]] = {}
        if where.inner in manifest.entries:
            found[where.path] = self._file_info(where.path, manifest.entries[where.inner], info)
        else:
            prefix = where.inner + "/" if where.inner else ""
            for p, entry in manifest.entries.items():
                if not p.startswith(prefix):
                    continue
                rel = p[len(prefix):].split("/")
                if withdirs:  # the file's folders, down to maxdepth
                    deepest = len(rel) - 1 if maxdepth is None else min(len(rel) - 1, maxdepth)
                    for i in range(1, deepest + 1):
                        name = where.child("/".join(rel[:i]))
                        found.setdefault(name, self._dir_info(name))
                if maxdepth is not None and len(rel) > maxdepth:
                    continue
                name = where.child("/".join(rel))
                found[name] = self._file_info(name, entry, info)
            if withdirs and found:
                found.setdefault(where.path, self._dir_info(where.path))
        names = sorted(found)
        return {n: found[n] for n in names} if detail else names

    def checksum(self, path: str) -> Any:  # fsspec's is an int from info; ours the digest
        """The entry's digest (MD5 or XXH128, base64, as the manifest says); for an
        artifact's folder, its version's digest."""
        info = self.info(path)
        if "digest" not in info:
            raise IsADirectoryError(f"artifact://{self._strip_protocol(path)} is a folder "
                                    "with no digest")
        return info["digest"]

    ukey = checksum

    def cat_file(self, path: str, start: int | None = None, end: int | None = None,
                 **kwargs: Any) -> bytes:
        where, entry, pending = self._entry(path)
        local = pending.local(where.inner) if pending else None
        size = entry.size
        begin = 0 if start is None else (start if start >= 0 else max(0, size + start))
        stop = size if end is None else (end if end >= 0 else max(0, size + end))
        stop = min(stop, size)
        if stop <= begin:
            return b""
        if local is not None:
            with open(local, "rb") as f:
                f.seek(begin)
                return f.read(stop - begin)
        return bytes(self.api.content.read(entry, begin, stop - begin))

    def get_file(self, rpath: str, lpath: str, callback: Any = None, outfile: Any = None,
                 **kwargs: Any) -> None:
        """Copy one file to ``lpath``, verified; a file there with the entry's digest
        already is kept as it is (nothing fetched)."""
        try:
            where, entry, pending = self._entry(rpath)
        except IsADirectoryError:  # fsspec's get() hands folders here too
            os.makedirs(lpath, exist_ok=True)
            return
        if outfile is not None:  # fsspec's own callers pass an open file
            outfile.write(self.cat_file(rpath))
            return
        dest = Path(lpath)
        if dest.is_file() and dest.stat().st_size == entry.size and (
                hash_file(dest, entry.algorithm).digest == entry.digest):
            return
        dest.parent.mkdir(parents=True, exist_ok=True)
        local = pending.local(where.inner) if pending else None
        if local is not None:
            shutil.copyfile(local, dest)
        else:
            self.api.content.download(entry, dest)
        if callback is not None:
            callback.relative_update(entry.size)

    def _open(self, path: str, mode: str = "rb", block_size: int | None = None,
              autocommit: bool = True, cache_options: dict[str, Any] | None = None,
              **kwargs: Any) -> Any:
        if "r" in mode:
            where, entry, pending = self._entry(path)
            local = pending.local(where.inner) if pending else None
            if local is not None:
                return open(local, "rb")
            return ArtifactFile(self, where.path, entry, block_size=block_size or "default",
                                cache_options=cache_options, **kwargs)
        if mode not in ("wb", "xb"):
            raise ValueError(f"artifact:// opens files with rb, wb or xb, not {mode!r}")
        where = self._writable(path)
        if mode == "xb" and self.exists(path):
            raise FileExistsError(f"artifact://{where.path} exists")
        return _StagedWriter(self, where, self._staging_file(where))

    # ---- writing -------------------------------------------------------------------------

    def _writable(self, path: str) -> _Where:
        where = self._where(path)
        if not self._intrans:
            raise TransactionRequired(
                f"writing artifact://{where.path} needs a transaction: a new version is "
                "committed when it ends (with fs.transaction: ...)")
        if not where.in_artifact or not where.inner:
            raise IsADirectoryError(f"artifact://{where.path}: files are written inside an "
                                    "artifact, PROJECT[/TYPE]/NAME:ALIAS/path")
        if parse_version_label(where.label or "") is not None:
            raise VersionReadOnly(f"artifact://{where.path}: version {where.label} never "
                                   "changes; write to NAME:ALIAS for a new version")
        return where

    def _draft(self, where: _Where) -> _Pending:
        """The transaction's draft of ``where``'s artifact, made on its first write from
        the version its alias names now (or a new artifact, which needs its type)."""
        pending = self._pending.get(where.key)
        if pending is not None:
            return pending
        assert where.name is not None and where.project is not None
        assert where.label is not None
        try:
            info: VersionInfo | None = self._version(where)
        except FileNotFoundError:
            held = self.api.registry.collection_type(where.entity, where.project, where.name)
            if held is not None and where.type not in (None, held):
                raise
            if held is not None:  # an alias not there: which version would it start from?
                raise FileNotFoundError(
                    f"artifact://{where.path}: {where.entity}/{where.project}/{where.name} "
                    f"has no alias {where.label}; a new version starts from the one an "
                    "alias names (write to NAME:latest, then add the alias)") from None
            info = None
        if info is not None:
            draft = Artifact._from_info(self.api, info)
        else:
            if where.type is None:
                raise FileNotFoundError(
                    f"artifact://{where.path}: there is no artifact {where.project}/"
                    f"{where.name} yet; a new one needs its type: write to "
                    f"{where.project}/TYPE/{where.name}:{where.label}/...")
            client: Client = self.api
            if where.entity != self.api.config.entity:
                client = Api(config=self.api.config.replace(entity=where.entity))
            draft = Artifact(where.name, where.type, api=client)
        draft._draft()
        pending = _Pending(draft, where.project, where.label)
        if draft._client is not self.api:
            pending.own_client = draft._client
        self._pending[where.key] = pending
        return pending

    def _staging_file(self, where: _Where) -> Path:
        if self._staging is None:  # fs.start_transaction() opens one without start()
            self._staging = Path(tempfile.mkdtemp(prefix="artifactfs-fsspec-"))
        folder = Path(tempfile.mkdtemp(dir=self._staging))
        return folder / Path(where.inner).name

    def _stage_file(self, where: _Where, local: Path) -> None:
        pending = self._draft(where)
        pending.draft.add_file(local, where.inner, overwrite=True)
        pending.changed = True

    def put_file(self, lpath: str, rpath: str, callback: Any = None, mode: str = "overwrite",
                 **kwargs: Any) -> None:
        if os.path.isdir(lpath):
            return  # folders are implied by the paths of their files
        where = self._writable(rpath)
        if mode == "create" and self.exists(rpath):
            raise FileExistsError(f"artifact://{where.path} exists")
        local = self._staging_file(where)
        shutil.copyfile(lpath, local)  # the caller's file may change before the commit
        self._stage_file(where, local)
        if callback is not None:
            callback.relative_update(local.stat().st_size)

    def pipe_file(self, path: str, value: bytes, mode: str = "overwrite",
                  **kwargs: Any) -> None:
        where = self._writable(path)
        if mode == "create" and self.exists(path):
            raise FileExistsError(f"artifact://{where.path} exists")
        local = self._staging_file(where)
        local.write_bytes(value)
        self._stage_file(where, local)

    def rm_file(self, path: str) -> None:
        where = self._writable(path)
        manifest = self._manifest(where)[0]
        if where.inner not in manifest.entries:
            if self._children(manifest, where.inner):
                raise IsADirectoryError(f"artifact://{where.path} is a folder: "
                                        "rm(..., recursive=True) removes its files")
            raise FileNotFoundError(f"artifact://{where.path}: no such file")
        pending = self._draft(where)
        pending.draft.remove(where.inner)
        pending.changed = True

    def _rm(self, path: str) -> None:
        self.rm_file(path)

    def rm(self, path: Any, recursive: bool = False, maxdepth: int | None = None) -> None:
        """Remove files (with ``recursive``, every file under a folder) in a transaction.
        Folders exist through their files, so only files are removed; a folder goes with
        its last file."""
        paths = path if isinstance(path, list) else [path]
        for p in paths:
            self._writable(p)  # in a transaction, and inside an artifact
        for p in paths:
            # a folder's files from the manifest at once (the draft's, after the first)
            for file in (self.find(p, maxdepth=maxdepth) if recursive else [p]):
                self.rm_file(file)

    def mkdir(self, path: str, create_parents: bool = True, **kwargs: Any) -> None:
        """Folders exist through their files: nothing to make (as in object stores)."""

    def makedirs(self, path: str, exist_ok: bool = False) -> None:
        """As ``mkdir``."""

    def rmdir(self, path: str) -> None:
        """As ``mkdir``: an empty folder is not there to remove."""

    # ---- the transaction -----------------------------------------------------------------

    def _begin(self) -> None:
        self._pending = {}  # left by nothing (each end clears it), but a start is a start

    def _finish(self, commit: bool) -> None:
        pending, self._pending = self._pending, {}
        staging, self._staging = self._staging, None
        try:
            if commit:
                for p in pending.values():
                    if not p.changed:
                        continue
                    p.draft.aliases = [] if p.label == LATEST else [p.label]
                    p.draft.save(p.project)
        finally:
            for p in pending.values():
                if p.own_client is not None:
                    p.own_client.close()
            if staging is not None:
                shutil.rmtree(staging, ignore_errors=True)
