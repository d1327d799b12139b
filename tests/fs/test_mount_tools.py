"""Ordinary tools and Python I/O against a real mount."""

from __future__ import annotations

import hashlib
import io
import mmap
import multiprocessing
import os
import re
import shlex
import shutil
import signal
import stat
import subprocess
import sys
import sysconfig
import tarfile
import tempfile
from pathlib import Path

import numpy as np
import pytest
from fs.conftest import Mount, wait_gone
from fs.test_mount_tree import push
from fs.test_mount_writes import q
from helpers import ARTIFACTFS, make_tree

from artifactfs.config import Config
from artifactfs.core.chunks import CHUNK_SIZE
from artifactfs.sdk import Api

ARRAY = np.arange(600_000, dtype=np.float64)  # 4.8 MB: a chunked file
FILES = {
    "array.npy": ARRAY.tobytes(),
    "docs/readme.md": b"# data\n",
    **{f"shards/shard-{i:02d}.bin": os.urandom(50_000 + i) for i in range(8)},
    "big.bin": os.urandom(3 * CHUNK_SIZE + 99),
}


@pytest.fixture
def version(api: Api, tmp_path: Path, mounted: Mount) -> Path:
    push(api, tmp_path, FILES)
    return mounted.path / "vision/dataset/mnist:latest"


def run(*args: str, cwd: Path | None = None) -> str:
    return subprocess.run(args, capture_output=True, text=True, check=True, cwd=cwd).stdout


def test_ls_find_du(version: Path):
    listing = run("ls", "-l", str(version / "shards"))
    assert listing.count("shard-") == 8 and "50000" in listing
    found = run("find", str(version), "-type", "f").split()
    assert sorted(os.path.relpath(p, version) for p in found) == sorted(FILES)
    du = int(run("du", "-s", "-B1", "--apparent-size", str(version)).split()[0])
    assert du >= sum(len(d) for d in FILES.values())


def test_cat_and_sha256sum(version: Path):
    assert run("cat", str(version / "docs/readme.md")) == "# data\n"
    sums = run("sha256sum", *(str(version / rel) for rel in FILES))
    for line in sums.splitlines():
        digest, path = line.split(maxsplit=1)
        assert digest == hashlib.sha256(FILES[os.path.relpath(path, version)]).hexdigest()


def test_cp_r_and_rsync_a(version: Path, tmp_path: Path):
    run("cp", "-r", str(version), str(tmp_path / "copy"))
    run("rsync", "-a", f"{version}/", str(tmp_path / "synced"))
    for target in ("copy", "synced"):
        for rel, data in FILES.items():
            assert (tmp_path / target / rel).read_bytes() == data, (target, rel)


def test_tar_c(version: Path):
    out = subprocess.run(["tar", "c", "-C", str(version), "."], capture_output=True,
                         check=True).stdout
    with tarfile.open(fileobj=io.BytesIO(out)) as tar:
        got = {m.name.removeprefix("./"): tar.extractfile(m).read()
               for m in tar.getmembers() if m.isfile()}
    assert got == FILES


def test_getfattr_on_a_file(version: Path):
    out = run("getfattr", "-d", str(version / "big.bin"))
    assert "user.artifactfs.digest=" in out


def test_python_open_seek_and_mmap(version: Path):
    data = FILES["big.bin"]
    with open(version / "big.bin", "rb") as f:
        f.seek(CHUNK_SIZE - 10)
        assert f.read(20) == data[CHUNK_SIZE - 10 : CHUNK_SIZE + 10]
        f.seek(-5, os.SEEK_END)
        assert f.read() == data[-5:]
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
            assert len(m) == len(data)
            assert m[2 * CHUNK_SIZE : 2 * CHUNK_SIZE + 4096] == data[
                2 * CHUNK_SIZE : 2 * CHUNK_SIZE + 4096
            ]
            assert hashlib.md5(m).digest() == hashlib.md5(data).digest()


def test_numpy_memmap(version: Path):
    arr = np.memmap(version / "array.npy", dtype=np.float64, mode="r")
    assert arr.shape == ARRAY.shape
    assert arr[123_456] == 123_456.0
    assert np.array_equal(arr, ARRAY)
    del arr


def _digest(path: str) -> tuple[str, str]:
    with open(path, "rb") as f:
        return path, hashlib.sha256(f.read()).hexdigest()


def test_loader_with_four_workers(version: Path):
    paths = sorted(str(p) for p in (version / "shards").iterdir())
    with multiprocessing.get_context("spawn").Pool(4) as pool:
        results = dict(pool.map(_digest, paths * 3))
    for path, digest in results.items():
        rel = os.path.relpath(path, version)
        assert digest == hashlib.sha256(FILES[rel]).hexdigest()


