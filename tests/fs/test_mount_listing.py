"""A large folder's listing gives its first entries with attributes and the rest by name
alone (inode number and type), as the kernel's "readdirplus auto" would: a walk that never
stats its files (find, os.walk) then costs the kernel no dentry and inode per entry. Once
something in the folder is looked up, its listings come with attributes again.

Whether the kernel made a dentry for an entry is seen in the daemon's lookup count: a stat
of a name the listing linked is answered by the kernel, one listed by name alone is looked
up."""

from __future__ import annotations

import os
import stat
import time
from pathlib import Path

from fs.conftest import Mount
from helpers import make_tree

from artifactfs.core.posix import symlink_entry
from artifactfs.fs.ops import UNLINKED_AFTER
from artifactfs.sdk import Api, Artifact

FILES = 3 * UNLINKED_AFTER  # past the first readdir batch, too
NAMES = [f"img{i:04d}.bin" for i in range(FILES)]
LINKS = {"link-late": NAMES[-1]}  # sorts after every img name: listed by name alone


def push(api: Api, tmp_path: Path) -> Artifact:
    src = make_tree(tmp_path / f"src-{time.monotonic_ns()}",
                    {f"big/{n}": n.encode() for n in NAMES} | {"big/sub/x.txt": b"x"})
    art = Artifact("listing", "dataset")
    art._client = api
    art.add_dir(src)
    for name, target in LINKS.items():  # as a save of a mount's symlink makes one
        art.manifest.add(symlink_entry(f"big/{name}", target))
    return art.save(project="vision")


def lookups(mounted: Mount) -> int:
    return mounted.stats()["requests"].get("lookup", 0)


def test_a_walk_of_a_large_folder_links_only_its_first_entries(
        api: Api, tmp_path: Path, mounted: Mount) -> None:
    push(api, tmp_path)
    big = mounted.path / "vision/dataset/listing:v0/big"
    entries = list(os.scandir(big))
    # every name once, in the registry's order, each with its type and its inode number
    assert [e.name for e in entries] == sorted([*NAMES, *LINKS, "sub"])
    kinds = {e.name: (e.is_dir(follow_symlinks=False), e.is_symlink()) for e in entries}
    assert kinds["sub"] == (True, False) and kinds["link-late"] == (False, True)
    assert all(kinds[n] == (False, False) for n in NAMES)
    before = lookups(mounted)
    # a name of the first entries: the kernel has its dentry, no lookup
    assert os.stat(big / NAMES[0]).st_size == len(NAMES[0])
    assert lookups(mounted) == before
    # a name past them: the kernel asks; the inode is the one the listing gave
    late = next(e for e in entries if e.name == NAMES[-1])
    assert os.stat(late.path).st_ino == late.inode()
    assert lookups(mounted) == before + 1
    assert stat.S_ISLNK(os.lstat(big / "link-late").st_mode)
    assert os.readlink(big / "link-late") == NAMES[-1]
    assert (big / "link-late").read_bytes() == NAMES[-1].encode()
    assert all(os.stat(e.path, follow_symlinks=False).st_ino == e.inode() for e in entries)
    assert mounted.alive()


def test_a_folder_looked_up_in_is_listed_with_attributes(
        api: Api, tmp_path: Path, mounted: Mount) -> None:
    push(api, tmp_path)
    big = mounted.path / "vision/dataset/listing:v0/big"
    os.listdir(big)
    assert os.stat(big / NAMES[-1]).st_size == len(NAMES[-1])  # looked up: a stat is seen
    before = lookups(mounted)
    # listed again: every entry now comes with its attributes, so stats need no lookup
    names = os.listdir(big)
    assert len(names) == FILES + len(LINKS) + 1
    for name in NAMES[UNLINKED_AFTER:FILES - 1]:
        assert os.stat(big / name).st_size == len(name)
    assert lookups(mounted) == before


def test_find_of_a_large_folder_looks_nothing_up(
        api: Api, tmp_path: Path, mounted: Mount) -> None:
    push(api, tmp_path)
    version = mounted.path / "vision/dataset/listing:v0"
    before = lookups(mounted)
    found = sorted(str(Path(top, n).relative_to(version))
                   for top, dirs, files in os.walk(version) for n in dirs + files)
    assert len(found) == 1 + FILES + len(LINKS) + 2  # big, its files and link, sub, sub/x.txt
    # the folders on the way (vision, dataset, listing:v0, big, sub) at most: a name-alone
    # entry carries its type, so the walk stats no file to tell one from a folder
    assert lookups(mounted) - before <= 5
