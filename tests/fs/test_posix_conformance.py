"""POSIX conformance of alias folders, in the style of pjdfstest: each case runs the same
system calls on the mount and on a plain ext4 folder, and the results must match.

A case is a short script of calls (open flags, create, unlink, rename, mkdir, rmdir,
truncate, chmod, utimensat, symlink, readlink, xattrs, link, mknod, long names). Every
call's outcome is recorded: its return value in a comparable form, or the errno name it
failed with. After the script, the folder's tree (names, kinds, sizes, modes, bytes, link
targets, user xattrs) is recorded too. The mount must give the same record as ext4.

What differs on purpose (an artifact cannot hold it) is in ``test_what_an_artifact_cannot_
hold_is_refused_with_eperm`` and ``..._acls_...``: those calls are refused on the mount
where ext4 takes them. Times are compared only where a case set them, inode numbers, link
counts, owners and folder sizes never.

One mount serves every case (the embedded store, so no server is needed: the registry
transport plays no part in these calls); each case gets its own folder in the alias folder,
pushed as part of the base version, and a copy of it on ext4.
"""

from __future__ import annotations

import ctypes
import errno
import os
import re
import stat
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fs.conftest import Mount, take_down
from helpers import ARTIFACTFS, make_tree

from artifactfs.config import Config
from artifactfs.sdk import Api, Artifact

pytestmark = pytest.mark.mount

BASE = {
    "file.txt": b"hello\n",
    "dir/inner.txt": b"inner\n",
    "full/a.txt": b"a\n",
    "full/sub/b.txt": b"b\n",
}
"""Each case's folder, as the base version holds it."""

_libc = ctypes.CDLL(None, use_errno=True)
_AT_FDCWD = -100
RENAME_NOREPLACE, RENAME_EXCHANGE = 1, 2


def renameat2(src: str, dst: str, flags: int) -> None:
    if _libc.renameat2(_AT_FDCWD, os.fsencode(src), _AT_FDCWD, os.fsencode(dst), flags) != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))


