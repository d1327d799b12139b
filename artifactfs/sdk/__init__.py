"""The public Python API: ``Api`` and ``Artifact``, following W&B's."""

from artifactfs.sdk.api import Api
from artifactfs.sdk.artifact import Artifact
from artifactfs.sdk.entry import ArtifactManifestEntry
from artifactfs.sdk.media import Table
from artifactfs.sdk.run import Run, init

__all__ = ["Api", "Artifact", "ArtifactManifestEntry", "Run", "Table", "init"]
