"""The embedded store: MetadataDB (SQLite), BlobDir, and Store over both."""

from __future__ import annotations

import hashlib
import io
import multiprocessing
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from helpers import open_fd_count

from artifactfs.core.chunks import CHUNK_SIZE
from artifactfs.core.digests import blob_key, md5_b64
from artifactfs.core.errors import Conflict, DigestMismatch, InvalidManifest, InvalidName, NotFound
from artifactfs.core.manifest import Manifest, ManifestEntry
from artifactfs.core.records import COMMITTED, DELETED
from artifactfs.store import BlobDir, Store
from artifactfs.store.blobs import BatchTooLarge

ENTITY, PROJECT = "local", "proj"


@pytest.fixture
def store(open_store: Callable[[], Store]) -> Store:
    """The test's store, on SQLite and on PostgreSQL (``engine_name``)."""
    return open_store()


# the blob folder's own tests: the database takes no part in them, so they run once
blobs_only = pytest.mark.parametrize("engine_name", ["sqlite"], indirect=True)


def put(store: Store, data: bytes) -> str:
    digest = md5_b64(data)
    store.blobs.put_stream(io.BytesIO(data), digest)
    return digest


def commit(
    store: Store,
    files: dict[str, bytes],
    *,
    name: str = "data",
    type_: str = "dataset",
    aliases: tuple[str, ...] = (),
    project: str = PROJECT,
    description: str | None = None,
):
    entries = [ManifestEntry(path, put(store, data), len(data)) for path, data in files.items()]
    return store.commit(
        entity=ENTITY, project=project, name=name, type_=type_, manifest=Manifest(entries),
        aliases=aliases, description=description,
    )


def resolve(store: Store, alias: str, name: str = "data"):
    return store.db.resolve(ENTITY, PROJECT, name, alias)


def indexes(store: Store, name: str = "data") -> list[int]:
    return [v.index for v in store.db.list_versions(ENTITY, PROJECT, name)]


def files_under(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file())


# ---- versions ---------------------------------------------------------------------------


def test_versions_are_numbered_from_zero_without_gaps(store: Store) -> None:
    infos = [commit(store, {"f.txt": f"content {i}".encode()}) for i in range(5)]
    assert [i.index for i in infos] == [0, 1, 2, 3, 4]
    assert [i.version for i in infos] == ["v0", "v1", "v2", "v3", "v4"]
    assert indexes(store) == [0, 1, 2, 3, 4]
    assert len({i.id for i in infos}) == 5
    for info in infos:
        assert info.state == COMMITTED
        assert resolve(store, info.version).id == info.id


def test_each_collection_has_its_own_numbers(store: Store) -> None:
    assert commit(store, {"a": b"1"}, name="one").index == 0
    assert commit(store, {"a": b"1"}, name="two").index == 0
    assert commit(store, {"a": b"2"}, name="one").index == 1
    assert commit(store, {"a": b"1"}, name="one", project="other").index == 0
    assert indexes(store, "one") == [0, 1]
    assert indexes(store, "two") == [0]


def test_commit_records_what_it_was_given(store: Store) -> None:
    files = {"a.txt": b"hello", "dir/b.bin": b"\x00" * 100}
    info = commit(store, files, description="first", aliases=("best",))
    assert (info.entity, info.project, info.name, info.type) == (ENTITY, PROJECT, "data", "dataset")
    assert info.size == 105
    assert info.file_count == 2
    assert info.description == "first"
    assert set(info.aliases) == {"best", "latest"}
    assert info.qualified_name == "local/proj/data:v0"
    manifest = Manifest.from_json(store.db.manifest_json(info.id))
    assert manifest.digest() == info.digest
    assert manifest["a.txt"].digest == md5_b64(b"hello")
    assert store.db.collection_type(ENTITY, PROJECT, "data") == "dataset"
    assert store.db.collection_type(ENTITY, PROJECT, "nope") is None
    assert store.db.list_projects(ENTITY) == [PROJECT]
    assert store.db.list_entities() == [ENTITY]
    assert store.db.list_types(ENTITY, PROJECT) == ["dataset"]
    [collection] = store.db.list_collections(ENTITY, PROJECT)
    assert (collection.name, collection.type, collection.version_count) == ("data", "dataset", 1)


