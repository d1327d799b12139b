"""How long one large commit takes in a store: N entries shaped like ImageNet's train split.

    .venv/bin/python benchmarks/commit_scale.py --entries 400000            # embedded SQLite
    .venv/bin/python benchmarks/commit_scale.py --entries 400000 \\
        --db postgresql://USER@HOST:PORT/DB                                 # on PostgreSQL

Each round commits the same manifest (``imagenet_scale.build_manifest``: N entries over
1,000 distinct 1 KiB blobs, folders of about 1,281 files) as a new version of a fresh
collection, the blobs uploaded first (untimed), and prints the seconds of ``Store.commit``
(checks, folder rows, the transaction) and of the transaction alone (``commit_version``:
the version row, its folder rows and its blob grants, the rows that grow with N). The
figure to watch is the median; docs/database.md holds the runs before and after SQLAlchemy.
"""

from __future__ import annotations

import argparse
import gc
import io
import statistics
import sys
import tempfile
import time
from pathlib import Path

from imagenet_scale import BLOBS, blob_bytes, build_manifest, tree_paths


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--entries", type=int, default=400_000)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--db", default=None, help="a database URL instead of an embedded store")
    args = p.parse_args(argv)

    from artifactfs.core.digests import md5_b64
    from artifactfs.store import Store

    blobs = blob_bytes()
    manifest = build_manifest(tree_paths(args.entries), blobs)
    commit_s: list[float] = []
    tx_s: list[float] = []
    with tempfile.TemporaryDirectory(prefix="afs-commit-scale-") as tmp:
        folder = Path(tmp) / "store"
        store = Store(db=args.db, blobs=folder.as_uri()) if args.db else Store(folder)
        for data in blobs[:BLOBS]:
            store.blobs.put_stream(io.BytesIO(data), md5_b64(data))
        inner = store.db.commit_version
        spent: list[float] = []

        def timed(**kwargs):  # type: ignore[no-untyped-def]
            t0 = time.perf_counter()
            try:
                return inner(**kwargs)
            finally:
                spent.append(time.perf_counter() - t0)

        store.db.commit_version = timed  # type: ignore[method-assign]
        for r in range(args.rounds):
            gc.collect()
            t0 = time.perf_counter()
            store.commit(entity="bench", project="scale", name=f"imagenet{r}",
                         type_="dataset", manifest=manifest)
            commit_s.append(time.perf_counter() - t0)
            tx_s.append(spent[-1])
            print(f"round {r}: commit {commit_s[-1]:.2f} s, transaction {tx_s[-1]:.2f} s",
                  flush=True)
    print(f"{args.entries} entries, {'--db' if args.db else 'embedded'}: median commit "
          f"{statistics.median(commit_s):.2f} s, median transaction "
          f"{statistics.median(tx_s):.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
