"""The CLI prints what artifactfs and its libraries log as its own messages look:
``warning: ...`` lines on stderr, INFO left out unless ``--verbose``; ``serve`` keeps its log.

The warning is a real one: a cache file damaged on disk, which a download finds by its
checksum, drops, and fetches again (cache/disk.py).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from helpers import make_tree

embedded_only = pytest.mark.parametrize("transport", ["embedded"], indirect=True)


def _ok(proc: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    return proc


@embedded_only
def test_a_library_warning_is_a_warning_line(run_cli, env: dict[str, str],
                                             tmp_path: Path) -> None:
    src = make_tree(tmp_path / "src", {"a.txt": b"some bytes to cache\n" * 50})
    pushed = _ok(run_cli("push", str(src), "proj/data", "--type", "dataset"))
    # quiet by default: making the store logs its schema's upgrade at INFO
    assert pushed.stderr == "", pushed.stderr
    _ok(run_cli("download", "proj/data:v0", "--root", str(tmp_path / "first")))
    cached = [p for p in Path(env["ARTIFACTFS_CACHE_DIR"]).rglob("*") if p.is_file()
              and p.stat().st_size > 1000]
    assert len(cached) == 1, cached
    with open(cached[0], "r+b") as f:  # one bit of the cached bytes rots
        f.seek(10)
        byte = f.read(1)
        f.seek(10)
        f.write(bytes([byte[0] ^ 1]))

    again = _ok(run_cli("download", "proj/data:v0", "--root", str(tmp_path / "second")))
    lines = again.stderr.strip().splitlines()
    assert len(lines) == 1, again.stderr
    assert lines[0].startswith("warning: cache file ") and "is damaged" in lines[0], lines
    assert (tmp_path / "second" / "a.txt").read_bytes() == b"some bytes to cache\n" * 50


@embedded_only
def test_verbose_shows_info_with_the_logger(run_cli, tmp_path: Path) -> None:
    """The first push makes the store, whose schema upgrade is logged at INFO."""
    src = make_tree(tmp_path / "src", {"b.txt": b"b"})
    pushed = _ok(run_cli("-v", "push", str(src), "proj/data", "--type", "dataset"))
    assert any(line.startswith("info: artifactfs.store.database: ")
               and "schema upgraded to revision" in line
               for line in pushed.stderr.splitlines()), pushed.stderr
    assert pushed.stdout.startswith("proj/data")
