"""What ``artifactfs mount`` refuses before it starts a daemon: a folder whose files the
mount would hide, unless told."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from fs.conftest import Mount
from test_cli import embedded_only, refused

from artifactfs.fs.mounts import fuse_mount_type


@embedded_only
def test_a_non_empty_folder_is_refused_unless_allowed(
    run_cli, tmp_path: Path, mount_factory: Callable[..., Mount]
) -> None:
    folder = tmp_path / "mnt"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine")
    err = refused(run_cli("mount", str(folder)))
    assert "not empty" in err and "'notes.txt'" in err and "--allow-non-empty" in err
    assert fuse_mount_type(folder) is None
    assert (folder / "notes.txt").read_text() == "mine"  # nothing hidden, nothing lost
    mount = mount_factory("--allow-non-empty")
    assert fuse_mount_type(mount.path) is not None
    assert not (mount.path / "notes.txt").exists()  # hidden while mounted, as it was told
    run_cli("umount", str(mount.path), check=True)
    assert (folder / "notes.txt").read_text() == "mine"


@pytest.mark.parametrize("transport", ["embedded"], indirect=True)
def test_a_hidden_file_counts_too(run_cli, tmp_path: Path) -> None:
    folder = tmp_path / "mnt"
    folder.mkdir()
    (folder / ".keep").write_text("")
    assert "'.keep'" in refused(run_cli("mount", str(folder)))
