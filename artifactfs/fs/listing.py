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
            children: dict[str, list[str]] = {"": []}
            for path in self.files:
                parent, _, name = path.rpartition("/")
                names = children.get(parent)
                if names is None:
                    # the first file of its folder: the folder, and any folders above it not
                    # seen yet, become names in their parents (each one once)
                    names = children[parent] = []
                    folder = parent
                    while True:
                        up, _, part = folder.rpartition("/")
                        above = children.get(up)
                        if above is not None:
                            above.append(part)
                            break
                        children[up] = [part]
                        folder = up
                names.append(name)
            # a file's own path never becomes a key: only folders do
            self.dirs: dict[str, list[str]] = {d: sorted(n) for d, n in children.items()}
