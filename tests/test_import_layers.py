"""The layers above the store do not load it: a client of a server (the HTTP registry, the
SDK, the content cache, the mount's staging) has no SQLite database and no blob folder of its
own, and loading them would cost every command's start and tie those layers to the store's
internals. Checked in a fresh interpreter, where nothing else has imported them already."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

_FORBIDDEN = ("sqlite3", "artifactfs.store")


@pytest.mark.parametrize("modules", [
    ["artifactfs.registry.http"],
    ["artifactfs.sdk"],
    ["artifactfs.cache", "artifactfs.fs.staging", "artifactfs.content"],
])
def test_client_layers_do_not_load_the_store(modules: list[str]) -> None:
    code = (
        "import importlib, json, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                         text=True, timeout=60).stdout
    loaded = json.loads(out)
    bad = [m for m in loaded if any(m == f or m.startswith(f + ".") for f in _FORBIDDEN)]
    assert not bad, f"importing {modules} loaded {bad}"
