"""The registry answers a mount's folders are made of (fs/answers.py): reused for the
listing TTL, the last ones used while the registry is down, asked again after a save.
On the real embedded registry (a store in a temporary folder), and a real server for the
registry that goes away. No mount."""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import trio
from helpers import RegistryServer

from artifactfs.core.errors import NotFound, RegistryUnavailable
from artifactfs.core.manifest import Manifest, ManifestEntry
from artifactfs.core.records import VersionInfo
from artifactfs.files import hash_file
from artifactfs.fs.answers import FolderSweep, RegistryAnswers
from artifactfs.fs.staging import FolderKey
from artifactfs.registry import Registry
from artifactfs.registry.http import HttpRegistry
from artifactfs.store import Store

ENTITY = "local"


class HandOff:
    """The daemon's hand-off of registry calls to a worker thread, with a time limit,
    counting the calls that reach the registry."""

    def __init__(self, timeout: float = 10.0) -> None:
        self.timeout = timeout
        self.calls = 0

    async def __call__(self, func: Callable[..., Any], *args: Any) -> Any:
        self.calls += 1
        with trio.fail_after(self.timeout):
            return await trio.to_thread.run_sync(
                functools.partial(func, *args), abandon_on_cancel=True
            )


def commit(registry: Registry, tmp_path: Path, project: str, name: str, type_: str,
           files: dict[str, bytes], aliases: tuple[str, ...] = ()) -> tuple[VersionInfo,
                                                                            Manifest]:
    """A committed version of ``files``, its blobs uploaded first, as a save does."""
    entries = []
    for i, (path, data) in enumerate(files.items()):
        src = tmp_path / "src" / f"{name}-{i}"
        src.parent.mkdir(parents=True, exist_ok=True)
        src.write_bytes(data)
        digest = hash_file(src)
        registry.upload_blob(src, digest.digest)
        entries.append(ManifestEntry(path, digest.digest, digest.size))
    manifest = Manifest(entries)
    info = registry.commit(entity=ENTITY, project=project, name=name, type_=type_,
                           manifest=manifest, aliases=aliases)
    return info, manifest



async def test_listings_are_reused_for_the_ttl_then_asked_again(registry, tmp_path):
    commit(registry, tmp_path, "vision", "mnist", "dataset", {"a.txt": b"a"})
    hand_off = HandOff()
    answers = RegistryAnswers(registry, ENTITY, hand_off, listing_ttl=0.5)
    assert await answers.projects() == ["vision"]
    assert await answers.types("vision") == ["dataset"]
    assert [v.version for v in await answers.versions("vision", "dataset")] == ["v0"]
    asked = hand_off.calls
    commit(registry, tmp_path, "audio", "speech", "dataset", {"b.txt": b"b"})
    commit(registry, tmp_path, "vision", "mnist", "dataset", {"a.txt": b"a2"})
    commit(registry, tmp_path, "vision", "resnet", "model", {"w.bin": b"w"})
    assert await answers.projects() == ["vision"]  # within the TTL: not asked
    assert await answers.types("vision") == ["dataset"]
    assert [v.version for v in await answers.versions("vision", "dataset")] == ["v0"]
    assert hand_off.calls == asked
    await trio.sleep(0.6)
    assert await answers.projects() == ["audio", "vision"]
    assert sorted(await answers.types("vision")) == ["dataset", "model"]
    assert [v.version for v in await answers.versions("vision", "dataset")] == ["v0", "v1"]


async def test_a_version_is_asked_once_and_an_alias_every_time(registry, tmp_path):
    v0, _ = commit(registry, tmp_path, "vision", "mnist", "dataset", {"a.txt": b"a"},
                   aliases=("best",))
    hand_off = HandOff()
    answers = RegistryAnswers(registry, ENTITY, hand_off, listing_ttl=60)
    assert (await answers.resolve("vision", "mnist", "v0")).id == v0.id
    assert (await answers.resolve("vision", "mnist", "v0")).id == v0.id
    assert hand_off.calls == 1  # a committed version never changes
    assert (await answers.resolve("vision", "mnist", "best")).id == v0.id
    v1, _ = commit(registry, tmp_path, "vision", "mnist", "dataset", {"a.txt": b"b"},
                   aliases=("best",))
    assert (await answers.resolve("vision", "mnist", "best")).id == v1.id  # moved: seen
    assert hand_off.calls == 3
    await answers.versions("vision", "dataset")
    asked = hand_off.calls
    assert (await answers.resolve("vision", "mnist", "v1")).id == v1.id  # listed: known
    assert hand_off.calls == asked
    with pytest.raises(NotFound):
        await answers.resolve("vision", "mnist", "v7")


