"""W&B manifests in and out: import an artifact the ``wandb`` package made, export one it loads.

Import (:func:`import_wandb`) takes W&B's manifest JSON, either the client's
``artifact.manifest.to_manifest_json()`` or the ``wandb_manifest.json`` a W&B server keeps, and
the folder its files were downloaded to, and commits one version whose digest is W&B's. Every
file is checked against its entry (size, then the digest in the entry's own algorithm) before
a byte is uploaded, so a bad folder commits nothing. What import does with what it finds:

- ``local_path`` and ``skip_cache`` (the server's copy has them on every entry: a W&B
  client's staging path) are dropped, as are other entry keys W&B itself does not know: W&B's
  own loader drops them too (docs/wandb-format.md, §1 and §4).
- References stay references: no file is needed for them, and a file found at a reference's
  path under the folder (W&B's ``download()`` fetches ``file://`` ones) is left alone.
- A file under the folder that no entry names is refused (``extra_files="ignore"`` leaves such
  files out instead), as W&B's own ``verify()`` refuses it.
- Paths W&B loads unchecked (``../x``, ``/abs``) are refused, naming the entry.
- ``extra`` keys artifactfs gives a meaning to are not taken on trust: ``chunkIndexSha256``
  (and, for XXH128 entries, ``md5``) are computed again from the file; ``symlink`` (an
  artifactfs export's symbolic link) must be a link with that target under the folder.

Export (:func:`export_wandb`) writes a version's files, verified as ``download`` verifies them,
into a folder laid out as W&B's ``artifact.download()`` lays one (so W&B's ``verify()`` can run
on it), and its manifest in W&B's JSON beside the folder, never inside it: inside, it would be a
file no entry names (W&B's ``verify()`` refuses those) and could clash with an entry of that
name. ``chunkIndexSha256`` and ``md5`` are left out of the exported entries (how artifactfs
stores and serves the bytes, which a W&B client has no use for and which import computes
again); ``alg``, ``mode``, ``symlink``, ``etag`` and every other key are kept. W&B keeps
unknown ``extra`` keys and the artifact digest ignores ``extra`` (docs/wandb-format.md, §3).
References are kept in the manifest and not fetched.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from artifactfs.core.chunks import CHUNK_INDEX_EXTRA_KEY
from artifactfs.core.digests import (
    ALG_EXTRA_KEY,
    MD5,
    MD5_EXTRA_KEY,
    XXH128,
    artifact_digest,
    check_algorithm,
)
from artifactfs.core.errors import InvalidManifest
from artifactfs.core.limits import shown
from artifactfs.core.manifest import (
    DIGEST_ALGORITHM_KEY,
    STORAGE_POLICY,
    Manifest,
    ManifestEntry,
    validate_for_commit,
)
from artifactfs.core.names import LATEST, validate_alias, validate_type
from artifactfs.core.posix import check_symlink_entry, symlink_target
from artifactfs.core.references import check_no_credentials
from artifactfs.files import atomic_writer, hash_file
from artifactfs.sdk.artifact import Artifact, run_parallel
from artifactfs.sdk.client import Client
from artifactfs.sdk.posix import current_umask

__all__ = [
    "MANIFEST_SUFFIX",
    "ImportPlan",
    "export_wandb",
    "import_wandb",
    "load_wandb_manifest",
    "plan_import",
    "wandb_manifest_json",
]

MANIFEST_SUFFIX = ".wandb_manifest.json"
"""The exported manifest's default name: ``DIR`` + this, beside the folder ``DIR``."""

# what the client's to_manifest_json() and the server's copy write for an entry; the rest
# (local_path, skip_cache, anything newer) is dropped, as wandb's loader drops it
_WANDB_ENTRY_KEYS = ("digest", "ref", "birthArtifactID", "size", "extra")
# extra keys that say how artifactfs stores a blob, not what the file is: computed again on
# import, left out of an export
_STORAGE_EXTRA_KEYS = frozenset({CHUNK_INDEX_EXTRA_KEY, MD5_EXTRA_KEY})


# ---- import ---------------------------------------------------------------------------------


