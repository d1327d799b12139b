"""``ArtifactManifestEntry``: one file of an artifact, as W&B's public API shows it."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Protocol

from artifactfs.core.artifact_refs import artifact_ref_url, is_artifact_ref
from artifactfs.core.manifest import Manifest, ManifestEntry
from artifactfs.sdk.client import Client

__all__ = ["ArtifactManifestEntry", "EntryOwner"]


class EntryOwner(Protocol):
    """What an entry needs of its artifact (``Artifact`` is one): its id, its client, the
    local files of a draft's entries, and the download of some of its entries. A protocol,
    so that this module does not import ``artifact.py``, which imports it: the SDK's
    modules depend one way."""

    @property
    def id(self) -> str | None: ...

    @property
    def _api(self) -> Client: ...

    @property
    def _local(self) -> dict[str, Path]: ...

    def _download_entries(self, entries: list[ManifestEntry],
                          root: str | os.PathLike[str] | None) -> list[str]: ...

    def is_draft(self) -> bool: ...

    def _draft(self, *, change: bool = True) -> Manifest: ...


class ArtifactManifestEntry:
    def __init__(
        self, artifact: EntryOwner, entry: ManifestEntry, local_path: Path | None = None
    ) -> None:
        self._artifact = artifact
        self._entry = entry
        self.local_path = str(local_path) if local_path else None
        self.skip_cache = False  # W&B's field; the cache here is the mount's and the SDK's

    @property
    def name(self) -> str:
        """The entry's path (W&B's older name for it)."""
        return self._entry.path

    def digest_algorithm(self) -> str:
        """``"MD5"`` or ``"XXH128"``: the algorithm of ``digest`` (``extra.alg``)."""
        return self._entry.algorithm

    def parent_artifact(self) -> Any:
        """The ``Artifact`` this entry belongs to."""
        return self._artifact

    def to_json(self) -> dict[str, Any]:
        """The entry as a dict of W&B's field names, without those that are None (W&B's
        name: it is a dict, not a JSON string)."""
        fields = {"path": self.path, "digest": self.digest, "ref": self.ref,
                  "birth_artifact_id": self.birth_artifact_id, "size": self.size,
                  "extra": dict(self.extra), "local_path": self.local_path,
                  "skip_cache": self.skip_cache}
        return {k: v for k, v in fields.items() if v is not None}

    @property
    def path(self) -> str:
        return self._entry.path

    @property
    def digest(self) -> str:
        return self._entry.digest

    @property
    def size(self) -> int:
        return self._entry.size

    @property
    def ref(self) -> str | None:
        return self._entry.ref

    @property
    def birth_artifact_id(self) -> str | None:
        return self._entry.birth_artifact_id

    @property
    def extra(self) -> dict[str, Any]:
        return self._entry.extra

    def download(self, root: str | None = None, skip_cache: bool | None = None) -> str:
        """Download this one file under ``root`` (the artifact's default root if None) and
        return the file's path, as W&B. A ``wandb-artifact://`` reference is written with
        the bytes of the entry it names, verified as any file."""
        return self._artifact._download_entries([self._entry], root)[0]

    def ref_target(self) -> str:
        """What a reference entry points at, as W&B: its URI; for a ``wandb-artifact://``
        one, the reference URI of the entry it resolves to when that is a reference itself
        (an ``s3://`` object, say), else its own URI (W&B raises ValueError for a target
        stored in the registry, which names nothing more useful). Raises ValueError for an
        entry that is no reference, NotFound (as UnresolvedReference) for a target gone."""
        if self.ref is None:
            raise ValueError(f"entry {self.path!r} is not a reference; only reference "
                             "entries have a ref_target()")
        if not is_artifact_ref(self.ref):
            return self.ref
        target = self._artifact._api.content.artifact_refs.target(self._entry)
        return target.ref if target.ref is not None else self.ref

    def ref_url(self) -> str:
        """``wandb-artifact://<hex of the artifact's id>/<path>``: how another artifact
        names this entry (``other.add_reference(entry.ref_url())``), as W&B. The artifact
        must be saved; the hex is the version id itself (core/artifact_refs.py)."""
        artifact_id = self._artifact.id
        if artifact_id is None:
            raise ValueError(f"entry {self.path!r}: its artifact has no id until it is "
                             "saved; save it before taking a ref_url() of its entries")
        return artifact_ref_url(artifact_id, self.path)

    def __repr__(self) -> str:
        return (
            f"ArtifactManifestEntry(path={self.path!r}, digest={self.digest!r}, "
            f"size={self.size})"
        )
