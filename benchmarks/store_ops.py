"""Microseconds per call of the store's small operations, the ones a server does per request.

    .venv/bin/python benchmarks/store_ops.py                      # an embedded SQLite store
    .venv/bin/python benchmarks/store_ops.py --db postgresql://USER@HOST:PORT/DB

In a fresh store it commits 20 one-file versions of one collection (each with an alias of
its own) and makes an API key, then times, one thread, calls in a row (median of
``--repeat`` runs of ``--calls`` calls): ``check_key`` (every request), ``version_by_id``
(``GET /versions/{id}``), ``resolve`` of ``latest``, ``list_versions`` of the 20, and
``add_alias`` (one write transaction). docs/database.md holds the figures before and after
SQLAlchemy.
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--db", default=None, help="a database URL instead of an embedded store")
    p.add_argument("--calls", type=int, default=1000)
    p.add_argument("--repeat", type=int, default=5)
    args = p.parse_args(argv)

    from artifactfs.core.digests import md5_b64
    from artifactfs.core.manifest import Manifest, ManifestEntry
    from artifactfs.store import Store

    with tempfile.TemporaryDirectory(prefix="afs-store-ops-") as tmp:
        folder = Path(tmp) / "store"
        store = Store(db=args.db, blobs=folder.as_uri()) if args.db else Store(folder)
        data = b"one byte or so"
        digest = md5_b64(data)
        store.blobs.put_stream(io.BytesIO(data), digest)
        manifest = Manifest([ManifestEntry("f", digest, len(data))])
        infos = [store.commit(entity="bench", project="ops", name="n", type_="dataset",
                              manifest=manifest, aliases=(f"a{i}",)) for i in range(20)]
        key = store.db.create_key("bench")
        ops: dict[str, Callable[[], object]] = {
            "check_key": lambda: store.db.check_key(key),
            "version_by_id": lambda: store.db.version_by_id(infos[5].id),
            "resolve latest": lambda: store.db.resolve("bench", "ops", "n", "latest"),
            "list_versions (20)": lambda: store.db.list_versions("bench", "ops", "n"),
            "add_alias": lambda: store.db.add_alias(infos[3].id, "best"),
        }
        for label, op in ops.items():
            op()
            runs = []
            for _ in range(args.repeat):
                t0 = time.perf_counter()
                for _ in range(args.calls):
                    op()
                runs.append((time.perf_counter() - t0) / args.calls * 1e6)
            print(f"{label:20} {statistics.median(runs):8.0f} us", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
