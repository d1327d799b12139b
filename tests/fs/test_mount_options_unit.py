"""The mount's defaults are written once, in MountOptions: the command, its help and the
daemon's options all follow them. No mount needed."""

from __future__ import annotations

import dataclasses
import inspect
import re
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from artifactfs.cli.mount import mount, mount_options
from artifactfs.fs.options import MountOptions, option_default

# command option -> the MountOptions field it sets, and how its unit converts
_FIELDS = {
    "alias_timeout": ("alias_timeout", 1),
    "read_timeout": ("read_timeout", 1),
    "threads": ("threads", 1),
    "memory_mb": ("memory_bytes", 1 << 20),
    "readahead": ("readahead_chunks", 1),
    "request_size": ("request_chunks", 1),
    "prefetch_files": ("prefetch_files", 1),
    "kernel_readahead": ("kernel_readahead_kib", 1),
}


def _cli_defaults() -> dict[str, object]:
    """The defaults the command's parameters carry, by the names ``mount_options`` takes."""
    wanted = set(inspect.signature(mount_options).parameters) - {"mountpoint", "staging_dir"}
    ctx = click.Context(mount)
    return {p.name: p.get_default(ctx) for p in mount.params if p.name in wanted}


def test_every_tunable_option_takes_its_default_from_mount_options():
    defaults = _cli_defaults()
    for option, (field, unit) in _FIELDS.items():
        assert defaults[option] * unit == option_default(field), option


def test_the_commands_defaults_build_mount_options_own_defaults(tmp_path: Path):
    built = mount_options(tmp_path / "mnt", tmp_path / "staging", **_cli_defaults())
    assert built == MountOptions(tmp_path / "mnt", tmp_path / "staging")


def test_help_shows_the_defaults_mount_options_holds():
    result = CliRunner().invoke(mount, ["--help"], terminal_width=200)
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())  # help lines wrap anywhere
    for option, (field, unit) in _FIELDS.items():
        flag = "--" + {"memory_mb": "memory"}.get(option, option).replace("_", "-")
        shown = re.search(re.escape(flag) + r" [A-Z]+ .*?\[default: ([0-9.]+)\]", text)
        assert shown, f"{flag} shows no default"
        assert float(shown.group(1)) * unit == option_default(field), flag


def test_every_mount_options_default_is_known_and_unknown_names_fail():
    names = {f.name for f in dataclasses.fields(MountOptions)}
    assert {field for field, _ in _FIELDS.values()} <= names
    with pytest.raises(KeyError):
        option_default("mountpoint")  # no default: the command must always give it
    with pytest.raises(KeyError):
        option_default("no_such_option")
