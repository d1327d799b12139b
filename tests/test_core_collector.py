"""collector_paused: one process-wide pause shared by overlapping builds."""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator

import pytest

from artifactfs.core.collector import collector_paused
from artifactfs.core.manifest import Manifest


@pytest.fixture(autouse=True)
def collector_on() -> Iterator[None]:
    gc.enable()
    try:
        yield
    finally:
        gc.enable()


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