def test_latest_is_always_on_the_newest_version(store: Store) -> None:
    for i in range(4):
        info = commit(store, {"f": bytes([i])})
        latest = resolve(store, "latest")
        assert latest.index == i
        assert latest.id == info.id
        holders = [v.index for v in store.db.list_versions(ENTITY, PROJECT, "data")
                   if "latest" in v.aliases]
        assert holders == [i]


def test_alias_is_unique_within_a_collection_and_moves(store: Store) -> None:
    v0 = commit(store, {"f": b"0"}, aliases=("best", "prod"))
    v1 = commit(store, {"f": b"1"}, aliases=("best",))
    assert resolve(store, "best").id == v1.id
    assert resolve(store, "prod").id == v0.id
    assert store.db.version_by_id(v0.id).aliases == ("prod",)
    assert set(store.db.version_by_id(v1.id).aliases) == {"best", "latest"}
    # add_alias moves it back
    moved = store.db.add_alias(v0.id, "best")
    assert set(moved.aliases) == {"best", "prod"}
    assert resolve(store, "best").id == v0.id
    assert "best" not in store.db.version_by_id(v1.id).aliases
    holders = [v.index for v in store.db.list_versions(ENTITY, PROJECT, "data")
               if "best" in v.aliases]
    assert holders == [0]


def test_same_alias_in_two_collections_is_independent(store: Store) -> None:
    a = commit(store, {"f": b"a"}, name="a", aliases=("best",))
    b = commit(store, {"f": b"b"}, name="b", aliases=("best",))
    assert resolve(store, "best", "a").id == a.id
    assert resolve(store, "best", "b").id == b.id


def test_latest_and_version_labels_cannot_be_assigned(store: Store) -> None:
    v0 = commit(store, {"f": b"0"})
    commit(store, {"f": b"1"})
    with pytest.raises(InvalidName, match="latest"):
        store.db.add_alias(v0.id, "latest")
    with pytest.raises(InvalidName, match="latest"):
        store.db.remove_alias(v0.id, "latest")
    with pytest.raises(InvalidName, match="version index"):
        store.db.add_alias(v0.id, "v1")
    with pytest.raises(InvalidName, match="may not contain"):
        store.db.add_alias(v0.id, "a/b")
    with pytest.raises(InvalidName, match="version index"):
        commit(store, {"f": b"2"}, aliases=("v5",))
    assert resolve(store, "latest").index == 1
    assert indexes(store) == [0, 1]


def test_remove_alias(store: Store) -> None:
    v0 = commit(store, {"f": b"0"}, aliases=("best",))
    info = store.db.remove_alias(v0.id, "best")
    assert info.aliases == ("latest",)
    with pytest.raises(NotFound, match="local/proj/data:best"):
        resolve(store, "best")


def test_update_version_changes_only_mutable_fields(store: Store) -> None:
    v0 = commit(store, {"f": b"0"}, description="old")
    manifest_before = store.db.manifest_json(v0.id)
    info = store.db.update_version(v0.id, description="new", metadata={"acc": 0.9})
    assert info.description == "new"
    assert info.metadata == {"acc": 0.9}
    assert info.digest == v0.digest
    assert info.index == 0
    assert info.updated_at >= v0.updated_at
    assert store.db.manifest_json(v0.id) == manifest_before
    assert store.db.resolve(ENTITY, PROJECT, "data", "v0").description == "new"
    assert indexes(store) == [0]


def test_resolve_not_found_names_what_was_looked_for(store: Store) -> None:
    commit(store, {"f": b"0"})
    with pytest.raises(NotFound, match=r"artifact local/proj/data:v7 not found"):
        resolve(store, "v7")
    with pytest.raises(NotFound, match=r"artifact local/proj/nope:latest not found"):
        resolve(store, "latest", name="nope")
    with pytest.raises(NotFound, match="'nope'"):
        store.db.version_by_id("nope")
    with pytest.raises(KeyError):
        resolve(store, "best")


# ---- deleting ---------------------------------------------------------------------------


def test_delete_refuses_while_aliases_are_held(store: Store) -> None:
    v0 = commit(store, {"f": b"0"}, aliases=("best",))
    commit(store, {"f": b"1"})
    with pytest.raises(Conflict, match="best"):
        store.db.delete_version(v0.id)
    assert resolve(store, "v0").state == COMMITTED
    assert resolve(store, "best").id == v0.id
    store.db.delete_version(v0.id, delete_aliases=True)
    with pytest.raises(NotFound):
        resolve(store, "v0")
    with pytest.raises(NotFound):
        resolve(store, "best")
    assert store.db.version_by_id(v0.id, include_deleted=True).state == DELETED
    with pytest.raises(NotFound):
        store.db.version_by_id(v0.id)
    assert indexes(store) == [1]


