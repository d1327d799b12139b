"""What ``Artifact.add(obj, name)`` stores is ordinary files, which a mount shows and any tool
reads: the table as W&B's JSON, the array as an ``.npy`` numpy loads, the value as JSON."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from fs.conftest import Mount

from artifactfs import Api, Artifact, Table

pytestmark = pytest.mark.mount


@pytest.mark.parametrize("transport", ["embedded"], indirect=True)
def test_a_mount_shows_added_objects_as_files(api: Api, mounted: Mount) -> None:
    table = Table(columns=["id", "label"], data=[[1, "cat"], [2, "dog"]])
    array = np.linspace(0, 1, 50, dtype=np.float64).reshape(5, 10)
    art = Artifact("objects", type="dataset", api=api)
    art.add(table, "preds")
    art.add(array, "emb")
    art.add({"lr": 0.01}, "config")
    art.save(project="vision")

    version = mounted.path / "vision/dataset/objects:v0"
    assert sorted(os.listdir(version)) == ["config.json", "emb.npy", "preds.table.json"]
    shown = json.loads((version / "preds.table.json").read_text())
    assert shown["_type"] == "table" and shown["data"] == [[1, "cat"], [2, "dog"]]
    assert (np.load(version / "emb.npy") == array).all()
    assert json.loads((version / "config.json").read_text()) == {"lr": 0.01}
    assert (os.getxattr(version / "emb.npy", "user.artifactfs.digest").decode()
            == art.manifest["emb.npy"].digest)
