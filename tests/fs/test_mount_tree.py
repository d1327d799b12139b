"""The folder tree a mount shows: names, sizes, times, inodes, xattrs, bad names, EROFS."""

from __future__ import annotations

import errno
import json
import os
import sqlite3
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from fs.conftest import Mount, drop_caches
from helpers import make_tree
from scale_out import scale_out

from artifactfs.sdk import Api, Artifact

FILES = {
    "README.txt": b"a small dataset\n",
    "train/a.bin": os.urandom(70_000),
    "train/b.bin": os.urandom(1 << 20),  # exactly one chunk: fetched whole
    "train/deep/c.bin": os.urandom(3_500_000),  # chunked, last chunk partial
    "empty.txt": b"",
}


def push(api: Api, tmp_path: Path, files: dict[str, bytes], name: str = "mnist",
         aliases: tuple[str, ...] = ("best",), type_: str = "dataset") -> Artifact:
    src = make_tree(tmp_path / f"src-{name}-{time.monotonic_ns()}", files)
    art = Artifact(name, type_)
    art._client = api
    art.add_dir(src)
    art.aliases = list(aliases)
    return art.save(project="vision")


@pytest.fixture
def dataset(api: Api, tmp_path: Path) -> Artifact:
    return push(api, tmp_path, FILES)


@scale_out
def test_tree_lists_projects_types_versions_and_aliases(dataset: Artifact, mounted: Mount):
    root = mounted.path
    assert os.listdir(root) == ["vision"]
    assert os.listdir(root / "vision") == ["dataset"]
    assert sorted(os.listdir(root / "vision/dataset")) == ["mnist:best", "mnist:latest",
                                                           "mnist:v0"]
    version = root / "vision/dataset/mnist:v0"
    assert sorted(os.listdir(version)) == ["README.txt", "empty.txt", "train"]
    assert sorted(os.listdir(version / "train")) == ["a.bin", "b.bin", "deep"]
    for rel, data in FILES.items():
        st = os.stat(version / rel)
        assert st.st_size == len(data)
        assert int(st.st_mtime) == int(dataset._info.created_at)


def test_lookup_finds_versions_and_aliases_made_after_mounting(
    dataset: Artifact, api: Api, tmp_path: Path, mount_factory
):
    mount = mount_factory("--alias-timeout", "0.2")
    type_dir = mount.path / "vision/dataset"
    assert (type_dir / "mnist:v0").is_dir()
    push(api, tmp_path, {"new.txt": b"new"}, aliases=("fresh",))
    assert (type_dir / "mnist:fresh/new.txt").read_bytes() == b"new"
    assert (type_dir / "mnist:v1/new.txt").read_bytes() == b"new"
    time.sleep(0.5)  # the listing of the type folder may be cached for the alias timeout
    assert "mnist:fresh" in os.listdir(type_dir)


def test_moved_alias_is_seen_and_open_files_keep_their_version(
    dataset: Artifact, api: Api, tmp_path: Path, mount_factory
):
    mount = mount_factory("--alias-timeout", "0.3")
    readme = mount.path / "vision/dataset/mnist:latest/README.txt"
    with open(readme, "rb") as held:
        first = held.read(5)
        push(api, tmp_path, {"README.txt": b"version two\n"}, aliases=())
        time.sleep(1.0)
        assert readme.read_bytes() == b"version two\n"  # the alias moved to v1
        held.seek(0)
        assert held.read() == FILES["README.txt"]  # the open file still reads v0
    assert first == FILES["README.txt"][:5]


def test_inodes_are_stable_for_the_life_of_the_mount(dataset: Artifact, mounted: Mount):
    paths = [mounted.path / "vision/dataset/mnist:v0" / rel for rel in FILES]
    before = [os.stat(p).st_ino for p in paths]
    drop_caches()  # forget dentries and inodes in the kernel, so it must look up again
    after = [os.stat(p).st_ino for p in paths]
    assert before == after
    assert len(set(before)) == len(before)


def test_statfs_answers(mounted: Mount):
    st = os.statvfs(mounted.path)
    assert st.f_namemax == 255
    assert st.f_bsize > 0


def test_mounting_fetches_no_folder_and_a_version_fetches_the_folders_looked_into(
    dataset: Artifact, mounted: Mount
):
    type_dir = mounted.path / "vision/dataset"
    os.listdir(type_dir)
    os.stat(type_dir / "mnist:v0")
    assert mounted.stats()["folder_fetches"] == 0
    os.listdir(type_dir / "mnist:v0")
    os.listdir(type_dir / "mnist:v0/train")
    os.stat(type_dir / "mnist:v0/train/a.bin")
    os.stat(type_dir / "mnist:v0/train/deep")  # a folder's attributes need no listing
    os.listdir(type_dir / "mnist:v0/train")
    stats = mounted.stats()
    assert (stats["folder_fetches"], stats["folder_requests"]) == (2, 2)  # root, train
    assert stats["manifest_fetches"] == 0  # never the whole manifest to read
    assert stats["fetch_bytes"] == 0  # no file bytes until a read


