"""``Artifact.add(obj, name)`` and ``Artifact.get(name)`` (issue 19): tables in W&B's JSON
form, numpy arrays and JSON values, stored as ordinary files, on both transports.

The table JSON wandb reads is checked key by key against what wandb's ``Table.to_json``
writes for an artifact (wandb/sdk/data_types/table.py, ``_dtypes.py`` for the column types);
a table written by wandb (below, as wandb dumps it) is read back.
"""

from __future__ import annotations

import datetime
import json
from pathlib import Path

import numpy as np
import pytest
from test_cli import seed

from artifactfs import Api, Artifact, InvalidManifest, Table
from artifactfs.core.chunks import CHUNK_SIZE

embedded_only = pytest.mark.parametrize("transport", ["embedded"], indirect=True)

# What wandb 0.2x writes for artifact.add(wandb.Table(columns=["id", "label", "score",
# "ok", "img"], data=[[1, "cat", 0.5, True, <a wandb.Image>], [2, "dog", None, False, ...]]),
# "preds"), trimmed to one media cell: sorted keys, the columns' W&B types
WANDB_TABLE = {
    "_type": "table",
    "column_types": {"params": {"type_map": {
        "id": {"params": {"allowed_types": [{"wb_type": "none"}, {"wb_type": "number"}]},
               "wb_type": "union"},
        "label": {"params": {"allowed_types": [{"wb_type": "none"}, {"wb_type": "string"}]},
                  "wb_type": "union"},
        "img": {"params": {"allowed_types": [{"wb_type": "image-file"}, {"wb_type": "none"}]},
                "wb_type": "union"},
    }}, "wb_type": "typedDict"},
    "columns": ["id", "label", "img"],
    "data": [[1, "cat", {"_type": "image-file", "path": "media/images/a.png", "sha256": "ab",
                         "size": 10, "width": 2, "height": 2}],
             [2, None, None]],
    "log_mode": "IMMUTABLE",
    "ncols": 3,
    "nrows": 2,
}


def saved(api: Api, art: Artifact) -> Artifact:
    art.save(project="vision")
    return api.artifact(f"vision/{art.collection_name}:latest")


def test_add_and_get_round_trip_every_kind(api: Api, tmp_path: Path) -> None:
    table = Table(columns=["id", "label", "score", "ok"],
                  data=[[1, "cat", 0.5, True], [2, "dog", None, False]])
    array = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    value = {"lr": 0.001, "layers": [64, 32], "name": "résumé", "none": None}
    art = Artifact("objects", type="dataset", api=api)
    entries = [art.add(table, "preds"), art.add(array, "emb"), art.add(value, "config"),
               art.add([1, 2, 3], "counts.json"), art.add("text", "note")]
    assert [e.path for e in entries] == ["preds.table.json", "emb.npy", "config.json",
                                         "counts.json", "note.json"]
    # a draft reads back what was added
    assert art.get("preds") == table and art.get("config") == value

    got = saved(api, art)
    assert sorted(got.manifest.entries) == ["config.json", "counts.json", "emb.npy",
                                            "note.json", "preds.table.json"]
    back = got.get("preds")
    assert isinstance(back, Table) and back == table
    assert back.columns == ["id", "label", "score", "ok"]
    assert back.get_column("score") == [0.5, None]
    emb = got.get("emb")
    assert emb.dtype == np.float32 and emb.shape == (2, 3, 4) and (emb == array).all()
    assert got.get("config") == value
    assert got.get("counts") == [1, 2, 3] == got.get("counts.json")
    assert got.get("note") == "text"
    assert got.get("preds.table.json") == table  # the whole name works too
    assert got.get("nothing") is None  # as W&B's get

    # ordinary files: downloaded as they are, readable by any tool
    root = Path(got.download(str(tmp_path / "out")))
    assert np.load(root / "emb.npy").tolist() == array.tolist()
    assert json.loads((root / "config.json").read_text()) == value


def test_the_table_json_is_wandbs() -> None:
    art = Artifact("t", type="dataset")
    art.add(Table(columns=["a", "b", "c", "d", "e", "f"],
                  data=[[1, "x", True, None, [1, 2], 3], [2.5, None, False, None, {"k": 1}, "y"]]),
            "t")
    raw = art._local["t.table.json"].read_bytes()
    stored = json.loads(raw)
    assert raw == json.dumps(stored, sort_keys=True).encode()  # wandb dumps with sorted keys
    assert list(stored) == ["_type", "column_types", "columns", "data", "log_mode", "ncols",
                            "nrows"]
    assert (stored["_type"], stored["ncols"], stored["nrows"], stored["log_mode"]) == (
        "table", 6, 2, "IMMUTABLE")
    assert stored["data"] == [[1, "x", True, None, [1, 2], 3],
                              [2.5, None, False, None, {"k": 1}, "y"]]
    types = stored["column_types"]
    assert types["wb_type"] == "typedDict"
    allowed = {c: [t["wb_type"] for t in v["params"]["allowed_types"]]
               for c, v in types["params"]["type_map"].items()}
    # wandb's Optional[...] of the column's kind, sorted by name as _dtypes sorts a union;
    # a column of several kinds as allow_mixed_types writes it
    assert allowed == {"a": ["none", "number"], "b": ["none", "string"],
                       "c": ["boolean", "none"], "d": ["none", "unknown"],
                       "e": ["any", "none"], "f": ["any", "none"]}
    assert all(v["wb_type"] == "union" for v in types["params"]["type_map"].values())