async def test_a_folder_is_fetched_once_per_version_and_alone(registry, tmp_path):
    info, manifest = commit(registry, tmp_path, "vision", "mnist", "dataset",
                            {"a/x.txt": b"x", "b.txt": b"b", "c/y.txt": b"y"})
    hand_off = HandOff()
    answers = RegistryAnswers(registry, ENTITY, hand_off, listing_ttl=60)
    assert answers.folder_in_memory(info.id, "") is None
    root = await answers.folder(info.id, "")
    assert await answers.folder(info.id, "") is root
    assert answers.folder_in_memory(info.id, "") is root
    assert root.names == ["a", "b.txt", "c"] and list(root.files) == ["b.txt"]
    assert root.files["b.txt"] == manifest["b.txt"]
    assert answers.folder_in_memory(info.id, "a") is None  # nothing but what was asked
    a = await answers.folder(info.id, "a", siblings=["c"])  # one request for both
    assert list(a.files) == ["a/x.txt"]
    assert list(answers.folder_in_memory(info.id, "c").files) == ["c/y.txt"]
    assert (answers.folder_fetches, answers.folder_requests, answers.manifest_fetches) == (
        3, 2, 0)
    assert hand_off.calls == 2
    with pytest.raises(NotFound):
        await answers.folder(info.id, "b.txt")


async def test_folders_are_kept_within_a_bound_of_entries(registry, tmp_path):
    """The LRU holds folders up to a number of entries; one pushed out is fetched again
    when next needed; one larger than the whole bound is still kept, alone, beside it."""
    files = {f"{d}/{i}": bytes([i]) for d in "abc" for i in range(3)}
    files.update({f"big/{i}": bytes([i]) for i in range(10)})
    info, _ = commit(registry, tmp_path, "vision", "mnist", "dataset", files)
    hand_off = HandOff()
    answers = RegistryAnswers(registry, ENTITY, hand_off, listing_ttl=60, folder_entries=8)
    for folder in "abc":
        assert len((await answers.folder(info.id, folder)).files) == 3
    assert answers.folder_in_memory(info.id, "a") is None  # 3 x (3 + 1) > 8
    assert answers.folder_in_memory(info.id, "c") is not None
    assert list((await answers.folder(info.id, "a")).files) == ["a/0", "a/1", "a/2"]
    big = await answers.folder(info.id, "big")
    assert len(big.files) == 10 and answers.folder_in_memory(info.id, "big") is big
    assert answers.folder_fetches == 5


async def test_a_folder_asked_for_twice_at_once_is_fetched_once(registry, tmp_path):
    info, _ = commit(registry, tmp_path, "vision", "mnist", "dataset", {"a/x.txt": b"x"})
    hand_off = HandOff()
    answers = RegistryAnswers(registry, ENTITY, hand_off, listing_ttl=60)
    got = []
    async with trio.open_nursery() as nursery:
        for _ in range(5):
            nursery.start_soon(lambda: _append(got, answers.folder(info.id, "a")))
    assert len(got) == 5 and all(g is got[0] for g in got)
    assert hand_off.calls == 1


async def _append(out: list[Any], waiting: Any) -> None:
    out.append(await waiting)


def test_a_sweep_in_order_doubles_its_batches_and_a_jump_starts_over() -> None:
    sweep = FolderSweep(most=8)
    index, sizes = 0, []
    while index < 30:
        size = sweep.batch("v", "", index)
        sizes.append(size)
        index += size
    assert sizes == [1, 2, 4, 8, 8, 8]
    assert sweep.batch("v", "", 3) == 1  # not where the sweep was: one folder
    assert sweep.batch("v", "other", 0) == 1  # each parent has its own
    assert sweep.batch("w", "", index + 1) == 1  # and each version


