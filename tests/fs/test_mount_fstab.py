"""Mounts the way Linux admins set them up: ``mount -t fuse.artifactfs``, an fstab line
(through ``mount --fstab FILE``, so the machine's /etc/fstab is never read or touched), and
``umount``, all the real util-linux commands running the installed helper
(``/sbin/mount.fuse.artifactfs``, linked by ``make mount-helper``)."""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fs.conftest import Mount, take_down, wait_gone
from test_cli import embedded_only, refused

from artifactfs.fs.mounts import FSTYPE, fuse_mount_type, mount_device

pytestmark = [
    pytest.mark.mount,
    pytest.mark.skipif(os.geteuid() != 0, reason="mount(8) and umount(8) of FUSE need root"),
]

HELPER = Path("/sbin/mount.fuse.artifactfs")


@pytest.fixture(autouse=True)
def _helper_installed() -> None:
    if not os.access(HELPER, os.X_OK):
        pytest.fail(f"{HELPER} is missing or leads nowhere: run 'make mount-helper'")


@pytest.fixture
def admin_mounts(tmp_path: Path) -> Iterator[Callable[[Path, dict[str, str], str], Mount]]:
    """Record a mount that mount(8) made, from its output, so that it is taken down (by the
    daemon's pid, and ``fusermount3 -uz`` if still there) whatever the test did."""
    made: list[Mount] = []

    def record(path: Path, env: dict[str, str], stdout: str) -> Mount:
        found = re.search(r"\(pid (\d+)\)", stdout)
        assert found, stdout
        mount = Mount(path, int(found.group(1)), tmp_path / "unused.log", env)
        made.append(mount)
        return mount

    try:
        yield record
    finally:
        for mount in made:
            take_down(mount)


def _no_registry_env(env: dict[str, str]) -> dict[str, str]:
    """What mount(8) at boot has: none of the ARTIFACTFS_ settings a login shell sets.

    mount(8) drops HOME (and PATH) before it runs a helper, so the daemon's state, staging
    and cache would be root's own (~root/.local/state, ~root/.cache); the XDG_ folders,
    which it passes on, keep them in the test's folder.
    """
    home = Path(env["HOME"])
    return {**{k: v for k, v in env.items() if not k.startswith("ARTIFACTFS_")},
            "XDG_STATE_HOME": str(home / ".local" / "state"),
            "XDG_CACHE_HOME": str(home / ".cache")}


def _mount_flags(path: Path) -> tuple[set[str], set[str]]:
    """The per-mount flags and the super options mountinfo shows for ``path``."""
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            if fields[4] == str(path):
                sep = fields.index("-")
                return set(fields[5].split(",")), set(fields[sep + 3].split(","))
    raise AssertionError(f"{path} is not mounted")


def _source(path: Path) -> str:
    """The source column of the mount table for ``path`` (what findmnt shows)."""
    found = subprocess.run(["findmnt", "-n", "-o", "SOURCE", "--mountpoint", str(path)],
                           capture_output=True, text=True, timeout=30)
    return found.stdout.strip()


def _run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, env=env, capture_output=True, text=True, timeout=90)


def _umount(mount: Mount) -> None:
    """``umount DIR``: the daemon then exits by itself, and the mount is gone."""
    proc = _run(["umount", str(mount.path)], mount.env)
    assert proc.returncode == 0, proc.stderr
    assert fuse_mount_type(mount.path) is None
    assert wait_gone(mount.pid), "the daemon outlived umount"


