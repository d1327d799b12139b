"""Settings a user gives in the environment or on the command line: read when they are
used, refused with one line naming the setting and what to write instead."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import make_tree
from test_cli import embedded_only, refused

from artifactfs.config import MIN_CACHE_SIZE, Config, parse_cache_size, parse_size
from artifactfs.core.errors import InvalidName


@pytest.mark.parametrize(("text", "size"), [
    ("512", 512), ("512B", 512), ("64M", 64 << 20), ("64MiB", 64 << 20), ("20G", 20 << 30),
    ("20GiB", 20 << 30), ("20gib", 20 << 30), ("1.5G", 3 << 29), (" 2T ", 2 << 40),
    ("1K", 1024), ("1KiB", 1024),
])
def test_sizes_are_powers_of_1024(text: str, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize(("text", "message"), [
    ("10GB", "ambiguous.*write 10G or 10GiB"), ("5mb", "ambiguous.*write 5M or 5MiB"),
    ("lots", "not a number"), ("", "not a number"), ("-1G", "not a number"),
    ("10 GiBs", "not a number"), ("1e9", "not a number"),
])
def test_unreadable_sizes_say_what_to_write(text: str, message: str) -> None:
    with pytest.raises(InvalidName, match=message):
        parse_size(text)


def test_a_cache_bound_names_its_variable_and_has_a_floor() -> None:
    assert parse_cache_size("1M") == MIN_CACHE_SIZE
    with pytest.raises(InvalidName, match=r"ARTIFACTFS_CACHE_SIZE='0' is less than .* 1M"):
        parse_cache_size("0")
    with pytest.raises(InvalidName, match=r"^ARTIFACTFS_CACHE_SIZE='10GB': .*ambiguous"):
        parse_cache_size("10GB")
    # read only when asked for: a Config with a bad bound is made, and says so when used
    config = Config.from_env({"HOME": "/nonexistent", "ARTIFACTFS_CACHE_SIZE": "lots"})
    with pytest.raises(InvalidName, match="ARTIFACTFS_CACHE_SIZE='lots'"):
        config.cache_size  # noqa: B018
    assert "lots" in repr(config)
    assert Config.from_env({"HOME": "/nonexistent"}).cache_size == 10 << 30


@embedded_only
@pytest.mark.parametrize("value", ["lots", "10GB", "0"])
def test_a_bad_cache_bound_stops_only_what_uses_the_cache(
    run_cli, tmp_path: Path, value: str
) -> None:
    bad = {"ARTIFACTFS_CACHE_SIZE": value}
    src = make_tree(tmp_path / "src", {"a.txt": b"a"})
    proc = run_cli("push", str(src), "p/n", "--type", "dataset", extra_env=bad)
    assert proc.returncode == 0, proc.stderr  # uploads need no cache
    assert run_cli("ls", "p/n", extra_env=bad).returncode == 0
    err = refused(run_cli("download", "p/n", "--root", str(tmp_path / "out"), extra_env=bad))
    assert f"ARTIFACTFS_CACHE_SIZE={value!r}" in err
    assert len(err.strip().splitlines()) == 1
    mountpoint = tmp_path / "mnt"
    mountpoint.mkdir()
    err = refused(run_cli("mount", str(mountpoint), extra_env=bad))
    assert f"ARTIFACTFS_CACHE_SIZE={value!r}" in err and "mount daemon" not in err
