"""``-o`` lists as fstab and mount(8) write them, and key files: no mount, no registry."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from artifactfs.cli.mount_helper import source_option
from artifactfs.config import Config
from artifactfs.fs.fstab import (
    MountOptionError,
    apply_settings,
    fsname_for,
    parse_mount_options,
    read_key_file,
)


def test_options_map_to_the_mount_commands_parameters() -> None:
    parsed = parse_mount_options([
        "ro,allow_other,readahead=32,read-timeout=7.5,memory=128,nonempty,run=1a2b3c4d",
        "readahead=4,noexec,noatime,_netdev,nofail,noauto,x-systemd.automount,"
        "x-systemd.idle-timeout=60,comment=x-gvfs-show,defaults,keyfile=/k,registry=http://r",
    ])
    assert parsed.command == {
        "read_only": True, "allow_other": True, "readahead": 4,  # the later one wins
        "read_timeout": 7.5, "memory_mb": 128, "allow_non_empty": True, "run_id": "1a2b3c4d",
    }
    assert parsed.settings == {"keyfile": "/k", "registry": "http://r"}
    assert parsed.kernel_flags == ("noexec", "noatime")
    assert set(parsed.skipped) == {"_netdev", "nofail", "noauto", "x-systemd.automount",
                                   "x-systemd.idle-timeout=60", "comment=x-gvfs-show",
                                   "defaults"}
    assert parse_mount_options(["ro,rw"]).command == {"read_only": False}


@pytest.mark.parametrize(("text", "said"), [
    ("readahead=lots", "-o readahead=lots: readahead must be a whole number"),
    ("threads=-1", "threads must be a whole number, 0 or more"),
    ("alias_timeout=nan", "alias_timeout must be a number of seconds"),
    ("readahead", "-o readahead needs a value"),
    ("allow_other=yes", "allow_other takes no value"),
    ("noexec=1", "noexec takes no value"),
    ("keyfile=", "-o keyfile needs a value"),
    ("colour=blue", "unknown mount option 'colour'"),
])
def test_a_bad_option_is_named(text: str, said: str) -> None:
    with pytest.raises(MountOptionError, match=None) as caught:
        parse_mount_options([text])
    assert said in str(caught.value)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("name", ["key", "api_key", "api-key", "password", "token"])
def test_a_key_in_the_options_is_refused_without_repeating_it(name: str) -> None:
    with pytest.raises(MountOptionError) as caught:
        parse_mount_options([f"ro,{name}=s3cr3tvalue"])
    assert "keyfile=" in str(caught.value) and "chmod 600" in str(caught.value)
    assert "s3cr3tvalue" not in str(caught.value)


def test_sloppy_skips_what_it_does_not_know() -> None:
    parsed = parse_mount_options(["ro,colour=blue"], sloppy=True)
    assert parsed.command == {"read_only": True} and parsed.skipped == ("colour=blue",)


def test_a_private_key_file_is_read_and_others_are_refused(tmp_path: Path) -> None:
    key = tmp_path / "key"
    key.write_text("\n  afs_0123456789abcdef  \nsecond line ignored\n")
    key.chmod(0o600)
    assert read_key_file(key) == "afs_0123456789abcdef"
    key.chmod(0o400)
    assert read_key_file(key) == "afs_0123456789abcdef"
    for mode in (0o644, 0o640, 0o604, 0o620):
        key.chmod(mode)
        with pytest.raises(MountOptionError) as caught:
            read_key_file(key)
        assert f"(mode {mode:04o})" in str(caught.value)
        assert f"chmod 600 {key}" in str(caught.value)
        assert "afs_" not in str(caught.value)
    link = tmp_path / "link"
    link.symlink_to(key)
    with pytest.raises(MountOptionError, match="may be read by others"):
        read_key_file(link)  # what the link leads to is what is checked
    key.chmod(0o600)
    assert read_key_file(link) == "afs_0123456789abcdef"
    empty = tmp_path / "empty"
    empty.write_text(" \n")
    empty.chmod(0o600)
    with pytest.raises(MountOptionError, match="is empty"):
        read_key_file(empty)
    with pytest.raises(MountOptionError, match="not a regular file"):
        read_key_file(tmp_path)
    with pytest.raises(MountOptionError, match="cannot open it: No such file"):
        read_key_file(tmp_path / "missing")


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root, to give the file to another user")
def test_a_key_file_of_another_user_is_refused(tmp_path: Path) -> None:
    key = tmp_path / "key"
    key.write_text("afs_x\n")
    key.chmod(0o600)
    os.chown(key, 65534, 65534)
    # root reads any file; still, a key file owned by nobody is not root's key
    with pytest.raises(MountOptionError, match="owned by uid 65534"):
        read_key_file(key)


def test_settings_take_the_place_of_the_environment(tmp_path: Path) -> None:
    config = Config.from_env({"HOME": str(tmp_path), "ARTIFACTFS_DB": "sqlite:////x.db",
                              "ARTIFACTFS_BLOBS": "file:///x", "ARTIFACTFS_API_KEY": "env"})
    key = tmp_path / "key"
    key.write_text("afs_fromfile\n")
    key.chmod(0o600)
    served = apply_settings(config, {"registry": "https://reg:8080", "keyfile": str(key),
                                     "entity": "team", "cache_size": "2G",
                                     "cache_dir": "/var/cache/afs"})
    assert (served.registry_url, served.api_key, served.entity) == (
        "https://reg:8080", "afs_fromfile", "team")
    assert served.cache_size == 2 << 30 and served.cache_dir == Path("/var/cache/afs")
    assert "afs_fromfile" not in repr(served)
    local = apply_settings(config, {"store": "/srv/store"})
    assert (local.store_dir, local.db_url, local.blobs_url) == (Path("/srv/store"), None, None)
    for settings, said in [
        ({"registry": "https://r", "store": "/s"}, "name two registries"),
        ({"registry": "reg:8080"}, "not an http:// or https:// URL"),
        ({"store": "relative/store"}, "give an absolute path"),
        ({"entity": "Bad Name!"}, "-o entity"),
        ({"cache_size": "10GB"}, "-o cache_size='10GB'"),
    ]:
        with pytest.raises(ValueError, match=None) as caught:
            apply_settings(config, settings)
        assert said in str(caught.value)


def test_the_mount_table_shows_a_source_without_its_password() -> None:
    assert fsname_for("https://reg.example:8080/x") == "https://reg.example:8080/x"
    assert fsname_for("https://me:pw@reg.example/x") == "https://reg.example/x"
    assert fsname_for("/srv/artifacts") == "/srv/artifacts"
    for unusable in ("/srv/a,b", "/srv/with space", "/srv/é", "", "a\\b"):
        assert fsname_for(unusable) is None
    assert parse_mount_options(["fsname=team"]).fsname == "team"
    with pytest.raises(MountOptionError, match="fsname must be printable ASCII"):
        parse_mount_options(["fsname=a\\b"])


def test_the_source_names_a_server_a_store_or_nothing() -> None:
    assert source_option("https://reg:8080") == "registry=https://reg:8080"
    assert source_option("/srv/artifacts") == "store=/srv/artifacts"
    assert source_option("artifactfs") is None


DOCS = Path(__file__).resolve().parents[2] / "docs" / "mount.md"


def _doc_blocks(lang: str) -> list[str]:
    text = DOCS.read_text().split("## fstab, `mount -t fuse.artifactfs` and systemd", 1)[1]
    text = text.split("\n## ", 1)[0]
    return re.findall(rf"^```{lang}\n(.*?)^```", text, re.MULTILINE | re.DOTALL)


def test_the_docs_fstab_lines_and_units_hold_options_the_helper_takes() -> None:
    fstab = [line.split() for block in _doc_blocks("fstab")
             for line in block.splitlines() if line.strip() and not line.startswith("#")
             and "fuse.artifactfs" in line]
    units = _doc_blocks("ini")
    assert len(fstab) == 2 and len(units) == 2
    options = [fields[3] for fields in fstab if fields[2] == "fuse.artifactfs"]
    options += re.findall(r"^Options=(.*)$", "".join(units), re.MULTILINE)
    assert len(options) == 3
    for text in options:
        parsed = parse_mount_options([text])  # unknown or malformed would raise
        assert set(parsed.skipped) <= {"_netdev", "nofail", "noauto", "x-systemd.automount",
                                       "x-systemd.idle-timeout=600"}


def test_the_docs_systemd_units_verify(tmp_path: Path) -> None:
    assert shutil.which("systemd-analyze"), "Debian's systemd package: run make system-deps"
    paths = []
    for unit in _doc_blocks("ini"):
        name = unit.splitlines()[0].removeprefix("# /etc/systemd/system/")
        (tmp_path / name).write_text(unit)
        paths.append(str(tmp_path / name))
    proc = subprocess.run(["systemd-analyze", "verify", *paths], capture_output=True,
                          text=True, timeout=60)
    # a unit whose name does not match Where= fails; an unknown setting only warns
    assert proc.returncode == 0, proc.stderr
    assert "Unknown" not in proc.stderr and "ignoring" not in proc.stderr, proc.stderr