@embedded_only
def test_mount_t_maps_the_options_and_umount_ends_the_daemon(
    run_cli, env: dict[str, str], tmp_path: Path,
    admin_mounts: Callable[[Path, dict[str, str], str], Mount],
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "train.csv").write_text("x,y\n1,2\n")
    run_cli("push", str(data), "vision/mnist", "--type", "dataset", check=True)
    mnt, cache = tmp_path / "mnt", tmp_path / "admin-cache"
    mnt.mkdir()
    admin = _no_registry_env(env)
    proc = _run(["mount", "-t", "fuse.artifactfs", env["ARTIFACTFS_STORE"], str(mnt), "-o",
                 f"ro,noexec,kernel_readahead=1024,_netdev,nofail,cache_dir={cache},"
                 f"log_file={tmp_path / 'mnt.log'},staging_dir={tmp_path / 'staging'}"], admin)
    assert proc.returncode == 0, proc.stderr
    mount = admin_mounts(mnt, admin, proc.stdout)
    assert fuse_mount_type(mnt) == FSTYPE
    version = mnt / "vision" / "dataset" / "mnist:latest"
    assert (version / "train.csv").read_text() == "x,y\n1,2\n"
    flags, _ = _mount_flags(mnt)
    assert {"ro", "noexec"} <= flags  # ro made the mount read-only; noexec reached the kernel
    stats = json.loads(os.getxattr(mnt, "user.artifactfs.stats"))
    assert stats["read_only"] is True and stats["cache_dir"] == str(cache)
    device = mount_device(mnt)
    assert Path(f"/sys/class/bdi/{device}/read_ahead_kb").read_text().strip() == "1024"
    with pytest.raises(OSError, match="Read-only file system"):
        (version / "new.txt").write_text("no")
    # the table shows the source, so mount -a takes the same line for mounted, not for a
    # mount to make again (which the helper would refuse: exit 32 at every later mount -a)
    assert _source(mnt) == env["ARTIFACTFS_STORE"]
    fstab = tmp_path / "fstab"
    fstab.write_text(f"{env['ARTIFACTFS_STORE']} {mnt} fuse.artifactfs ro,noexec 0 0\n")
    again = _run(["mount", "--fstab", str(fstab), "-a", "-v"], admin)
    assert again.returncode == 0 and "already mounted" in again.stdout, again
    assert _source(mnt) == env["ARTIFACTFS_STORE"] and mount.alive()
    _umount(mount)


@pytest.mark.parametrize("transport", ["server"], indirect=True)
def test_an_fstab_line_mounts_a_server_with_the_key_from_a_private_key_file(
    run_cli, env: dict[str, str], tmp_path: Path,
    admin_mounts: Callable[[Path, dict[str, str], str], Mount],
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "weights.bin").write_bytes(b"\x01" * 5000)
    run_cli("push", str(data), "vision/resnet", "--type", "model", check=True)
    key = env["ARTIFACTFS_API_KEY"]
    keyfile = tmp_path / "etc" / "key"
    keyfile.parent.mkdir()
    keyfile.write_text(key + "\n")
    keyfile.chmod(0o644)  # as a file written without thought would be
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    log = tmp_path / "mnt.log"
    fstab = tmp_path / "fstab"
    fstab.write_text(
        "# an fstab of the test's own: the machine's /etc/fstab is never touched\n"
        f"{env['ARTIFACTFS_REGISTRY']} {mnt} fuse.artifactfs "
        "_netdev,noauto,nofail,x-systemd.automount,x-systemd.idle-timeout=600,allow_other,"
        f"read_only,keyfile={keyfile},log_file={log},staging_dir={tmp_path / 'staging'} 0 0\n")
    admin = _no_registry_env(env)

    err = refused(_run(["mount", "--fstab", str(fstab), str(mnt)], admin))
    assert err.strip().count("\n") == 0, err  # one line
    assert "may be read by others (mode 0644)" in err and f"chmod 600 {keyfile}" in err
    assert key not in err
    assert fuse_mount_type(mnt) is None

    keyfile.chmod(0o600)
    proc = _run(["mount", "--fstab", str(fstab), str(mnt)], admin)
    assert proc.returncode == 0, proc.stderr
    mount = admin_mounts(mnt, admin, proc.stdout)
    weights = mnt / "vision" / "model" / "resnet:latest" / "weights.bin"
    assert weights.read_bytes() == b"\x01" * 5000  # read from the server with the file's key
    _, options = _mount_flags(mnt)
    assert "allow_other" in options
    assert _source(mnt) == env["ARTIFACTFS_REGISTRY"]
    # mount(8) dropped HOME; XDG_CACHE_HOME, which it passes on, chose the cache
    assert json.loads(os.getxattr(mnt, "user.artifactfs.stats"))["cache_dir"] == str(
        Path(env["HOME"]) / ".cache" / "artifactfs")
    # the key is in no log and no command line a user could read
    assert key not in log.read_text()
    assert key.encode() not in Path(f"/proc/{mount.pid}/cmdline").read_bytes()
    _umount(mount)


