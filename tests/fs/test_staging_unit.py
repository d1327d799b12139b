"""Staging replay (fs/staging.py): a journal written, the daemon gone without a goodbye,
StagedFolder.load rebuilds the same state; a torn last line is dropped. No mount."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from artifactfs.core.manifest import Manifest, ManifestEntry
from artifactfs.core.records import VersionInfo
from artifactfs.fs.staging import FolderKey, StagedFile, StagedFolder, Staging

HELLO = "XUFAKrxLKna5cZ2REBfFkg=="
KEY = FolderKey("vision", "dataset", "mnist", "latest")
BASE = Manifest([ManifestEntry("a.txt", HELLO, 5), ManifestEntry("d/b.txt", HELLO, 5),
                 ManifestEntry("d/c.txt", HELLO, 5), ManifestEntry("keep.txt", HELLO, 5)])


def _base_info() -> VersionInfo:
    return VersionInfo(
        id="ver-1", entity="local", project="vision", name="mnist", type="dataset", index=0,
        state="COMMITTED", digest="0" * 32, size=20, file_count=4, created_at=1.0,
        updated_at=1.0, aliases=("latest",),
    )


def _write(folder: StagedFolder, path: str, data: bytes) -> StagedFile:
    """What a write through the mount does: a new upper file, its bytes, then ``put``."""
    ref = folder.new_upper()
    folder.upper_path(ref).write_bytes(data)
    folder.put(path, ref)
    folder.resized(ref, len(data))
    return ref


def _state(folder: StagedFolder) -> dict[str, Any]:
    """What the folder shows, and what a save would send (a staged file by its upper file
    and size: its times come from the upper file either way)."""
    files = {p: (r.upper, r.size) if isinstance(r, StagedFile) else r
             for p, r in folder.files.items()}
    return {
        "files": files, "dirs": {d: sorted(n) for d, n in folder.dirs.items()},
        "meta": dict(folder.meta), "changes": folder.changes(), "base": folder.base,
        "session": folder.session, "commit_keys": list(folder.commit_keys),
        "modes": {p: folder.mode(p) for p in folder.files},
    }


def _staged_changes(root: Path) -> StagedFolder:
    folder = StagedFolder.begin(root, KEY, _base_info(), BASE)
    _write(folder, "new.txt", b"new bytes\n")
    _write(folder, "d/b.txt", b"changed\n")  # a base file, modified
    folder.remove("a.txt")
    folder.mkdir("e")
    folder.mkdir("e/f")
    _write(folder, "e/f/deep.bin", b"\x00\x01" * 100)
    folder.rename("d", "moved")  # a folder, with a staged and a base file in it
    folder.rename("new.txt", "e/renamed.txt")
    folder.exchange("keep.txt", "moved/c.txt")
    folder.symlink("link", "e/renamed.txt")
    folder.set_meta("e/renamed.txt", mode=0o600, xattr=("user.note", b"\xffbytes"))
    folder.set_meta("moved", times=(1_000_000_000, 2_000_000_000))
    folder.mkdir("gone")
    folder.rmdir("gone")
    folder.note_commit("commit-key-1")
    return folder


def test_a_journal_replays_to_the_same_state(tmp_path: Path):
    root = tmp_path / "staging" / "m"
    before = _staged_changes(root)
    expected = _state(before)
    before.close()  # the daemon dies: nothing but the journal's descriptor goes
    del before
    after = StagedFolder.load(root, BASE)
    try:
        assert _state(after) == expected
        assert after.key == KEY
        assert (after.upper / after.files["e/renamed.txt"].upper).read_bytes() == b"new bytes\n"
        # numbering goes on after the highest upper file: none is handed out twice
        uppers = {r.upper for r in after.files.values() if isinstance(r, StagedFile)}
        assert after.new_upper().upper not in uppers
    finally:
        after.close()


def test_changes_after_a_replay_replay_too(tmp_path: Path):
    root = tmp_path / "staging" / "m"
    first = _staged_changes(root)
    first.close()
    second = StagedFolder.load(root, BASE)
    _write(second, "later.txt", b"after the restart\n")
    second.remove("keep.txt")
    expected = _state(second)
    second.close()
    third = StagedFolder.load(root, BASE)
    try:
        assert _state(third) == expected
    finally:
        third.close()


def test_a_torn_last_line_is_dropped_and_later_changes_still_replay(tmp_path: Path):
    """A daemon killed in the middle of a journal write leaves half a line: the change it
    began never happened. The next daemon must replay all before it, and the changes it
    makes itself must replay after another restart (not be glued to the torn half)."""
    root = tmp_path / "staging" / "m"
    folder = _staged_changes(root)
    expected = _state(folder)
    folder.close()
    with open(root / "journal.jsonl", "ab") as journal:
        journal.write(b'{"op":"rm","path":"e/ren')  # torn: no end, no newline
    loaded = StagedFolder.load(root, BASE)
    assert _state(loaded) == expected
    _write(loaded, "after.txt", b"written after the crash\n")
    expected = _state(loaded)
    loaded.close()
    again = StagedFolder.load(root, BASE)
    try:
        assert _state(again) == expected
        assert "after.txt" in again.files
    finally:
        again.close()


def test_staging_finds_what_a_previous_daemon_left(tmp_path: Path):
    staging = Staging(tmp_path / "staging")
    folder = StagedFolder.begin(staging.path_for(KEY), KEY, _base_info(), BASE)
    _write(folder, "x.txt", b"x")
    folder.close()
    other = FolderKey("vision", "model", "new", "latest")  # a collection not saved yet
    StagedFolder.begin(staging.path_for(other), other, None, Manifest()).close()
    (staging.root / "junk" / "t" / "n:a").mkdir(parents=True)
    (staging.root / "junk" / "t" / "n:a" / "journal.jsonl").write_bytes(b"not json\n")
    found = {key: (base.id if base else None, path)
             for key, base, path in Staging(tmp_path / "staging").on_disk()}
    assert found == {KEY: ("ver-1", staging.path_for(KEY)), other: (None, staging.path_for(other))}
    assert os.stat(staging.root).st_mode & 0o077 == 0  # no one else's to read
