"""What ``artifactfs gc`` costs: its mark and its sweep, and what the sweep lock adds to a commit.

    .venv/bin/python benchmarks/gc_sweep.py                       # an embedded store
    .venv/bin/python benchmarks/gc_sweep.py --db postgresql://USER@HOST:PORT/DB \\
        --blobs s3://BUCKET/PREFIX                                  # AWS configuration

In a fresh store it commits ``--versions`` versions of ``--files`` small files each, deletes
half of them, and uploads ``--dead`` blobs no version names; then times the mark
(``plan_gc``), the sweep, and the shared hold of the sweep lock a commit takes (median of
1,000). docs/storage.md quotes the figures.
"""

from __future__ import annotations

import argparse
import io
import statistics
import tempfile
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--db", default=None, help="a database URL instead of an embedded store")
    p.add_argument("--blobs", default=None, help="a blob store URL (with --db)")
    p.add_argument("--versions", type=int, default=40)
    p.add_argument("--files", type=int, default=250)
    p.add_argument("--dead", type=int, default=5000)
    args = p.parse_args(argv)

    from artifactfs.core.digests import md5_b64
    from artifactfs.core.manifest import Manifest, ManifestEntry
    from artifactfs.store import Store
    from artifactfs.store.gc import plan_gc, sweep

    with tempfile.TemporaryDirectory(prefix="afs-gc-") as tmp:
        folder = Path(tmp) / "store"
        store = (Store(db=args.db, blobs=args.blobs or folder.as_uri()) if args.db
                 else Store(folder))

        def put(data: bytes) -> str:
            digest = md5_b64(data)
            store.blobs.put_stream(io.BytesIO(data), digest)
            return digest

        t0 = time.perf_counter()
        infos = []
        for v in range(args.versions):
            entries = [ManifestEntry(f"f{i}", put(b"v%d f%d" % (v, i)), len(b"v%d f%d" % (v, i)))
                       for i in range(args.files)]
            infos.append(store.commit(entity="bench", project="gc", name="n",
                                      type_="dataset", manifest=Manifest(entries)))
        for info in infos[: args.versions // 2]:
            store.db.delete_version(info.id, delete_aliases=True)
        for i in range(args.dead):
            put(b"dead %d" % i)
        print(f"store: {store.location}; made in {time.perf_counter() - t0:.1f} s")

        t0 = time.perf_counter()
        plan = plan_gc(store, grace=0)
        mark = time.perf_counter() - t0
        t0 = time.perf_counter()
        result = sweep(store, plan)
        swept = time.perf_counter() - t0
        print(f"mark: {mark:.2f} s for {len(plan.marked)} live versions and {plan.scanned} "
              f"blobs listed")
        print(f"sweep: {swept:.2f} s for {len(result.removed)} blobs removed "
              f"({len(result.removed) / swept:.0f} blobs/s)")
        holds = []
        for _ in range(1000):
            t0 = time.perf_counter()
            with store.sweep_lock.shared():
                pass
            holds.append(time.perf_counter() - t0)
        print(f"sweep lock, shared hold per commit: {statistics.median(holds) * 1e6:.0f} us")
        store.blobs.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
