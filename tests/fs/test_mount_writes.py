"""Staged writes through a real mount: every kind of change, errnos, a full staging disk.

Writes into ``NAME:ALIAS/`` are staged on local disk (decision 6 of the design) and become a
new version on ``artifactfs save``; ``NAME:vN/`` and everything above the artifact folders is
read-only. The helpers here are shared with ``test_mount_save.py``.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shlex
import signal
import stat
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fs.conftest import Mount, drop_caches, take_down, wait_gone
from fs.test_mount_tree import push

from artifactfs.core.chunks import CHUNK_SIZE
from artifactfs.core.digests import md5_b64
from artifactfs.fs.mounts import fuse_mount_type
from artifactfs.sdk import Api, Artifact

BASE = {
    "README.txt": b"the base version\n",
    "keep.txt": b"never touched\n",
    "rm-me.txt": b"to be deleted\n",
    "mv-me.txt": b"to be renamed\n",
    "replacement.txt": b"renamed over README.txt\n",
    "overwrite.txt": b"old contents, longer than the new ones\n",
    "append.txt": b"first line\n",
    "middle.bin": os.urandom(2 * CHUNK_SIZE + 4321),  # chunked: the write crosses a chunk edge
    "shrink.bin": os.urandom(200_000),
    "grow.txt": b"grow me\n",
    "zero.txt": b"to be emptied\n",
    "edit-then-move.txt": b"edited, then moved\n",
    "move-then-edit.txt": b"moved, then edited\n",
    "dir/a.txt": b"a in dir\n",
    "dir/sub/b.txt": b"b in dir/sub\n",
    "gone/x.txt": b"x\n",
    "gone/deeper/y.txt": b"y\n",
}


# ---- helpers shared with test_mount_save.py ---------------------------------------------------


def folder_of(mount: Mount, label: str = "latest", name: str = "mnist",
              type_: str = "dataset") -> Path:
    return mount.path / "vision" / type_ / f"{name}:{label}"


def read_tree(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` as ``{relative POSIX path: bytes}``."""
    def fail(exc: OSError) -> None:
        raise exc  # os.walk would skip a folder it cannot list

    assert root.is_dir(), f"{root} is not a folder"
    out = {}
    for dirpath, _, names in os.walk(root, onerror=fail):
        for name in names:
            path = Path(dirpath, name)
            out[path.relative_to(root).as_posix()] = path.read_bytes()
    return out


def save(run_cli, folder: Path, *args: str) -> str:
    """``artifactfs save FOLDER ARGS...``; asserts success and returns what it printed."""
    proc = run_cli("save", str(folder), *args)
    assert proc.returncode == 0, f"save failed:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout.strip()


def errno_of(action: Callable[[], object]) -> int | None:
    with pytest.raises(OSError) as info:
        action()
    return info.value.errno


