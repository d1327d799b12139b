"""What ``artifactfs mount`` says at start: a folder whose files the mount would hide is
refused unless told, a staging folder it cannot use is one line, a daemon that stops at start
shows this start's log lines only, and the daemons' logs are rotated and pruned."""

from __future__ import annotations

import os
import time
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


@embedded_only
def test_a_staging_folder_that_cannot_be_made_is_one_line(run_cli, tmp_path: Path) -> None:
    (tmp_path / "mnt").mkdir()
    (tmp_path / "file").write_text("in the way")
    err = refused(run_cli("mount", str(tmp_path / "mnt"), "--staging-dir",
                          str(tmp_path / "file" / "staging")))
    assert err.strip().startswith(f"error: cannot use the staging folder {tmp_path}/file/")
    assert err.strip().endswith("choose another with --staging-dir")
    assert fuse_mount_type(tmp_path / "mnt") is None


@embedded_only
def test_a_daemon_that_stops_at_start_shows_only_this_starts_lines(
    run_cli, tmp_path: Path
) -> None:
    (tmp_path / "mnt").mkdir()
    (tmp_path / "not-a-store").write_text("a file")
    bad = {"ARTIFACTFS_STORE": str(tmp_path / "not-a-store")}
    for _ in range(2):  # the log keeps the first start's lines; the second shows its own
        err = refused(run_cli("mount", str(tmp_path / "mnt"), extra_env=bad))
        assert "stopped at start" in err
        assert err.count("cannot mount") == 1, err


def log_folder(env: dict[str, str]) -> Path:
    return Path(env["HOME"]) / ".local/state/artifactfs/logs"


@embedded_only
def test_logs_are_rotated_and_old_ones_pruned(
    env: dict[str, str], tmp_path: Path, run_cli
) -> None:
    folder = tmp_path / "mnt"
    folder.mkdir()
    run_cli("mount", str(folder), check=True)  # the default log, to learn its name
    run_cli("umount", str(folder), check=True)
    logs = log_folder(env)
    (log,) = logs.glob("mount-mnt-*.log")
    with open(log, "ab") as f:  # a log past the bound, from a long-running daemon
        f.write(b"old line\n" * ((11 << 20) // 9))
    stale = logs / "mount-gone-0123456789.log"
    stale.write_text("a mount of a folder long gone")
    month_ago = time.time() - 40 * 86400
    os.utime(stale, (month_ago, month_ago))
    recent = logs / "mount-recent-0123456789.log"
    recent.write_text("last week")
    try:
        run_cli("mount", str(folder), check=True)
    finally:
        run_cli("umount", str(folder))
    assert not stale.exists() and recent.exists()
    rotated = log.with_name(log.name + ".1")
    assert rotated.exists() and rotated.stat().st_size > 10 << 20
    assert log.stat().st_size < 1 << 20  # the new daemon's lines, in a fresh file