@embedded_only
def test_bad_options_are_one_line_and_mount_nothing(
    env: dict[str, str], tmp_path: Path,
) -> None:
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    admin = _no_registry_env(env)
    store = env["ARTIFACTFS_STORE"]
    for source, options, said in [
        (store, "readahead=lots", "-o readahead=lots: readahead must be a whole number"),
        (store, "ro,key=afs_secret_value", "never taken from the mount options"),
        (store, "colour=blue", "unknown mount option 'colour'"),
        ("http://127.0.0.1:9", f"store={store}", "both say where the registry is"),
        (store, "keyfile=/nonexistent/key", "-o keyfile=/nonexistent/key: cannot open it"),
        (store, "entity=Not An Entity", "-o entity"),
    ]:
        proc = _run(["mount", "-t", "fuse.artifactfs", source, str(mnt), "-o", options], admin)
        err = refused(proc)
        assert err.strip().count("\n") == 0 and said in err, err
        assert "afs_secret_value" not in err
        assert fuse_mount_type(mnt) is None


@embedded_only
def test_artifactfs_mount_takes_the_same_options(
    run_cli, tmp_path: Path, mount_factory: Callable[..., Mount],
) -> None:
    mount = mount_factory("-o", "ro,_netdev,x-systemd.automount", "-o", "noexec")
    assert {"ro", "noexec"} <= _mount_flags(mount.path)[0]
    assert mount.stats()["read_only"] is True
    _umount(mount)  # umount(8) ends a mount artifactfs mount made as well
    (tmp_path / "mnt2").mkdir()
    err = refused(run_cli("mount", str(tmp_path / "mnt2"), "--readahead", "8",
                          "-o", "readahead=4"))
    assert "--readahead and -o give readahead two values; give one" in err
    assert fuse_mount_type(tmp_path / "mnt2") is None


@embedded_only
def test_mount_fake_checks_a_line_and_sloppy_skips_unknown_options(
    env: dict[str, str], tmp_path: Path,
    admin_mounts: Callable[[Path, dict[str, str], str], Mount],
) -> None:
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    admin = _no_registry_env(env)
    store = env["ARTIFACTFS_STORE"]
    keyfile = tmp_path / "key"
    keyfile.write_text("afs_not_used_by_a_store\n")
    keyfile.chmod(0o644)
    # mount -f runs the helper with -f: every check, nothing mounted
    err = refused(_run(["mount", "-f", "-t", "fuse.artifactfs", store, str(mnt),
                        "-o", f"ro,keyfile={keyfile}"], admin))
    assert "chmod 600" in err
    keyfile.chmod(0o600)
    fake = _run(["mount", "-f", "-v", "-t", "fuse.artifactfs", store, str(mnt),
                 "-o", f"ro,keyfile={keyfile}"], admin)
    assert fake.returncode == 0, fake.stderr
    assert fuse_mount_type(mnt) is None
    # mount -s: an option this version does not know is skipped, the others used
    proc = _run(["mount", "-s", "-t", "fuse.artifactfs", store, str(mnt), "-o",
                 f"ro,colour=blue,log_file={tmp_path / 'mnt.log'},"
                 f"staging_dir={tmp_path / 'staging'}"], admin)
    assert proc.returncode == 0, proc.stderr
    mount = admin_mounts(mnt, admin, proc.stdout)
    assert "ro" in _mount_flags(mnt)[0]
    _umount(mount)
