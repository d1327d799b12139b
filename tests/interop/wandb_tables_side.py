"""The wandb side of tests/interop/test_wandb_tables.py: run by the wandb venv's python, never
imported by pytest.

    python wandb_tables_side.py write SPEC.json OUT   tables added to a wandb.Artifact
    python wandb_tables_side.py read FILE...          table files read by wandb.Table

``write``: SPEC is a list of ``{"name", "columns", "data", "mixed"}``; each is added with
``wandb.Artifact.add(wandb.Table(columns, data, allow_mixed_types=mixed), name)`` and the
file wandb wrote for it copied to ``OUT/<entry path>``. Prints name -> entry path.

``read``: each file's JSON given to ``wandb.Table.from_json`` (what ``Artifact.get`` calls
once it has found the entry); prints path -> ``{"columns", "data"}`` of the table wandb made.
Offline: nothing here needs a server or a run.
"""

from __future__ import annotations

import json
import os
import shutil
import sys

import wandb


def write(spec: list[dict], out: str) -> dict[str, str]:
    art = wandb.Artifact("tables", "dataset")
    written = {}
    for item in spec:
        table = wandb.Table(columns=item["columns"], data=item["data"],
                            allow_mixed_types=item["mixed"])
        entry = art.add(table, item["name"])
        shutil.copyfile(entry.local_path, os.path.join(out, entry.path))
        written[item["name"]] = entry.path
    return written


def read(paths: list[str]) -> dict[str, dict]:
    out = {}
    for path in paths:
        with open(path) as f:
            table = wandb.Table.from_json(json.load(f), None)
        out[path] = {"columns": table.columns, "data": table.data}
    return out


if __name__ == "__main__":
    command = sys.argv[1]
    if command == "write":
        with open(sys.argv[2]) as f:
            result = write(json.load(f), sys.argv[3])
    else:
        result = read(sys.argv[2:])
    print(json.dumps(result))