def test_delete_refuses_on_latest_alone(store: Store) -> None:
    v0 = commit(store, {"f": b"0"})
    with pytest.raises(Conflict, match="latest"):
        store.db.delete_version(v0.id)
    assert resolve(store, "latest").id == v0.id


def test_delete_without_aliases_needs_no_flag(store: Store) -> None:
    v0 = commit(store, {"f": b"0"})
    commit(store, {"f": b"1"})
    store.db.delete_version(v0.id)
    assert indexes(store) == [1]
    with pytest.raises(NotFound):
        store.db.delete_version(v0.id)  # already gone


def test_latest_moves_back_when_the_newest_is_deleted(store: Store) -> None:
    v0 = commit(store, {"f": b"0"})
    v1 = commit(store, {"f": b"1"})
    v2 = commit(store, {"f": b"2"}, aliases=("best",))
    store.db.delete_version(v2.id, delete_aliases=True)
    assert resolve(store, "latest").id == v1.id
    assert "latest" in store.db.version_by_id(v1.id).aliases
    store.db.delete_version(v1.id, delete_aliases=True)
    assert resolve(store, "latest").id == v0.id
    store.db.delete_version(v0.id, delete_aliases=True)
    with pytest.raises(NotFound):
        resolve(store, "latest")
    assert indexes(store) == []
    [collection] = store.db.list_collections(ENTITY, PROJECT)
    assert collection.version_count == 0


def test_deleted_numbers_are_never_reused(store: Store) -> None:
    commit(store, {"f": b"0"})
    v1 = commit(store, {"f": b"1"})
    store.db.delete_version(v1.id, delete_aliases=True)
    v2 = commit(store, {"f": b"2"})
    assert v2.index == 2
    assert resolve(store, "latest").id == v2.id
    with pytest.raises(NotFound):
        resolve(store, "v1")
    assert indexes(store) == [0, 2]
    # even when every version is gone
    for v in store.db.list_versions(ENTITY, PROJECT, "data"):
        store.db.delete_version(v.id, delete_aliases=True)
    assert commit(store, {"f": b"3"}).index == 3
    assert resolve(store, "latest").index == 3


def test_deleted_version_cannot_be_changed(store: Store) -> None:
    v0 = commit(store, {"f": b"0"})
    commit(store, {"f": b"1"})
    store.db.delete_version(v0.id)
    with pytest.raises(NotFound):
        store.db.add_alias(v0.id, "best")
    with pytest.raises(NotFound):
        store.db.update_version(v0.id, description="x")
    with pytest.raises(NotFound):
        resolve(store, "best")


# ---- refusals ---------------------------------------------------------------------------


def test_type_clash_is_a_conflict(store: Store) -> None:
    commit(store, {"f": b"0"})
    with pytest.raises(Conflict, match="'dataset', not 'model'"):
        commit(store, {"f": b"1"}, type_="model")
    assert indexes(store) == [0]
    assert store.db.collection_type(ENTITY, PROJECT, "data") == "dataset"
    # the same name in another project may have another type
    assert commit(store, {"f": b"1"}, type_="model", project="p2").type == "model"


def test_commit_with_a_missing_blob_is_refused_and_leaves_nothing(store: Store) -> None:
    present = put(store, b"present")
    manifest = Manifest(
        [
            ManifestEntry("present.txt", present, 7),
            ManifestEntry("absent.txt", md5_b64(b"absent"), 6),
        ]
    )
    with pytest.raises(InvalidManifest, match=r"absent\.txt"):
        store.commit(entity=ENTITY, project=PROJECT, name="data", type_="dataset",
                     manifest=manifest, aliases=("best",))
    assert indexes(store) == []
    assert store.db.list_projects(ENTITY) == []
    assert store.db.collection_type(ENTITY, PROJECT, "data") is None
    with pytest.raises(NotFound):
        resolve(store, "latest")
    # an existing collection keeps its versions and aliases
    v0 = commit(store, {"f": b"0"}, aliases=("best",))
    with pytest.raises(InvalidManifest, match=r"absent\.txt"):
        store.commit(entity=ENTITY, project=PROJECT, name="data", type_="dataset",
                     manifest=manifest, aliases=("best",))
    assert indexes(store) == [0]
    assert resolve(store, "best").id == v0.id
    assert resolve(store, "latest").id == v0.id


