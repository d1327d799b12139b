"""A version's manifest as folders: which names each folder holds, which paths are files.

Built once per version when its folder is first opened; lookups and listings are then
dictionary reads. Paths were validated when the manifest was loaded, so every part here is a
plain file name.
"""

from __future__ import annotations

from artifactfs.core.collector import collector_paused
from artifactfs.core.manifest import Manifest, ManifestEntry

__all__ = ["VersionListing"]


class VersionListing:
    __slots__ = ("dirs", "files")

    def __init__(self, manifest: Manifest) -> None:
        with collector_paused():  # as many objects again as the manifest has entries
            self.files: dict[str, ManifestEntry] = dict(manifest.entries)
            children: dict[str, set[str]] = {"": set()}
            for path in self.files:
                parent = ""
                for part in path.split("/"):
                    here = f"{parent}/{part}" if parent else part
                    children.setdefault(parent, set()).add(part)
                    parent = here
            # a file's own path never becomes a key: only parents do
            self.dirs: dict[str, list[str]] = {d: sorted(n) for d, n in children.items()}