def load_wandb_manifest(
    manifest_json: Mapping[str, Any] | str | os.PathLike[str],
    digest_algorithm: str | None = None,
) -> tuple[Manifest, str]:
    """W&B's manifest JSON as an artifactfs manifest, and the artifact's digest algorithm.

    ``manifest_json`` is the parsed object (``to_manifest_json()``'s dict) or the path of a
    JSON file. The algorithm is ``digest_algorithm`` when given, else XXH128 when any entry
    has ``extra.alg == "XXH128"`` (or the JSON is an artifactfs export saying so), else MD5:
    the JSON W&B writes does not record it (docs/wandb-format.md, §3).

    Raises InvalidManifest saying what is wrong (naming the entry where one is at fault).
    """
    if isinstance(manifest_json, Mapping):
        raw: Any = manifest_json
        source = "manifest"
    else:
        source = os.fspath(manifest_json)
        try:
            with open(source, "rb") as f:
                raw = json.load(f)
        except (ValueError, UnicodeDecodeError) as exc:
            raise InvalidManifest(f"{source} is not valid JSON: {exc}") from None
    if not isinstance(raw, Mapping):
        raise InvalidManifest(f"{source} is not a W&B manifest: not a JSON object")
    if "version" not in raw:
        raise InvalidManifest(f"{source} is not a W&B manifest: it has no 'version'")
    version = raw["version"]
    if type(version) is not int or version != 1:  # "1" and true are not 1, as for wandb
        raise InvalidManifest(
            f"{source} has manifest version {_json_shown(version)}; W&B's manifests of "
            "version 1 are the ones artifactfs reads"
        )
    policy = raw.get("storagePolicy")
    if policy != STORAGE_POLICY:
        raise InvalidManifest(
            f"{source} has storagePolicy {_json_shown(policy)}; W&B writes (and loads) only "
            f"{STORAGE_POLICY!r}"
        )
    for key in ("storagePolicyConfig", "contents"):
        if not isinstance(raw.get(key), Mapping):
            raise InvalidManifest(f"{source}: {key!r} must be a JSON object")
    contents: dict[str, Any] = {}
    for path, entry in raw["contents"].items():
        if not isinstance(entry, Mapping):
            raise InvalidManifest(f"entry {shown(str(path))} must be a JSON object")
        contents[path] = {k: entry[k] for k in _WANDB_ENTRY_KEYS if k in entry}
    try:
        manifest = Manifest.from_dict({
            "version": 1,
            "storagePolicy": STORAGE_POLICY,
            "storagePolicyConfig": dict(raw["storagePolicyConfig"]),
            "contents": contents,
        })
    except InvalidManifest as exc:
        raise InvalidManifest(f"{source}: {exc}") from None
    if digest_algorithm is None:
        inferred = raw.get(DIGEST_ALGORITHM_KEY) == XXH128 or any(
            e.extra.get(ALG_EXTRA_KEY) == XXH128 for e in manifest if e.extra
        )
        digest_algorithm = XXH128 if inferred else MD5
    manifest.digest_algorithm = check_algorithm(digest_algorithm.upper())
    return manifest, manifest.digest_algorithm


class ImportPlan:
    """A W&B manifest checked against a folder: what :func:`import_wandb` commits.

    ``manifest`` is the version's manifest (artifactfs's extra keys computed from the files),
    ``local`` the file to upload for each stored entry, ``ignored`` the files under the folder
    no entry names (left out with ``extra_files="ignore"``), ``digest`` W&B's artifact digest.
    """

    def __init__(self, manifest: Manifest, local: dict[str, Path], ignored: list[str],
                 digest_algorithm: str, digest: str) -> None:
        self.manifest = manifest
        self.local = local
        self.ignored = ignored
        self.digest_algorithm = digest_algorithm
        self.digest = digest

    @property
    def references(self) -> int:
        return sum(1 for e in self.manifest if e.ref is not None)


def _json_shown(value: Any) -> str:
    """A JSON value of the user's file as a message may print it: a string quoted and
    escaped (``shown``), anything else as its JSON (which escapes what is not printable),
    cut at 80 characters."""
    if isinstance(value, str):
        return shown(value)
    text = json.dumps(value)
    return text if len(text) <= 80 else text[:80] + f"... ({len(text)} characters)"


