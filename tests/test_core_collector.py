"""collector_paused: one process-wide pause shared by overlapping builds."""

from __future__ import annotations

import gc
import threading
import weakref
from collections.abc import Iterator

import pytest

from artifactfs.core.collector import (
    FREEZE_AFTER,
    FULL_PASS_EVERY,
    collector_paused,
    rarer_full_passes,
)
from artifactfs.core.manifest import Manifest


@pytest.fixture(autouse=True)
def collector_on() -> Iterator[None]:
    gc.enable()
    thresholds = gc.get_threshold()
    try:
        yield
    finally:
        gc.enable()
        gc.set_threshold(*thresholds)
        gc.unfreeze()  # what a test froze is the collector's again


def test_the_collector_is_off_inside_and_back_on_after() -> None:
    with collector_paused():
        assert not gc.isenabled()
    assert gc.isenabled()


def test_it_is_back_on_after_an_error() -> None:
    with pytest.raises(ValueError), collector_paused():
        raise ValueError("boom")
    assert gc.isenabled()


def test_overlapping_pauses_in_two_threads_end_with_the_last() -> None:
    first_in, second_in, first_out = threading.Event(), threading.Event(), threading.Event()
    seen: list[bool] = []

    def first() -> None:
        with collector_paused():
            first_in.set()
            second_in.wait(5)
        first_out.set()

    def second() -> None:
        first_in.wait(5)
        with collector_paused():
            second_in.set()
            first_out.wait(5)
            seen.append(gc.isenabled())  # the first pause has ended, this one has not

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert seen == [False]
    assert gc.isenabled()


def test_a_collector_that_was_off_stays_off() -> None:
    gc.disable()
    with collector_paused():
        pass
    assert not gc.isenabled()


def test_loading_a_manifest_leaves_the_collector_as_it_was() -> None:
    raw = {"version": 1, "contents": {f"d/{i}": {"digest": "x", "size": 1} for i in range(50)}}
    assert len(Manifest.from_dict(raw)) == 50
    assert gc.isenabled()


def test_rarer_full_passes_leaves_the_young_generations_alone() -> None:
    gc.set_threshold(700, 10, 10)
    rarer_full_passes()
    assert gc.get_threshold() == (700, 10, FULL_PASS_EVERY)
    assert FULL_PASS_EVERY > 10


class _Thing:
    __slots__ = ("__weakref__", "value")

    def __init__(self, value: int) -> None:
        self.value = value


def test_a_large_build_is_frozen_and_its_objects_are_still_freed_when_dropped() -> None:
    gc.unfreeze()
    before = gc.get_freeze_count()
    with collector_paused(objects=FREEZE_AFTER + 10_000):
        built = [_Thing(i) for i in range(FREEZE_AFTER + 10_000)]
    # the collector's next passes skip them (a pass over a million new objects was a
    # quarter of a large version's first listing)
    assert gc.get_freeze_count() >= before + FREEZE_AFTER
    probe = weakref.ref(built[-1])
    del built
    assert probe() is None  # reference counting still frees frozen objects


def test_a_small_build_is_not_frozen() -> None:
    gc.unfreeze()
    with collector_paused():
        built = [_Thing(i) for i in range(1000)]
    assert gc.get_freeze_count() == 0
    assert len(built) == 1000


class _Cycle:
    """Garbage only the collector frees: it refers to itself."""

    __slots__ = ("__weakref__", "me")

    def __init__(self) -> None:
        self.me = self


def _garbage_in_the_middle_generation() -> weakref.ref[_Cycle]:
    """A cycle that was alive at a young pass (so it moved to the middle generation) and
    is garbage now, as a fetch's buffers are when a pass comes during the fetch."""
    cycle = _Cycle()
    gc.collect(0)
    return weakref.ref(cycle)


def test_pauses_of_small_builds_leave_the_automatic_passes_to_come() -> None:
    # A lookup's node is a build of its own: thousands of pauses while files are read.
    # A young pass at the start of each kept the young count from reaching its
    # threshold, so no automatic pass came, and the middle generation's garbage (the
    # cycles that held fetched buffers) stayed: 600 MB where 170 MB was the peak.
    gc.set_threshold(700, 10, 10)
    probe = _garbage_in_the_middle_generation()
    kept = []
    for _ in range(300):
        kept.extend(_Thing(i) for i in range(400))  # fewer than a young threshold apart
        with collector_paused(objects=1):
            kept.append(_Thing(-1))
    assert probe() is None, "the middle generation was never collected"
    assert len(kept) == 300 * 401


def test_objects_other_threads_make_during_a_small_build_are_not_frozen() -> None:
    # what counts is what the builds said they make, not the collector's own count
    # (which the readers' threads raise meanwhile)
    gc.unfreeze()
    with collector_paused(objects=10):
        others = [_Thing(i) for i in range(FREEZE_AFTER + 10_000)]
    assert gc.get_freeze_count() == 0
    assert len(others) == FREEZE_AFTER + 10_000


def test_garbage_waiting_when_a_large_build_begins_is_not_frozen_with_it() -> None:
    gc.unfreeze()
    probe = _garbage_in_the_middle_generation()
    with collector_paused(objects=FREEZE_AFTER + 1):
        built = [_Thing(i) for i in range(FREEZE_AFTER + 1)]
    assert gc.get_freeze_count() > FREEZE_AFTER
    gc.collect()
    assert probe() is None, "a cycle was frozen with the build and can never be collected"
    assert len(built) == FREEZE_AFTER + 1