class Recorder:
    """Runs calls under one root and records each outcome."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.log: list[tuple[str, Any]] = []

    def p(self, rel: str) -> str:
        return str(self.root / rel)

    def do(self, label: str, func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        try:
            value = func(*args, **kwargs)
        except OSError as exc:
            self.log.append((label, errno.errorcode.get(exc.errno or 0, str(exc.errno))))
            return None
        self.log.append((label, _comparable(value)))
        return value

    def open(self, label: str, rel: str, flags: int, mode: int = 0o644) -> int | None:
        """os.open, recorded as "opened" (descriptor numbers differ) or its errno."""
        try:
            fd = os.open(self.p(rel), flags, mode)
        except OSError as exc:
            self.log.append((label, errno.errorcode.get(exc.errno or 0, str(exc.errno))))
            return None
        self.log.append((label, "opened"))
        return fd

    def write_new(self, label: str, rel: str, flags: int, data: bytes,
                  mode: int = 0o644) -> None:
        fd = self.open(f"{label}: open", rel, flags, mode)
        if fd is not None:
            try:
                self.do(f"{label}: write", os.write, fd, data)
            finally:
                os.close(fd)

    def stat(self, label: str, rel: str, *, follow: bool = True) -> None:
        """Record kind, size and mode of a path (or its errno)."""
        def look() -> tuple[str, int, str]:
            st = os.stat(self.p(rel), follow_symlinks=follow)
            size = st.st_size if not stat.S_ISDIR(st.st_mode) else 0
            return stat.filemode(st.st_mode), size, oct(st.st_mode & 0o7777)

        self.do(label, look)

    def times(self, label: str, rel: str, *, follow: bool = True) -> None:
        def look() -> tuple[int, int]:
            st = os.stat(self.p(rel), follow_symlinks=follow)
            return st.st_atime_ns, st.st_mtime_ns

        self.do(label, look)


def _comparable(value: Any) -> Any:
    if isinstance(value, list):
        return sorted(v for v in value if not str(v).startswith("user.artifactfs."))
    return value


def snapshot(root: Path) -> list[tuple[Any, ...]]:
    """Everything a case may change under ``root``, in a form both folders can share."""
    out: list[tuple[Any, ...]] = []
    for dirpath, dirs, files in os.walk(root):
        dirs.sort()
        for name in sorted(dirs + files):
            path = Path(dirpath, name)
            rel = path.relative_to(root).as_posix()
            st = os.lstat(path)
            if stat.S_ISLNK(st.st_mode):
                out.append((rel, "link", os.readlink(path)))
                continue
            xattrs = sorted(
                (k, os.getxattr(path, k)) for k in os.listxattr(path)
                if k.startswith("user.") and not k.startswith("user.artifactfs.")
            )
            if stat.S_ISDIR(st.st_mode):
                out.append((rel, "dir", oct(st.st_mode & 0o7777), xattrs))
            else:
                out.append((rel, "file", oct(st.st_mode & 0o7777), path.read_bytes(), xattrs))
    return out


# ---- the cases ---------------------------------------------------------------------------------

W, C, X, T, A = os.O_WRONLY, os.O_CREAT, os.O_EXCL, os.O_TRUNC, os.O_APPEND


def open_excl_new(r: Recorder) -> None:
    r.write_new("new", "new.txt", W | C | X, b"made\n")
    r.stat("stat", "new.txt")


def open_excl_existing(r: Recorder) -> None:
    r.open("file", "file.txt", W | C | X, 0o644)
    r.open("dir", "dir", W | C | X, 0o644)
    r.do("link", os.symlink, "file.txt", r.p("l"))
    r.do("dangling link", os.symlink, "nowhere", r.p("d"))
    r.open("through link", "l", W | C | X, 0o644)
    r.open("through dangling", "d", W | C | X, 0o644)


def open_creat_existing_keeps_bytes(r: Recorder) -> None:
    r.write_new("again", "file.txt", W | C, b"J")
    r.stat("stat", "file.txt")


def open_trunc(r: Recorder) -> None:
    r.write_new("trunc", "file.txt", W | T, b"new")
    r.write_new("trunc staged", "file.txt", W | T, b"")
    r.write_new("creat trunc", "made.txt", W | C | T, b"xyz")


def open_append(r: Recorder) -> None:
    r.write_new("one", "file.txt", W | A, b"more\n")
    fd = r.open("open", "file.txt", os.O_RDWR | A)
    if fd is not None:
        try:
            r.do("seek", os.lseek, fd, 0, os.SEEK_SET)
            r.do("write", os.write, fd, b"end\n")
            r.do("pread", os.pread, fd, 100, 0)
        finally:
            os.close(fd)


def open_rdwr(r: Recorder) -> None:
    fd = r.open("open", "dir/inner.txt", os.O_RDWR)
    if fd is not None:
        try:
            r.do("read", os.read, fd, 2)
            r.do("write", os.write, fd, b"NE")
            r.do("pwrite past end", os.pwrite, fd, b"!", 10)
            r.do("pread", os.pread, fd, 100, 0)
            r.do("fsync", os.fsync, fd)
        finally:
            os.close(fd)


def open_errors(r: Recorder) -> None:
    r.open("missing", "nope", os.O_RDONLY)
    r.open("in missing folder", "nope/x", W | C, 0o644)
    r.open("under a file", "file.txt/x", W | C, 0o644)
    r.open("folder for writing", "dir", W)
    r.open("file as folder", "file.txt", os.O_RDONLY | os.O_DIRECTORY)
    fd = r.open("folder as folder", "dir", os.O_RDONLY | os.O_DIRECTORY)
    if fd is not None:
        os.close(fd)
    r.do("nofollow", os.symlink, "file.txt", r.p("l"))
    r.open("open nofollow", "l", os.O_RDONLY | os.O_NOFOLLOW)


def open_creat_modes(r: Recorder) -> None:
    r.write_new("0600", "secret", W | C | X, b"s", 0o600)
    r.write_new("0755", "tool", W | C | X, b"#!/bin/sh\n", 0o755)
    r.write_new("0444", "frozen", W | C | X, b"f", 0o444)
    r.do("mknod", os.mknod, r.p("made-by-mknod"), stat.S_IFREG | 0o640)
    r.stat("mknod stat", "made-by-mknod")


def unlink_cases(r: Recorder) -> None:
    r.do("file", os.unlink, r.p("file.txt"))
    r.do("again", os.unlink, r.p("file.txt"))
    r.do("folder", os.unlink, r.p("dir"))
    r.do("under a file", os.unlink, r.p("file.txt/x"))
    r.write_new("recreate", "file.txt", W | C | X, b"second\n")
    r.do("staged", os.unlink, r.p("full/sub/b.txt"))


def rename_file(r: Recorder) -> None:
    r.do("new name", os.rename, r.p("file.txt"), r.p("moved.txt"))
    r.do("into folder", os.rename, r.p("moved.txt"), r.p("dir/moved.txt"))
    r.do("gone", os.rename, r.p("file.txt"), r.p("x"))
    r.do("to itself", os.rename, r.p("dir/inner.txt"), r.p("dir/inner.txt"))
    r.do("into missing", os.rename, r.p("dir/inner.txt"), r.p("nope/inner.txt"))
    r.do("under a file", os.rename, r.p("dir/inner.txt"), r.p("full/a.txt/x"))


def rename_file_over_file(r: Recorder) -> None:
    r.do("over base", os.rename, r.p("file.txt"), r.p("full/a.txt"))
    r.write_new("new", "new.txt", W | C, b"new\n")
    r.do("over moved", os.rename, r.p("new.txt"), r.p("full/a.txt"))


def rename_dir_over_empty_dir(r: Recorder) -> None:
    r.do("mkdir", os.mkdir, r.p("empty2"))
    r.do("over empty", os.rename, r.p("dir"), r.p("empty2"))
    r.do("empty over empty", os.rename, r.p("empty"), r.p("full/sub2"))


def rename_dir_over_nonempty_dir(r: Recorder) -> None:
    r.do("over full", os.rename, r.p("dir"), r.p("full"))
    r.do("over full sub", os.rename, r.p("empty"), r.p("full"))


def rename_mismatched_kinds(r: Recorder) -> None:
    r.do("file over dir", os.rename, r.p("file.txt"), r.p("empty"))
    r.do("dir over file", os.rename, r.p("dir"), r.p("file.txt"))
    r.do("into itself", os.rename, r.p("full"), r.p("full/sub/inside"))
    r.do("dot", os.rename, r.p("dir/."), r.p("x"))


def rename_symlink(r: Recorder) -> None:
    r.do("symlink", os.symlink, "../file.txt", r.p("dir/l"))
    r.do("same depth", os.rename, r.p("dir/l"), r.p("full/l"))
    r.do("readlink", os.readlink, r.p("full/l"))
    r.do("over file", os.rename, r.p("full/l"), r.p("full/a.txt"))


def rename_flags(r: Recorder) -> None:
    r.do("noreplace existing", renameat2, r.p("file.txt"), r.p("full/a.txt"), RENAME_NOREPLACE)
    r.do("noreplace new", renameat2, r.p("file.txt"), r.p("fresh.txt"), RENAME_NOREPLACE)
    r.do("exchange files", renameat2, r.p("fresh.txt"), r.p("full/a.txt"), RENAME_EXCHANGE)
    r.do("exchange file and dir", renameat2, r.p("dir"), r.p("fresh.txt"), RENAME_EXCHANGE)
    r.do("exchange missing", renameat2, r.p("dir"), r.p("nope"), RENAME_EXCHANGE)
    r.do("exchange into itself", renameat2, r.p("full"), r.p("full/sub"), RENAME_EXCHANGE)
    r.do("both flags", renameat2, r.p("full"), r.p("empty"), RENAME_EXCHANGE | RENAME_NOREPLACE)


def mkdir_cases(r: Recorder) -> None:
    r.do("new", os.mkdir, r.p("made"))
    r.do("nested", os.mkdir, r.p("made/deeper"))
    r.do("existing dir", os.mkdir, r.p("dir"))
    r.do("existing file", os.mkdir, r.p("file.txt"))
    r.do("missing parent", os.mkdir, r.p("nope/x"))
    r.do("under a file", os.mkdir, r.p("file.txt/x"))
    r.do("mode 0700", os.mkdir, r.p("private"), 0o700)
    r.write_new("file inside", "made/deeper/f", W | C, b"f")


def rmdir_cases(r: Recorder) -> None:
    r.do("empty", os.rmdir, r.p("empty"))
    r.do("again", os.rmdir, r.p("empty"))
    r.do("non-empty base", os.rmdir, r.p("full"))
    r.do("non-empty staged", os.mkdir, r.p("made"))
    r.write_new("fill", "made/f", W | C, b"f")
    r.do("non-empty made", os.rmdir, r.p("made"))
    r.do("file", os.rmdir, r.p("file.txt"))
    r.do("dot", os.rmdir, r.p("dir/."))
    r.do("emptied", os.unlink, r.p("dir/inner.txt"))
    r.do("emptied dir", os.rmdir, r.p("dir"))


def truncate_cases(r: Recorder) -> None:
    r.do("shrink base", os.truncate, r.p("file.txt"), 2)
    r.do("grow base", os.truncate, r.p("dir/inner.txt"), 10)
    r.do("negative", os.truncate, r.p("full/a.txt"), -1)
    r.do("folder", os.truncate, r.p("dir"), 0)
    r.do("missing", os.truncate, r.p("nope"), 0)
    fd = r.open("open", "full/a.txt", os.O_RDWR)
    if fd is not None:
        try:
            r.do("ftruncate", os.ftruncate, fd, 1)
            r.do("pread", os.pread, fd, 10, 0)
        finally:
            os.close(fd)
    r.stat("stat", "file.txt")


def chmod_cases(r: Recorder) -> None:
    r.do("file 0755", os.chmod, r.p("file.txt"), 0o755)
    r.stat("stat file", "file.txt")
    r.do("staged 0600", os.chmod, r.p("full/a.txt"), 0o600)
    r.write_new("write after chmod", "full/a.txt", W | A, b"x")
    r.do("setuid", os.chmod, r.p("dir/inner.txt"), 0o4755)
    r.do("dir 0700", os.chmod, r.p("full/sub"), 0o700)
    r.do("missing", os.chmod, r.p("nope"), 0o644)
    r.do("symlink nofollow", os.symlink, "file.txt", r.p("l"))
    r.do("chmod through link", os.chmod, r.p("l"), 0o700)
    r.do("rename keeps mode", os.rename, r.p("file.txt"), r.p("renamed"))
    r.stat("stat renamed", "renamed")
    r.do("chown", os.chown, r.p("renamed"), 0, 0)
    r.stat("stat after chown", "renamed")


def utimens_cases(r: Recorder) -> None:
    times = (1_000_000_000_123_456_789, 1_100_000_000_987_654_321)
    r.do("base file", os.utime, r.p("file.txt"), ns=times)
    r.times("base file times", "file.txt")
    r.do("dir", os.utime, r.p("dir"), ns=times)
    r.times("dir times", "dir")
    r.write_new("new", "new.txt", W | C, b"n")
    r.do("new file", os.utime, r.p("new.txt"), ns=times)
    r.times("new file times", "new.txt")
    r.do("touch -m", lambda: subprocess.run(
        ["touch", "-m", "-d", "2003-03-03 03:03:03.5 UTC", r.p("new.txt")]).returncode)
    r.do("symlink", os.symlink, "new.txt", r.p("l"))
    r.do("symlink times", os.utime, r.p("l"), ns=times, follow_symlinks=False)
    r.times("link times", "l", follow=False)
    r.times("target times after touch -m", "new.txt")
    r.do("rename keeps times", os.rename, r.p("file.txt"), r.p("moved"))
    r.times("moved times", "moved")
    r.do("missing", os.utime, r.p("nope"), ns=times)


def symlink_cases(r: Recorder) -> None:
    r.do("to file", os.symlink, "file.txt", r.p("l1"))
    r.do("to dir", os.symlink, "full/sub", r.p("l2"))
    r.do("up and down", os.symlink, "../dir/inner.txt", r.p("full/l3"))
    r.do("dangling", os.symlink, "not/yet", r.p("l4"))
    r.do("existing", os.symlink, "file.txt", r.p("dir"))
    r.do("readlink", os.readlink, r.p("full/l3"))
    r.do("readlink file", os.readlink, r.p("file.txt"))
    r.do("readlink missing", os.readlink, r.p("nope"))
    r.stat("lstat", "l1", follow=False)
    r.stat("stat through", "l1")
    r.do("read through", lambda: Path(r.p("full/l3")).read_bytes())
    r.do("list through", lambda: sorted(os.listdir(r.p("l2"))))
    r.open("open dangling", "l4", os.O_RDONLY)
    r.do("unlink link", os.unlink, r.p("l1"))
    r.do("rmdir link", os.rmdir, r.p("l2"))
    r.do("long target", os.symlink, "x" * 5000, r.p("l5"))
    r.do("in new dir", os.mkdir, r.p("made"))
    r.do("link in new dir", os.symlink, "../file.txt", r.p("made/up"))


def xattr_cases(r: Recorder) -> None:
    r.do("set", os.setxattr, r.p("file.txt"), "user.color", b"blue")
    r.do("get", os.getxattr, r.p("file.txt"), "user.color")
    r.do("list", os.listxattr, r.p("file.txt"))
    r.do("get missing", os.getxattr, r.p("file.txt"), "user.none")
    r.do("create existing", os.setxattr, r.p("file.txt"), "user.color", b"red",
         os.XATTR_CREATE)
    r.do("replace missing", os.setxattr, r.p("file.txt"), "user.none", b"x", os.XATTR_REPLACE)
    r.do("replace", os.setxattr, r.p("file.txt"), "user.color", b"red", os.XATTR_REPLACE)
    r.do("empty value", os.setxattr, r.p("file.txt"), "user.empty", b"")
    r.do("dir", os.setxattr, r.p("dir"), "user.kind", b"folder")
    r.do("remove", os.removexattr, r.p("file.txt"), "user.empty")
    r.do("remove missing", os.removexattr, r.p("file.txt"), "user.empty")
    r.do("rename keeps", os.rename, r.p("dir"), r.p("dir2"))
    r.do("get after rename", os.getxattr, r.p("dir2"), "user.kind")
    r.do("write keeps", lambda: Path(r.p("file.txt")).write_bytes(b"changed"))
    r.do("get after write", os.getxattr, r.p("file.txt"), "user.color")
    r.do("name too long", os.setxattr, r.p("file.txt"), "user." + "n" * 300, b"x")
    r.do("symlink", os.symlink, "file.txt", r.p("l"))
    r.do("on symlink", os.setxattr, r.p("l"), "user.x", b"x", follow_symlinks=False)
    r.do("missing file", os.setxattr, r.p("nope"), "user.x", b"x")


def long_names(r: Recorder) -> None:
    n255, n256 = "a" * 255, "b" * 256
    r.write_new("255", n255, W | C | X, b"ok")
    r.write_new("256", n256, W | C | X, b"no")
    r.do("stat 256", os.stat, r.p(n256))
    r.do("mkdir 256", os.mkdir, r.p("c" * 256))
    r.do("mkdir 255", os.mkdir, r.p("c" * 255))
    r.do("rename to 256", os.rename, r.p("file.txt"), r.p(n256))
    r.do("symlink 256", os.symlink, "file.txt", r.p(n256))
    r.do("unlink 256", os.unlink, r.p(n256))
    r.do("rmdir 256", os.rmdir, r.p("c" * 256))
    r.do("multibyte 256", os.mkdir, r.p("é" * 128))
    r.do("multibyte 254", os.mkdir, r.p("é" * 127))


CASES = [
    open_excl_new, open_excl_existing, open_creat_existing_keeps_bytes, open_trunc,
    open_append, open_rdwr, open_errors, open_creat_modes, unlink_cases, rename_file,
    rename_file_over_file, rename_dir_over_empty_dir, rename_dir_over_nonempty_dir,
    rename_mismatched_kinds, rename_symlink, rename_flags, mkdir_cases, rmdir_cases,
    truncate_cases, chmod_cases, utimens_cases, symlink_cases, xattr_cases, long_names,
]


# ---- one mount, one folder per case ------------------------------------------------------------


@pytest.fixture(scope="module")
def places(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path]]:
    """(the alias folder on the mount, a plain ext4 folder), each holding every case's
    folder as the base version has it."""
    tmp = tmp_path_factory.mktemp("posix")
    env = {k: v for k, v in os.environ.items() if not k.startswith("ARTIFACTFS_")}
    env.update(ARTIFACTFS_STORE=str(tmp / "store"), ARTIFACTFS_CACHE_DIR=str(tmp / "cache"),
               HOME=str(tmp / "home"))
    files = {f"{case.__name__}/{rel}": data for case in CASES for rel, data in BASE.items()}
    old_umask = os.umask(0o022)
    try:
        make_tree(tmp / "src", files)
        api = Api(config=Config.from_env(env))
        try:
            art = Artifact("posix", "dataset")
            art._client = api
            art.add_dir(tmp / "src")
            art.save(project="conf")
        finally:
            api.close()
        reference = make_tree(tmp / "ext4", files)
        (tmp / "mnt").mkdir()
        proc = subprocess.run(
            [ARTIFACTFS, "mount", str(tmp / "mnt"), "--log-file", str(tmp / "mnt.log")],
            env=env, capture_output=True, text=True, timeout=90,
        )
        assert proc.returncode == 0, proc.stderr
        found = re.search(r"\(pid (\d+)\)", proc.stdout)
        assert found, proc.stdout
        mount = Mount(tmp / "mnt", int(found.group(1)), tmp / "mnt.log", env)
        try:
            yield mount.path / "conf/dataset/posix:latest", reference
        finally:
            take_down(mount)
    finally:
        os.umask(old_umask)


@pytest.mark.parametrize("case", CASES, ids=[c.__name__ for c in CASES])
def test_alias_folder_answers_as_ext4(case: Callable[[Recorder], None],
                                      places: tuple[Path, Path]):
    folder, reference = places
    records = []
    for root in (folder / case.__name__, reference / case.__name__):
        os.mkdir(root / "empty")
        recorder = Recorder(root)
        case(recorder)
        records.append((recorder.log, snapshot(root)))
    (mount_log, mount_tree), (ext4_log, ext4_tree) = records
    for got, want in zip(mount_log, ext4_log, strict=True):
        assert got == want, f"{case.__name__}: {got[0]}: mount {got[1]!r}, ext4 {want[1]!r}"
    assert mount_tree == ext4_tree


# ---- what differs on purpose -------------------------------------------------------------------


def test_what_an_artifact_cannot_hold_is_refused_with_eperm(places: tuple[Path, Path]):
    """Hard links, device nodes, FIFOs, sockets and links out of the artifact: EPERM (an
    EROFS would tell cp and rsync that nothing here can be written)."""
    import socket

    folder, _ = places
    root = folder / "open_errors"

    def bind() -> None:
        with socket.socket(socket.AF_UNIX) as s:
            s.bind(str(root / "sock"))

    refused = {
        "hard link": lambda: os.link(root / "file.txt", root / "hard"),
        "fifo": lambda: os.mkfifo(root / "fifo"),
        "char device": lambda: os.mknod(root / "null", stat.S_IFCHR | 0o666, os.makedev(1, 3)),
        "socket": bind,
        "absolute symlink": lambda: os.symlink("/etc/passwd", root / "abs"),
        "escaping symlink": lambda: os.symlink("../../x", root / "up"),
        "climb through a name": lambda: os.symlink("dir/../../x", root / "climb"),
    }
    for what, action in refused.items():
        with pytest.raises(OSError) as info:
            action()
        assert info.value.errno == errno.EPERM, f"{what}: {info.value}"
    assert not {"hard", "fifo", "null", "sock", "abs", "up", "climb"} & set(os.listdir(root))


def test_acls_are_not_supported_and_own_attributes_are_read_only(places: tuple[Path, Path]):
    folder, _ = places
    target = folder / "open_errors/file.txt"
    for name in ("system.posix_acl_access", "security.selinux", "trusted.x"):
        with pytest.raises(OSError) as info:
            os.setxattr(target, name, b"\x02\x00\x00\x00")
        assert info.value.errno == errno.ENOTSUP, name
    with pytest.raises(OSError) as info:
        os.setxattr(target, "user.artifactfs.digest", b"forged")
    assert info.value.errno == errno.EPERM
    with pytest.raises(OSError) as info:
        os.removexattr(target, "user.artifactfs.digest")
    assert info.value.errno == errno.EPERM
    assert os.getxattr(target, "user.artifactfs.digest")  # still there, still the mount's
    version = folder.parent / "posix:v0"
    with pytest.raises(OSError) as info:
        os.setxattr(version / "open_errors/file.txt", "user.color", b"blue")
    assert info.value.errno == errno.EROFS  # version folders never change