def plan_import(
    manifest_json: Mapping[str, Any] | str | os.PathLike[str],
    root: str | os.PathLike[str],
    *,
    digest_algorithm: str | None = None,
    extra_files: str = "refuse",
    progress: Callable[[int], Callable[[int], None] | None] | None = None,
) -> ImportPlan:
    """Check every file of a W&B manifest under ``root``; upload nothing.

    ``extra_files`` is ``"refuse"`` (a file under ``root`` that no entry names is an error) or
    ``"ignore"`` (such files are left out, and listed in the plan). ``progress``, given the
    bytes to hash, returns what is told of each file hashed (a progress bar).

    Raises InvalidManifest (ValueError) naming the first entry at fault: a missing file, a
    size or digest that differs, an unsafe path, an entry a registry would refuse.
    """
    if extra_files not in ("refuse", "ignore"):
        raise ValueError(f"extra_files must be 'refuse' or 'ignore', not {extra_files!r}")
    manifest, algorithm = load_wandb_manifest(manifest_json, digest_algorithm)
    # a bad reference, path or size, before any file is read; all but W&B's XXH128 files,
    # which are refused until hashed (a registry names their blobs by an MD5 they lack)
    validate_for_commit(Manifest(e for e in manifest if e.ref is not None or e.algorithm == MD5))
    check_no_credentials(manifest)
    base = Path(root)
    if not base.is_dir():
        raise ValueError(f"{root} is not a folder")
    # W&B's manifest.digest(): before import changes any entry, though only extra changes
    expected = artifact_digest(((e.path, e.digest) for e in manifest), algorithm)
    ignored = _files_not_listed(base, manifest)
    if ignored and extra_files == "refuse":
        more = f" (and {len(ignored) - 1} more)" if len(ignored) > 1 else ""
        raise InvalidManifest(
            f"{base} holds {ignored[0]!r}{more}, which the manifest does not list; remove it, "
            "or import with --ignore-extra (the SDK's extra_files='ignore') to leave it out"
        )
    local: dict[str, Path] = {}
    for entry in manifest:
        if entry.ref is not None:
            continue
        local_file = base / entry.path
        if symlink_target(entry) is not None:
            _check_link(entry, local_file)
            continue
        _check_size(entry, local_file)
        local[entry.path] = local_file
    advance = progress(sum(manifest[p].size for p in local)) if progress else None

    def check(path: str) -> None:
        entry = manifest[path]
        content = hash_file(local[path], entry.algorithm)
        if content.size != entry.size:
            raise InvalidManifest(
                f"entry {shown(path)}: {local[path]} changed while it was read ({content.size} "
                f"bytes, the manifest says {entry.size})"
            )
        if content.digest != entry.digest:
            raise InvalidManifest(
                f"entry {shown(path)}: {local[path]} does not match its "
                f"{entry.algorithm} digest {entry.digest} (its bytes give "
                f"{content.digest})"
            )
        # the algorithm (kept as given), the MD5 naming the blob, the chunk index
        extra = {k: v for k, v in entry.extra.items() if k not in _STORAGE_EXTRA_KEYS}
        extra.update((k, v) for k, v in content.entry_extra().items() if k not in extra)
        if extra != entry.extra:
            entry.extra = extra
        if advance is not None:
            advance(content.size)

    run_parallel(check, sorted(local))
    validate_for_commit(manifest)
    return ImportPlan(manifest, local, ignored, algorithm, expected)


def _files_not_listed(base: Path, manifest: Manifest) -> list[str]:
    """The files (and links) under ``base`` whose paths no entry has, sorted."""
    entries = manifest.entries
    out = []
    for folder, dirs, files in os.walk(base):
        dirs.sort()
        rel = Path(folder).relative_to(base)
        # a link to a folder is an entry of its own (an exported symlink), not a folder
        for name in files + [d for d in dirs if os.path.islink(os.path.join(folder, d))]:
            path = (rel / name).as_posix()
            if path not in entries:
                out.append(path)
    return sorted(out)


def _check_size(entry: ManifestEntry, local_file: Path) -> None:
    try:
        st = local_file.stat()
    except FileNotFoundError:
        raise InvalidManifest(f"entry {shown(entry.path)}: {local_file} is missing") from None
    except NotADirectoryError:
        raise InvalidManifest(
            f"entry {shown(entry.path)}: {local_file} is missing (a file is in the way)"
        ) from None
    if not local_file.is_file():
        raise InvalidManifest(f"entry {shown(entry.path)}: {local_file} is not a file")
    if st.st_size != entry.size:
        raise InvalidManifest(
            f"entry {shown(entry.path)}: {local_file} has {st.st_size} bytes, the manifest "
            f"says {entry.size}"
        )


def _check_link(entry: ManifestEntry, local_file: Path) -> None:
    check_symlink_entry(entry)
    target = symlink_target(entry)
    if not local_file.is_symlink() or os.readlink(local_file) != target:
        raise InvalidManifest(
            f"entry {shown(entry.path)} is a symlink to {target!r}; {local_file} is not that "
            "link"
        )