def sh(script: str) -> None:
    """Run a shell command line (ordinary tools: cp, mv, rm, truncate, redirections)."""
    proc = subprocess.run(["sh", "-c", script], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, f"{script!r} failed: {proc.stderr}"


def q(path: Path) -> str:
    return shlex.quote(str(path))


def versions(api: Api, name: str = "vision/mnist") -> list[str]:
    return [a.version for a in api.artifacts(None, name)]


def check_version(api: Api, mount: Mount, ref: str, files: dict[str, bytes],
                  type_: str = "dataset") -> None:
    """``PROJECT/NAME:vN`` holds exactly ``files``: in its manifest and read through the mount."""
    art = api.artifact(ref)
    manifest = art.manifest
    assert sorted(e.path for e in manifest) == sorted(files), ref
    for path, data in files.items():
        entry = manifest[path]
        assert (entry.digest, entry.size) == (md5_b64(data), len(data)), f"{ref} {path}"
    project, label = ref.split("/", 1)
    name, version = label.split(":")
    got = read_tree(mount.path / project / type_ / f"{name}:{version}")
    assert got.keys() == files.keys(), ref
    for path, data in files.items():
        assert got[path] == data, f"{ref} {path} reads other bytes"


@pytest.fixture
def dataset(api: Api, tmp_path: Path) -> Artifact:
    return push(api, tmp_path, BASE)  # vision/mnist:v0, aliases best and latest


# ---- every kind of change ---------------------------------------------------------------------


def test_every_kind_of_change_ends_up_in_the_new_version(
    dataset: Artifact, api: Api, run_cli, mounted: Mount
):
    folder = folder_of(mounted)
    expected = dict(BASE)

    os.remove(folder / "rm-me.txt")
    del expected["rm-me.txt"]
    sh(f"rm -r {q(folder / 'gone')}")
    del expected["gone/x.txt"], expected["gone/deeper/y.txt"]

    os.rename(folder / "mv-me.txt", folder / "renamed.txt")
    expected["renamed.txt"] = expected.pop("mv-me.txt")
    os.rename(folder / "replacement.txt", folder / "README.txt")  # replaces an existing file
    expected["README.txt"] = expected.pop("replacement.txt")
    sh(f"mv {q(folder / 'dir')} {q(folder / 'moved-dir')}")
    expected["moved-dir/a.txt"] = expected.pop("dir/a.txt")
    expected["moved-dir/sub/b.txt"] = expected.pop("dir/sub/b.txt")

    sh(f"printf 'new' > {q(folder / 'overwrite.txt')}")
    expected["overwrite.txt"] = b"new"
    sh(f"printf 'second line\\n' >> {q(folder / 'append.txt')}")
    expected["append.txt"] = b"first line\nsecond line\n"

    patch = os.urandom(10)
    offset = CHUNK_SIZE - 3
    with open(folder / "middle.bin", "r+b") as f:
        f.seek(offset)
        f.write(patch)
    middle = bytearray(BASE["middle.bin"])
    middle[offset:offset + len(patch)] = patch
    expected["middle.bin"] = bytes(middle)

    os.truncate(folder / "shrink.bin", 1234)
    expected["shrink.bin"] = BASE["shrink.bin"][:1234]
    sh(f"truncate -s 0 {q(folder / 'zero.txt')}")
    expected["zero.txt"] = b""
    sh(f"truncate -s 5000 {q(folder / 'grow.txt')}")
    expected["grow.txt"] = BASE["grow.txt"] + bytes(5000 - len(BASE["grow.txt"]))

    with open(folder / "edit-then-move.txt", "ab") as f:
        f.write(b"more\n")
    os.mkdir(folder / "edited")
    os.rename(folder / "edit-then-move.txt", folder / "edited/moved.txt")
    expected["edited/moved.txt"] = expected.pop("edit-then-move.txt") + b"more\n"
    os.rename(folder / "move-then-edit.txt", folder / "moved-first.txt")
    with open(folder / "moved-first.txt", "ab") as f:
        f.write(b"more\n")
    expected["moved-first.txt"] = expected.pop("move-then-edit.txt") + b"more\n"

    assert read_tree(folder) == expected  # the folder shows the staged state at once
    assert os.stat(folder / "grow.txt").st_size == 5000
    assert read_tree(folder_of(mounted, "v0")) == BASE  # the version folder does not change

    assert save(run_cli, folder) == "vision/mnist:v1"
    check_version(api, mounted, "vision/mnist:v1", expected)
    check_version(api, mounted, "vision/mnist:v0", BASE)
    assert api.artifact("vision/mnist:v0").digest == dataset.digest
    assert read_tree(folder) == expected  # the alias folder now shows v1
    drop_caches()  # and still does when the kernel must ask again (bytes from the registry)
    assert read_tree(folder) == expected
    assert versions(api) == ["v0", "v1"]
    assert mounted.alive()


# ---- rename across folders, fsync, read-your-writes --------------------------------------------


def test_rename_across_alias_folders_gives_exdev_and_mv_copies(
    dataset: Artifact, api: Api, run_cli, mounted: Mount
):
    latest, best = folder_of(mounted, "latest"), folder_of(mounted, "best")
    assert errno_of(lambda: os.rename(latest / "keep.txt", best / "keep2.txt")) == errno.EXDEV
    assert errno_of(lambda: os.rename(latest / "dir", best / "dir2")) == errno.EXDEV
    assert (latest / "keep.txt").read_bytes() == BASE["keep.txt"]  # nothing moved

    sh(f"mv {q(latest / 'keep.txt')} {q(best / 'keep2.txt')}")  # mv copies, then deletes
    sh(f"mv {q(latest / 'dir')} {q(best / 'dir2')}")
    assert not (latest / "keep.txt").exists()
    assert not (latest / "dir").exists()
    assert (best / "keep2.txt").read_bytes() == BASE["keep.txt"]
    assert read_tree(best / "dir2") == {"a.txt": BASE["dir/a.txt"],
                                        "sub/b.txt": BASE["dir/sub/b.txt"]}

    status = run_cli("status", str(best), "--json")
    assert status.returncode == 0, status.stderr
    assert '"dir2/a.txt"' in status.stdout and '"keep2.txt"' in status.stdout

    assert save(run_cli, latest) == "vision/mnist:v1"
    assert save(run_cli, best) == "vision/mnist:v2"
    v1 = {k: v for k, v in BASE.items() if k != "keep.txt" and not k.startswith("dir/")}
    check_version(api, mounted, "vision/mnist:v1", v1)
    v2 = dict(BASE, **{"keep2.txt": BASE["keep.txt"], "dir2/a.txt": BASE["dir/a.txt"],
                       "dir2/sub/b.txt": BASE["dir/sub/b.txt"]})
    check_version(api, mounted, "vision/mnist:v2", v2)


def test_fsync_works_and_reads_see_staged_writes_before_close(
    dataset: Artifact, api: Api, run_cli, mounted: Mount
):
    folder = folder_of(mounted)
    path = folder / "fresh.bin"
    data = os.urandom(300_000)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        assert os.write(fd, data) == len(data)
        os.fsync(fd)  # returns: the staged copy and the journal are durable
        os.fdatasync(fd)
        assert os.pread(fd, len(data), 0) == data  # same handle
        assert os.stat(path).st_size == len(data)
        assert path.read_bytes() == data  # another handle, the file still open
        os.pwrite(fd, b"XYZ", 1000)  # a change after the other handle read
        with open(path, "rb") as other:
            other.seek(1000)
            assert other.read(3) == b"XYZ"
    finally:
        os.close(fd)

    with open(folder / "README.txt", "r+b") as f:  # a file of the version, copied up
        f.write(b"THE")
        f.flush()
        os.fsync(f.fileno())
        assert (folder / "README.txt").read_bytes() == b"THE" + BASE["README.txt"][3:]
        f.seek(0)
        assert f.read() == b"THE" + BASE["README.txt"][3:]

    expected = dict(BASE, **{"fresh.bin": data[:1000] + b"XYZ" + data[1003:],
                             "README.txt": b"THE" + BASE["README.txt"][3:]})
    assert save(run_cli, folder) == "vision/mnist:v1"
    check_version(api, mounted, "vision/mnist:v1", expected)


# ---- failures ---------------------------------------------------------------------------------


def test_long_names_and_read_only_places_give_the_right_errno(
    dataset: Artifact, api: Api, run_cli, mounted: Mount
):
    folder = folder_of(mounted)
    long_name = "n" * 256
    assert errno_of(lambda: (folder / long_name).write_bytes(b"x")) == errno.ENAMETOOLONG
    assert errno_of(lambda: (folder / ("é" * 128)).mkdir()) == errno.ENAMETOOLONG  # 256 bytes
    assert errno_of(lambda: os.rename(folder / "keep.txt", folder / long_name)) == (
        errno.ENAMETOOLONG
    )
    assert errno_of(lambda: (folder / "dir" / ("d" * 300)).mkdir()) == errno.ENAMETOOLONG
    longest = "m" * 255
    (folder / longest).write_bytes(b"255 bytes is allowed")
    assert (folder / longest).read_bytes() == b"255 bytes is allowed"

    version = folder_of(mounted, "v0")
    read_only = [
        lambda: (version / "new.txt").write_bytes(b"x"),
        lambda: open(version / "keep.txt", "ab").close(),
        lambda: (version / "dir/sub/new").mkdir(),
        lambda: os.truncate(version / "keep.txt", 1),
        lambda: os.remove(version / "dir/a.txt"),
        lambda: os.rename(version / "keep.txt", version / "k.txt"),
        lambda: os.rename(version / "keep.txt", folder / "from-v0.txt"),
        lambda: (mounted.path / "file-at-root.txt").write_bytes(b"x"),
        lambda: (mounted.path / "vision/file-in-project.txt").write_bytes(b"x"),
        lambda: (mounted.path / "vision/dataset/file-in-type.txt").write_bytes(b"x"),
        lambda: (mounted.path / "newproject").mkdir(),
        lambda: (mounted.path / "vision/newtype").mkdir(),
        lambda: os.rmdir(folder),
        lambda: os.rename(folder, mounted.path / "vision/dataset/mnist:other"),
    ]
    for i, action in enumerate(read_only):
        with pytest.raises(OSError) as info:
            action()
        assert info.value.errno == errno.EROFS, f"action {i}: {info.value}"
    assert read_tree(version) == BASE
    assert "file-at-root.txt" not in os.listdir(mounted.path)

    assert save(run_cli, folder) == "vision/mnist:v1"
    check_version(api, mounted, "vision/mnist:v1",
                  dict(BASE, **{longest: b"255 bytes is allowed"}))
    assert mounted.alive()


@contextlib.contextmanager
def small_tmpfs(path: Path, size: str = "4m") -> Iterator[Path]:
    """A tmpfs of ``size`` at ``path`` (root only); the caller takes its mounts down first."""
    path.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", str(path)], capture_output=True)


def fill_up(path: Path) -> int:
    """Write a new file at ``path`` until the disk is full; return how much fitted."""
    written = 0
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        with pytest.raises(OSError) as info:
            for _ in range(64):
                written += os.write(fd, os.urandom(1 << 20))
    finally:
        os.close(fd)
    assert info.value.errno == errno.ENOSPC
    return written


def fill_journal(folder: Path) -> list[str]:
    """Go on working on a full disk: folders cost only journal lines, until those run out too.

    Returns the names of the folders whose mkdir succeeded.
    """
    made: list[str] = []
    for n in range(100):
        name = f"d{n:03d}-" + "x" * 200
        try:
            os.mkdir(folder / name)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC, exc
            break
        made.append(name)
    return made


def kill_and_remount(mount: Mount, mount_factory, *options: str) -> Mount:
    """SIGKILL the daemon, wait until its mount is gone, mount the same mount point again."""
    os.kill(mount.pid, signal.SIGKILL)
    assert wait_gone(mount.pid)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and fuse_mount_type(mount.path) is not None:
        time.sleep(0.05)  # auto_unmount takes the dead mount away
    again = mount_factory(*options, name=mount.path.name)
    assert again.pid != mount.pid
    return again


def test_full_staging_disk_gives_enospc_and_keeps_earlier_files(
    dataset: Artifact, api: Api, run_cli, mount_factory, tmp_path: Path
):
    mounts: list[Mount] = []
    with small_tmpfs(tmp_path / "small-staging") as staging:
        try:
            mounts.append(mount_factory("--staging-dir", str(staging)))
            folder = folder_of(mounts[0])
            small = os.urandom(10_000)
            (folder / "small.bin").write_bytes(small)
            assert fill_up(folder / "big.bin") < 8 << 20  # 8 MiB do not fit in 4 MiB
            assert (folder / "small.bin").read_bytes() == small
            assert mounts[0].alive()

            os.remove(folder / "big.bin")
            assert (folder / "small.bin").read_bytes() == small
            assert save(run_cli, folder) == "vision/mnist:v1"
            check_version(api, mounts[0], "vision/mnist:v1", dict(BASE, **{"small.bin": small}))
            leftovers = [p for p in staging.rglob("*") if p.is_file()]
            assert leftovers == []  # a save removes what it committed from the staging
        finally:
            for mount in mounts:
                take_down(mount)


def test_a_staged_file_can_be_deleted_when_the_staging_disk_is_full(
    dataset: Artifact, api: Api, run_cli, mount_factory, tmp_path: Path
):
    """Deleting is how a user frees a full staging disk, so it must not need new space."""
    mounts: list[Mount] = []
    with small_tmpfs(tmp_path / "small-staging") as staging:
        try:
            mounts.append(mount_factory("--staging-dir", str(staging)))
            folder = folder_of(mounts[0])
            (folder / "small.bin").write_bytes(b"small")
            fill_up(folder / "big.bin")
            fill_journal(folder)
            os.remove(folder / "big.bin")
            assert not (folder / "big.bin").exists()
            (folder / "after.txt").write_bytes(b"room again\n")
            assert save(run_cli, folder) == "vision/mnist:v1"
            manifest = api.artifact("vision/mnist:v1").manifest
            assert "big.bin" not in manifest
            assert manifest["after.txt"].digest == md5_b64(b"room again\n")
        finally:
            for mount in mounts:
                take_down(mount)


def test_staged_changes_survive_a_crash_after_the_staging_disk_filled_up(
    dataset: Artifact, api: Api, run_cli, mount_factory, tmp_path: Path
):
    """A change the file system reported done is in the journal whole, even on a full disk."""
    mounts: list[Mount] = []
    with small_tmpfs(tmp_path / "small-staging") as staging:
        options = ("--staging-dir", str(staging))
        try:
            mounts.append(mount_factory(*options))
            folder = folder_of(mounts[0])
            fill_up(folder / "big.bin")
            made = fill_journal(folder)
            os.truncate(folder / "big.bin", 0)  # room again
            data = os.urandom(5000)
            with open(folder / "after.bin", "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            mounts.append(kill_and_remount(mounts[0], mount_factory, *options))
            folder = folder_of(mounts[1])
            assert (folder / "after.bin").read_bytes() == data
            assert sorted(n for n in os.listdir(folder) if n.startswith("d0")) == made
            assert os.stat(folder / "big.bin").st_size == 0
        finally:
            for mount in mounts:
                take_down(mount)


def test_writes_through_a_handle_opened_before_a_save_are_not_lost(
    dataset: Artifact, api: Api, run_cli, mounted: Mount
):
    """A write the file system accepted must end up somewhere a later save can find it."""
    folder = folder_of(mounted)
    with open(folder / "open.txt", "wb") as f:
        f.write(b"before save")
        f.flush()
        proc = run_cli("save", str(folder))
        if proc.returncode != 0:  # refusing to save while a file is open for writing is fine
            assert "open" in proc.stderr, proc.stderr
            return
        assert proc.stdout.strip() == "vision/mnist:v1"
        f.write(b", after save")
    assert (folder / "open.txt").read_bytes() == b"before save, after save"
    assert save(run_cli, folder) == "vision/mnist:v2"
    check_version(api, mounted, "vision/mnist:v2",
                  dict(BASE, **{"open.txt": b"before save, after save"}))


# ---- modes, times, extended attributes and symlinks -------------------------------------------


def test_a_change_of_only_modes_or_symlinks_is_saved_as_a_new_version(
    dataset: Artifact, api: Api, run_cli, mounted: Mount, tmp_path: Path
):
    """W&B's artifact digest ignores ``extra``, so a mode change keeps the digest: it is a
    change all the same, and makes a version."""
    folder = folder_of(mounted)
    os.chmod(folder / "keep.txt", 0o755)
    status = run_cli("status", str(folder), "--json")
    assert '"keep.txt"' in status.stdout, status.stdout
    assert save(run_cli, folder) == "vision/mnist:v1"
    v1 = api.artifact("vision/mnist:v1")
    assert v1.manifest["keep.txt"].extra.get("mode") == "0755"
    assert "mode" not in v1.manifest["README.txt"].extra
    assert v1.digest == dataset.digest
    assert os.stat(folder_of(mounted, "v1") / "keep.txt").st_mode & 0o777 == 0o555
    assert os.stat(folder_of(mounted, "v0") / "keep.txt").st_mode & 0o777 == 0o444
    assert os.stat(folder / "keep.txt").st_mode & 0o777 == 0o755  # the saved alias folder

    os.symlink("keep.txt", folder / "link")
    os.symlink("../keep.txt", folder / "dir/up")
    assert save(run_cli, folder) == "vision/mnist:v2"
    entry = api.artifact("vision/mnist:v2").manifest["link"]
    assert (entry.size, entry.digest, entry.extra) == (0, md5_b64(b"keep.txt"),
                                                       {"symlink": "keep.txt"})
    v2 = folder_of(mounted, "v2")
    assert os.readlink(v2 / "link") == "keep.txt"
    assert (v2 / "dir/up").read_bytes() == BASE["keep.txt"]  # followed inside the mount
    assert stat.S_ISLNK(os.lstat(folder / "link").st_mode)

    os.chmod(folder / "keep.txt", 0o644)
    os.replace(folder / "link", folder / "link2")
    assert save(run_cli, folder) == "vision/mnist:v3"
    v3 = api.artifact("vision/mnist:v3")
    assert "mode" not in v3.manifest["keep.txt"].extra
    dest = Path(v3.download(root=str(tmp_path / "v3")))
    assert not os.stat(dest / "keep.txt").st_mode & 0o111
    assert os.readlink(dest / "link2") == "keep.txt" and not (dest / "link").exists()
    v3.verify(str(dest))

    os.utime(folder / "keep.txt", ns=(10**18, 10**18))  # times are not kept by a version
    proc = run_cli("save", str(folder))
    assert proc.returncode != 0 and "nothing is staged" in proc.stderr
    assert versions(api) == ["v0", "v1", "v2", "v3"]


def test_modes_times_xattrs_and_links_survive_sigkill_and_discard_drops_them(
    dataset: Artifact, api: Api, run_cli, mount_factory
):
    times = (1_234_567_890_123_456_789, 1_300_000_000_000_000_001)
    mount = mount_factory()
    folder = folder_of(mount)
    os.chmod(folder / "keep.txt", 0o700)
    os.utime(folder / "README.txt", ns=times)
    os.setxattr(folder / "dir", "user.note", b"a folder")
    os.setxattr(folder / "keep.txt", "user.origin", b"here")
    (folder / "new.sh").write_bytes(b"#!/bin/sh\n")
    os.chmod(folder / "new.sh", 0o755)
    os.utime(folder / "new.sh", ns=times)
    os.symlink("dir/a.txt", folder / "to-a")
    os.rename(folder / "dir", folder / "dir2")  # its attributes go along
    os.chmod(folder, 0o750)  # the alias folder itself, as cp -a and rsync -a do

    def check(folder: Path) -> None:
        assert os.stat(folder / "keep.txt").st_mode & 0o7777 == 0o700
        st = os.stat(folder / "README.txt")
        assert (st.st_atime_ns, st.st_mtime_ns) == times
        st = os.stat(folder / "new.sh")
        assert (st.st_mode & 0o7777, st.st_atime_ns, st.st_mtime_ns) == (0o755, *times)
        assert os.getxattr(folder / "dir2", "user.note") == b"a folder"
        assert os.getxattr(folder / "keep.txt", "user.origin") == b"here"
        assert os.readlink(folder / "to-a") == "dir/a.txt"
        assert os.stat(folder).st_mode & 0o7777 == 0o750

    check(folder)
    again = kill_and_remount(mount, mount_factory)
    folder = folder_of(again)
    check(folder)

    proc = run_cli("discard", str(folder))
    assert proc.returncode == 0, proc.stderr
    assert os.stat(folder / "keep.txt").st_mode & 0o7777 == 0o644
    assert os.stat(folder / "README.txt").st_mtime_ns == int(dataset._info.created_at * 1e9)
    assert os.listxattr(folder / "dir") == [] or all(
        k.startswith("user.artifactfs.") for k in os.listxattr(folder / "dir"))
    assert not (folder / "new.sh").exists() and not os.path.lexists(folder / "to-a")
    assert os.stat(folder).st_mode & 0o7777 == 0o755


def test_save_refuses_a_link_moved_to_where_it_leads_out(
    dataset: Artifact, api: Api, run_cli, mounted: Mount
):
    folder = folder_of(mounted)
    os.symlink("../keep.txt", folder / "dir/up")  # inside: dir/up -> keep.txt
    os.rename(folder / "dir/up", folder / "up")  # the same text now climbs out
    proc = run_cli("save", str(folder))
    assert proc.returncode != 0
    assert "'up'" in proc.stderr and "inside the artifact" in proc.stderr, proc.stderr
    assert versions(api) == ["v0"]
    os.rename(folder / "up", folder / "dir/up")  # back where it stays inside
    assert save(run_cli, folder) == "vision/mnist:v1"
    assert os.readlink(folder_of(mounted, "v1") / "dir/up") == "../keep.txt"


def test_names_a_save_or_discard_removes_are_gone_at_once(
    dataset: Artifact, api: Api, run_cli, mounted: Mount
):
    """The kernel keeps names for a while; those a save drops (empty folders are not part
    of a version) and a discarded new collection must not linger in its cache."""
    folder = folder_of(mounted)
    os.mkdir(folder / "empty")
    os.makedirs(folder / "nested/deeper")
    (folder / "kept.txt").write_bytes(b"kept\n")
    assert save(run_cli, folder) == "vision/mnist:v1"
    assert not (folder / "empty").exists() and not (folder / "nested").exists()
    assert errno_of(lambda: os.truncate(folder / "empty", 0)) == errno.ENOENT
    os.mkdir(folder / "empty")  # not EEXIST
    assert (folder / "kept.txt").read_bytes() == b"kept\n"

    fresh = folder.parent / "fresh:latest"
    os.mkdir(fresh)
    (fresh / "x.txt").write_bytes(b"x")
    proc = run_cli("discard", str(fresh))
    assert proc.returncode == 0, proc.stderr
    assert not fresh.exists()
    os.mkdir(fresh)  # a new collection can start again at once
