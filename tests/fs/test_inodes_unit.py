"""The inode table (fs/inodes.py): stable numbers, renames, forgotten paths. No mount."""

from __future__ import annotations

import pytest

from artifactfs.core.errors import NotFound
from artifactfs.core.manifest import ManifestEntry
from artifactfs.fs.inodes import (
    ROOT_INODE,
    FolderNodeKey,
    InodeTable,
    Kind,
    Node,
    ProjectKey,
    TypeKey,
)
from artifactfs.fs.staging import FolderKey

HELLO = "XUFAKrxLKna5cZ2REBfFkg=="
KEY = FolderKey("vision", "dataset", "mnist", "latest")


def _folder(table: InodeTable, version_id: str = "v-id", epoch: int = 0) -> Node:
    return table.node_for(
        FolderNodeKey(KEY, version_id, epoch),
        lambda i: Node(i, Kind.VERSION, "mnist:latest", "vision", "dataset", "latest"),
    )


def _entries(table: InodeTable, folder: Node, prefix: str, *names: str,
             files: tuple[str, ...] = ()) -> list[Node]:
    return table.entry_nodes(folder, prefix, names, None, lambda p: p in files)


def test_the_root_is_there_and_unknown_numbers_are_not_found():
    table = InodeTable()
    assert table.node(ROOT_INODE).kind is Kind.ROOT
    assert len(table) == 1
    with pytest.raises(NotFound):
        table.node(12345)


def test_a_key_keeps_its_inode_and_other_keys_get_new_ones():
    table = InodeTable()
    made: list[int] = []

    def project(i: int) -> Node:
        made.append(i)
        return Node(i, Kind.PROJECT, "vision", project="vision")

    first = table.node_for(ProjectKey("vision"), project)
    again = table.node_for(ProjectKey("vision"), project)
    assert again is first and made == [first.inode]  # made once
    kind = table.node_for(TypeKey("vision", "dataset"),
                          lambda i: Node(i, Kind.TYPE, "dataset", "vision", "dataset"))
    other = table.node_for(ProjectKey("audio"),
                           lambda i: Node(i, Kind.PROJECT, "audio", project="audio"))
    assert len({ROOT_INODE, first.inode, kind.inode, other.inode}) == 4
    assert table.node(kind.inode) is kind


def test_entries_keep_their_inodes_and_take_the_manifest_entry():
    table = InodeTable()
    folder = _folder(table)
    entry = ManifestEntry("a/x.txt", HELLO, 5)
    a, b = _entries(table, folder, "", "a", "b.txt", files=("b.txt",))
    assert (a.kind, b.kind) == (Kind.DIR, Kind.FILE)
    assert (a.path, a.folder, b.name) == ("a", folder.inode, "b.txt")
    (x,) = table.entry_nodes(folder, "a/", ["x.txt"], {"a/x.txt": entry}, lambda _: False)
    assert x.kind is Kind.FILE and x.entry is entry
    newer = ManifestEntry("a/x.txt", "rL0Y20zC+Fzt72VPzMSk2A==", 3)
    (same,) = table.entry_nodes(folder, "a/", ["x.txt"], {"a/x.txt": newer}, lambda _: False)
    assert same is x and x.entry is newer  # the same inode, the entry now known
    assert table.entry_inode(folder.inode, "a/x.txt") == x.inode


def test_the_same_path_in_two_folders_is_two_inodes():
    table = InodeTable()
    one, two = _folder(table, "v-one"), _folder(table, "v-two")
    assert one.inode != two.inode
    (a1,) = _entries(table, one, "", "f", files=("f",))
    (a2,) = _entries(table, two, "", "f", files=("f",))
    assert a1.inode != a2.inode
    table.moved(one.inode, "f", "g")  # a rename in one folder leaves the other alone
    assert table.entry_inode(two.inode, "f") == a2.inode and a2.path == "f"


def test_a_renamed_folder_takes_its_inodes_along():
    table = InodeTable()
    folder = _folder(table)
    (a,) = _entries(table, folder, "", "a")
    x, sub = _entries(table, folder, "a/", "x", "sub", files=("a/x",))
    (deep,) = _entries(table, folder, "a/sub/", "y", files=("a/sub/y",))
    (ab,) = _entries(table, folder, "", "ab")  # shares a prefix, is not below "a"
    table.moved(folder.inode, "a", "b")
    assert [n.path for n in (a, x, sub, deep)] == ["b", "b/x", "b/sub", "b/sub/y"]
    assert [n.name for n in (a, x, deep)] == ["b", "x", "y"]
    assert table.entry_inode(folder.inode, "b/sub/y") == deep.inode
    assert table.entry_inode(folder.inode, "a") is None
    assert ab.path == "ab" and table.entry_inode(folder.inode, "ab") == ab.inode
    (new_a,) = _entries(table, folder, "", "a")
    assert new_a.inode not in {a.inode, x.inode, sub.inode, deep.inode}


def test_a_rename_over_a_file_replaces_its_inode():
    table = InodeTable()
    folder = _folder(table)
    src, dst = _entries(table, folder, "", "src", "dst", files=("src", "dst"))
    table.moved(folder.inode, "src", "dst")
    assert table.entry_inode(folder.inode, "dst") == src.inode
    assert table.entry_inode(folder.inode, "src") is None
    assert table.node(dst.inode) is dst  # an open handle of the old file still finds it


def test_a_forgotten_path_gets_a_new_inode_and_the_old_node_stays():
    table = InodeTable()
    folder = _folder(table)
    (old,) = _entries(table, folder, "", "f", files=("f",))
    table.forget_path(folder.inode, "f")
    table.forget_path(folder.inode, "never-there")  # no error
    assert table.entry_inode(folder.inode, "f") is None
    (new,) = _entries(table, folder, "", "f", files=("f",))
    assert new.inode != old.inode
    assert table.node(old.inode) is old and any(n is old for n in table.nodes())


def test_rekey_keeps_the_inode_under_the_new_key():
    """A save: the folder shows a new version under the same inode, and its entries (keyed
    by the folder's inode) stay as they were."""
    table = InodeTable()
    folder = _folder(table, "v-old")
    (f,) = _entries(table, folder, "", "f", files=("f",))
    table.rekey(FolderNodeKey(KEY, "v-old", 0), FolderNodeKey(KEY, "v-new", 0))
    assert _folder(table, "v-new") is folder
    assert table.entry_inode(folder.inode, "f") == f.inode
    assert _folder(table, "v-old").inode != folder.inode  # the old key is free again
    assert _folder(table, "v-new", epoch=1).inode != folder.inode  # a discard: fresh
    with pytest.raises(KeyError):
        table.rekey(FolderNodeKey(KEY, "nothing", 0), FolderNodeKey(KEY, "other", 0))
