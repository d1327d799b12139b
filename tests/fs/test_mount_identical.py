"""A mount's save whose result is identical to an older version makes no version: it says
``unchanged: PROJECT/NAME:vN``, moves the folder's alias (and ``--alias``) to that version,
and ``latest`` stays on the newest (docs/api.md, "Identical content"). On both transports."""

from __future__ import annotations

import os
from pathlib import Path

from fs.conftest import Mount
from fs.test_mount_tree import push
from fs.test_mount_writes import folder_of, read_tree, save, versions

from artifactfs.sdk import Api

BASE = {"a.txt": b"alpha\n", "sub/b.bin": os.urandom(5000)}


def test_a_save_identical_to_an_older_version_makes_none(
        api: Api, mounted: Mount, run_cli, tmp_path: Path) -> None:
    push(api, tmp_path, BASE, aliases=("prod",))  # vision/mnist:v0, latest and prod
    latest = folder_of(mounted)
    (latest / "extra.txt").write_bytes(b"for v1\n")
    assert save(run_cli, latest) == "vision/mnist:v1"

    # no change at all (a file added and removed again) never reaches the registry
    prod = folder_of(mounted, "prod")
    (prod / "tmp.txt").write_bytes(b"passing through\n")
    os.remove(prod / "tmp.txt")
    proc = run_cli("save", str(prod))
    assert proc.returncode == 1 and "nothing is staged" in proc.stderr

    # latest made identical to v0 again: the registry's answer is v0, and no v2 is made
    os.remove(latest / "extra.txt")
    proc = run_cli("save", str(latest), "--alias", "reverted")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "unchanged: vision/mnist:v0"
    assert "'latest' stays on the newest version" in proc.stderr
    assert versions(api) == ["v0", "v1"]
    assert api.artifact("vision/mnist:latest").version == "v1"
    assert sorted(api.artifact("vision/mnist:reverted").aliases) == ["prod", "reverted"]
    assert "nothing staged" in run_cli("status", str(latest)).stdout
    assert read_tree(folder_of(mounted, "v0")) == BASE
    assert mounted.alive()