async def test_a_save_makes_its_version_known_and_its_listings_asked_again(registry, tmp_path):
    commit(registry, tmp_path, "vision", "mnist", "dataset", {"a.txt": b"a"})
    hand_off = HandOff()
    answers = RegistryAnswers(registry, ENTITY, hand_off, listing_ttl=3600)
    assert await answers.projects() == ["vision"]
    assert await answers.types("vision") == ["dataset"]
    assert [v.version for v in await answers.versions("vision", "dataset")] == ["v0"]
    assert [v.version for v in await answers.versions("vision", "model")] == []
    # what a save of vision/model/resnet:latest (a new collection) commits
    info, manifest = commit(registry, tmp_path, "vision", "resnet", "model", {"w.bin": b"w"},
                            aliases=("latest",))
    answers.saved(FolderKey("vision", "model", "resnet", "latest"), info, manifest)
    asked = hand_off.calls
    assert [v.id for v in await answers.versions("vision", "model")] == [info.id]
    assert sorted(await answers.types("vision")) == ["dataset", "model"]
    assert await answers.projects() == ["vision"]
    assert hand_off.calls == asked + 3  # each asked again, once
    listing = answers.folder_in_memory(info.id, "")  # the saved manifest's, not fetched
    assert listing is not None and list(listing.files) == ["w.bin"]
    assert answers.manifest_fetches == 0 and answers.folder_fetches == 0
    # other listings keep their answers until the TTL
    assert [v.version for v in await answers.versions("vision", "dataset")] == ["v0"]
    assert hand_off.calls == asked + 3


async def test_ended_staging_asks_its_type_and_alias_again(registry, tmp_path):
    commit(registry, tmp_path, "vision", "mnist", "dataset", {"a.txt": b"a"})
    hand_off = HandOff()
    answers = RegistryAnswers(registry, ENTITY, hand_off, listing_ttl=3600)
    await answers.versions("vision", "dataset")
    asked = hand_off.calls
    await answers.versions("vision", "dataset")
    assert hand_off.calls == asked
    answers.staging_ended(FolderKey("vision", "dataset", "mnist", "latest"))
    await answers.versions("vision", "dataset")
    assert hand_off.calls == asked + 1


async def test_a_registry_that_is_down_is_answered_from_memory(tmp_path: Path):
    """The last answer to each question stands in while the server is gone; a question
    never answered fails with RegistryUnavailable; after the first failure the registry is
    not asked again for a few seconds (each question would wait out the read timeout)."""
    store = Store(tmp_path / "store")
    key = store.db.create_key(ENTITY)
    server = RegistryServer(tmp_path / "store", tmp_path / "server.log")
    stopped = False
    registry = HttpRegistry(server.url, key, attempts=1)
    try:
        info, _ = commit(registry, tmp_path, "vision", "mnist", "dataset", {"a.txt": b"a"},
                         aliases=("best",))
        hand_off = HandOff()
        answers = RegistryAnswers(registry, ENTITY, hand_off, listing_ttl=0.2)
        assert await answers.projects() == ["vision"]
        assert await answers.types("vision") == ["dataset"]
        assert (await answers.resolve("vision", "mnist", "best")).id == info.id
        listing = await answers.folder(info.id, "")
        server.stop()
        stopped = True
        await trio.sleep(0.3)  # past the TTL: every listing would be asked again
        assert await answers.projects() == ["vision"]  # the registry failed here
        asked = hand_off.calls
        assert await answers.types("vision") == ["dataset"]
        assert (await answers.resolve("vision", "mnist", "best")).id == info.id
        assert await answers.folder(info.id, "") is listing
        with pytest.raises(RegistryUnavailable):
            await answers.types("audio")  # never answered
        assert hand_off.calls == asked  # down: not asked again for a while
    finally:
        registry.close()
        if not stopped:
            server.stop()
