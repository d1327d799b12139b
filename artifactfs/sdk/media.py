"""The objects ``Artifact.add(obj, name)`` stores and ``Artifact.get(name)`` gives back.

Three kinds, each an ordinary file of the artifact (a mount shows it, ``download`` writes
it, any tool reads it):

- ``Table`` as ``NAME.table.json``, in the JSON form W&B's ``Artifact.add`` writes for a
  ``wandb.Table`` (``wandb/sdk/data_types/table.py``, ``Table.to_json`` for an artifact):
  the keys ``_type: "table"``, ``columns``, ``data`` (a list of rows), ``ncols``,
  ``nrows``, ``column_types`` (W&B's type of each column) and ``log_mode``, dumped with
  sorted keys as wandb dumps it. wandb's ``Artifact.get`` reads what is written here, and
  ``get`` here reads the tables wandb writes (their cells as JSON gives them: a W&B media
  cell stays the dict wandb wrote for it).
- a numpy array as ``NAME.npy`` (numpy's own format, ``numpy.save``), read back without
  pickles: an array of Python objects is refused on both sides, since unpickling bytes
  from a registry runs whatever code they name.
- any other JSON value (dict, list, str, number, bool, None) as ``NAME.json``.

numpy and pandas are used when present and never required: an array or a DataFrame can
only come from a program that has them loaded already, and reading an ``.npy`` file back
without numpy is an error that says to install it.
"""

from __future__ import annotations

import importlib
import io
import json
import math
import sys
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from artifactfs.core.errors import ArtifactFSError, InvalidManifest

if TYPE_CHECKING:
    from artifactfs.core.manifest import ManifestEntry
    from artifactfs.sdk.artifact import Artifact

__all__ = ["JSON_SUFFIX", "NPY_SUFFIX", "TABLE_SUFFIX", "Table", "decode", "encode",
           "entry_names", "read_entry"]

TABLE_SUFFIX = ".table.json"
NPY_SUFFIX = ".npy"
JSON_SUFFIX = ".json"

_DEFAULT_COLUMNS = ["Input", "Output", "Expected"]  # wandb.Table's, when none are named