def test_commit_refuses_a_non_md5_digest_for_a_stored_entry(store: Store) -> None:
    manifest = Manifest([ManifestEntry("a", "1234567890abcde", 1)])
    with pytest.raises(InvalidManifest, match="not a base64 MD5"):
        store.commit(entity=ENTITY, project=PROJECT, name="data", type_="dataset",
                     manifest=manifest)
    assert indexes(store) == []


@pytest.mark.parametrize(
    ("field", "value"),
    [("entity", "bad entity"), ("project", "a/b"), ("name", "x:y"), ("type_", "")],
)
def test_commit_checks_names(store: Store, field: str, value: str) -> None:
    args = dict(entity=ENTITY, project=PROJECT, name="data", type_="dataset")
    args[field] = value
    with pytest.raises(InvalidName):
        store.commit(manifest=Manifest(), **args)
    assert store.db.list_entities() == []


def test_reference_entries_need_no_blob(store: Store) -> None:
    manifest = Manifest([ManifestEntry("r.csv", "etag-123", 10, ref="s3://bucket/r.csv")])
    info = store.commit(entity=ENTITY, project=PROJECT, name="data", type_="dataset",
                        manifest=manifest)
    assert info.index == 0
    assert Manifest.from_json(store.db.manifest_json(info.id))["r.csv"].ref == "s3://bucket/r.csv"


# ---- blobs ------------------------------------------------------------------------------


@blobs_only
def test_blob_round_trip(store: Store) -> None:
    data = b"0123456789" * 100
    digest = put(store, data)
    blobs = store.blobs
    assert blobs.has(digest)
    assert blobs.size(digest) == 1000
    assert blobs.read(digest) == data
    assert blobs.read(digest, 10, 20) == data[10:20]
    assert blobs.read(digest, 995, 5000) == data[995:]
    key = hashlib.md5(data).hexdigest()
    assert blobs.path(digest) == store.root / "blobs" / key[:2] / key
    assert blobs.path(digest).read_bytes() == data
    assert blobs.chunk_index(digest) is None
    assert blobs.missing([digest, md5_b64(b"other")]) == {md5_b64(b"other")}


@blobs_only
def test_missing_blob_is_not_found(store: Store) -> None:
    digest = md5_b64(b"never stored")
    assert not store.blobs.has(digest)
    with pytest.raises(NotFound):
        store.blobs.read(digest)
    with pytest.raises(NotFound):
        store.blobs.size(digest)
    with pytest.raises(NotFound):
        store.blobs.chunk_index(digest)


@blobs_only
def test_read_many_answers_in_order_across_windows(store: Store) -> None:
    # more digests than one window of open files, missing ones and repeats among them
    blobs = [os.urandom(100 + n) for n in range(70)]
    digests = [put(store, b) for b in blobs]
    absent, empty = md5_b64(b"never stored"), put(store, b"")
    asked = [digests[5], absent, *digests, digests[5], absent, empty]
    before = open_fd_count()
    got = store.blobs.read_many(asked)
    assert got == [blobs[5], None, *blobs, blobs[5], None, b""]
    assert open_fd_count() == before
    assert store.blobs.read_many([]) == []


@blobs_only
def test_read_many_over_its_byte_limit_raises_and_closes_its_files(store: Store) -> None:
    blobs = [os.urandom(1000) for _ in range(40)]
    digests = [put(store, b) for b in blobs]
    before = open_fd_count()
    with pytest.raises(BatchTooLarge, match="39999"):
        store.blobs.read_many(digests, max_bytes=40_000 - 1)
    assert open_fd_count() == before
    # the limit counts what is there: missing blobs add nothing, and exactly at it is fine
    asked = [*digests, md5_b64(b"absent")]
    assert store.blobs.read_many(asked, max_bytes=40_000) == [*blobs, None]