def import_wandb(
    api: Client,
    manifest_json: Mapping[str, Any] | str | os.PathLike[str],
    root: str | os.PathLike[str],
    target: str,
    *,
    type: str,
    aliases: Sequence[str] = (),
    digest_algorithm: str | None = None,
    description: str | None = None,
    metadata: dict[str, Any] | None = None,
    extra_files: str = "refuse",
) -> Artifact:
    """Commit the artifact of a W&B manifest and the folder of its files as the next version
    of ``target`` (``[ENTITY/]PROJECT/NAME``); return it, committed.

    Every file is checked first (:func:`plan_import`), so any error commits nothing. The
    version's digest is W&B's ``manifest.digest()`` in the artifact's digest algorithm;
    raises InvalidManifest (a ValueError) naming the entry at fault.
    """
    ref = api.parse_ref(target)
    if ":" in target:
        raise ValueError(
            f"import target {target!r} takes no alias; pass aliases to label the new version"
        )
    aliases = [a if a == LATEST else validate_alias(a) for a in aliases]
    validate_type(type)  # refused before the files are read
    factory = api.progress

    def progress(total: int) -> Callable[[int], None] | None:
        return factory(f"check {ref.name}", total) if factory and total else None

    plan = plan_import(manifest_json, root, digest_algorithm=digest_algorithm,
                       extra_files=extra_files, progress=progress)
    if not len(plan.manifest):
        raise ValueError("nothing to import: the manifest lists no entries")
    client = api
    if ref.entity != api.config.entity:
        client = Client(config=api.config.replace(entity=ref.entity), progress=api.progress)
    art = Artifact(ref.name, type, description=description, metadata=metadata,
                   digest_algorithm=plan.digest_algorithm, api=client)
    art._manifest = plan.manifest
    art._local = dict(plan.local)
    art.aliases = aliases
    art.save(project=ref.project)
    if art.digest != plan.digest:  # a bug of ours, never the user's: say it loudly
        raise InvalidManifest(
            f"committed {art.qualified_name} with digest {art.digest}, not W&B's {plan.digest}"
        )
    return art


# ---- export ---------------------------------------------------------------------------------


def wandb_manifest_json(manifest: Manifest) -> dict[str, Any]:
    """A manifest as W&B's ``to_manifest_json()`` writes one, for ``from_manifest_json``:
    ``manifest.to_manifest_json()`` with entries sorted by path and, of ``extra``,
    everything but ``chunkIndexSha256`` and ``md5`` (see the module's docstring). An XXH128
    artifact also gets the top-level ``digestAlgorithm`` key, which W&B ignores and
    ``import`` reads."""
    top = manifest.to_manifest_json()
    contents: dict[str, Any] = {}
    for path in sorted(top["contents"]):
        out = top["contents"][path]
        extra = {k: v for k, v in out.pop("extra", {}).items() if k not in _STORAGE_EXTRA_KEYS}
        if extra:
            out["extra"] = extra
        contents[path] = out
    top["contents"] = contents
    if manifest.digest_algorithm != MD5:
        top[DIGEST_ALGORITHM_KEY] = manifest.digest_algorithm
    return top


def default_manifest_path(root: str | os.PathLike[str]) -> Path:
    """Where ``export`` writes the manifest of folder ``root``: beside it, ``ROOT`` +
    :data:`MANIFEST_SUFFIX`."""
    folder = Path(os.path.abspath(root))
    if not folder.name:
        raise ValueError(f"cannot put a manifest beside {root}; give its path")
    return folder.with_name(folder.name + MANIFEST_SUFFIX)


def export_wandb(
    artifact: Artifact,
    root: str | os.PathLike[str],
    manifest_path: str | os.PathLike[str] | None = None,
) -> Path:
    """Write a committed version's files into ``root`` and its W&B manifest JSON to
    ``manifest_path`` (default :func:`default_manifest_path`); return the manifest's path.

    Files already there with the right digest are kept; every file written is verified.
    References are not fetched: they stay references in the manifest. Refuses a manifest
    path inside ``root``, and a ``root`` holding files the version does not have (W&B's
    ``verify()`` of the folder would fail on them), before anything is written.
    """
    folder = Path(root)
    target = Path(manifest_path) if manifest_path is not None else default_manifest_path(root)
    real_folder = os.path.realpath(folder)
    real_target = os.path.realpath(target)
    if os.path.commonpath([real_folder, real_target]) == real_folder:
        raise ValueError(
            f"the manifest {target} would be inside {folder}, as a file the artifact does not "
            "have; put it outside the folder"
        )
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"{folder} is not a folder")
    manifest = artifact.manifest
    if folder.is_dir():
        extra = _files_not_listed(folder, manifest)
        if extra:
            raise ValueError(
                f"{folder} holds {extra[0]!r}, which {artifact.qualified_name} does not have "
                "(W&B's verify() of the folder would fail); export into a new or empty folder"
            )
    data = wandb_manifest_json(manifest)
    artifact._download_entries([e for e in manifest if e.ref is None], folder)
    target.parent.mkdir(parents=True, exist_ok=True)
    with atomic_writer(target) as f:
        f.write(json.dumps(data, indent=2).encode() + b"\n")
    os.chmod(target, 0o644 & ~current_umask())
    return target

