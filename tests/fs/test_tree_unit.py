"""The tree FUSE asks (fs/tree.py) on the real embedded registry, with no mount: lookups,
listings, alias folders moving to new inodes, staging begun, saved and ended."""

from __future__ import annotations

import errno
import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import trio
from fs.test_answers_unit import HandOff, commit

from artifactfs.core.errors import NotFound
from artifactfs.fs.staging import Staging
from artifactfs.fs.tree import ROOT_INODE, Kind, Node, Tree
from artifactfs.registry import LocalRegistry

FILES = {"a.txt": b"a", "d/b.txt": b"b", "d/e/c.txt": b"c"}


async def local(func: Callable[..., Any], *args: Any) -> Any:
    return await trio.to_thread.run_sync(functools.partial(func, *args))



def make_tree(registry: LocalRegistry, tmp_path: Path, *, ttl: float = 3600,
              read_only: bool = False) -> Tree:
    return Tree(registry, "local", HandOff(), ttl, Staging(tmp_path / "staging"), local,
                read_only=read_only)


async def walk(tree: Tree, path: str) -> Node:
    node = tree.node(ROOT_INODE)
    for name in path.split("/"):
        node = await tree.lookup(node, name)
    return node


async def test_lookups_from_the_root_to_a_file(registry, tmp_path):
    commit(registry, tmp_path, "vision", "mnist", "dataset", FILES, aliases=("best",))
    tree = make_tree(registry, tmp_path)
    file = await walk(tree, "vision/dataset/mnist:v0/d/e/c.txt")
    assert (file.kind, file.path, file.name) == (Kind.FILE, "d/e/c.txt", "c.txt")
    assert file.entry is not None and file.entry.size == 1
    folder = tree.folder_of(file)
    assert folder.kind is Kind.VERSION and not folder.is_alias_folder
    assert (await walk(tree, "vision/dataset/mnist:v0/d/e/c.txt")) is file  # same inode
    assert (await walk(tree, "vision/dataset/mnist:best")).is_alias_folder
    for missing in ("nope", "vision/model", "vision/dataset/mnist", "vision/dataset/mnist:v9",
                    "vision/dataset/bad name:v0", "vision/dataset/mnist:v0/zzz"):
        with pytest.raises(NotFound):
            await walk(tree, missing)
    # the folders looked into (the root, d, d/e), each once; never the whole manifest
    assert (tree.folder_fetches, tree.manifest_fetches) == (3, 0)


async def test_children_list_in_a_stable_order(registry, tmp_path):
    commit(registry, tmp_path, "vision", "mnist", "dataset", FILES, aliases=("best",))
    commit(registry, tmp_path, "vision", "mnist", "dataset", {"a.txt": b"a2"})
    tree = make_tree(registry, tmp_path)
    root = tree.node(ROOT_INODE)
    assert [n.name for n in await tree.children(root)] == ["vision"]
    kind = await walk(tree, "vision/dataset")
    names = [n.name for n in await tree.children(kind)]
    assert names == ["mnist:best", "mnist:latest", "mnist:v0", "mnist:v1"]
    v0 = await walk(tree, "vision/dataset/mnist:v0")
    listed = await tree.children(v0)
    assert [(n.name, n.kind) for n in listed] == [("a.txt", Kind.FILE), ("d", Kind.DIR)]
    assert [n.inode for n in await tree.children(v0)] == [n.inode for n in listed]


async def test_an_alias_that_moved_is_a_new_inode_and_versions_keep_theirs(registry, tmp_path):
    commit(registry, tmp_path, "vision", "mnist", "dataset", FILES)
    tree = make_tree(registry, tmp_path)
    latest = await walk(tree, "vision/dataset/mnist:latest")
    v0 = await walk(tree, "vision/dataset/mnist:v0")
    assert latest.inode != v0.inode
    commit(registry, tmp_path, "vision", "mnist", "dataset", {"a.txt": b"new"})
    moved = await walk(tree, "vision/dataset/mnist:latest")  # an alias is asked every time
    assert moved.inode != latest.inode and moved.version and moved.version.version == "v1"
    assert (await walk(tree, "vision/dataset/mnist:v0")).inode == v0.inode


async def test_a_save_keeps_the_folders_inodes_and_shows_the_new_version(registry, tmp_path):
    commit(registry, tmp_path, "vision", "mnist", "dataset", FILES)
    tree = make_tree(registry, tmp_path)
    folder = await walk(tree, "vision/dataset/mnist:latest")
    a = await walk(tree, "vision/dataset/mnist:latest/a.txt")
    e = await walk(tree, "vision/dataset/mnist:latest/d/e")
    staged = await tree.begin_staging(folder)
    assert folder.staged is staged and (await tree.entry(folder, "a.txt")) is staged.files["a.txt"]
    assert tree.manifest_fetches == 1  # staging builds on the base's whole manifest
    staged.remove("d/e/c.txt")  # d/e is now empty: a version keeps no empty folder
    info, manifest = commit(registry, tmp_path, "vision", "mnist", "dataset",
                            {"a.txt": b"a", "d/b.txt": b"b"}, aliases=("latest",))
    cleanup = tree.saved(folder, info, manifest)
    await local(cleanup)
    assert folder.staged is None and folder.version == info
    again = await walk(tree, "vision/dataset/mnist:latest")
    assert again.inode == folder.inode
    assert (await walk(tree, "vision/dataset/mnist:latest/a.txt")).inode == a.inode
    assert a.version == info and a.entry == manifest.get("a.txt")
    with pytest.raises(NotFound):
        await walk(tree, "vision/dataset/mnist:latest/d/e")
    assert (await walk(tree, "vision/dataset/mnist:v1")).version.to_dict() == info.to_dict()
    assert tree.manifest_fetches == 1  # the saved manifest was not fetched again
    assert e.inode not in [n.inode for n in await tree.children(
        await walk(tree, "vision/dataset/mnist:latest/d"))]


async def test_ended_staging_gives_the_folder_fresh_inodes(registry, tmp_path):
    commit(registry, tmp_path, "vision", "mnist", "dataset", FILES)
    tree = make_tree(registry, tmp_path)
    folder = await walk(tree, "vision/dataset/mnist:latest")
    await tree.begin_staging(folder)
    await local(tree.end_staging(folder))
    assert folder.staged is None
    assert (await walk(tree, "vision/dataset/mnist:latest")).inode != folder.inode


async def test_a_read_only_tree_refuses_to_stage(registry, tmp_path):
    commit(registry, tmp_path, "vision", "mnist", "dataset", FILES)
    tree = make_tree(registry, tmp_path, read_only=True)
    folder = await walk(tree, "vision/dataset/mnist:latest")
    with pytest.raises(OSError) as info:
        await tree.begin_staging(folder)
    assert info.value.errno == errno.EROFS
    kind = await walk(tree, "vision/dataset")
    with pytest.raises(OSError):
        await tree.new_collection(kind, "other:latest")