# ---- writing a dataset into an alias folder with the tools people use -----------------------
#
# Each tool copies the same source folder (nested files, an executable, a private file, three
# relative symlinks, a user xattr, set times) into NAME:ALIAS/ and must exit 0; the folder then
# shows the source as copied (modes and times while staged), and after `artifactfs save` the
# new version downloads equal to the source: the same files and bytes, the executable bits,
# the symlinks. Empty folders are not part of a version, so the source has none.

BASE_FILES = {"old.txt": b"from the base version\n"}
SOURCE_FILES = {
    "README.md": b"# a dataset\n",
    "bin/prepare.sh": b"#!/bin/sh\necho ready\n",
    "data/labels.csv": b"id,label\n1,cat\n",
    "data/train/0001.bin": os.urandom(70_000),
    "data/train/0002.bin": os.urandom(CHUNK_SIZE + 12_345),  # chunked
    "private.key": b"not really a key\n",
}
SOURCE_MODES = {"bin/prepare.sh": 0o755, "private.key": 0o600}
SOURCE_LINKS = {"latest": "data/train", "data/readme": "../README.md",
                "data/train/first.bin": "0001.bin"}
SOURCE_MTIME_NS = 1_600_000_000_000_000_000


def make_source(root: Path) -> Path:
    make_tree(root, SOURCE_FILES)
    for rel, mode in SOURCE_MODES.items():
        os.chmod(root / rel, mode)
    for rel, target in SOURCE_LINKS.items():
        os.symlink(target, root / rel)
    os.setxattr(root / "README.md", "user.origin", b"tests")
    for i, rel in enumerate(sorted(SOURCE_FILES)):
        os.utime(root / rel, ns=(SOURCE_MTIME_NS, SOURCE_MTIME_NS + i * 1_000_000_000))
    return root


def posix_tree(root: Path) -> dict[str, tuple[object, ...]]:
    """What a version keeps of a folder: each file's bytes and executable bit, each
    symlink's target (folders only as the places files are in)."""
    out: dict[str, tuple[object, ...]] = {}
    for dirpath, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(dirpath, name)
            rel = path.relative_to(root).as_posix()
            if path.is_symlink():
                out[rel] = ("link", os.readlink(path))
            elif path.is_file():
                out[rel] = ("file", path.read_bytes(), bool(path.stat().st_mode & 0o111))
    return out


def expected_tree(prefix: str = "") -> dict[str, tuple[object, ...]]:
    out: dict[str, tuple[object, ...]] = {
        rel: ("file", data, False) for rel, data in BASE_FILES.items()
    }
    for rel, data in SOURCE_FILES.items():
        out[prefix + rel] = ("file", data, bool(SOURCE_MODES.get(rel, 0o644) & 0o111))
    for rel, target in SOURCE_LINKS.items():
        out[prefix + rel] = ("link", target)
    return out


def check_staged_view(folder: Path, prefix: str = "", *, times: bool = True,
                      xattrs: bool = False) -> None:
    """The alias folder shows what was copied, exact modes (and times) included."""
    assert posix_tree(folder) == expected_tree(prefix)
    for i, rel in enumerate(sorted(SOURCE_FILES)):
        st = os.stat(folder / prefix / rel)
        assert stat.S_IMODE(st.st_mode) == SOURCE_MODES.get(rel, 0o644), rel
        if times:
            assert st.st_mtime_ns == SOURCE_MTIME_NS + i * 1_000_000_000, rel
    if xattrs:
        assert os.getxattr(folder / prefix / "README.md", "user.origin") == b"tests"


def save_and_download(api: Api, run_cli, folder: Path, dest: Path) -> Path:
    proc = run_cli("save", str(folder), "-m", "copied in")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "vision/mnist:v1"
    art = api.artifact("vision/mnist:v1")
    art.download(root=str(dest))
    art.verify(str(dest))
    return dest


@pytest.fixture
def alias_folder(api: Api, tmp_path: Path, mounted: Mount) -> Path:
    push(api, tmp_path, BASE_FILES)
    return mounted.path / "vision/dataset/mnist:latest"


def test_cp_a_into_an_alias_folder(alias_folder: Path, api: Api, run_cli, tmp_path: Path):
    src = make_source(tmp_path / "source")
    proc = subprocess.run(["cp", "-a", f"{src}/.", f"{alias_folder}/"], capture_output=True,
                          text=True)
    assert proc.returncode == 0, proc.stderr
    check_staged_view(alias_folder, xattrs=True)
    dest = save_and_download(api, run_cli, alias_folder, tmp_path / "download")
    assert posix_tree(dest) == expected_tree()
    assert posix_tree(alias_folder) == expected_tree()  # the saved folder shows the same
    assert os.stat(alias_folder.parent / "mnist:v1/bin/prepare.sh").st_mode & 0o777 == 0o555
    assert os.readlink(alias_folder.parent / "mnist:v1/latest") == "data/train"


