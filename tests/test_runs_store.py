"""Runs and lineage in the store (store/runs.py), on SQLite and on PostgreSQL: what a run
holds, links made once, one producer per version, links within one entity only, and the
version a delete marked DELETED no longer linked to."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest

from artifactfs.core.errors import Conflict, InvalidName, InvalidRequest, NotFound
from artifactfs.core.manifest import Manifest
from artifactfs.core.records import VersionInfo
from artifactfs.core.runs import FAILED, FINISHED, LOGGED, RUNNING, USED
from artifactfs.store import Store


def _commit(store: Store, name: str, entity: str = "team") -> VersionInfo:
    """A version with no files (the links do not look at them)."""
    return store.commit(entity=entity, project="p", name=name, type_="dataset",
                        manifest=Manifest())


def test_a_run_is_made_read_and_finished(open_store: Callable[[], Store]) -> None:
    store = open_store()
    run = store.runs.create("team", "p", name="prep 1", job_type="prep",
                            config={"lr": 0.1, "layers": [1, 2]})
    assert len(run.id) == 8 and run.id.isalnum() and run.id.islower()
    assert (run.entity, run.project, run.name, run.job_type, run.state) == (
        "team", "p", "prep 1", "prep", RUNNING)
    assert run.config == {"lr": 0.1, "layers": [1, 2]} and run.finished_at is None
    assert open_store().runs.get("team", run.id) == run  # another process's view
    done = store.runs.finish("team", run.id, FINISHED)
    assert done.state == FINISHED and done.finished_at is not None
    # finished already: a second finish, even as failed, leaves it as it ended
    assert store.runs.finish("team", run.id, FAILED) == done
    unnamed = store.runs.create("team", "p")
    assert unnamed.name == unnamed.id and unnamed.job_type is None and unnamed.config == {}


def test_bad_runs_are_refused_with_what_is_wrong(open_store: Callable[[], Store]) -> None:
    store = open_store()
    with pytest.raises(InvalidName, match="job_type"):
        store.runs.create("team", "p", job_type="no spaces")
    with pytest.raises(InvalidRequest, match="config must be a JSON object"):
        store.runs.create("team", "p", config=[1])  # type: ignore[arg-type]
    with pytest.raises(InvalidRequest, match="not plain JSON"):
        store.runs.create("team", "p", config={"x": float("nan")})
    with pytest.raises(InvalidName, match="is not a run id"):
        store.runs.get("team", "../etc")
    run = store.runs.create("team", "p")
    with pytest.raises(InvalidRequest, match="run state must be one of"):
        store.runs.finish("team", run.id, "crashed?")
    with pytest.raises(NotFound, match=f"run {run.id} not found in entity other"):
        store.runs.get("other", run.id)


def test_a_creation_sent_again_is_the_run_it_made(open_store: Callable[[], Store]) -> None:
    store = open_store()
    first = store.runs.create("team", "p", name="n", config={"a": 1}, run_id="abc12345")
    assert store.runs.create("team", "p", name="n", config={"a": 1}, run_id="abc12345") == first
    with pytest.raises(Conflict, match="exists already"):
        store.runs.create("team", "p", name="another", run_id="abc12345")
    with pytest.raises(Conflict, match="exists already"):  # one entity cannot take another's
        store.runs.create("other", "p", name="n", config={"a": 1}, run_id="abc12345")


def test_links_are_made_once_and_read_both_ways(open_store: Callable[[], Store]) -> None:
    store = open_store()
    raw, clean, model = (_commit(store, n) for n in ("raw", "clean", "model"))
    prep = store.runs.create("team", "p", job_type="prep")
    train = store.runs.create("team", "p", job_type="train")
    assert store.runs.link("team", prep.id, raw.id, USED) is True
    assert store.runs.link("team", prep.id, raw.id, USED) is False  # again: nothing new
    store.runs.link("team", prep.id, clean.id, LOGGED)
    store.runs.link("team", train.id, clean.id, USED)
    store.runs.link("team", train.id, raw.id, USED)
    store.runs.link("team", train.id, model.id, LOGGED)

    assert [v.id for v in store.runs.versions_of("team", prep.id, USED)] == [raw.id]
    assert [v.id for v in store.runs.versions_of("team", train.id, USED)] == [clean.id, raw.id]
    assert [v.name for v in store.runs.versions_of("team", train.id, LOGGED)] == ["model"]
    assert [r.id for r in store.runs.runs_of("team", raw.id, USED)] == [prep.id, train.id]
    assert [r.id for r in store.runs.runs_of("team", clean.id, LOGGED)] == [prep.id]
    assert store.runs.runs_of("team", raw.id, LOGGED) == []


def test_a_version_has_one_producer_and_only_running_runs_log(
        open_store: Callable[[], Store]) -> None:
    store = open_store()
    made = _commit(store, "model")
    first, second = store.runs.create("team", "p"), store.runs.create("team", "p")
    store.runs.link("team", first.id, made.id, LOGGED)
    with pytest.raises(Conflict, match=f"was logged by run {first.id}; a version has one"):
        store.runs.link("team", second.id, made.id, LOGGED)
    store.runs.finish("team", second.id, FINISHED)
    other = _commit(store, "other")
    with pytest.raises(Conflict, match="is finished; only a running run logs"):
        store.runs.link("team", second.id, other.id, LOGGED)
    # a use is recorded whatever the state: a mount may be read after its run ended
    assert store.runs.link("team", second.id, other.id, USED) is True


def test_two_runs_logging_one_version_at_once_give_it_one_producer(
        open_store: Callable[[], Store]) -> None:
    """Each link is made under the lock of its version's collection: on PostgreSQL two
    transactions checking for a producer at once would otherwise both find none."""
    store = open_store()
    made = _commit(store, "model")
    runs = [store.runs.create("team", "p") for _ in range(10)]
    results: list[str] = []
    start = threading.Barrier(len(runs))

    def log(run_id: str) -> None:
        start.wait()
        try:
            store.runs.link("team", run_id, made.id, LOGGED)
            results.append("linked")
        except Conflict:
            results.append("conflict")

    threads = [threading.Thread(target=log, args=(r.id,)) for r in runs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == ["conflict"] * 9 + ["linked"]
    assert len(store.runs.runs_of("team", made.id, LOGGED)) == 1


def test_links_stay_within_an_entity_and_to_committed_versions(
        open_store: Callable[[], Store]) -> None:
    store = open_store()
    theirs = _commit(store, "data", entity="other")
    mine = _commit(store, "data")
    run = store.runs.create("team", "p")
    with pytest.raises(NotFound, match="not found"):
        store.runs.link("team", run.id, theirs.id, USED)
    with pytest.raises(NotFound, match="not found"):
        store.runs.runs_of("team", theirs.id, USED)
    with pytest.raises(NotFound, match=f"run {run.id} not found in entity other"):
        store.runs.link("other", run.id, theirs.id, USED)
    store.runs.link("team", run.id, mine.id, USED)
    store.db.delete_version(mine.id, delete_aliases=True)
    with pytest.raises(NotFound, match="not found"):
        store.runs.link("team", run.id, mine.id, LOGGED)
    assert store.runs.versions_of("team", run.id, USED) == []  # a deleted version is gone
    with pytest.raises(InvalidRequest, match="one of logged, used"):
        store.runs.versions_of("team", run.id, "made")
