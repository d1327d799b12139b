"""artifactfs: versioned ML artifacts as a registry, a Python SDK and a FUSE filesystem.

::

    import artifactfs

    art = artifactfs.Artifact("mnist", type="dataset")
    art.add_dir("data/mnist")
    art.save(project="vision")
    artifactfs.Api().artifact("vision/mnist:latest").download()
"""

from typing import TYPE_CHECKING, Any

from artifactfs.core.errors import (
    ArtifactFSError,
    Conflict,
    DigestMismatch,
    InvalidManifest,
    InvalidName,
    NotFound,
    PermissionDenied,
    RegistryUnavailable,
)

if TYPE_CHECKING:
    from artifactfs.sdk import Api, Artifact, ArtifactManifestEntry, Run, Table, init

__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    # the SDK is imported on first use, so the mount daemon and the CLI's other commands
    # start without it
    if name in ("Api", "Artifact", "ArtifactManifestEntry", "Run", "Table", "init"):
        import artifactfs.sdk

        return getattr(artifactfs.sdk, name)
    raise AttributeError(f"module 'artifactfs' has no attribute {name!r}")

__all__ = [
    "Api",
    "Artifact",
    "ArtifactFSError",
    "ArtifactManifestEntry",
    "Conflict",
    "DigestMismatch",
    "InvalidManifest",
    "InvalidName",
    "NotFound",
    "PermissionDenied",
    "RegistryUnavailable",
    "Run",
    "Table",
    "init",
]
