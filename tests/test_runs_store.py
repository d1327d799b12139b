"""Runs and lineage in the store (store/runs.py), on SQLite and on PostgreSQL: what a run
holds, links made once, one producer per version, links within one entity only, and the
version a delete marked DELETED no longer linked to."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest
import sqlalchemy as sa

from artifactfs.core.errors import Conflict, InvalidName, InvalidRequest, NotFound
from artifactfs.core.manifest import Manifest
from artifactfs.core.records import VersionInfo
from artifactfs.core.runs import FAILED, FINISHED, LOGGED, RUNNING, USED
from artifactfs.store import Store
from artifactfs.store.schema import run_links


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


def test_a_creation_racing_its_retry_makes_one_run(open_store: Callable[[], Store]) -> None:
    """A retry may reach the database while the first send is still in it (PostgreSQL: no
    row to lock yet); both meet on the key, and both are answered with the one run."""
    store = open_store()
    made: list[object] = []
    start = threading.Barrier(8)

    def create() -> None:
        start.wait()
        made.append(store.runs.create("team", "p", name="n", run_id="race0001"))

    threads = [threading.Thread(target=create) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(made) == 8 and all(m == made[0] for m in made)


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


def test_the_first_run_to_log_a_version_is_its_producer_and_only_running_runs_log(
        open_store: Callable[[], Store]) -> None:
    """A second run that makes the same content logs the same version (a save of content a
    version holds answers with that version): both are recorded, the first comes first."""
    store = open_store()
    made = _commit(store, "model")
    first, second = store.runs.create("team", "p"), store.runs.create("team", "p")
    store.runs.link("team", first.id, made.id, LOGGED)
    assert store.runs.link("team", second.id, made.id, LOGGED) is True
    assert [r.id for r in store.runs.runs_of("team", made.id, LOGGED)] == [first.id, second.id]
    store.runs.finish("team", second.id, FINISHED)
    other = _commit(store, "other")
    with pytest.raises(Conflict, match="is finished; only a running run logs"):
        store.runs.link("team", second.id, other.id, LOGGED)
    # a use is recorded whatever the state: a mount may be read after its run ended
    assert store.runs.link("team", second.id, other.id, USED) is True


def test_a_link_and_a_delete_of_its_version_at_once_leave_no_link_to_a_deleted_version(
        open_store: Callable[[], Store]) -> None:
    """A link is made under the lock of its version's collection, and the version's state
    read again once the lock is held: one racing the delete either lands before it or is
    NotFound, never a link made to a version the delete marked DELETED meanwhile."""
    store = open_store()
    runs = [store.runs.create("team", "p") for _ in range(8)]
    for round_ in range(3):  # a race: a few rounds, so a missing lock shows
        made = _commit(store, f"data{round_}")
        outcomes: list[str] = []
        start = threading.Barrier(len(runs) + 1)

        def link(run_id: str, made: VersionInfo = made, outcomes: list[str] = outcomes,
                 start: threading.Barrier = start) -> None:
            start.wait()
            try:
                store.runs.link("team", run_id, made.id, USED)
                outcomes.append("linked")
            except NotFound:
                outcomes.append("gone")

        def delete(made: VersionInfo = made, start: threading.Barrier = start) -> None:
            start.wait()
            store.db.delete_version(made.id, delete_aliases=True)

        threads = [threading.Thread(target=link, args=(r.id,)) for r in runs]
        threads.append(threading.Thread(target=delete))
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(outcomes) == len(runs)
        deleted_at = store.db.version_by_id(made.id, include_deleted=True).updated_at
        with store.db.engine.connect() as conn:
            made_at = [row[0] for row in conn.execute(
                sa.select(run_links.c.created_at).where(run_links.c.version_id == made.id))]
        assert len(made_at) == outcomes.count("linked")
        assert all(t <= deleted_at for t in made_at), (made_at, deleted_at)


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