def test_rsync_a_into_an_alias_folder(alias_folder: Path, api: Api, run_cli, tmp_path: Path):
    src = make_source(tmp_path / "source")
    proc = subprocess.run(["rsync", "-a", f"{src}/", f"{alias_folder}/"], capture_output=True,
                          text=True)
    assert proc.returncode == 0, proc.stderr
    check_staged_view(alias_folder)
    again = subprocess.run(["rsync", "-a", "--itemize-changes", f"{src}/", f"{alias_folder}/"],
                           capture_output=True, text=True)
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip() == ""  # nothing left to do: sizes, times and modes all match
    dest = save_and_download(api, run_cli, alias_folder, tmp_path / "download")
    assert posix_tree(dest) == expected_tree()


def test_tar_x_into_an_alias_folder(alias_folder: Path, api: Api, run_cli, tmp_path: Path):
    src = make_source(tmp_path / "source")
    archive = tmp_path / "source.tar"
    run("tar", "--xattrs", "-cf", str(archive), "-C", str(src), ".")
    proc = subprocess.run(["tar", "--xattrs", "-xf", str(archive), "-C", str(alias_folder)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    check_staged_view(alias_folder, xattrs=True)
    dest = save_and_download(api, run_cli, alias_folder, tmp_path / "download")
    assert posix_tree(dest) == expected_tree()


def test_unzip_into_an_alias_folder(alias_folder: Path, api: Api, run_cli, tmp_path: Path):
    src = make_source(tmp_path / "source")
    archive = tmp_path / "source.zip"
    run("zip", "-q", "-r", "-y", str(archive), ".", cwd=src)  # -y: keep links as links
    proc = subprocess.run(["unzip", "-q", str(archive), "-d", str(alias_folder)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    check_staged_view(alias_folder, times=False)  # zip keeps times to 2 s
    dest = save_and_download(api, run_cli, alias_folder, tmp_path / "download")
    assert posix_tree(dest) == expected_tree()


def test_shutil_copytree_into_an_alias_folder(alias_folder: Path, api: Api, run_cli,
                                              tmp_path: Path):
    src = make_source(tmp_path / "source")
    shutil.copytree(src, alias_folder / "copy", symlinks=True)
    check_staged_view(alias_folder, "copy/", xattrs=True)
    dest = save_and_download(api, run_cli, alias_folder, tmp_path / "download")
    assert posix_tree(dest) == expected_tree("copy/")


def test_git_clone_into_an_alias_folder(alias_folder: Path, api: Api, run_cli,
                                        tmp_path: Path):
    git_env = {**os.environ, "HOME": str(tmp_path / "git-home"), "GIT_CONFIG_NOSYSTEM": "1",
               "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.invalid",
               "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.invalid"}

    def git(*args: str, cwd: Path) -> str:
        proc = subprocess.run(["git", *args], cwd=cwd, env=git_env, capture_output=True,
                              text=True)
        assert proc.returncode == 0, f"git {' '.join(args)}: {proc.stderr}"
        return proc.stdout

    repo = make_source(tmp_path / "repo")
    git("init", "-q", "-b", "main", cwd=repo)
    git("add", "-A", cwd=repo)
    git("commit", "-q", "-m", "a dataset", cwd=repo)
    git("clone", "-q", str(repo), str(alias_folder / "clone"), cwd=tmp_path)
    assert git("status", "--porcelain", cwd=alias_folder / "clone") == ""

    dest = save_and_download(api, run_cli, alias_folder, tmp_path / "download")
    got = posix_tree(dest)
    worktree = {k.removeprefix("clone/"): v for k, v in got.items()
                if k.startswith("clone/") and not k.startswith("clone/.git/")}
    assert worktree == {k: v for k, v in expected_tree().items() if k not in BASE_FILES}
    assert git("status", "--porcelain", cwd=dest / "clone") == ""  # a working clone again
    git("fsck", "--no-progress", cwd=dest / "clone")
    assert git("log", "--format=%s", cwd=dest / "clone").strip() == "a dataset"


# ---- as a normal user, on a mount that user made ----------------------------------------------

NOBODY = 65534


def _as_nobody(*cmd: str) -> list[str]:
    return ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", *cmd]


def _cli_for_nobody() -> list[str] | None:
    """A command that runs this artifactfs as uid 65534, or None.

    The test's interpreter may live where that user cannot reach (a pyenv under a 0700
    /root); then the system Python of the same version runs the same code and packages,
    with this environment's site-packages added. Probed in a private mount namespace, as
    the test runs it (what a user may reach can differ there).
    """
    probe = "import artifactfs.cli.main, pyfuse3"

    def works(*cmd: str) -> bool:
        return subprocess.run(
            ["unshare", "-m", *_as_nobody("env", "-i", "PATH=/usr/bin:/bin", *cmd)],
            capture_output=True, cwd="/",
        ).returncode == 0

    if works(ARTIFACTFS, "--help"):
        return [ARTIFACTFS]
    system = f"/usr/bin/python{sys.version_info.major}.{sys.version_info.minor}"
    site_dir = sysconfig.get_paths()["purelib"]
    boot = f"import site, sys; site.addsitedir({site_dir!r}); sys.argv[0] = 'artifactfs'; "
    if os.path.exists(system) and works(system, "-c", boot + probe):
        return [system, "-c", boot + "from artifactfs.cli.main import main; main()"]
    return None


def test_rsync_a_as_a_normal_user_on_their_own_mount(env: dict[str, str], tmp_path: Path):
    """uid 65534 mounts (through fusermount3), rsyncs a dataset in and saves it.

    /dev/fuse is 0600 on this machine (a container), where distributions make it 0666 so
    that users can mount; the scenario runs in a private mount namespace whose /dev/fuse is
    a 0666 node of the same device, so nothing on the machine itself changes.
    """
    if subprocess.run(["unshare", "-m", "true"], capture_output=True).returncode != 0:
        pytest.skip("cannot make a private mount namespace here (unshare -m)")
    cli = _cli_for_nobody()
    if cli is None:
        pytest.skip("no Python that uid 65534 can run artifactfs with")
    home = Path(tempfile.mkdtemp(prefix="afs-nobody-", dir="/tmp"))  # tmp_path is 0700
    output = ""
    try:
        os.chmod(home, 0o755)
        src = make_source(home / "source")
        user_env = {"PATH": "/usr/bin:/bin", "HOME": str(home / "home"),
                    "ARTIFACTFS_CACHE_DIR": str(home / "cache")}
        if "PYTHONPATH" in os.environ:  # the same code as this test runs
            user_env["PYTHONPATH"] = os.environ["PYTHONPATH"]
        root_env = dict(env)
        if "ARTIFACTFS_REGISTRY" in env:  # the server transport: the user needs only a key
            user_env |= {k: env[k] for k in ("ARTIFACTFS_REGISTRY", "ARTIFACTFS_API_KEY")}
        else:
            user_env["ARTIFACTFS_STORE"] = root_env["ARTIFACTFS_STORE"] = str(home / "store")
        api = Api(config=Config.from_env(root_env))
        try:
            push(api, tmp_path, BASE_FILES)
            for path in [home, *home.rglob("*")]:
                os.lchown(path, NOBODY, NOBODY)
            mnt = home / "mnt"
            mnt.mkdir()
            os.chown(mnt, NOBODY, NOBODY)
            folder = mnt / "vision/dataset/mnist:latest"
            user = " ".join(shlex.quote(a) for a in _as_nobody(
                "env", "-i", *(f"{k}={v}" for k, v in user_env.items())))
            afs = " ".join(shlex.quote(a) for a in cli)
            script = f"""
                set -e
                mknod {home}/fuse c 10 229 && chmod 666 {home}/fuse
                mount --bind {home}/fuse /dev/fuse
                afs() {{ {user} {afs} "$@"; }}
                afs mount {mnt} --staging-dir {home}/staging --log-file {home}/mnt.log
                trap 'afs umount {mnt} || fusermount3 -uz {mnt}' EXIT
                {user} rsync -a {src}/ {q(folder)}/
                echo "second rsync:"
                {user} rsync -a --itemize-changes {src}/ {q(folder)}/
                echo "done"
                afs save {q(folder)} -m 'rsync as a user'
            """
            proc = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c",
                                   script], capture_output=True, text=True, timeout=240,
                                  cwd="/")
            output = proc.stdout
            log = (home / "mnt.log").read_text() if (home / "mnt.log").exists() else ""
            assert proc.returncode == 0, f"{proc.stdout}\n{proc.stderr}\n{log}"
            second = proc.stdout.split("second rsync:\n", 1)[1].split("done\n", 1)[0]
            assert second.strip() == ""  # nothing left to do: times and modes were kept
            assert "\nvision/mnist:v1\n" in proc.stdout
            art = api.artifact("vision/mnist:v1")
            art.download(root=str(tmp_path / "download"))
            assert posix_tree(tmp_path / "download") == expected_tree()
        finally:
            api.close()
    finally:
        started = re.search(r"\(pid (\d+)\)", output)
        if started is not None and not wait_gone(int(started.group(1))):
            os.kill(int(started.group(1)), signal.SIGTERM)  # the trap's umount failed
            wait_gone(int(started.group(1)))
        shutil.rmtree(home, ignore_errors=True)