@blobs_only
def test_read_many_refuses_an_oversized_batch_before_reading_any_of_it(store: Store) -> None:
    # the first blob cannot be read (its file is now a folder, which opens and has a size
    # but fails on read), and the limit is crossed only by the last: a batch checked a
    # window at a time would meet the unreadable file before it noticed the limit
    blobs = [os.urandom(1000) for _ in range(40)]
    digests = [put(store, b) for b in blobs]
    first = store.blobs.path(digests[0])
    first.unlink()
    first.mkdir()
    total = first.stat().st_size + 39 * 1000
    with pytest.raises(BatchTooLarge):
        store.blobs.read_many(digests, max_bytes=total - 1)
    with pytest.raises(IsADirectoryError):  # under the limit, it is read and fails
        store.blobs.read_many(digests, max_bytes=total)


@blobs_only
def test_large_blob_gets_a_chunk_index(store: Store) -> None:
    data = os.urandom(2 * CHUNK_SIZE + 17)
    digest = md5_b64(data)
    result = store.blobs.put_stream(io.BytesIO(data), digest)
    assert result.chunk_index is not None
    index = store.blobs.chunk_index(digest)
    assert index == result.chunk_index
    assert index.count == 3
    for n in range(3):
        start, end = index.bounds(n)
        assert index.check(n, store.blobs.read(digest, start, end))


@blobs_only
def test_a_blob_whose_index_cannot_be_written_is_not_published(store: Store) -> None:
    """A large blob without its index could never be read by chunk, and an upload would
    skip it as present: the index is written first, so its failure publishes nothing."""
    data = os.urandom(CHUNK_SIZE + 1)
    digest = md5_b64(data)
    fan_out = store.blobs.chunk_root / blob_key(digest)[:2]
    fan_out.parent.mkdir(parents=True, exist_ok=True)
    fan_out.write_bytes(b"")  # a file where the index's folder should be
    with pytest.raises(OSError):
        store.blobs.put_stream(io.BytesIO(data), digest)
    assert not store.blobs.has(digest)
    assert files_under(store.root / "tmp") == []


@blobs_only
def test_a_lost_chunk_index_is_built_again_from_its_checked_blob(store: Store) -> None:
    data = os.urandom(2 * CHUNK_SIZE + 5)
    digest = md5_b64(data)
    original = store.blobs.put_stream(io.BytesIO(data), digest).chunk_index
    index_file = store.blobs.chunk_root / blob_key(digest)[:2] / f"{blob_key(digest)}.idx"
    index_file.unlink()
    assert store.blobs.chunk_index(digest) == original
    assert index_file.is_file()  # written again, not rebuilt on every read

    index_file.unlink()
    with open(store.blobs.path(digest), "r+b") as f:  # and now the blob is damaged too
        f.seek(CHUNK_SIZE)
        f.write(bytes([data[CHUNK_SIZE] ^ 1]))
    with pytest.raises(DigestMismatch, match="damaged"):
        store.blobs.chunk_index(digest)
    assert not index_file.exists()  # no index vouches for damaged bytes


@blobs_only
def test_blob_with_wrong_digest_is_refused_and_nothing_is_stored(store: Store) -> None:
    data = b"the real bytes"
    promised = md5_b64(b"other bytes")
    with pytest.raises(DigestMismatch, match=promised):
        store.blobs.put_stream(io.BytesIO(data), promised)
    assert not store.blobs.has(promised)
    assert not store.blobs.has(md5_b64(data))
    assert files_under(store.root / "blobs") == []
    assert files_under(store.root / "tmp") == []
    assert files_under(store.root / "chunks") == []


@blobs_only
def test_large_blob_with_wrong_digest_stores_no_index(store: Store, tmp_path: Path) -> None:
    data = os.urandom(CHUNK_SIZE + 1)
    src = tmp_path / "big.bin"
    src.write_bytes(data)
    promised = md5_b64(data[:-1] + bytes([data[-1] ^ 1]))  # surely other bytes
    with pytest.raises(DigestMismatch):
        store.blobs.put_file(src, promised)
    assert files_under(store.root / "blobs") == []
    assert files_under(store.root / "tmp") == []
    assert files_under(store.root / "chunks") == []


@blobs_only
def test_put_file_skips_a_blob_already_there(store: Store, tmp_path: Path) -> None:
    src = tmp_path / "f.bin"
    src.write_bytes(b"abc")
    digest = md5_b64(b"abc")
    assert store.blobs.put_file(src, digest) is not None
    assert store.blobs.put_file(src, digest) is None
    assert len(files_under(store.root / "blobs")) == 1