def test_a_versions_tags_are_an_xattr(api: Api, tmp_path: Path,
                                      mount_factory: Callable[..., Mount]) -> None:
    tagged = push(api, tmp_path, {"a.txt": b"a"}, name="tagged")
    tagged.tags = ["baseline", "needs review"]
    tagged.save()
    push(api, tmp_path, {"b.txt": b"b"}, name="plain")
    top = mount_factory().path / "vision/dataset"
    assert os.getxattr(top / "tagged:v0", "user.artifactfs.tags") == b"baseline,needs review"
    with pytest.raises(OSError) as info:  # no tags: no attribute, as with a description
        os.getxattr(top / "plain:v0", "user.artifactfs.tags")
    assert info.value.errno == errno.ENODATA


def test_xattrs_show_version_and_file_metadata(dataset: Artifact, mounted: Mount):
    folder = mounted.path / "vision/dataset/mnist:best"
    out = subprocess.run(["getfattr", "-d", str(folder)], capture_output=True, text=True,
                         check=True).stdout
    assert f'user.artifactfs.id="{dataset.id}"' in out
    assert 'user.artifactfs.version="v0"' in out
    assert f'user.artifactfs.digest="{dataset.digest}"' in out
    assert 'user.artifactfs.aliases="best,latest"' in out
    assert 'user.artifactfs.state="COMMITTED"' in out
    file_digest = os.getxattr(folder / "train/a.bin", "user.artifactfs.digest").decode()
    assert file_digest == dataset.manifest["train/a.bin"].digest
    with pytest.raises(OSError) as info:
        os.getxattr(folder / "train/a.bin", "user.artifactfs.nope")
    assert info.value.errno == errno.ENODATA


MISSING = [
        "nope",
        "vision/nope",
        "vision/dataset/mnist",  # no label
        "vision/dataset/mnist:",
        "vision/dataset/mnist:v9",
        "vision/dataset/mnist:no-such-alias",
        "vision/dataset/bad name:v0",
        "vision/dataset/mnist:..",
        "vision/dataset/mnist:v0:v1",
        "vision/dataset/other:latest",
        "vision/model/mnist:v0",  # the collection exists under another type
        "vision/dataset/mnist:v0/missing.txt",
        "vision/dataset/mnist:v0/README.txt/inside",
]


def test_paths_that_name_nothing_give_enoent(dataset: Artifact, mounted: Mount):
    for rel in MISSING:
        with pytest.raises(OSError) as info:
            os.stat(mounted.path / rel)
        assert info.value.errno in (errno.ENOENT, errno.ENOTDIR), rel
    assert mounted.alive()


def test_non_utf8_and_long_names_give_enoent(dataset: Artifact, mounted: Mount):
    type_dir = os.fsencode(mounted.path / "vision/dataset")
    for name in (b"mnist:\xff", b"m" * 200 + b":v0"):
        with pytest.raises(OSError) as info:
            os.stat(type_dir + b"/" + name)
        assert info.value.errno == errno.ENOENT
    assert mounted.alive()


WRITES = [
        lambda p: (p / "mnist:v0/new.txt").write_bytes(b"x"),
        lambda p: (p / "mnist:v0/README.txt").write_bytes(b"x"),
        lambda p: (p / "mnist:v0/train/deep").rename(p / "mnist:v0/deeper"),
        lambda p: os.close(os.open(p / "mnist:v0/README.txt", os.O_RDWR)),
        lambda p: (p / "mnist:v0/train/a.bin").unlink(),
        lambda p: (p / "mnist:v0/train").rmdir(),
        lambda p: (p / "mnist:v0/sub").mkdir(),
        lambda p: (p / "mnist:v0/README.txt").rename(p / "mnist:v0/x.txt"),
        lambda p: os.truncate(p / "mnist:v0/README.txt", 0),
        lambda p: os.chmod(p / "mnist:v0/README.txt", 0o777),
        lambda p: (p / "brand:new").mkdir(),
        lambda p: os.setxattr(p / "mnist:v0", "user.x", b"1"),
]


def test_writes_get_erofs(dataset: Artifact, mounted: Mount):
    for i, action in enumerate(WRITES):
        with pytest.raises(OSError) as info:
            action(mounted.path / "vision/dataset")
        assert info.value.errno == errno.EROFS, f"write action {i}"
    assert (mounted.path / "vision/dataset/mnist:v0/README.txt").read_bytes() == FILES[
        "README.txt"
    ]


def test_manifest_with_escaping_path_reads_as_io_error(
    dataset: Artifact, mounted: Mount, config
):
    db = sqlite3.connect(config.store_dir / "registry.sqlite3")
    bad = dataset.manifest.to_dict()
    bad["contents"]["../../escape.txt"] = {"digest": "XUFAKrxLKna5cZ2REBfFkg==", "size": 5}
    # and the root's own listing, which a mount reads instead of the manifest
    (root,) = db.execute("SELECT listing FROM version_folders WHERE version_id = ? AND "
                         "path = ''", (dataset.id,)).fetchone()
    root = json.loads(root)
    root["files"]["../../escape.txt"] = bad["contents"]["../../escape.txt"]
    with db:
        db.execute("UPDATE versions SET manifest = ? WHERE id = ?", (json.dumps(bad), dataset.id))
        db.execute("UPDATE version_folders SET listing = ? WHERE version_id = ? AND path = ''",
                   (json.dumps(root), dataset.id))
    db.close()
    with pytest.raises(OSError) as info:
        os.listdir(mounted.path / "vision/dataset/mnist:v0")
    assert info.value.errno == errno.EIO
    assert "escape.txt" in mounted.log_text()
    assert mounted.alive()
