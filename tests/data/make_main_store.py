"""Make ``tests/data/main-store``: a store as the last artifactfs before Alembic wrote it.

Run with that release's code on the path (it was main at 47028f7, schema 3)::

    PYTHONPATH=/path/to/old/checkout python tests/data/make_main_store.py tests/data/main-store

It commits through the old code's own ``Store``: two entities, several versions with
aliases, a deleted version, commit keys, API keys (their texts go to ``keys.json``, which
the test uses to check them), blob access and folder rows. The result is checked in, so the
upgrade test needs no old checkout; this script says how it was made.
"""

from __future__ import annotations

import io
import json
import sqlite3
import sys
from pathlib import Path

from artifactfs.core.digests import md5_b64
from artifactfs.core.manifest import Manifest, ManifestEntry
from artifactfs.store import Store


def main() -> None:
    root = Path(sys.argv[1])
    if root.exists():
        sys.exit(f"{root} exists; remove it first")
    store = Store(root)

    def put(data: bytes) -> str:
        digest = md5_b64(data)
        store.blobs.put_stream(io.BytesIO(data), digest)
        return digest

    def commit(entity: str, project: str, name: str, files: dict[str, bytes], **kw: object):
        manifest = Manifest(ManifestEntry(p, put(d), len(d)) for p, d in files.items())
        return store.commit(entity=entity, project=project, name=name,
                            type_=str(kw.pop("type_", "dataset")), manifest=manifest,
                            **kw)  # type: ignore[arg-type]

    made = []
    for i in range(4):
        made.append(commit("team", "vision", "mnist",
                           {"train/a.csv": f"rows {i}\n".encode(), "train/b/c.txt": b"c",
                            "README": b"mnist"},
                           description=f"cut {i}", metadata={"rows": i},
                           aliases=("best",) if i == 1 else (), commit_key=f"save-key-{i:08d}"))
    store.db.add_alias(made[0].id, "baseline")
    store.db.delete_version(made[2].id)
    commit("team", "vision", "resnet", {"model.bin": b"\x00weights"}, type_="model",
           aliases=("prod",))
    commit("other", "nlp", "corpus", {"x/y/z.txt": b"zzz"}, commit_key="other-key-00000001")
    keys = {"team": store.db.create_key("team"),
            "reader": store.db.create_key("team", read_only=True)}
    (root / "keys.json").write_text(json.dumps(keys, indent=1) + "\n")
    # one file for git: the WAL folded in (the old MetadataDB keeps a connection per thread)
    store.db._conn().close()
    db = sqlite3.connect(root / "registry.sqlite3")
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.execute("PRAGMA journal_mode=DELETE")
    db.close()
    for leftover in ("registry.sqlite3-wal", "registry.sqlite3-shm", "registry.sqlite3.init.lock"):
        (root / leftover).unlink(missing_ok=True)


if __name__ == "__main__":
    main()
