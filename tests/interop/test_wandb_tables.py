"""``Artifact.add(Table)`` writes the bytes wandb writes, and wandb reads them (wandb 0.31.0,
offline, in its own virtual environment: tests/interop/conftest.py).

For the same columns and rows, ``wandb.Artifact.add(wandb.Table(...), name)`` and
``artifactfs.Artifact.add(artifactfs.Table(...), name)`` must give the same entry path and
the same file, byte for byte (keys, column types, their order); and ``wandb.Table.from_json``
must read artifactfs's file back to the same columns and rows. Columns of one kind each
(numbers, strings, booleans, all None), and, as wandb's ``allow_mixed_types`` writes them,
columns of several kinds and of lists and dicts.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

from artifactfs import Artifact, Table

SIDE = Path(__file__).with_name("wandb_tables_side.py")

TABLES = [
    {"name": "preds", "columns": ["id", "label", "score", "ok", "none"], "mixed": False,
     "data": [[1, "cat", 0.5, True, None], [2, None, None, False, None],
              [3, "dög", 1e-9, True, None]]},
    {"name": "mixed/kinds", "columns": ["a", "b", "c"], "mixed": True,
     "data": [[[1, 2], 3, {"k": [1]}], [{"k": 1}, "y", None]]},
    {"name": "empty", "columns": ["x"], "mixed": False, "data": []},
]


def wandb_side(wandb_python: Path, tmp_path: Path, *args: str) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WANDB_", "ARTIFACTFS_"))}
    home = tmp_path / "wandb-home"
    env.update(WANDB_MODE="offline", WANDB_SILENT="true", HOME=str(home),
               WANDB_DATA_DIR=str(home / "data"), WANDB_CACHE_DIR=str(home / "cache"),
               WANDB_CONFIG_DIR=str(home / "config"), WANDB_DIR=str(home / "runs"))
    env.pop("PYTHONPATH", None)  # wandb's python must not import this checkout
    proc = subprocess.run([str(wandb_python), str(SIDE), *args], env=env, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    result: dict[str, Any] = json.loads(proc.stdout)
    return result


def test_tables_are_written_as_wandb_writes_them_and_read_by_wandb(
    wandb_python: Path, tmp_path: Path
) -> None:
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps(TABLES))
    theirs = tmp_path / "wandb"
    (theirs / "mixed").mkdir(parents=True)
    paths = wandb_side(wandb_python, tmp_path, "write", str(spec), str(theirs))

    ours = Artifact("tables", type="dataset")
    for item in TABLES:
        entry = ours.add(Table(columns=item["columns"], data=item["data"]), item["name"])
        assert entry.path == paths[item["name"]]
        mine = Path(ours.get_entry(entry.path).local_path or "").read_bytes()
        assert mine == (theirs / entry.path).read_bytes(), entry.path
        # and artifactfs reads wandb's file back as the table it wrote
        assert Table.from_json(json.loads((theirs / entry.path).read_bytes())) == Table(
            columns=item["columns"], data=item["data"])

    files = [ours.get_entry(p).local_path or "" for p in paths.values()]
    read = wandb_side(wandb_python, tmp_path, "read", *files)
    for item, file in zip(TABLES, files, strict=True):
        assert read[file] == {"columns": item["columns"], "data": item["data"]}