class Table:
    """A table of rows, as ``wandb.Table``: ``Table(columns=[...], data=[[...], ...])``.

    ``data`` may also be a 2-D numpy array or a pandas DataFrame (``dataframe=`` as well,
    whose column names are then the table's, as in W&B). Cells are what JSON holds:
    numbers, strings, booleans, None, lists and dicts; numpy values become Python ones and
    a float NaN becomes None (W&B reads NaN as a missing value too). Anything else (a
    datetime, a W&B media object) raises TypeError naming its column and row.
    """

    def __init__(
        self,
        columns: Sequence[str | int] | None = None,
        data: Any = None,
        rows: Any = None,
        dataframe: Any = None,
    ) -> None:
        if dataframe is not None or _is_dataframe(data):
            frame = dataframe if dataframe is not None else data
            columns = list(frame.columns)
            data = frame.to_numpy(dtype=object).tolist()
        elif data is None:
            data = rows if rows is not None else []
        elif hasattr(data, "tolist") and hasattr(data, "ndim"):  # a numpy array
            data = data.tolist()
        self.columns: list[str | int] = list(columns) if columns is not None else list(
            _DEFAULT_COLUMNS)
        for col in self.columns:
            if not isinstance(col, str | int) or isinstance(col, bool):
                raise TypeError(f"table column names are strings (or ints), not {col!r}")
        if len(set(self.columns)) != len(self.columns):
            raise ValueError(f"table columns {self.columns} name a column twice")
        self.data: list[list[Any]] = []
        if not isinstance(data, Iterable):
            raise TypeError(f"table data is a list of rows, not {type(data).__name__}")
        for row in data:
            self.add_data(*row)

    def add_data(self, *row: Any) -> None:
        """Add one row (a value per column)."""
        if len(row) != len(self.columns):
            raise ValueError(f"this table has {len(self.columns)} columns {self.columns}; "
                             f"the row has {len(row)} values")
        n = len(self.data)
        self.data.append([_cell(v, self.columns[i], n) for i, v in enumerate(row)])

    add_row = add_data

    def add_column(self, name: str | int, data: Sequence[Any]) -> None:
        """Add a column: a value for each row there is (W&B's ``add_column``)."""
        if name in self.columns:
            raise ValueError(f"the table has a column {name!r} already")
        values = data.tolist() if hasattr(data, "tolist") else list(data)
        if len(values) != len(self.data):
            raise ValueError(f"the table has {len(self.data)} rows; column {name!r} has "
                             f"{len(values)} values")
        self.columns.append(name)
        for i, (row, value) in enumerate(zip(self.data, values, strict=True)):
            row.append(_cell(value, name, i))

    def iterrows(self) -> Iterator[tuple[int, list[Any]]]:
        """Each row with its index, as W&B's ``iterrows``."""
        yield from enumerate(self.data)

    def get_column(self, name: str | int) -> list[Any]:
        """The values of one column, top to bottom."""
        if name not in self.columns:
            raise KeyError(f"no column {name!r} in {self.columns}")
        i = self.columns.index(name)
        return [row[i] for row in self.data]

    def get_dataframe(self) -> Any:
        """The table as a pandas DataFrame (needs pandas)."""
        try:
            pandas = importlib.import_module("pandas")  # optional: no stubs, no dependency
        except ImportError:
            raise ArtifactFSError("Table.get_dataframe needs pandas: pip install pandas"
                                  ) from None
        return pandas.DataFrame(self.data, columns=self.columns)

    def __len__(self) -> int:
        return len(self.data)

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, Table) and self.columns == other.columns
                and self.data == other.data)

    # mutable, as a list is: no hash
    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"<Table columns={self.columns} rows={len(self.data)}>"

    # ---- W&B's artifact JSON ----------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        """The dict W&B's ``Table.to_json(artifact)`` makes for a table without media."""
        return {
            "_type": "table",
            "columns": self.columns,
            "data": self.data,
            "ncols": len(self.columns),
            "nrows": len(self.data),
            "column_types": {
                "params": {"type_map": {str(c): _column_type(self.get_column(c))
                                        for c in self.columns}},
                "wb_type": "typedDict",
            },
            "log_mode": "IMMUTABLE",
        }

    @classmethod
    def from_json(cls, value: Any, where: str = "table") -> Table:
        """A table from its W&B JSON form; InvalidManifest saying what is wrong with it."""
        if not isinstance(value, dict) or value.get("_type") != "table":
            raise InvalidManifest(f"{where} is not a W&B table (no \"_type\": \"table\")")
        if value.get("log_mode") == "INCREMENTAL":
            raise InvalidManifest(f"{where} is an incremental W&B table, whose rows are in "
                                  "other files; it is not supported")
        columns, data = value.get("columns"), value.get("data")
        if not isinstance(columns, list) or not isinstance(data, list) or not all(
                isinstance(r, list) and len(r) == len(columns) for r in data):
            raise InvalidManifest(f"{where}: a table's \"columns\" is a list and its \"data\" "
                                  "a list of rows as long as it")
        table = cls(columns=columns)
        table.data = data  # as stored: cells were JSON values when written
        return table


def _is_dataframe(obj: Any) -> bool:
    pandas = sys.modules.get("pandas")  # a DataFrame exists only where pandas is loaded
    return pandas is not None and isinstance(obj, pandas.DataFrame)


def _cell(value: Any, column: str | int, row: int) -> Any:
    """``value`` as JSON holds it (numpy values as Python ones, NaN as None)."""
    if value is None or isinstance(value, str | bool | int):
        return value
    if isinstance(value, float):
        if math.isinf(value):
            raise ValueError(f"table cell in column {column!r}, row {row} is {value}, which "
                             "JSON cannot hold: store None or a string in its place")
        return None if math.isnan(value) else value
    if hasattr(value, "tolist") and not isinstance(value, type):  # numpy scalars and arrays
        return _cell(value.tolist(), column, row)
    if isinstance(value, list | tuple):
        return [_cell(v, column, row) for v in value]
    if isinstance(value, dict) and all(isinstance(k, str) for k in value):
        return {k: _cell(v, column, row) for k, v in value.items()}
    raise TypeError(f"table cell in column {column!r}, row {row} is a {type(value).__name__}, "
                    "which JSON cannot hold: convert it first (to a string or a number)")


def _column_type(values: list[Any]) -> dict[str, Any]:
    """A column's type as W&B writes it for a table made with its defaults (every column
    optional): the union of None and the one kind the column holds, sorted as W&B sorts
    them (``Boolean < None < Number < String < Unknown``); a column of several kinds or of
    lists and dicts as W&B's ``allow_mixed_types`` writes it, ``any`` or None."""
    kinds = {_kind(v) for v in values if v is not None}
    if not kinds:
        allowed = ["none", "unknown"]
    elif len(kinds) == 1 and "any" not in kinds:
        allowed = sorted(["none", *kinds], key=str.capitalize)
    else:
        allowed = ["any", "none"]
    return {"params": {"allowed_types": [{"wb_type": t} for t in allowed]},
            "wb_type": "union"}


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "any"


