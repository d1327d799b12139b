"""artifactfs: versioned ML artifacts as a registry, a Python SDK and a FUSE filesystem.

::

    import artifactfs

    art = artifactfs.Artifact("mnist", type="dataset")
    art.add_dir("data/mnist")
    art.save(project="vision")
    artifactfs.Api().artifact("vision/mnist:latest").download()
"""

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
from artifactfs.sdk import Api, Artifact, ArtifactManifestEntry

__version__ = "0.1.0"

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
]
