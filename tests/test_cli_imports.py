"""What a command loads is what it needs: ``artifactfs ls`` on an embedded store reads SQLite
and nothing else, so it loads neither Alembic (only an upgrade runs migrations), boto3 (only
blobs in a bucket), httpx (only a server) nor the server or the mount's libraries. Each of
them costs a command's start tens to hundreds of milliseconds (``python -X importtime``).
Checked in a fresh interpreter that runs the real command, then lists ``sys.modules``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from artifactfs.core.digests import md5_b64
from artifactfs.core.manifest import Manifest, ManifestEntry
from artifactfs.store import Store

_NOT_FOR_AN_EMBEDDED_LS = ("alembic", "boto3", "botocore", "s3transfer", "httpx", "httpcore",
                           "uvicorn", "starlette", "psycopg", "pyfuse3", "trio", "tqdm",
                           "artifactfs.registry.http", "artifactfs.store.s3",
                           "artifactfs.server")

# the command run as the installed entry point runs it, then what it loaded written out
_RUN = """\
import json, sys
from artifactfs.cli.main import cli
try:
    cli.main(sys.argv[2:], prog_name="artifactfs", standalone_mode=False)
finally:
    with open(sys.argv[1], "w") as out:
        json.dump(sorted(sys.modules), out)
"""


def _loaded_by(tmp_path: Path, store: Path, *args: str) -> tuple[str, list[str]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ARTIFACTFS_")}
    env.update(ARTIFACTFS_STORE=str(store), ARTIFACTFS_CACHE_DIR=str(tmp_path / "cache"),
               HOME=str(tmp_path / "home"))
    modules = tmp_path / "modules.json"
    done = subprocess.run([sys.executable, "-c", _RUN, str(modules), *args], env=env,
                          capture_output=True, text=True, timeout=60, check=True)
    return done.stdout, json.loads(modules.read_text())


def test_an_embedded_ls_loads_only_what_it_needs(tmp_path: Path) -> None:
    store = Store(tmp_path / "store")
    data = b"some bytes\n"
    store.blobs.put_file(_write(tmp_path / "a.txt", data), md5_b64(data))
    store.commit(entity="local", project="proj", name="data", type_="dataset",
                 manifest=Manifest([ManifestEntry("a.txt", md5_b64(data), len(data))]))
    store.db.close()
    # each form of ls, with what it must print: the command ran, and read the store
    for args, shown in ((["ls", "proj"], "data "), (["ls", "proj/data"], "v0 "),
                        (["ls", "proj/data:latest"], "a.txt ")):
        out, loaded = _loaded_by(tmp_path, tmp_path / "store", *args)
        assert shown in out, out
        assert "sqlalchemy" in loaded  # and read the store through the real path
        bad = [m for m in loaded
               if any(m == name or m.startswith(name + ".") for name in _NOT_FOR_AN_EMBEDDED_LS)]
        assert not bad, f"artifactfs {' '.join(args)} loaded {bad}"


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path