@blobs_only
def test_on_bytes_counts_every_byte(store: Store) -> None:
    data = os.urandom(5 * CHUNK_SIZE + 3)
    seen: list[int] = []
    store.blobs.put_stream(io.BytesIO(data), md5_b64(data), on_bytes=seen.append)
    assert sum(seen) == len(data)


def test_store_reopens_with_its_data(store: Store, open_store: Callable[[], Store]) -> None:
    v0 = commit(store, {"f": b"persist"}, aliases=("best",))
    again = open_store()
    assert again.db.resolve(ENTITY, PROJECT, "data", "best").id == v0.id
    assert again.blobs.read(md5_b64(b"persist")) == b"persist"
    assert isinstance(again.blobs, BlobDir)


@blobs_only
def test_remove_tmp_leftovers_keeps_young_files(store: Store) -> None:
    young = store.root / "tmp" / ".tmp-young"
    old = store.root / "tmp" / ".tmp-old"
    young.write_bytes(b"y")
    old.write_bytes(b"o")
    past = time.time() - 2 * 86400
    os.utime(old, (past, past))
    store.blobs.remove_tmp_leftovers()
    assert young.exists()
    assert not old.exists()


# ---- several processes ------------------------------------------------------------------


def spec_of(store: Store) -> dict[str, str]:
    """What opens ``store`` again in another process: ``Store(**spec_of(store))``."""
    if store.db.engine.dialect.name == "sqlite":
        return {"root": str(store.root)}
    return {"db": store.db_url.render_as_string(hide_password=False),
            "blobs": store.root.as_uri()}


def _commit_worker(spec: dict[str, str], worker: int, count: int, barrier, results) -> None:
    done = []
    try:
        store = Store(**spec)  # type: ignore[arg-type]
        barrier.wait()
        for i in range(count):
            data = f"worker {worker} commit {i}".encode()
            digest = md5_b64(data)
            store.blobs.put_stream(io.BytesIO(data), digest)
            info = store.commit(
                entity=ENTITY, project=PROJECT, name="shared", type_="dataset",
                manifest=Manifest([ManifestEntry("f.txt", digest, len(data))]),
            )
            done.append((info.index, info.id, digest))
        results.put((worker, done, None))
    except BaseException as exc:  # report it to the parent instead of dying silently
        results.put((worker, done, repr(exc)))


def test_eight_processes_commit_to_one_collection_at_once(store: Store) -> None:
    """Exactly v0..v15 from 8 writers at once, no gap, no duplicate, latest on the highest:
    on SQLite by BEGIN IMMEDIATE, on PostgreSQL by the collection's row lock (without it,
    two transactions read the same max(idx) and one fails on the unique index)."""
    ctx = multiprocessing.get_context("spawn")
    workers, per_worker = 8, 2
    barrier = ctx.Barrier(workers)
    results = ctx.Queue()
    procs = [
        ctx.Process(target=_commit_worker,
                    args=(spec_of(store), w, per_worker, barrier, results))
        for w in range(workers)
    ]
    for p in procs:
        p.start()
    try:
        reports = [results.get(timeout=120) for _ in procs]
        for p in procs:
            p.join(timeout=60)
    finally:
        for p in procs:
            if p.is_alive():
                p.kill()
                p.join(timeout=10)
    assert [p.exitcode for p in procs] == [0] * workers
    errors = [(w, err) for w, _, err in reports if err]
    assert errors == []
    committed = [c for _, done, _ in reports for c in done]
    total = workers * per_worker
    assert len(committed) == total
    assert sorted(index for index, _, _ in committed) == list(range(total))
    versions = store.db.list_versions(ENTITY, PROJECT, "shared")
    assert [v.index for v in versions] == list(range(total))
    latest = store.db.resolve(ENTITY, PROJECT, "shared", "latest")
    assert latest.index == total - 1
    assert [v.index for v in versions if "latest" in v.aliases] == [total - 1]
    # each version holds what its writer committed
    by_id = {vid: digest for _, vid, digest in committed}
    for v in versions:
        manifest = Manifest.from_json(store.db.manifest_json(v.id))
        assert manifest["f.txt"].digest == by_id[v.id]


