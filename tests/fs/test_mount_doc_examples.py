"""The shell examples of docs/mount.md and ``save --help``, run as written on a real mount."""

from __future__ import annotations

from pathlib import Path

from fs.conftest import Mount
from fs.test_mount_tree import push
from fs.test_mount_writes import folder_of, read_tree, save, sh
from helpers import make_tree
from test_cli import embedded_only

from artifactfs.sdk import Api


@embedded_only
def test_copying_new_images_into_an_existing_folder_adds_them_there(
    api: Api, tmp_path: Path, mounted: Mount, run_cli
) -> None:
    push(api, tmp_path, {"images/a.png": b"a", "README.txt": b"r"}, aliases=())
    new = make_tree(tmp_path / "new-images", {"b.png": b"b", "c.png": b"c"})
    folder = folder_of(mounted)
    sh(f"cd {tmp_path} && cp -r new-images/. {folder}/images/")
    assert save(run_cli, folder) == "vision/mnist:v1"
    assert read_tree(folder) == {"images/a.png": b"a", "images/b.png": b"b",
                                 "images/c.png": b"c", "README.txt": b"r"}
    assert new.is_dir()