# ---- names and bytes ------------------------------------------------------------------------


def _numpy_array(obj: Any) -> bool:
    numpy = sys.modules.get("numpy")
    return numpy is not None and isinstance(obj, numpy.ndarray)


def encode(obj: Any, name: str) -> tuple[str, bytes]:
    """The entry path and bytes ``obj`` is stored as under ``name``: ``NAME.table.json``,
    ``NAME.npy`` or ``NAME.json`` (a name already ending so is kept, as W&B keeps one).
    Raises TypeError for an object of none of the three kinds, ValueError for a name that
    would read back as another kind."""
    if isinstance(obj, Table):
        path = _suffixed(name, TABLE_SUFFIX)
        return path, json.dumps(obj.to_json(), sort_keys=True, allow_nan=False).encode()
    if _numpy_array(obj):
        if obj.dtype.hasobject:
            raise TypeError("a numpy array of Python objects cannot be stored: reading it "
                            "back would unpickle bytes from the registry; store a numeric "
                            "array, or the values as JSON")
        out = io.BytesIO()
        import numpy

        numpy.save(out, obj, allow_pickle=False)
        return _suffixed(name, NPY_SUFFIX), out.getvalue()
    path = _suffixed(name, JSON_SUFFIX)
    if path.endswith(TABLE_SUFFIX):
        raise ValueError(f"{path!r} would read back as a table; add a Table under that "
                         "name, or give the JSON value another name")
    try:
        text = json.dumps(obj, ensure_ascii=False, allow_nan=False, default=_json_default)
    except TypeError as exc:
        raise TypeError(f"add() takes an artifactfs.Table, a numpy array or a JSON value; "
                        f"{type(obj).__name__} is none of them ({exc})") from None
    except ValueError as exc:  # NaN or an infinity, which JSON has no way to write
        raise ValueError(f"{path!r}: {exc}: JSON has no NaN or infinity; store None or a "
                         "string in their place") from None
    return path, text.encode()


def _json_default(value: Any) -> Any:
    if hasattr(value, "tolist") and not isinstance(value, type):  # numpy values in a dict
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def _suffixed(name: str, suffix: str) -> str:
    if not isinstance(name, str) or not name.strip("/"):
        raise ValueError("add() needs a name for the object")
    return name if name.endswith(suffix) else name + suffix


def entry_names(name: str) -> list[str]:
    """The entry paths ``get(name)`` may mean, in order: the name itself when it ends in
    one of the suffixes, else the name with each suffix."""
    if name.endswith((TABLE_SUFFIX, NPY_SUFFIX, JSON_SUFFIX)):
        return [name]
    return [name + TABLE_SUFFIX, name + NPY_SUFFIX, name + JSON_SUFFIX]


def decode(path: str, data: bytes) -> Any:
    """The object stored as entry ``path``; InvalidManifest when its bytes are not what
    its name says, ArtifactFSError when numpy is needed and missing."""
    if path.endswith(NPY_SUFFIX):
        try:
            import numpy
        except ImportError:
            raise ArtifactFSError(f"reading {path!r} needs numpy: pip install numpy") from None
        try:
            return numpy.load(io.BytesIO(data), allow_pickle=False)
        except ValueError as exc:
            raise InvalidManifest(f"{path!r} is not an .npy array numpy can read without "
                                  f"unpickling: {exc}") from None
    try:
        value = json.loads(data)
    except ValueError as exc:
        raise InvalidManifest(f"{path!r} is not valid JSON: {exc}") from None
    if path.endswith(TABLE_SUFFIX):
        return Table.from_json(value, repr(path))
    return value


def read_entry(artifact: Artifact, entry: ManifestEntry) -> bytes:
    """The verified bytes of one entry of ``artifact``: from the local file a draft added,
    else from the registry through the shared cache (``VerifiedContent``)."""
    local: Path | None = artifact._local.get(entry.path)
    if local is not None:
        return local.read_bytes()
    content = artifact._api.content
    if not content.is_chunked(entry):
        return bytes(content.whole(entry))
    # a large entry: its chunks checked one by one, then its whole digest as it is written
    with tempfile.TemporaryDirectory(prefix="artifactfs-get-") as tmp:
        dest = Path(tmp) / "entry"
        content.download(entry, dest)
        return dest.read_bytes()