def test_alias_moves_and_deletes_at_once_end_as_some_serial_order(store: Store) -> None:
    """8 threads move one alias and delete versions at once. Whatever the order, the end is
    a serial order's: the alias on exactly one version, each deleted version holding no
    alias, and ``latest`` on the newest version still committed (two deletes that each
    chose the other's version as the new latest would leave it on a deleted one)."""
    from concurrent.futures import ThreadPoolExecutor

    infos = [commit(store, {"f": f"v{i}".encode()}) for i in range(16)]
    movers, doomed = infos[:8], infos[8:]  # v8..v15 go, newest last, so latest moves often

    def move(i: int) -> None:
        for _ in range(5):
            store.db.add_alias(movers[i].id, "best")

    def delete(i: int) -> None:
        store.db.delete_version(doomed[i].id, delete_aliases=True)

    with ThreadPoolExecutor(16) as pool:
        futures = [pool.submit(move, i) for i in range(8)]
        futures += [pool.submit(delete, i) for i in range(8)]
        for f in futures:
            f.result()
    versions = store.db.list_versions(ENTITY, PROJECT, "data")
    assert [v.index for v in versions] == list(range(8))
    assert [v.index for v in versions if "best" in v.aliases] == [
        resolve(store, "best").index]
    assert resolve(store, "latest").index == 7
    assert [v.index for v in versions if "latest" in v.aliases] == [7]


_SLOW_UPLOAD = textwrap.dedent(
    """
    import hashlib, base64, io, sys, time
    from pathlib import Path
    from artifactfs.core.manifest import Manifest, ManifestEntry
    from artifactfs.store import Store

    root, marker = sys.argv[1], Path(sys.argv[2])
    block = bytes(range(256)) * 4096          # 1 MiB
    total_blocks = 64
    md5 = hashlib.md5()
    for _ in range(total_blocks):
        md5.update(block)
    digest = base64.b64encode(md5.digest()).decode()

    class Slow(io.RawIOBase):
        sent = 0
        def readable(self):
            return True
        def read(self, n=-1):
            if self.sent == total_blocks:
                return b""
            if self.sent == 8:                 # part of the blob is written: stall
                marker.write_text(digest)
                while True:
                    time.sleep(1)
            self.sent += 1
            return block

    store = Store(root)
    store.blobs.put_stream(Slow(), digest)
    store.commit(entity="local", project="proj", name="big", type_="dataset",
                 manifest=Manifest([ManifestEntry("big.bin", digest, 64 << 20)]))
    """
)


def test_killed_upload_leaves_no_version_and_no_blob(tmp_path: Path) -> None:
    root = tmp_path / "store"
    marker = tmp_path / "uploading"
    proc = subprocess.Popen([sys.executable, "-c", _SLOW_UPLOAD, str(root), str(marker)])
    try:
        deadline = time.monotonic() + 60
        while not marker.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert marker.exists(), "the uploading process never got going"
        digest = marker.read_text()
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL
    store = Store(root)
    assert not store.blobs.has(digest)
    assert files_under(root / "blobs") == []
    assert files_under(root / "chunks") == []
    assert store.db.list_versions(ENTITY, PROJECT, "big") == []
    with pytest.raises(NotFound):
        store.db.resolve(ENTITY, PROJECT, "big", "latest")
    # the half-written temporary file is invisible and can be cleaned up
    store.blobs.remove_tmp_leftovers(older_than=-1)
    assert files_under(root / "tmp") == []


def _open_worker(base: str, rounds: int, barrier, results) -> None:
    errors = []
    for r in range(rounds):
        barrier.wait()
        try:
            Store(Path(base) / f"store{r}")
        except BaseException as exc:
            errors.append(f"round {r}: {exc!r}")
    results.put(errors)


def test_several_processes_open_a_new_store_at_once(tmp_path: Path) -> None:
    """Jobs started together against a store folder that does not exist yet must all work.

    Every round, four processes open one fresh store folder at the same moment.
    """
    ctx = multiprocessing.get_context("spawn")
    workers, rounds = 4, 100
    barrier = ctx.Barrier(workers)
    results = ctx.Queue()
    procs = [
        ctx.Process(target=_open_worker, args=(str(tmp_path), rounds, barrier, results))
        for _ in range(workers)
    ]
    for p in procs:
        p.start()
    try:
        reports = [results.get(timeout=120) for _ in procs]
        for p in procs:
            p.join(timeout=60)
    finally:
        for p in procs:
            if p.is_alive():
                p.kill()
    errors = [e for report in reports for e in report]
    assert errors == []
    for r in range(rounds):
        assert Store(tmp_path / f"store{r}").db.list_entities() == []