def test_a_table_wandb_wrote_is_read(api: Api, tmp_path: Path) -> None:
    folder = tmp_path / "wandb-made"
    folder.mkdir()
    (folder / "preds.table.json").write_text(json.dumps(WANDB_TABLE, sort_keys=True))
    art = Artifact("from-wandb", type="dataset", api=api)
    art.add_dir(folder)
    table = saved(api, art).get("preds")
    assert table.columns == ["id", "label", "img"]
    assert table.get_column("id") == [1, 2]
    assert table.data[0][2]["_type"] == "image-file"  # a media cell stays what wandb wrote


def test_tables_from_numpy_and_rows_of_numpy_values() -> None:
    grid = np.array([[1, 2], [3, 4]], dtype=np.int64)
    table = Table(columns=["x", "y"], data=grid)
    assert table.data == [[1, 2], [3, 4]] and type(table.data[0][0]) is int
    table.add_data(np.float64("nan"), np.array([5, 6]))  # NaN is missing, as W&B reads it
    assert table.data[2] == [None, [5, 6]]
    assert Table(data=[["a", "b", "c"]]).columns == ["Input", "Output", "Expected"]  # W&B's
    table.add_column("z", np.array([7, 8, 9]))
    assert list(table.iterrows()) == [(0, [1, 2, 7]), (1, [3, 4, 8]), (2, [None, [5, 6], 9])]
    with pytest.raises(ValueError, match="has 3 rows"):
        table.add_column("w", [1])
    with pytest.raises(ValueError, match="has a column 'x' already"):
        table.add_column("x", [1, 2, 3])


def test_a_dataframe() -> None:
    pd = pytest.importorskip("pandas")  # optional: never a dependency
    frame = pd.DataFrame({"user": ["ada", "geoff"], "score": [1.5, float("nan")]})
    table = Table(dataframe=frame)
    assert table.columns == ["user", "score"] and table.data == [["ada", 1.5], ["geoff", None]]
    assert Table(data=frame) == table
    assert table.get_dataframe()["user"].tolist() == ["ada", "geoff"]


def test_adding_to_a_saved_version_makes_the_next_one(api: Api, tmp_path: Path) -> None:
    first = seed(api, tmp_path, "vision/mnist", {"labels.csv": b"id\n1\n"})
    art = api.artifact("vision/mnist:latest")
    art.add({"rows": 1}, "stats")
    art.save()
    got = api.artifact("vision/mnist:latest")
    assert got.version == "v1" and got.get("stats") == {"rows": 1}
    assert sorted(got.manifest.entries) == ["labels.csv", "stats.json"]
    assert first.get("stats") is None


def test_a_large_array_is_read_chunk_by_chunk_verified(api: Api) -> None:
    array = np.frombuffer(np.random.default_rng(1).bytes(3 * CHUNK_SIZE), dtype=np.uint8)
    art = Artifact("big", type="dataset", api=api)
    art.add(array, "raw")
    got = saved(api, art)
    assert got.manifest["raw.npy"].size > 3 * CHUNK_SIZE
    assert (got.get("raw") == array).all()


@embedded_only
def test_what_cannot_be_stored_or_read_is_refused(api: Api, tmp_path: Path) -> None:
    art = Artifact("bad", type="dataset", api=api)
    with pytest.raises(TypeError, match="JSON value; object is none of them"):
        art.add(object(), "x")
    with pytest.raises(TypeError, match="Python objects cannot be stored"):
        art.add(np.array([{"a": 1}], dtype=object), "x")
    with pytest.raises(TypeError, match="column 'when', row 0 is a datetime"):
        Table(columns=["when"], data=[[datetime.datetime(2026, 1, 1)]])
    with pytest.raises(ValueError, match="has 2 columns"):
        Table(columns=["a", "b"], data=[[1]])
    with pytest.raises(ValueError, match="would read back as a table"):
        art.add({"a": 1}, "x.table")
    with pytest.raises(ValueError, match="JSON has no NaN or infinity"):
        art.add({"a": float("inf")}, "x")
    with pytest.raises(ValueError, match="column 'a', row 0 is inf"):
        Table(columns=["a"], data=[[float("inf")]])
    with pytest.raises(InvalidManifest, match="may not escape"):
        art.add({"a": 1}, "../escape")
    art.add({"a": 1}, "same")
    with pytest.raises(ValueError, match="already added with other contents"):
        art.add({"a": 2}, "same")
    art.add({"a": 2}, "same", overwrite=True)
    assert art.get("same") == {"a": 2}

    # two entries a bare name could mean, and files whose bytes are not what they say
    art.add([1], "both")
    art.add(np.zeros(2), "both")
    with pytest.raises(ValueError, match=r"both.npy and both.json: get one of them"):
        art.get("both")
    folder = tmp_path / "odd"
    folder.mkdir()
    (folder / "notjson.json").write_text("{")
    (folder / "nottable.table.json").write_text('{"columns": []}')
    (folder / "notnpy.npy").write_bytes(b"plain bytes")
    odd = Artifact("odd", type="dataset", api=api)
    odd.add_dir(folder)
    got = saved(api, odd)
    for name, said in [("notjson", "not valid JSON"), ("nottable", "not a W&B table"),
                       ("notnpy", "not an .npy array")]:
        with pytest.raises(InvalidManifest, match=said):
            got.get(name)
