"""The daemon's life: returning when ready, unmounting on command and signals, stale mounts."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from fs.conftest import Mount, take_down, wait_gone
from helpers import ARTIFACTFS

from artifactfs.fs.mounts import FSTYPE, fuse_mount_type, is_stale


def test_mount_returns_ready_and_names_its_log(mounted: Mount):
    assert fuse_mount_type(mounted.path) == FSTYPE
    assert os.listdir(mounted.path) == []  # an empty store answers with an empty root
    assert "mounted" in mounted.log_text()


def test_umount_stops_the_daemon(mounted: Mount, run_cli):
    proc = run_cli("umount", str(mounted.path))
    assert proc.returncode == 0, proc.stderr
    assert wait_gone(mounted.pid)
    assert fuse_mount_type(mounted.path) is None


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signals_unmount_cleanly(mounted: Mount, signum: int):
    os.kill(mounted.pid, signum)
    assert wait_gone(mounted.pid)
    assert fuse_mount_type(mounted.path) is None
    assert "unmounted" in mounted.log_text()


def _children(pid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                out.append(int(entry.name))
    return out


def test_killed_daemon_leaves_a_mount_that_mount_recovers(mount_factory, run_cli):
    first = mount_factory()
    helpers = _children(first.pid)  # fusermount3 kept by auto_unmount
    for pid in [first.pid, *helpers]:  # kill the helper too: a truly stale mount
        os.kill(pid, signal.SIGKILL)
    assert wait_gone(first.pid)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and fuse_mount_type(first.path) is not None:
        if is_stale(first.path):
            break
        time.sleep(0.05)
    assert is_stale(first.path)
    second = mount_factory()  # mounting again recovers the dead mount
    assert second.pid != first.pid
    assert os.listdir(second.path) == []
    assert not is_stale(second.path)


def test_mount_right_after_a_crash_recovers_though_stat_still_answers(mount_factory):
    """The kernel answers a stat of the dead mount's root from its attribute cache for a
    while; mounting again must not take that for a live mount."""
    first = mount_factory()
    os.stat(first.path)  # the root's attributes are now in the kernel's cache
    for pid in [first.pid, *_children(first.pid)]:  # no auto_unmount to race with
        os.kill(pid, signal.SIGKILL)
    assert wait_gone(first.pid)
    os.stat(first.path)  # still answered
    second = mount_factory()
    assert second.pid != first.pid and not is_stale(second.path)


def test_sigkill_alone_is_cleaned_up_by_auto_unmount(mount_factory):
    mount = mount_factory()
    os.kill(mount.pid, signal.SIGKILL)
    assert wait_gone(mount.pid)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and fuse_mount_type(mount.path) is not None:
        time.sleep(0.05)
    assert fuse_mount_type(mount.path) is None


def test_mounting_twice_is_refused_with_advice(mounted: Mount, run_cli):
    proc = run_cli("mount", str(mounted.path))
    assert proc.returncode != 0
    assert "already mounted" in proc.stderr and "artifactfs umount" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_mount_point_that_is_not_a_folder_is_refused(tmp_path: Path, run_cli):
    target = tmp_path / "file"
    target.write_text("x")
    proc = run_cli("mount", str(target))
    assert proc.returncode != 0 and "is a file" in proc.stderr
    proc = run_cli("mount", str(tmp_path / "missing"))
    assert proc.returncode != 0 and "mkdir" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("option", [
    ("--request-size", "0"), ("--readahead", "-1"), ("--memory", "0"), ("--threads", "0"),
    ("--prefetch-files", "-3"),
])
def test_mount_options_out_of_range_are_refused_before_mounting(
    tmp_path: Path, run_cli, option: tuple[str, str]
):
    target = tmp_path / "mnt"
    target.mkdir()
    proc = run_cli("mount", str(target), *option)
    assert proc.returncode != 0 and "must be positive" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr
    assert str(target) not in Path("/proc/mounts").read_text()


def test_umount_of_something_not_mounted_fails_clearly(tmp_path: Path, run_cli):
    proc = run_cli("umount", str(tmp_path))
    assert proc.returncode != 0 and "not mounted" in proc.stderr


def test_foreground_mode_serves_until_signalled(tmp_path: Path, env: dict[str, str]):
    mnt = tmp_path / "fg"
    mnt.mkdir()
    proc = subprocess.Popen([ARTIFACTFS, "mount", str(mnt), "--foreground", "--log-file",
                             str(tmp_path / "fg.log")], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    mount = Mount(mnt, proc.pid, tmp_path / "fg.log", env)
    try:
        deadline = time.monotonic() + 30
        while fuse_mount_type(mnt) != FSTYPE and time.monotonic() < deadline:
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            time.sleep(0.05)
        assert os.listdir(mnt) == []
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
        assert fuse_mount_type(mnt) is None
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        take_down(mount)
